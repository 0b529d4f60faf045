"""The FastAPI example's ``/checkout/flow`` endpoint, served by the real uvicorn, reads a
flagd flag through OpenFeature: half of the users get the new flow in a canary pod, nobody
once the pod is promoted, and a broken flags document leaves the last good split serving.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from _support import ROOT, fetch_json, free_port, poll_until, start_server

from canaryconf.testing import KubeletWriter, pod_files

STARTUP_TIMEOUT = 20.0
SWAP_DEADLINE = 10.0
USERS = [f"user-{n}" for n in range(60)]
FLAGS_KEY = "checkout.example.com/flags"
SPLIT = json.dumps(
    {
        "flags": {
            "checkout-flow": {
                "state": "ENABLED",
                "variants": {"new": "new", "classic": "classic"},
                "defaultVariant": "classic",
                "targeting": {
                    "if": [
                        {"==": [{"var": "$canaryconf.role"}, "canary"]},
                        {"fractional": [["new", 50], ["classic", 50]]},
                        "classic",
                    ]
                },
            }
        }
    }
)

pytestmark = pytest.mark.timeout(90)


def volume(role: str, flags: str) -> dict[str, str | bytes]:
    return pod_files(
        labels={"app": "checkout", "role": role, "rollouts-pod-template-hash": "5d8f7c9b4"},
        annotations={FLAGS_KEY: flags},
    )


def test_checkout_flow_follows_the_flag_through_a_promotion(tmp_path: Path) -> None:
    writer = KubeletWriter(tmp_path / "podinfo")
    writer.write(volume("canary", SPLIT))
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "examples.fastapi.app:app"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    env = {"PODINFO_DIR": str(writer.path), "PYTHONUNBUFFERED": "1"}
    with start_server(cmd, port=port, env=env, cwd=ROOT, timeout=STARTUP_TIMEOUT) as server:

        def flows() -> dict[str, str]:
            url = f"{server.base_url}/checkout/flow"
            return {user: fetch_json(f"{url}?user={user}")["flow"] for user in USERS}

        canary = poll_until(flows, timeout=STARTUP_TIMEOUT, ignore=(Exception,))
        assert 10 < list(canary.values()).count("new") < 50
        assert poll_until(flows, timeout=1.0) == canary  # sticky per user
        body = fetch_json(f"{server.base_url}/checkout/flow?user=user-1")
        assert body["reason"] == "TARGETING_MATCH"
        assert body["variant"] == canary["user-1"]

        # a broken document: rejected, the split keeps serving
        writer.write(volume("canary", '{"flags": {"checkout-flow": {"state": "ENABLED"}}}'))
        poll_until(
            lambda: fetch_json(f"{server.base_url}/-/canaryconf")["last_error"],
            timeout=SWAP_DEADLINE,
            message="the broken flags rejected",
        )
        assert flows() == canary

        # promotion: the same revision, stable metadata, the same flags
        writer.write(volume("stable", SPLIT))

        def all_classic() -> bool:
            return set(flows().values()) == {"classic"}

        poll_until(all_classic, timeout=SWAP_DEADLINE, message="every user on the classic flow")
