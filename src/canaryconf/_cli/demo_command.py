"""``canaryconf demo``'s command line (what it plays is in :mod:`canaryconf._cli.demo`)."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass

from canaryconf._cli.options import SECONDS, non_negative_float

__all__ = ["DemoArgs", "add_arguments", "parse", "run"]

NAME = "demo"
SUMMARY = "a canary release and live settings, side by side"
DESCRIPTION = (
    "Play the simulated canary release in a temporary directory with a stable pod of"
    " revision A and a canary pod of revision B, each followed live by the example"
    " settings class (canaryconf.demo_settings.ShopSettings): each change, hook call,"
    " rejected version, the promotion and the pods scaled down, as they happen. Needs"
    " no cluster and no configuration; ends by itself."
)


@dataclass(frozen=True)
class DemoArgs:
    fast: bool = False
    step_seconds: float | None = None
    abort: bool = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fast", action="store_true", help="short steps (0.25s), for CI")
    parser.add_argument(
        "--step-seconds", metavar=SECONDS, type=non_negative_float, help="seconds between steps"
    )
    parser.add_argument("--abort", action="store_true", help="abort instead of promoting")


def parse(ns: argparse.Namespace) -> DemoArgs:
    return DemoArgs(fast=ns.fast, step_seconds=ns.step_seconds, abort=ns.abort)


def run(args: DemoArgs) -> int:
    from canaryconf._cli.demo import cmd_demo  # noqa: PLC0415

    return cmd_demo(argparse.Namespace(**asdict(args)))
