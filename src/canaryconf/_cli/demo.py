"""``canaryconf demo``: a canary release and a live settings object, side by side.

The simulation of :mod:`canaryconf._cli.simulate` writes a podinfo and a Secret volume in
a temporary directory; in the same event loop, :class:`~canaryconf.demo_settings.ShopSettings`
follows them through :func:`canaryconf.live`, with the handlers a service would register.
Left column: what the cluster does; right column: what the application sees.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import sys
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

from canaryconf import signals
from canaryconf._cli.common import EXIT_FAILED, EXIT_OK, REDACTED, display, retarget
from canaryconf._cli.simulate import Player, Step, scenario
from canaryconf._live import LiveSettings, live
from canaryconf.change import Change, ReloadResult
from canaryconf.demo_settings import ShopSettings

__all__ = ["cmd_demo"]

REACTION_TIMEOUT = 5.0


class Columns:
    """Prints events in two columns (rollout | app) with the time since the start; one
    column with a tag when the terminal is too narrow."""

    def __init__(self, out: TextIO, hide: str, width: int | None = None) -> None:
        self.out = out
        self.hide = hide
        self.width = width or max(60, min(shutil.get_terminal_size((110, 24)).columns, 150))
        self.split = self.width >= 90
        self.left_width = (self.width - 10) // 2 if self.split else self.width - 18
        self.right_width = self.width - 10 - self.left_width - 2
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
            left = "ROLLOUT (what the kubelet writes)".ljust(self.left_width)
            print(f"{'time':>6}  {left} | APP (ShopSettings via canaryconf.live)", file=self.out)
            print("-" * 8 + "-" * self.left_width + "-+-" + "-" * self.right_width, file=self.out)
        self.out.flush()

    def rollout(self, *texts: str) -> None:
        self._emit(texts, left=True)

    def app(self, *texts: str) -> None:
        self._emit(texts, left=False)

    def _emit(self, texts: tuple[str, ...], *, left: bool) -> None:
        stamp = self._stamp()
        first = True
        for text in texts:
            width = self.left_width if left or not self.split else self.right_width
            for line in self._wrap(text, width):
                time_col = stamp if first else ""
                first = False
                if not self.split:
                    tag = "rollout" if left else "app"
                    print(f"{time_col:>6}  {tag:<8}{line}", file=self.out)
                elif left:
                    print(f"{time_col:>6}  {line.ljust(self.left_width)} |", file=self.out)
                else:
                    print(f"{time_col:>6}  {' ' * self.left_width} | {line}", file=self.out)
        self.out.flush()


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
        if before == REDACTED:
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

    def __init__(self, settings: LiveSettings[ShopSettings], columns: Columns) -> None:
        self.settings = settings
        self.columns = columns
        self.seen: Counter[str] = Counter()
        self.reacted = asyncio.Event()
        self.digest_before = settings.digest
        self.last: ReloadResult[Any] | None = None
        show = columns.app

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

        @settings.on_role_changed
        def role_changed(change: Change[ShopSettings]) -> None:
            # canaryconf sends `promoted` only when the same revision becomes stable; here
            # the stable revision came back instead.
            old, new = change.old.rollout, change.new.rollout
            if old.is_canary and new.is_stable and old.pod_template_hash != new.pod_template_hash:
                show("role canary -> stable with another revision: the canary was aborted")

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
            self.columns.app("(watcher late: reloading by hand)")
            await self.settings.areload()
            return False

    def close(self) -> None:
        signals.reloaded.disconnect(self._on_reloaded, sender=self.settings)


def _check(step: Step, before: Counter[str], after: Counter[str]) -> str | None:
    """Why the app's reaction to ``step`` is not the expected one, or None."""
    delta = after - before
    wanted = {
        "applied": "applied",
        "rejected": "rejected",
        "restart": "restart",
        "promoted": "promoted",
    }.get(step.expect)
    if step.expect == "none":
        return None if not delta else f"unexpected reaction {dict(delta)}"
    if wanted is not None and not delta[wanted]:
        return f"expected {step.expect}, saw {dict(delta) or 'nothing'}"
    return None


async def _play(step_seconds: float, abort: bool, out: TextIO) -> int:
    with tempfile.TemporaryDirectory(prefix="canaryconf-demo-") as tmp:
        root = Path(tmp)
        podinfo, secrets = root / "podinfo", root / "secrets"
        player = Player(str(podinfo), str(secrets), seed=7)
        steps = scenario(abort=abort)
        print(
            "canaryconf demo: an Argo Rollouts canary release played against local volumes",
            file=out,
        )
        print(
            f"  <demo> = {tmp}: podinfo/ (downwardAPI), secrets/ (Secret);"
            f" a step every {step_seconds:g}s\n",
            file=out,
        )
        columns = Columns(out, tmp)
        columns.heading()
        first = steps[0]
        columns.rollout(first.title, *(f"  {n}" for n in first.notes))
        player.play(first)
        settings = live(retarget(ShopSettings, downward=str(podinfo), secrets=[str(secrets)]))
        snapshot = settings.current
        assert isinstance(snapshot, ShopSettings)
        columns.app("loaded ShopSettings:", *_brief(snapshot))
        app = DemoApp(settings, columns)
        surprises: list[str] = []
        async with settings.watching():
            for step in steps[1:]:
                await asyncio.sleep(step_seconds)
                columns.rollout(step.title, *(f"  {n}" for n in step.notes))
                before = Counter(app.seen)
                app.expect_reaction()
                if player.play(step):
                    await app.wait_reaction()
                else:
                    await asyncio.sleep(min(step_seconds, 0.2))
                problem = _check(step, before, app.seen)
                if problem is not None:
                    surprises.append(f"{step.name}: {problem}")
        app.close()
        final = settings.current
        assert isinstance(final, ShopSettings)
        columns.app("final settings:", *_brief(final))
        seen = app.seen
        outcome = "aborted, back on revision A" if abort else "promoted to stable"
        print(
            f"\ndemo finished in {time.monotonic() - columns.started:.1f}s: {len(steps)} steps,"
            f" {seen['applied']} changes applied, {seen['rejected']} version rejected (last good"
            f" kept), {seen['restart']} restart required, {seen['hook']} hook calls, {outcome};"
            f" {'all as expected' if not surprises else 'UNEXPECTED: ' + '; '.join(surprises)}",
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
