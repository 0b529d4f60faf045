"""The Django example under the real gunicorn, two workers, with and without --preload,
following a canary release written the way the kubelet writes it."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from _support import ROOT, SwapScenario, free_port, poll_workers, start_server

pytest.importorskip("django")
gunicorn_config = pytest.importorskip("gunicorn.config")

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="pre-fork server on Linux")

WORKERS = 2
SWAP_DEADLINE = 2.0  # every worker serves a new version this soon after the kubelet's swap

#: What canaryconf's at-fork restart prints in each worker forked from a master that was
#: watching (the parent's watcher task is finalized in the child). Harmless, and fixed by
#: a core patch that keeps those objects referenced; tolerated here until it lands.
FORK_NOISE = re.compile(
    r"Exception ignored in: <coroutine object LiveSettings\.watch at 0x[0-9a-f]+>\n"
    r"Traceback \(most recent call last\):\n(?:  .*\n)+?"
    r"RuntimeError: coroutine ignored GeneratorExit\n"
    r"|Task was destroyed but it is pending!\n"
    r"task: <Task pending name='[^']*' coro=<LiveSettings\.watch\(\) .*\n"
)


def gunicorn_cmd(port: int, *, preload: bool) -> list[str]:
    cmd = [sys.executable, "-m", "gunicorn", "-w", str(WORKERS), "-b", f"127.0.0.1:{port}"]
    cmd += ["--chdir", str(ROOT / "examples" / "django"), "--graceful-timeout", "5"]
    if _has_option("--no-control-socket"):  # gunicorn >= 24 opens one in $HOME otherwise
        cmd.append("--no-control-socket")
    if preload:
        cmd.append("--preload")
    return [*cmd, "checkout.wsgi:application"]


def _has_option(flag: str) -> bool:
    return any(flag in (setting.cli or ()) for setting in gunicorn_config.KNOWN_SETTINGS)


def inotify_fds(pid: int) -> int:
    """The inotify descriptors of ``pid``: canaryconf's watcher holds one per process."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            count += os.readlink(fd) == "anon_inode:inotify"
    return count


class Hammer:
    """Requests /checkout from a few threads for as long as it runs. On exit every
    response is checked against the scenario (afterwards: a swap lands before the
    scenario has learnt the new generation's name): none may mix two versions or serve a
    rejected one, whenever it landed relative to a swap."""

    def __init__(self, url: str, scenario: SwapScenario, threads: int = 2) -> None:
        self.url = url
        self.scenario = scenario
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.bodies: list[Any] = []
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while not self.stop.is_set():
                try:
                    response = client.get(self.url)
                    assert response.status_code == 200, response.text
                    self.bodies.append(response.json())
                except BaseException as exc:
                    self.errors.append(exc)
                    return

    def __enter__(self) -> Hammer:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(5.0)
        assert not any(t.is_alive() for t in self.threads), "a request hung"
        if self.errors:
            raise self.errors[0]
        for body in self.bodies:
            self.scenario.check(body)


@pytest.mark.parametrize("preload", [False, True], ids=["fork-then-import", "preload"])
def test_every_worker_follows_the_release_without_mixing_versions(
    tmp_path: Path, preload: bool
) -> None:
    scenario = SwapScenario(tmp_path / "podinfo")
    stable, *swaps, invalid = scenario.steps
    assert invalid.expected is None
    first = scenario.write(stable)
    port = free_port()
    env = {"PODINFO_DIR": str(scenario.volume), "PYTHONUNBUFFERED": "1"}
    with start_server(gunicorn_cmd(port, preload=preload), port=port, env=env) as server:
        checkout = f"{server.base_url}/checkout"
        status_url = f"{server.base_url}/-/canaryconf/"

        def serves(generation: str) -> Any:
            return lambda body: body["generation"] == generation

        seen = poll_workers(
            checkout, workers=WORKERS, until=serves(first), timeout=10.0, check=scenario.check
        )
        workers = set(seen)
        assert set(server.children()) == workers
        # Exactly one watcher per worker; the master watches only when it loaded the app.
        assert {pid: inotify_fds(pid) for pid in workers} == dict.fromkeys(workers, 1)
        assert inotify_fds(server.pid) == (1 if preload else 0)

        with Hammer(checkout, scenario) as hammer:
            for step in swaps:
                generation = scenario.write(step)
                seen = poll_workers(
                    checkout,
                    workers=WORKERS,
                    until=serves(generation),
                    timeout=SWAP_DEADLINE,
                    check=scenario.check,
                )
                assert set(seen) == workers, "a worker was replaced"

            good = scenario.last_good
            assert good is not None
            scenario.write(invalid)
            rejected = poll_workers(
                status_url,
                workers=WORKERS,
                until=lambda body: body["last_error"] is not None,
                timeout=SWAP_DEADLINE,
            )
            assert set(rejected) == workers
            for status in rejected.values():
                assert status["generation"] == good
                assert status["rollout_role"] == "stable"
                assert status["watching"] is True
                assert status["last_error"].startswith("SettingsValidationError:")
                assert "new_checkout" in status["last_error"]
                assert "maybe" not in status["last_error"]
            kept = poll_workers(
                checkout,
                workers=WORKERS,
                until=serves(good),
                timeout=SWAP_DEADLINE,
                check=scenario.check,
            )
            assert set(kept) == workers
        assert len({body["generation"] for body in hammer.bodies}) > 1

        assert {pid: inotify_fds(pid) for pid in workers} == dict.fromkeys(workers, 1)
        assert set(server.children()) == workers

        assert server.stop(signal.SIGTERM, timeout=10.0) == 0, server.output()
        assert server.group() == []
        log = FORK_NOISE.sub("", server.output())
        assert "Traceback" not in log, log
        assert "Task was destroyed" not in log, log
