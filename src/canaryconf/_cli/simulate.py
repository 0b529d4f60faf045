"""``canaryconf simulate``: play an Argo Rollouts canary release against local volumes.

What a pod's podinfo volume goes through, written the way the kubelet writes it
(:class:`~canaryconf.testing.KubeletWriter`): revision A stable; revision B's canary pod
with the ``canaryMetadata`` labels and annotations; the weight steps (traffic only: a
pod's metadata does not change with them); a hand edit of the canary metadata that does
not validate, then its fix; a Secret rotation; an edit that only a restart can apply;
then the promotion, where the controller rewrites the labels and annotations in place
(role ``canary`` -> ``stable``, ``rollouts-pod-template-hash`` B stays), or, with
``--abort``, the abort (what the remaining stable pods of revision A carry).

One directory stands for what a pod sees; in a cluster a process only ever sees its own
pod, so the switch from pod A to pod B is the one liberty this simulation takes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from canaryconf._cli.common import EXIT_OK, REDACTED, map_diff
from canaryconf._cli.options import COUNT, DIR, SECONDS, non_negative_float
from canaryconf.rollout import POD_TEMPLATE_HASH_LABEL
from canaryconf.testing import KubeletWriter, pod_files

__all__ = ["HASH_A", "HASH_B", "SimulateArgs", "Step", "add_arguments", "parse", "run", "scenario"]

PREFIX = "canary.example.com/"
HASH_A = "6d8f7c9b5"
HASH_B = "7f9c4d2e1"
POD_A = f"shop-{HASH_A}-x7k2p"
POD_B = f"shop-{HASH_B}-q4w8z"
CANARY_DB = "postgres://canary-db:5432/shop"

Expect = Literal["initial", "applied", "rejected", "restart", "promoted", "none"]


@dataclass(frozen=True)
class Pod:
    """The metadata of the pod whose podinfo volume the simulation writes."""

    name: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]

    def files(self) -> dict[str, str | bytes]:
        return pod_files(
            labels=self.labels,
            annotations=self.annotations,
            name=self.name,
            namespace="shop",
            resources={"limits.cpu": 500},
        )


@dataclass(frozen=True)
class Step:
    """One step of the release: what happens, and what it writes (None: nothing)."""

    name: str
    title: str
    notes: tuple[str, ...] = ()
    pod: Pod | None = None
    secrets: Mapping[str, str] | None = None
    weight: int | None = None
    expect: Expect = "applied"


def _flags(**flags: bool) -> str:
    return json.dumps(flags, separators=(", ", ": "))


def scenario(*, abort: bool = False) -> list[Step]:
    """The steps of the release, the first one being the state before it starts."""
    stable_a = Pod(
        POD_A,
        {"app": "shop", "role": "stable", POD_TEMPLATE_HASH_LABEL: HASH_A},
        {f"{PREFIX}flags": _flags(new_checkout=False)},
    )
    template_b = {f"{PREFIX}flags": _flags(new_checkout=True)}
    canary_meta = {f"{PREFIX}db-url": CANARY_DB}
    canary_labels = {"app": "shop", "role": "canary", POD_TEMPLATE_HASH_LABEL: HASH_B}
    canary_b = Pod(POD_B, canary_labels, {**template_b, **canary_meta})
    broken = Pod(
        POD_B, canary_labels, {**canary_b.annotations, f"{PREFIX}flags": '{"new_checkout": true,}'}
    )
    fixed_flags = {f"{PREFIX}flags": _flags(new_checkout=True, express_pay=True)}
    fixed = Pod(POD_B, canary_labels, {**canary_b.annotations, **fixed_flags})
    more_workers = Pod(POD_B, canary_labels, {**fixed.annotations, f"{PREFIX}workers": "8"})
    steps = [
        Step(
            "stable",
            "revision A is stable",
            (f"pod {POD_A}", f"labels role=stable, hash={HASH_A}"),
            pod=stable_a,
            secrets={"db-password": "demo-password-1"},
            expect="initial",
        ),
        Step(
            "canary",
            "revision B rolls out: its canary pod starts",
            (
                f"pod {POD_B}",
                f"canaryMetadata: role=canary, {PREFIX}db-url",
                f"labels hash={HASH_B}; template flags new_checkout=true",
                "setWeight: 20 (20% of traffic to the canary)",
            ),
            pod=canary_b,
            weight=20,
        ),
        Step(
            "invalid",
            "canaryMetadata edited: invalid flags",
            ('flags = {"new_checkout": true,}  (trailing comma)',),
            pod=broken,
            expect="rejected",
        ),
        Step(
            "fixed",
            "canaryMetadata fixed",
            ("flags new_checkout=true, express_pay=true",),
            pod=fixed,
        ),
        Step(
            "weight-50",
            "setWeight: 50",
            ("traffic only: the pods' metadata does not change",),
            weight=50,
            expect="none",
        ),
        Step(
            "secret",
            "Secret shop-db rotated",
            ("db-password replaced (kubelet updates the Secret volume)",),
            secrets={"db-password": "demo-password-2"},
        ),
        Step(
            "workers",
            "canaryMetadata edited: workers=8",
            ("a setting the app only reads at start",),
            pod=more_workers,
            expect="restart",
        ),
        Step(
            "weight-80",
            "setWeight: 80",
            ("traffic only: the pods' metadata does not change",),
            weight=80,
            expect="none",
        ),
    ]
    if abort:
        steps.append(
            Step(
                "abort",
                "rollout aborted: canary pods scaled down",
                (
                    "traffic back to revision A; what its pods carry:",
                    f"pod {POD_A}, role=stable, hash={HASH_A}",
                ),
                pod=stable_a,
                weight=0,
            )
        )
    else:
        promoted = Pod(
            POD_B,
            {"app": "shop", "role": "stable", POD_TEMPLATE_HASH_LABEL: HASH_B},
            {**template_b, **fixed_flags},
        )
        steps.append(
            Step(
                "promote",
                "promoted: revision B becomes stable",
                (
                    "stableMetadata applied in place, no restart:",
                    f"role canary -> stable, hash {HASH_B} stays,",
                    "canary-only annotations removed",
                ),
                pod=promoted,
                weight=100,
                expect="promoted",
            )
        )
    return steps


@dataclass
class Player:
    """Writes the steps into a podinfo directory (and a Secret directory, when given)."""

    podinfo: str
    secrets_dir: str | None = None
    seed: int | None = None
    current: Pod | None = None
    current_secrets: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._podinfo = KubeletWriter(self.podinfo, seed=self.seed)
        self._secrets = (
            KubeletWriter(self.secrets_dir, seed=None if self.seed is None else self.seed + 1)
            if self.secrets_dir
            else None
        )

    def play(self, step: Step) -> list[str]:
        """Write ``step``; returns lines describing what changed on disk."""
        lines: list[str] = []
        if step.pod is not None:
            old = self.current
            if self._podinfo.write(step.pod.files()):
                lines.append(f"wrote podinfo generation {self._podinfo.generation}")
                if old is not None:
                    for title, before, after in (
                        ("label", old.labels, step.pod.labels),
                        ("annotation", old.annotations, step.pod.annotations),
                    ):
                        lines.extend(
                            f"  {line[:2]}{title} {line[2:]}"
                            for line in map_diff(before, after, lambda k, v: v)
                        )
            self.current = step.pod
        if step.secrets is not None:
            if self._secrets is None:
                lines.append("(no --secrets-dir: Secret step skipped)")
            elif self._secrets.write(dict(step.secrets)):
                lines.append(f"wrote secret generation {self._secrets.generation}")
                lines.extend(
                    f"  {line}"
                    for line in map_diff(self.current_secrets, step.secrets, lambda k, v: REDACTED)
                )
                self.current_secrets = dict(step.secrets)
        return lines


NAME = "simulate"
SUMMARY = "play an Argo Rollouts canary release against a local directory"
DESCRIPTION = (
    "Write, the way the kubelet does, what a pod's podinfo volume goes through in a"
    " canary release: revision A stable; revision B's canary pod (role=canary, a new"
    " rollouts-pod-template-hash, canary annotations); setWeight 20/50/80; an invalid"
    " edit of the canary metadata and its fix; a Secret rotation (--secrets-dir); an"
    " edit that needs a restart; then the promotion in place (role -> stable, hash"
    " stays) or, with --abort, the abort. Point an application or 'canaryconf watch' at"
    " DIR to see it follow."
)


@dataclass(frozen=True)
class SimulateArgs:
    dir: str
    secrets_dir: str | None = None
    abort: bool = False
    step_seconds: float = 2.0
    seed: int | None = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", metavar=DIR, help="the podinfo directory to write")
    parser.add_argument("--secrets-dir", metavar=DIR, help="a Secret directory to write")
    parser.add_argument("--abort", action="store_true", help="abort instead of promoting")
    parser.add_argument(
        "--step-seconds",
        metavar=SECONDS,
        type=non_negative_float,
        default=2.0,
        help="seconds between steps (default 2)",
    )
    parser.add_argument("--seed", metavar=COUNT, type=int, help="seed of the generation names")


def parse(ns: argparse.Namespace) -> SimulateArgs:
    return SimulateArgs(
        dir=ns.dir,
        secrets_dir=ns.secrets_dir,
        abort=ns.abort,
        step_seconds=ns.step_seconds,
        seed=ns.seed,
    )


def run(args: SimulateArgs) -> int:
    out = sys.stdout
    steps = scenario(abort=args.abort)
    player = Player(os.path.abspath(args.dir), args.secrets_dir, seed=args.seed)
    started = time.monotonic()

    def say(text: str, *, stamp: bool = False) -> None:
        prefix = f"[{time.monotonic() - started:5.1f}s] " if stamp else " " * 9
        print(prefix + text, file=out, flush=True)

    say(f"simulating an Argo Rollouts canary release in {args.dir}", stamp=True)
    if args.secrets_dir:
        say(f"Secret volume: {args.secrets_dir}")
    for number, step in enumerate(steps, start=1):
        if number > 1:
            time.sleep(max(0.0, args.step_seconds))
        say(f"step {number}/{len(steps)} {step.name}: {step.title}", stamp=True)
        for note in step.notes:
            say(f"  {note}")
        for line in player.play(step):
            say(f"  {line}")
    say("done", stamp=True)
    return EXIT_OK
