"""``canaryconf sidecar``'s delivery, against real HTTP servers on 127.0.0.1: redirects are
failed deliveries and never carry credentials to another host, loopback is never proxied,
``--webhook-timeout`` bounds a whole attempt, SIGTERM interrupts one, pid files are read
with the volume checks, bad URLs are usage errors."""

from __future__ import annotations

import asyncio
import http.server
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from canaryconf._cli.sidecar import NotifyError, ProcessSignal, Webhook
from canaryconf.testing import KubeletWriter

DEADLINE = 30.0


class Server:
    """An HTTP server on ``host`` answering with ``answer(handler)``; records each
    request's path and Authorization header."""

    def __init__(self, answer: Callable[[Any], None], host: str = "127.0.0.1") -> None:
        self.requests: list[tuple[str, str | None]] = []
        self.arrived = threading.Event()
        self.closing = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self) -> None:
                server.requests.append((self.path, self.headers.get("Authorization")))
                server.arrived.set()
                answer(self)

            do_GET = do_POST = _any

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://{host}:{self.httpd.server_port}"

    def close(self) -> None:
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers() -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(answer: Callable[[Any], None], host: str = "127.0.0.1") -> Server:
        server = Server(answer, host)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


def ok(handler: Any) -> None:
    handler.send_response(200)
    handler.send_header("Content-Length", "0")
    handler.end_headers()


def redirect_to(location: Callable[[], str]) -> Callable[[Any], None]:
    def answer(handler: Any) -> None:
        handler.send_response(302)
        handler.send_header("Location", location())
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return answer


def notify(target: Webhook | ProcessSignal, stop: asyncio.Event | None = None) -> None:
    async def main() -> None:
        await target.notify(stop or asyncio.Event())

    asyncio.run(main())


def webhook(url: str, *, timeout: float = DEADLINE, follow: bool = False) -> Webhook:
    return Webhook(url, "POST", None, timeout, follow_redirects=follow)


@pytest.mark.parametrize("follow", [False, True])
def test_a_redirect_to_another_host_is_a_failure_and_gets_no_credentials(
    servers: Callable[..., Server], follow: bool
) -> None:
    elsewhere = servers(ok, host="127.0.0.2")  # another host (all of 127/8 is loopback)
    first = servers(redirect_to(lambda: f"{elsewhere.base}/steal"))
    hook = webhook(first.base.replace("http://", "http://user:pa55@") + "/-/reload", follow=follow)

    with pytest.raises(NotifyError) as failed:
        notify(hook)

    assert failed.value.reason == "client_redirect"
    assert first.requests == [("/-/reload", "Basic dXNlcjpwYTU1")]
    assert elsewhere.requests == []


def test_a_redirect_to_the_same_host_is_followed_only_when_allowed(
    servers: Callable[..., Server],
) -> None:
    def answer(handler: Any) -> None:
        if handler.path == "/moved":
            ok(handler)
        else:
            redirect_to(lambda: "/moved")(handler)

    server = servers(answer)
    with pytest.raises(NotifyError) as failed:
        notify(webhook(f"{server.base}/-/reload"))
    assert failed.value.reason == "client_redirect"
    assert [path for path, _ in server.requests] == ["/-/reload"]

    notify(webhook(f"{server.base}/-/reload", follow=True))
    assert [path for path, _ in server.requests] == ["/-/reload", "/-/reload", "/moved"]


def test_loopback_is_never_sent_through_a_proxy(
    servers: Callable[..., Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = servers(ok)
    app = servers(ok)
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(name, proxy.base)
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    for url in (f"{app.base}/-/reload", f"http://localhost:{app.httpd.server_port}/-/reload"):
        notify(webhook(url))
    assert [path for path, _ in app.requests] == ["/-/reload", "/-/reload"]
    assert proxy.requests == []


def drip(server_closing: Callable[[], threading.Event]) -> Callable[[Any], None]:
    """An answer that never ends: a status line, then one header byte at a time, each well
    under any socket timeout, until the client goes away or the server closes."""

    def answer(handler: Any) -> None:
        handler.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        while not server_closing().wait(0.05):
            try:
                handler.wfile.write(b"a")
                handler.wfile.flush()
            except OSError:
                return

    return answer


def test_the_timeout_bounds_a_whole_attempt(servers: Callable[..., Server]) -> None:
    holder: list[Server] = []
    server = servers(drip(lambda: holder[0].closing))
    holder.append(server)
    # 0.5 s per attempt, while each byte comes every 0.05 s: a per-read timeout never fires.
    with pytest.raises(NotifyError) as failed:
        notify(webhook(f"{server.base}/-/reload", timeout=0.5))
    assert failed.value.reason == "timeout"
    assert server.requests


def test_stopping_interrupts_an_attempt(servers: Callable[..., Server]) -> None:
    holder: list[Server] = []
    server = servers(drip(lambda: holder[0].closing))
    holder.append(server)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        # Stop once the request has reached the server (an event, not a delay).
        threading.Thread(
            target=lambda: server.arrived.wait(DEADLINE) and loop.call_soon_threadsafe(stop.set),
            daemon=True,
        ).start()
        await webhook(f"{server.base}/-/reload", timeout=3600).notify(stop)

    with pytest.raises(NotifyError) as failed:
        asyncio.run(asyncio.wait_for(main(), DEADLINE))
    assert failed.value.reason == "stopped"


def test_sigterm_interrupts_a_webhook_attempt(
    servers: Callable[..., Server], tmp_path: Path
) -> None:
    holder: list[Server] = []
    server = servers(drip(lambda: holder[0].closing))
    holder.append(server)
    writer = KubeletWriter(tmp_path / "config")
    writer.write({"app.conf": "a=1"})
    sidecar = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "canaryconf",
            "sidecar",
            str(writer.path),
            "--webhook",
            f"{server.base}/-/reload",
            "--webhook-timeout",
            "3600",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert sidecar.stdout is not None
        for line in sidecar.stdout:  # until it watches
            if "notifying" in line:
                break
        writer.write({"app.conf": "a=2"})
        assert server.arrived.wait(DEADLINE), "the sidecar never called"
        sidecar.send_signal(signal.SIGTERM)
        output, _ = sidecar.communicate(timeout=DEADLINE)
    finally:
        if sidecar.poll() is None:
            sidecar.kill()
            sidecar.communicate(timeout=DEADLINE)
    assert sidecar.returncode == 0, output
    assert "interrupted" in output


@pytest.mark.parametrize("kind", ["fifo", "device", "huge", "garbage"])
def test_a_pid_file_is_read_with_the_volume_checks(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "app.pid"
    if kind == "fifo":
        os.mkfifo(path)  # nobody writes: a blocking open would hang
    elif kind == "device":
        path = Path(os.devnull if not os.path.exists("/dev/zero") else "/dev/zero")
    elif kind == "huge":
        path.write_text("1" * 100_000)
    else:
        path.write_text("not a pid")
    target = ProcessSignal(signal.SIGHUP, None, str(path))

    with pytest.raises(NotifyError) as failed:
        notify(target)

    assert failed.value.reason == "pid_file"
    assert str(path) in str(failed.value)


@pytest.mark.parametrize("url", ["http://[::1/x", "http://h:99999/", "http://h:abc/", "ftp://h/"])
def test_a_bad_webhook_url_is_a_one_line_usage_error(tmp_path: Path, url: str) -> None:
    KubeletWriter(tmp_path / "config").write({"a": "1"})
    secret_url = url.replace("//", "//user:pa55w0rd@", 1)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "canaryconf",
            "sidecar",
            str(tmp_path / "config"),
            "--webhook",
            secret_url,
        ],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    assert run.returncode == 2
    [line] = run.stderr.splitlines()
    assert line.startswith("canaryconf sidecar: error: argument --webhook"), line
    assert "Traceback" not in run.stderr
    assert "pa55w0rd" not in run.stderr
