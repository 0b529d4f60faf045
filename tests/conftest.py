"""Helpers shared by the test modules: real volumes, written the way the kubelet writes them;
waits polled against a deadline; checks that a test stops the watchers it starts; forked
children reporting through a pipe.

Test modules import the plain helpers with ``from conftest import ...``. The watcher checks
are fixtures that a module opts into with ``pytest.mark.usefixtures``.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings

from canaryconf import CanaryConfigDict, CanarySettings, annotation
from canaryconf._runtime import runtime
from canaryconf.testing import DEFAULT_CONFIG_SEEN, KubeletWriter, pod_files

# Timing belongs in benchmarks/, not in tests: on a busy machine one example can take far
# longer than hypothesis' default 200 ms deadline ("Flaky: unreliable test timings").
hypothesis_settings.register_profile("canaryconf", deadline=None)
hypothesis_settings.load_profile("canaryconf")

# A child process started in another directory (a docs page, an example project) must
# import the canaryconf under test: with ``PYTHONPATH=src pytest`` it would otherwise find
# whichever one is installed.
if os.environ.get("PYTHONPATH"):
    os.environ["PYTHONPATH"] = os.pathsep.join(
        os.path.abspath(entry) if entry else entry
        for entry in os.environ["PYTHONPATH"].split(os.pathsep)
    )

#: The name of a generation directory: ``..YYYY_MM_DD_HH_MM_SS.<random uint32>``.
GENERATION_RE = re.compile(r"\.\.\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}\.\d{1,10}")

#: The name of the thread that runs the LiveSettings watchers of a process.
WATCHER = "canaryconf-watcher"

#: How long :func:`wait_until` waits unless told otherwise, in seconds.
DEADLINE = 5.0


#: The uid and gid of ``nobody``, the unprivileged user some tests run a child as.
NOBODY = 65534


@pytest.fixture(scope="session")
def as_nobody() -> dict[str, Any]:
    """``subprocess`` options that run a child as ``nobody``; the test is skipped, with the
    reason, when this process cannot switch user or when ``nobody`` cannot run this
    interpreter and import canaryconf (a virtual environment under a 0700 home, say)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run a process as another user")
    options: dict[str, Any] = {"user": NOBODY, "group": NOBODY, "extra_groups": []}
    try:
        probe = subprocess.run(
            [sys.executable, "-c", "import canaryconf"],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "HOME": "/tmp"},
            cwd="/",
            timeout=60,
            check=False,
            **options,
        )
    except OSError as exc:
        pytest.skip(f"user nobody cannot run {sys.executable}: {exc}")
    if probe.returncode != 0:
        pytest.skip(
            f"user nobody cannot import canaryconf with {sys.executable}: {probe.stderr[-300:]}"
        )
    return options


@pytest.fixture
def podinfo(tmp_path: Path) -> KubeletWriter:
    """An empty downwardAPI volume directory at ``tmp_path/podinfo``, updated through a
    :class:`KubeletWriter`."""
    return KubeletWriter(tmp_path / "podinfo", seed=1)


def generations(volume: Path) -> list[str]:
    """The names of the generation directories present in ``volume``."""
    return sorted(p.name for p in volume.iterdir() if GENERATION_RE.fullmatch(p.name))


def rollout_pod(
    annotations: Mapping[str, str],
    *,
    app: str = "shop",
    role: str = "canary",
    template_hash: str | None = None,
    prefix: str = "",
    config_seen: str = DEFAULT_CONFIG_SEEN,
) -> dict[str, str | bytes]:
    """A podinfo volume of a pod of ``app`` in rollout role ``role``, with a
    ``rollouts-pod-template-hash`` label when ``template_hash`` is given. Each name of
    ``annotations`` gets ``prefix`` and has its ``_`` turned into ``-``."""
    labels = {"app": app, "role": role}
    if template_hash is not None:
        labels["rollouts-pod-template-hash"] = template_hash
    return pod_files(
        labels=labels,
        annotations={f"{prefix}{k.replace('_', '-')}": v for k, v in annotations.items()},
        config_seen=config_seen,
    )


# -- waits ------------------------------------------------------------------------------


def make_wait_until(timeout: float, interval: float = 0.005) -> Callable[..., bool]:
    """A :func:`wait_until` that waits ``timeout`` seconds unless told otherwise and polls
    every ``interval`` seconds."""
    default_timeout = timeout

    def wait_until(condition: Callable[[], object], timeout: float = default_timeout) -> bool:
        """Poll ``condition`` until it is true or ``timeout`` seconds pass; its last truth."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                return bool(condition())
            time.sleep(interval)
        return True

    return wait_until


#: ``wait_until(condition, timeout=DEADLINE)``: poll ``condition`` every 5 ms until it is
#: true or ``timeout`` seconds pass; its last truth.
wait_until = make_wait_until(DEADLINE)


# -- watchers ---------------------------------------------------------------------------


def watcher_threads() -> list[threading.Thread]:
    """The watcher threads of this process (one at most)."""
    return [t for t in threading.enumerate() if t.name == WATCHER]


def _stop_leaked_watchers(*, wait_for_thread: bool) -> Iterator[None]:
    already = {id(instance) for instance in runtime().instances() if instance.running}
    yield
    leaked = [i for i in runtime().instances() if i.running and id(i) not in already]
    for instance in leaked:
        instance.stop()
    assert not leaked, "a test left a LiveSettings watcher running"
    if wait_for_thread and not already:
        assert wait_until(lambda: not watcher_threads(), 2.0)


@pytest.fixture
def no_watcher_left() -> Iterator[None]:
    """Every test stops what it starts (a watcher left running would also be restarted in
    the child of a fork test): a LiveSettings the test left running is stopped and fails
    it, and unless one ran before the test the watcher thread must end within 2 s.

    Not autouse: a module opts in with ``pytest.mark.usefixtures("no_watcher_left")``."""
    yield from _stop_leaked_watchers(wait_for_thread=True)


@pytest.fixture
def no_live_settings_left() -> Iterator[None]:
    """:func:`no_watcher_left` without the wait for the watcher thread to end."""
    yield from _stop_leaked_watchers(wait_for_thread=False)


# -- forked children --------------------------------------------------------------------


def read_child_line(fd: int, timeout: float) -> str:
    """The next line read from pipe ``fd``, stripped; what came before the end of file if
    none; ``timeout; got ...`` if none came within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    data = b""
    while not data.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            return f"timeout; got {data!r}"
        chunk = os.read(fd, 4096)
        if not chunk:
            return data.decode()
        data += chunk
    return data.decode().strip()


def reap_child(pid: int, timeout: float) -> int:
    """The exit code of child ``pid``; killed, and the test failed, if it has not exited
    within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    kill_child(pid)
    raise AssertionError("the child did not exit")


def kill_child(pid: int) -> None:
    """SIGKILL child ``pid`` and reap it, if it is still there."""
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


class ForkedChild:
    """A forked child that runs ``run(out, go)`` and exits with the code it returns: it
    writes its report to ``out``, the write end of a pipe, and reads the parent's word from
    ``go``, the read end of another. If ``run`` raises, the child writes the traceback to
    ``out`` and exits with 70.

    A context manager: on leaving the block the pipes are closed, and if the block raised a
    child not reaped yet is killed.
    """

    def __init__(self, run: Callable[[int, int], int]) -> None:
        read_end, write_end = os.pipe()
        go_read, go_write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through the pipe
            code = 70
            try:
                os.close(read_end)
                os.close(go_write)
                code = run(write_end, go_read)
            except BaseException:
                os.write(write_end, traceback.format_exc().encode())
            finally:
                os._exit(code)
        os.close(write_end)
        os.close(go_read)
        self.pid = pid
        self._reports = read_end
        self._go = go_write
        self._reaped = False

    def read_line(self, timeout: float) -> str:
        """The child's next line, as :func:`read_child_line` reads it."""
        return read_child_line(self._reports, timeout)

    def send(self, line: str) -> None:
        """Write ``line`` and a newline to the child."""
        os.write(self._go, f"{line}\n".encode())

    def reap(self, timeout: float) -> int:
        """The child's exit code, as :func:`reap_child` waits for it."""
        code = reap_child(self.pid, timeout)
        self._reaped = True
        return code

    def __enter__(self) -> ForkedChild:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is not None and not self._reaped:
                kill_child(self.pid)
        finally:
            os.close(self._reports)
            os.close(self._go)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under ``tests/e2e/`` carries the ``e2e`` marker (``-m "not e2e"``)."""
    e2e = Path(__file__).resolve().parent / "e2e"
    for item in items:
        if e2e in item.path.parents:
            item.add_marker(pytest.mark.e2e)


# -- a volume of numbered versions ------------------------------------------------------


def marked(n: int) -> dict[str, str | bytes]:
    """A podinfo payload whose annotation ``marker`` is ``n``."""
    return pod_files(annotations={"marker": str(n)})


def marker_settings(volume: Path) -> type[CanarySettings]:
    """A settings class with one field, ``marker``, read from the podinfo ``volume``."""

    class Marked(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=str(volume))
        marker: int = annotation("marker", default=0)

    return Marked
