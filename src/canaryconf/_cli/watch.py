"""``canaryconf watch``: print each change of a volume as it happens."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

from canaryconf import signals
from canaryconf._cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    REDACTED,
    CliError,
    error_lines,
    map_diff,
    now_iso,
)
from canaryconf._cli.content import VolumeContent
from canaryconf._cli.options import (
    COUNT,
    SECONDS,
    VolumeOptions,
    WatchOptions,
    add_volume_options,
    add_watch_options,
    format_option,
    non_negative_float,
    non_negative_int,
)
from canaryconf._cli.session import Session
from canaryconf._live import LiveSettings
from canaryconf.change import Change, ReloadResult
from canaryconf.settings import CanarySettings

__all__ = ["WatchArgs", "add_arguments", "change_lines", "parse", "run", "stop_on_signals"]

NAME = "watch"
SUMMARY = "print each change of a volume as it happens"
DESCRIPTION = (
    "Follow a volume with canaryconf.live and print every change with a timestamp:"
    " applied changes, rejected versions (the last good settings stay) and changes"
    " that need a restart. Without --settings, every label, annotation and file of DIR"
    " and of the volumes given with --configmap-dir, --secrets-dir, --projected-dir (one"
    " option per source kind) is followed; a Secret file's changes are shown without"
    " values, and so is every file of a projected volume (without a settings class,"
    " which of its items are Secret items is not known). Stops on SIGINT or SIGTERM,"
    " after --count changes or --timeout seconds."
)


@dataclass(frozen=True)
class WatchArgs:
    volumes: VolumeOptions
    watch: WatchOptions = field(default_factory=WatchOptions)
    format: str = "text"
    count: int | None = None
    timeout: float | None = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_volume_options(parser)
    add_watch_options(parser)
    format_option(parser, {"text": "lines for people", "json": "one JSON object per event"}, "text")
    parser.add_argument(
        "--count", metavar=COUNT, type=non_negative_int, help="stop after N changes"
    )
    parser.add_argument(
        "--timeout",
        metavar=SECONDS,
        type=non_negative_float,
        help="stop after SECONDS (exit 1 if --count changes were not seen)",
    )


def parse(ns: argparse.Namespace) -> WatchArgs:
    return WatchArgs(
        volumes=VolumeOptions.from_namespace(ns),
        watch=WatchOptions.from_namespace(ns),
        format=ns.format,
        count=ns.count,
        timeout=ns.timeout,
    )


def change_lines(change: Change[Any]) -> list[str]:
    """One line per changed value, secrets redacted. For the generic
    :class:`VolumeContent`, label by label and file by file."""
    lines: list[str] = []
    if isinstance(change.new, VolumeContent):
        for name in sorted(change.fields):
            secret = name in VolumeContent.SECRET_FIELDS

            def redact(key: str, value: str, secret: bool = secret) -> str:
                return REDACTED if secret else value

            old, new = getattr(change.old, name), getattr(change.new, name)
            lines.extend(f"{line[:2]}{name} {line[2:]}" for line in map_diff(old, new, redact))
        return lines
    return change.lines()


def stop_on_signals(stop: asyncio.Event) -> None:
    """Set ``stop`` on SIGINT or SIGTERM (in the running loop)."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)


def _event(result: ReloadResult[Any]) -> dict[str, Any]:
    event: dict[str, Any] = {
        "time": now_iso(),
        "status": _status(result),
        "generation": result.generation,
    }
    if result.change is not None:
        event["changes"] = change_lines(result.change)
    if result.error is not None:
        event["problems"] = error_lines(result.error)
    if result.restart_fields:
        event["restart_required"] = sorted(result.restart_fields)
    return event


def _status(result: ReloadResult[Any]) -> str:
    if result.failed:
        return "rejected"
    if result.status == "unchanged" and result.restart_fields:
        return "restart"
    return result.status


def _print_event(event: dict[str, Any], fmt: str, out: TextIO) -> None:
    if fmt == "json":
        print(json.dumps(event, ensure_ascii=False), file=out, flush=True)
        return
    status = event["status"]
    head = f"{event['time']}  {status:<9}"
    if event.get("generation"):
        head += f"  {'kept ' if status == 'rejected' else ''}generation {event['generation']}"
    lines = [head]
    lines.extend(f"    {line}" for line in event.get("changes", ()))
    if status == "rejected":
        lines.append("    the last good settings stay; problems:")
        lines.extend(f"      {line}" for line in event.get("problems", ()))
    if event.get("restart_required"):
        fields = ", ".join(event["restart_required"])
        lines.append(f"    restart required (not applied live): {fields}")
    print("\n".join(lines), file=out, flush=True)


async def _watch(settings: LiveSettings[CanarySettings], args: WatchArgs) -> int:
    out = sys.stdout
    stop = asyncio.Event()
    stop_on_signals(stop)
    enough = asyncio.Event()
    seen = 0

    def on_reloaded(sender: Any, result: ReloadResult[Any], **_: Any) -> None:
        nonlocal seen
        if result.status == "unchanged" and not result.restart_fields:
            return
        _print_event(_event(result), args.format, out)
        seen += 1
        if args.count and seen >= args.count:
            enough.set()

    signals.reloaded.connect(on_reloaded, sender=settings, weak=False)
    loaded = {
        "time": now_iso(),
        "status": "watching",
        "generation": settings.generation,
        "settings": settings.settings_class.__name__,
        "volumes": settings.volume_dirs,
    }
    if args.format == "json":
        print(json.dumps(loaded, ensure_ascii=False), file=out, flush=True)
    else:
        print(
            f"{loaded['time']}  watching   {', '.join(settings.volume_dirs)}"
            f" ({settings.settings_class.__name__}, generation {settings.generation});"
            " Ctrl-C to stop",
            file=out,
            flush=True,
        )
    task = asyncio.get_running_loop().create_task(settings.watch(stop))
    waiters = {
        asyncio.ensure_future(stop.wait()),
        asyncio.ensure_future(enough.wait()),
        task,
    }
    try:
        done, _ = await asyncio.wait(
            waiters, timeout=args.timeout, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        stop.set()
        for waiter in waiters:
            if waiter is not task:
                waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        signals.reloaded.disconnect(on_reloaded, sender=settings)
    if task in done and not task.cancelled() and task.exception() is not None:
        raise CliError(EXIT_FAILED, f"watching failed: {task.exception()}")
    if not done and args.count and seen < args.count:
        print(
            f"canaryconf watch: timed out after {args.timeout:g}s with {seen} of"
            f" {args.count} changes",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return EXIT_OK


def quiet_core_warnings() -> None:
    """Keep only errors of canaryconf's own log: the command prints what its warnings say
    (rejected versions, restart-required fields) already."""
    core = logging.getLogger("canaryconf")
    if not any(getattr(h, "_canaryconf_cli", False) for h in core.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setLevel(logging.ERROR)
        handler._canaryconf_cli = True  # type: ignore[attr-defined]
        core.addHandler(handler)


def run(args: WatchArgs) -> int:
    quiet_core_warnings()
    settings = Session(args.volumes).follow(args.watch)
    return asyncio.run(_watch(settings, args))
