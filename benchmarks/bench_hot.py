"""A reload's work with hot caches: canaryconf against the floor, in one process, no writer.

:mod:`bench_floor` measures latency and CPU with caches as cold as between two rollout
steps, where the kernel, the writer and the other subjects run between swaps; its figures
mix the work a reload does with what a cold cache adds to it. This benchmark keeps only
the work: the realistic volumes of :mod:`bench_floor` (a podinfo volume with 10 labels and
20 annotations including a 1 KiB JSON flags document, a ConfigMap and a Secret, written
by ``KubeletWriter``) get a second podinfo generation next to the first, and each
iteration commits one of the two the kubelet's way (a symlink renamed onto ``..data``),
then times, in turn:

- **canaryconf**: ``live._reload("watcher")``, what the watcher runs for a commit (read
  the links, read the changed volume, parse, build, compare, publish) with its dispatch to
  an ``on_change`` handler;
- **floor**: what :class:`bench_floor.FloorSubject` does for a commit: read the needed
  files of the generation ``..data`` names, parse them minimally, build the plain model
  from them and the other volumes' parsed files (kept from the start, as the floor does).

Each iteration commits the other generation before each subject, so both always read a
new one (the order of the two alternates). Then the parts of canaryconf's reload are timed
alone, hot: the selective read of the podinfo volume, parsing its two map files, and the
sources with validation (``_Core.build``, the parse cached with the generation), against
the floor's read, parse and ``model_validate``. Medians of ``perf_counter_ns``; no target.

Run: ``python benchmarks/bench_hot.py [--quick] [--iterations N]``; :mod:`run_all` calls
``run(quick=...)``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

import bench_floor  # noqa: E402  (after the path)

WARM_UP = 300


def _median_us(values: list[int]) -> float:
    values = sorted(values)
    return values[len(values) // 2] / 1000


def run(quick: bool = False, iterations: int | None = None) -> list[dict[str, Any]]:
    """One row per measure (``name``, ``canaryconf_us``, ``floor_us``, ``ratio``)."""
    import canaryconf
    from canaryconf.downward import parse_map
    from canaryconf.sources.base import read_settings_volume
    from canaryconf.testing import KubeletWriter
    from canaryconf.volume import DATA_LINK, read_data_target

    iterations = iterations or (1000 if quick else 5000)
    root = tempfile.mkdtemp(prefix="canaryconf-hot-")
    spare = tempfile.mkdtemp(prefix="canaryconf-hot-spare-")
    try:
        dirs = bench_floor.write_volumes(root)
        podinfo = dirs["podinfo"]
        # A second generation with other values, moved in beside the first.
        KubeletWriter(spare).write(bench_floor.podinfo_payload(1, {}))
        second = "..hot_second"
        shutil.copytree(
            os.path.join(spare, os.readlink(os.path.join(spare, DATA_LINK))),
            os.path.join(podinfo, second),
        )
        generations = [second, os.readlink(os.path.join(podinfo, DATA_LINK))]
        turn = [0]

        def commit() -> None:
            turn[0] ^= 1
            staged = os.path.join(podinfo, "..data_tmp")
            os.symlink(generations[turn[0]], staged)
            os.rename(staged, os.path.join(podinfo, DATA_LINK))

        live = canaryconf.live(bench_floor.canary_class(root, bench_floor.STANDARD_FIELDS))
        delivered = [0]
        live.on_change(lambda change: delivered.__setitem__(0, delivered[0] + 1))

        specs = bench_floor.STANDARD_FIELDS
        need = bench_floor.needed_files(specs)
        model = bench_floor.plain_model(specs)
        kept = {
            role: bench_floor.parse_role(role, bench_floor.read_generation(dirs[role], need[role]))
            for role in ("config", "secret")
        }

        def floor() -> Any:
            parsed = dict(kept)
            files = bench_floor.read_generation(podinfo, need["podinfo"])
            parsed["podinfo"] = bench_floor.parse_role("podinfo", files)
            return model.model_validate(bench_floor.values_from(specs, parsed))

        def canary() -> Any:
            result = live._reload("watcher")
            if result.status != "applied":
                raise RuntimeError(f"canaryconf did not apply a new generation: {result}")
            return result

        clock = time.perf_counter_ns
        times: dict[str, list[int]] = {"canaryconf": [], "floor": []}
        subjects: list[tuple[str, Callable[[], Any]]] = [("canaryconf", canary), ("floor", floor)]
        for i in range(WARM_UP + iterations):
            for name, subject in subjects if i % 2 else subjects[::-1]:
                commit()
                start = clock()
                subject()
                elapsed = clock() - start
                if i >= WARM_UP:
                    times[name].append(elapsed)
        if delivered[0] != WARM_UP + iterations:
            raise RuntimeError(f"{delivered[0]} changes delivered, not {WARM_UP + iterations}")

        # The parts, each alone, canaryconf's and the floor's alternated sample by sample.
        def timed(ours: Callable[[], Any], theirs: Callable[[], Any]) -> tuple[float, float]:
            samples: tuple[list[int], list[int]] = ([], [])
            for i in range(max(iterations // 2, 200)):
                for side in (0, 1) if i % 2 else (1, 0):
                    fn = ours if side == 0 else theirs
                    start = clock()
                    fn()
                    samples[side].append(clock() - start)
            return _median_us(samples[0]), _median_us(samples[1])

        cls = live.settings_class
        snapshot = read_settings_volume(cls, podinfo)
        assert snapshot is not None
        maps = [(name, snapshot.files[name]) for name in ("labels", "annotations")]
        volumes = live._core.state.current.volumes
        texts = {name: data.decode() for name, data in maps}
        parsed = dict(kept)
        parsed["podinfo"] = bench_floor.parse_role("podinfo", texts)
        parts = [
            (
                "read the podinfo volume",
                *timed(
                    lambda: read_settings_volume(
                        cls, podinfo, data_target=read_data_target(podinfo)
                    ),
                    lambda: bench_floor.read_generation(podinfo, need["podinfo"]),
                ),
            ),
            (
                "parse its two map files",
                *timed(
                    lambda: [parse_map(data, source=name) for name, data in maps],
                    lambda: bench_floor.parse_role("podinfo", texts),
                ),
            ),
            (
                "sources and validation (canaryconf: parse cached)",
                *timed(
                    lambda: live._core.build(volumes),
                    lambda: model.model_validate(bench_floor.values_from(specs, parsed)),
                ),
            ),
        ]
    finally:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(spare, ignore_errors=True)

    whole_c, whole_f = _median_us(times["canaryconf"]), _median_us(times["floor"])
    rows = [
        {
            "name": "a commit: reload with dispatch (floor: read, parse, build)",
            "canaryconf_us": whole_c,
            "floor_us": whole_f,
            "ratio": whole_c / whole_f,
            "iterations": iterations,
            "passed": None,
        }
    ]
    for name, c, f in parts:
        rows.append(
            {"name": name, "canaryconf_us": c, "floor_us": f, "ratio": c / f, "passed": None}
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="1,000 iterations")
    parser.add_argument("--iterations", type=int, help="timed iterations (default 5,000)")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    rows = run(args.quick, args.iterations)
    print(f"{rows[0]['iterations']} iterations; load average {load:.2f} at the start")
    print("| part | canaryconf, median (us) | floor, median (us) | x floor |")
    print("|---|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['name']} | {row['canaryconf_us']:.1f} | {row['floor_us']:.1f} "
            f"| {row['ratio']:.2f} |"
        )


if __name__ == "__main__":
    main()
