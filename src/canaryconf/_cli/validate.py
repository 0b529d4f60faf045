"""``canaryconf validate``: does a volume validate, against a settings class or alone."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import Any

from canaryconf._cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CliError
from canaryconf._cli.options import VolumeOptions, add_volume_options, format_option
from canaryconf._cli.session import Reading, Session
from canaryconf._errors import SettingsValidationError

__all__ = ["ValidateArgs", "add_arguments", "parse", "run"]

NAME = "validate"
SUMMARY = "check a volume against a settings class"
DESCRIPTION = (
    "Exit 0 when the volume's label and annotation files are well formed and, with"
    " --settings, the settings class validates; else exit 1 with one line per problem"
    " (field, file, line, key, reason; never a value). Without --settings, a directory"
    " with neither a labels nor an annotations file is a problem too (exit 1): it is not"
    " the downwardAPI volume. With --settings, that is a warning on stderr (every label"
    " and annotation field then has its default)."
)


@dataclass(frozen=True)
class ValidateArgs:
    volumes: VolumeOptions
    format: str = "text"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_volume_options(parser)
    format_option(parser, {"text": "one line per problem", "json": "one JSON document"}, "text")


def parse(ns: argparse.Namespace) -> ValidateArgs:
    return ValidateArgs(volumes=VolumeOptions.from_namespace(ns), format=ns.format)


def _no_map_files(reading: Reading) -> str | None:
    """The problem of a podinfo directory without labels or annotations files."""
    view = reading.downward
    if view is None or view.labels is not None or view.annotations is not None or view.errors:
        return None
    return (
        f"{view.path}: no label or annotation file found ({view.labels_file!r} or"
        f" {view.annotations_file!r}): is this the downwardAPI volume?"
    )


def run(args: ValidateArgs) -> int:
    if args.volumes.dir is None and args.volumes.settings is None:
        # Without a class, what is validated is the label and annotation files of DIR.
        raise CliError(EXIT_USAGE, "give a volume directory, or --settings module:Class")
    reading = Session(args.volumes).read()
    problems = reading.problems
    missing_maps = _no_map_files(reading)
    if missing_maps is not None:
        if reading.cls is None:
            problems.append(missing_maps)
        else:
            print(f"canaryconf validate: warning: {missing_maps}", file=sys.stderr)
    what = reading.cls.__name__ if reading.cls else "the label and annotation files"
    where = reading.where
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
