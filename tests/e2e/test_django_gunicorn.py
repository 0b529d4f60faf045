"""The Django example under the real gunicorn, two workers, with and without --preload,
following a canary release written the way the kubelet writes it."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from _support import (
    ROOT,
    WATCHING_THREADS,
    SwapScenario,
    free_port,
    gunicorn_cmd,
    inotify_fds,
    poll_workers,
    serves,
    start_server,
    thread_count,
)

pytest.importorskip("django")
pytest.importorskip("gunicorn")

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="pre-fork server on Linux")

WORKERS = 2
SWAP_DEADLINE = 20.0  # a bound for a busy machine, not a latency target (see benchmarks/)


def django_cmd(port: int, *, preload: bool) -> list[str]:
    chdir = ROOT / "examples" / "django"
    return gunicorn_cmd(
        "checkout.wsgi:application", chdir=chdir, port=port, workers=WORKERS, preload=preload
    )


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
        with httpx.Client(timeout=10.0, trust_env=False) as client:
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
    with start_server(django_cmd(port, preload=preload), port=port, env=env) as server:
        checkout = f"{server.base_url}/checkout"
        status_url = f"{server.base_url}/-/canaryconf/"

        seen = poll_workers(
            checkout, workers=WORKERS, until=serves(first), timeout=10.0, check=scenario.check
        )
        workers = set(seen)
        assert set(server.children()) == workers
        # Exactly one watcher per worker; the master watches only when it loaded the app
        # (with --preload each worker restarts it after the fork).
        assert {pid: inotify_fds(pid) for pid in workers} == dict.fromkeys(workers, 1)
        assert inotify_fds(server.pid) == (1 if preload else 0)
        assert {pid: thread_count(pid) for pid in workers} == dict.fromkeys(
            workers, WATCHING_THREADS
        )
        assert thread_count(server.pid) == (WATCHING_THREADS if preload else 1)

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
                scenario.check_rejected(status)
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
        # With --preload, what each worker inherited of the master's watcher is kept, not
        # finalized: no "Task was destroyed but it is pending!", no ignored GeneratorExit.
        log = server.output()  # stdout and stderr of every process of the server
        assert "Task was destroyed" not in log, log
        assert "Exception ignored" not in log, log
        assert "Traceback" not in log, log
