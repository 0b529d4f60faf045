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
import os
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

from canaryconf import __version__
from canaryconf._cli.common import (
    EXIT_FAILED,
    EXIT_VOLUME,
    CliError,
    as_cli_error,
)
from canaryconf._errors import CanaryConfError, VolumeError

__all__ = ["build_parser", "main"]

EXIT_CODES = """\
exit codes:
  0  success (validate: the settings are valid)
  1  invalid or failed: settings or a label/annotation file do not validate,
     a write failed, a watch timed out before --count changes
  2  usage error: bad option, --settings not importable
  3  a volume directory is missing or unreadable
"""

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


_positive_float = _non_negative(float, "a number")
_positive_int = _non_negative(int, "an integer")


def _signal(text: str) -> object:
    from canaryconf._cli.sidecar import parse_signal  # noqa: PLC0415

    return parse_signal(text)


def _webhook_url(text: str) -> str:
    from canaryconf._cli.sidecar import parse_webhook_url  # noqa: PLC0415

    return parse_webhook_url(text)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)


def _command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    description: str,
    run: str,
) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        name,
        help=summary,
        description=description,
        epilog=EXIT_CODES,
        formatter_class=_Formatter,
    )
    parser.set_defaults(run=run)
    return parser


def _volume_options(parser: argparse.ArgumentParser, *, dir_required: bool = False) -> None:
    if dir_required:
        parser.add_argument("dir", metavar="DIR", help=DIR_HELP)
    else:
        parser.add_argument("dir", metavar="DIR", nargs="?", help=DIR_HELP)
    parser.add_argument("--settings", metavar="MODULE:CLASS", help=SETTINGS_HELP)
    parser.add_argument(
        "--configmap-dir",
        metavar="DIR",
        action="append",
        help="a ConfigMap volume directory (repeatable; default: the settings class's)",
    )
    parser.add_argument(
        "--secrets-dir",
        metavar="DIR",
        action="append",
        help="a Secret volume directory, never shown (repeatable; default: the class's)",
    )


def _watch_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--poll", action="store_true", help="poll instead of inotify (network file systems)"
    )
    parser.add_argument(
        "--poll-interval",
        metavar="S",
        type=_positive_float,
        default=1.0,
        help="seconds between polls (default 1)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``canaryconf`` command."""
    parser = argparse.ArgumentParser(
        prog="canaryconf",
        description="Typed settings that follow a Kubernetes canary release without a restart:"
        " look at, check, follow and act on the volumes canaryconf reads.",
        epilog=EXIT_CODES,
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"canaryconf {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    show = _command(
        sub,
        "show",
        "show what canaryconf reads from a volume",
        "Show a volume as canaryconf reads it: labels and annotations parsed key by key,"
        " the other files, the rollout role; with --settings, the typed and validated"
        " settings and where each value came from. Secret values are never shown: files of"
        " --secrets-dir directories, SecretStr fields and the keys that feed them.",
        "canaryconf._cli.readonly:cmd_show",
    )
    _volume_options(show)
    show.add_argument("--format", choices=("table", "json", "env"), default="table")
    show.add_argument(
        "--prefix", help="with --format env: variable name prefix (default: env_prefix)"
    )
    show.add_argument("--no-export", action="store_true", help="with --format env: no 'export'")

    validate = _command(
        sub,
        "validate",
        "check a volume against a settings class",
        "Exit 0 when the volume's label and annotation files are well formed and, with"
        " --settings, the settings class validates; else exit 1 with one line per problem"
        " (field, file, line, key, reason; never a value).",
        "canaryconf._cli.readonly:cmd_validate",
    )
    _volume_options(validate)
    validate.add_argument("--format", choices=("text", "json"), default="text")

    diff = _command(
        sub,
        "diff",
        "what would change between two volumes",
        "Compare two volume directories file by file, labels and annotations key by key;"
        " with --settings, also the typed settings an application would see change (and"
        " whether the new version validates at all).",
        "canaryconf._cli.readonly:cmd_diff",
    )
    diff.add_argument("dir_a", metavar="DIR_A", help="the current volume")
    diff.add_argument("dir_b", metavar="DIR_B", help="the new volume")
    diff.add_argument("--settings", metavar="MODULE:CLASS", help=SETTINGS_HELP)
    diff.add_argument(
        "--secret", action="store_true", help="the directories are Secret volumes: hide values"
    )
    diff.add_argument("--format", choices=("text", "json"), default="text")
    diff.add_argument("--exit-code", action="store_true", help="exit 1 when there are differences")

    watch = _command(
        sub,
        "watch",
        "print each change of a volume as it happens",
        "Follow a volume with canaryconf.live and print every change with a timestamp:"
        " applied changes, rejected versions (the last good settings stay) and changes"
        " that need a restart. Without --settings, every label, annotation and file is"
        " followed. Stops on SIGINT or SIGTERM, after --count changes or --timeout seconds.",
        "canaryconf._cli.watch:cmd_watch",
    )
    _volume_options(watch)
    _watch_options(watch)
    watch.add_argument("--format", choices=("text", "json"), default="text")
    watch.add_argument("--count", metavar="N", type=_positive_int, help="stop after N changes")
    watch.add_argument(
        "--timeout",
        metavar="S",
        type=_positive_float,
        help="stop after S seconds (exit 1 if --count changes were not seen)",
    )

    export = _command(
        sub,
        "export",
        "write the settings as an env file or JSON",
        "For processes that cannot use the library (an initContainer writes the file, the"
        " app sources it): a POSIX shell file of 'export NAME=value' lines quoted with"
        " shlex.quote (field names upper-cased, prefixed with the class's env_prefix), or"
        " JSON. Written atomically (temporary file + rename). Secret values are left out"
        " unless --include-secrets (the file is then created with mode 0600).",
        "canaryconf._cli.readonly:cmd_export",
    )
    _volume_options(export)
    export.add_argument("--format", choices=("env", "json"), default="env")
    export.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout)")
    export.add_argument("--prefix", help="variable name prefix (default: env_prefix)")
    export.add_argument("--no-export", action="store_true", help="omit the 'export' keyword")
    export.add_argument("--include-secrets", action="store_true", help="write secret values too")

    sidecar = _command(
        sub,
        "sidecar",
        "notify an application when a volume changes",
        "Watch volumes and notify an application on each change: the HTTP request"
        " configmap-reload sends (an empty POST), retried with exponential backoff,"
        " or a signal to a process (shareProcessNamespace: true in the pod). With"
        " --settings, only versions that validate are announced. Prometheus metrics with"
        " --metrics-port. Stops cleanly on SIGTERM.",
        "canaryconf._cli.sidecar:cmd_sidecar",
    )
    sidecar.add_argument("dirs", metavar="DIR", nargs="*", help="volume directories to watch")
    sidecar.add_argument(
        "--volume-dir", metavar="DIR", action="append", help="same as DIR (configmap-reload)"
    )
    sidecar.add_argument("--settings", metavar="MODULE:CLASS", help=SETTINGS_HELP)
    sidecar.add_argument("--configmap-dir", metavar="DIR", action="append", help="with --settings")
    sidecar.add_argument("--secrets-dir", metavar="DIR", action="append", help="with --settings")
    sidecar.add_argument(
        "--webhook",
        "--webhook-url",
        metavar="URL",
        action="append",
        type=_webhook_url,
        help="URL to call on each change (repeatable; user:password@ becomes basic auth)",
    )
    sidecar.add_argument(
        "--webhook-follow-redirects",
        action="store_true",
        help="follow a redirect to the same scheme, host and port (default: a redirect is a"
        " failed delivery; one to another host is never followed)",
    )
    sidecar.add_argument("--webhook-method", default="POST", help="HTTP method (default POST)")
    sidecar.add_argument(
        "--webhook-status-code",
        metavar="CODE",
        type=int,
        help="the status that means success (default: any 2xx)",
    )
    sidecar.add_argument(
        "--webhook-retries",
        metavar="N",
        type=_positive_int,
        default=3,
        help="retries after a failed attempt (default 3); also for signals",
    )
    sidecar.add_argument(
        "--webhook-timeout",
        metavar="S",
        type=_positive_float,
        default=10.0,
        help="seconds an attempt may take in all, answer included (default 10)",
    )
    sidecar.add_argument(
        "--webhook-backoff",
        metavar="S",
        type=_positive_float,
        default=1.0,
        help="first retry delay, doubled each time up to 30s (default 1)",
    )
    sidecar.add_argument(
        "--signal", metavar="SIG", type=_signal, help="signal to send (default HUP)"
    )
    sidecar.add_argument("--pid", metavar="PID", type=int, help="process to signal")
    sidecar.add_argument(
        "--pid-file", metavar="FILE", help="file holding the pid to signal (read each time)"
    )
    sidecar.add_argument(
        "--metrics-port",
        metavar="PORT",
        type=int,
        help="serve Prometheus metrics on this port (0: any free port); needs"
        " canaryconf[prometheus]",
    )
    sidecar.add_argument(
        "--metrics-address",
        metavar="ADDR",
        default="0.0.0.0",  # noqa: S104  (a sidecar is scraped from outside the pod)
        help="default 0.0.0.0",
    )
    _watch_options(sidecar)

    simulate = _command(
        sub,
        "simulate",
        "play an Argo Rollouts canary release against a local directory",
        "Write, the way the kubelet does, what a pod's podinfo volume goes through in a"
        " canary release: revision A stable; revision B's canary pod (role=canary, a new"
        " rollouts-pod-template-hash, canary annotations); setWeight 20/50/80; an invalid"
        " edit of the canary metadata and its fix; a Secret rotation (--secrets-dir); an"
        " edit that needs a restart; then the promotion in place (role -> stable, hash"
        " stays) or, with --abort, the abort. Point an application or 'canaryconf watch' at"
        " DIR to see it follow.",
        "canaryconf._cli.simulate:cmd_simulate",
    )
    simulate.add_argument("dir", metavar="DIR", help="the podinfo directory to write")
    simulate.add_argument("--secrets-dir", metavar="DIR", help="a Secret directory to write")
    simulate.add_argument("--abort", action="store_true", help="abort instead of promoting")
    simulate.add_argument(
        "--step-seconds",
        metavar="S",
        type=_positive_float,
        default=2.0,
        help="seconds between steps (default 2)",
    )
    simulate.add_argument("--seed", type=int, help="seed of the generation names")

    demo = _command(
        sub,
        "demo",
        "a canary release and live settings, side by side",
        "Play the simulated canary release in a temporary directory while the example"
        " settings class (canaryconf.demo_settings.ShopSettings) follows it live: each"
        " change, hook call, rejected version and the promotion, as they happen. Needs no"
        " cluster and no configuration; ends by itself.",
        "canaryconf._cli.demo:cmd_demo",
    )
    demo.add_argument("--fast", action="store_true", help="short steps (0.25s), for CI")
    demo.add_argument(
        "--step-seconds", metavar="S", type=_positive_float, help="seconds between steps"
    )
    demo.add_argument("--abort", action="store_true", help="abort instead of promoting")
    return parser


def _resolve(spec: str) -> Callable[[argparse.Namespace], int]:
    import importlib  # noqa: PLC0415

    module_name, _, name = spec.partition(":")
    run: Callable[[argparse.Namespace], int] = getattr(importlib.import_module(module_name), name)
    return run


def main(argv: Sequence[str] | None = None) -> None:
    """Run the ``canaryconf`` command and exit with its code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    code = run(args)
    sys.exit(code)


def run(args: argparse.Namespace) -> int:
    """Run a parsed command; errors become a message on stderr and an exit code."""
    try:
        return _resolve(args.run)(args)
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
