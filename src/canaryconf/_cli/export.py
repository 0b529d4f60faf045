"""``canaryconf export``: the settings as a shell file or JSON, for an initContainer."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from typing import Any

from pydantic import SecretBytes, SecretStr

from canaryconf._cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    REDACTED,
    CliError,
    Redacted,
    as_cli_error,
    atomic_write,
    check_env_names,
    env_file,
    env_name,
    env_value,
)
from canaryconf._cli.content import VolumeView, file_texts
from canaryconf._cli.options import FILE, VolumeOptions, add_volume_options, format_option
from canaryconf._cli.session import Reading, Session
from canaryconf._errors import CanaryConfError
from canaryconf.settings import CanarySettings, redacted_dump, secret_fields

__all__ = ["ExportArgs", "add_arguments", "parse", "run", "variables_of"]

NAME = "export"
SUMMARY = "write the settings as an env file or JSON"
DESCRIPTION = (
    "For processes that cannot use the library (an initContainer writes the file, the"
    " app sources it): a POSIX shell file of 'export NAME=value' lines quoted with"
    " shlex.quote (field names upper-cased, prefixed with the class's env_prefix), or"
    " JSON. Written atomically (temporary file + rename). Secret values are left out"
    " unless --include-secrets (the file is then created with mode 0600)."
)


@dataclass(frozen=True)
class ExportArgs:
    volumes: VolumeOptions
    format: str = "env"
    output: str | None = None
    prefix: str | None = None
    export: bool = True
    include_secrets: bool = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_volume_options(parser)
    format_option(
        parser,
        {"env": "'export NAME=value' lines for a POSIX shell", "json": "one JSON document"},
        "env",
    )
    parser.add_argument("-o", "--output", metavar=FILE, help="write here (default: stdout)")
    parser.add_argument(
        "--prefix", metavar="PREFIX", help="variable name prefix (default: env_prefix)"
    )
    parser.add_argument("--no-export", action="store_true", help="omit the 'export' keyword")
    parser.add_argument("--include-secrets", action="store_true", help="write secret values too")


def parse(ns: argparse.Namespace) -> ExportArgs:
    return ExportArgs(
        volumes=VolumeOptions.from_namespace(ns),
        format=ns.format,
        output=ns.output,
        prefix=ns.prefix,
        export=not ns.no_export,
        include_secrets=ns.include_secrets,
    )


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
    """``(variable, key, value)`` for every label, annotation and file of every volume;
    a secret value is :data:`REDACTED` unless ``include_secrets``."""
    found: list[tuple[str, str, str]] = []
    redaction = reading.redaction
    for view in reading.views:
        for key, value in sorted((view.labels or {}).items()):
            shown = value if include_secrets else redaction.label(key, value)
            found.append((env_name(f"LABEL_{key}", prefix), f"label {key}", shown))
        for key, value in sorted((view.annotations or {}).items()):
            shown = value if include_secrets else redaction.annotation(key, value)
            found.append((env_name(f"ANNOTATION_{key}", prefix), f"annotation {key}", shown))
        downward = view is reading.downward
        for name, text in sorted(file_texts(view).items()):
            shown = text if include_secrets else redaction.file(view.path, name, text)
            key = f"file {name}" if downward else f"{view.path}/{name}"
            found.append((env_name(name, prefix), key, shown))
    return found


def variables_of(reading: Reading, *, include_secrets: bool, prefix: str | None) -> dict[str, str]:
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
    redaction = reading.redaction

    def files_of(view: VolumeView) -> dict[str, str]:
        files = {}
        for name, text in sorted(file_texts(view).items()):
            if include_secrets or not redaction.is_secret_file(view.path, name):
                files[name] = text
            else:
                omitted.append(os.path.join(view.path, name))
        return files

    view = reading.downward
    if view is not None:
        data["labels"] = dict(sorted((view.labels or {}).items()))
        data["annotations"] = dict(sorted((view.annotations or {}).items()))
        data["files"] = files_of(view)
    data["volumes"] = [
        {"kind": v.kind, "path": v.path, "files": files_of(v)} for v in reading.volumes
    ]
    return data, omitted


def run(args: ExportArgs) -> int:
    reading = Session(args.volumes).read()
    if reading.problems:
        raise CliError(
            EXIT_FAILED, "nothing exported: the volume does not validate", reading.problems
        )
    omitted: list[str] = []
    if args.format == "json":
        data, omitted = _export_json(reading, args.include_secrets)
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    else:
        variables = variables_of(reading, include_secrets=args.include_secrets, prefix=args.prefix)
        omitted = [name for name, value in variables.items() if isinstance(value, Redacted)]
        for name in omitted:
            del variables[name]
        source = reading.where
        generation = reading.downward.generation if reading.downward else None
        header = [f"written by canaryconf export from {source}"]
        if generation:
            header.append(f"generation {generation}")
        text = env_file(variables, header=header, export=args.export)
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
