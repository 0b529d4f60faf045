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
import dataclasses
import http.client
import ipaddress
import logging
import os
import signal
import socket
import ssl
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from canaryconf import __version__, signals
from canaryconf._cli.common import EXIT_OK, EXIT_USAGE, CliError, error_lines
from canaryconf._cli.content import VolumeDigests, digests_class
from canaryconf._cli.options import (
    COUNT,
    DIR,
    FILE,
    SECONDS,
    VolumeOptions,
    WatchOptions,
    add_volume_options,
    add_watch_options,
    non_negative_float,
    non_negative_int,
)
from canaryconf._cli.session import Session
from canaryconf._cli.watch import change_lines, stop_on_signals
from canaryconf._errors import VolumeError
from canaryconf._live import LiveSettings
from canaryconf.change import ReloadResult
from canaryconf.settings import CanarySettings
from canaryconf.volume import read_regular_file

__all__ = ["SidecarArgs", "add_arguments", "parse", "parse_signal", "parse_webhook_url", "run"]

NAME = "sidecar"
SUMMARY = "notify an application when a volume changes"
DESCRIPTION = (
    "Watch volumes and notify an application on each change: the HTTP request"
    " configmap-reload sends (an empty POST), retried with exponential backoff,"
    " or a signal to a process (shareProcessNamespace: true in the pod). Without"
    " --settings, any change of a file of DIR, --volume-dir or a source kind's option"
    " (--configmap-dir, --secrets-dir, --projected-dir, ...) is one; with --settings,"
    " only versions that validate are announced. Prometheus metrics with"
    " --metrics-port. Stops cleanly on SIGTERM, also in the middle of an attempt."
)

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


def parse_webhook_url(text: str) -> str:
    """``--webhook``'s value, checked when the command line is parsed: an http or https URL
    with a host and a valid port. The message never repeats the URL (it may hold a
    password)."""
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise argparse.ArgumentTypeError("expected an http:// or https:// URL")
    if not parts.hostname:
        raise argparse.ArgumentTypeError("the URL has no host")
    if port == 0:
        raise argparse.ArgumentTypeError("port 0 is not a port one can send to")
    return text


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address: never sent through a proxy (as Go's net/http)."""
    if host.lower().rstrip(".") in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _Attempt:
    """The connections of one webhook attempt, so the event loop can cut them when the
    attempt's deadline passes or the sidecar stops (a server that drips one byte under the
    socket timeout would otherwise hold the attempt forever)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connections: list[http.client.HTTPConnection] = []
        self.aborted = False

    def track(self, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            self._connections.append(connection)

    def check(self, connection: http.client.HTTPConnection) -> None:
        """Called once connected: a connection made after the abort is closed at once."""
        if self.aborted:
            connection.close()
            raise OSError("the attempt was cut short")

    def abort(self) -> None:
        with self._lock:
            self.aborted = True
            connections = list(self._connections)
        for connection in connections:
            sock = connection.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def _tracked(base: type[http.client.HTTPConnection], attempt: _Attempt) -> Any:
    class Tracked(base):  # type: ignore[valid-type,misc]
        def connect(self) -> None:
            super().connect()
            attempt.check(self)

    def connect(host: str, **kwargs: Any) -> http.client.HTTPConnection:
        connection: http.client.HTTPConnection = Tracked(host, **kwargs)
        attempt.track(connection)
        return connection

    return connect


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, attempt: _Attempt) -> None:
        super().__init__()
        self.attempt = attempt

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_tracked(http.client.HTTPConnection, self.attempt), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, attempt: _Attempt) -> None:
        super().__init__()
        self.attempt = attempt

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        connection = _tracked(http.client.HTTPSConnection, self.attempt)
        return self.do_open(connection, req, context=ssl.create_default_context())


class _Redirects(urllib.request.HTTPRedirectHandler):
    """A redirect is not followed (the answer counts as a failed delivery), unless
    ``follow`` is set and it stays on the same scheme, host and port: credentials are never
    sent to another place."""

    def __init__(self, follow: bool) -> None:
        self.follow = follow

    def redirect_request(  # noqa: PLR0917 - urllib's signature
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        if not self.follow:
            return None
        old, new = urllib.parse.urlsplit(req.full_url), urllib.parse.urlsplit(newurl)
        try:
            same = (old.scheme, old.hostname, old.port) == (new.scheme, new.hostname, new.port)
        except ValueError:
            same = False
        if not same:
            return None
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class Webhook:
    """An HTTP request without a body; userinfo in the URL becomes basic auth. ``name``
    (for logs and metric labels) leaves out userinfo and query, which may hold tokens.

    ``timeout`` bounds a whole attempt (connect, send, the answer's status line and
    headers); a loopback URL never goes through a proxy; a redirect is a failed delivery
    unless ``follow_redirects`` (same scheme, host and port only)."""

    def __init__(
        self,
        url: str,
        method: str,
        status: int | None,
        timeout: float,
        *,
        follow_redirects: bool = False,
    ) -> None:
        try:
            parse_webhook_url(url)
        except argparse.ArgumentTypeError as exc:
            raise CliError(EXIT_USAGE, f"--webhook: {exc}") from None
        parts = urllib.parse.urlsplit(url)
        self.headers = {"User-Agent": f"canaryconf-sidecar/{__version__}"}
        if parts.username is not None:
            user = urllib.parse.unquote(parts.username)
            password = urllib.parse.unquote(parts.password or "")
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            self.headers["Authorization"] = f"Basic {token}"
        host = parts.hostname or ""
        shown_host = f"[{host}]" if ":" in host else host
        netloc = shown_host if parts.port is None else f"{shown_host}:{parts.port}"
        self.url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
        self.name = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path or "/", "", ""))
        self.method = method.upper()
        self.status = status
        self.timeout = timeout
        self.follow_redirects = follow_redirects
        self.loopback = is_loopback(host)
        self.last_status: int | None = None

    def _opener(self, attempt: _Attempt) -> urllib.request.OpenerDirector:
        proxies = urllib.request.ProxyHandler({} if self.loopback else None)
        return urllib.request.build_opener(
            proxies,
            _Redirects(self.follow_redirects),
            _HTTPHandler(attempt),
            _HTTPSHandler(attempt),
        )

    def _request(self, attempt: _Attempt) -> int:
        data = b"" if self.method in ("POST", "PUT", "PATCH") else None
        # The scheme was checked to be http or https in __init__.
        request = urllib.request.Request(  # noqa: S310
            self.url, data=data, headers=self.headers, method=self.method
        )
        try:
            with self._opener(attempt).open(request, timeout=self.timeout) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            exc.close()
            return int(exc.code)
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or type(exc).__name__
            raise NotifyError("client_request_do", f"request failed: {reason}") from None

    async def notify(self, stop: asyncio.Event) -> None:
        """One attempt, in a thread of its own (the event loop never waits for it): it ends
        when the answer comes, ``timeout`` seconds pass, or ``stop`` is set."""
        self.last_status = None
        loop = asyncio.get_running_loop()
        outcome: asyncio.Future[int] = loop.create_future()
        attempt = _Attempt()

        def settle(status: int | None, error: BaseException | None) -> None:
            if outcome.done():
                return
            if error is not None:
                outcome.set_exception(error)
            else:
                outcome.set_result(status or 0)

        def work() -> None:
            try:
                status, error = self._request(attempt), None
            except BaseException as exc:  # handed to the event loop
                status, error = None, exc
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
                loop.call_soon_threadsafe(settle, status, error)

        threading.Thread(target=work, name="canaryconf-webhook", daemon=True).start()
        stopping: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
        waiting: set[asyncio.Future[Any]] = {outcome, stopping}
        try:
            await asyncio.wait(waiting, timeout=self.timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not outcome.done():
            attempt.abort()
            outcome.cancel()
            if stop.is_set():
                raise NotifyError("stopped", "attempt interrupted: the sidecar is stopping")
            raise NotifyError("timeout", f"no answer within {self.timeout:g}s")
        status = outcome.result()
        self.last_status = status
        ok = status == self.status if self.status is not None else 200 <= status < 300
        if ok:
            return
        expected = self.status if self.status is not None else "2xx"
        if 300 <= status < 400:
            raise NotifyError(
                "client_redirect",
                f"answered {status} (a redirect, not followed: it counts as a failure), "
                f"expected {expected}",
            )
        raise NotifyError("client_response", f"answered {status}, expected {expected}")


#: A pid file holds a number and a newline; anything bigger is not one.
MAX_PID_FILE_BYTES = 64


class ProcessSignal:
    """A signal to ``pid``, or to the pid read from ``pid_file`` at each notification (so
    a restarted application is still found). The pid file is read as volume files are:
    a regular file only (a FIFO or a device is refused), at most 64 bytes."""

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
            text = read_regular_file(self.pid_file, MAX_PID_FILE_BYTES)
        except VolumeError as exc:
            raise NotifyError("pid_file", f"cannot read a pid: {exc}") from None
        try:
            pid = int(text.strip())
        except ValueError:
            raise NotifyError("pid_file", f"{self.pid_file} does not hold a pid") from None
        if pid <= 0:
            raise NotifyError("pid_file", f"{self.pid_file} does not hold a pid")
        return pid

    async def notify(self, stop: asyncio.Event) -> None:
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
                await target.notify(stop)
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


def _targets(args: SidecarArgs) -> list[Target]:
    targets: list[Target] = [
        Webhook(
            url,
            args.webhook_method,
            args.webhook_status_code,
            args.webhook_timeout,
            follow_redirects=args.webhook_follow_redirects,
        )
        for url in args.webhooks
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


def _open(args: SidecarArgs) -> LiveSettings[CanarySettings]:
    dirs = list(args.dirs)
    volumes = args.volumes
    if volumes.settings:
        if len(dirs) > 1:
            raise CliError(EXIT_USAGE, "with --settings, give at most one DIR (the podinfo volume)")
        session = Session(dataclasses.replace(volumes, dir=dirs[0] if dirs else None))
        return session.follow(args.watch)
    session = Session(volumes)
    # Every directory given: DIR and --volume-dir, and those of each source kind's option.
    watched = [*dirs, *session.other_dirs]
    if not watched:
        raise CliError(EXIT_USAGE, "give at least one volume directory to watch")
    return session.follow(args.watch, lambda: digests_class(watched), extra_dirs=dirs)


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


def run(args: SidecarArgs) -> int:
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
        if args.volumes.settings:
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


@dataclass(frozen=True)
class SidecarArgs:
    dirs: tuple[str, ...]
    volumes: VolumeOptions
    watch: WatchOptions
    webhooks: tuple[str, ...] = ()
    webhook_method: str = "POST"
    webhook_status_code: int | None = None
    webhook_follow_redirects: bool = False
    webhook_retries: int = 3
    webhook_timeout: float = 10.0
    webhook_backoff: float = 1.0
    signal: signal.Signals | None = None
    pid: int | None = None
    pid_file: str | None = None
    metrics_port: int | None = None
    metrics_address: str = "0.0.0.0"  # noqa: S104  (a sidecar is scraped from outside the pod)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dirs", metavar=DIR, nargs="*", help="volume directories to watch")
    parser.add_argument(
        "--volume-dir", metavar=DIR, action="append", help="same as DIR (configmap-reload)"
    )
    add_volume_options(parser, dir_arg=False)
    parser.add_argument(
        "--webhook",
        "--webhook-url",
        metavar="URL",
        action="append",
        type=parse_webhook_url,
        help="URL to call on each change (repeatable; user:password@ becomes basic auth)",
    )
    parser.add_argument(
        "--webhook-method", metavar="METHOD", default="POST", help="HTTP method (default POST)"
    )
    parser.add_argument(
        "--webhook-status-code",
        metavar="CODE",
        type=int,
        help="the status that means success (default: any 2xx)",
    )
    parser.add_argument(
        "--webhook-follow-redirects",
        action="store_true",
        help="follow a redirect to the same scheme, host and port (default: a redirect is a"
        " failed delivery; one to another host is never followed)",
    )
    parser.add_argument(
        "--webhook-retries",
        metavar=COUNT,
        type=non_negative_int,
        default=3,
        help="retries after a failed attempt (default 3); also for signals",
    )
    parser.add_argument(
        "--webhook-timeout",
        metavar=SECONDS,
        type=non_negative_float,
        default=10.0,
        help="seconds an attempt may take in all, answer included (default 10)",
    )
    parser.add_argument(
        "--webhook-backoff",
        metavar=SECONDS,
        type=non_negative_float,
        default=1.0,
        help="first retry delay, doubled each time up to 30 (default 1)",
    )
    parser.add_argument(
        "--signal", metavar="SIGNAL", type=parse_signal, help="signal to send (default HUP)"
    )
    parser.add_argument("--pid", metavar="PID", type=int, help="process to signal")
    parser.add_argument(
        "--pid-file", metavar=FILE, help="file holding the pid to signal (read each time)"
    )
    parser.add_argument(
        "--metrics-port",
        metavar="PORT",
        type=int,
        help="serve Prometheus metrics on this port (0: any free port); needs"
        " canaryconf[prometheus]",
    )
    parser.add_argument(
        "--metrics-address",
        metavar="ADDRESS",
        default="0.0.0.0",  # noqa: S104  (a sidecar is scraped from outside the pod)
        help="default 0.0.0.0",
    )
    add_watch_options(parser)


def parse(ns: argparse.Namespace) -> SidecarArgs:
    return SidecarArgs(
        dirs=(*(ns.dirs or ()), *(ns.volume_dir or ())),
        volumes=VolumeOptions.from_namespace(argparse.Namespace(**vars(ns), dir=None)),
        watch=WatchOptions.from_namespace(ns),
        webhooks=tuple(ns.webhook or ()),
        webhook_method=ns.webhook_method,
        webhook_status_code=ns.webhook_status_code,
        webhook_follow_redirects=ns.webhook_follow_redirects,
        webhook_retries=ns.webhook_retries,
        webhook_timeout=ns.webhook_timeout,
        webhook_backoff=ns.webhook_backoff,
        signal=ns.signal,
        pid=ns.pid,
        pid_file=ns.pid_file,
        metrics_port=ns.metrics_port,
        metrics_address=ns.metrics_address,
    )
