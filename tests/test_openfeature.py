"""canaryconf.openfeature through the real OpenFeature SDK client, on volumes written the way
the kubelet writes them, with real watchers.

The SDK keeps global state (providers, handlers, hooks, context): the ``openfeature_api``
fixture shuts it down before and after each test, so test order does not matter.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import queue
import re
import subprocess
import sys
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from openfeature import api
from openfeature.contrib.tools.flagd.core import FlagdCore
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent
from openfeature.exception import ErrorCode, OpenFeatureError
from openfeature.hook.logging_hook import LoggingHook
from openfeature.provider import ProviderStatus
from pydantic import BaseModel, SecretStr

from canaryconf import (
    CanaryConfigDict,
    CanarySettings,
    LiveSettings,
    RolloutInfo,
    SettingsValidationError,
    annotation,
    configmap,
    live,
    pod_field,
    secret,
)
from canaryconf.openfeature import CanaryConfProvider, FlagdDefinitions
from canaryconf.testing import DEFAULT_CONFIG_SEEN, KubeletWriter, pod_files

pytestmark = pytest.mark.usefixtures("no_watcher_left")

DATA = Path(__file__).resolve().parent / "data" / "openfeature"
#: Generous: a swap is handled in about a millisecond; CI machines are busy.
EVENT_DEADLINE = 10.0
PREFIX = "shop.example.com/"


@pytest.fixture
def openfeature_api() -> Iterator[Any]:
    """The SDK's global API, with no provider, handler, hook or context left by others."""
    api.shutdown()
    yield api
    api.shutdown()


class Events:
    """Provider events as the SDK delivers them, waited for. The SDK runs handlers on a
    thread pool, so two events sent one after the other can arrive in either order: each
    kind is kept apart, in the order of its own arrivals."""

    def __init__(self) -> None:
        self.queues: dict[ProviderEvent, queue.Queue[EventDetails]] = {
            event: queue.Queue() for event in ProviderEvent
        }
        for event in ProviderEvent:
            api.add_handler(event, lambda details, e=event: self._put(e, details))

    def _put(self, event: ProviderEvent, details: EventDetails) -> None:
        # Only this provider's: a handler added while the SDK's no-op default provider is
        # READY gets a READY of its own at once.
        if details.provider_name == "canaryconf":
            self.queues[event].put(details)

    def next(self, wanted: ProviderEvent) -> EventDetails:
        """The next event of kind ``wanted`` not taken yet."""
        try:
            return self.queues[wanted].get(timeout=EVENT_DEADLINE)
        except queue.Empty:
            pytest.fail(f"no {wanted.value} within {EVENT_DEADLINE} s")

    def drain(self) -> list[ProviderEvent]:
        """The kinds of the events that arrived and were not taken."""
        return [event for event, pending in self.queues.items() if not pending.empty()]


def flagd(flags: dict[str, Any], **extra: Any) -> str:
    return json.dumps({"flags": flags, **extra})


def boolean_flag(default: str = "off", **extra: Any) -> dict[str, Any]:
    return {
        "state": "ENABLED",
        "variants": {"on": True, "off": False},
        "defaultVariant": default,
        **extra,
    }


#: In canary pods, half of the users (by targeting key) get the new flow; in stable pods,
#: nobody.
CANARY_SPLIT = {
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


class Limits(BaseModel):
    burst: int = 10


def settings_class(volume: Path, cm: Path | None = None) -> type[CanarySettings]:
    class Settings(CanarySettings):
        model_config = CanaryConfigDict(
            downward_api_dir=str(volume),
            annotation_prefix=PREFIX,
            configmap_dirs=[str(cm)] if cm is not None else [],
            secrets_dirs=[],
        )

        new_checkout: bool = annotation("new-checkout", default=False)
        greeting: str = annotation("greeting", default="hello")
        max_items: int = annotation("max-items", default=3)
        ratio: float = annotation("ratio", default=0.5)
        limits: Limits = annotation("limits", default_factory=Limits)
        labels_extra: dict[str, int] = annotation("labels-extra", default_factory=dict)
        optional_note: str | None = annotation("optional-note", default=None)
        api_key: SecretStr = SecretStr("never-a-flag")
        flags: FlagdDefinitions = annotation(
            "flags", default_factory=lambda: FlagdDefinitions(flags={})
        )
        rollout: RolloutInfo = RolloutInfo()
        namespace: str = pod_field("metadata.namespace", default="default")
        pod_name: str = pod_field("metadata.name", default="local")

    return Settings


def pod(
    *,
    role: str = "canary",
    template_hash: str = "7f9c4d2e1",
    **annotations: str,
) -> dict[str, str | bytes]:
    return pod_files(
        labels={"app": "shop", "role": role, "rollouts-pod-template-hash": template_hash},
        annotations={f"{PREFIX}{k.replace('_', '-')}": v for k, v in annotations.items()},
        namespace="shop",
        name="shop-7f9c4d2e1-x7k2p",
        config_seen=DEFAULT_CONFIG_SEEN,
    )


@pytest.fixture
def serving(openfeature_api: Any, podinfo: KubeletWriter) -> Iterator[Any]:
    """A started LiveSettings over ``podinfo`` with its provider set (and an Events sink):
    ``(settings, events, client)``; the test writes the volume first."""

    @dataclass
    class Serving:
        writer: KubeletWriter
        settings: LiveSettings[Any] | None = None
        events: Events = field(default_factory=Events)

        def start(self) -> tuple[LiveSettings[Any], Any]:
            self.settings = live(settings_class(self.writer.path)).start()
            api.set_provider_and_wait(CanaryConfProvider(self.settings))
            return self.settings, api.get_client()

    serve = Serving(podinfo)
    try:
        yield serve
    finally:
        if serve.settings is not None:
            serve.settings.stop()


# -- typed fields ------------------------------------------------------------------------------


def test_typed_fields_resolve_by_either_spelling(openfeature_api: Any, podinfo: KubeletWriter):
    podinfo.write(
        pod(
            new_checkout="true",
            greeting="hi",
            max_items="7",
            ratio="0.25",
            limits='{"burst": 20}',
            labels_extra='{"a": 1}',
        )
    )
    api.set_provider_and_wait(CanaryConfProvider(live(settings_class(podinfo.path))))
    client = api.get_client()

    for key in ("new-checkout", "new_checkout"):
        details = client.get_boolean_details(key, False)
        assert (details.value, details.variant, details.reason) == (True, "true", "STATIC")
    assert client.get_string_details("greeting", "x").variant == "hi"
    assert client.get_integer_value("max-items", 0) == 7
    assert client.get_float_value("ratio", 0.0) == 0.25
    assert client.get_float_value("max-items", 0.0) == 7.0  # an int is a number too
    assert client.get_object_value("limits", {}) == {"burst": 20}
    assert client.get_object_details("labels-extra", {}).variant == '{"a":1}'
    rollout = client.get_object_value("rollout", {})
    assert rollout == {"role": "canary", "pod_template_hash": "7f9c4d2e1"}


def test_typed_field_errors(openfeature_api: Any, podinfo: KubeletWriter):
    podinfo.write(pod(greeting="hi"))
    settings = live(settings_class(podinfo.path))
    api.set_provider_and_wait(CanaryConfProvider(settings))
    client = api.get_client()

    mismatch = client.get_integer_details("greeting", 5)
    assert (mismatch.value, mismatch.error_code) == (5, ErrorCode.TYPE_MISMATCH)
    assert client.get_boolean_details("max-items", True).error_code == ErrorCode.TYPE_MISMATCH
    assert client.get_integer_details("ratio", 1).error_code == ErrorCode.TYPE_MISMATCH
    missing = client.get_boolean_details("no-such-flag", True)
    assert (missing.value, missing.error_code) == (True, ErrorCode.FLAG_NOT_FOUND)
    # a secret is never served as a flag, whatever it is asked as
    for key in ("api-key", "api_key"):
        assert client.get_string_details(key, "d").error_code == ErrorCode.FLAG_NOT_FOUND
    none = client.get_string_details("optional-note", "fallback")
    assert (none.value, none.reason, none.error_code) == ("fallback", "DEFAULT", None)
    # an object handed out is a copy: changing it does not change the snapshot
    limits = client.get_object_value("limits", {})
    assert isinstance(limits, dict)
    limits["burst"] = 999
    assert client.get_object_value("limits", {}) == {"burst": 10}


# -- swaps, failures, events --------------------------------------------------------------------


def test_values_change_after_a_swap(serving: Any):
    serving.writer.write(pod(new_checkout="false"))
    _, client = serving.start()
    serving.events.next(ProviderEvent.PROVIDER_READY)
    assert client.get_boolean_value("new-checkout", True) is False

    serving.writer.write(pod(new_checkout="true", greeting="hi"))
    changed = serving.events.next(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED)
    assert changed.flags_changed == ["greeting", "new-checkout", "new_checkout"]
    assert changed.metadata["generation"] == serving.writer.generation
    assert client.get_boolean_value("new-checkout", False) is True
    assert client.get_string_value("greeting", "") == "hi"


INVALID_DOCUMENTS = {
    "defaultVariant not among variants": (
        flagd({"new-flow": boolean_flag(default="of")}),
        "flags.flags.new-flow",
        'defaultVariant "of" is not one of the variants ("on", "off")',
    ),
    "variants of two types": (
        flagd({"new-flow": {"state": "ENABLED", "variants": {"on": True, "off": "no"}}}),
        "flags.flags.new-flow",
        "variants must be all booleans, all strings, all numbers or all objects",
    ),
    "unknown operator": (
        flagd({"new-flow": boolean_flag(targeting={"if": [{"starts-with": ["a", "b"]}, "on"]})}),
        "flags.flags.new-flow.targeting.if.0",
        'unknown targeting operator "starts-with"',
    ),
    "$ref to no evaluator": (
        flagd(
            {"new-flow": boolean_flag(targeting={"if": [{"$ref": "is_staff"}, "on"]})},
            **{"$evaluators": {"is_admin": {"==": [1, 1]}}},
        ),
        "flags.flags.new-flow.targeting.if.0",
        "$ref to is_staff, which is not one of the $evaluators",
    ),
    "state not in the schema": (
        flagd({"new-flow": {**boolean_flag(), "state": "ON"}}),
        "flags.flags.new-flow.state",
        "Input should be 'ENABLED' or 'DISABLED'",
    ),
    "no variants": (
        flagd({"new-flow": {"state": "ENABLED", "variants": {}}}),
        "flags.flags.new-flow.variants",
        "at least 1 item",
    ),
    "misspelt property": (
        flagd({"new-flow": {**boolean_flag(), "defaultVarient": "on"}}),
        "flags.flags.new-flow.defaultVarient",
        "Extra inputs are not permitted",
    ),
    "metadata value of no flagd type": (
        flagd({"new-flow": boolean_flag(metadata={"owner": {"team": "shop"}})}),
        "flags.flags.new-flow.metadata.owner",
        "",
    ),
    "no flags": ('{"flag": {}}', "flags.flags", "Field required"),
    "not JSON": ('{"flags": {', "flags", "invalid JSON"),
}


@pytest.mark.parametrize(
    ("document", "where", "reason"), INVALID_DOCUMENTS.values(), ids=INVALID_DOCUMENTS.keys()
)
def test_invalid_flagd_document_keeps_the_last_good_flags(
    openfeature_api: Any, podinfo: KubeletWriter, document: str, where: str, reason: str
):
    good = flagd({"new-flow": boolean_flag(default="on")})
    podinfo.write(pod(flags=good))
    settings = live(settings_class(podinfo.path))
    api.set_provider_and_wait(CanaryConfProvider(settings))
    client = api.get_client()
    assert client.get_boolean_value("new-flow", False) is True

    podinfo.write(pod(flags=document, greeting="changed too"))
    result = settings.reload()

    assert result.failed
    error = result.error
    assert isinstance(error, SettingsValidationError)
    for problem in error.problems:
        assert problem.field.startswith(where)
        assert (problem.source, problem.key) == (
            str(podinfo.path / "annotations"),
            f"{PREFIX}flags",
        )
        assert problem.line is not None
    assert error.problems[0].field == where or "metadata" in where
    assert any(reason in problem.reason for problem in error.problems)
    # the whole version was rejected: the other field did not change either
    assert client.get_boolean_value("new-flow", False) is True
    assert client.get_string_value("greeting", "") == "hello"


def test_failed_reload_makes_the_provider_stale_until_a_good_version(serving: Any):
    serving.writer.write(pod(flags=flagd({"new-flow": boolean_flag(default="on")})))
    _, client = serving.start()
    serving.events.next(ProviderEvent.PROVIDER_READY)

    serving.writer.write(pod(flags=flagd({"new-flow": boolean_flag(default="of")})))
    stale = serving.events.next(ProviderEvent.PROVIDER_STALE)
    assert "new-flow" in (stale.message or "")
    assert client.get_provider_status() == ProviderStatus.STALE
    details = client.get_boolean_details("new-flow", False)
    assert (details.value, details.variant, details.error_code) == (True, "on", None)

    serving.writer.write(pod(flags=flagd({"new-flow": boolean_flag(default="off")})))
    serving.events.next(ProviderEvent.PROVIDER_READY)
    changed = serving.events.next(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED)
    assert changed.flags_changed == ["new-flow"]
    assert client.get_provider_status() == ProviderStatus.READY
    assert client.get_boolean_value("new-flow", True) is False


def test_back_to_the_applied_version_is_ready_again_with_no_change(serving: Any):
    good = pod(flags=flagd({"new-flow": boolean_flag(default="on")}))
    serving.writer.write(good)
    _, client = serving.start()
    serving.events.next(ProviderEvent.PROVIDER_READY)
    serving.writer.write(pod(flags="{"))
    serving.events.next(ProviderEvent.PROVIDER_STALE)

    serving.writer.write(good)  # the bad edit rolled back
    serving.events.next(ProviderEvent.PROVIDER_READY)
    assert client.get_provider_status() == ProviderStatus.READY
    assert ProviderEvent.PROVIDER_CONFIGURATION_CHANGED not in serving.events.drain()


def test_a_provider_set_while_a_version_is_rejected_serves_the_last_good(
    openfeature_api: Any, podinfo: KubeletWriter
):
    podinfo.write(pod(flags=flagd({"new-flow": boolean_flag(default="on")})))
    settings = live(settings_class(podinfo.path))
    podinfo.write(pod(flags=flagd({"new-flow": boolean_flag(default="of")})))
    assert settings.reload().failed
    events = Events()
    api.set_provider_and_wait(CanaryConfProvider(settings))
    events.next(ProviderEvent.PROVIDER_READY)
    client = api.get_client()
    assert client.get_boolean_value("new-flow", False) is True

    podinfo.write(pod(flags=flagd({"new-flow": boolean_flag(default="off")})))
    assert settings.reload().applied
    events.next(ProviderEvent.PROVIDER_READY)  # valid again
    assert events.next(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED).flags_changed == ["new-flow"]
    assert client.get_boolean_value("new-flow", True) is False


def test_flags_changed_lists_exactly_the_changed_keys(openfeature_api: Any, podinfo: KubeletWriter):
    evaluators = {"is_staff": {"ends_with": [{"var": "email"}, "@example.com"]}}
    staff_only = {"if": [{"$ref": "is_staff"}, "on", "off"]}
    before = {
        "same": boolean_flag(),
        "edited": boolean_flag(),
        "removed": boolean_flag(),
        "via-evaluator": boolean_flag(targeting=staff_only),
    }
    after = {
        "same": boolean_flag(),
        "edited": boolean_flag(default="on"),
        "added": boolean_flag(),
        "via-evaluator": boolean_flag(targeting=staff_only),
    }
    podinfo.write(pod(flags=flagd(before, **{"$evaluators": evaluators}), max_items="3"))
    settings = live(settings_class(podinfo.path))
    events = Events()
    api.set_provider_and_wait(CanaryConfProvider(settings))
    events.next(ProviderEvent.PROVIDER_READY)

    evaluators_after = {"is_staff": {"ends_with": [{"var": "email"}, "@example.org"]}}
    podinfo.write(pod(flags=flagd(after, **{"$evaluators": evaluators_after}), max_items="4"))
    assert settings.reload().applied
    changed = events.next(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED).flags_changed
    assert changed == ["added", "edited", "max-items", "max_items", "removed", "via-evaluator"]

    # flag-set metadata is merged into every flag's metadata: every flag changed
    with_metadata = flagd(after, metadata={"version": "2"}, **{"$evaluators": evaluators_after})
    podinfo.write(pod(flags=with_metadata, max_items="4"))
    assert settings.reload().applied
    changed = events.next(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED).flags_changed
    assert changed == ["added", "edited", "same", "via-evaluator"]
    assert api.get_client().get_boolean_details("same", True).flag_metadata == {"version": "2"}

    # the same document written differently is no change at all
    reformatted = json.dumps(json.loads(with_metadata), indent=2)
    podinfo.write(pod(flags=reformatted, max_items="4"))
    assert settings.reload().status == "unchanged"


# -- flagd targeting, fractional, rollout facts ------------------------------------------------


def test_fractional_bucketing_is_sticky_across_reloads(
    openfeature_api: Any, podinfo: KubeletWriter
):
    split = {
        "state": "ENABLED",
        "variants": {"a": "a", "b": "b"},
        "defaultVariant": "a",
        "targeting": {"fractional": [["a", 50], ["b", 50]]},
    }
    podinfo.write(pod(flags=flagd({"checkout-experiment": split})))
    settings = live(settings_class(podinfo.path))
    api.set_provider_and_wait(CanaryConfProvider(settings))
    client = api.get_client()
    users = [f"user-{n}" for n in range(400)]

    def assignment() -> list[str]:
        return [
            client.get_string_value("checkout-experiment", "?", EvaluationContext(user))
            for user in users
        ]

    first = assignment()
    assert 120 < first.count("b") < 280  # about half, by a hash of the user
    assert client.get_string_details("checkout-experiment", "?").reason == "DEFAULT"

    # another flag and another field change; this flag does not
    other = {"checkout-experiment": split, "express-pay": boolean_flag()}
    podinfo.write(pod(flags=flagd(other), greeting="hi"))
    assert settings.reload().applied
    assert assignment() == first
    details = client.get_string_details("checkout-experiment", "?", EvaluationContext("user-7"))
    assert (details.variant, details.reason) == (first[7], "TARGETING_MATCH")


def test_canary_and_stable_rules_follow_a_promotion(serving: Any):
    serving.writer.write(pod(role="canary", flags=flagd({"checkout-flow": CANARY_SPLIT})))
    _, client = serving.start()
    serving.events.next(ProviderEvent.PROVIDER_READY)
    users = [EvaluationContext(f"user-{n}") for n in range(200)]

    canary = [client.get_string_value("checkout-flow", "?", user) for user in users]
    assert 50 < canary.count("new") < 150

    # Argo Rollouts promotes the pod in place: same revision, stable metadata
    serving.writer.write(pod(role="stable", flags=flagd({"checkout-flow": CANARY_SPLIT})))
    changed = serving.events.next(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED)
    assert changed.flags_changed == ["checkout-flow", "rollout"]
    stable = [client.get_string_value("checkout-flow", "?", user) for user in users]
    assert stable == ["classic"] * len(users)


def test_rollout_facts_in_the_context_cannot_be_overridden(
    openfeature_api: Any, podinfo: KubeletWriter
):
    all_four = "canary/7f9c4d2e1/shop/shop-7f9c4d2e1-x7k2p"
    facts = {
        "state": "ENABLED",
        "variants": {all_four: "all four", "none": "none"},
        "defaultVariant": "none",
        "targeting": {
            "cat": [
                {"var": "$canaryconf.role"},
                "/",
                {"var": "$canaryconf.podTemplateHash"},
                "/",
                {"var": "$canaryconf.namespace"},
                "/",
                {"var": "$canaryconf.podName"},
            ]
        },
    }
    podinfo.write(pod(flags=flagd({"facts": facts})))
    api.set_provider_and_wait(CanaryConfProvider(live(settings_class(podinfo.path))))
    forged = EvaluationContext("u", {"$canaryconf": {"role": "stable"}})
    details = api.get_client().get_string_details("facts", "?", forged)
    assert (details.value, details.reason) == ("all four", "TARGETING_MATCH")


def test_flags_from_a_configmap_and_async_watching(openfeature_api: Any, tmp_path: Path):
    podinfo = KubeletWriter(tmp_path / "podinfo")
    podinfo.write(pod())
    cm = KubeletWriter(tmp_path / "cm")
    cm.write({"flags.json": flagd({"express-pay": boolean_flag(default="off")})})

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(
            downward_api_dir=str(podinfo.path), configmap_dirs=[str(cm.path)]
        )
        flags: FlagdDefinitions = configmap("flags.json")

    settings = live(Settings)
    events = Events()

    async def scenario() -> tuple[bool, bool]:
        async with settings.watching():
            api.set_provider_and_wait(CanaryConfProvider(settings))
            client = api.get_client()
            before = await client.get_boolean_value_async("express-pay", True)
            cm.write({"flags.json": flagd({"express-pay": boolean_flag(default="on")})})
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(
                None, events.next, ProviderEvent.PROVIDER_CONFIGURATION_CHANGED
            )
            return before, await client.get_boolean_value_async("express-pay", False)

    assert asyncio.run(asyncio.wait_for(scenario(), 30)) == (False, True)


def test_a_flagd_document_from_a_secret_is_not_served(openfeature_api: Any, tmp_path: Path):
    podinfo = KubeletWriter(tmp_path / "podinfo")
    podinfo.write(pod())
    secrets = KubeletWriter(tmp_path / "secrets")
    secrets.write({"flags.json": flagd({"express-pay": boolean_flag(default="on")})})

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(
            downward_api_dir=str(podinfo.path), secrets_dirs=[str(secrets.path)]
        )
        flags: FlagdDefinitions = secret("flags.json")

    settings = live(Settings)
    assert settings.flags.flags["express-pay"].default_variant == "on"  # it was read
    api.set_provider_and_wait(CanaryConfProvider(settings))
    details = api.get_client().get_boolean_details("express-pay", False)
    assert (details.value, details.error_code) == (False, ErrorCode.FLAG_NOT_FOUND)


# -- SDK integration -----------------------------------------------------------------------------


def test_sdk_hooks_see_the_evaluation(
    openfeature_api: Any, podinfo: KubeletWriter, caplog: pytest.LogCaptureFixture
):
    podinfo.write(pod(flags=flagd({"checkout-flow": CANARY_SPLIT})))
    api.set_provider_and_wait(CanaryConfProvider(live(settings_class(podinfo.path))))
    api.add_hooks([LoggingHook(logger=logging.getLogger("test.openfeature.hooks"))])
    with caplog.at_level(logging.DEBUG, logger="test.openfeature.hooks"):
        value = api.get_client().get_string_value("checkout-flow", "?", EvaluationContext("u1"))
    text = caplog.text
    assert "checkout-flow" in text
    assert "canaryconf" in text  # the provider's name
    assert f"'variant': '{value}'" in text or f'"variant": "{value}"' in text


def test_opentelemetry_hook_records_the_evaluation(openfeature_api: Any, podinfo: KubeletWriter):
    """The OpenTelemetry hook package, unchanged, on a real (in-memory exported) tracer.
    Needs ``openfeature-hooks-opentelemetry`` and ``opentelemetry-sdk``, which the test
    extra does not install: skipped without them."""
    hook_module = pytest.importorskip("openfeature.contrib.hook.opentelemetry")
    sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
    exporting = pytest.importorskip("opentelemetry.sdk.trace.export")
    in_memory = pytest.importorskip("opentelemetry.sdk.trace.export.in_memory_span_exporter")

    exporter = in_memory.InMemorySpanExporter()
    tracer_provider = sdk_trace.TracerProvider()
    tracer_provider.add_span_processor(exporting.SimpleSpanProcessor(exporter))
    podinfo.write(pod(flags=flagd({"checkout-flow": CANARY_SPLIT}), limits='{"burst": 5}'))
    api.set_provider_and_wait(CanaryConfProvider(live(settings_class(podinfo.path))))
    api.add_hooks([hook_module.TracingHook()])
    client = api.get_client()
    with tracer_provider.get_tracer("test").start_as_current_span("request"):
        flow = client.get_string_value("checkout-flow", "?", EvaluationContext("user-7"))
        client.get_object_value("limits", {})
        client.get_boolean_value("no-such-flag", False)
    tracer_provider.shutdown()

    (span,) = exporter.get_finished_spans()
    events = [dict(e.attributes) for e in span.events if e.name == "feature_flag.evaluation"]
    assert [e.name for e in span.events].count("exception") == 1  # the error hook's
    assert [e["feature_flag.key"] for e in events] == ["checkout-flow", "limits", "no-such-flag"]
    assert events[0]["feature_flag.result.variant"] == flow
    assert events[0]["feature_flag.result.reason"] == "targeting_match"
    assert events[0]["feature_flag.context.id"] == "user-7"
    assert events[0]["feature_flag.provider.name"] == "canaryconf"
    assert json.loads(events[1]["feature_flag.result.value"]) == {"burst": 5}
    assert events[2]["error.type"] == "flag_not_found"


def test_doctests(openfeature_api: Any):
    import doctest

    import canaryconf.openfeature

    result = doctest.testmod(canaryconf.openfeature, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


def test_shutdown_stops_following_reloads(openfeature_api: Any, podinfo: KubeletWriter):
    """A provider the SDK shut down (replaced, cleared) is no longer held by the settings'
    signal: it can be collected, and it sends nothing more."""
    podinfo.write(pod())
    settings = live(settings_class(podinfo.path))
    provider = CanaryConfProvider(settings)
    collected = weakref.ref(provider)
    api.set_provider_and_wait(provider)
    del provider
    api.clear_providers()
    gc.collect()
    assert collected() is None


def test_importing_canaryconf_does_not_import_openfeature():
    code = "import sys, canaryconf, canaryconf.testing; print('openfeature' in sys.modules)"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert proc.stdout.strip() == "False"


def test_equal_documents_are_equal_and_serialize_back():
    text = flagd({"a": boolean_flag(targeting={"if": [True, "on"]})}, metadata={"v": 1})
    doc = FlagdDefinitions.model_validate_json(text)
    assert doc == FlagdDefinitions.model_validate(json.loads(text))
    assert hash(doc) == hash(FlagdDefinitions.model_validate(json.loads(text)))
    dumped = doc.model_dump(mode="json", by_alias=True)  # (pydantic < 2.11: by_alias needed)
    assert FlagdDefinitions.model_validate(dumped) == doc
    assert dumped["flags"]["a"]["defaultVariant"] == "off"
    assert doc != FlagdDefinitions.model_validate_json(flagd({"a": boolean_flag()}))


# -- conformance with flagd's test bed ------------------------------------------------------------

#: Scenarios of the test bed this table leaves out, by tag or flag key, and why.
LEFT_OUT = {
    # Hash vectors of two bucketing algorithms: v1 (legacy) and v2 (MurmurHash3 of the
    # bucket key's string). openfeature-flagd-core 2 hashes a CBOR encoding of the bucket
    # key instead, so its buckets differ; the cases below that do not depend on the hash
    # (one entry, zero or negative weights, no bucket key, fractional as a condition) and
    # the comparison with the core alone still cover fractional.
    "@fractional-v1": "legacy bucketing vectors",
    "@fractional-v2": "bucketing vectors of the string-hash algorithm",
    # canaryconf rejects the whole document at validation instead (see the test below)
    "ref-to-nonexistent-evaluator-flag": "a $ref to no evaluator makes the document invalid",
}


@dataclass
class Scenario:
    name: str
    tags: set[str]
    flag_type: str = ""
    key: str = ""
    default: Any = None
    targeting_key: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    value: Any = ...
    reason: str | None = None
    error_code: str | None = None
    metadata: dict[str, Any] | None = None


def _typed(kind: str, text: str) -> Any:
    if kind == "Boolean":
        return text == "true"
    if kind == "Integer":
        return int(text)
    if kind == "Float":
        return float(text)
    if kind == "Object":
        return json.loads(text.replace('\\"', '"'))
    return text


def _rows(lines: list[str]) -> list[dict[str, str]]:
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
    return [dict(zip(cells[0], row, strict=True)) for row in cells[1:]]


STEP_FLAG = re.compile(r'a (\w+)-flag with key "(.*)" and a fallback value "(.*)"')
STEP_NESTED = re.compile(
    r'a context containing a nested property with outer key "(.*)" and inner key "(.*)",'
    r' with value "(.*)"'
)
STEP_TARGETING_KEY = re.compile(r'a context containing a targeting key with value "(.*)"')
STEP_KEY = re.compile(r'a context containing a key "(.*)", with type "(\w+)" and with value "(.*)"')
STEP_VALUE = re.compile(r'the resolved details value should be "(.*)"')
STEP_REASON = re.compile(r'the reason should be "(.*)"')
STEP_ERROR = re.compile(r'the error-code should be "(.*)"')


def _scenario(name: str, tags: set[str], steps: list[tuple[str, list[str]]]) -> Scenario:
    case = Scenario(name, tags)
    for step, table in steps:
        if m := STEP_FLAG.fullmatch(step):
            case.flag_type, case.key = m[1], m[2]
            case.default = _typed(m[1], m[3])
        elif m := STEP_NESTED.fullmatch(step):
            case.attributes.setdefault(m[1], {})[m[2]] = m[3]
        elif m := STEP_TARGETING_KEY.fullmatch(step):
            case.targeting_key = m[1]
        elif m := STEP_KEY.fullmatch(step):
            case.attributes[m[1]] = _typed(m[2], m[3])
        elif m := STEP_VALUE.fullmatch(step):
            case.value = _typed(case.flag_type, m[1])
        elif m := STEP_REASON.fullmatch(step):
            case.reason = m[1]
        elif m := STEP_ERROR.fullmatch(step):
            case.error_code = m[1]
        elif step == "the resolved metadata should contain":
            case.metadata = {r["key"]: _typed(r["metadata_type"], r["value"]) for r in _rows(table)}
        elif step == "the resolved metadata is empty":
            case.metadata = {}
        elif step not in ("an evaluator", "the flag was evaluated with details"):
            raise AssertionError(f"{name}: step not understood: {step!r}")
    return case


@dataclass
class _Block:
    """A Scenario or Scenario Outline as written: steps with placeholders, example rows."""

    title: str
    tags: set[str]
    steps: list[tuple[str, list[str]]]
    outline: bool
    examples: list[tuple[set[str], list[str]]] = field(default_factory=list)


def _table(lines: list[str], i: int) -> tuple[list[str], int]:
    """The ``|`` lines after line ``i``, and the index of the last one."""
    table = []
    while i + 1 < len(lines) and lines[i + 1].startswith("|"):
        i += 1
        table.append(lines[i])
    return table, i


def _blocks(path: Path) -> list[_Block]:
    lines = [line.strip() for line in path.read_text().splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    blocks: list[_Block] = []
    feature_tags: set[str] = set()
    pending: set[str] = set()
    background: list[tuple[str, list[str]]] = []
    steps = background
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("@"):
            pending |= set(line.split())
        elif line.startswith("Feature:"):
            feature_tags, pending = pending, set()
        elif line.startswith("Background:"):
            steps = background
        elif line.startswith(("Scenario Outline:", "Scenario:")):
            steps = [*background]
            title = line.split(":", 1)[1].strip()
            outline = line.startswith("Scenario Outline:")
            blocks.append(_Block(title, feature_tags | pending, steps, outline))
            pending = set()
        elif line.startswith("Examples"):
            table, i = _table(lines, i)
            blocks[-1].examples.append((pending, table))
            pending = set()
        elif line.split(maxsplit=1)[0] in ("Given", "And", "When", "Then", "But"):
            table, i = _table(lines, i)
            steps.append((line.split(maxsplit=1)[1], table))
        i += 1
    return blocks


def read_scenarios() -> list[Scenario]:
    """Every scenario of the test bed's evaluator suite, outlines expanded."""
    found: list[Scenario] = []
    for path in sorted((DATA / "gherkin").glob("*.feature")):
        for block in _blocks(path):
            if not block.outline:
                found.append(_scenario(f"{path.stem}: {block.title}", block.tags, block.steps))
                continue
            for tags, table in block.examples:
                for row in _rows(table):
                    steps = [
                        (re.sub(r"<(\w+)>", lambda m, r=row: r[m[1]], step), rows)
                        for step, rows in block.steps
                    ]
                    name = f"{path.stem}: {block.title} {row}"
                    found.append(_scenario(name, block.tags | tags, steps))
    return found


SCENARIOS = read_scenarios()
LEFT_OUT_SCENARIOS = [s for s in SCENARIOS if (s.tags | {s.key}) & LEFT_OUT.keys()]
CONFORMANCE = [s for s in SCENARIOS if s not in LEFT_OUT_SCENARIOS]


def load_testkit() -> dict[str, Any]:
    document = json.loads((DATA / "testkit-flags.json").read_text())
    for key in LEFT_OUT:
        document["flags"].pop(key, None)
    return document


@pytest.fixture(scope="module")
def testkit_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The test bed's flags served from a ConfigMap volume through the provider."""
    root = tmp_path_factory.mktemp("testkit")
    KubeletWriter(root / "podinfo").write(pod())
    KubeletWriter(root / "cm").write({"flags.json": json.dumps(load_testkit())})

    class Testkit(CanarySettings):
        model_config = CanaryConfigDict(
            downward_api_dir=str(root / "podinfo"), configmap_dirs=[str(root / "cm")]
        )
        flags: FlagdDefinitions = configmap("flags.json")

    api.shutdown()
    api.set_provider_and_wait(CanaryConfProvider(live(Testkit)))
    yield api.get_client()
    api.shutdown()


def test_the_table_is_the_test_bed():
    """The reader understood every scenario; what it leaves out is only what LEFT_OUT says."""
    # 140 = the scenarios plus the example rows of the outlines, counted in the files
    assert (len(SCENARIOS), len(CONFORMANCE)) == (140, 103)
    assert {s.key for s in CONFORMANCE} >= {
        "fractional-zero-weights-flag",
        "fractional-as-condition-flag",
        "equal-greater-lesser-version-flag",
        "starts-ends-flag",
        "some-email-targeted-flag",
        "integer-zero-flag",
        "metadata-flag",
    }
    assert all(s.tags & LEFT_OUT.keys() or s.key in LEFT_OUT for s in LEFT_OUT_SCENARIOS)


@pytest.mark.parametrize("case", CONFORMANCE, ids=lambda s: s.name)
def test_conformance_with_the_flagd_test_bed(testkit_client: Any, case: Scenario):
    context = EvaluationContext(case.targeting_key, case.attributes)
    method = getattr(testkit_client, f"get_{case.flag_type.lower()}_details")
    details = method(case.key, case.default, context)

    if case.value is not ...:
        assert details.value == case.value
        assert type(details.value) is type(case.value)
    if case.reason is not None:
        assert details.reason == case.reason
    if case.error_code is not None:
        assert details.error_code == case.error_code
    if case.metadata is not None:
        assert dict(details.flag_metadata) == case.metadata
    # the same value, variant and reason (or error) as the flagd core alone
    core = FlagdCore()
    core.set_flags(load_testkit())
    try:
        alone = getattr(core, f"resolve_{case.flag_type.lower()}_value")(
            case.key, case.default, context
        )
    except OpenFeatureError as exc:
        assert (details.value, details.error_code) == (case.default, exc.error_code)
    else:
        assert (details.value, details.variant, details.reason) == (
            alone.value,
            alone.variant,
            alone.reason,
        )


def test_a_ref_to_no_evaluator_in_the_test_bed_makes_the_document_invalid():
    """The test bed expects PARSE_ERROR when such a flag is evaluated; canaryconf refuses
    the document before it is served, so its other flags keep their last good version."""
    document = json.loads((DATA / "testkit-flags.json").read_text())
    with pytest.raises(ValueError) as caught:
        FlagdDefinitions.model_validate(document)
    errors = caught.value.errors(include_url=False)  # type: ignore[attr-defined]
    assert [e["loc"] for e in errors] == [
        ("flags", "ref-to-nonexistent-evaluator-flag", "targeting", "if", 0)
    ]
