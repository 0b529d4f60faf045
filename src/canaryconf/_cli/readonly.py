"""The read-only commands: ``show``, ``validate``, ``diff`` and ``export``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

from pydantic import SecretBytes, SecretStr

from canaryconf._cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    REDACTED,
    CliError,
    Redacted,
    Redaction,
    as_cli_error,
    atomic_write,
    check_env_names,
    display,
    env_file,
    env_name,
    env_value,
    error_lines,
    load_settings,
    map_diff,
    retarget,
    settings_dirs,
    text_of,
)
from canaryconf._cli.content import VolumeView, read_view
from canaryconf._errors import (
    CanaryConfError,
    SettingsValidationError,
    VolumeError,
    VolumeNotFoundError,
)
from canaryconf.change import Change, change_line
from canaryconf.rollout import POD_TEMPLATE_HASH_LABEL
from canaryconf.settings import CanarySettings, redacted_dump, restart_fields, secret_fields
from canaryconf.sources.base import config_value

__all__ = ["cmd_diff", "cmd_export", "cmd_show", "cmd_validate"]


# -- what a command reads ---------------------------------------------------------------------


@dataclass
class Reading:
    """The volumes a command looks at, raw, and the settings built from them."""

    cls: type[CanarySettings] | None
    downward: VolumeView | None
    configmaps: list[VolumeView] = field(default_factory=list)
    secrets: list[VolumeView] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    snapshot: CanarySettings | None = None
    error: CanaryConfError | None = None
    redaction: Redaction = field(default_factory=Redaction)

    @property
    def problems(self) -> list[str]:
        lines: list[str] = []
        for view in self.views:
            lines.extend(str(e) for e in view.errors)
        if self.error is not None:
            for line in error_lines(self.error):
                if line not in lines:
                    lines.append(line)
        return lines

    @property
    def views(self) -> list[VolumeView]:
        first = [self.downward] if self.downward is not None else []
        return [*first, *self.configmaps, *self.secrets]


def _read(path: str, *, explicit: bool, parse_maps: bool, reading: Reading) -> VolumeView | None:
    cls = reading.cls
    try:
        return read_view(
            path,
            labels_file=config_value(cls, "labels_file") if cls else "labels",
            annotations_file=config_value(cls, "annotations_file") if cls else "annotations",
            parse_maps=parse_maps,
        )
    except VolumeNotFoundError:
        if explicit or (cls is not None and config_value(cls, "require_volumes")):
            raise
        reading.missing.append(path)
        return None


def read_all(args: argparse.Namespace, *, build: bool = True) -> Reading:
    """Read DIR, the ConfigMap and Secret directories (from the options, else from the
    settings class) and, with a settings class, build a snapshot from them."""
    cls = load_settings(args.settings) if getattr(args, "settings", None) else None
    explicit_cm = list(getattr(args, "configmap_dir", None) or [])
    explicit_secrets = list(getattr(args, "secrets_dir", None) or [])
    downward, configmaps, secrets = (None, [], []) if cls is None else settings_dirs(cls)
    if args.dir is not None:
        downward = args.dir
    elif cls is None:
        raise CliError(EXIT_USAGE, "give a volume directory, or --settings module:Class")
    configmaps = explicit_cm or configmaps
    secrets = explicit_secrets or secrets
    reading = Reading(cls=cls, downward=None, redaction=Redaction(cls, secrets))
    if downward is not None:
        reading.downward = _read(
            downward, explicit=args.dir is not None, parse_maps=True, reading=reading
        )
    for directory in configmaps:
        view = _read(directory, explicit=bool(explicit_cm), parse_maps=False, reading=reading)
        if view is not None:
            reading.configmaps.append(view)
    for directory in secrets:
        view = _read(directory, explicit=bool(explicit_secrets), parse_maps=False, reading=reading)
        if view is not None:
            reading.secrets.append(view)
    if cls is not None and build:
        target = retarget(cls, downward=downward, configmaps=configmaps, secrets=secrets)
        try:
            reading.snapshot = target()
        except VolumeError:
            raise
        except CanaryConfError as exc:
            reading.error = exc
    return reading


# -- show ---------------------------------------------------------------------------------


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


def _volume_header(view: VolumeView, kind: str, secret: bool) -> str:
    parts = [f"generation {view.generation}" if view.generation else "plain directory"]
    if not secret:
        parts.append(f"digest {view.digest[:12]}")
    return f"{kind} volume {view.path} ({', '.join(parts)})"


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


def _show_table(reading: Reading, out: TextIO) -> None:
    redaction = reading.redaction
    if reading.downward is not None:
        view = reading.downward
        print(_volume_header(view, "downwardAPI", False), file=out)
        if view.labels is not None:
            print(f"\nlabels ({os.path.join(view.path, view.labels_file)})", file=out)
            _table(_rows(view.labels, redaction.label), out)
        if view.annotations is not None:
            print(f"\nannotations ({os.path.join(view.path, view.annotations_file)})", file=out)
            _table(_rows(view.annotations, redaction.annotation), out)
        print("\nfiles", file=out)
        _table(_file_rows(view, redaction), out)
        rollout = _rollout(reading)
        if rollout is not None:
            role, pod_hash = rollout["role"], rollout["pod_template_hash"]
            print(f"\nrollout: role={role or '-'} pod-template-hash={pod_hash or '-'}", file=out)
    for kind, views, secret in (
        ("configMap", reading.configmaps, False),
        ("secret", reading.secrets, True),
    ):
        for view in views:
            print(f"\n{_volume_header(view, kind, secret)}", file=out)
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


def _view_json(view: VolumeView, redaction: Redaction, secret: bool) -> dict[str, Any]:
    data: dict[str, Any] = {"path": view.path, "generation": view.generation}
    if not secret:
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
        data["downward_api"] = _view_json(reading.downward, redaction, False)
        data["rollout"] = _rollout(reading)
    data["configmaps"] = [_view_json(v, redaction, False) for v in reading.configmaps]
    data["secrets"] = [_view_json(v, redaction, True) for v in reading.secrets]
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


def cmd_show(args: argparse.Namespace) -> int:
    reading = read_all(args)
    out = sys.stdout
    if args.format == "json":
        json.dump(_show_json(reading), out, indent=2, ensure_ascii=False)
        out.write("\n")
    elif args.format == "env":
        variables = _variables(reading, include_secrets=False, prefix=args.prefix)
        out.write(env_file(variables, export=not args.no_export))
    else:
        _show_table(reading, out)
    return EXIT_FAILED if reading.problems else EXIT_OK


# -- validate -----------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    reading = read_all(args)
    problems = reading.problems
    what = reading.cls.__name__ if reading.cls else "the label and annotation files"
    where = reading.downward.path if reading.downward else ", ".join(v.path for v in reading.views)
    if args.format == "json":
        payload: dict[str, Any] = {"valid": not problems, "settings": what, "volume": where}
        if isinstance(reading.error, SettingsValidationError):
            payload["problems"] = [
                {
                    "field": p.field,
                    "source": p.source,
                    "line": p.line,
                    "key": p.key,
                    "reason": p.reason,
                }
                for p in reading.error.problems
            ]
        else:
            payload["problems"] = [{"reason": line} for line in problems]
        print(json.dumps(payload, indent=2, ensure_ascii=False))
        return EXIT_FAILED if problems else EXIT_OK
    if problems:
        noun = "problem" if len(problems) == 1 else "problems"
        print(f"invalid: {what} from {where}: {len(problems)} {noun}")
        for line in problems:
            print(f"  {line}")
        return EXIT_FAILED
    generation = reading.downward.generation if reading.downward else None
    suffix = f" (generation {generation})" if generation else ""
    print(f"valid: {what} from {where}{suffix}")
    return EXIT_OK


# -- diff ---------------------------------------------------------------------------------


def _file_texts(view: VolumeView) -> dict[str, str]:
    texts = {}
    for name, data in view.files.items():
        text = text_of(data)
        texts[name] = text if text is not None else display(data)
    return texts


def cmd_diff(args: argparse.Namespace) -> int:
    cls = load_settings(args.settings) if args.settings else None
    redaction = Redaction(cls, [args.dir_a, args.dir_b] if args.secret else [])
    labels_file = config_value(cls, "labels_file") if cls else "labels"
    annotations_file = config_value(cls, "annotations_file") if cls else "annotations"
    views = []
    for path in (args.dir_a, args.dir_b):
        views.append(
            read_view(
                path,
                labels_file=labels_file,
                annotations_file=annotations_file,
                parse_maps=not args.secret,
            )
        )
    a, b = views
    sections: list[tuple[str, list[str]]] = []
    if a.labels is not None or b.labels is not None:
        sections.append((f"labels ({labels_file})", map_diff(a.labels, b.labels, redaction.label)))
    if a.annotations is not None or b.annotations is not None:
        sections.append(
            (
                f"annotations ({annotations_file})",
                map_diff(a.annotations, b.annotations, redaction.annotation),
            )
        )

    def redact_file(name: str, value: str) -> str:
        return REDACTED if args.secret else redaction.file("", name, value)

    sections.append(("files", map_diff(_file_texts(a), _file_texts(b), redact_file)))
    problems: list[str] = [f"{args.dir_a}: {e}" for e in a.errors] + [
        f"{args.dir_b}: {e}" for e in b.errors
    ]
    settings_lines: list[str] = []
    if cls is not None:
        settings_lines, setting_problems = _settings_diff(cls, args.dir_a, args.dir_b)
        problems.extend(setting_problems)
        sections.append((f"settings {cls.__name__}", settings_lines))
    changed = any(lines for _, lines in sections)
    if args.format == "json":
        payload = {
            "a": args.dir_a,
            "b": args.dir_b,
            "changed": changed,
            "sections": {title: lines for title, lines in sections},
            "problems": problems,
        }
        print(json.dumps(payload, indent=2, ensure_ascii=False))
    else:
        print(f"--- {args.dir_a}" + (f" ({a.generation})" if a.generation else ""))
        print(f"+++ {args.dir_b}" + (f" ({b.generation})" if b.generation else ""))
        if not changed:
            print("no differences")
        for title, lines in sections:
            if lines:
                print(f"\n{title}")
                for line in lines:
                    print(f"  {line}")
        if problems:
            print("\nproblems")
            for line in problems:
                print(f"  {line}")
    if problems:
        return EXIT_FAILED
    return EXIT_FAILED if (changed and args.exit_code) else EXIT_OK


def _settings_diff(
    cls: type[CanarySettings], dir_a: str, dir_b: str
) -> tuple[list[str], list[str]]:
    snapshots: list[CanarySettings | None] = []
    problems: list[str] = []
    for label, path in (("A", dir_a), ("B", dir_b)):
        try:
            snapshots.append(retarget(cls, downward=path)())
        except VolumeError:
            raise
        except CanaryConfError as exc:
            snapshots.append(None)
            problems.extend(f"{label} ({path}): {line}" for line in error_lines(exc))
    old, new = snapshots
    if old is None or new is None:
        if old is not None:
            return ["B does not validate: a running app would keep A's settings"], problems
        return [], problems
    restart = restart_fields(cls)
    lines = []
    for name, (before, after) in Change(old, new).diff().items():
        note = " (needs a restart: not applied live)" if name in restart else ""
        lines.append(change_line(name, before, after) + note)
    return lines, problems


# -- export -------------------------------------------------------------------------------


def _secret_value(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, SecretBytes):
        return value.get_secret_value().decode("utf-8", errors="replace")
    return value


def _settings_values(
    snapshot: CanarySettings, *, include_secrets: bool
) -> tuple[dict[str, Any], list[str]]:
    """The snapshot as JSON-ready values; secret fields real, redacted or left out."""
    values = redacted_dump(snapshot)
    secrets = secret_fields(snapshot)
    omitted = []
    for name in secrets:
        if name not in values:
            continue
        if include_secrets:
            raw = _secret_value(getattr(snapshot, name))
            values[name] = raw if not hasattr(raw, "model_dump") else raw.model_dump(mode="json")
        elif values[name] is not None:
            omitted.append(name)
    return values, sorted(omitted)


def _raw_variables(
    reading: Reading, *, include_secrets: bool, prefix: str
) -> list[tuple[str, str, str]]:
    """``(variable, key, value)`` for every label, annotation and file."""
    found: list[tuple[str, str, str]] = []
    redaction = reading.redaction
    view = reading.downward
    if view is not None:
        for key, value in sorted((view.labels or {}).items()):
            found.append(
                (env_name(f"LABEL_{key}", prefix), f"label {key}", redaction.label(key, value))
            )
        for key, value in sorted((view.annotations or {}).items()):
            found.append(
                (
                    env_name(f"ANNOTATION_{key}", prefix),
                    f"annotation {key}",
                    redaction.annotation(key, value),
                )
            )
        for name, text in sorted(_file_texts(view).items()):
            found.append(
                (env_name(name, prefix), f"file {name}", redaction.file(view.path, name, text))
            )
    for cm in reading.configmaps:
        for name, text in sorted(_file_texts(cm).items()):
            found.append(
                (env_name(name, prefix), f"{cm.path}/{name}", redaction.file(cm.path, name, text))
            )
    for secret in reading.secrets:
        for name, text in sorted(_file_texts(secret).items()):
            value = text if include_secrets else REDACTED
            found.append((env_name(name, prefix), f"{secret.path}/{name}", value))
    return found


def _variables(reading: Reading, *, include_secrets: bool, prefix: str | None) -> dict[str, str]:
    if reading.cls is not None:
        if reading.snapshot is None:
            raise as_cli_error(
                reading.error or CanaryConfError("no settings"),
                f"{reading.cls.__name__} is invalid",
            )
        default_prefix = str(reading.cls.model_config.get("env_prefix", "") or "")
        values, _ = _settings_values(reading.snapshot, include_secrets=include_secrets)
        if not include_secrets:
            for name in secret_fields(reading.snapshot):
                if values.get(name) is not None:
                    values[name] = REDACTED
        triples = [
            (env_name(name, default_prefix if prefix is None else prefix), name, env_value(v))
            for name, v in values.items()
        ]
        pairs = [(n, k, v) for n, k, v in triples if v is not None]
    else:
        pairs = _raw_variables(reading, include_secrets=include_secrets, prefix=prefix or "")
    check_env_names((n, k) for n, k, _ in pairs)
    return {name: value for name, _, value in pairs}


def _export_json(reading: Reading, include_secrets: bool) -> tuple[dict[str, Any], list[str]]:
    if reading.cls is not None:
        if reading.snapshot is None:
            raise as_cli_error(
                reading.error or CanaryConfError("no settings"),
                f"{reading.cls.__name__} is invalid",
            )
        values, left_out = _settings_values(reading.snapshot, include_secrets=include_secrets)
        for name in left_out:
            values.pop(name, None)
        return values, left_out
    data: dict[str, Any] = {}
    omitted: list[str] = []
    view = reading.downward
    if view is not None:
        data["labels"] = dict(sorted((view.labels or {}).items()))
        data["annotations"] = dict(sorted((view.annotations or {}).items()))
        data["files"] = dict(sorted(_file_texts(view).items()))
    data["configmaps"] = {
        cm.path: dict(sorted(_file_texts(cm).items())) for cm in reading.configmaps
    }
    if include_secrets:
        data["secrets"] = {s.path: dict(sorted(_file_texts(s).items())) for s in reading.secrets}
    else:
        omitted = [f"{s.path}/{name}" for s in reading.secrets for name in sorted(s.files)]
    return data, omitted


def cmd_export(args: argparse.Namespace) -> int:
    reading = read_all(args)
    if reading.problems:
        raise CliError(
            EXIT_FAILED, "nothing exported: the volume does not validate", reading.problems
        )
    omitted: list[str] = []
    if args.format == "json":
        data, omitted = _export_json(reading, args.include_secrets)
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    else:
        variables = _variables(reading, include_secrets=args.include_secrets, prefix=args.prefix)
        omitted = [name for name, value in variables.items() if isinstance(value, Redacted)]
        for name in omitted:
            del variables[name]
        source = (
            reading.downward.path if reading.downward else ", ".join(v.path for v in reading.views)
        )
        generation = reading.downward.generation if reading.downward else None
        header = [f"written by canaryconf export from {source}"]
        if generation:
            header.append(f"generation {generation}")
        text = env_file(variables, header=header, export=not args.no_export)
    if omitted:
        print(
            "canaryconf export: left out secret value(s) (add --include-secrets to export them): "
            + ", ".join(omitted),
            file=sys.stderr,
        )
    if args.output in (None, "-"):
        sys.stdout.write(text)
    else:
        mode = 0o600 if args.include_secrets else 0o644
        try:
            atomic_write(args.output, text.encode("utf-8"), mode=mode)
        except OSError as exc:
            raise CliError(
                EXIT_FAILED, f"cannot write {args.output}: {exc.strerror or exc}"
            ) from None
        print(f"canaryconf export: wrote {args.output}", file=sys.stderr)
    return EXIT_OK
