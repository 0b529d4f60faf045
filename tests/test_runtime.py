"""The process runtime (``canaryconf._runtime``): ``start()``/``stop()`` from any thread,
a watcher that never stops following, and fork."""

from __future__ import annotations

import logging
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
from pydantic import field_validator

from canaryconf import CanaryConfigDict, CanarySettings, Change, annotation, live
from canaryconf.testing import KubeletWriter
from conftest import (
    DEADLINE,
    ForkedChild,
    marked,
    marker_settings,
    read_child_line,
    wait_until,
    watcher_threads,
)

pytestmark = pytest.mark.usefixtures("no_watcher_left")


def canaryconf_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("canaryconf-")]


def test_start_from_many_threads_at_once_then_one_stop_leaves_nothing_running(
    tmp_path: Path,
) -> None:
    writer = KubeletWriter(tmp_path / "podinfo")
    writer.write(marked(0))
    settings = live(marker_settings(writer.path))
    changes: list[int] = []
    settings.on_change(lambda change: changes.append(change.new.marker))
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait(DEADLINE)
        settings.start()

    starters = [threading.Thread(target=start) for _ in range(8)]
    for thread in starters:
        thread.start()
    for thread in starters:
        thread.join(DEADLINE)
    assert settings.running
    assert len(watcher_threads()) == 1
    writer.write(marked(1))
    assert wait_until(lambda: changes == [1]), "one watcher: one reload per swap"

    settings.stop()
    assert not settings.running
    assert wait_until(lambda: not canaryconf_threads())

    # Another LiveSettings on the same volume proves the swap below was seen: the
    # stopped one must not have applied it nor called its handler.
    other = live(marker_settings(writer.path))
    with other:
        writer.write(marked(2))
        assert wait_until(lambda: other.marker == 2)
    assert (settings.marker, changes) == (1, [1])
    settings.stop()  # idempotent
    assert not settings.running


def test_stop_from_another_thread_while_starting_is_safe(tmp_path: Path) -> None:
    writer = KubeletWriter(tmp_path / "podinfo")
    writer.write(marked(0))
    settings = live(marker_settings(writer.path))
    for _ in range(20):
        threads = [
            threading.Thread(target=settings.start),
            threading.Thread(target=settings.stop),
            threading.Thread(target=settings.start),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(DEADLINE)
        settings.stop()
        assert not settings.running
    assert wait_until(lambda: not canaryconf_threads())


def test_the_watcher_follows_a_volume_path_that_was_briefly_a_regular_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "podinfo"
    KubeletWriter(path).write(marked(0))
    settings = live(marker_settings(path))
    caplog.set_level(logging.WARNING, logger="canaryconf")
    with settings:
        shutil.rmtree(path)
        path.write_text("not a directory")
        assert wait_until(lambda: "is a file, not a volume directory" in caplog.text)
        assert settings.running
        path.unlink()
        KubeletWriter(path, seed=2).write(marked(1))
        assert wait_until(lambda: settings.marker == 1), "it still follows"
        assert settings.running
        another = live(marker_settings(path))
        with another:
            KubeletWriter(path, seed=3).write(marked(2))
            assert wait_until(lambda: another.marker == 2 and settings.marker == 2)


def test_running_tells_whether_a_watcher_follows(tmp_path: Path) -> None:
    import asyncio

    writer = KubeletWriter(tmp_path / "podinfo")
    writer.write(marked(0))
    settings = live(marker_settings(writer.path))
    assert not settings.running

    async def main() -> list[bool]:
        async with settings.watching():
            inside = settings.running
        return [inside, settings.running]

    assert asyncio.run(main()) == [True, False]
    with settings:
        assert settings.running
    assert not settings.running


# -- fork -------------------------------------------------------------------------------

_USER_LOCK = threading.Lock()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_fork_while_another_thread_is_inside_a_validator_holding_a_lock(
    tmp_path: Path,
) -> None:
    """A validator that takes a lock of its own: a fork made while another thread is
    inside it must not leave the child's reload waiting on a lock nobody will release.
    canaryconf takes the reload lock before forking, so no reload is half-way then."""
    writer = KubeletWriter(tmp_path / "podinfo")
    writer.write(marked(0))
    inside, leave = threading.Event(), threading.Event()

    class Guarded(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=str(writer.path))
        marker: int = annotation("marker", default=0)

        @field_validator("marker")
        @classmethod
        def guarded(cls, value: int) -> int:
            with _USER_LOCK:
                if value == 1:
                    inside.set()
                    leave.wait(DEADLINE)
            return value

    settings = live(Guarded)
    writer.write(marked(1))
    reloader = threading.Thread(target=settings.reload, name="slow-reload")
    reloader.start()
    try:
        assert inside.wait(DEADLINE)
        # Let the validator finish a moment after fork() was asked for.
        threading.Timer(0.05, leave.set).start()

        def child(out: int, go: int) -> int:
            writer.write(marked(2))
            result = settings.reload()
            os.write(out, f"{result.status} {settings.marker}\n".encode())
            return 0

        with ForkedChild(child) as forked:
            report = forked.read_line(DEADLINE * 4)
            assert report == "applied 2", report
            assert forked.reap(DEADLINE) == 0
    finally:
        leave.set()
        reloader.join(DEADLINE)
    assert settings.marker in (1, 2)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_child_restarts_its_watcher_unless_told_not_to(tmp_path: Path) -> None:
    writer = KubeletWriter(tmp_path / "podinfo")
    writer.write(marked(0))
    restarted = live(marker_settings(writer.path))
    left_alone = live(marker_settings(writer.path), restart_after_fork=False)
    seen: list[int] = []
    restarted.on_change(lambda change: seen.append(change.new.marker))

    def child(out: int, go: int) -> int:
        restarted.start()  # returns once the restart after fork is done
        state = [restarted.running, left_alone.running, len(watcher_threads())]
        os.write(out, f"{state}\n".encode())
        if read_child_line(go, DEADLINE) != "go":
            return 3
        if not wait_until(lambda: restarted.marker == 1):
            return 4
        restarted.stop()
        return 0

    with restarted, left_alone, ForkedChild(child) as forked:
        assert forked.read_line(DEADLINE * 2) == "[True, False, 1]"
        writer.write(marked(1))
        forked.send("go")
        assert forked.reap(DEADLINE * 2) == 0
        assert wait_until(lambda: restarted.marker == 1 and left_alone.marker == 1)
    assert seen == [1]


def test_handlers_of_a_stopped_live_settings_do_not_run_for_queued_events(
    tmp_path: Path,
) -> None:
    """Two LiveSettings share the runtime; one stops while the watcher thread is busy
    with the other's handler: stop() returns without waiting for that handler, and an
    event queued before the stop is not reloaded after it."""
    writer = KubeletWriter(tmp_path / "podinfo")
    writer.write(marked(0))
    busy, stopped = live(marker_settings(writer.path)), live(marker_settings(writer.path))
    entered, release = threading.Event(), threading.Event()
    after_stop: list[int] = []
    order: list[str] = []

    @busy.on_change
    def hold(change: Change[Any]) -> None:
        entered.set()
        release.wait(DEADLINE)
        order.append(f"handler {change.new.marker} returned")

    with busy:
        stopped.start()
        writer.write(marked(1))
        assert entered.wait(DEADLINE)
        stopped.stop()
        order.append("stop returned")
        stopped.on_change(lambda change: after_stop.append(change.new.marker))
        release.set()
        assert wait_until(lambda: busy.marker == 1)
        writer.write(marked(2))
        assert wait_until(lambda: busy.marker == 2)
    assert after_stop == []
    assert order[:2] == ["stop returned", "handler 1 returned"]
