"""``canaryconf show``: a volume as canaryconf reads it, and the typed settings."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from canaryconf._cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    Redaction,
    display,
    env_file,
    text_of,
)
from canaryconf._cli.content import VolumeView
from canaryconf._cli.export import variables_of
from canaryconf._cli.options import VolumeOptions, add_volume_options, format_option
from canaryconf._cli.session import Reading, Session
from canaryconf.rollout import POD_TEMPLATE_HASH_LABEL
from canaryconf.settings import CanarySettings, redacted_dump, restart_fields
from canaryconf.sources.base import config_value, registered_sources

__all__ = ["ShowArgs", "add_arguments", "parse", "run"]

NAME = "show"
SUMMARY = "show what canaryconf reads from a volume"
DESCRIPTION = (
    "Show a volume as canaryconf reads it: labels and annotations parsed key by key, the"
    " other files, the rollout role, then the volumes of every source kind (ConfigMap,"
    " Secret, projected, ...); with --settings, the typed and validated settings and where"
    " each value came from. Secret values are never shown: files of Secret volumes, the"
    " Secret items of a projected volume (every item without --settings), SecretStr"
    " fields and the keys that feed them. A label or annotation file that does not parse"
    " is never shown either: its problem (file, line, key) is."
)


@dataclass(frozen=True)
class ShowArgs:
    volumes: VolumeOptions
    format: str = "table"
    prefix: str | None = None
    export: bool = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_volume_options(parser)
    format_option(
        parser,
        {
            "table": "for people",
            "json": "one JSON document",
            "env": "'export NAME=value' lines, secrets left out",
        },
        "table",
    )
    parser.add_argument(
        "--prefix",
        metavar="PREFIX",
        help="with --format env: variable name prefix (default: the class's env_prefix)",
    )
    parser.add_argument("--no-export", action="store_true", help="with --format env: no 'export'")


def parse(ns: argparse.Namespace) -> ShowArgs:
    return ShowArgs(
        volumes=VolumeOptions.from_namespace(ns),
        format=ns.format,
        prefix=ns.prefix,
        export=not ns.no_export,
    )


def _rows(mapping: Mapping[str, str], redact: Callable[[str, str], str]) -> list[tuple[str, str]]:
    return [(key, display(redact(key, value))) for key, value in sorted(mapping.items())]


def _file_rows(view: VolumeView, redaction: Redaction) -> list[tuple[str, str]]:
    rows = []
    for name, data in sorted(view.files.items()):
        text = text_of(data)
        shown = display(data) if text is None else display(text)
        rows.append((name, redaction.file(view.path, name, shown)))
    return rows


def _table(rows: list[tuple[str, str]], out: TextIO, indent: str = "  ") -> None:
    if not rows:
        print(f"{indent}(none)", file=out)
        return
    width = min(max(len(k) for k, _ in rows), 40)
    for key, value in rows:
        print(f"{indent}{key.ljust(width)}  {value}", file=out)


def _holds_secrets(view: VolumeView, redaction: Redaction) -> bool:
    """Whether any value of ``view`` is redacted: its digest (a hash over all its bytes)
    would then let a reader test guesses of that value, so it is not shown."""
    if redaction.is_secret_dir(view.path):
        return True
    return (
        bool(redaction.label_keys & set(view.labels or ()))
        or bool(redaction.annotation_keys & set(view.annotations or ()))
        or bool(redaction.file_names & set(view.files))
    )


def _volume_header(view: VolumeView, secret: bool) -> str:
    parts = [f"generation {view.generation}" if view.generation else "plain directory"]
    if not secret:
        parts.append(f"digest {view.digest[:12]}")
    return f"{view.kind} volume {view.path} ({', '.join(parts)})"


def _undeclared_secrets(view: VolumeView, reading: Reading) -> str | None:
    """Why no value of ``view`` is shown, when it is only for want of a settings class
    saying which of its files are secret (a projected volume's Secret items)."""
    if reading.cls is not None:
        return None
    for source in registered_sources():
        if source.kind == view.kind and not source.secret and source.secret_keys_key:
            return f"the class's {source.secret_keys_key} says which are secret"
    return None


def _rollout(reading: Reading) -> dict[str, str | None] | None:
    view = reading.downward
    if view is None or view.labels is None:
        return None
    role_label = config_value(reading.cls, "role_label") if reading.cls else "role"
    role = view.labels.get(role_label)
    pod_hash = view.labels.get(POD_TEMPLATE_HASH_LABEL)
    if role is None and pod_hash is None:
        return None
    return {"role": role, "pod_template_hash": pod_hash}


def _origin(snapshot: CanarySettings, name: str) -> str:
    origin = snapshot.origins.get(name)
    if origin is None:
        return "default"
    where = origin.source
    if origin.line is not None:
        where += f" line {origin.line}"
    if origin.key is not None and not where.endswith(origin.key):
        where += f", key {origin.key}"
    return where


def _settings_rows(snapshot: CanarySettings) -> list[tuple[str, str, str]]:
    values = redacted_dump(snapshot)
    restart = restart_fields(type(snapshot))
    rows = []
    for name in type(snapshot).model_fields:
        note = _origin(snapshot, name) + (" (restart required)" if name in restart else "")
        rows.append((name, display(values.get(name)), note))
    return rows


def _maps_table(view: VolumeView, redaction: Redaction, out: TextIO) -> None:
    if view.labels is not None:
        print(f"\nlabels ({os.path.join(view.path, view.labels_file)})", file=out)
        _table(_rows(view.labels, redaction.label), out)
    if view.annotations is not None:
        print(f"\nannotations ({os.path.join(view.path, view.annotations_file)})", file=out)
        _table(_rows(view.annotations, redaction.annotation), out)


def _show_table(reading: Reading, out: TextIO) -> None:
    redaction = reading.redaction
    if reading.downward is not None:
        view = reading.downward
        print(_volume_header(view, _holds_secrets(view, redaction)), file=out)
        _maps_table(view, redaction, out)
        print("\nfiles", file=out)
        _table(_file_rows(view, redaction), out)
        rollout = _rollout(reading)
        if rollout is not None:
            role, pod_hash = rollout["role"], rollout["pod_template_hash"]
            print(f"\nrollout: role={role or '-'} pod-template-hash={pod_hash or '-'}", file=out)
    for view in reading.volumes:
        print(f"\n{_volume_header(view, _holds_secrets(view, redaction))}", file=out)
        note = _undeclared_secrets(view, reading)
        if note is not None:
            print(f"  (no value shown: {note})", file=out)
        if view.labels is not None or view.annotations is not None:
            _maps_table(view, redaction, out)
            print("\nfiles", file=out)
        _table(_file_rows(view, redaction), out)
    for path in reading.missing:
        print(f"\nvolume {path}: missing (contributes nothing)", file=out)
    if reading.cls is not None:
        name = reading.cls.__name__
        if reading.snapshot is not None:
            print(f"\nsettings {name}: valid", file=out)
            rows = _settings_rows(reading.snapshot)
            width = min(max(len(r[0]) for r in rows), 30) if rows else 0
            value_width = min(max((len(r[1]) for r in rows), default=0), 50)
            for field_name, value, origin in rows:
                print(
                    f"  {field_name.ljust(width)}  {value.ljust(value_width)}  {origin}", file=out
                )
        else:
            print(f"\nsettings {name}: INVALID", file=out)
    problems = reading.problems
    if problems:
        print("\nproblems", file=out)
        for line in problems:
            print(f"  {line}", file=out)


def _view_json(view: VolumeView, redaction: Redaction) -> dict[str, Any]:
    data: dict[str, Any] = {"path": view.path, "generation": view.generation}
    if not _holds_secrets(view, redaction):
        data["digest"] = view.digest
    if view.labels is not None:
        data["labels"] = {k: redaction.label(k, v) for k, v in sorted(view.labels.items())}
    if view.annotations is not None:
        data["annotations"] = {
            k: redaction.annotation(k, v) for k, v in sorted(view.annotations.items())
        }
    files = {}
    for name, content in sorted(view.files.items()):
        text = text_of(content)
        files[name] = redaction.file(
            view.path, name, text if text is not None else display(content)
        )
    data["files"] = files
    return data


def _show_json(reading: Reading) -> dict[str, Any]:
    redaction = reading.redaction
    data: dict[str, Any] = {}
    if reading.downward is not None:
        data["downward_api"] = _view_json(reading.downward, redaction)
        data["rollout"] = _rollout(reading)
    data["volumes"] = [{"kind": v.kind, **_view_json(v, redaction)} for v in reading.volumes]
    data["missing"] = reading.missing
    if reading.cls is not None:
        settings: dict[str, Any] = {
            "class": reading.cls.__name__,
            "valid": reading.snapshot is not None,
        }
        if reading.snapshot is not None:
            settings["values"] = redacted_dump(reading.snapshot)
            settings["origins"] = {
                name: {"source": o.source, "key": o.key, "line": o.line}
                for name, o in reading.snapshot.origins.items()
            }
        data["settings"] = settings
    data["problems"] = reading.problems
    return data


def run(args: ShowArgs) -> int:
    reading = Session(args.volumes).read()
    out = sys.stdout
    if args.format == "json":
        json.dump(_show_json(reading), out, indent=2, ensure_ascii=False)
        out.write("\n")
    elif args.format == "env":
        variables = variables_of(reading, include_secrets=False, prefix=args.prefix)
        out.write(env_file(variables, export=args.export))
    else:
        _show_table(reading, out)
    return EXIT_FAILED if reading.problems else EXIT_OK
