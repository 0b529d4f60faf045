"""LiveSettings against real volumes: KubeletWriter swaps, real watchers, real threads,
real signals and a real fork. Every wait is a condition polled against a deadline."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError, field_validator

from canaryconf import (
    CanaryConfigDict,
    CanarySettings,
    Change,
    LiveSettings,
    NotAVolumeError,
    ReloadResult,
    SettingsValidationError,
    annotation,
    configmap,
    label,
    live,
    secret,
    signals,
)
from canaryconf._watch import active_watches
from canaryconf.testing import DEFAULT_CONFIG_SEEN, KubeletWriter, pod_files
from conftest import (
    DEADLINE,
    ForkedChild,
    read_child_line,
    rollout_pod,
    wait_until,
    watcher_threads,
)

PREFIX = "example.com/"

pytestmark = pytest.mark.usefixtures("no_watcher_left")


async def await_until(condition: Callable[[], object], timeout: float = DEADLINE) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return bool(condition())
        await asyncio.sleep(0.005)
    return True


def payload(
    *,
    color: str = "red",
    size: int | str = 1,
    role: str = "canary",
    seen: str = DEFAULT_CONFIG_SEEN,
    **annotations: str,
) -> dict[str, str | bytes]:
    """A podinfo volume: the role label, and ``example.com/`` annotations."""
    return rollout_pod(
        {"color": color, "size": str(size), **annotations},
        role=role,
        prefix=PREFIX,
        config_seen=seen,
    )


def settings_for(volume: Path) -> type[CanarySettings]:
    class AppSettings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=str(volume), annotation_prefix=PREFIX)

        color: str = annotation("color", default="blue")
        size: int = annotation("size", default=0)
        role: str = label("role", default="stable")

    return AppSettings


@pytest.fixture
def app(podinfo: KubeletWriter) -> LiveSettings[Any]:
    podinfo.write(payload())
    return live(settings_for(podinfo.path))


# -- reload() ---------------------------------------------------------------------------


def test_reload_applies_a_new_version(podinfo: KubeletWriter, app: LiveSettings[Any]) -> None:
    before, old_generation, old_digest = app.current, app.generation, app.digest
    assert app.color == "red"
    assert old_generation == podinfo.generation

    podinfo.write(payload(color="green"))
    result = app.reload()

    assert result.status == "applied"
    assert result.applied
    assert result.change is not None
    assert result.change.fields == {"color"}
    assert result.change.diff() == {"color": ("red", "green")}
    assert result.change.old is before
    assert result.change.new is app.current
    assert app.color == "green"
    assert app.current.color == "green"
    assert before.color == "red", "a pinned snapshot never changes"
    assert app.generation == podinfo.generation != old_generation
    assert app.digest != old_digest
    assert result.generation == app.generation
    assert result.digest == app.digest


def test_reload_of_unchanged_content_emits_nothing(
    podinfo: KubeletWriter, app: LiveSettings[Any]
) -> None:
    changes: list[Change[Any]] = []
    failures: list[Exception] = []
    app.on_change(changes.append)
    app.on_reload_failed(failures.append)
    snapshot = app.current

    assert app.reload().status == "unchanged"
    assert app.reload().status == "unchanged"
    # A new generation whose settings values are the same (only the kubelet's own
    # config.seen annotation moved): new digest, same snapshot, no change.
    assert podinfo.write(payload(seen="2026-02-02T00:00:00.000000000Z"))
    result = app.reload()

    assert result.status == "unchanged"
    assert result.change is None
    assert app.current is snapshot
    assert app.generation == podinfo.generation
    assert changes == []
    assert failures == []


def test_failed_reload_keeps_the_last_good_snapshot(
    podinfo: KubeletWriter, app: LiveSettings[Any]
) -> None:
    failures: list[Exception] = []
    app.on_reload_failed(failures.append)
    good = app.current

    podinfo.write(payload(color="green", size="twelve"))
    result = app.reload()

    assert result.status == "failed"
    assert result.failed
    assert app.current is good
    assert (app.color, app.size) == ("red", 1), "nothing of the bad version is applied"
    error = app.last_error
    assert isinstance(error, SettingsValidationError)
    assert result.error is error
    assert failures == [error]
    message = str(error)
    assert str(podinfo.path / "annotations") in message
    assert f"{PREFIX}size" in message
    assert "twelve" not in message, "values never appear in errors"

    # Reading the same bad content again still fails, with the same error, but is not
    # news: reload_failed is not sent twice for one version.
    again = app.reload()
    assert again.status == "failed"
    assert again.repeated
    assert again.error is error
    assert failures == [error]
    assert app.last_error is error

    podinfo.write(payload(color="green", size=2))
    assert app.reload().status == "applied"
    assert (app.color, app.size) == ("green", 2)
    assert app.last_error is None


def test_rollback_to_the_last_good_content_clears_last_error(
    podinfo: KubeletWriter, app: LiveSettings[Any]
) -> None:
    podinfo.write(payload(size="twelve"))
    assert app.reload().failed
    assert app.last_error is not None

    podinfo.write(payload())  # the bad annotation is reverted: back to what is applied
    result = app.reload()

    assert result.status == "unchanged"
    assert app.last_error is None
    podinfo.write(payload(size="twelve"))
    assert app.reload().failed, "the same bad version, once more, is reported again"


def test_current_is_frozen_and_live_is_read_only(app: LiveSettings[Any]) -> None:
    with pytest.raises(ValidationError):
        app.current.color = "purple"
    with pytest.raises(AttributeError):
        app.color = "purple"
    assert app.color == "red"


def test_field_reads_follow_each_swap(podinfo: KubeletWriter, app: LiveSettings[Any]) -> None:
    seen = []
    for i in range(5):
        podinfo.write(payload(size=i + 10))
        app.reload()
        seen.append((app.size, app.current.size, app.generation, app.digest))

    assert [s[0] for s in seen] == [10, 11, 12, 13, 14]
    assert all(s[0] == s[1] for s in seen)
    assert len({s[2] for s in seen}) == 5
    assert len({s[3] for s in seen}) == 5
    assert app.generations == {str(podinfo.path): podinfo.generation}


def test_a_field_named_like_a_live_settings_member_is_refused(podinfo: KubeletWriter) -> None:
    """``live.generation`` would read the volume generation, not the field: refused, with
    the clash named and the way out (another field name, the same key)."""
    podinfo.write(pod_files(annotations={"start": "now", "generation": "g7"}))

    class Clashing(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=str(podinfo.path))
        start: str = annotation("start", default="later")
        generation: str = annotation("generation", default="g0")

    with pytest.raises(TypeError) as raised:
        live(Clashing)
    message = str(raised.value)
    assert "Clashing" in message
    assert "'generation'" in message and "'start'" in message
    assert "generation_value: str = annotation('generation')" in message

    class Renamed(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=str(podinfo.path))
        start_at: str = annotation("start", default="later")
        generation_value: str = annotation("generation", default="g0")

    settings = live(Renamed)
    assert (settings.start_at, settings.generation_value) == ("now", "g7")
    assert settings.generation == podinfo.generation


def test_unknown_keyword_arguments_are_refused(podinfo: KubeletWriter) -> None:
    podinfo.write(pod_files(annotations={}))

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=str(podinfo.path))
        color: str = annotation("color", default="blue")

    with pytest.raises(TypeError, match=r"'debouce'.*neither an option.*nor a field of Settings"):
        live(Settings, debouce=0.5)
    assert live(Settings, color="red", debounce=0.5).color == "red"


# -- async watcher ----------------------------------------------------------------------


def test_async_watching_picks_up_a_swap(podinfo: KubeletWriter, app: LiveSettings[Any]) -> None:
    async def main() -> None:
        async with app.watching() as watched:
            assert watched is app
            podinfo.write(payload(color="green"))
            assert await await_until(lambda: app.color == "green")
            podinfo.write(payload(color="yellow"))
            assert await await_until(lambda: app.color == "yellow")
        assert not [w for w in active_watches() if w.path == str(podinfo.path)]

    asyncio.run(main())


def test_watch_returns_when_its_stop_event_is_set(
    podinfo: KubeletWriter, app: LiveSettings[Any]
) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(app.watch(stop))
        assert await await_until(lambda: any(w.ready.is_set() for w in active_watches()))
        podinfo.write(payload(color="green"))
        assert await await_until(lambda: app.color == "green")

        stop.set()
        await asyncio.wait_for(task, 2.0)
        assert not [w for w in active_watches() if w.path == str(podinfo.path)]

    asyncio.run(main())


def test_async_watching_catches_up_with_a_swap_made_before_it_started(
    podinfo: KubeletWriter, app: LiveSettings[Any]
) -> None:
    podinfo.write(payload(color="green"))  # after live(), before watching

    async def main() -> None:
        async with app.watching():
            assert app.color == "green"

    asyncio.run(main())


# -- thread watcher ---------------------------------------------------------------------


def test_thread_watcher_starts_and_stops(podinfo: KubeletWriter, app: LiveSettings[Any]) -> None:
    assert not app.running
    assert app.start() is app
    assert app.running
    assert len(watcher_threads()) == 1
    podinfo.write(payload(color="green"))
    assert wait_until(lambda: app.color == "green")

    app.stop()
    assert not app.running
    assert watcher_threads() == [], "stop() returns once the thread ended"
    # A watcher of the same volume proves the swap was there to be seen.
    witness = live(settings_for(podinfo.path))
    with witness:
        podinfo.write(payload(color="yellow"))
        assert wait_until(lambda: witness.color == "yellow")
    assert app.color == "green", "a stopped watcher reloads nothing"
    app.stop()  # a second stop is harmless


def test_thread_watcher_can_be_restarted_and_used_as_a_context_manager(
    podinfo: KubeletWriter, app: LiveSettings[Any]
) -> None:
    with app:
        podinfo.write(payload(color="green"))
        assert wait_until(lambda: app.color == "green")
    assert watcher_threads() == []

    podinfo.write(payload(color="yellow"))
    with app:
        assert app.color == "yellow", "a restarted watcher starts from the current content"
        podinfo.write(payload(color="white"))
        assert wait_until(lambda: app.color == "white")
    assert watcher_threads() == []


def test_two_live_settings_on_one_directory_share_one_watch(podinfo: KubeletWriter) -> None:
    podinfo.write(payload())
    first = live(settings_for(podinfo.path))
    second = live(settings_for(podinfo.path))
    podinfo.write(payload(color="green"))  # between live() and start() of the second
    try:
        first.start()
        second.start()
        watches = [w for w in active_watches() if w.path == str(podinfo.path)]
        assert len(watches) == 1
        assert len(watches[0].subscribers) == 2
        assert len(watcher_threads()) == 1
        assert wait_until(lambda: first.color == second.color == "green")

        podinfo.write(payload(color="yellow"))
        assert wait_until(lambda: first.color == second.color == "yellow")

        first.stop()
        assert len(watcher_threads()) == 1, "the thread lives while a user remains"
        podinfo.write(payload(color="white"))
        assert wait_until(lambda: second.color == "white")
        assert first.color == "yellow"
    finally:
        first.stop()
        second.stop()
    assert not [w for w in active_watches() if w.path == str(podinfo.path)]
    assert wait_until(lambda: not watcher_threads(), 1.0)


# -- bursts and consistency -------------------------------------------------------------


def test_a_burst_of_swaps_converges_on_the_last_one_thread(
    podinfo: KubeletWriter, app: LiveSettings[Any]
) -> None:
    with app:
        for i in range(200):
            podinfo.write(payload(size=i))
        assert wait_until(lambda: app.size == 199)
    assert app.generation == podinfo.generation
    assert app.last_error is None


def test_a_burst_of_swaps_converges_on_the_last_one_async(
    podinfo: KubeletWriter, app: LiveSettings[Any]
) -> None:
    async def main() -> None:
        async with app.watching():
            for i in range(200):
                podinfo.write(payload(size=i))
                if i % 20 == 0:
                    await asyncio.sleep(0)  # let the watcher run mid-burst too
            assert await await_until(lambda: app.size == 199)

    asyncio.run(main())
    assert app.generation == podinfo.generation


@pytest.mark.slow
def test_no_reader_ever_sees_a_torn_snapshot(podinfo: KubeletWriter) -> None:
    def pair(marker: str) -> dict[str, str | bytes]:
        return pod_files(annotations={f"{PREFIX}marker-a": marker, f"{PREFIX}marker-b": marker})

    class Pair(CanarySettings):
        model_config = CanaryConfigDict(
            downward_api_dir=str(podinfo.path), annotation_prefix=PREFIX
        )
        first: str = annotation("marker-a", default="")
        second: str = annotation("marker-b", default="")

    podinfo.write(pair("0"))
    settings = live(Pair)
    done = threading.Event()
    reads = [0, 0, 0]
    torn: list[tuple[str, str]] = []

    def reader(index: int) -> None:
        while not done.is_set():
            snapshot = settings.current
            if snapshot.first != snapshot.second:
                torn.append((snapshot.first, snapshot.second))
            reads[index] += 1
            time.sleep(0)  # hand the GIL over: the writer and the watcher need it too

    readers = [threading.Thread(target=reader, args=(i,)) for i in range(3)]
    with settings:
        for thread in readers:
            thread.start()
        try:
            for i in range(1, 501):
                podinfo.write(pair(str(i)))
                if i % 2:
                    settings.reload()  # reloads from this thread race the watcher's
            assert wait_until(lambda: settings.first == "500")
        finally:
            done.set()
            for thread in readers:
                thread.join(5.0)

    assert torn == []
    assert all(count > 0 for count in reads), reads
    assert sum(reads) > 500


# -- the volume directory comes and goes ------------------------------------------------


def test_a_removed_and_recreated_volume_is_picked_up(
    podinfo: KubeletWriter, app: LiveSettings[Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="canaryconf")
    colors: list[str] = []
    app.on_change(lambda change: colors.append(change.new.color))
    with app:
        shutil.rmtree(podinfo.path)
        assert wait_until(lambda: "was removed" in caplog.text)
        assert app.color == "red", "a volume that went away has not become empty"
        assert app.reload().status == "unchanged"

        KubeletWriter(podinfo.path).write(payload(color="reborn"))
        assert wait_until(lambda: app.color == "reborn")
        podinfo.write(payload(color="again"))
        assert wait_until(lambda: app.color == "again")

    assert colors == ["reborn", "again"], "no detour through the defaults"


def test_a_volume_created_after_start_is_picked_up(tmp_path: Path) -> None:
    volume = tmp_path / "late"
    settings = live(settings_for(volume))
    assert settings.color == "blue"
    with settings:
        time.sleep(0.05)
        KubeletWriter(volume).write(payload(color="late"))
        assert wait_until(lambda: settings.color == "late")
        KubeletWriter(volume).write(payload(color="later"))
        assert wait_until(lambda: settings.color == "later")


def test_a_plain_file_instead_of_the_volume_directory_warns_about_subpath(
    tmp_path: Path, podinfo: KubeletWriter, caplog: pytest.LogCaptureFixture
) -> None:
    mounted = tmp_path / "subpath-mounted"
    mounted.write_text('role="canary"')
    with pytest.raises(NotAVolumeError, match="subPath"):
        live(settings_for(mounted))

    podinfo.write(payload())
    settings = live(settings_for(podinfo.path))
    caplog.set_level(logging.WARNING, logger="canaryconf")
    with settings:
        shutil.rmtree(podinfo.path)
        podinfo.path.write_text('role="stable"')
        assert wait_until(
            lambda: any(
                r.levelno == logging.WARNING and "subPath" in r.getMessage() for r in caplog.records
            )
        )
        assert settings.color == "red"


# -- SIGHUP -----------------------------------------------------------------------------


def test_reload_on_sighup_without_a_watcher(podinfo: KubeletWriter, app: LiveSettings[Any]) -> None:
    previous = signal.getsignal(signal.SIGHUP)
    try:
        app.reload_on_signal(signal.SIGHUP)
        podinfo.write(payload(color="hup"))
        time.sleep(0.05)
        assert app.color == "red", "no watcher: nothing happens until the signal"

        os.kill(os.getpid(), signal.SIGHUP)

        assert wait_until(lambda: app.color == "hup")
    finally:
        signal.signal(signal.SIGHUP, previous)


# -- fork -------------------------------------------------------------------------------


def test_a_forked_child_reloads_and_watches_on_its_own(
    podinfo: KubeletWriter, app: LiveSettings[Any]
) -> None:
    app.start()
    try:
        podinfo.write(payload(color="fresh"))  # the parent may not have seen it yet
        with ForkedChild(lambda out, go: _child(app, out, go)) as child:
            ready = child.read_line(10.0)
            assert ready == "ready", ready
            podinfo.write(payload(color="after-fork"))
            child.send("go")
            report = child.read_line(15.0)
            code = child.reap(5.0)
            assert (code, report) == (0, "ok")
            assert wait_until(lambda: app.color == "after-fork"), "the parent keeps watching too"
    finally:
        app.stop()


def _child(app: LiveSettings[Any], out: int, go: int) -> int:
    # The watcher is restarted on a thread of its own once fork() returned; start() is
    # idempotent and returns once that restart is done (what an adapter calls per request).
    app.start()
    threads = watcher_threads()
    if len(threads) != 1 or not threads[0].is_alive():
        os.write(out, f"watcher threads in the child: {threads}\n".encode())
        return 1
    if app.color != "fresh":
        os.write(out, f"stale snapshot in the child: {app.color}\n".encode())
        return 2
    os.write(out, b"ready\n")
    if read_child_line(go, 10.0) != "go":
        return 3
    if not wait_until(lambda: app.color == "after-fork", 10.0):
        os.write(out, f"the child missed the swap: {app.color}\n".encode())
        return 4
    app.stop()
    if not wait_until(lambda: not watcher_threads(), 2.0):
        os.write(out, b"the child's watcher did not stop\n")
        return 5
    os.write(out, b"ok\n")
    return 0


# -- secrets ----------------------------------------------------------------------------


def test_secret_values_never_leak(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tokens = [f"tok-{uuid.uuid4().hex}" for _ in range(5)]
    podinfo = KubeletWriter(tmp_path / "podinfo")
    secrets = KubeletWriter(tmp_path / "secrets")

    class Secretive(CanarySettings):
        model_config = CanaryConfigDict(
            downward_api_dir=str(podinfo.path),
            secrets_dirs=[str(secrets.path)],
            annotation_prefix=PREFIX,
        )
        api_key: SecretStr = secret("api-key")
        signing_key: str = annotation("signing-key", default="", secret=True)
        color: str = annotation("color", default="blue")

        @field_validator("signing_key")
        @classmethod
        def _not_revoked(cls, value: str) -> str:
            if value.startswith("revoked-"):
                raise ValueError(f"signing key {value} is revoked")
            return value

        @field_validator("api_key")
        @classmethod
        def _long_enough(cls, value: SecretStr) -> SecretStr:
            if len(value.get_secret_value()) < 8:
                raise ValueError(f"api key {value.get_secret_value()} is too short")
            return value

    caplog.set_level(logging.DEBUG)
    secrets.write({"api-key": tokens[0]})
    podinfo.write(payload(signing_key=tokens[1]))
    settings = live(Secretive)
    changes: list[Change[Any]] = []
    results: list[ReloadResult[Any]] = []
    settings.on_change(changes.append)
    shown: list[str] = [repr(settings)]

    def note(_: object, result: ReloadResult[Any]) -> None:
        results.append(result)

    signals.reloaded.connect(note, sender=settings)
    with settings:
        secrets.write({"api-key": tokens[2]})
        podinfo.write(payload(color="green", signing_key=tokens[3]))
        assert wait_until(lambda: settings.color == "green" and settings.signing_key == tokens[3])
        assert wait_until(lambda: settings.api_key.get_secret_value() == tokens[2])
        shown.append(repr(settings))

        podinfo.write(payload(color="green", signing_key=f"revoked-{tokens[4]}"))
        assert wait_until(lambda: settings.last_error is not None)
        shown.append(str(settings.last_error))
        secrets.write({"api-key": "short"})
        podinfo.write(payload(color="green", signing_key=tokens[3]))
        assert wait_until(lambda: "api_key" in str(settings.last_error))
        shown.append(str(settings.last_error))
        shown.append(repr(settings.last_error))
    results.append(settings.reload())
    signals.reloaded.disconnect(note)

    assert changes, "the secrets did change"
    assert any(r.failed for r in results)
    shown += [repr(c) for c in changes] + [repr(c.diff()) for c in changes]
    shown += [repr(r) for r in results]
    shown += [r.getMessage() for r in caplog.records]
    shown += [r.exc_text or "" for r in caplog.records]
    shown.append(caplog.text)
    everything = "\n".join(shown)
    assert "signing_key" in everything, "the failure was reported, without the value"
    for token in tokens:
        assert token not in everything
    assert "short" not in str(settings.last_error)
    assert settings.signing_key == tokens[3], "the value itself is still there to use"


def test_an_annotations_entry_that_is_a_directory_is_a_bad_version(
    podinfo: KubeletWriter, app: LiveSettings[Any]
) -> None:
    """Not "no annotations": taking the defaults would apply settings nobody wrote."""
    podinfo.write(payload(color="green"))
    app.reload()
    before = app.current
    podinfo.write({"labels": 'role="canary"', "annotations/nested": "x"})
    result = app.reload()
    assert (result.status, result.reason) == ("failed", "invalid")
    assert (
        str(result.error) == f"{podinfo.path / 'annotations'}: is a directory, not the"
        " label/annotation file the kubelet writes"
    )
    assert app.current is before


# -- what a reload reads ----------------------------------------------------------------


def test_the_downward_volume_is_read_for_the_files_the_fields_read(
    podinfo: KubeletWriter, app: LiveSettings[Any]
) -> None:
    """The kubelet writes only what the pod spec lists; the class reads labels and
    annotations, so a change to another item (a name) is no new version."""
    files = {**payload(color="green"), "name": "shop-7f9c4d2e1-abcde"}
    podinfo.write(files)
    assert app.reload().status == "applied"
    snapshot = app._core.state.current.volumes[str(podinfo.path)]
    assert set(files) > {"annotations", "labels"}  # namespace, name...
    assert snapshot is not None and sorted(snapshot.files) == ["annotations", "labels"]
    podinfo.write({**files, "name": "shop-7f9c4d2e1-vwxyz"})
    result = app.reload()
    assert (result.status, result.reason) == ("unchanged", "same-content")
    assert app.generation == podinfo.generation  # that generation is the one now read


def test_a_class_that_places_its_sources_itself_reads_the_downward_volume_whole(
    podinfo: KubeletWriter,
) -> None:
    class Own(settings_for(podinfo.path)):  # type: ignore[misc]
        @classmethod
        def settings_customise_sources(cls, settings_cls: Any, **sources: Any) -> Any:
            return (sources["init_settings"], *cls.volume_sources(settings_cls))

    files = {**payload(), "name": "shop-1"}
    podinfo.write(files)
    settings = live(Own)
    snapshot = settings._core.state.current.volumes[str(podinfo.path)]
    assert snapshot is not None and set(snapshot.files) == set(files)


def test_live_settings_of_one_volume_share_the_read_and_parse_of_each_generation(
    podinfo: KubeletWriter,
) -> None:
    class A(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=podinfo.path)
        marker: int = annotation("marker", default=0)

    class B(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=podinfo.path)
        marker: str = annotation("marker", default="")
        role: str = label("role", default="stable")

    podinfo.write(pod_files(labels={"role": "canary"}, annotations={"marker": "1"}))
    many = [live(A), live(B), live(A)]
    seen: list[threading.Event] = []
    for settings in many:
        event = threading.Event()
        settings.on_change(lambda change, event=event: event.set())
        seen.append(event)
        settings.start()
    try:
        podinfo.write(pod_files(labels={"role": "canary"}, annotations={"marker": "2"}))
        assert all(event.wait(DEADLINE) for event in seen)
        snapshots = [s._core.state.current.volumes[str(podinfo.path)] for s in many]
        assert snapshots[0] is not None
        assert all(snap is snapshots[0] for snap in snapshots)
        assert snapshots[0].generation == podinfo.generation
        assert (many[0].marker, many[1].marker, many[1].role) == (2, "2", "canary")
        # Each file was parsed once, for all three (A and B read the same annotations).
        assert len(snapshots[0].derived) == 2  # labels and annotations
    finally:
        for settings in many:
            settings.stop()


def test_the_watcher_reads_again_only_the_volumes_whose_data_link_moved(
    tmp_path: Path, podinfo: KubeletWriter
) -> None:
    configmaps = KubeletWriter(tmp_path / "cm")
    podinfo.write(pod_files(annotations={"marker": "1"}))
    configmaps.write({"workers": "1"})

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(
            downward_api_dir=podinfo.path, configmap_dirs=[configmaps.path]
        )
        marker: int = annotation("marker", default=0)
        workers: int = configmap("workers", default=0)

    settings = live(Settings)
    before = settings._core.state.current.volumes
    applied = threading.Event()
    settings.on_change(lambda change: applied.set())
    with settings:
        configmaps.write({"workers": "2"})
        assert applied.wait(DEADLINE)
    after = settings._core.state.current.volumes
    assert settings.workers == 2
    assert after[str(podinfo.path)] is before[str(podinfo.path)]
    assert after[str(configmaps.path)] is not before[str(configmaps.path)]
    # A manual reload reads every file again.
    assert settings.reload().reason == "same-content"
    assert settings._core.state.current.volumes[str(podinfo.path)] is not before[str(podinfo.path)]
