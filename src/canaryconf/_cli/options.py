"""The options several commands share, each parsed into a typed value: the volume flags
(``DIR``, ``--settings``, and one ``--<kind>-dir`` per registered source kind, such as
``--configmap-dir``, ``--secrets-dir`` and ``--projected-dir``: each kind declares its
flag, so a new kind adds none here), the watch flags, number parsers and the metavars
every command uses."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from canaryconf._cli.common import explicit_dirs, source_options

__all__ = [
    "SECONDS",
    "VolumeOptions",
    "WatchOptions",
    "add_volume_options",
    "add_watch_options",
    "format_option",
    "non_negative_float",
    "non_negative_int",
]

#: Metavars, the same in every command.
SECONDS = "SECONDS"
COUNT = "N"
DIR = "DIR"
FILE = "FILE"

SETTINGS_HELP = (
    "settings class, as module:Class or path/to/file.py:Class (a LiveSettings object works"
    " too); typed values, validation, and the secret fields to redact"
)
DIR_HELP = (
    "the downwardAPI (podinfo) volume directory; with --settings it replaces the class's"
    " downward_api_dir, and defaults to it"
)

N = TypeVar("N", int, float)


def _non_negative(convert: Callable[[str], N], noun: str) -> Callable[[str], N]:
    def parse(text: str) -> N:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {noun}: {text!r}") from None
        if value < 0:
            raise argparse.ArgumentTypeError("must be 0 or more")
        return value

    return parse


non_negative_float = _non_negative(float, "a number")
non_negative_int = _non_negative(int, "an integer")


def format_option(parser: argparse.ArgumentParser, choices: dict[str, str], default: str) -> None:
    """``--format`` with one line of help per choice (``choices``: name -> what it is)."""
    described = "; ".join(f"{name}: {what}" for name, what in choices.items())
    parser.add_argument(
        "--format",
        choices=tuple(choices),
        default=default,
        help=f"output format (default {default}) - {described}",
    )


@dataclass(frozen=True)
class VolumeOptions:
    """Where a command reads: the podinfo directory, the settings class, and the
    directories given for each source kind (a kind not given: the class's own)."""

    dir: str | None = None
    settings: str | None = None
    #: Every ``--<kind>-dir`` given, by the kind's config key (the source registry's).
    dirs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_namespace(cls, ns: argparse.Namespace) -> VolumeOptions:
        return cls(
            dir=ns.dir,
            settings=ns.settings,
            dirs={key: tuple(given) for key, given in explicit_dirs(ns).items()},
        )

    @property
    def given_dirs(self) -> list[str]:
        """Every directory named on the command line (``DIR`` first)."""
        given = [] if self.dir is None else [self.dir]
        for dirs in self.dirs.values():
            given.extend(dirs)
        return list(dict.fromkeys(given))


def add_volume_options(
    parser: argparse.ArgumentParser, *, dir_arg: bool = True, dir_required: bool = False
) -> None:
    """The options :meth:`VolumeOptions.from_namespace` reads."""
    if dir_arg:
        parser.add_argument("dir", metavar=DIR, nargs=None if dir_required else "?", help=DIR_HELP)
    parser.add_argument("--settings", metavar="MODULE:CLASS", help=SETTINGS_HELP)
    source_options(parser)  # --configmap-dir, --secrets-dir, ...: the source registry's


@dataclass(frozen=True)
class WatchOptions:
    """How a following command notices changes."""

    poll: bool = False
    poll_interval: float = 1.0

    @classmethod
    def from_namespace(cls, ns: argparse.Namespace) -> WatchOptions:
        return cls(poll=ns.poll, poll_interval=ns.poll_interval)


def add_watch_options(parser: argparse.ArgumentParser) -> None:
    """The options :meth:`WatchOptions.from_namespace` reads."""
    parser.add_argument(
        "--poll", action="store_true", help="poll instead of inotify (network file systems)"
    )
    parser.add_argument(
        "--poll-interval",
        metavar=SECONDS,
        type=non_negative_float,
        default=1.0,
        help="seconds between polls (default 1)",
    )
