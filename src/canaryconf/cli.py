"""The ``canaryconf`` command: look at, check, follow and act on Kubernetes volumes.

    canaryconf demo                        # a canary release, live, in your terminal
    canaryconf show /etc/podinfo           # what canaryconf reads there
    canaryconf validate /etc/podinfo --settings myapp.settings:Settings
    canaryconf diff OLD_DIR NEW_DIR
    canaryconf watch /etc/podinfo --settings myapp.settings:Settings
    canaryconf export /etc/podinfo --format env -o /config/env   # for an initContainer
    canaryconf sidecar /etc/config --webhook http://127.0.0.1:8080/-/reload
    canaryconf simulate ./podinfo          # play a rollout against a local directory

Every command takes ``--help``. Exit codes: 0 ok, 1 invalid or failed, 2 usage error,
3 volume missing or unreadable.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn, Protocol, cast

from canaryconf import __version__
from canaryconf._cli.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    EXIT_VOLUME,
    CliError,
    as_cli_error,
)
from canaryconf._errors import CanaryConfError, VolumeError

__all__ = ["build_parser", "main"]

EXIT_CODES = """\
exit codes (every command):
  0  success (validate: the settings are valid)
  1  invalid or failed: settings or a label/annotation file do not validate,
     validate found no label or annotation file, a write failed, a watch timed
     out before --count changes, a notification was given up
  2  usage error: bad option or URL, --settings not importable
  3  a volume directory is missing or unreadable
"""

#: The commands, in the order ``--help`` lists them; each module holds its ``NAME``,
#: ``SUMMARY``, ``DESCRIPTION``, ``add_arguments(parser)``, ``parse(namespace)`` (its typed
#: arguments) and ``run(arguments) -> exit code``.
COMMANDS = (
    "canaryconf._cli.demo_command",
    "canaryconf._cli.show",
    "canaryconf._cli.validate",
    "canaryconf._cli.diff",
    "canaryconf._cli.watch",
    "canaryconf._cli.export",
    "canaryconf._cli.sidecar",
    "canaryconf._cli.simulate",
)


class Command(Protocol):
    NAME: str
    SUMMARY: str
    DESCRIPTION: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def parse(self, ns: argparse.Namespace) -> Any: ...

    def run(self, args: Any) -> int: ...


class _Parser(argparse.ArgumentParser):
    """A usage error is one line on stderr (and exit 2), not the whole usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``canaryconf`` command: one subparser per module of
    :data:`COMMANDS`; the exit codes are listed once, in the top-level help."""
    parser = _Parser(
        prog="canaryconf",
        description="Typed settings that follow a Kubernetes canary release without a restart:"
        " look at, check, follow and act on the volumes canaryconf reads.",
        epilog=EXIT_CODES,
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"canaryconf {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMANDS:
        command = cast(Command, importlib.import_module(module_name))
        subparser = sub.add_parser(
            command.NAME,
            help=command.SUMMARY,
            description=command.DESCRIPTION,
            epilog="exit codes: see 'canaryconf --help'",
            formatter_class=_Formatter,
        )
        command.add_arguments(subparser)
        subparser.set_defaults(command_module=command)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Run the ``canaryconf`` command and exit with its code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    code = run(args)
    sys.exit(code)


def run(args: argparse.Namespace) -> int:
    """Run a parsed command; errors become a message on stderr and an exit code."""
    command: Command = args.command_module
    try:
        return command.run(command.parse(args))
    except CliError as exc:
        _report(exc.message, exc.lines)
        return exc.code
    except VolumeError as exc:
        _report(str(exc))
        return EXIT_VOLUME
    except CanaryConfError as exc:
        error = as_cli_error(exc, "failed")
        _report(error.message, error.lines)
        return error.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``| head``): silence the flush at exit, as cat does.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED


def _report(message: str, lines: Sequence[str] = ()) -> None:
    print(f"canaryconf: error: {message}", file=sys.stderr)
    for line in lines:
        print(f"  {line}", file=sys.stderr)


if __name__ == "__main__":
    main()
