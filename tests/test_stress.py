"""Reliability under stress: many kubelet swaps against live readers, invalid versions mixed
into the stream, faults (volume gone, permissions, no inotify, bad handlers, fork), and a
stateful model of :class:`~canaryconf.LiveSettings`.

A short version runs with the default test command; the long one with::

    CANARYCONF_STRESS=long .venv/bin/pytest -m stress -s

``CANARYCONF_STRESS_SWAPS=N`` sets the number of swaps of the torn-reads test and
``CANARYCONF_STRESS_EXAMPLES=N`` the hypothesis examples of the state machines. Every wait
is a condition polled against a deadline; figures are printed (``-s`` shows them).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from canaryconf import (
    CanaryConfigDict,
    CanarySettings,
    Change,
    LiveSettings,
    ReloadResult,
    annotation,
    configmap,
    label,
    live,
    pod_field,
    signals,
)
from canaryconf._live import _instances
from canaryconf.testing import KubeletWriter, pod_files

pytestmark = pytest.mark.stress

LONG = os.environ.get("CANARYCONF_STRESS", "").lower() == "long"


def scaled(variable: str, short: int, long: int) -> int:
    """``$variable`` if set, else the long or the short figure."""
    value = os.environ.get(variable)
    return int(value) if value else (long if LONG else short)


SWAPS = scaled("CANARYCONF_STRESS_SWAPS", 300, 10_000)
EXAMPLES = scaled("CANARYCONF_STRESS_EXAMPLES", 12, 200)
READERS = 4
PREFIX = "stress.example.com/"
WATCHER = "canaryconf-watcher"
DEADLINE = 10.0
#: How soon after the last swap the snapshot must be the last payload.
CONVERGE_WITHIN = 1.0


def wait_until(condition: Callable[[], object], timeout: float = DEADLINE) -> bool:
    """Poll ``condition`` until it is true or ``timeout`` seconds pass; its last truth."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return bool(condition())
        time.sleep(0.002)
    return True


def watcher_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == WATCHER]


@pytest.fixture(autouse=True)
def no_watcher_left() -> Iterator[None]:
    """Every test stops what it starts (a watcher left running would also be restarted in
    the child of a fork test)."""
    already = {id(instance) for instance in list(_instances) if instance.running}
    yield
    leaked = [i for i in list(_instances) if i.running and id(i) not in already]
    for instance in leaked:
        instance.stop()
    assert not leaked, "a test left a LiveSettings watcher running"


def report(title: str, **figures: object) -> None:
    print(f"\n[stress] {title}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


# -- torn reads -------------------------------------------------------------------------


class Marker(BaseModel):
    gen: int = -1


def marked(gen: int) -> dict[str, str | bytes]:
    """A volume whose every file carries the generation marker ``gen``."""
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
    """Reads ``live.current`` in a loop and checks each snapshot is one version, never
    older than the one before."""

    settings: LiveSettings[Any]
    done: threading.Event
    reads: int = 0
    torn: list[tuple[int, ...]] = field(default_factory=list)
    backwards: int = 0

    def run(self) -> None:
        last = -1
        while not self.done.is_set():
            values = markers(self.settings.current)
            if len(set(values)) != 1:
                self.torn.append(values)
            if values[0] < last:
                self.backwards += 1
            last = values[0]
            self.reads += 1
            time.sleep(0)  # hand the GIL over: the writer and the watcher need it too


@dataclass
class Recorder:
    """An ``on_change`` handler that records which versions it saw."""

    seen: list[tuple[int, int]] = field(default_factory=list)

    def __call__(self, change: Change[Any]) -> None:
        self.seen.append((change.old.label_gen, change.new.label_gen))

    def problems(self) -> list[str]:
        found = []
        news = [new for _old, new in self.seen]
        if news != sorted(set(news)):
            found.append("versions out of order or repeated")
        for (_o1, n1), (o2, _n2) in zip(self.seen, self.seen[1:], strict=False):
            if o2 != n1:
                found.append(f"a change from {o2} follows one to {n1}: one was missed")
                break
        return found


def test_no_torn_snapshot_and_no_missed_change_under_many_swaps(tmp_path: Path) -> None:
    writer = KubeletWriter(tmp_path / "podinfo", seed=7)
    writer.write(marked(0))
    settings = live(marked_settings(writer.path))
    handlers = [Recorder(), Recorder()]
    for handler in handlers:
        settings.on_change(handler)
    results: list[ReloadResult[Any]] = []

    def on_reloaded(_sender: Any, result: ReloadResult[Any], **_: Any) -> None:
        results.append(result)

    signals.reloaded.connect(on_reloaded, sender=settings)
    done = threading.Event()
    readers = [Reader(settings, done) for _ in range(READERS)]
    threads = [threading.Thread(target=r.run, name=f"reader-{i}") for i, r in enumerate(readers)]
    converge: float | None = None
    try:
        with settings:
            for thread in threads:
                thread.start()
            started = time.monotonic()
            for gen in range(1, SWAPS + 1):
                writer.write(marked(gen))
            wrote = time.monotonic()
            caught_up = wait_until(lambda: settings.current.label_gen == SWAPS, CONVERGE_WITHIN)
            if caught_up:
                converge = time.monotonic() - wrote
            else:  # late or never: say which
                wait_until(lambda: settings.current.label_gen == SWAPS)
            assert settings.running
            assert all(t.is_alive() for t in watcher_threads())
    finally:
        done.set()
        for thread in threads:
            thread.join(DEADLINE)
        signals.reloaded.disconnect(on_reloaded, sender=settings)

    applied = [r for r in results if r.applied]
    torn = [t for r in readers for t in r.torn]
    report(
        "torn reads",
        swaps=SWAPS,
        seconds=f"{wrote - started:.2f}",
        swaps_per_s=f"{SWAPS / (wrote - started):.0f}",
        reads=sum(r.reads for r in readers),
        torn=len(torn),
        backwards=sum(r.backwards for r in readers),
        reloads=len(results),
        applied=len(applied),
        failed=sum(r.failed for r in results),
        handler_calls=[len(h.seen) for h in handlers],
        converged_after_s=None if converge is None else f"{converge:.3f}",
        final=markers(settings.current),
    )
    assert torn == [], f"torn snapshots: {torn[:5]}"
    assert all(r.backwards == 0 for r in readers)
    assert all(r.reads > 0 for r in readers)
    assert converge is not None, (
        f"the last payload ({SWAPS}) was not served {CONVERGE_WITHIN}s after the last swap:"
        f" serving {markers(settings.current)}"
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


def shop_files(marker: int, **overrides: str | None) -> dict[str, str | bytes]:
    """A podinfo + configmap volume at version ``marker``; ``overrides`` replace an
    annotation's rendered value (``None`` removes the configmap file ``threshold``)."""
    annotations = {
        f"{PREFIX}marker": str(marker),
        f"{PREFIX}size": "5",
        f"{PREFIX}limits": json.dumps({"cpu": marker % 7}),
        f"{PREFIX}mode": "fast",
    }
    files = pod_files(labels={"app": "shop"}, annotations=annotations)
    files["threshold"] = "10"
    raw = overrides.pop("raw_annotation", None)
    for key, value in overrides.items():
        if key == "threshold":
            if value is None:
                del files["threshold"]
            else:
                files["threshold"] = value
        else:
            annotations[f"{PREFIX}{key}"] = str(value)
    files["annotations"] = format_map(
        {"kubernetes.io/config.seen": DEFAULT_CONFIG_SEEN, **annotations}
    )
    if raw is not None:  # a line no kubelet writes: the file does not parse
        files["annotations"] = f"{files['annotations']}\n{PREFIX}broken={raw}"
    return files


#: Each kind of invalid version, as the overrides of :func:`shop_files`.
INVALID_KINDS: dict[str, dict[str, str | None]] = {
    "bad escape": {"raw_annotation": '"\\q"'},
    "unterminated quote": {"raw_annotation": '"open'},
    "invalid JSON": {"limits": "{cpu: 1"},
    "out of range": {"size": "1000"},
    "failing validator": {"mode": "reckless"},
    "required file removed": {"threshold": None},
    "not an integer": {"threshold": "ten"},
}
#: Rejected while the volume is read, before any content is compared.
READ_KINDS = {"file over the size cap": {"big": "x" * 8192}}
SIZE_CAP = 4096


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


def version_stream(kinds: dict[str, dict[str, str | None]], rounds: int) -> list[tuple[str, dict[str, str | bytes]]]:
    """Good versions with every kind of invalid one between them, twice in a row (two
    different rejected contents) and once right after a good one."""
    stream: list[tuple[str, dict[str, str | bytes]]] = []
    marker = 0
    for _ in range(rounds):
        for kind, overrides in kinds.items():
            marker += 1
            stream.append(("good", shop_files(marker)))
            for _repeat in range(2):
                marker += 1
                files = shop_files(marker, **{k: v for k, v in overrides.items() if k != "big"})
                if "big" in overrides:
                    files["big"] = overrides["big"] or ""
                stream.append((kind, files))
    marker += 1
    stream.append(("good", shop_files(marker)))
    return stream
