"""Directory watchers on real directories: inotify, watchfiles and polling, fed by
KubeletWriter swaps and by hand edits."""

from __future__ import annotations

import asyncio
import logging
import os
import select
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pytest

from canaryconf import (
    CanaryConfigDict,
    CanarySettings,
    Change,
    LiveSettings,
    ReloadResult,
    _inotify,
    _watch,
    annotation,
    configmap,
    live,
    signals,
)
from canaryconf.testing import KubeletWriter, pod_files
from conftest import DEADLINE, wait_until, watcher_threads

needs_inotify = pytest.mark.skipif(not _inotify.available(), reason="inotify is Linux-only")


pytestmark = pytest.mark.usefixtures("no_watcher_left")


def podinfo_settings(volume: Path) -> type[CanarySettings]:
    class Settings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=str(volume))
        color: str = annotation("color", default="blue")

    return Settings


def colored(color: str) -> dict[str, str | bytes]:
    return pod_files(annotations={"color": color})


def count_changes(settings: LiveSettings[Any]) -> list[Change[Any]]:
    """Every change ``settings`` applies, as its settings_changed receivers see them."""
    changes: list[Change[Any]] = []
    settings.on_change(changes.append)
    return changes


BACKENDS = [
    pytest.param({"backend": "inotify"}, id="inotify", marks=needs_inotify),
    pytest.param({"backend": "watchfiles"}, id="watchfiles"),
    pytest.param({"force_polling": True, "poll_interval": 0.05}, id="polling"),
]


# -- every backend ----------------------------------------------------------------------


@pytest.mark.parametrize("options", BACKENDS)
def test_each_backend_sees_kubelet_swaps(podinfo: KubeletWriter, options: dict[str, Any]) -> None:
    podinfo.write(colored("red"))
    settings = live(podinfo_settings(podinfo.path), **options)
    settings.start()
    try:
        for color in ("green", "yellow", "white"):
            podinfo.write(colored(color))
            assert wait_until(lambda color=color: settings.color == color), color
        watches = [w for w in _watch.active_watches() if w.path == str(podinfo.path)]
        assert [w.backend for w in watches] == [
            "polling" if options.get("force_polling") else options["backend"]
        ]
    finally:
        settings.stop()
    assert not watcher_threads(), "stop() returns once the thread ended"


@pytest.mark.parametrize("options", BACKENDS)
def test_each_backend_sees_hand_edits_of_a_plain_directory(
    tmp_path: Path, options: dict[str, Any]
) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "color").write_text("red")

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=None, configmap_dirs=[str(config)])
        color: str = configmap("color", default="blue")

    settings = live(Settings, **options)
    with settings:
        (config / "color").write_text("green")
        assert wait_until(lambda: settings.color == "green")
        (config / "color").write_text("white")
        assert wait_until(lambda: settings.color == "white")


@pytest.mark.parametrize("options", BACKENDS)
def test_each_backend_sees_a_swap_in_an_asyncio_loop(
    podinfo: KubeletWriter, options: dict[str, Any]
) -> None:
    podinfo.write(colored("red"))
    settings = live(podinfo_settings(podinfo.path), **options)

    async def main() -> None:
        async with settings.watching():
            podinfo.write(colored("green"))
            deadline = time.monotonic() + DEADLINE
            while settings.color != "green" and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
        assert settings.color == "green"

    asyncio.run(main())


def test_polling_compares_content_not_mtimes(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    file = config / "color"
    file.write_text("red")
    stamp = os.stat(file).st_mtime_ns

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=None, configmap_dirs=[str(config)])
        color: str = configmap("color", default="blue")

    settings = live(Settings, force_polling=True, poll_interval=0.02)
    with settings:
        file.write_text("tan")  # same size, and the same mtime below
        os.utime(file, ns=(stamp, stamp))
        assert wait_until(lambda: settings.color == "tan")


def test_choose_backend() -> None:
    assert _watch.choose_backend("inotify", force_polling=True) == "polling"
    assert _watch.choose_backend("polling", force_polling=False) == "polling"
    assert _watch.choose_backend("watchfiles", force_polling=False) == "watchfiles"
    expected = "inotify" if _inotify.available() else "watchfiles"
    assert _watch.choose_backend("auto", force_polling=False) == expected


# -- inotify ----------------------------------------------------------------------------


def _events_until(fd: int, done: Callable[[list[_inotify.InotifyEvent]], bool]) -> list[Any]:
    events: list[_inotify.InotifyEvent] = []
    deadline = time.monotonic() + DEADLINE
    while not done(events):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        if select.select([fd], [], [], remaining)[0]:
            events.extend(_inotify.read_events(fd))
    return events


def _is_commit(event: _inotify.InotifyEvent) -> bool:
    return event.name == "..data" and bool(event.mask & _inotify.IN_MOVED_TO)


@needs_inotify
def test_inotify_reports_the_data_rename_and_the_directory_going(
    podinfo: KubeletWriter,
) -> None:
    podinfo.write(colored("red"))
    fd = _inotify.open_inotify()
    try:
        _inotify.add_directory_watch(fd, str(podinfo.path))
        assert _inotify.read_events(fd) == [], "non-blocking: nothing queued, no wait"

        podinfo.write(colored("green"))
        events = _events_until(fd, lambda seen: any(_is_commit(e) for e in seen))
        assert any(_is_commit(e) for e in events)
        names = {e.name for e in events}
        assert "annotations" not in names, "files inside a generation are not watched"

        shutil.rmtree(podinfo.path)
        events = _events_until(fd, lambda seen: any(e.mask & _inotify.GONE_MASK for e in seen))
        assert any(e.mask & _inotify.IN_DELETE_SELF for e in events)
    finally:
        os.close(fd)


@needs_inotify
def test_inotify_watch_refuses_missing_paths_and_files(tmp_path: Path) -> None:
    file = tmp_path / "labels"
    file.write_text("")
    fd = _inotify.open_inotify()
    try:
        with pytest.raises(FileNotFoundError):
            _inotify.add_directory_watch(fd, str(tmp_path / "missing"))
        with pytest.raises(NotADirectoryError):
            _inotify.add_directory_watch(fd, str(file))
    finally:
        os.close(fd)


@needs_inotify
def test_one_kubelet_swap_is_one_reload(podinfo: KubeletWriter) -> None:
    """The watcher wakes for the ``..data`` rename alone: one reload per swap, not one
    more for the kubelet's other steps (its new generation, the old one's removal)."""
    podinfo.write(colored("red"))
    settings = live(podinfo_settings(podinfo.path), backend="inotify")
    changes = count_changes(settings)
    reloads: list[ReloadResult[Any]] = []
    signals.reloaded.connect(
        lambda sender, result: reloads.append(result), sender=settings, weak=False
    )
    colors = ("green", "yellow", "white", "black")
    with settings:
        caught_up = len(reloads)  # start() catches up once
        for color in colors:
            podinfo.write(colored(color))
            assert wait_until(lambda color=color: settings.color == color)
        assert wait_until(lambda: len(reloads) - caught_up >= len(colors))
    # Events are read in order: whatever the first swaps caused came before the last
    # swap's rename, which was seen.
    assert [r.reason for r in reloads[caught_up:]] == ["applied"] * len(colors)
    assert [c.diff()["color"] for c in changes] == [
        ("red", "green"),
        ("green", "yellow"),
        ("yellow", "white"),
        ("white", "black"),
    ]


@needs_inotify
def test_the_data_rename_is_a_commit_that_skips_the_debounce(podinfo: KubeletWriter) -> None:
    podinfo.write(colored("red"))
    settings = live(podinfo_settings(podinfo.path), backend="inotify", debounce=60.0)
    with settings:
        podinfo.write(colored("green"))
        assert wait_until(lambda: settings.color == "green", 10.0)
        started = time.monotonic()
    # Far below the 60 s debounce (and far above any other bound): stop() does not wait.
    assert time.monotonic() - started < 30.0, "stop() does not wait for the debounce"


@needs_inotify
def test_hand_edits_of_a_plain_directory_are_coalesced(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    names = ["one", "two", "three", "four", "five"]
    for name in names:
        (config / name).write_text("0")

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=None, configmap_dirs=[str(config)])
        one: int = configmap("one")
        two: int = configmap("two")
        three: int = configmap("three")
        four: int = configmap("four")
        five: int = configmap("five")

    settings = live(Settings, backend="inotify", debounce=0.25)
    changes = count_changes(settings)
    with settings:
        for name in names:
            (config / name).write_text("7")
        assert wait_until(lambda: settings.current.model_dump() == dict.fromkeys(names, 7))
        time.sleep(0.3)  # a second debounce window: nothing more may come
    assert 1 <= len(changes) <= 2, [sorted(c.fields) for c in changes]


# -- DirectoryWatch ---------------------------------------------------------------------


def test_a_watch_is_shared_within_a_loop(tmp_path: Path) -> None:
    async def main() -> tuple[Any, Any]:
        a = _watch.directory_watch(
            str(tmp_path), backend="polling", debounce=0.005, poll_interval=1.0
        )
        b = _watch.directory_watch(
            str(tmp_path / "." / ""), backend="polling", debounce=0.005, poll_interval=1.0
        )
        return a, b

    first, second = asyncio.run(main())
    other, _ = asyncio.run(main())
    assert first is second
    assert other is not first


@pytest.mark.parametrize("backend", ["inotify", "polling"])
def test_a_watch_waits_for_a_missing_directory(
    tmp_path: Path, backend: Literal["inotify", "polling"]
) -> None:
    if backend == "inotify" and not _inotify.available():
        pytest.skip("inotify is Linux-only")
    volume = tmp_path / "later"

    async def main() -> int:
        calls = 0

        async def subscriber() -> None:
            nonlocal calls
            calls += 1

        watch = _watch.directory_watch(
            str(volume), backend=backend, debounce=0.005, poll_interval=0.02
        )
        watch.subscribe(subscriber)
        try:
            await asyncio.wait_for(watch.ready.wait(), DEADLINE)
            KubeletWriter(volume).write(colored("green"))
            deadline = time.monotonic() + DEADLINE
            while calls == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            return calls
        finally:
            await watch.unsubscribe(subscriber)

    assert asyncio.run(main()) >= 1


def test_a_watch_on_a_plain_file_warns_about_subpath(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    file = tmp_path / "podinfo"
    file.write_text('role="canary"')
    caplog.set_level(logging.WARNING, logger="canaryconf")

    async def main() -> None:
        async def subscriber() -> None:
            pass

        watch = _watch.directory_watch(
            str(file), backend="inotify", debounce=0.005, poll_interval=0.02
        )
        watch.subscribe(subscriber)
        await asyncio.wait_for(watch.ready.wait(), DEADLINE)
        await watch.unsubscribe(subscriber)

    asyncio.run(main())
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("subPath" in m and str(file) in m for m in warnings), warnings


@pytest.mark.parametrize("options", BACKENDS)
@pytest.mark.parametrize("pause", [0.0, 0.3], ids=["at-once", "after-a-pause"])
def test_each_backend_follows_a_removed_and_recreated_volume(
    podinfo: KubeletWriter, options: dict[str, Any], pause: float
) -> None:
    podinfo.write(colored("red"))
    settings = live(podinfo_settings(podinfo.path), **options)
    with settings:
        shutil.rmtree(podinfo.path)
        time.sleep(pause)
        writer = KubeletWriter(podinfo.path)
        writer.write(colored("reborn"))
        assert wait_until(lambda: settings.color == "reborn")
        time.sleep(0.1)
        for color in ("green", "yellow"):
            writer.write(colored(color))
            assert wait_until(lambda color=color: settings.color == color), color
