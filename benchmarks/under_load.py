"""Run a command again and again while other processes keep every core busy.

CI runs on a busy shared machine, so a test that passes only on a quiet one is a defect.
This starts ``--busy`` CPU-bound processes (default: one per core), runs the command
``--runs`` times in a row (default 5), stops the busy processes and prints one line per
run and a summary. It exits 1 if any run failed.

    python benchmarks/under_load.py --runs 5 -- .venv/bin/python -m pytest -q
    python benchmarks/under_load.py --runs 50 -- .venv/bin/python -m pytest -q \\
        tests/test_stress.py::test_fork_while_swapping

Each run is bounded by ``--timeout`` seconds (default 1,800); the busy processes are
stopped whatever happens.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

BUSY = "while True: pass"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=5, help="how many runs (default 5)")
    parser.add_argument(
        "--busy", type=int, default=os.cpu_count() or 2, help="busy processes (default: cores)"
    )
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per run")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    busy = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(args.busy)]
    failures = 0
    try:
        for run in range(1, args.runs + 1):
            started = time.monotonic()
            output, note = "", ""
            try:
                done = subprocess.run(
                    command,
                    check=False,
                    timeout=args.timeout,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
                code, output = done.returncode, done.stdout
            except subprocess.TimeoutExpired as exc:
                code, note = -1, f" (timed out after {exc.timeout:.0f} s)"
            elapsed = time.monotonic() - started
            failures += code != 0
            print(f"run {run}/{args.runs}: exit {code} in {elapsed:.1f} s{note}", flush=True)
            if code != 0 and output:
                # The whole output is kept: a failure's traceback is often far from the end.
                with tempfile.NamedTemporaryFile(
                    "w", prefix=f"under-load-run{run}-", suffix=".log", delete=False
                ) as log:
                    log.write(output)
                print("\n".join(output.splitlines()[-60:]), flush=True)
                print(f"whole output of run {run}: {log.name}", flush=True)
    finally:
        for proc in busy:
            proc.kill()
            proc.wait(timeout=10)
    print(f"{args.runs - failures} passed, {failures} failed (with {args.busy} busy processes)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
