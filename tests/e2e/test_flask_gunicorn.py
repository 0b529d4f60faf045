"""The Flask example under the real gunicorn, two workers, with and without --preload,
following a canary release written the way the kubelet writes it."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest
from _support import (
    ROOT,
    WATCHING_THREADS,
    SwapScenario,
    fetch_json,
    free_port,
    gunicorn_cmd,
    poll_workers,
    serves,
    start_server,
    thread_count,
)

pytest.importorskip("flask")
pytest.importorskip("gunicorn")

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="pre-fork server on Linux")

WORKERS = 2
SWAP_DEADLINE = 20.0  # a bound for a busy machine, not a latency target (see benchmarks/)


def flask_cmd(port: int, *, preload: bool) -> list[str]:
    chdir = ROOT / "examples" / "flask"
    return gunicorn_cmd("app:app", chdir=chdir, port=port, workers=WORKERS, preload=preload)


@pytest.mark.parametrize("preload", [False, True], ids=["fork-then-import", "preload"])
def test_every_worker_follows_the_release_without_mixing_versions(
    tmp_path: Path, preload: bool
) -> None:
    scenario = SwapScenario(tmp_path / "podinfo")
    stable, *swaps, invalid = scenario.steps
    assert invalid.expected is None
    scenario.write(stable)
    port = free_port()
    env = {"PODINFO_DIR": str(scenario.volume), "PYTHONUNBUFFERED": "1"}
    with start_server(flask_cmd(port, preload=preload), port=port, env=env) as server:
        checkout = f"{server.base_url}/checkout"
        status_url = f"{server.base_url}/-/canaryconf"

        # Workers forked from a --preload master loaded `stable` there and watch nothing
        # until their first request; this version must still reach them, in time.
        for step in swaps:
            generation = scenario.write(step)
            seen = poll_workers(
                checkout,
                workers=WORKERS,
                until=serves(generation),
                timeout=SWAP_DEADLINE,
                check=scenario.check,
            )
            if step is swaps[0]:
                workers = set(seen)
                assert len(workers) == WORKERS
                assert set(server.children()) == workers
            assert set(seen) == workers, "a worker was replaced"

        good = scenario.last_good
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
        poll_workers(
            checkout,
            workers=WORKERS,
            until=serves(good),
            timeout=SWAP_DEADLINE,
            check=scenario.check,
        )
        reload = fetch_json(f"{server.base_url}/-/canaryconf/reload", method="POST", status=None)
        assert reload["generation"] == good
        assert reload["last_error"] == rejected[reload["pid"]]["last_error"]

        # One watcher per worker, none in the master: with --preload it loaded the app
        # but serves no request, so the extension never started a watcher there.
        assert {pid: thread_count(pid) for pid in workers} == dict.fromkeys(
            workers, WATCHING_THREADS
        )
        assert thread_count(server.pid) == 1

        assert server.stop(signal.SIGTERM, timeout=10.0) == 0, server.output()
        assert server.group() == []
