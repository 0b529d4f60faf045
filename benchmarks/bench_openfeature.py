"""Benchmark flag evaluation through ``canaryconf.openfeature.CanaryConfProvider``.

1. **boolean flag** - ``client.get_boolean_value(key, False)`` through the OpenFeature SDK
   client, with the provider serving a typed ``bool`` field, with the provider serving a
   static flagd boolean flag, and with the SDK's own ``InMemoryProvider`` serving a static
   boolean flag; all in one run, each provider bound to a domain of its own. Target: the
   provider <= 1.5 x ``InMemoryProvider`` (typed field and flagd flag alike).
2. **fractional flag** - a flagd ``fractional`` 50/50 split on the targeting key, evaluated
   for a rotating set of 1,000 users: through the SDK client and the provider, through the
   provider alone (``resolve_string_details``), and by ``FlagdCore`` alone on the same
   document. No target: the figures say what the provider adds to the evaluator.

Each figure is the best of several interleaved rounds (every subject timed in turn, so a
burst of load elsewhere hits all alike) of ``timeit`` with 200 evaluations per timing.
The settings come from a volume written by ``canaryconf.testing.KubeletWriter``.

Run: ``python benchmarks/bench_openfeature.py [--quick]``; ``run(quick=...)`` returns the rows.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import timeit
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
if find_spec("canaryconf") is None:  # running from a checkout without installing
    sys.path.insert(0, str(BENCH_DIR.parent / "src"))

BOOLEAN_RATIO_TARGET = 1.5
EVALUATIONS = 200  # per timing
USERS = [f"user-{n}" for n in range(1000)]
SPLIT = {
    "state": "ENABLED",
    "variants": {"new": "new", "classic": "classic"},
    "defaultVariant": "classic",
    "targeting": {"fractional": [["new", 50], ["classic", 50]]},
}
STATIC = {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"}


def _best_ns(subjects: dict[str, Callable[[], Any]], rounds: int, timings: int) -> dict[str, float]:
    """ns per call of each subject: best over ``rounds`` interleaved rounds, each the best
    of ``timings`` timings of EVALUATIONS calls."""
    best = dict.fromkeys(subjects, float("inf"))
    names = list(subjects)
    for round_ in range(rounds):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in order:
            timer = timeit.Timer(subjects[name])
            seconds = min(timer.repeat(repeat=timings, number=EVALUATIONS))
            best[name] = min(best[name], seconds / EVALUATIONS * 1e9)
    return best


def run(quick: bool = False) -> list[dict[str, Any]]:
    from openfeature import api
    from openfeature.contrib.tools.flagd.core import FlagdCore
    from openfeature.evaluation_context import EvaluationContext
    from openfeature.provider.in_memory_provider import InMemoryFlag, InMemoryProvider

    from canaryconf import CanaryConfigDict, CanarySettings, annotation, live
    from canaryconf.openfeature import CanaryConfProvider, FlagdDefinitions
    from canaryconf.testing import KubeletWriter, pod_files

    rounds, timings = (3, 5) if quick else (7, 10)
    document = {"flags": {"static-on": STATIC, "split": SPLIT}}
    with tempfile.TemporaryDirectory(prefix="canaryconf-bench-") as tmp:
        KubeletWriter(tmp).write(
            pod_files(
                labels={"role": "canary", "rollouts-pod-template-hash": "7f9c4d2e1"},
                annotations={"new-checkout": "true", "flags": json.dumps(document)},
            )
        )

        class Settings(CanarySettings):
            model_config = CanaryConfigDict(downward_api_dir=tmp)
            new_checkout: bool = annotation("new-checkout", default=False)
            flags: FlagdDefinitions = annotation("flags")

        settings = live(Settings)
        provider = CanaryConfProvider(settings)
        in_memory = InMemoryProvider(
            {"new-checkout": InMemoryFlag("on", {"on": True, "off": False})}
        )
        api.shutdown()
        try:
            api.set_provider_and_wait(provider, domain="canaryconf")
            api.set_provider_and_wait(in_memory, domain="in-memory")
            ours, theirs = api.get_client("canaryconf"), api.get_client("in-memory")
            assert ours.get_boolean_value("new-checkout", False) is True
            assert ours.get_boolean_value("static-on", False) is True
            assert theirs.get_boolean_value("new-checkout", False) is True

            boolean = _best_ns(
                {
                    "in-memory": lambda: theirs.get_boolean_value("new-checkout", False),
                    "typed": lambda: ours.get_boolean_value("new-checkout", False),
                    "flagd": lambda: ours.get_boolean_value("static-on", False),
                },
                rounds,
                timings,
            )

            core = FlagdCore()
            core.set_flags(document)
            contexts = [EvaluationContext(user) for user in USERS]
            position = [0]

            def next_context() -> EvaluationContext:
                position[0] = (position[0] + 1) % len(contexts)
                return contexts[position[0]]

            fractional = _best_ns(
                {
                    "core": lambda: core.resolve_string_value("split", "x", next_context()),
                    "provider": lambda: provider.resolve_string_details(
                        "split", "x", next_context()
                    ),
                    "client": lambda: ours.get_string_value("split", "x", next_context()),
                },
                rounds,
                timings,
            )
        finally:
            api.shutdown()

    rows: list[dict[str, Any]] = []
    base = boolean["in-memory"]
    rows.append({"name": "boolean flag: InMemoryProvider (SDK)", "ns/eval": base, "ratio": 1.0})
    for key, label in (("typed", "typed bool field"), ("flagd", "static flagd flag")):
        ratio = boolean[key] / base
        rows.append(
            {
                "name": f"boolean flag: CanaryConfProvider, {label}",
                "ns/eval": boolean[key],
                "ratio": ratio,
                "target": BOOLEAN_RATIO_TARGET,
                "passed": ratio <= BOOLEAN_RATIO_TARGET,
            }
        )
    core_ns = fractional["core"]
    rows.append({"name": "fractional flag: FlagdCore alone", "ns/eval": core_ns, "ratio": 1.0})
    for key, label in (("provider", "provider alone"), ("client", "SDK client + provider")):
        rows.append(
            {
                "name": f"fractional flag: {label}",
                "ns/eval": fractional[key],
                "ratio": fractional[key] / core_ns,
            }
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    args = parser.parse_args()
    rows = run(quick=args.quick)
    print("| case | ns per evaluation | ratio | target | result |")
    print("|---|---|---|---|---|")
    for row in rows:
        target = f"<= {row['target']}" if "target" in row else ""
        result = "" if "passed" not in row else ("PASS" if row["passed"] else "FAIL")
        print(
            f"| {row['name']} | {row['ns/eval']:,.0f} | {row['ratio']:.2f} | {target} | {result} |"
        )
    return 0 if all(row.get("passed", True) for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
