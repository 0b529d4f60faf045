"""Reliability under stress: many kubelet swaps against live readers, invalid versions mixed
into the stream, faults (volume gone, permissions, no inotify, bad handlers, fork), and a
stateful model of :class:`~canaryconf.LiveSettings`.

A short version runs with the default test command; the long one with::

    CANARYCONF_STRESS=long .venv/bin/pytest -m stress -s

``CANARYCONF_STRESS_SWAPS=N`` sets the swaps of the torn-reads test,
``CANARYCONF_STRESS_ROUNDS=N`` the rounds of invalid versions and volume removals,
``CANARYCONF_STRESS_FORKS=N`` the forks, and ``CANARYCONF_STRESS_EXAMPLES=N`` the
hypothesis examples of the state machines. Every wait
is a condition polled against a deadline, never a timing assertion, except the one the
torn-reads test is about: the last payload is served within a second of the last swap.
Figures are printed (``-s`` shows them); docs/reliability.md collects them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
    run_state_machine_as_test,
)
from pydantic import BaseModel, field_validator

from canaryconf import (
    CanaryConfError,
    CanaryConfigDict,
    CanarySettings,
    Change,
    LiveSettings,
    ReloadResult,
    VolumePermissionError,
    annotation,
    configmap,
    format_map,
    label,
    live,
    pod_field,
    signals,
)
from canaryconf._watch import active_watches
from canaryconf.testing import DEFAULT_CONFIG_SEEN, KubeletWriter, pod_files
from conftest import NOBODY, ForkedChild, make_wait_until, read_child_line, watcher_threads

pytestmark = [pytest.mark.stress, pytest.mark.usefixtures("no_live_settings_left")]

LONG = os.environ.get("CANARYCONF_STRESS", "").lower() == "long"


def scaled(variable: str, short: int, long: int) -> int:
    """``$variable`` if set, else the long or the short figure."""
    value = os.environ.get(variable)
    return int(value) if value else (long if LONG else short)


SWAPS = scaled("CANARYCONF_STRESS_SWAPS", 300, 10_000)
ROUNDS = scaled("CANARYCONF_STRESS_ROUNDS", 1, 10)
EXAMPLES = scaled("CANARYCONF_STRESS_EXAMPLES", 10, 200)
#: A long run may take minutes; the short one stays far below pytest's 120 s timeout.
LONG_TIMEOUT = 1800 if LONG else 120
READERS = 4
PREFIX = "stress.example.com/"
DEADLINE = 10.0
#: How soon after the last swap the snapshot must be the last payload.
CONVERGE_WITHIN = 1.0


wait_until = make_wait_until(DEADLINE, interval=0.002)


def settle(counter: Callable[[], int], quiet: float = 0.3, timeout: float = DEADLINE) -> None:
    """Wait until ``counter()`` has not moved for ``quiet`` seconds (at most ``timeout``):
    late events of the last swap have been handled."""
    deadline = time.monotonic() + timeout
    last, since = counter(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.01)
        now = counter()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return


def watcher_alive(settings: LiveSettings[Any]) -> bool:
    """The background watcher runs and every volume of ``settings`` has a live watch."""
    threads = watcher_threads()
    watched = {w.path for w in active_watches() if w._task is not None and not w._task.done()}
    return (
        settings.running
        and len(threads) == 1
        and threads[0].is_alive()
        and all(os.path.abspath(d) in watched for d in settings.volume_dirs)
    )


def report(title: str, **figures: object) -> None:
    print(f"\n[stress] {title}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


@contextlib.contextmanager
def recording(settings: LiveSettings[Any]) -> Iterator[list[ReloadResult[Any]]]:
    """Every ReloadResult of ``settings`` while the block runs."""
    results: list[ReloadResult[Any]] = []

    def on_reloaded(_sender: Any, result: ReloadResult[Any], **_: Any) -> None:
        results.append(result)

    signals.reloaded.connect(on_reloaded, sender=settings)
    try:
        yield results
    finally:
        signals.reloaded.disconnect(on_reloaded, sender=settings)


# -- a volume whose every file carries a generation marker ------------------------------


class Marker(BaseModel):
    gen: int = -1


def marked(gen: int) -> dict[str, str | bytes]:
    """A volume whose every file carries the marker ``gen``."""
    text = str(gen)
    return pod_files(
        labels={"app": "shop", "marker": text},
        annotations={
            f"{PREFIX}marker": text,
            f"{PREFIX}marker-json": json.dumps({"gen": gen}),
            f"{PREFIX}padding": "x" * 512,
        },
        extra={"marker": text, "nested/marker": text, "cm-marker": text},
    )


def marked_settings(volume: Path) -> type[CanarySettings]:
    class Marked(CanarySettings):
        model_config = CanaryConfigDict(
            downward_api_dir=str(volume),
            configmap_dirs=[str(volume)],
            annotation_prefix=PREFIX,
        )

        label_gen: int = label("marker", default=-1)
        annotation_gen: int = annotation("marker", default=-1)
        json_gen: Marker = annotation("marker-json", default=Marker())
        file_gen: int = pod_field(f"metadata.annotations['{PREFIX}marker']", file="marker")
        nested_gen: int = pod_field("metadata.labels['marker']", file="nested/marker")
        configmap_gen: int = configmap("cm-marker", default=-1)

    return Marked


def markers(snapshot: Any) -> tuple[int, ...]:
    return (
        snapshot.label_gen,
        snapshot.annotation_gen,
        snapshot.json_gen.gen,
        snapshot.file_gen,
        snapshot.nested_gen,
        snapshot.configmap_gen,
    )


@dataclass
class Reader:
    """Reads ``live.current`` in a loop. ``probe`` gives the markers of a snapshot: they
    must all be equal (one version, not torn), never go down, and pass ``allowed`` (a
    version that was rejected is never served)."""

    settings: LiveSettings[Any]
    done: threading.Event
    probe: Callable[[Any], tuple[int, ...]] = markers
    allowed: Callable[[int], bool] = lambda _marker: True
    reads: int = 0
    torn: list[tuple[int, ...]] = field(default_factory=list)
    backwards: int = 0

    def run(self) -> None:
        last = -1
        while not self.done.is_set():
            values = self.probe(self.settings.current)
            if len(set(values)) != 1 or not self.allowed(values[0]):
                self.torn.append(values)
            if values[0] < last:
                self.backwards += 1
            last = values[0]
            self.reads += 1
            time.sleep(0)  # hand the GIL over: the writer and the watcher need it too


@dataclass
class Recorder:
    """An ``on_change`` handler that records the versions it saw."""

    seen: list[tuple[int, int]] = field(default_factory=list)

    def __call__(self, change: Change[Any]) -> None:
        self.seen.append((change.old.label_gen, change.new.label_gen))

    def problems(self) -> list[str]:
        found = []
        news = [new for _old, new in self.seen]
        if news != sorted(set(news)):
            found.append(f"versions out of order or repeated: {news[:20]}")
        for (_o1, n1), (o2, _n2) in zip(self.seen, self.seen[1:], strict=False):
            if o2 != n1:
                found.append(f"a change from {o2} follows one to {n1}: one was missed")
                break
        return found


@contextlib.contextmanager
def reading(
    settings: LiveSettings[Any], count: int = READERS, **options: Any
) -> Iterator[list[Reader]]:
    """``count`` :class:`Reader` threads on ``settings`` while the block runs."""
    done = threading.Event()
    readers = [Reader(settings, done, **options) for _ in range(count)]
    threads = [threading.Thread(target=r.run, name=f"reader-{i}") for i, r in enumerate(readers)]
    for thread in threads:
        thread.start()
    try:
        yield readers
    finally:
        done.set()
        for thread in threads:
            thread.join(DEADLINE)


# -- torn reads -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"backend": "inotify"}, id="inotify"),
        pytest.param({"force_polling": True, "poll_interval": 0.02}, id="polling"),
    ],
)
@pytest.mark.timeout(LONG_TIMEOUT)
def test_no_torn_snapshot_and_no_missed_change_under_many_swaps(
    tmp_path: Path, options: dict[str, Any]
) -> None:
    """4 threads read ``live.current`` while the writer makes SWAPS swaps of a volume
    whose every file carries the swap's number; 2 handlers record every change."""
    writer = KubeletWriter(tmp_path / "podinfo", seed=7)
    writer.write(marked(0))
    settings = live(marked_settings(writer.path), **options)
    handlers = [Recorder(), Recorder()]
    for handler in handlers:
        settings.on_change(handler)
    converge: float | None = None
    with recording(settings) as results, reading(settings) as readers, settings:
        started = time.monotonic()
        for gen in range(1, SWAPS + 1):
            writer.write(marked(gen))
        wrote = time.monotonic()
        if wait_until(lambda: settings.current.label_gen == SWAPS, CONVERGE_WITHIN):
            converge = time.monotonic() - wrote
        else:  # late, or never: the message says which
            wait_until(lambda: settings.current.label_gen == SWAPS)
        settle(lambda: len(results))
        alive = watcher_alive(settings)

    applied = [r for r in results if r.applied]
    torn = [t for r in readers for t in r.torn]
    report(
        f"torn reads ({'polling' if options.get('force_polling') else 'inotify'})",
        swaps=SWAPS,
        write_seconds=f"{wrote - started:.2f}",
        swaps_per_s=f"{SWAPS / (wrote - started):.0f}",
        reads=sum(r.reads for r in readers),
        torn=len(torn),
        backwards=sum(r.backwards for r in readers),
        reloads=len(results),
        applied=len(applied),
        coalesced=SWAPS - len(applied),
        handler_calls=[len(h.seen) for h in handlers],
        converged_after_s=None if converge is None else f"{converge:.3f}",
    )
    assert torn == [], f"torn snapshots: {torn[:5]}"
    assert [r.backwards for r in readers] == [0] * READERS, "a reader saw an older version"
    assert all(r.reads > 0 for r in readers)
    assert alive, "the watcher is alive at the end"
    assert converge is not None, (
        f"the last payload ({SWAPS}) was not served {CONVERGE_WITHIN}s after the last swap;"
        f" serving {markers(settings.current)} after {DEADLINE}s more"
    )
    assert markers(settings.current) == (SWAPS,) * 6
    assert settings.generation == writer.generation
    assert settings.last_error is None
    assert not any(r.failed for r in results)
    for handler in handlers:
        assert handler.problems() == []
        assert len(handler.seen) == len(applied), "one handler call per applied version"
        assert handler.seen[-1][1] == SWAPS
    assert handlers[0].seen == handlers[1].seen


# -- invalid versions in the stream -----------------------------------------------------

SIZE_CAP = 4096


def shop_files(marker: int, **overrides: str | None) -> dict[str, str | bytes]:
    """A podinfo volume (that is also the ConfigMap directory) at version ``marker``.

    ``overrides`` replace an annotation's value; ``threshold`` replaces the ConfigMap file
    (``None`` removes it); ``raw_line`` adds a line no kubelet writes to the annotations;
    ``big`` makes the ConfigMap file (one the class reads) that many bytes."""
    annotations = {
        "kubernetes.io/config.seen": DEFAULT_CONFIG_SEEN,
        f"{PREFIX}marker": str(marker),
        f"{PREFIX}size": "5",
        f"{PREFIX}limits": json.dumps({"cpu": marker % 7}),
        f"{PREFIX}mode": "fast",
    }
    files: dict[str, str | bytes] = {"labels": 'app="shop"', "threshold": "10"}
    for key, value in overrides.items():
        if key == "threshold":
            if value is None:
                del files["threshold"]
            else:
                files["threshold"] = value
        elif key == "big":
            files["threshold"] = "9" * int(value or 0)
        elif key != "raw_line":
            annotations[f"{PREFIX}{key}"] = str(value)
    text = format_map(annotations)
    if overrides.get("raw_line") is not None:
        text += f"\n{PREFIX}broken={overrides['raw_line']}"
    files["annotations"] = text
    return files


#: Invalid versions by kind, as :func:`shop_files` overrides. Each is rejected once its
#: content is read, so a second read of the same content is not news.
CONTENT_KINDS: dict[str, dict[str, str | None]] = {
    "bad escape": {"raw_line": '"\\q"'},
    "unterminated quote": {"raw_line": '"open'},
    "invalid JSON": {"limits": "{cpu: 1"},
    "out of range": {"size": "1000"},
    "failing validator": {"mode": "reckless"},
    "required file removed": {"threshold": None},
    "not an integer": {"threshold": "ten"},
}
#: Rejected while the volume is read: no content digest exists for them.
READ_KINDS: dict[str, dict[str, str | None]] = {
    "file over the size cap": {"big": str(SIZE_CAP + 1)},  # (a file a field reads)
}


def shop_settings(volume: Path) -> type[CanarySettings]:
    class Shop(CanarySettings):
        model_config = CanaryConfigDict(
            downward_api_dir=str(volume),
            configmap_dirs=[str(volume)],
            annotation_prefix=PREFIX,
            max_file_bytes=SIZE_CAP,
        )

        marker: int = annotation("marker", default=-1)
        size: int = annotation("size", default=1, ge=0, le=100)
        limits: dict[str, int] = annotation("limits", default_factory=dict)
        mode: str = annotation("mode", default="safe")
        threshold: int = configmap("threshold")

        @field_validator("mode")
        @classmethod
        def _known_mode(cls, value: str) -> str:
            if value not in {"safe", "fast"}:
                raise ValueError("unknown mode")
            return value

    return Shop


@dataclass(frozen=True)
class Version:
    kind: str  # "good" or a kind of invalid version
    marker: int
    files: dict[str, str | bytes]

    @property
    def good(self) -> bool:
        return self.kind == "good"


def version_stream(kinds: dict[str, dict[str, str | None]], rounds: int) -> list[Version]:
    """A good version, then each kind of invalid one twice in a row (two different
    rejected contents), then a good one again, and so on."""
    stream: list[Version] = []
    marker = 0
    for _ in range(rounds):
        for kind, overrides in kinds.items():
            marker += 1
            stream.append(Version("good", marker, shop_files(marker)))
            for _twice in range(2):
                marker += 1
                stream.append(Version(kind, marker, shop_files(marker, **overrides)))
    marker += 1
    stream.append(Version("good", marker, shop_files(marker)))
    return stream


def nudge(volume: Path) -> None:
    """An event the watcher reacts to that changes no content: ``..data`` renamed onto
    itself, the generation it names unchanged (on a volume the kubelet manages, the
    watcher listens for that rename alone)."""
    target = os.readlink(volume / "..data")
    os.symlink(target, volume / "..data_tmp")
    os.rename(volume / "..data_tmp", volume / "..data")


def is_news(result: ReloadResult[Any]) -> bool:
    """A failed result that reported a rejection (not one met again by a reload())."""
    return result.failed and not getattr(result, "repeated", False)


def expected_rejections(stream: list[Version]) -> int:
    """How many ``reload_failed`` signals the stream calls for: a rejected content is
    reported when it arrives; reading it again (a second event, a second reload) is not
    news. A good version in between makes the next rejection news again."""
    count = 0
    last_rejected: dict[str, str | bytes] | None = None
    for version in stream:
        if version.good:
            last_rejected = None
        elif version.files != last_rejected:
            count += 1
            last_rejected = version.files
    return count


def run_stream(
    tmp_path: Path, stream: list[Version], *, watcher: bool
) -> tuple[LiveSettings[Any], list[Exception], list[ReloadResult[Any]], list[Reader]]:
    """Write each version of ``stream``, then reload (or let the watcher do it) and check
    the snapshot served: the version itself if good, else the last good one."""
    writer = KubeletWriter(tmp_path / "podinfo", seed=11)
    writer.write(shop_files(0))
    settings = live(shop_settings(writer.path))
    failures: list[Exception] = []
    settings.on_reload_failed(failures.append)
    last_good = settings.current
    expected = 0
    last_rejected: dict[str, str | bytes] | None = None
    good = {0}
    with contextlib.ExitStack() as stack:
        results = stack.enter_context(recording(settings))
        readers = stack.enter_context(
            reading(settings, 2, probe=lambda s: (s.marker,), allowed=good.__contains__)
        )
        if watcher:
            stack.enter_context(settings)
        for version in stream:
            if version.good:
                good.add(version.marker)
            assert writer.write(version.files)
            if version.good:
                last_rejected = None
            elif version.files != last_rejected:
                expected += 1
                last_rejected = version.files
            if not watcher:
                result = settings.reload()
                assert result.status == ("applied" if version.good else "failed"), version.kind
                again = settings.reload()  # the same content, read once more
            else:
                # Wait for the reload's signals, not only its swap: they come after it.
                if version.good:
                    assert wait_until(
                        lambda v=version: any(
                            r.change is not None and r.change.new.marker == v.marker
                            for r in results[::-1]
                        )
                    )
                else:
                    assert wait_until(lambda n=expected: sum(map(is_news, results)) >= n), (
                        version.kind
                    )
                # Any event in the directory makes the watcher read the volume again.
                seen = len(results)
                nudge(writer.path)
                assert wait_until(lambda n=seen: len(results) > n)
                again = results[-1]
            assert not again.applied
            assert len(failures) == expected, f"{version.kind}: read again, reported again"
            if version.good:
                assert settings.current.marker == version.marker
                assert settings.last_error is None
                last_good = settings.current
            else:
                assert settings.current is last_good, f"{version.kind}: the last good one stays"
                assert isinstance(settings.last_error, CanaryConfError), version.kind
        if watcher:
            settle(lambda: len(results))
            assert watcher_alive(settings)
    assert expected == expected_rejections(stream)
    return settings, failures, results, readers


@pytest.mark.parametrize(
    ("kinds", "watcher"),
    [
        pytest.param(CONTENT_KINDS, False, id="content-reload"),
        pytest.param(CONTENT_KINDS, True, id="content-watcher"),
        pytest.param(READ_KINDS, False, id="read-reload"),
        pytest.param(READ_KINDS, True, id="read-watcher"),
    ],
)
@pytest.mark.timeout(LONG_TIMEOUT)
def test_invalid_versions_keep_the_last_good_snapshot(
    tmp_path: Path, kinds: dict[str, dict[str, str | None]], watcher: bool
) -> None:
    stream = version_stream(kinds, ROUNDS)
    settings, failures, results, readers = run_stream(tmp_path, stream, watcher=watcher)

    rejected = [v for v in stream if not v.good]
    report(
        f"invalid versions ({', '.join(kinds)}; {'watcher' if watcher else 'reload()'})",
        versions=len(stream),
        invalid=len(rejected),
        reload_failed=len(failures),
        reloads=len(results),
        reads=sum(r.reads for r in readers),
        bad_reads=sum(len(r.torn) for r in readers),
    )
    assert [t for r in readers for t in r.torn] == [], "a reader saw a rejected version"
    assert all(r.reads > 0 for r in readers)
    assert all(isinstance(f, CanaryConfError) for f in failures)
    assert sum(map(is_news, results)) == len(failures)
    assert len(failures) == expected_rejections(stream) == len(rejected)
    assert settings.current.marker == stream[-1].marker


# -- faults -----------------------------------------------------------------------------

BACKENDS = [
    pytest.param({"backend": "inotify"}, id="inotify"),
    pytest.param({"force_polling": True, "poll_interval": 0.02}, id="polling"),
    pytest.param({"backend": "watchfiles"}, id="watchfiles"),
]


def backend_of(options: dict[str, Any]) -> str:
    return "polling" if options.get("force_polling") else str(options.get("backend"))


@pytest.mark.parametrize("options", BACKENDS)
@pytest.mark.timeout(LONG_TIMEOUT)
def test_a_volume_removed_and_recreated_again_and_again(
    tmp_path: Path, options: dict[str, Any]
) -> None:
    volume = tmp_path / "podinfo"
    KubeletWriter(volume).write(marked(0))
    settings = live(marked_settings(volume), **options)
    recorder = Recorder()
    settings.on_change(recorder)
    failures: list[Exception] = []
    settings.on_reload_failed(failures.append)
    cycles = scaled("CANARYCONF_STRESS_ROUNDS", 3, 30)
    gen = 0
    with reading(settings, 2) as readers, settings:
        for cycle in range(cycles):
            if cycle % 2:
                shutil.rmtree(volume)
            else:  # moved away (IN_MOVE_SELF), as an unmount can look
                volume.rename(tmp_path / f"gone-{cycle}")
            assert settings.reload().status == "unchanged", "a volume gone is not empty"
            assert settings.current.label_gen == gen
            writer = KubeletWriter(volume, seed=cycle)
            gen += 1
            writer.write(marked(gen))
            assert wait_until(lambda g=gen: recorder.seen[-1:] == [(g - 1, g)]), f"cycle {cycle}"
            gen += 1
            writer.write(marked(gen))  # and the new directory is watched
            assert wait_until(lambda g=gen: recorder.seen[-1:] == [(g - 1, g)]), f"cycle {cycle}"
        assert wait_until(lambda: watcher_alive(settings))
    report(
        f"volume removed and recreated ({backend_of(options)})",
        cycles=cycles,
        changes=len(recorder.seen),
        reads=sum(r.reads for r in readers),
        torn=sum(len(r.torn) for r in readers),
        # Not asserted: a read that meets the removal halfway is rejected (see the test
        # of a volume halfway through its removal).
        rejected_while_removed=len(failures),
    )
    assert [t for r in readers for t in r.torn] == []
    assert recorder.problems() == []
    assert [new for _old, new in recorder.seen] == list(range(1, gen + 1)), "no detour"


def test_a_volume_halfway_through_its_removal_is_not_a_rejected_version(
    tmp_path: Path,
) -> None:
    """What a reader can meet while ``rm -r`` (or an unmount) takes a volume away."""
    writer = KubeletWriter(tmp_path / "podinfo", seed=8)
    writer.write(marked(1))
    settings = live(marked_settings(writer.path))
    failures: list[Exception] = []
    settings.on_reload_failed(failures.append)
    generation = str(writer.generation)
    os.unlink(writer.path / "..data")
    shutil.rmtree(writer.path / generation)

    result = settings.reload()

    assert settings.current.label_gen == 1
    assert (result.status, failures, settings.last_error) == ("unchanged", [], None)


PERMISSION_CHILD = """
import json, os, sys, threading, time
from canaryconf import CanaryConfigDict, CanarySettings, annotation, live
from canaryconf._watch import active_watches

volume, options = sys.argv[1], json.loads(sys.argv[2])

class Settings(CanarySettings):
    model_config = CanaryConfigDict(downward_api_dir=volume)
    marker: int = annotation("marker", default=-1)

failures = []
settings = live(Settings, **options)
settings.on_reload_failed(lambda error: failures.append(type(error).__name__))
settings.start()

def state():
    threads = [t for t in threading.enumerate() if t.name == "canaryconf-watcher"]
    error = settings.last_error
    return {
        "uid": os.getuid(),
        "marker": settings.marker,
        "error": type(error).__name__ if error is not None else None,
        "failures": failures[:],
        "running": settings.running,
        "alive": len(threads) == 1 and threads[0].is_alive(),
        "backends": [w.backend for w in active_watches()],
    }

def wait(condition):
    deadline = time.monotonic() + 10
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.005)

print(json.dumps(state()), flush=True)
for line in sys.stdin:
    command, _, argument = line.strip().partition(" ")
    if command == "marker":
        wait(lambda: settings.marker == int(argument))
    elif command == "error":
        wait(lambda: settings.last_error is not None
             and type(settings.last_error).__name__ == argument)
    else:
        break
    print(json.dumps(state()), flush=True)
settings.stop()
"""


class Child:
    """A Python child process that answers one JSON line per command line."""

    def __init__(self, script: str, *args: str, **popen: Any) -> None:
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "HOME": "/tmp"}
        self.process = subprocess.Popen(
            [sys.executable, "-c", script, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            **popen,
        )

    def answer(self, timeout: float = 2 * DEADLINE) -> dict[str, Any]:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            self.close()
            raise AssertionError(f"no answer from the child; stderr:\n{self.stderr}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def ask(self, command: str) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.answer()

    def close(self) -> int:
        with contextlib.suppress(BrokenPipeError, OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        try:
            code = self.process.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        assert self.process.stderr is not None
        self.stderr = self.process.stderr.read()
        return code

    stderr = ""


@pytest.fixture
def world_dir() -> Iterator[Path]:
    """A directory any user can traverse (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="canaryconf-stress-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("options", BACKENDS[:2])
def test_permissions_removed_and_restored(
    world_dir: Path, as_nobody: dict[str, Any], options: dict[str, Any]
) -> None:
    """The application runs as nobody (uid 65534), the kubelet as root: files it cannot
    read (a defaultMode of 0600) and a volume directory it cannot enter are rejected
    versions; once readable again, the next version applies. (A directory reopened in
    place is seen at the next version: the kubelet never changes modes in place, and the
    watcher of a kubelet-managed volume wakes for the ``..data`` rename alone.)"""
    writer = KubeletWriter(world_dir / "podinfo", seed=5)

    def version(marker: int, mode: int = 0o644) -> None:
        writer.write(pod_files(annotations={"marker": str(marker)}), mode=mode)

    version(1)
    child = Child(
        PERMISSION_CHILD,
        str(writer.path),
        json.dumps(options),
        **as_nobody,
    )
    steps = []
    try:
        steps.append(("start", child.answer()))
        version(2, mode=0o600)  # files the application cannot read
        steps.append(("files 0600", child.ask("error VolumePermissionError")))
        version(3)
        steps.append(("files 0644", child.ask("marker 3")))
        writer.path.chmod(0o700)  # the directory itself closed
        version(4)
        steps.append(("directory 0700", child.ask("error VolumePermissionError")))
        writer.path.chmod(0o755)  # reopened
        version(5)
        steps.append(("next version", child.ask("marker 5")))
    finally:
        code = child.close()
    report(
        f"permissions ({backend_of(options)})",
        **{name: (state["marker"], state["error"]) for name, state in steps},
        failures=steps[-1][1]["failures"],
    )
    assert code == 0, child.stderr
    states = dict(steps)
    assert states["start"]["uid"] == NOBODY
    assert (states["files 0600"]["marker"], states["files 0600"]["error"]) == (
        1,
        VolumePermissionError.__name__,
    )
    assert (states["files 0644"]["marker"], states["files 0644"]["error"]) == (3, None)
    assert states["directory 0700"]["marker"] == 3
    assert states["directory 0700"]["error"] == VolumePermissionError.__name__
    final = states["next version"]
    assert (final["marker"], final["error"], final["running"], final["alive"]) == (
        5,
        None,
        True,
        True,
    )
    assert set(final["failures"]) == {VolumePermissionError.__name__}


INOTIFY_LIMITS_CHILD = """
import json, logging, shutil, sys, threading, time
from canaryconf import CanaryConfigDict, CanarySettings, annotation, live
from canaryconf._watch import active_watches
from canaryconf.testing import KubeletWriter, pod_files

root = sys.argv[1]
warnings = []

class Remember(logging.Handler):
    def emit(self, record):
        warnings.append(record.getMessage())

logging.getLogger("canaryconf").addHandler(Remember(logging.WARNING))

def limit(name, value):
    with open(f"/proc/sys/user/{name}", "w") as handle:
        handle.write(str(value))

def wait(condition):
    deadline = time.monotonic() + 10
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.005)
    return bool(condition())

def watcher_alive():
    threads = [t for t in threading.enumerate() if t.name == "canaryconf-watcher"]
    return len(threads) == 1 and threads[0].is_alive()

def scenario(name, before=None, midway=None):
    volume = f"{root}/{name}"
    writer = KubeletWriter(volume)
    writer.write(pod_files(annotations={"marker": "0"}))

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=volume)
        marker: int = annotation("marker", default=-1)

    settings = live(Settings, poll_interval=0.05)
    if before:
        before()
    converged = []
    with settings:
        for marker in (1, 2, 3):
            writer.write(pod_files(annotations={"marker": str(marker)}))
            converged.append(wait(lambda m=marker: settings.marker == m))
        backends_before = [w.backend for w in active_watches()]
        if midway:
            midway()
            shutil.rmtree(volume)  # a new directory needs a new watch
            writer = KubeletWriter(volume)
            for marker in (4, 5):
                writer.write(pod_files(annotations={"marker": str(marker)}))
                converged.append(wait(lambda m=marker: settings.marker == m))
        backends = [w.backend for w in active_watches()]
        alive = watcher_alive() and settings.running
    return {"converged": converged, "backends_before": backends_before,
            "backends": backends, "alive": alive, "marker": settings.marker}

UNLIMITED = 2**31 - 1
results = {
    "no watches left": scenario("a", before=lambda: limit("max_inotify_watches", 0)),
    "no instances left": scenario(
        "b",
        before=lambda: (limit("max_inotify_watches", UNLIMITED),
                        limit("max_inotify_instances", 0)),
    ),
}
limit("max_inotify_instances", UNLIMITED)
results["watches run out on a re-watch"] = scenario(
    "c", midway=lambda: limit("max_inotify_watches", 0)
)
print(json.dumps({"results": results, "warnings": warnings}))
"""


@pytest.fixture
def private_inotify_limits() -> list[str]:
    """The command that runs a process in a user namespace of its own, whose inotify
    limits (/proc/sys/user/max_inotify_*) it may lower without touching anyone else's."""
    command = ["unshare", "--user", "--map-root-user"]
    if shutil.which("unshare") is None:
        pytest.skip("unshare(1) is not installed")
    probe = subprocess.run(
        [*command, "sh", "-c", "echo 1 > /proc/sys/user/max_inotify_watches"],
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip(f"no private user namespace here: {probe.stderr.decode().strip()}")
    return command


def test_inotify_limits_reached_fall_back_to_polling(
    tmp_path: Path, private_inotify_limits: list[str]
) -> None:
    """The kernel refuses inotify for real (ENOSPC: no watch left; EMFILE: no instance
    left), in a user namespace whose limits are lowered to 0: the watcher polls instead,
    from the start or when a recreated volume needs a new watch."""
    done = subprocess.run(
        [*private_inotify_limits, sys.executable, "-c", INOTIFY_LIMITS_CHILD, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=2 * DEADLINE * 3,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    results, warnings = outcome["results"], outcome["warnings"]
    report(
        "inotify limits",
        **{name: (r["backends_before"], r["backends"], r["marker"]) for name, r in results.items()},
    )
    for name, result in results.items():
        assert all(result["converged"]), name
        assert result["alive"], name
        assert result["backends"] == ["polling"], name
    assert results["watches run out on a re-watch"]["backends_before"] == ["inotify"]
    assert any("watch limit reached" in w and "polling" in w for w in warnings), warnings
    assert any("inotify_init1" in w and "polling" in w for w in warnings), warnings


def test_raising_and_hanging_handlers_leave_the_watcher_alive(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Handlers that raise (sync and async) are logged and skipped; an async handler that
    hangs is cancelled after ``handler_timeout``; a sync handler that hangs cannot be
    interrupted: it holds up the changes after it until it returns (reads of ``current``
    never wait), then everything catches up."""
    caplog.set_level(logging.ERROR, logger="canaryconf")
    writer = KubeletWriter(tmp_path / "podinfo", seed=3)
    writer.write(marked(0))
    settings = live(marked_settings(writer.path), handler_timeout=0.2)
    entered, release = threading.Event(), threading.Event()
    cancelled = threading.Event()

    @settings.on_change
    def explode(change: Change[Any]) -> None:
        raise RuntimeError("boom")

    @settings.on_change
    async def explode_later(change: Change[Any]) -> None:
        await asyncio.sleep(0)
        raise LookupError("bang")

    @settings.on_change
    async def hang_async(change: Change[Any]) -> None:
        if change.new.label_gen == 1:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancelled.set()
                raise

    @settings.on_change
    def hang_sync(change: Change[Any]) -> None:
        if change.new.label_gen == 2:
            entered.set()
            release.wait(DEADLINE)

    recorder = Recorder()
    settings.on_change(recorder)
    side_reload: list[float] = []
    with reading(settings, 2) as readers, settings:
        writer.write(marked(1))
        assert wait_until(cancelled.is_set), "the hanging coroutine was cancelled"
        assert wait_until(lambda: recorder.seen[-1:] == [(0, 1)]), "later handlers still ran"
        writer.write(marked(2))
        assert wait_until(entered.is_set)
        for gen in (3, 4, 5):
            writer.write(marked(gen))
        reads_before = sum(r.reads for r in readers)
        assert wait_until(lambda: sum(r.reads for r in readers) > reads_before + 100)
        # A reload() from another thread meanwhile (a reload endpoint, SIGHUP): does it
        # wait for the hanging handler? Observed and reported, not asserted.
        started = time.monotonic()
        worker = threading.Thread(
            target=lambda: (settings.reload(), side_reload.append(time.monotonic() - started))
        )
        worker.start()
        time.sleep(0.3)
        served_while_hanging = settings.current.label_gen
        release.set()
        worker.join(DEADLINE)
        assert wait_until(lambda: settings.current.label_gen == 5)
        assert wait_until(lambda: recorder.seen[-1:] and recorder.seen[-1][1] == 5)
        assert wait_until(lambda: watcher_alive(settings))
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    raised = [r.exc_info[0] for r in errors if r.exc_info]
    report(
        "handlers",
        served_while_sync_handler_hung=served_while_hanging,
        reload_from_another_thread_waited_s=f"{side_reload[0]:.2f}" if side_reload else "never",
        handler_calls=len(recorder.seen),
        errors_logged=len(errors),
    )
    assert recorder.problems() == []
    assert [new for _old, new in recorder.seen][:2] == [1, 2]
    assert raised.count(RuntimeError) == raised.count(LookupError) == len(recorder.seen)
    assert sum("hang_async" in r.getMessage() for r in errors) == 1
    assert side_reload, "the reload from another thread finished once the handler returned"


FORK_CHILD_DEADLINE = 10.0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
@pytest.mark.timeout(LONG_TIMEOUT)
def test_fork_while_swapping(tmp_path: Path) -> None:
    """Fork while a writer swaps and the watcher reloads: each child has a watcher of its
    own that follows the next swaps; the parent's keeps going."""
    writer = KubeletWriter(tmp_path / "podinfo", seed=9)
    writer.write(marked(0))
    settings = live(marked_settings(writer.path))
    forks = scaled("CANARYCONF_STRESS_FORKS", 3, 30)
    counter = [0]
    paused, stop = threading.Event(), threading.Event()
    lock = threading.Lock()

    def swap() -> None:
        while not stop.is_set():
            if paused.is_set():
                time.sleep(0.001)
                continue
            with lock:
                counter[0] += 1
                writer.write(marked(counter[0]))

    outcomes: list[tuple[int, str]] = []
    swapper = threading.Thread(target=swap, name="swapper")
    with settings:
        swapper.start()
        try:
            for _ in range(forks):
                assert wait_until(lambda n=counter[0]: counter[0] > n + 5)  # mid-stream
                outcomes.append(_fork_and_follow(settings, writer, paused, lock, counter))
        finally:
            stop.set()
            swapper.join(DEADLINE)
        final = counter[0] + 1
        writer.write(marked(final))
        assert wait_until(lambda: settings.current.label_gen == final), "the parent follows"
        assert watcher_alive(settings)
    report("fork while swapping", forks=forks, swaps=final, outcomes=sorted(set(outcomes)))
    assert outcomes == [(0, "ok")] * forks


def _fork_and_follow(
    settings: LiveSettings[Any],
    writer: KubeletWriter,
    paused: threading.Event,
    lock: threading.Lock,
    counter: list[int],
) -> tuple[int, str]:
    with ForkedChild(lambda out, go: _fork_child(settings, out, go)) as child:
        ready = child.read_line(FORK_CHILD_DEADLINE)
        assert ready == "ready", ready
        paused.set()
        with lock:  # the swap in progress, if any, is done
            counter[0] += 1
            target = counter[0]
            writer.write(marked(target))
        paused.clear()
        child.send(str(target))
        report_line = child.read_line(FORK_CHILD_DEADLINE + 5)
        return child.reap(DEADLINE), report_line


def _fork_child(settings: LiveSettings[Any], out: int, go: int) -> int:
    settings.start()  # idempotent: returns once the restart after fork is done
    threads = watcher_threads()
    if len(threads) != 1 or not threads[0].is_alive() or not settings.running:
        os.write(out, f"no watcher in the child: {threads}\n".encode())
        return 1
    values = markers(settings.current)
    if len(set(values)) != 1:
        os.write(out, f"torn snapshot in the child: {values}\n".encode())
        return 2
    os.write(out, b"ready\n")
    target = int(read_child_line(go, FORK_CHILD_DEADLINE) or -1)
    if not wait_until(lambda: settings.current.label_gen >= target, FORK_CHILD_DEADLINE):
        os.write(out, f"the child missed swap {target}: at {settings.current.label_gen}\n".encode())
        return 3
    settings.stop()
    os.write(out, b"ok\n")
    return 0


# -- a stateful model of LiveSettings ---------------------------------------------------

MODEL_FIELDS = ("color", "size", "flags", "tier", "workers", "threshold")
RESTART_FIELDS = frozenset({"workers"})

VALUES = st.fixed_dictionaries(
    {
        "color": st.sampled_from(["red", "green", "blue"]),
        "size": st.integers(0, 2),
        "flags": st.sampled_from([{}, {"a": True}, {"a": False, "b": True}]),
        "tier": st.sampled_from(["web", "api"]),
        "workers": st.sampled_from([4, 8]),
        "threshold": st.sampled_from([10, 20]),
    }
)
INITIAL = {"color": "blue", "size": 0, "flags": {}, "tier": "web", "workers": 4, "threshold": 10}


def model_files(
    values: dict[str, Any], *, noise: bool = False, invalid: str | None = None
) -> dict[str, bytes]:
    """The volume for ``values``; ``noise`` moves only the kubelet's config.seen;
    ``invalid`` spoils it one way."""
    annotations = {
        "color": values["color"],
        "size": str(values["size"]),
        "flags": json.dumps(values["flags"]),
        "workers": str(values["workers"]),
    }
    if invalid == "invalid JSON":
        annotations["flags"] = "{"
    elif invalid == "out of range":
        annotations["size"] = "5000"
    seen = "2026-02-02T00:00:00.000000000Z" if noise else DEFAULT_CONFIG_SEEN
    files = pod_files(labels={"tier": values["tier"]}, annotations=annotations, config_seen=seen)
    files["threshold"] = str(values["threshold"])
    if invalid == "bad escape":
        files["annotations"] = f'{files["annotations"]}\nbroken="\\q"'
    elif invalid == "not an integer":
        files["threshold"] = "ten"
    elif invalid == "required file removed":
        del files["threshold"]
    return {k: v.encode() if isinstance(v, str) else v for k, v in files.items()}


MODEL_INVALID = [
    "bad escape",
    "invalid JSON",
    "out of range",
    "not an integer",
    "required file removed",
]


def model_settings(volume: Path) -> type[CanarySettings]:
    class Modelled(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=str(volume), configmap_dirs=[str(volume)])

        color: str = annotation("color", default="blue")
        size: int = annotation("size", default=0, ge=0, le=100)
        flags: dict[str, bool] = annotation("flags", default_factory=dict)
        tier: str = label("tier", default="web")
        workers: int = annotation("workers", default=4, restart_required=True)
        threshold: int = configmap("threshold")

    return Modelled


def values_of(snapshot: Any) -> dict[str, Any]:
    return {name: getattr(snapshot, name) for name in MODEL_FIELDS}


class ModelHandler:
    """A handler for ``fields`` (all when empty) and the changes it must have seen."""

    def __init__(self, fields: frozenset[str]) -> None:
        self.fields = fields
        self.seen: list[dict[str, Any]] = []
        self.expected: list[dict[str, Any]] = []

    def __call__(self, change: Change[Any]) -> None:
        self.seen.append(values_of(change.new))

    def __repr__(self) -> str:
        return f"ModelHandler({sorted(self.fields)})"


class LiveSettingsMachine(RuleBasedStateMachine):
    """Random writes (valid and invalid), reloads, handler registrations and removals.

    The model: ``reload()`` applies the content on disk if it validates and differs from
    the applied one (restart-only fields keep their old value), reports a rejected content
    once, and calls each handler whose fields changed, in order. With ``WATCHER`` the
    background watcher does the reloading after each write, and the test waits for it."""

    WATCHER = False
    handlers = Bundle("handlers")

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="canaryconf-model-"))
        self.writer = KubeletWriter(self.root / "podinfo", seed=0)
        self.disk: dict[str, bytes] = model_files(INITIAL)
        self.disk_values: dict[str, Any] | None = dict(INITIAL)
        self.writer.write(self.disk)
        self.settings = live(model_settings(self.writer.path))
        self.state_files = self.disk
        self.applied = dict(INITIAL)
        self.last_failed: dict[str, bytes] | None = None
        self.failing = False
        self.failures: list[Exception] = []
        self.settings.on_reload_failed(self.failures.append)
        self.expected_failures = 0
        self.registered: list[ModelHandler] = []
        if self.WATCHER:
            self.settings.start()

    def teardown(self) -> None:
        self.settings.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- the model ------------------------------------------------------------------

    def expect_reload(self) -> tuple[str, frozenset[str]]:
        """Advance the model by one reload of what is on disk: (status, restart fields)."""
        if self.disk == self.state_files:
            self.last_failed, self.failing = None, False
            return "unchanged", frozenset()
        if self.disk == self.last_failed:
            return "repeated", frozenset()
        if self.disk_values is None:
            self.expected_failures += 1
            self.last_failed, self.failing = self.disk, True
            return "failed", frozenset()
        new = self.disk_values
        changed = {name for name in MODEL_FIELDS if new[name] != self.applied[name]}
        pending = frozenset(changed & RESTART_FIELDS)
        changed -= pending
        self.state_files, self.last_failed, self.failing = self.disk, None, False
        if not changed:
            return "unchanged", pending
        self.applied = {**new, **{name: self.applied[name] for name in pending}}
        for handler in self.registered:
            if not handler.fields or handler.fields & changed:
                handler.expected.append(dict(self.applied))
        return "applied", pending

    def write(self, files: dict[str, bytes], values: dict[str, Any] | None) -> None:
        wrote = self.writer.write(files)
        assert wrote == (files != self.disk)
        self.disk, self.disk_values = files, values
        if self.WATCHER and wrote:
            self.follow(self.expect_reload()[0])

    def follow(self, status: str) -> None:
        """Wait until the watcher has done what the model expects of this write."""
        settings = self.settings
        if status == "applied":
            done = wait_until(
                lambda: (
                    values_of(settings.current) == self.applied
                    and all(len(h.seen) == len(h.expected) for h in self.registered)
                )
            )
        elif status == "failed":
            done = wait_until(lambda: len(self.failures) >= self.expected_failures)
        else:
            done = wait_until(lambda: settings.generation == self.writer.generation)
        assert done, f"the watcher did not follow a write ({status})"

    # -- rules ----------------------------------------------------------------------

    @rule(values=VALUES, noise=st.booleans())
    def write_valid(self, values: dict[str, Any], noise: bool) -> None:
        self.write(model_files(values, noise=noise), values)

    @rule(values=VALUES, kind=st.sampled_from(MODEL_INVALID))
    def write_invalid(self, values: dict[str, Any], kind: str) -> None:
        self.write(model_files(values, invalid=kind), None)

    @rule(target=handlers, fields=st.frozensets(st.sampled_from(MODEL_FIELDS), max_size=2))
    def register(self, fields: frozenset[str]) -> ModelHandler:
        handler = ModelHandler(fields)
        if fields:
            self.settings.on_change(*sorted(fields))(handler)
        else:
            self.settings.on_change(handler)
        self.registered.append(handler)
        return handler

    @rule(handler=consumes(handlers))
    def disconnect(self, handler: ModelHandler) -> None:
        self.settings.disconnect(handler)
        self.registered.remove(handler)
        assert handler.seen == handler.expected

    @rule()
    def reload(self) -> None:
        if self.WATCHER:  # the watcher already did what the model expects
            status, pending = "unchanged", frozenset()
            if self.failing:
                status = "repeated"
        else:
            status, pending = self.expect_reload()
        result = self.settings.reload()
        if status == "repeated":  # met again: not news (status may say it failed before)
            assert not result.applied
            assert not is_news(result)
        else:
            assert result.status == status
            assert result.restart_fields == pending

    # -- invariants -----------------------------------------------------------------

    @invariant()
    def current_is_the_last_valid_version_applied(self) -> None:
        assert values_of(self.settings.current) == self.applied

    @invariant()
    def handlers_saw_their_changes_in_order(self) -> None:
        for handler in self.registered:
            assert handler.seen == handler.expected, handler

    @invariant()
    def each_rejection_reported_once(self) -> None:
        assert len(self.failures) == self.expected_failures
        assert (self.settings.last_error is not None) == self.failing


class WatchedLiveSettingsMachine(LiveSettingsMachine):
    WATCHER = True


MACHINE_SETTINGS = hypothesis_settings(
    max_examples=EXAMPLES,
    stateful_step_count=50 if LONG else 25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.mark.timeout(LONG_TIMEOUT)
def test_live_settings_state_machine_with_reload() -> None:
    run_state_machine_as_test(LiveSettingsMachine, settings=MACHINE_SETTINGS)


@pytest.mark.timeout(LONG_TIMEOUT)
def test_live_settings_state_machine_with_the_thread_watcher() -> None:
    run_state_machine_as_test(WatchedLiveSettingsMachine, settings=MACHINE_SETTINGS)
