"""Directory watchers on real directories: inotify, watchfiles and polling, fed by
KubeletWriter swaps and by hand edits."""

from __future__ import annotations

import asyncio
import contextlib
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
    secret,
    signals,
)
from canaryconf.testing import KubeletWriter, pod_files
from conftest import DEADLINE, ForkedChild, read_child_line, wait_until, watcher_threads

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


# -- one inotify descriptor per event loop ----------------------------------------------


def inotify_fds() -> set[int]:
    """The inotify descriptors open in this process, whoever opened them."""
    found = set()
    for entry in os.scandir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the scandir descriptor itself is gone by now
            if os.readlink(entry.path) == "anon_inode:inotify":
                found.add(int(entry.name))
    return found


def kernel_masks(fd: int) -> dict[int, int]:
    """The watches of inotify descriptor ``fd`` as the kernel holds them: watch descriptor
    -> event mask (``/proc/self/fdinfo``), event bits only."""
    masks = {}
    with open(f"/proc/self/fdinfo/{fd}") as info:
        for line in info:
            if line.startswith("inotify "):
                fields = dict(item.split(":", 1) for item in line.split()[1:])
                masks[int(fields["wd"], 16)] = int(fields["mask"], 16) & EVENT_BITS
    return masks


#: The event bits of an inotify mask (IN_ALL_EVENTS), without flags such as IN_ONLYDIR.
EVENT_BITS = 0xFFF


def three_volume_settings(podinfo: Path, config: Path, secrets: Path) -> type[CanarySettings]:
    class Three(CanarySettings):
        model_config = CanaryConfigDict(
            downward_api_dir=str(podinfo),
            configmap_dirs=[str(config)],
            secrets_dirs=[str(secrets)],
        )
        color: str = annotation("color", default="blue")
        size: int = configmap("size", default=0)
        token: str = secret("token", default="")

    return Three


@needs_inotify
def test_a_hundred_live_settings_on_three_hundred_volumes_share_one_inotify_fd(
    tmp_path: Path,
) -> None:
    """More watched directories than ``fs.inotify.max_user_instances`` (128 by default)
    allows descriptors: they all stay on inotify, on one descriptor (the runtime's loop);
    none falls back to polling, and a swap still reaches the last one's handler."""
    before = inotify_fds()
    writers: list[tuple[KubeletWriter, KubeletWriter, KubeletWriter]] = []
    instances: list[LiveSettings[Any]] = []
    for n in range(100):
        podinfo = KubeletWriter(tmp_path / f"podinfo-{n}")
        config = KubeletWriter(tmp_path / f"config-{n}")
        secrets = KubeletWriter(tmp_path / f"secrets-{n}")
        podinfo.write(colored("red"))
        config.write({"size": "1"})
        secrets.write({"token": "a"})
        writers.append((podinfo, config, secrets))
        instances.append(live(three_volume_settings(podinfo.path, config.path, secrets.path)))
    last = instances[-1]
    changes = count_changes(last)
    try:
        for instance in instances:
            instance.start()
        opened = inotify_fds() - before
        assert len(opened) == 1, opened
        assert _watch.inotify_descriptors() == sorted(opened)
        watches = _watch.active_watches()
        assert len(watches) == 300
        assert {w.backend for w in watches} == {"inotify"}, "no watch fell back to polling"
        (fd,) = opened
        assert len(kernel_masks(fd)) == 300

        podinfo, config, secrets = writers[-1]
        podinfo.write(colored("green"))
        config.write({"size": "2"})
        secrets.write({"token": "b"})
        assert wait_until(lambda: (last.color, last.size, last.token) == ("green", 2, "b"))
        assert wait_until(lambda: changes and changes[-1].new.token == "b")
        assert instances[0].color == "red", "the others did not change"
    finally:
        for instance in instances:
            instance.stop()
    assert inotify_fds() == before, "no inotify descriptor is left once nothing watches"


@needs_inotify
def test_each_event_loop_has_its_own_inotify_fd_closed_with_its_last_watch(
    podinfo: KubeletWriter, tmp_path: Path
) -> None:
    """The runtime's loop (``start()``) and a loop of the application (``watching()``)
    each hold one descriptor; each is closed when its loop stops watching."""
    podinfo.write(colored("red"))
    other = KubeletWriter(tmp_path / "other")
    other.write(colored("red"))
    before = inotify_fds()
    threaded = live(podinfo_settings(podinfo.path))
    in_loop = live(podinfo_settings(other.path))

    async def main() -> set[int]:
        async with in_loop.watching():
            opened = inotify_fds() - before
            other.write(colored("green"))
            deadline = time.monotonic() + DEADLINE
            while in_loop.color != "green" and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            assert in_loop.color == "green"
        # The watch ended with the block: its loop's descriptor is closed already.
        assert inotify_fds() - before == runtime_fd
        return opened

    with threaded:
        runtime_fd = inotify_fds() - before
        assert len(runtime_fd) == 1
        opened = asyncio.run(main())
        assert len(opened) == 2, "one for the runtime's loop, one for the application's"
        podinfo.write(colored("green"))
        assert wait_until(lambda: threaded.color == "green")
        assert inotify_fds() - before == runtime_fd
    assert inotify_fds() == before


@needs_inotify
def test_a_loop_closed_while_watching_leaves_no_inotify_fd(podinfo: KubeletWriter) -> None:
    """A loop closed with its watch still running (its tasks never cancelled: nothing
    will run their cleanup) does not keep its descriptor."""
    podinfo.write(colored("red"))
    before = inotify_fds()
    loop = asyncio.new_event_loop()

    async def subscriber() -> None:
        pass

    async def start() -> _watch.DirectoryWatch:
        watch = _watch.directory_watch(
            str(podinfo.path), backend="inotify", debounce=0.005, poll_interval=1.0
        )
        watch.subscribe(subscriber)
        await asyncio.wait_for(watch.ready.wait(), DEADLINE)
        return watch

    watch = loop.run_until_complete(start())
    try:
        assert len(inotify_fds() - before) == 1
    finally:
        loop.close()  # the watch task is still pending
        # (Which is the point: asyncio need not say so when the task is collected.)
        task = watch._task
        if task is not None:
            task._log_destroy_pending = False  # type: ignore[attr-defined]
    assert _watch.inotify_descriptors() == []
    assert inotify_fds() == before


@needs_inotify
def test_two_paths_to_one_directory_share_a_watch(podinfo: KubeletWriter, tmp_path: Path) -> None:
    """A symlink to a volume and the volume itself: two DirectoryWatches, one kernel
    watch (the kernel gives one watch descriptor per inode). Both hear each swap; when one
    stops, the other still does."""
    podinfo.write(colored("red"))
    alias = tmp_path / "alias"
    alias.symlink_to(podinfo.path, target_is_directory=True)

    async def wait_for(condition: Callable[[], bool]) -> bool:
        deadline = time.monotonic() + DEADLINE
        while not condition() and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        return condition()

    async def main() -> None:
        calls = {"direct": 0, "alias": 0}

        async def direct() -> None:
            calls["direct"] += 1

        async def via_alias() -> None:
            calls["alias"] += 1

        options: dict[str, Any] = {"backend": "inotify", "debounce": 0.005, "poll_interval": 1}
        first = _watch.directory_watch(str(podinfo.path), **options)
        second = _watch.directory_watch(str(alias), **options)
        assert first is not second
        first.subscribe(direct)
        second.subscribe(via_alias)
        try:
            await asyncio.wait_for(first.ready.wait(), DEADLINE)
            await asyncio.wait_for(second.ready.wait(), DEADLINE)
            (fd,) = _watch.inotify_descriptors()
            assert len(kernel_masks(fd)) == 1, "one kernel watch for the two paths"
            seen = dict(calls)
            podinfo.write(colored("green"))
            assert await wait_for(lambda: all(calls[k] > seen[k] for k in calls)), calls
            await first.unsubscribe(direct)
            assert len(kernel_masks(fd)) == 1, "the other path still needs it"
            seen = dict(calls)
            podinfo.write(colored("yellow"))
            assert await wait_for(lambda: calls["alias"] > seen["alias"]), calls
            assert calls["direct"] == seen["direct"]
        finally:
            await first.unsubscribe(direct)
            await second.unsubscribe(via_alias)
        assert _watch.inotify_descriptors() == []

    asyncio.run(main())


@needs_inotify
def test_the_kernel_mask_of_a_shared_watch_is_the_union_of_its_listeners(
    podinfo: KubeletWriter, tmp_path: Path
) -> None:
    """``inotify_add_watch`` replaces the mask of a watched inode: a listener asking for
    less must not take from another what it asked for. Each listener gets only the
    events its own mask asks for; the mask narrows when one leaves, the kernel watch goes
    with the last one and the descriptor with the loop's last watch."""
    podinfo.write(colored("red"))
    alias = tmp_path / "alias"
    alias.symlink_to(podinfo.path, target_is_directory=True)
    kubelet_bits = _inotify.KUBELET_MASK & EVENT_BITS
    directory_bits = _inotify.DIRECTORY_MASK & EVENT_BITS

    async def main() -> None:
        hub = _watch._hub(asyncio.get_running_loop())
        swaps = _watch._Listener(str(podinfo.path), _inotify.KUBELET_MASK)
        everything = _watch._Listener(str(alias), _inotify.DIRECTORY_MASK)
        hub.add(swaps)
        try:
            assert hub.fd is not None
            assert kernel_masks(hub.fd) == {swaps.wd: kubelet_bits}
            hub.add(everything)
            try:
                assert everything.wd == swaps.wd
                assert kernel_masks(hub.fd) == {swaps.wd: kubelet_bits | directory_bits}
                (podinfo.path / "hand-made").write_text("x")  # no ..data rename
                podinfo.write(colored("green"))  # then one
                await asyncio.wait_for(swaps.wakeup.wait(), DEADLINE)
                await asyncio.wait_for(everything.wakeup.wait(), DEADLINE)
                while not any(e.name == "..data" for e in everything.pending):
                    everything.wakeup.clear()
                    await asyncio.wait_for(everything.wakeup.wait(), DEADLINE)
                assert any(e.name == "hand-made" for e in everything.pending)
                assert all(e.mask & _inotify.KUBELET_MASK for e in swaps.pending)
                assert not any(e.name == "hand-made" for e in swaps.pending)
            finally:
                hub.remove(everything)
            assert kernel_masks(hub.fd) == {swaps.wd: kubelet_bits}, "narrowed again"
            # A listener switching to the kubelet's mask narrows it as well.
            hub.add(everything)
            hub.set_mask(everything, _inotify.KUBELET_MASK)
            assert kernel_masks(hub.fd) == {swaps.wd: kubelet_bits}
            hub.remove(everything)
        finally:
            hub.remove(swaps)
        assert hub.fd is None, "closed with the loop's last watch"

    asyncio.run(main())


@needs_inotify
def test_a_removed_and_recreated_volume_is_watched_again_on_the_shared_fd(
    podinfo: KubeletWriter, tmp_path: Path
) -> None:
    """The kernel drops the watch of a removed directory (IN_IGNORED): that reaches its
    own watch alone, which watches the new directory on the same descriptor, while the
    other volume's watch goes on undisturbed."""
    podinfo.write(colored("red"))
    steady = KubeletWriter(tmp_path / "steady")
    steady.write(colored("red"))
    removed = live(podinfo_settings(podinfo.path), backend="inotify")
    kept = live(podinfo_settings(steady.path), backend="inotify")
    with removed, kept:
        fds = _watch.inotify_descriptors()
        assert len(fds) == 1
        shutil.rmtree(podinfo.path)
        steady.write(colored("green"))
        assert wait_until(lambda: kept.color == "green")
        writer = KubeletWriter(podinfo.path)
        writer.write(colored("reborn"))
        assert wait_until(lambda: removed.color == "reborn")
        for color in ("yellow", "white"):
            writer.write(colored(color))
            steady.write(colored(color))
            assert wait_until(lambda color=color: (removed.color, kept.color) == (color,) * 2)
        assert _watch.inotify_descriptors() == fds, "the same descriptor throughout"
        assert len(kernel_masks(fds[0])) == 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
@needs_inotify
def test_a_forked_child_watches_on_an_inotify_fd_of_its_own(podinfo: KubeletWriter) -> None:
    """The child closes the parent's descriptor and its restarted watcher opens its own;
    the parent's watch is not disturbed by the child (they share the parent's epoll
    registration's file, which the child must not unregister)."""
    podinfo.write(colored("red"))
    settings = live(podinfo_settings(podinfo.path))

    def child(out: int, go: int) -> int:
        settings.start()  # returns once the restart after fork is done
        fds = _watch.inotify_descriptors()
        # One descriptor in all: the parent's copy was closed (its number may be reused).
        state = [len(fds), sorted(inotify_fds()) == fds]
        os.write(out, f"{state}\n".encode())
        if read_child_line(go, DEADLINE * 2) != "go":
            return 3
        if not wait_until(lambda: settings.color == "green"):
            return 4
        settings.stop()
        return 0 if not inotify_fds() else 5

    with settings:
        parent_fds = _watch.inotify_descriptors()
        assert len(parent_fds) == 1
        with ForkedChild(child) as forked:
            assert forked.read_line(DEADLINE * 4) == "[1, True]"
            podinfo.write(colored("green"))
            forked.send("go")
            assert forked.reap(DEADLINE * 4) == 0
        assert wait_until(lambda: settings.color == "green")
        podinfo.write(colored("yellow"))
        assert wait_until(lambda: settings.color == "yellow"), "the parent still watches"
        assert _watch.inotify_descriptors() == parent_fds
