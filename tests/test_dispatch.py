"""Delivering changes to handlers (``canaryconf._dispatch``): one total order per
LiveSettings whoever reloads (an event loop's watcher, a thread's ``reload()``, a handler
that reloads), receivers in connection order, isolated and bounded."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from canaryconf import (
    Change,
    LiveSettings,
    live,
    signals,
)
from canaryconf._dispatch import OrderedSignal
from canaryconf.testing import KubeletWriter
from conftest import DEADLINE, marked, marker_settings, wait_until

pytestmark = pytest.mark.usefixtures("no_watcher_left")


def assert_chained(changes: list[tuple[int, int]]) -> None:
    """Each change starts where the previous one ended."""
    for before, after in itertools.pairwise(changes):
        assert after[0] == before[1], f"out of order: {before} then {after} in {changes}"


def test_receivers_run_in_connection_order(tmp_path: Path) -> None:
    writer = KubeletWriter(tmp_path / "podinfo")
    writer.write(marked(0))
    settings = live(marker_settings(writer.path))
    calls: list[int] = []
    handlers = []
    for index in range(30):

        def handler(change: Change[Any], index: int = index) -> None:
            calls.append(index)

        handlers.append(handler)
        settings.on_change(handler)
    settings.disconnect(handlers[3])
    settings.on_change(handlers[3])  # connected again: now the last
    writer.write(marked(1))
    assert settings.reload().applied
    assert calls == [i for i in range(30) if i != 3] + [3]
    assert isinstance(signals.settings_changed, OrderedSignal)


def test_changes_reach_handlers_in_order_whether_the_loop_or_a_thread_reloads(
    tmp_path: Path,
) -> None:
    """An async watcher in one thread's event loop and ``reload()`` calls from another
    thread apply versions concurrently: every handler still sees one chain of changes."""
    writer = KubeletWriter(tmp_path / "podinfo", seed=3)
    writer.write(marked(0))
    settings = live(marker_settings(writer.path))
    seen: list[tuple[int, int]] = []
    seen_async: list[tuple[int, int]] = []

    @settings.on_change
    def record(change: Change[Any]) -> None:
        seen.append((change.old.marker, change.new.marker))
        time.sleep(0.002)  # widen the window in which another reload can land

    @settings.on_change
    async def record_async(change: Change[Any]) -> None:
        seen_async.append((change.old.marker, change.new.marker))
        await asyncio.sleep(0)

    swaps = 60
    ready, stop = threading.Event(), threading.Event()

    def loop_thread() -> None:
        async def main() -> None:
            async with settings.watching():
                ready.set()
                while not stop.is_set():
                    await asyncio.sleep(0.005)

        asyncio.run(main())

    watcher = threading.Thread(target=loop_thread, name="test-loop")
    watcher.start()
    try:
        assert ready.wait(DEADLINE)
        for n in range(1, swaps + 1):
            writer.write(marked(n))
            if n % 2:
                settings.reload()  # races the loop's watcher for this version
        assert wait_until(lambda: settings.marker == swaps)
        assert wait_until(lambda: seen and seen[-1][1] == swaps)
        assert wait_until(lambda: seen_async and seen_async[-1][1] == swaps)
    finally:
        stop.set()
        watcher.join(DEADLINE)
    assert seen[0][0] == 0
    assert_chained(seen)
    assert seen_async == seen


def test_a_version_applied_by_the_loop_waits_for_the_thread_delivering_the_one_before(
    tmp_path: Path,
) -> None:
    """The exact interleaving: a thread's ``reload()`` applies 0->1 and, while its first
    handler runs, the loop's watcher applies 1->2. Every handler still gets 0->1 first."""
    writer = KubeletWriter(tmp_path / "podinfo", seed=4)
    writer.write(marked(0))
    settings = live(marker_settings(writer.path))
    seen: list[tuple[int, int]] = []
    waited: list[bool] = []
    ready, stop, blocked, go = (threading.Event() for _ in range(4))

    @settings.on_change
    def interleave(change: Change[Any]) -> None:
        if not waited:
            writer.write(marked(2))
            go.set()  # the loop runs again: it sees ..data moved on to version 2
            waited.append(wait_until(lambda: settings.marker == 2))

    settings.on_change(lambda change: seen.append((change.old.marker, change.new.marker)))
    loops: list[asyncio.AbstractEventLoop] = []

    def loop_thread() -> None:
        async def main() -> None:
            loops.append(asyncio.get_running_loop())
            async with settings.watching():
                ready.set()
                while not stop.is_set():
                    await asyncio.sleep(0.005)

        asyncio.run(main())

    def hold_the_loop() -> None:
        blocked.set()
        go.wait(DEADLINE)

    watcher = threading.Thread(target=loop_thread, name="test-loop")
    watcher.start()
    try:
        assert ready.wait(DEADLINE)
        # The loop stands still until 0->1 is being delivered by this thread.
        loops[0].call_soon_threadsafe(hold_the_loop)
        assert blocked.wait(DEADLINE)
        writer.write(marked(1))
        settings.reload()
        assert waited == [True], "the loop applied 1->2 while 0->1 was being delivered"
        assert wait_until(lambda: len(seen) == 2)
    finally:
        go.set()
        stop.set()
        watcher.join(DEADLINE)
    assert seen == [(0, 1), (1, 2)]


def test_a_handler_that_reloads_gets_its_change_after_the_current_one(
    tmp_path: Path,
) -> None:
    writer = KubeletWriter(tmp_path / "podinfo")
    writer.write(marked(0))
    settings = live(marker_settings(writer.path))
    first: list[tuple[int, int]] = []
    second: list[tuple[int, int]] = []

    @settings.on_change
    def moves_on(change: Change[Any]) -> None:
        first.append((change.old.marker, change.new.marker))
        if change.new.marker == 1:
            writer.write(marked(2))
            nested = settings.reload()  # delivered once this change is delivered
            assert nested.applied and second[-1:] != [(1, 2)]

    @settings.on_change
    def after(change: Change[Any]) -> None:
        second.append((change.old.marker, change.new.marker))

    writer.write(marked(1))
    settings.reload()
    assert first == second == [(0, 1), (1, 2)]


def test_a_coroutine_handler_that_ignores_cancellation_does_not_hold_dispatch(
    tmp_path: Path,
) -> None:
    """``handler_timeout`` is a bound: at the timeout the handler is cancelled and dispatch
    moves on even though the handler swallows the CancelledError; it is reported."""
    writer = KubeletWriter(tmp_path / "podinfo")
    writer.write(marked(0))
    settings = live(marker_settings(writer.path), handler_timeout=0.2)
    release, finished = threading.Event(), threading.Event()
    cancelled: list[int] = []
    next_ran: list[bool] = []
    failures: list[dict[str, Any]] = []

    @settings.on_change
    async def stubborn(change: Change[Any]) -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                cancelled.append(1)
        finished.set()

    @settings.on_change
    def next_handler(change: Change[Any]) -> None:
        next_ran.append(finished.is_set())

    def on_failure(sender: Any, **kwargs: Any) -> None:
        failures.append(kwargs)

    signals.handler_failed.connect(on_failure, sender=settings)

    async def main() -> list[Any]:
        writer.write(marked(1))
        try:
            result = await settings.areload()
            # Dispatch moved on while the stubborn handler still ran.
            return [result.applied, list(next_ran)]
        finally:
            release.set()  # else the loop could not end: the handler ignores cancellation
            for _ in range(int(DEADLINE / 0.01)):
                if finished.is_set():
                    break
                await asyncio.sleep(0.01)

    try:
        applied, ran = asyncio.run(main())
    finally:
        release.set()
        signals.handler_failed.disconnect(on_failure, sender=settings)
    assert (applied, ran) == (True, [False])
    assert cancelled, "it was cancelled at the timeout (and ignored it)"
    assert finished.is_set()
    assert [(f["handler"].rsplit(".", 1)[-1], f["signal"]) for f in failures] == [
        ("stubborn", "settings-changed")
    ]
    assert isinstance(failures[0]["error"], TimeoutError)


def test_a_sync_reload_waits_for_its_change_to_be_delivered(tmp_path: Path) -> None:
    """A thread's reload() that meets another delivery under way returns only once its
    own change has reached the handlers (delivered by the one already delivering)."""
    writer = KubeletWriter(tmp_path / "podinfo")
    writer.write(marked(0))
    settings: LiveSettings[Any] = live(marker_settings(writer.path))
    entered, release = threading.Event(), threading.Event()
    seen: list[int] = []

    @settings.on_change
    def slow(change: Change[Any]) -> None:
        seen.append(change.new.marker)
        if change.new.marker == 1:
            entered.set()
            assert release.wait(DEADLINE)

    writer.write(marked(1))
    first = threading.Thread(target=settings.reload)
    first.start()
    try:
        assert entered.wait(DEADLINE)
        writer.write(marked(2))
        returned: list[int] = []
        second = threading.Thread(
            target=lambda: returned.append(settings.reload().change.new.marker)
        )
        second.start()
        assert wait_until(lambda: settings.marker == 2), "applied at once"
        assert returned == [] and seen == [1], "delivered only after the first one"
        release.set()
        second.join(DEADLINE)
        assert returned == [2] and seen == [1, 2]
    finally:
        release.set()
        first.join(DEADLINE)


def test_a_drain_ended_by_an_exception_leaves_the_queue_to_whoever_waits(
    tmp_path: Path,
) -> None:
    """A handler that raises what isn't an Exception (KeyboardInterrupt) ends the delivery
    in its thread; a reload waiting behind it delivers its own change instead of hanging."""
    writer = KubeletWriter(tmp_path / "podinfo")
    writer.write(marked(0))
    settings = live(marker_settings(writer.path))
    second_posted, seen = threading.Event(), []

    @settings.on_change
    def interrupt_once(change: Change[Any]) -> None:
        seen.append(change.new.marker)
        if change.new.marker == 1:
            assert second_posted.wait(DEADLINE)
            raise KeyboardInterrupt

    def first() -> None:
        with contextlib.suppress(KeyboardInterrupt):
            settings.reload()

    writer.write(marked(1))
    interrupted = threading.Thread(target=first)
    interrupted.start()
    assert wait_until(lambda: seen == [1])
    writer.write(marked(2))
    returned: list[int] = []

    def second() -> None:
        result = settings._step("manual")  # posted behind the delivery under way
        second_posted.set()
        settings._core.dispatcher.deliver(result)
        returned.append(result.result.change.new.marker)

    waiting = threading.Thread(target=second)
    waiting.start()
    interrupted.join(DEADLINE)
    waiting.join(DEADLINE * 2)
    assert returned == [2]
    assert seen == [1, 2]
