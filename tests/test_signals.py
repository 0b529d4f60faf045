"""The signals and handlers of LiveSettings, driven by real KubeletWriter swaps: isolation,
order, field filters, coroutine handlers, rollout roles, restart-only fields."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from canaryconf import (
    CanaryConfigDict,
    CanarySettings,
    Change,
    LiveSettings,
    ReloadResult,
    RolloutInfo,
    annotation,
    live,
    signals,
)
from canaryconf.testing import KubeletWriter
from conftest import rollout_pod, wait_until, watcher_threads

pytestmark = pytest.mark.usefixtures("no_watcher_left")


def payload(
    *,
    color: str = "red",
    size: int = 1,
    role: str = "canary",
    workers: int = 2,
    template_hash: str = "5d8f7c9b4",
) -> dict[str, str | bytes]:
    return rollout_pod(
        {"color": color, "size": str(size), "workers": str(workers)},
        role=role,
        template_hash=template_hash,
    )


def settings_for(volume: Path) -> type[CanarySettings]:
    class ShopSettings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=str(volume))

        color: str = annotation("color", default="blue")
        size: int = annotation("size", default=0)
        workers: int = annotation("workers", default=1, restart_required=True)
        rollout: RolloutInfo = RolloutInfo()

    return ShopSettings


@pytest.fixture
def shop(podinfo: KubeletWriter) -> LiveSettings[Any]:
    podinfo.write(payload())
    return live(settings_for(podinfo.path))


# -- isolation and order ----------------------------------------------------------------


def test_a_raising_handler_is_logged_and_isolated(
    podinfo: KubeletWriter, shop: LiveSettings[Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="canaryconf")
    seen: list[str] = []

    @shop.on_change
    def explode_on_change(change: Change[Any]) -> None:
        raise RuntimeError("boom")

    @shop.on_change
    async def explode_later(change: Change[Any]) -> None:
        await asyncio.sleep(0)
        raise LookupError("bang")

    @shop.on_change
    def remember(change: Change[Any]) -> None:
        seen.append(change.new.color)

    with shop:
        podinfo.write(payload(color="green"))
        assert wait_until(lambda: seen == ["green"])
        assert shop.color == "green", "the swap happened"
        podinfo.write(payload(color="yellow"))
        assert wait_until(lambda: seen == ["green", "yellow"]), "the watcher keeps working"
    assert shop.reload().status == "unchanged"

    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.exc_info[0] if r.exc_info else None for r in errors] == [
        RuntimeError,
        LookupError,
    ] * 2
    assert all("settings-changed" in r.getMessage() for r in errors)
    assert all("explode_on_change" in r.getMessage() for r in errors[::2])
    assert all("explode_later" in r.getMessage() for r in errors[1::2])


def test_handlers_run_in_registration_order(
    podinfo: KubeletWriter, shop: LiveSettings[Any]
) -> None:
    order: list[int] = []
    for i in range(12):
        if i % 3 == 1:

            async def handler(change: Change[Any], i: int = i) -> None:
                await asyncio.sleep(0)
                order.append(i)

        else:

            def handler(change: Change[Any], i: int = i) -> None:  # type: ignore[misc]
                order.append(i)

        shop.on_change(handler)

    podinfo.write(payload(color="green"))
    shop.reload()
    assert order == list(range(12))

    order.clear()
    with shop:
        podinfo.write(payload(color="yellow"))
        assert wait_until(lambda: len(order) == 12)
    assert order == list(range(12))


def test_direct_blinker_receivers_and_disconnect(
    podinfo: KubeletWriter, shop: LiveSettings[Any]
) -> None:
    got: list[tuple[str, Any]] = []

    def any_sender(sender: Any, **kwargs: Any) -> None:
        got.append(("any", sender))

    def reloaded(sender: Any, result: ReloadResult[Any]) -> None:
        got.append(("reloaded", result.status))

    def on_change(change: Change[Any]) -> None:
        got.append(("handler", change.new.color))

    signals.settings_changed.connect(any_sender)
    signals.reloaded.connect(reloaded, sender=shop)
    shop.on_change(on_change)
    try:
        podinfo.write(payload(color="green"))
        shop.reload()
        shop.reload()
        assert got == [
            ("any", shop),
            ("handler", "green"),
            ("reloaded", "applied"),
            ("reloaded", "unchanged"),
        ]

        got.clear()
        shop.disconnect(on_change)
        podinfo.write(payload(color="yellow"))
        shop.reload()
        assert got == [("any", shop), ("reloaded", "applied")]
    finally:
        signals.settings_changed.disconnect(any_sender)
        signals.reloaded.disconnect(reloaded)


def test_field_filtered_handlers_fire_only_for_their_fields(
    podinfo: KubeletWriter, shop: LiveSettings[Any]
) -> None:
    by_color: list[Any] = []
    by_size: list[Any] = []
    by_either: list[Any] = []
    shop.on_change("color")(by_color.append)
    shop.on_change("size")(by_size.append)
    shop.on_change("color", "size")(by_either.append)

    podinfo.write(payload(color="green"))
    shop.reload()
    podinfo.write(payload(color="green", size=5))
    shop.reload()
    podinfo.write(payload(color="green", size=5, role="stable"))
    shop.reload()

    assert [c.fields for c in by_color] == [{"color"}]
    assert [c.fields for c in by_size] == [{"size"}]
    assert [c.fields for c in by_either] == [{"color"}, {"size"}]
    with pytest.raises(ValueError, match="no field"):
        shop.on_change("colour")(by_color.append)


# -- coroutine handlers -----------------------------------------------------------------


def test_async_handlers_are_awaited_by_reload_areload_and_the_thread_watcher(
    podinfo: KubeletWriter, shop: LiveSettings[Any]
) -> None:
    finished: list[tuple[str, str | None]] = []

    @shop.on_change
    async def notify(change: Change[Any]) -> None:
        await asyncio.sleep(0.01)
        finished.append((change.new.color, threading.current_thread().name))

    podinfo.write(payload(color="green"))
    result = shop.reload()
    assert result.applied
    assert finished == [("green", threading.current_thread().name)], "done when reload returns"

    async def main() -> None:
        podinfo.write(payload(color="yellow"))
        await shop.areload()
        assert finished[-1][0] == "yellow", "done when areload returns"

    asyncio.run(main())

    with shop:
        podinfo.write(payload(color="white"))
        assert wait_until(lambda: finished[-1][0] == "white")
    # Thread mode runs handlers on a thread without an event loop (Django's ORM works there).
    assert finished[-1][1] == "canaryconf-watcher"


def test_a_role_change_to_another_revision_is_not_a_promotion(
    podinfo: KubeletWriter, shop: LiveSettings[Any]
) -> None:
    promoted: list[Change[Any]] = []
    roles: list[Change[Any]] = []
    shop.on_promoted(promoted.append)
    shop.on_role_changed(roles.append)
    podinfo.write(payload(role="stable", template_hash="6d8f7c9b5"))
    assert shop.reload().applied
    assert len(roles) == 1
    assert promoted == [], "a pod keeps its template hash when it is promoted in place"


def test_sync_handlers_of_the_thread_watcher_run_outside_any_event_loop(
    podinfo: KubeletWriter, shop: LiveSettings[Any]
) -> None:
    loops: list[bool] = []

    @shop.on_change
    def record(change: Change[Any]) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            loops.append(False)
        else:
            loops.append(True)

    with shop:
        podinfo.write(payload(color="white"))
        assert wait_until(lambda: bool(loops))
    assert loops == [False]


def test_a_sync_handler_of_the_thread_watcher_may_run_an_event_loop_of_its_own(
    podinfo: KubeletWriter, shop: LiveSettings[Any]
) -> None:
    # A handler that calls async code with ``asyncio.run`` (an async client's close, say),
    # and one that iterates an async generator there: the thread watcher runs handlers as
    # if no loop were running, for each kubelet commit.
    results: list[str] = []

    async def colours(change: Change[Any]) -> AsyncIterator[str]:
        await asyncio.sleep(0)
        yield change.new.color

    async def collect(change: Change[Any]) -> str:
        return "".join([c async for c in colours(change)])

    @shop.on_change
    def record(change: Change[Any]) -> None:
        results.append(asyncio.run(collect(change)))

    with shop:
        podinfo.write(payload(color="white"))
        assert wait_until(lambda: results == ["white"])
        podinfo.write(payload(color="black"))
        assert wait_until(lambda: results == ["white", "black"])
    assert shop.color == "black"


def test_a_hanging_async_handler_is_cancelled_and_the_watcher_goes_on(
    podinfo: KubeletWriter, caplog: pytest.LogCaptureFixture
) -> None:
    podinfo.write(payload())
    shop = live(settings_for(podinfo.path), handler_timeout=0.2)
    caplog.set_level(logging.ERROR, logger="canaryconf")
    cancelled = threading.Event()
    seen: list[str] = []

    @shop.on_change
    async def hang(change: Change[Any]) -> None:
        if change.new.color != "green":
            return
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    @shop.on_change
    def after(change: Change[Any]) -> None:
        seen.append(change.new.color)

    with shop:
        podinfo.write(payload(color="green"))
        assert wait_until(cancelled.is_set)
        assert wait_until(lambda: seen == ["green"]), "later handlers still run"
        podinfo.write(payload(color="yellow"))
        assert wait_until(lambda: seen == ["green", "yellow"])
    assert shop.color == "yellow"
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(messages) == 1
    assert "hang" in messages[0]
    assert "0.2" in messages[0]


# -- rollout roles ----------------------------------------------------------------------


def test_promotion_from_canary_to_stable(podinfo: KubeletWriter, shop: LiveSettings[Any]) -> None:
    promoted: list[Change[Any]] = []
    role_changes: list[Change[Any]] = []
    moves: list[tuple[str | None, str | None]] = []
    shop.on_promoted(promoted.append)
    shop.on_role_changed(role_changes.append)

    def moved(sender: Any, change: Change[Any], old_role: str | None, new_role: str | None) -> None:
        moves.append((old_role, new_role))

    signals.role_changed.connect(moved, sender=shop)
    try:
        assert shop.rollout_role == "canary"
        assert shop.rollout.is_canary
        with shop:
            podinfo.write(payload(role="stable"))
            assert wait_until(lambda: len(promoted) == 1)
            podinfo.write(payload(role="stable", color="green"))
            assert wait_until(lambda: shop.color == "green")
            podinfo.write(payload(role="canary", color="green"))
            assert wait_until(lambda: shop.rollout_role == "canary")
            assert wait_until(lambda: len(role_changes) == 2)
    finally:
        signals.role_changed.disconnect(moved)

    assert len(promoted) == 1, "canary -> stable only"
    change = promoted[0]
    assert change.old.rollout.role == "canary"
    assert change.new.rollout.role == "stable"
    assert change.new.rollout.pod_template_hash == "5d8f7c9b4"
    assert "rollout" in change
    assert moves == [("canary", "stable"), ("stable", "canary")]


# -- restart-only fields ----------------------------------------------------------------


def test_restart_required_fields_are_not_applied_live(
    podinfo: KubeletWriter, shop: LiveSettings[Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="canaryconf")
    asked: list[frozenset[str]] = []
    changes: list[Change[Any]] = []
    shop.on_restart_required(asked.append)
    shop.on_change(changes.append)

    podinfo.write(payload(color="green", workers=8))
    result = shop.reload()

    assert result.status == "applied"
    assert result.restart_fields == {"workers"}
    assert (shop.color, shop.workers) == ("green", 2)
    assert asked == [frozenset({"workers"})]
    assert [c.fields for c in changes] == [{"color"}]
    assert any("workers" in r.getMessage() and "restart" in r.getMessage() for r in caplog.records)

    podinfo.write(payload(color="green", workers=16))  # only a restart-only field moves
    result = shop.reload()
    assert result.status == "unchanged"
    assert result.restart_fields == {"workers"}
    assert shop.workers == 2
    assert asked == [frozenset({"workers"})] * 2
    assert len(changes) == 1


EXIT_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, time
    from pathlib import Path

    from canaryconf import CanaryConfigDict, CanarySettings, annotation, live
    from canaryconf.testing import KubeletWriter, pod_files

    volume, marker = sys.argv[1], Path(sys.argv[2])
    settings = None

    def on_term(signum, frame):
        # The signal can land while the writer below is mid-rmtree: leave at once rather
        # than unwind through it.
        marker.write_text(f"SIGTERM workers={settings.workers}")
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    writer = KubeletWriter(volume)
    writer.write(pod_files(annotations={"workers": "2"}))

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=volume)
        workers: int = annotation("workers", default=1, restart_required=True)

    settings = live(Settings, on_restart_required="exit")
    settings.start()
    writer.write(pod_files(annotations={"workers": "4"}))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        time.sleep(0.01)
    sys.exit(3)
    """
)


def test_on_restart_required_exit_sends_sigterm_to_the_process(tmp_path: Path) -> None:
    script = tmp_path / "restart.py"
    script.write_text(EXIT_SCRIPT)
    marker = tmp_path / "marker"

    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "podinfo"), str(marker)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    report = f"exit code {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.returncode == 0, report
    assert marker.exists(), report
    assert marker.read_text() == "SIGTERM workers=2"


def test_a_handler_may_stop_the_watcher(
    podinfo: KubeletWriter, shop: LiveSettings[Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="canaryconf")
    returned = threading.Event()

    @shop.on_change
    def stop_watching(change: Change[Any]) -> None:
        shop.stop()
        returned.set()

    shop.start()
    podinfo.write(payload(color="green"))
    assert wait_until(returned.is_set)
    assert not shop.running
    assert wait_until(lambda: not watcher_threads(), 2.0)
    assert caplog.records == []


def test_a_forked_child_starts_from_new_restart_required_values(podinfo: KubeletWriter) -> None:
    """A --preload master forks workers from its old snapshot; each new worker is a fresh
    start, so it takes restart-required values as they are instead of asking to be
    restarted again (with on_restart_required="exit" that would be a crash loop)."""
    podinfo.write(payload(workers=2))
    shop = live(settings_for(podinfo.path))
    podinfo.write(payload(workers=8))  # the master never reloads it
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        report = "error"
        try:
            asked: list[frozenset[str]] = []
            shop.on_restart_required(asked.append)
            result = shop.reload()
            report = f"{result.status} workers={shop.workers} asked={len(asked)}"
            # Only the first reload of the new process adopts: later changes wait again.
            podinfo.write(payload(workers=16))
            later = shop.reload()
            report += f"; later={sorted(later.restart_fields)} workers={shop.workers}"
        finally:
            os.write(write_end, report.encode())
            os._exit(0)
    os.close(write_end)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.02)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the child did not finish")
        report = os.read(read_end, 1000).decode()
    finally:
        os.close(read_end)
    assert report == "applied workers=8 asked=0; later=['workers'] workers=8"
    # The parent itself still holds the value back: it did not restart.
    result = shop.reload()
    assert result.restart_fields == frozenset({"workers"})
    assert shop.workers == 2
