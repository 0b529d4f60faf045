"""Run every ``benchmarks/bench_*.py`` and print one combined markdown table.

Each benchmark module exposes ``run() -> list[dict]`` (one dict per measured case; ``name``,
``target``/``target_ms`` and ``passed`` are understood, every other key is shown as a
figure). ``run(quick=True)`` is used with ``--quick`` where the module supports it. A module
that is missing, fails to import or raises is skipped with a note; the others still run.

Run: ``.venv/bin/python benchmarks/run_all.py [--quick] [--output FILE] [--only NAME]``.
Exit status: 0 when every targeted case passed and nothing failed to run, else 1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import inspect
import math
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
SRC_DIR = BENCH_DIR.parent / "src"
#: Run first, in this order, when present; any other bench_*.py follows alphabetically.
KNOWN = ["bench_parse", "bench_settings", "bench_live"]
#: Keys that are not figures.
META_KEYS = {"bench", "section", "name", "case", "target", "target_ms", "passed"}


def discover() -> list[str]:
    found = sorted(p.stem for p in BENCH_DIR.glob("bench_*.py"))
    return [n for n in KNOWN if n in found] + [n for n in found if n not in KNOWN]


def machine_info() -> dict[str, str]:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cores = str(os.cpu_count())
    if hasattr(os, "sched_getaffinity"):
        cores += f" ({len(os.sched_getaffinity(0))} usable by this process)"
    info = {
        "CPU": cpu,
        "cores": cores,
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "date (UTC)": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
    }
    try:
        import canaryconf

        info["canaryconf"] = f"{canaryconf.__version__} ({Path(canaryconf.__file__).parent})"
    except Exception as exc:  # reported, not fatal: each module reports its own failure
        info["canaryconf"] = f"not importable: {exc}"
    if hasattr(os, "getloadavg"):
        info["load average at start"] = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    return info


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if math.isinf(value):
            return "inf"
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        if abs(value) >= 0.0001:
            return f"{value:.4f}".rstrip("0")
        return f"{value:.2e}"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    return str(value)


def describe_target(row: dict[str, Any]) -> str:
    target = row.get("target")
    if isinstance(target, str):
        return target
    if isinstance(target, (int, float)) and not isinstance(target, bool):
        return f"ratio <= {target:g}" if "ratio" in row else f"<= {target:g}"
    target_ms = row.get("target_ms")
    if isinstance(target_ms, (int, float)):
        return f"< {target_ms:g} ms"
    return ""


def result_of(row: dict[str, Any]) -> str:
    passed = row.get("passed")
    return "" if passed is None else ("PASS" if passed else "**FAIL**")


def case_of(row: dict[str, Any]) -> str:
    name = str(row.get("name", row.get("case", "?"))).strip()
    section = row.get("section")
    return f"{section}: {name}" if section else name


def figures_of(row: dict[str, Any]) -> str:
    return ", ".join(f"{k}={fmt(v)}" for k, v in row.items() if k not in META_KEYS)


def md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def run_module(name: str, quick: bool, notes: list[str]) -> tuple[list[dict[str, Any]], bool]:
    """Import and run one module; (rows, ok). Problems become notes."""
    try:
        module = importlib.import_module(name)
    except Exception as exc:
        notes.append(f"`{name}`: skipped, import failed: {type(exc).__name__}: {exc}")
        return [], False
    run = getattr(module, "run", None)
    if not callable(run):
        notes.append(f"`{name}`: skipped, it has no run() function")
        return [], False
    params = inspect.signature(run).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs: dict[str, Any] = {}
    if "quick" in params or takes_any:
        kwargs["quick"] = quick
    elif quick:
        notes.append(f"`{name}`: run() has no quick mode; ran in full")
    if "progress" in params:
        kwargs["progress"] = lambda msg: print(f"[{name}] {msg}", file=sys.stderr, flush=True)
    print(f"[run_all] {name} ...", file=sys.stderr, flush=True)
    started = time.monotonic()
    try:
        rows = list(run(**kwargs))
    except Exception as exc:
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        notes.append(f"`{name}`: failed after {time.monotonic() - started:.1f} s: {last}")
        traceback.print_exc()
        return [], False
    notes.append(f"`{name}`: {len(rows)} rows in {time.monotonic() - started:.1f} s")
    return rows, True


def render(
    info: dict[str, str],
    results: list[tuple[str, list[dict[str, Any]]]],
    notes: list[str],
    quick: bool,
) -> str:
    lines = [f"# canaryconf benchmarks ({'quick' if quick else 'full'} run)", ""]
    lines += ["| machine | |", "|---|---|"]
    lines += [f"| {md(k)} | {md(v)} |" for k, v in info.items()]
    lines += ["", "| benchmark | case | figures | target | result |", "|---|---|---|---|---|"]
    passed = failed = 0
    for name, rows in results:
        bench = name.removeprefix("bench_")
        for row in rows:
            outcome = row.get("passed")
            passed += outcome is True
            failed += outcome is False
            lines.append(
                f"| {md(bench)} | {md(case_of(row))} | {md(figures_of(row))} "
                f"| {md(describe_target(row))} | {result_of(row)} |"
            )
    lines += ["", f"Targets: {passed} passed, {failed} failed.", "", "Notes:", ""]
    lines += [f"- {note}" for note in notes]
    lines.append(
        "- Timings are wall-clock on a shared machine; other work on it shows up as noise"
        " (see the load average). Re-run before trusting a single outlier."
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run every benchmarks/bench_*.py.")
    parser.add_argument("--quick", action="store_true", help="short runs where supported")
    parser.add_argument("--output", metavar="FILE", help="also write the markdown here")
    parser.add_argument(
        "--only", action="append", metavar="NAME", help="run only this module (repeatable)"
    )
    args = parser.parse_args(argv)

    for path in (str(BENCH_DIR), str(SRC_DIR)):
        if path not in sys.path:
            sys.path.insert(0 if path == str(BENCH_DIR) else len(sys.path), path)

    available = discover()
    names = available
    notes: list[str] = []
    if args.only:
        wanted = [n if n.startswith("bench_") else f"bench_{n}" for n in args.only]
        names = [n for n in wanted if n in available]
        missing = [n for n in wanted if n not in available]
    else:
        missing = [n for n in KNOWN if n not in available]
    for name in missing:
        notes.append(f"`{name}`: skipped, benchmarks/{name}.py does not exist")

    info = machine_info()
    results: list[tuple[str, list[dict[str, Any]]]] = []
    all_ran = True
    for name in names:
        rows, ok = run_module(name, args.quick, notes)
        all_ran &= ok
        results.append((name, rows))
    if hasattr(os, "getloadavg"):
        info["load average at end"] = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())

    text = render(info, results, notes, args.quick)
    print(text)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"[run_all] written to {args.output}", file=sys.stderr)
    failed = any(row.get("passed") is False for _n, rows in results for row in rows)
    return 0 if all_ran and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
