"""``canaryconf diff``: what would change between two volumes."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

from canaryconf._cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    REDACTED,
    Redaction,
    error_lines,
    load_settings,
    map_diff,
    retarget,
)
from canaryconf._cli.content import file_texts, read_view
from canaryconf._cli.options import DIR, SETTINGS_HELP, format_option
from canaryconf._errors import CanaryConfError, VolumeError
from canaryconf.change import Change, change_line
from canaryconf.settings import CanarySettings, restart_fields
from canaryconf.sources.base import config_value

__all__ = ["DiffArgs", "add_arguments", "parse", "run"]

NAME = "diff"
SUMMARY = "what would change between two volumes"
DESCRIPTION = (
    "Compare two volume directories file by file, labels and annotations key by key;"
    " with --settings, also the typed settings an application would see change (and"
    " whether the new version validates at all)."
)


@dataclass(frozen=True)
class DiffArgs:
    dir_a: str
    dir_b: str
    settings: str | None = None
    secret: bool = False
    format: str = "text"
    exit_code: bool = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir_a", metavar=f"{DIR}_A", help="the current volume")
    parser.add_argument("dir_b", metavar=f"{DIR}_B", help="the new volume")
    parser.add_argument("--settings", metavar="MODULE:CLASS", help=SETTINGS_HELP)
    parser.add_argument(
        "--secret", action="store_true", help="the directories are Secret volumes: hide values"
    )
    format_option(
        parser, {"text": "a unified-diff-like listing", "json": "one JSON document"}, "text"
    )
    parser.add_argument(
        "--exit-code", action="store_true", help="exit 1 when there are differences"
    )


def parse(ns: argparse.Namespace) -> DiffArgs:
    return DiffArgs(
        dir_a=ns.dir_a,
        dir_b=ns.dir_b,
        settings=ns.settings,
        secret=ns.secret,
        format=ns.format,
        exit_code=ns.exit_code,
    )


def run(args: DiffArgs) -> int:
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

    sections.append(("files", map_diff(file_texts(a), file_texts(b), redact_file)))
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
