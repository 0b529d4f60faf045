"""Shared helpers of the end-to-end tests: real servers, real volumes, bounded waits.

A server runs in a process group of its own, so that stopping it can be checked to leave
nothing behind; every wait has a deadline; HTTP goes to 127.0.0.1 only, with proxies from
the environment ignored.

>>> port = free_port()                                           # doctest: +SKIP
>>> with start_server(["gunicorn", "-b", f"127.0.0.1:{port}", "app:app"], port=port) as server:
...     fetch_json(f"{server.base_url}/checkout")                # doctest: +SKIP

Checkout responses, for :class:`SwapScenario` and :func:`poll_workers`, are JSON objects
with at least ``pid`` (``os.getpid()`` of the process that served) and ``generation`` (the
generation of the snapshot the request was pinned to), plus the values that the scenario's
steps list under ``expected``. The ``/-/canaryconf`` status of an adapter carries ``pid``
too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from canaryconf import read_volume
from canaryconf.testing import KubeletWriter, pod_files

__all__ = [
    "CHECKOUT_STEPS",
    "ROOT",
    "WATCHING_THREADS",
    "ServerProcess",
    "Step",
    "SwapScenario",
    "fetch_json",
    "free_port",
    "gunicorn_cmd",
    "inotify_fds",
    "poll_until",
    "poll_workers",
    "serves",
    "start_server",
    "thread_count",
]

T = TypeVar("T")

#: The project root (the directory holding ``examples/`` and ``src/``).
ROOT = Path(__file__).resolve().parents[2]

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def poll_until(
    fn: Callable[[], T],
    timeout: float,
    *,
    interval: float = 0.01,
    ignore: tuple[type[BaseException], ...] = (),
    message: str = "condition",
) -> T:
    """Call ``fn`` until it returns something truthy, and return that; fail after
    ``timeout`` seconds with the last value (or exception, for those listed in ``ignore``).

    >>> poll_until(lambda: 42, timeout=1.0)
    42
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = fn()
        except ignore as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{message}: not met within {timeout}s (last: {last!r})")
        time.sleep(interval)


def fetch_json(
    url: str, *, method: str = "GET", timeout: float = 2.0, status: int | None = 200
) -> Any:
    """``method`` ``url`` (a 127.0.0.1 address) and return the decoded JSON body; fail when
    the response status is not ``status`` (None accepts any)."""
    response = httpx.request(method, url, timeout=timeout, trust_env=False)
    if status is not None and response.status_code != status:
        raise AssertionError(
            f"{method} {url}: status {response.status_code}, wanted {status}: {response.text}"
        )
    return response.json()


# -- servers ------------------------------------------------------------------------------


@dataclass
class ServerProcess:
    """A server started by :func:`start_server`: its main process leads its own group."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def output(self) -> str:
        """Everything the server wrote to stdout and stderr so far."""
        return self.log.read_text(errors="replace")

    def group(self) -> list[int]:
        """The live (non-zombie) processes of the server's process group."""
        return _group_members(self.proc.pid)

    def children(self) -> list[int]:
        """The live processes of the group other than the main one (e.g. workers)."""
        return [pid for pid in self.group() if pid != self.proc.pid]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Send ``sig`` to the main process only (as Kubernetes does), wait for it and for
        every process of its group to end, and return its exit code. Fails, after killing
        what is left, when something outlives ``timeout``."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _kill_group(self.proc)
            raise AssertionError(
                f"server {self.pid} still running {timeout}s after signal {sig}\n{self.output()}"
            ) from None
        left = _wait_group_empty(self.proc.pid, timeout=max(1.0, timeout / 2))
        if left:
            _kill_group(self.proc)
            raise AssertionError(f"processes left behind by server {self.pid}: {left}")
        return code


@contextlib.contextmanager
def start_server(
    cmd: Sequence[str],
    *,
    port: int,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float = 15.0,
    stop_timeout: float = 10.0,
) -> Iterator[ServerProcess]:
    """Start ``cmd`` in a new process group and yield once 127.0.0.1:``port`` accepts
    connections (within ``timeout`` seconds).

    ``env`` is added to the current environment. On exit, whatever still runs gets SIGTERM
    (the whole group), then SIGKILL after ``stop_timeout`` seconds; the block fails if a
    process of the group is left, unless it already fails for another reason.
    """
    fd, name = tempfile.mkstemp(prefix="canaryconf-e2e-", suffix=".log")
    os.close(fd)
    log = Path(name)
    full_env = {**os.environ, **(env or {})}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            list(cmd),
            cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = ServerProcess(proc, port, log)
    failed = False
    try:
        _wait_for_port(server, timeout)
        yield server
    except BaseException:
        failed = True
        raise
    finally:
        left = _shutdown(proc, stop_timeout)
        if not failed:
            assert not left, f"processes of server {proc.pid} outlived SIGTERM: {left}"
        with contextlib.suppress(OSError):
            log.unlink()


def gunicorn_cmd(app: str, *, chdir: Path, port: int, workers: int, preload: bool) -> list[str]:
    """The command line of gunicorn serving WSGI ``app`` (``module:variable``) from
    ``chdir`` with ``workers`` workers on 127.0.0.1:``port``, ``--preload`` or not."""
    from gunicorn.config import KNOWN_SETTINGS

    cmd = [sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", f"{HOST}:{port}"]
    cmd += ["--chdir", str(chdir), "--graceful-timeout", "5"]
    # gunicorn >= 24 opens a control socket in $HOME unless told not to.
    if any("--no-control-socket" in (setting.cli or ()) for setting in KNOWN_SETTINGS):
        cmd.append("--no-control-socket")
    if preload:
        cmd.append("--preload")
    return [*cmd, app]


def _wait_for_port(server: ServerProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.proc.poll() is not None:
            raise AssertionError(
                f"server exited with {server.proc.returncode} before listening\n{server.output()}"
            )
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((HOST, server.port)) == 0:
                return
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"server not listening on port {server.port} within {timeout}s\n{server.output()}"
            )
        time.sleep(0.02)


def _shutdown(proc: subprocess.Popen[bytes], timeout: float) -> list[int]:
    """SIGTERM the group, SIGKILL it after ``timeout``; return who outlived the SIGTERM."""
    if proc.poll() is None or _group_members(proc.pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout)
    left = _wait_group_empty(proc.pid, timeout=1.0 if proc.poll() is not None else 0.0)
    if left or proc.poll() is None:
        _kill_group(proc)
    return left


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5.0)


def _wait_group_empty(pgid: int, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        left = _group_members(pgid)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.02)


def _group_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that are not zombies (an orphan's zombie may wait for a
    container's init to reap it: it runs nothing any more)."""
    proc_dir = Path("/proc")
    if not proc_dir.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        return [pgid]
    members = []
    for entry in proc_dir.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return sorted(members)


def thread_count(pid: int) -> int:
    """How many threads process ``pid`` runs (Linux only)."""
    return len(os.listdir(f"/proc/{pid}/task"))


#: The threads of a process whose canaryconf watcher runs in the background: its main
#: thread and ``canaryconf-watcher`` (an event loop asleep until a volume changes, which
#: it leaves to run reloads and their handlers).
WATCHING_THREADS = 2


def inotify_fds(pid: int) -> int:
    """How many inotify descriptors process ``pid`` holds: canaryconf's watcher holds one
    per watching process (Linux only)."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            count += os.readlink(fd) == "anon_inode:inotify"
    return count


# -- workers ------------------------------------------------------------------------------


def poll_workers(
    url: str,
    *,
    workers: int,
    until: Callable[[Any], bool],
    timeout: float,
    check: Callable[[Any], None] | None = None,
    concurrency: int = 4,
    clients: Sequence[httpx.Client] | None = None,
) -> dict[int, Any]:
    """GET ``url`` from ``concurrency`` threads until ``workers`` distinct ``pid`` values
    have answered with a body for which ``until(body)`` is true; return the first such body
    of each pid. ``check(body)`` runs on every body (raise to fail). Fails after
    ``timeout`` seconds, saying what each pid answered last.

    Each thread makes a client of its own, unless ``clients`` are given: then one thread
    per client polls with it (and each thread is waited for ``timeout`` + 5 seconds).

    Concurrent requests keep every worker of a pre-fork server busy in turn: a worker
    that is handling a request cannot take the next one.
    """
    deadline = time.monotonic() + timeout
    done: dict[int, Any] = {}
    last: dict[int, Any] = {}
    lock = threading.Lock()
    errors: list[BaseException] = []

    def poll(client: httpx.Client) -> None:
        while time.monotonic() < deadline:
            with lock:
                if len(done) >= workers or errors:
                    return
            try:
                response = client.get(url)
                assert response.status_code == 200, f"{url}: {response.status_code}"
                body = response.json()
                if check is not None:
                    check(body)
            except BaseException as exc:
                with lock:
                    errors.append(exc)
                return
            with lock:
                last[body["pid"]] = body
                if until(body):
                    done.setdefault(body["pid"], body)

    if clients is None:

        def run() -> None:
            with httpx.Client(timeout=10.0, trust_env=False) as client:
                poll(client)

        with ThreadPoolExecutor(concurrency) as pool:
            for future in [pool.submit(run) for _ in range(concurrency)]:
                future.result()
    else:
        threads = [threading.Thread(target=poll, args=(client,)) for client in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout + 5.0)
    if errors:
        raise errors[0]
    if len(done) < workers:
        raise AssertionError(
            f"{url}: {len(done)} of {workers} workers got there within {timeout}s;"
            f" last answer of each pid: {last}"
        )
    return done


def serves(generation: str | None) -> Callable[[Any], bool]:
    """For :func:`poll_workers`: a checkout body of ``generation``."""
    return lambda body: body["generation"] == generation


# -- the volume ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One version of the pod's metadata. ``expected`` holds the values a response must
    carry while this version is served; None marks a version that must be rejected."""

    name: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    expected: Mapping[str, Any] | None


_PREFIX = "checkout.example.com/"

#: The release every example service goes through: stable, canary, a second canary value,
#: promotion to stable, then an annotation that does not validate. Settings: ``db_url``
#: from annotation ``checkout.example.com/db-url``, ``new_checkout: bool`` from
#: ``checkout.example.com/new-checkout``, the role from a ``RolloutInfo`` field.
CHECKOUT_STEPS: tuple[Step, ...] = (
    Step(
        "stable",
        {"app": "checkout", "role": "stable", "rollouts-pod-template-hash": "5d8f7c9b4"},
        {f"{_PREFIX}db-url": "postgres://stable-db/checkout"},
        {"db_url": "postgres://stable-db/checkout", "new_checkout": False, "role": "stable"},
    ),
    Step(
        "canary",
        {"app": "checkout", "role": "canary", "rollouts-pod-template-hash": "6d8f7c9b5"},
        {f"{_PREFIX}db-url": "postgres://canary-db/checkout", f"{_PREFIX}new-checkout": "true"},
        {"db_url": "postgres://canary-db/checkout", "new_checkout": True, "role": "canary"},
    ),
    Step(
        "canary-2",
        {"app": "checkout", "role": "canary", "rollouts-pod-template-hash": "6d8f7c9b5"},
        {
            f"{_PREFIX}db-url": "postgres://canary-db-2/checkout",
            f"{_PREFIX}new-checkout": "true",
        },
        {"db_url": "postgres://canary-db-2/checkout", "new_checkout": True, "role": "canary"},
    ),
    Step(
        "promoted",
        {"app": "checkout", "role": "stable", "rollouts-pod-template-hash": "6d8f7c9b5"},
        {
            f"{_PREFIX}db-url": "postgres://stable-db-2/checkout",
            f"{_PREFIX}new-checkout": "true",
        },
        {"db_url": "postgres://stable-db-2/checkout", "new_checkout": True, "role": "stable"},
    ),
    Step(
        "invalid",
        {"app": "checkout", "role": "canary", "rollouts-pod-template-hash": "7e9a8d0c6"},
        {f"{_PREFIX}db-url": "postgres://broken/checkout", f"{_PREFIX}new-checkout": "maybe"},
        None,
    ),
)


@dataclass
class SwapScenario:
    """Writes the versions of ``steps`` into ``volume`` as the kubelet would, and knows
    which values belong to which generation.

    >>> scenario = SwapScenario(tmp_path / "podinfo")           # doctest: +SKIP
    >>> first = scenario.write(scenario.steps[0])               # doctest: +SKIP
    >>> scenario.check({"generation": first, **scenario.steps[0].expected})  # doctest: +SKIP
    """

    volume: Path
    steps: Sequence[Step] = CHECKOUT_STEPS
    #: generation -> the values a response pinned to it must carry
    expected: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    #: the generation of the last valid step written
    last_good: str | None = None
    writer: KubeletWriter = field(init=False)

    def __post_init__(self) -> None:
        self.writer = KubeletWriter(self.volume)

    def write(self, step: Step) -> str:
        """Write ``step`` and return the generation it became (read back from disk)."""
        self.writer.write(pod_files(labels=step.labels, annotations=step.annotations))
        generation = read_volume(self.volume).generation
        assert generation is not None, f"{self.volume}: no generation after writing {step.name}"
        if step.expected is not None:
            self.expected[generation] = dict(step.expected)
            self.last_good = generation
        return generation

    def check_rejected(
        self, status: Mapping[str, Any], *, field: str = "new_checkout", value: str = "maybe"
    ) -> None:
        """Fail unless the ``/-/canaryconf`` ``status`` of a worker that saw an invalid step
        (``field`` set to ``value``, as in :data:`CHECKOUT_STEPS`) still serves the last
        good version, watching, and its ``last_error`` names ``field`` but not ``value``."""
        assert self.last_good is not None
        assert status["generation"] == self.last_good, status
        assert status["rollout_role"] == self.expected[self.last_good]["role"], status
        assert status["watching"] is True, status
        assert status["last_error"].startswith("SettingsValidationError: "), status
        assert field in status["last_error"], status
        assert value not in status["last_error"], status

    def check(self, body: Mapping[str, Any]) -> None:
        """Fail unless ``body`` reports a generation of a valid step and exactly that
        step's values: a response mixing two versions, or serving a rejected one, fails."""
        generation = body.get("generation")
        assert generation in self.expected, f"unknown or rejected generation served: {body}"
        wanted = self.expected[generation]
        got = {key: body.get(key) for key in wanted}
        assert got == dict(wanted), f"generation {generation} served {got}, wanted {wanted}"
