"""Where one reload's CPU goes, part by part, with caches as cold as in production.

One ``LiveSettings`` of :mod:`bench_floor`'s realistic class (15 fields over a podinfo,
a ConfigMap and a Secret volume) is started with ``live.start()``; a writer in a process
of its own swaps the podinfo volume the way the kubelet does, waits for the handler, then
pauses (``--gap``, 20 ms by default: long enough for other work to push the watcher's
code and data out of the CPU caches, as happens between two rollout steps). Each part of
the reload is wrapped to take the watcher thread's CPU time (``time.thread_time_ns``)
around it; the table gives how many times it ran per swap, the median of one run, and
the mean per swap (a part that runs several times per swap: the event loop's iterations).
The wrappers add about a microsecond to each part they wrap.

The parts wrap canaryconf internals (they name the mechanism they time); one that is
gone is left out of the table, with a note.

Run: ``python benchmarks/bench_parts.py [--quick] [--swaps N] [--gap SECONDS]``;
:mod:`run_all` calls ``run(quick=...)`` (its wrappers are removed when it returns).
"""

from __future__ import annotations

import argparse
import collections
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

import bench_floor  # noqa: E402  (after the path)

#: (module, attribute path, label): what is timed, in the order shown.
PARTS = (
    ("asyncio.base_events", "BaseEventLoop._run_once", "event loop iterations"),
    ("canaryconf._watch", "_InotifyHub._readable", "  inotify events read and routed"),
    ("canaryconf._runtime", "_Background.inline", "  a kubelet commit: reload + handlers"),
    ("canaryconf._runtime", "_Background._run_queued", "out of the loop: reloads + handlers"),
    ("canaryconf._live", "LiveSettings._step", "reload step (ReloadResult.duration)"),
    ("canaryconf._live", "LiveSettings._links", "  ..data links read"),
    ("canaryconf._live", "LiveSettings._read", "  volumes read"),
    ("canaryconf.volume", "content_digest", "    content digest"),
    ("canaryconf.sources.base", "parse_map", "  label/annotation files parsed"),
    ("canaryconf.settings", "_values_with_static", "  sources and merge (with the parse)"),
    ("canaryconf._live", "_Core.build", "  build: sources, merge, validation"),
    ("canaryconf._reload", "changed_fields", "  comparison"),
    ("canaryconf._dispatch", "Dispatcher.deliver", "dispatch (handlers included)"),
)

WATCHER = "canaryconf-watcher"
TIMEOUT = 5.0


def _wrap(module_name: str, path: str, timings: list[int]) -> Callable[[], None] | None:
    """Time ``module.path`` on the watcher thread into ``timings``; returns what undoes it,
    or None if it is gone."""
    try:
        owner: Any = importlib.import_module(module_name)
        *outer, name = path.split(".")
        for part in outer:
            owner = getattr(owner, part)
        original: Callable[..., Any] = getattr(owner, name)
    except (ImportError, AttributeError):
        return None

    def timed(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread().name != WATCHER:
            return original(*args, **kwargs)
        start = time.thread_time_ns()
        try:
            return original(*args, **kwargs)
        finally:
            timings.append(time.thread_time_ns() - start)

    setattr(owner, name, timed)
    return lambda: setattr(owner, name, original)


_WRITER = """
import sys
sys.path.insert(0, {bench!r})
import bench_floor
from canaryconf.testing import KubeletWriter
writer = KubeletWriter({path!r})
for line in sys.stdin:
    writer.write(bench_floor.podinfo_payload(int(line), {{}}))
    print("ok", flush=True)
"""


def run(quick: bool = False, swaps: int | None = None, gap: float = 0.02) -> list[dict[str, Any]]:
    """One row per part found (``name``, ``calls_per_swap``, ``median_us``,
    ``mean_per_swap_us``); a last row ``missed swaps`` notes the parts not found."""
    swaps = swaps or (60 if quick else 300)
    timings: dict[str, list[int]] = collections.defaultdict(list)
    undo: list[Callable[[], None]] = []
    missing = []
    for module, path, label in PARTS:
        restore = _wrap(module, path, timings[label])
        if restore is None:
            missing.append(label)
        else:
            undo.append(restore)
    try:
        missed = _measure(swaps, gap, timings)
    finally:
        for restore in undo:
            restore()
    rows: list[dict[str, Any]] = []
    for _module, _path, label in PARTS:
        if label in missing:
            continue
        values = sorted(timings[label])
        rows.append(
            {
                "name": label.strip(),
                "calls_per_swap": len(values) / swaps,
                "median_us": values[len(values) // 2] / 1000 if values else float("nan"),
                "mean_per_swap_us": sum(values) / swaps / 1000,
                "passed": None,
            }
        )
    rows.append(
        {
            "name": "missed swaps",
            "count": missed,
            "parts not found": ", ".join(m.strip() for m in missing) or "-",
            "passed": None,
        }
    )
    return rows


def _measure(swaps: int, gap: float, timings: dict[str, list[int]]) -> int:
    """Swap the podinfo volume ``swaps`` times (after five warm-up swaps); the number of
    swaps whose handler did not run in time."""
    import canaryconf

    root = tempfile.mkdtemp(prefix="canaryconf-parts-")
    dirs = bench_floor.write_volumes(root)
    settings = canaryconf.live(bench_floor.canary_class(root, bench_floor.STANDARD_FIELDS))
    seen = threading.Event()
    settings.on_change(lambda change: seen.set())
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER.format(bench=str(BENCH_DIR), path=dirs["podinfo"])],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=bench_floor._child_env(),
    )
    assert writer.stdin is not None and writer.stdout is not None
    missed = 0
    try:
        settings.start()
        for seq in range(1, swaps + 6):
            if seq == 6:  # five warm-up swaps
                for values in timings.values():
                    values.clear()
            seen.clear()
            writer.stdin.write(f"{seq}\n")
            writer.stdin.flush()
            if writer.stdout.readline() != "ok\n":
                raise RuntimeError("the writer process ended")
            missed += not seen.wait(TIMEOUT)
            time.sleep(gap)
    finally:
        settings.stop()
        writer.stdin.close()
        writer.wait(TIMEOUT)
        shutil.rmtree(root, ignore_errors=True)
    return missed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="60 swaps")
    parser.add_argument("--swaps", type=int, help="timed swaps (default 300)")
    parser.add_argument("--gap", type=float, default=0.02, help="pause after each (s)")
    parser.add_argument("--json", help="also write the rows as JSON to this file")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    rows = run(args.quick, args.swaps, args.gap)
    *parts, extra = rows
    print(f"{args.gap * 1000:g} ms between swaps; load average {load:.2f} at the start")
    print("| part | calls per swap | thread CPU per call, median (us) | per swap, mean (us) |")
    print("|---|---:|---:|---:|")
    labels = {label.strip(): label for _module, _path, label in PARTS}
    for row in parts:
        shown = labels[row["name"]].replace("  ", "&nbsp;&nbsp;")
        print(
            f"| {shown} | {row['calls_per_swap']:.2f} | {row['median_us']:.1f}"
            f" | {row['mean_per_swap_us']:.1f} |"
        )
    if extra["count"]:
        print(f"missed swaps: {extra['count']}")
    if extra["parts not found"] != "-":
        print(f"not found in this version of canaryconf: {extra['parts not found']}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
