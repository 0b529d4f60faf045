"""The FastAPI and Starlette examples under the real uvicorn with two workers follow a
whole release.

``uvicorn examples.fastapi.app:app --workers 2`` (and ``examples.starlette.app:app``)
serves a volume that a KubeletWriter
swaps through canary, a second canary, promotion to stable and an invalid annotation.
Over HTTP only: every worker serves each valid version within two seconds, no response
mixes two versions, the invalid one is rejected while the last good one keeps serving,
and SIGTERM stops every process.
"""

from __future__ import annotations

import re
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from _support import (
    ROOT,
    ServerProcess,
    SwapScenario,
    fetch_json,
    free_port,
    poll_until,
    poll_workers,
    serves,
    start_server,
    thread_count,
)

WORKERS = 2
SWAP_DEADLINE = 20.0  # a bound for a busy machine, not a latency target (see benchmarks/)
STARTUP_TIMEOUT = 20.0
#: ``Connection: close`` on every request. uvicorn keeps connections alive and asyncio
#: accepts every pending connection in one go, so a pool of kept-alive connections can all
#: belong to one worker and never reach the other (about one poll in ten, measured).
FRESH = {"Connection": "close"}

pytestmark = pytest.mark.timeout(90)


@contextmanager
def http_clients(count: int) -> Iterator[list[httpx.Client]]:
    """``count`` clients that open a new connection per request. Made once per test: a
    client takes tens of milliseconds to create, which would count as swap latency."""
    clients = [httpx.Client(timeout=10.0, trust_env=False, headers=FRESH) for _ in range(count)]
    try:
        yield clients
    finally:
        for client in clients:
            client.close()


@contextmanager
def hammer(url: str) -> Iterator[list[Any]]:
    """GET ``url`` continuously in the background for the duration of the block; yields
    the list the bodies are collected in (to check once the scenario knows every
    generation: one written a moment ago may be served before the scenario records it)."""
    bodies: list[Any] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def run() -> None:
        with httpx.Client(timeout=10.0, trust_env=False, headers=FRESH) as client:
            while not stop.is_set():
                try:
                    response = client.get(url)
                    assert response.status_code == 200, f"{url}: {response.status_code}"
                    bodies.append(response.json())
                except BaseException as exc:
                    errors.append(exc)
                    return

    thread = threading.Thread(target=run, name="hammer")
    thread.start()
    try:
        yield bodies
    finally:
        stop.set()
        thread.join(5.0)
    assert not thread.is_alive(), "the background requests did not stop"
    if errors:
        raise errors[0]


def status_as_checkout(body: dict[str, Any]) -> dict[str, Any]:
    """A ``/-/canaryconf`` body in the shape of a checkout response, for SwapScenario."""
    settings = body["settings"]
    return {
        "generation": body["generation"],
        "pid": body["pid"],
        "db_url": settings["db_url"],
        "new_checkout": settings["new_checkout"],
        "role": settings["rollout"]["role"],
    }


#: app -> the path of its status endpoint (a Starlette Mount ends with a slash).
APPS = {
    "examples.fastapi.app:app": "/-/canaryconf",
    "examples.starlette.app:app": "/-/canaryconf/",
}


def start_uvicorn(volume: Path, app: str) -> AbstractContextManager[ServerProcess]:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--workers",
        str(WORKERS),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
    ]
    return start_server(
        cmd,
        port=port,
        env={"PODINFO_DIR": str(volume), "PYTHONUNBUFFERED": "1"},
        cwd=ROOT,
        timeout=STARTUP_TIMEOUT,
    )


@pytest.mark.parametrize("app", sorted(APPS))
def test_uvicorn_workers_follow_a_release(tmp_path: Path, app: str) -> None:
    scenario = SwapScenario(tmp_path / "podinfo")
    first, *steps = scenario.steps
    generation = scenario.write(first)

    with start_uvicorn(scenario.volume, app) as server, http_clients(4) as clients:
        checkout = f"{server.base_url}/checkout"
        status = f"{server.base_url}{APPS[app]}"
        poll_until(
            lambda: fetch_json(checkout),
            timeout=STARTUP_TIMEOUT,
            ignore=(httpx.HTTPError, AssertionError),
            message="first response",
        )
        started = poll_workers(
            status,
            workers=WORKERS,
            clients=clients,
            until=lambda b: b["watching"] and b["generation"] == generation,
            timeout=STARTUP_TIMEOUT,
            check=lambda b: scenario.check(status_as_checkout(b)),
        )
        workers = set(started)
        assert workers <= set(server.children())
        # The watcher lives in each worker's event loop: no thread besides the main one
        # and the health-check thread of uvicorn's supervisor.
        assert {pid: thread_count(pid) for pid in workers} == dict.fromkeys(workers, 2)

        latencies = {}
        with hammer(checkout) as background:
            for step in steps:
                written = time.monotonic()
                generation = scenario.write(step)
                if step.expected is not None:
                    poll_workers(
                        checkout,
                        workers=WORKERS,
                        clients=clients,
                        until=serves(generation),
                        timeout=SWAP_DEADLINE,
                        check=scenario.check,
                    )
                else:
                    rejected = poll_workers(
                        status,
                        workers=WORKERS,
                        clients=clients,
                        until=lambda b: b["last_error"] is not None,
                        timeout=SWAP_DEADLINE,
                        check=lambda b: scenario.check(status_as_checkout(b)),
                    )
                    for body in rejected.values():
                        scenario.check_rejected(body)
                    poll_workers(
                        checkout,
                        workers=WORKERS,
                        clients=clients,
                        until=serves(scenario.last_good),
                        timeout=SWAP_DEADLINE,
                        check=scenario.check,
                    )
                latencies[step.name] = time.monotonic() - written
            # The last good version keeps serving, from every worker.
            mark = len(background)
            poll_until(
                lambda: {b["pid"] for b in background[mark + 20 :]} == workers,
                timeout=5.0,
                message="background requests to every worker",
            )
            assert {b["generation"] for b in background[mark:]} == {scenario.last_good}

        print(f"[e2e] swap -> every worker serving it, seconds: {latencies}")
        for body in background:
            scenario.check(body)

        assert set(server.children()) >= workers
        assert server.stop(signal.SIGTERM) == 0
        output = server.output()  # the log goes with the block

    assert output.count("Application shutdown complete.") == WORKERS, output
    assert len(re.findall(r"pod \d+ is stable now", output)) == WORKERS, output
    assert "Traceback" not in output, output
