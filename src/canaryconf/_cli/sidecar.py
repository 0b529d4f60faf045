"""``canaryconf sidecar``: watch volumes and tell an application each time they change.

For applications that cannot use the library: like configmap-reload (same webhook: an
empty ``POST``, success on the expected status, retries with exponential backoff), or a
signal to a process sharing the pod's process namespace. With ``--settings`` only a new
version that validates is announced; a rejected one is logged and counted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import logging
import os
import signal
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any

from canaryconf import __version__, signals
from canaryconf._cli.common import (
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    as_cli_error,
    error_lines,
    load_settings,
    retarget,
)
from canaryconf._cli.content import VolumeDigests, digests_class
from canaryconf._cli.watch import change_lines, stop_on_signals
from canaryconf._errors import CanaryConfError
from canaryconf._live import LiveSettings, live
from canaryconf.change import ReloadResult
from canaryconf.settings import CanarySettings
from canaryconf.volume import read_volume

__all__ = ["cmd_sidecar", "parse_signal"]

logger = logging.getLogger("canaryconf.sidecar")

MAX_BACKOFF = 30.0


class NotifyError(Exception):
    """A notification did not get through; ``reason`` is a short machine-readable word."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def parse_signal(text: str) -> signal.Signals:
    """``HUP``, ``SIGHUP``, ``hup`` or ``1`` -> ``signal.SIGHUP``."""
    name = text.strip().upper()
    try:
        return (
            signal.Signals(int(name))
            if name.isdigit()
            else signal.Signals[name if name.startswith("SIG") else f"SIG{name}"]
        )
    except (KeyError, ValueError):
        raise argparse.ArgumentTypeError(f"unknown signal {text!r}") from None


class Webhook:
    """An HTTP request without a body; userinfo in the URL becomes basic auth. ``name``
    (for logs and metric labels) leaves out userinfo and query, which may hold tokens."""

    def __init__(self, url: str, method: str, status: int | None, timeout: float) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CliError(EXIT_USAGE, "--webhook: expected an http:// or https:// URL")
        self.headers = {"User-Agent": f"canaryconf-sidecar/{__version__}"}
        if parts.username is not None:
            user = urllib.parse.unquote(parts.username)
            password = urllib.parse.unquote(parts.password or "")
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            self.headers["Authorization"] = f"Basic {token}"
        netloc = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
        if ":" in (parts.hostname or "") and not netloc.startswith("["):
            netloc = f"[{parts.hostname}]" + (f":{parts.port}" if parts.port else "")
        self.url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
        self.name = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path or "/", "", ""))
        self.method = method.upper()
        self.status = status
        self.timeout = timeout
        self.last_status: int | None = None

    def _request(self) -> int:
        data = b"" if self.method in ("POST", "PUT", "PATCH") else None
        # The scheme was checked to be http or https in __init__.
        request = urllib.request.Request(  # noqa: S310
            self.url, data=data, headers=self.headers, method=self.method
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return int(response.status)
        except urllib.error.HTTPError as exc:
            exc.close()
            return int(exc.code)
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise NotifyError("client_request_do", f"request failed: {reason}") from None

    async def notify(self) -> None:
        self.last_status = None
        status = await asyncio.to_thread(self._request)
        self.last_status = status
        ok = status == self.status if self.status is not None else 200 <= status < 300
        if not ok:
            expected = self.status if self.status is not None else "2xx"
            raise NotifyError("client_response", f"answered {status}, expected {expected}")


class ProcessSignal:
    """A signal to ``pid``, or to the pid read from ``pid_file`` at each notification (so
    a restarted application is still found)."""

    def __init__(self, signum: signal.Signals, pid: int | None, pid_file: str | None) -> None:
        self.signum = signum
        self.pid = pid
        self.pid_file = pid_file
        target = f"pid {pid}" if pid is not None else f"pid-file {pid_file}"
        self.name = f"signal {signum.name} to {target}"
        self.last_status: int | None = None

    def _pid(self) -> int:
        if self.pid is not None:
            return self.pid
        assert self.pid_file is not None
        try:
            with open(self.pid_file, encoding="ascii") as handle:
                return int(handle.read().strip())
        except (OSError, ValueError) as exc:
            raise NotifyError(
                "pid_file", f"cannot read a pid from {self.pid_file}: {exc}"
            ) from None

    async def notify(self) -> None:
        pid = self._pid()
        try:
            os.kill(pid, self.signum)
        except ProcessLookupError:
            raise NotifyError("no_process", f"no process {pid}") from None
        except PermissionError:
            raise NotifyError("permission", f"not allowed to signal process {pid}") from None


Target = Webhook | ProcessSignal


class SidecarMetrics:
    """The sidecar's counters, in a registry of their own (prometheus_client is imported
    only when metrics are asked for)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge  # noqa: PLC0415

        self.registry = CollectorRegistry()
        ns = "canaryconf_sidecar"
        r = self.registry
        self.changes = Counter(f"{ns}_changes", "Changes of the watched volumes.", registry=r)
        self.rejected = Counter(
            f"{ns}_rejected", "New versions that did not validate (not announced).", registry=r
        )
        self.notifications = Counter(
            f"{ns}_notifications",
            "Notifications after retries, by target and result.",
            ["target", "result"],
            registry=r,
        )
        self.attempts = Counter(
            f"{ns}_requests",
            "Attempts, by target and status code.",
            ["target", "status_code"],
            registry=r,
        )
        self.errors = Counter(
            f"{ns}_request_errors",
            "Failed attempts, by target and reason.",
            ["target", "reason"],
            registry=r,
        )
        self.last_error = Gauge(
            f"{ns}_last_notification_error",
            "1 if the last notification of the target failed, else 0.",
            ["target"],
            registry=r,
        )
        self.duration = Gauge(
            f"{ns}_last_request_duration_seconds",
            "Duration of the last successful attempt.",
            ["target"],
            registry=r,
        )
        self.last_change = Gauge(
            f"{ns}_last_change_timestamp_seconds",
            "Unix time of the last change seen.",
            registry=r,
        )


class Notifier:
    """Delivers one notification per change to every target, in order, with retries.
    Changes that arrive while a delivery runs are coalesced into one more round."""

    def __init__(
        self,
        targets: Sequence[Target],
        *,
        retries: int,
        backoff: float,
        metrics: SidecarMetrics | None,
    ) -> None:
        self.targets = list(targets)
        self.retries = retries
        self.backoff = backoff
        self.metrics = metrics
        self.pending = asyncio.Event()
        self.delivered = 0
        self.failed = 0

    def changed(self) -> None:
        self.pending.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if not await _wait_either(self.pending, stop, None):
                return
            self.pending.clear()
            for target in self.targets:
                if stop.is_set():
                    return
                await self._deliver(target, stop)

    async def _deliver(self, target: Target, stop: asyncio.Event) -> None:
        metrics = self.metrics
        delay = self.backoff
        for attempt in range(self.retries + 1):
            started = time.perf_counter()
            try:
                await target.notify()
            except NotifyError as exc:
                if metrics is not None:
                    metrics.errors.labels(target.name, exc.reason).inc()
                    if target.last_status is not None:
                        metrics.attempts.labels(target.name, str(target.last_status)).inc()
                more = attempt < self.retries
                logger.warning(
                    "%s: attempt %d of %d failed: %s%s",
                    target.name,
                    attempt + 1,
                    self.retries + 1,
                    exc,
                    f"; retrying in {delay:g}s" if more else "",
                )
                if not more or await _wait_either(stop, None, delay):
                    break
                delay = min(delay * 2, MAX_BACKOFF)
                continue
            if metrics is not None:
                if target.last_status is not None:
                    metrics.attempts.labels(target.name, str(target.last_status)).inc()
                metrics.notifications.labels(target.name, "success").inc()
                metrics.last_error.labels(target.name).set(0)
                metrics.duration.labels(target.name).set(time.perf_counter() - started)
            self.delivered += 1
            logger.info("%s: notified", target.name)
            return
        self.failed += 1
        if metrics is not None:
            metrics.notifications.labels(target.name, "failure").inc()
            metrics.last_error.labels(target.name).set(1)
        logger.error("%s: giving up on this change", target.name)


async def _wait_either(
    first: asyncio.Event, second: asyncio.Event | None, timeout: float | None
) -> bool:
    """Wait until ``first`` (True) or ``second`` is set, or ``timeout`` passes (False)."""
    waiters = {asyncio.ensure_future(first.wait())}
    if second is not None:
        waiters.add(asyncio.ensure_future(second.wait()))
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    return first.is_set()


def _targets(args: argparse.Namespace) -> list[Target]:
    targets: list[Target] = [
        Webhook(url, args.webhook_method, args.webhook_status_code, args.webhook_timeout)
        for url in args.webhook or []
    ]
    if args.pid is not None or args.pid_file is not None:
        if args.pid is not None and args.pid_file is not None:
            raise CliError(EXIT_USAGE, "give --pid or --pid-file, not both")
        targets.append(ProcessSignal(args.signal or signal.SIGHUP, args.pid, args.pid_file))
    elif args.signal is not None:
        raise CliError(EXIT_USAGE, "--signal needs --pid or --pid-file")
    if not targets:
        raise CliError(EXIT_USAGE, "nothing to notify: give --webhook URL, --pid or --pid-file")
    return targets


def _open(args: argparse.Namespace) -> LiveSettings[CanarySettings]:
    dirs = [*(args.dirs or []), *(args.volume_dir or [])]
    for directory in [*dirs, *(args.configmap_dir or []), *(args.secrets_dir or [])]:
        try:
            read_volume(directory)
        except CanaryConfError as exc:
            raise as_cli_error(exc, directory) from None
    target: type[CanarySettings]
    if args.settings:
        if len(dirs) > 1:
            raise CliError(EXIT_USAGE, "with --settings, give at most one DIR (the podinfo volume)")
        target = retarget(
            load_settings(args.settings),
            downward=dirs[0] if dirs else None,
            configmaps=args.configmap_dir,
            secrets=args.secrets_dir,
        )
    elif not dirs:
        raise CliError(EXIT_USAGE, "give at least one volume directory to watch")
    else:
        target = digests_class(dirs)
    try:
        return live(target, force_polling=args.poll, poll_interval=args.poll_interval)
    except CanaryConfError as exc:
        raise as_cli_error(exc, f"{target.__name__} does not load") from None


def _describe(result: ReloadResult[Any]) -> str:
    change = result.change
    if change is None:
        return "restart-only fields changed: " + ", ".join(sorted(result.restart_fields))
    if isinstance(change.new, VolumeDigests):
        old, new = change.old.files, change.new.files
        names = sorted(set(old) | set(new))
        parts = [
            f"{n} ({'added' if n not in old else 'removed' if n not in new else 'modified'})"
            for n in names
            if old.get(n) != new.get(n)
        ]
        return "changed: " + ", ".join(parts)
    return "; ".join(change_lines(change))


async def _run(
    settings: LiveSettings[CanarySettings],
    notifier: Notifier,
    metrics: SidecarMetrics | None,
) -> None:
    stop = asyncio.Event()
    stop_on_signals(stop)

    def on_reloaded(sender: Any, result: ReloadResult[Any], **_: Any) -> None:
        if result.failed:
            logger.warning(
                "new version rejected, not announced: %s",
                "; ".join(error_lines(result.error)) if result.error else "unknown error",
            )
            if metrics is not None:
                metrics.rejected.inc()
            return
        if not (result.applied or result.restart_fields):
            return
        logger.info("%s", _describe(result))
        if metrics is not None:
            metrics.changes.inc()
            metrics.last_change.set(time.time())
        notifier.changed()

    signals.reloaded.connect(on_reloaded, sender=settings, weak=False)
    loop = asyncio.get_running_loop()
    watch = loop.create_task(settings.watch(stop))
    worker = loop.create_task(notifier.run(stop))
    names = ", ".join(t.name for t in notifier.targets)
    logger.info("watching %s; notifying %s", ", ".join(settings.volume_dirs), names)
    try:
        await asyncio.wait(
            {watch, worker, asyncio.ensure_future(stop.wait())},
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        stop.set()
        for task in (watch, worker):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        signals.reloaded.disconnect(on_reloaded, sender=settings)
    logger.info(
        "stopped: %d notification(s) delivered, %d given up", notifier.delivered, notifier.failed
    )


def cmd_sidecar(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # The sidecar tells of each change itself; canaryconf's own info lines would repeat it.
    logging.getLogger("canaryconf").setLevel(logging.WARNING)
    logger.setLevel(logging.INFO)
    targets = _targets(args)
    settings = _open(args)
    metrics: SidecarMetrics | None = None
    server = None
    if args.metrics_port is not None:
        try:
            from canaryconf import metrics as core_metrics  # noqa: PLC0415
        except ImportError as exc:
            raise CliError(EXIT_USAGE, f"--metrics-port: {exc}") from None
        metrics = SidecarMetrics()
        if args.settings:
            core_metrics.instrument(settings, metrics.registry)
        try:
            server = core_metrics.start_http_server(
                args.metrics_port, args.metrics_address, metrics.registry
            )
        except OSError as exc:
            raise CliError(EXIT_USAGE, f"--metrics-port {args.metrics_port}: {exc}") from None
        logger.info("metrics on %s", server.url)
    notifier = Notifier(
        targets, retries=args.webhook_retries, backoff=args.webhook_backoff, metrics=metrics
    )
    try:
        asyncio.run(_run(settings, notifier, metrics))
    finally:
        if server is not None:
            server.close()
    return EXIT_OK
