"""``canaryconf demo``: a canary release, and what the pods of each revision see.

A running pod never changes revision: a new revision means new pods. The demo therefore
plays two pods, each with its own podinfo volume written the way the kubelet writes it and
its own :class:`~canaryconf.demo_settings.ShopSettings` followed through
:func:`canaryconf.live`, with the handlers a service would register: a stable pod of
revision A, running from the start, and a canary pod of revision B, which appears when the
rollout starts. Edits of the ``canaryMetadata`` reach the canary pod only; a Secret
rotation reaches both. At promotion the canary pod's labels flip to stable in place (its
revision stays B) and the old stable pod is scaled down; at an abort the canary pod is
scaled down and the stable pod never saw a thing.
Columns: what the cluster does, then what each pod's application sees.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import shutil
import sys
import tempfile
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from canaryconf import signals
from canaryconf._cli.common import EXIT_FAILED, EXIT_OK, REDACTED, Redacted, display, retarget
from canaryconf._cli.simulate import HASH_A, HASH_B, POD_A, POD_B, Pod, scenario
from canaryconf._live import LiveSettings, live
from canaryconf.change import Change, ReloadResult
from canaryconf.demo_settings import ShopSettings
from canaryconf.testing import KubeletWriter

__all__ = ["cmd_demo"]

REACTION_TIMEOUT = 5.0


class Columns:
    """Prints events in columns (the rollout, then one per pod) with the time since the
    start; one column with a tag when the terminal is too narrow."""

    def __init__(
        self, out: TextIO, hide: str, titles: list[tuple[str, str]], width: int | None = None
    ) -> None:
        self.out = out
        self.hide = hide
        self.titles = titles  # (tag, heading) per column
        self.width = width or max(60, min(shutil.get_terminal_size((110, 24)).columns, 180))
        count = len(titles)
        self.split = (self.width - 8) // count >= 30
        if self.split:
            self.col_width = (self.width - 8 - 3 * (count - 1)) // count
        else:
            self.col_width = self.width - 18
        self.started = time.monotonic()

    def _stamp(self) -> str:
        return f"{time.monotonic() - self.started:5.1f}s"

    def _wrap(self, text: str, width: int) -> list[str]:
        text = text.replace(self.hide, "<demo>")
        lines = textwrap.wrap(
            text, width, subsequent_indent="    ", break_long_words=True, break_on_hyphens=False
        )
        return lines or [""]

    def heading(self) -> None:
        if self.split:
            cells = [title[: self.col_width].ljust(self.col_width) for _, title in self.titles]
            print(f"{'time':>6}  " + " | ".join(cells).rstrip(), file=self.out)
            print("-" * 8 + "-+-".join("-" * self.col_width for _ in cells), file=self.out)
        self.out.flush()

    def show(self, column: int, *texts: str) -> None:
        stamp = self._stamp()
        first = True
        for text in texts:
            for line in self._wrap(text, self.col_width):
                time_col = stamp if first else ""
                first = False
                if not self.split:
                    tag = self.titles[column][0]
                    print(f"{time_col:>6}  {tag:<8}{line}", file=self.out)
                    continue
                cells = [" " * self.col_width] * len(self.titles)
                cells[column] = line.ljust(self.col_width)
                print(f"{time_col:>6}  " + " | ".join(cells).rstrip(), file=self.out)
        self.out.flush()

    def rollout(self, *texts: str) -> None:
        self.show(0, *texts)


def _brief(snapshot: ShopSettings) -> list[str]:
    rollout = snapshot.rollout
    return [
        f"  rollout: role={rollout.role or '-'}, hash={rollout.pod_template_hash or '-'}",
        f"  db_url: {snapshot.db_url}",
        f"  flags: new_checkout={snapshot.new_checkout}, express_pay={snapshot.flags.express_pay}",
        f"  workers: {snapshot.workers}, db_password: {REDACTED}",
    ]


def _changes(change: Change[Any]) -> list[str]:
    lines = []
    for name, (before, after) in change.diff().items():
        if isinstance(before, Redacted):
            lines.append(f"  {name}: changed (secret, value hidden)")
        elif isinstance(before, dict) and isinstance(after, dict):
            for key in sorted(set(before) | set(after)):
                if before.get(key) != after.get(key):
                    lines.append(
                        f"  {name}.{key}: {display(before.get(key))} -> {display(after.get(key))}"
                    )
        else:
            lines.append(f"  {name}: {display(before)} -> {display(after)}")
    return lines


class DemoApp:
    """The service side: live settings with the handlers a real service registers."""

    def __init__(self, settings: LiveSettings[ShopSettings], show: Callable[..., None]) -> None:
        self.settings = settings
        self.show = show
        self.seen: Counter[str] = Counter()
        self.reacted = asyncio.Event()
        self.digest_before = settings.digest
        self.last: ReloadResult[Any] | None = None

        @settings.on_change
        def log_change(change: Change[ShopSettings]) -> None:
            self.seen["applied"] += 1
            show("change applied:", *_changes(change))

        @settings.on_change("db_url")
        def rebuild_pool(change: Change[ShopSettings]) -> None:
            self.seen["hook"] += 1
            show(f"hook rebuild_pool(): new connections go to {change.new.db_url}")

        @settings.on_change("flags")
        def toggle_features(change: Change[ShopSettings]) -> None:
            self.seen["hook"] += 1
            mode = "new" if change.new.new_checkout else "old"
            express = change.new.flags.express_pay
            show(f"hook toggle_features(): checkout={mode}, express_pay={express}")

        @settings.on_change("db_password")
        def rotate_credentials(change: Change[ShopSettings]) -> None:
            self.seen["hook"] += 1
            show("hook rotate_credentials(): reconnecting with the new password")

        @settings.on_reload_failed
        def rejected(error: Exception) -> None:
            self.seen["rejected"] += 1
            problems = getattr(error, "problems", None)
            lines = [str(p) for p in problems] if problems else [str(error)]
            show(
                "REJECTED the new version; the last good settings stay:",
                *(f"  {line}" for line in lines),
                f"  still serving: new_checkout={settings.new_checkout}",
            )

        @settings.on_restart_required
        def needs_restart(fields: frozenset[str]) -> None:
            self.seen["restart"] += 1
            show(
                f"restart required for {', '.join(sorted(fields))}: new value not applied"
                f" live (workers stays {settings.workers})"
            )

        @settings.on_promoted
        def promoted(change: Change[ShopSettings]) -> None:
            self.seen["promoted"] += 1
            revision = change.new.rollout.pod_template_hash
            show(f"PROMOTED: this pod is now stable (revision {revision})")

        def on_reloaded(sender: Any, result: ReloadResult[Any], **_: Any) -> None:
            self.last = result
            if result.failed or result.digest != self.digest_before:
                self.reacted.set()

        self._on_reloaded = on_reloaded
        signals.reloaded.connect(on_reloaded, sender=settings, weak=False)

    def expect_reaction(self) -> None:
        self.digest_before = self.settings.digest
        self.reacted.clear()

    async def wait_reaction(self) -> bool:
        """Wait for the watcher to deliver the change; reload by hand if it is late."""
        try:
            await asyncio.wait_for(self.reacted.wait(), REACTION_TIMEOUT)
            return True
        except asyncio.TimeoutError:
            self.show("(watcher late: reloading by hand)")
            await self.settings.areload()
            return False

    def close(self) -> None:
        signals.reloaded.disconnect(self._on_reloaded, sender=self.settings)


@dataclass(frozen=True)
class DemoStep:
    """One step of the release as the pods see it: what the canary pod's volume and the
    Secret become, which pods start or end, and what each pod's application should do."""

    name: str
    title: str
    notes: tuple[str, ...] = ()
    canary: Pod | None = None
    secrets: Mapping[str, str] | None = None
    ends: str | None = None  # "stable" or "canary": that pod is scaled down
    expect: Mapping[str, str] = field(default_factory=dict)


def demo_scenario(*, abort: bool = False) -> tuple[Pod, dict[str, str], list[DemoStep]]:
    """The stable pod, the first Secret, and the steps: the release of
    :func:`~canaryconf._cli.simulate.scenario`, pod by pod."""
    steps = {step.name: step for step in scenario(abort=abort)}
    stable_pod = steps["stable"].pod
    assert stable_pod is not None
    played = [
        DemoStep(
            "canary",
            steps["canary"].title,
            steps["canary"].notes,
            canary=steps["canary"].pod,
            expect={"canary": "started", "stable": "none"},
        ),
        DemoStep(
            "invalid",
            steps["invalid"].title,
            (*steps["invalid"].notes, "(canary pods only)"),
            canary=steps["invalid"].pod,
            expect={"canary": "rejected", "stable": "none"},
        ),
        DemoStep(
            "fixed",
            steps["fixed"].title,
            steps["fixed"].notes,
            canary=steps["fixed"].pod,
            expect={"canary": "applied", "stable": "none"},
        ),
        DemoStep("weight-50", steps["weight-50"].title, steps["weight-50"].notes),
        DemoStep(
            "secret",
            steps["secret"].title,
            ("db-password replaced: the kubelet updates the Secret volume of every pod",),
            secrets=steps["secret"].secrets,
            expect={"canary": "applied", "stable": "applied"},
        ),
        DemoStep(
            "workers",
            steps["workers"].title,
            (*steps["workers"].notes, "(canary pods only)"),
            canary=steps["workers"].pod,
            expect={"canary": "restart", "stable": "none"},
        ),
        DemoStep("weight-80", steps["weight-80"].title, steps["weight-80"].notes),
    ]
    if abort:
        played.append(
            DemoStep(
                "abort",
                "rollout aborted: the canary pods are scaled down",
                ("traffic back to revision A, whose pods never changed",),
                ends="canary",
                expect={"stable": "none"},
            )
        )
    else:
        promote = steps["promote"]
        played += [
            DemoStep(
                "promote",
                promote.title,
                promote.notes,
                canary=promote.pod,
                expect={"canary": "promoted", "stable": "none"},
            ),
            DemoStep(
                "scale-down",
                "revision A's pods are scaled down",
                ("revision B serves all traffic",),
                ends="stable",
                expect={"canary": "none"},
            ),
        ]
    first_secrets = dict(steps["stable"].secrets or {})
    return stable_pod, first_secrets, played


def _check(expect: str, before: Counter[str], after: Counter[str]) -> str | None:
    """Why a pod's reaction is not ``expect``, or None."""
    delta = after - before
    if expect == "none":
        return None if not delta else f"unexpected reaction {dict(delta)}"
    if not delta[expect]:
        return f"expected {expect}, saw {dict(delta) or 'nothing'}"
    return None


class DemoPod:
    """One pod: its own podinfo volume and its own live settings, shown in one column."""

    def __init__(self, role: str, pod: Pod, root: Path, secrets: Path, columns: Columns):
        self.role = role
        self.column = 1 if role == "stable" else 2
        self.columns = columns
        self.podinfo = root / f"podinfo-{pod.name}"
        self.writer = KubeletWriter(self.podinfo, seed=7 if role == "stable" else 8)
        self.writer.write(pod.files())
        target = retarget(
            ShopSettings, downward=str(self.podinfo), dirs={"secrets_dirs": [str(secrets)]}
        )
        self.settings = live(target)
        self.app = DemoApp(self.settings, self.say)
        self.stack = contextlib.AsyncExitStack()
        self.running = False

    def say(self, *texts: str) -> None:
        self.columns.show(self.column, *texts)

    async def start(self, name: str) -> None:
        snapshot = self.settings.current
        assert isinstance(snapshot, ShopSettings)
        self.say(f"pod {name} starts; loaded ShopSettings:", *_brief(snapshot))
        await self.stack.enter_async_context(self.settings.watching())
        self.running = True

    async def stop(self, *, scaled_down: bool = True) -> None:
        if self.running:
            self.running = False
            await self.stack.aclose()
            self.app.close()
            if scaled_down:
                self.say("pod terminated (scaled down)")


async def _play(step_seconds: float, abort: bool, out: TextIO) -> int:
    with tempfile.TemporaryDirectory(prefix="canaryconf-demo-") as tmp:
        root = Path(tmp)
        secrets = root / "secrets"
        stable_pod, first_secrets, steps = demo_scenario(abort=abort)
        print(
            "canaryconf demo: an Argo Rollouts canary release played against local volumes",
            file=out,
        )
        print(
            f"  <demo> = {tmp}: each pod's podinfo (downwardAPI) volume, and the Secret;"
            f" a step every {step_seconds:g}s\n",
            file=out,
        )
        columns = Columns(
            out,
            tmp,
            [
                ("rollout", "ROLLOUT (what the cluster does)"),
                ("stable", f"STABLE POD (revision {HASH_A})"),
                ("canary", f"CANARY POD (revision {HASH_B})"),
            ],
        )
        columns.heading()
        KubeletWriter(secrets, seed=9).write(first_secrets)
        columns.rollout("revision A is stable", f"pod {POD_A}: role=stable, hash={HASH_A}")
        pods = {"stable": DemoPod("stable", stable_pod, root, secrets, columns)}
        await pods["stable"].start(POD_A)
        surprises: list[str] = []
        try:
            for step in steps:
                await asyncio.sleep(step_seconds)
                columns.rollout(step.title, *(f"  {n}" for n in step.notes))
                before = {role: Counter(pod.app.seen) for role, pod in pods.items()}
                for pod in pods.values():
                    pod.app.expect_reaction()
                if step.secrets is not None:
                    KubeletWriter(secrets, seed=10).write(dict(step.secrets))
                if step.canary is not None and "canary" not in pods:
                    pods["canary"] = DemoPod("canary", step.canary, root, secrets, columns)
                    await pods["canary"].start(POD_B)
                    pods["canary"].app.seen["started"] += 1
                elif step.canary is not None:
                    pods["canary"].writer.write(step.canary.files())
                if step.ends is not None:
                    await pods[step.ends].stop()
                waits = [
                    pods[role].app.wait_reaction()
                    for role, expect in step.expect.items()
                    if expect not in ("none", "started") and pods[role].running
                ]
                await asyncio.gather(*waits)
                if not waits:
                    await asyncio.sleep(min(step_seconds, 0.2))
                for role, expect in step.expect.items():
                    if role in pods:
                        problem = _check(expect, before.get(role, Counter()), pods[role].app.seen)
                        if problem is not None:
                            surprises.append(f"{step.name} ({role} pod): {problem}")
            for pod in pods.values():
                if pod.running:
                    final = pod.settings.current
                    assert isinstance(final, ShopSettings)
                    pod.say("final settings:", *_brief(final))
        finally:
            for pod in pods.values():
                await pod.stop(scaled_down=False)  # the demo ends, the pod would not
        seen: Counter[str] = Counter()
        for pod in pods.values():
            seen.update(pod.app.seen)
        verdict = "all as expected" if not surprises else "UNEXPECTED: " + "; ".join(surprises)
        outcome = (
            "aborted: the canary pod ended, the stable pod never changed"
            if abort
            else "promoted: the canary pod became stable in place, revision A's pod ended"
        )
        print(
            f"\ndemo finished in {time.monotonic() - columns.started:.1f}s: {len(steps) + 1}"
            f" steps, {seen['applied']} changes applied, {seen['rejected']} version rejected"
            f" (last good kept), {seen['restart']} restart required, {seen['hook']} hook calls,"
            f" {outcome}; {verdict}",
            file=out,
            flush=True,
        )
        return EXIT_FAILED if surprises else EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    step_seconds = args.step_seconds
    if step_seconds is None:
        step_seconds = 0.25 if args.fast else 2.0
    # The app column already tells what canaryconf's warnings say; keep errors only.
    core_logger = logging.getLogger("canaryconf")
    errors_only = logging.StreamHandler(sys.stderr)
    errors_only.setLevel(logging.ERROR)
    core_logger.addHandler(errors_only)
    try:
        return asyncio.run(_play(step_seconds, args.abort, sys.stdout))
    finally:
        core_logger.removeHandler(errors_only)
