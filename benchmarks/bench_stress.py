"""Benchmark live settings under stress: how many swaps per second are handled one by one
before changes start to coalesce, torn reads under load, rejected versions, recovery.

1. **rate sweep** - a writer process swaps the volume at a paced rate (25, 50, 100, 200,
   400, 800 swaps/s, then as fast as it can) for 3 s each (quick: 1 s; 50, 200 and max),
   while the background watcher (inotify) reloads and an ``on_change`` handler counts the
   changes it is told about. ``coalesced %`` is the share of swaps never seen as a change
   of their own (a later swap overtook them before the reload); ``handled/s`` the applied
   changes per second. The row "no coalescing up to" gives the highest paced rate with 0
   coalesced. Target: after each run, the last swap is served within 1 s.
2. **torn reads** - 4 threads read ``live.current`` in a loop while the writer process
   swaps as fast as it can for 5 s (quick: 2 s); every file of the volume carries the
   swap's number, so a snapshot mixing two versions shows. Target: 0 torn, 0 backwards.
3. **rejections** - the writer alternates valid versions with invalid ones (a bad escape,
   JSON that does not parse, a value out of range), paced at 50 swaps/s for 3 s (quick:
   1 s): rejections reported vs invalid versions written, and whether a rejected value was
   ever served. Target: none served; reported <= written (a rejected version overtaken
   before it is read is never reported).
4. **recovery** - the volume directory is removed and recreated 10 times (quick: 3): time
   from the first swap into the new directory until it is served, for inotify (which
   polls for a missing directory, backing off up to 1 s) and for polling every 50 ms.

Run: ``python benchmarks/bench_stress.py [--quick]``; ``run(quick=...)`` returns the rows.
The writer runs in a process of its own, as the kubelet does.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
SRC_DIR = BENCH_DIR.parent / "src"
if find_spec("canaryconf") is None:  # running from a checkout without installing
    sys.path.insert(0, str(SRC_DIR))

from canaryconf import (  # noqa: E402
    CanaryConfigDict,
    CanarySettings,
    Change,
    LiveSettings,
    annotation,
    label,
    live,
    pod_field,
)
from canaryconf.testing import KubeletWriter, pod_files  # noqa: E402

PREFIX = "bench.example.com/"
CONVERGE_TARGET_S = 1.0
WAIT = 10.0
READERS = 4

WRITER = """
import json, sys, time
from canaryconf import format_map
from canaryconf.testing import KubeletWriter, pod_files

path, rate, seconds, first, invalid_every = sys.argv[1:6]
rate, seconds, first, invalid_every = float(rate), float(seconds), int(first), int(invalid_every)
PREFIX = "bench.example.com/"
BAD = [{PREFIX + "json": "{"}, {PREFIX + "size": "-5"}]
SPOILERS = [
    lambda files: files.update(annotations=files["annotations"] + "\\nbroken=\\"\\\\q\\""),
    lambda files: files.update(annotations=format_map({PREFIX + "marker": "0", **BAD[0]})),
    lambda files: files.update(annotations=format_map({PREFIX + "marker": "0", **BAD[1]})),
]

def version(n, invalid):
    text = str(n)
    files = pod_files(
        labels={"app": "bench", "marker": text},
        annotations={PREFIX + "marker": text, PREFIX + "json": json.dumps({"n": n})},
        extra={"marker": text},
    )
    if invalid:
        SPOILERS[n % len(SPOILERS)](files)
    return files

writer = KubeletWriter(path)
started = time.perf_counter()
n = first
invalid_written = 0
last_valid = first - 1
while time.perf_counter() - started < seconds:
    if rate > 0:
        due = started + (n - first) / rate
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    invalid = invalid_every > 0 and (n - first) % invalid_every == invalid_every - 1
    writer.write(version(n, invalid))
    if invalid:
        invalid_written += 1
    else:
        last_valid = n
    n += 1
if invalid_every and (n - first) % invalid_every == 0:
    writer.write(version(n, False))  # end on a valid version
    last_valid = n
    n += 1
print(json.dumps({"swaps": n - first, "last": last_valid, "invalid": invalid_written,
                  "seconds": time.perf_counter() - started}))
"""


def settings_class(volume: str) -> type[CanarySettings]:
    class Stressed(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=volume, annotation_prefix=PREFIX)
        label_marker: int = label("marker", default=-1)
        marker: int = annotation("marker", default=-1)
        json_marker: dict[str, int] = annotation("json", default_factory=dict)
        file_marker: int = pod_field(f"metadata.annotations['{PREFIX}marker']", file="marker")
        size: int = annotation("size", default=0, ge=0)

    return Stressed


def first_version(path: str) -> None:
    KubeletWriter(path).write(
        pod_files(
            labels={"app": "bench", "marker": "0"},
            annotations={f"{PREFIX}marker": "0", f"{PREFIX}json": json.dumps({"n": 0})},
            extra={"marker": "0"},
        )
    )


def run_writer(
    path: str, rate: float, seconds: float, first: int, invalid_every: int = 0
) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC_DIR), *sys.path])}
    done = subprocess.run(
        [sys.executable, "-c", WRITER, path, *map(str, (rate, seconds, first, invalid_every))],
        capture_output=True,
        text=True,
        env=env,
        timeout=seconds + 60,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def wait_until(condition: Callable[[], object], timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return bool(condition())
        time.sleep(0.001)
    return True


def markers(snapshot: Any) -> tuple[int, ...]:
    return (
        snapshot.label_marker,
        snapshot.marker,
        snapshot.json_marker.get("n", -1),
        snapshot.file_marker,
    )


class Counter:
    def __init__(self) -> None:
        self.changes = 0
        self.failures = 0

    def change(self, _change: Change[Any]) -> None:
        self.changes += 1

    def failure(self, _error: Exception) -> None:
        self.failures += 1


def watched(path: str, **options: Any) -> tuple[LiveSettings[Any], Counter]:
    settings = live(settings_class(path), **options)
    counter = Counter()
    settings.on_change(counter.change)
    settings.on_reload_failed(counter.failure)
    return settings, counter


# -- 1. rate sweep --------------------------------------------------------------------------


def measure_rates(quick: bool, say: Callable[[str], None]) -> list[dict[str, Any]]:
    rates = [50.0, 200.0, 0.0] if quick else [25.0, 50.0, 100.0, 200.0, 400.0, 800.0, 0.0]
    seconds = 1.0 if quick else 3.0
    rows = []
    clean_up_to = 0.0
    for rate in rates:
        root = tempfile.mkdtemp(prefix="canaryconf-bench-")
        try:
            path = os.path.join(root, "podinfo")
            first_version(path)
            settings, counter = watched(path)
            with settings:
                say(f"rate {rate or 'max'}")
                outcome = run_writer(path, rate, seconds, 1)
                ended = time.monotonic()
                served = wait_until(lambda s=settings, o=outcome: s.marker == o["last"])
                converge = time.monotonic() - ended
            swaps = outcome["swaps"]
            coalesced = swaps - counter.changes
            if rate and coalesced == 0:
                clean_up_to = max(clean_up_to, rate)
            rows.append(
                {
                    "section": "rate sweep",
                    "name": f"paced at {rate:g} swaps/s" if rate else "as fast as possible",
                    "swaps/s written": round(swaps / outcome["seconds"], 1),
                    "swaps": swaps,
                    "changes handled": counter.changes,
                    "handled/s": round(counter.changes / outcome["seconds"], 1),
                    "coalesced %": round(100.0 * coalesced / swaps, 2),
                    "last served after s": round(converge, 4) if served else None,
                    "target": f"last swap served within {CONVERGE_TARGET_S:g} s",
                    "passed": served and converge <= CONVERGE_TARGET_S,
                }
            )
        finally:
            shutil.rmtree(root, ignore_errors=True)
    rows.append(
        {
            "section": "rate sweep",
            "name": "no coalescing up to",
            "swaps/s": clean_up_to,
            "passed": None,
        }
    )
    return rows


# -- 2. torn reads --------------------------------------------------------------------------


def measure_torn_reads(quick: bool, say: Callable[[str], None]) -> list[dict[str, Any]]:
    seconds = 2.0 if quick else 5.0
    root = tempfile.mkdtemp(prefix="canaryconf-bench-")
    try:
        path = os.path.join(root, "podinfo")
        first_version(path)
        settings, counter = watched(path)
        done = threading.Event()
        reads = [0] * READERS
        torn = [0] * READERS
        backwards = [0] * READERS

        def reader(index: int) -> None:
            last = -1
            while not done.is_set():
                values = markers(settings.current)
                if len(set(values)) != 1:
                    torn[index] += 1
                if values[0] < last:
                    backwards[index] += 1
                last = values[0]
                reads[index] += 1
                time.sleep(0)

        threads = [threading.Thread(target=reader, args=(i,)) for i in range(READERS)]
        with settings:
            for thread in threads:
                thread.start()
            say("torn reads")
            started = time.monotonic()
            outcome = run_writer(path, 0.0, seconds, 1)
            wait_until(lambda: settings.marker == outcome["last"])
            elapsed = time.monotonic() - started
            done.set()
            for thread in threads:
                thread.join(WAIT)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return [
        {
            "section": "torn reads",
            "name": f"{READERS} readers, writer at full speed",
            "swaps": outcome["swaps"],
            "changes handled": counter.changes,
            "reads/s": round(sum(reads) / elapsed),
            "torn": sum(torn),
            "backwards": sum(backwards),
            "target": "0 torn, 0 backwards",
            "passed": sum(torn) == 0 and sum(backwards) == 0,
        }
    ]


# -- 3. rejections ----------------------------------------------------------------------------


def measure_rejections(quick: bool, say: Callable[[str], None]) -> list[dict[str, Any]]:
    seconds = 1.0 if quick else 3.0
    root = tempfile.mkdtemp(prefix="canaryconf-bench-")
    try:
        path = os.path.join(root, "podinfo")
        first_version(path)
        settings, counter = watched(path)
        served_bad = [0]
        done = threading.Event()

        def reader() -> None:
            while not done.is_set():
                snapshot = settings.current
                if snapshot.size < 0 or len(set(markers(snapshot))) != 1:
                    served_bad[0] += 1
                time.sleep(0)

        thread = threading.Thread(target=reader)
        with settings:
            thread.start()
            say("rejections")
            outcome = run_writer(path, 50.0, seconds, 1, invalid_every=2)
            served = wait_until(lambda: settings.marker == outcome["last"])
            time.sleep(0.2)  # late events of the last swaps
            done.set()
            thread.join(WAIT)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return [
        {
            "section": "rejections",
            "name": "every other version invalid, 50 swaps/s",
            "swaps": outcome["swaps"],
            "invalid written": outcome["invalid"],
            "reload_failed sent": counter.failures,
            "changes handled": counter.changes,
            "bad snapshots served": served_bad[0],
            "target": "none served; reported <= written",
            "passed": served
            and served_bad[0] == 0
            and counter.failures <= outcome["invalid"]
            and settings.last_error is None,
        }
    ]


# -- 4. recovery ------------------------------------------------------------------------------


def measure_recovery(quick: bool, say: Callable[[str], None]) -> list[dict[str, Any]]:
    cycles = 3 if quick else 10
    rows = []
    for name, options in (
        ("inotify", {"backend": "inotify"}),
        ("polling every 50 ms", {"force_polling": True, "poll_interval": 0.05}),
    ):
        root = tempfile.mkdtemp(prefix="canaryconf-bench-")
        try:
            path = os.path.join(root, "podinfo")
            first_version(path)
            settings, _counter = watched(path, **options)
            times = []
            say(f"recovery {name}")
            with settings:
                for cycle in range(1, cycles + 1):
                    shutil.rmtree(path)
                    time.sleep(0.2)  # gone for a while, as an unmounted volume is
                    writer = KubeletWriter(path)
                    started = time.monotonic()
                    text = str(cycle)
                    writer.write(
                        pod_files(
                            labels={"app": "bench", "marker": text},
                            annotations={
                                f"{PREFIX}marker": text,
                                f"{PREFIX}json": json.dumps({"n": cycle}),
                            },
                            extra={"marker": text},
                        )
                    )
                    if wait_until(lambda s=settings, c=cycle: s.marker == c):
                        times.append(time.monotonic() - started)
                alive = settings.running
        finally:
            shutil.rmtree(root, ignore_errors=True)
        rows.append(
            {
                "section": "recovery",
                "name": f"volume removed 0.2 s, recreated ({name})",
                "cycles": cycles,
                "recovered": len(times),
                "median s": round(statistics.median(times), 3) if times else None,
                "max s": round(max(times), 3) if times else None,
                "target": "every cycle recovered, watcher alive",
                "passed": len(times) == cycles and alive,
            }
        )
    return rows


def run(
    quick: bool = False, *, progress: Callable[[str], None] | None = None
) -> list[dict[str, Any]]:
    """Measure the four parts; one row (a dict) per case."""
    say = progress or (lambda _msg: None)
    rows: list[dict[str, Any]] = []
    rows += measure_rates(quick, say)
    rows += measure_torn_reads(quick, say)
    rows += measure_rejections(quick, say)
    rows += measure_recovery(quick, say)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = parser.parse_args()
    rows = run(args.quick, progress=lambda msg: print(f"[bench_stress] {msg}", file=sys.stderr))
    for row in rows:
        figures = ", ".join(
            f"{k}={v}" for k, v in row.items() if k not in {"section", "name", "target", "passed"}
        )
        verdict = {True: "PASS", False: "FAIL", None: ""}[row.get("passed")]
        print(f"{row['section']:>11} | {row['name']:<44} | {figures} | {verdict}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
