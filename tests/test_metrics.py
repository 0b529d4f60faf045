"""canaryconf.metrics: counters fed by real reloads of real volumes, scraped over HTTP from
a real exposition endpoint on 127.0.0.1."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest

pytest.importorskip("prometheus_client")

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from canaryconf import (
    CanaryConfigDict,
    CanarySettings,
    LiveSettings,
    RolloutInfo,
    annotation,
    live,
    secret,
)
from canaryconf.metrics import instrument, metrics_app, start_http_server
from canaryconf.testing import KubeletWriter
from conftest import rollout_pod

TOKEN = "tok-metrics-5ecr3t-41c9"
PREFIX = "canary.example.com/"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _pod(role: str = "canary", **annotations: str) -> dict[str, str | bytes]:
    return rollout_pod(annotations, role=role, template_hash="7f9c4d2e1", prefix=PREFIX)


@pytest.fixture
def volumes(tmp_path: Path) -> tuple[KubeletWriter, KubeletWriter]:
    podinfo = KubeletWriter(tmp_path / "podinfo", seed=1)
    secrets = KubeletWriter(tmp_path / "secrets", seed=2)
    podinfo.write(_pod(db_url="postgres://canary-db/app"))
    secrets.write({"db-password": TOKEN})
    return podinfo, secrets


def _settings_class(podinfo: KubeletWriter, secrets: KubeletWriter) -> type[CanarySettings]:
    class Settings(CanarySettings):
        model_config = CanaryConfigDict(
            downward_api_dir=str(podinfo.path),
            secrets_dirs=[str(secrets.path)],
            annotation_prefix=PREFIX,
        )

        db_url: str = annotation("db-url", default="postgres://stable-db/app")
        ratio: float = annotation("ratio", default=0.0, ge=0, le=1)
        rollout: RolloutInfo = RolloutInfo()
        db_password: SecretStr = secret("db-password", default=SecretStr(""))

    return Settings


@pytest.fixture
def settings(volumes: tuple[KubeletWriter, KubeletWriter]) -> LiveSettings[Any]:
    """Live settings read from ``volumes``, not instrumented."""
    return live(_settings_class(*volumes))


@pytest.fixture
def metrics_url(settings: LiveSettings[Any]) -> Iterator[str]:
    """The URL of a real exposition endpoint of a registry ``settings`` is instrumented in."""
    registry = CollectorRegistry()
    running = start_http_server(0, "127.0.0.1", registry)
    try:
        instrument(settings, registry)
        yield running.url
    finally:
        running.close()


def scrape(url: str) -> tuple[str, Samples]:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return text, samples


def _info(samples: Samples) -> list[dict[str, str]]:
    return [dict(labels) for (name, labels) in samples if name == "canaryconf_config_info"]


def test_import_canaryconf_does_not_import_prometheus_client() -> None:
    code = (
        "import sys, canaryconf, canaryconf.cli, canaryconf.testing\n"
        "assert 'prometheus_client' not in sys.modules, 'imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_reloads_success_and_config_info_over_http(
    volumes: tuple[KubeletWriter, KubeletWriter], settings: LiveSettings[Any], metrics_url: str
) -> None:
    podinfo, _ = volumes

    _, samples = scrape(metrics_url)
    assert samples[("canaryconf_reloads_total", (("result", "applied"),))] == 0
    assert samples[("canaryconf_last_reload_success", ())] == 1
    (info,) = _info(samples)
    assert info["generation"] == podinfo.generation
    assert info["role"] == "canary"
    assert len(info["digest"]) == 12
    first_digest = info["digest"]

    podinfo.write(_pod(db_url="postgres://other/app"))
    assert settings.reload().status == "applied"
    assert settings.reload().status == "unchanged"
    _, samples = scrape(metrics_url)
    assert samples[("canaryconf_reloads_total", (("result", "applied"),))] == 1
    assert samples[("canaryconf_reloads_total", (("result", "unchanged"),))] == 1
    assert samples[("canaryconf_reloads_total", (("result", "failed"),))] == 0
    (info,) = _info(samples)  # one label set at a time
    assert info["generation"] == podinfo.generation
    assert info["digest"] != first_digest
    before = samples[("canaryconf_last_reload_timestamp_seconds", ())]

    podinfo.write(_pod(db_url="postgres://other/app", ratio="3"))
    assert settings.reload().status == "failed"
    _, samples = scrape(metrics_url)
    assert samples[("canaryconf_reloads_total", (("result", "failed"),))] == 1
    assert samples[("canaryconf_last_reload_success", ())] == 0
    assert samples[("canaryconf_last_reload_timestamp_seconds", ())] >= before
    (info,) = _info(samples)
    assert info["role"] == "canary"  # still the last good settings

    podinfo.write(_pod(role="stable", db_url="postgres://other/app"))
    assert settings.reload().status == "applied"
    _, samples = scrape(metrics_url)
    assert samples[("canaryconf_last_reload_success", ())] == 1
    (info,) = _info(samples)
    assert info["role"] == "stable"


def test_reload_durations_are_a_histogram(
    volumes: tuple[KubeletWriter, KubeletWriter], settings: LiveSettings[Any], metrics_url: str
) -> None:
    """Every reload, whatever its result, is one observation of how long it took; the
    buckets are cumulative and end with +Inf, so histogram_quantile() works on them."""
    podinfo, _ = volumes
    _, samples = scrape(metrics_url)
    assert samples[("canaryconf_reload_duration_seconds_count", ())] == 0

    results = []
    for marker in range(3):
        podinfo.write(_pod(db_url=f"postgres://db-{marker}/app"))
        results.append(settings.reload())
    podinfo.write(_pod(ratio="3"))
    results.append(settings.reload())
    results.append(settings.reload())

    assert [r.status for r in results] == ["applied"] * 3 + ["failed", "failed"]
    text, samples = scrape(metrics_url)
    assert "# TYPE canaryconf_reload_duration_seconds histogram" in text
    buckets = sorted(
        (float(dict(labels)["le"]), value)
        for (name, labels), value in samples.items()
        if name == "canaryconf_reload_duration_seconds_bucket"
    )
    assert buckets[-1] == (float("inf"), len(results))
    counts = [value for _, value in buckets]
    assert counts == sorted(counts), "buckets are cumulative"
    assert samples[("canaryconf_reload_duration_seconds_count", ())] == len(results)
    total = sum(r.duration for r in results)
    assert samples[("canaryconf_reload_duration_seconds_sum", ())] == pytest.approx(total)
    slowest = max(r.duration for r in results)
    assert all(count == len(results) for bound, count in buckets if bound >= slowest)


def test_label_values_never_carry_secrets(
    volumes: tuple[KubeletWriter, KubeletWriter], settings: LiveSettings[Any], metrics_url: str
) -> None:
    _, secrets = volumes
    text, samples = scrape(metrics_url)
    assert TOKEN not in text
    (info,) = _info(samples)
    # Rotating only the secret does not move the published digest: it is computed from the
    # redacted settings, so it cannot be used to test guesses of the secret.
    secrets.write({"db-password": TOKEN + "-rotated"})
    assert settings.reload().status == "applied"
    text, samples = scrape(metrics_url)
    assert TOKEN not in text
    (after,) = _info(samples)
    assert after["digest"] == info["digest"]
    assert settings.digest not in text


def test_handler_errors_are_counted_by_handler(
    volumes: tuple[KubeletWriter, KubeletWriter], settings: LiveSettings[Any], metrics_url: str
) -> None:
    podinfo, _ = volumes

    @settings.on_change("db_url")
    def rebuild_pool(change: Any) -> None:
        raise RuntimeError("pool down")

    @settings.on_change
    def fine(change: Any) -> None:
        pass

    for url_value in ("postgres://a/app", "postgres://b/app"):
        podinfo.write(_pod(db_url=url_value))
        assert settings.reload().status == "applied"
    _, samples = scrape(metrics_url)
    handler_errors = {
        dict(labels)["handler"]: value
        for (name, labels), value in samples.items()
        if name == "canaryconf_handler_errors_total"
    }
    assert handler_errors == {rebuild_pool.__qualname__: 2}


def _handler_errors(registry: CollectorRegistry) -> dict[str, float]:
    return {
        sample.labels["handler"]: sample.value
        for family in registry.collect()
        for sample in family.samples
        if sample.name == "canaryconf_handler_errors_total"
    }


def test_handler_errors_count_for_their_own_settings_only(
    volumes: tuple[KubeletWriter, KubeletWriter], tmp_path: Path
) -> None:
    """Two instrumented settings in one process: a handler of one that raises, or a
    coroutine handler of it that runs over its timeout, counts once, in its registry."""
    podinfo, secrets = volumes
    failing = live(_settings_class(podinfo, secrets), handler_timeout=0.05)
    other_podinfo = KubeletWriter(tmp_path / "other", seed=3)
    other_podinfo.write(_pod(db_url="postgres://other-db/app"))
    other = live(_settings_class(other_podinfo, secrets))
    registries = CollectorRegistry(), CollectorRegistry()
    handles = instrument(failing, registries[0]), instrument(other, registries[1])

    @failing.on_change
    def broken(change: Any) -> None:
        raise RuntimeError("pool down")

    @failing.on_change
    async def slow(change: Any) -> None:
        await asyncio.sleep(5)

    podinfo.write(_pod(db_url="postgres://a/app"))
    assert failing.reload().status == "applied"
    other_podinfo.write(_pod(db_url="postgres://b/app"))
    assert other.reload().status == "applied"
    assert _handler_errors(registries[0]) == {broken.__qualname__: 1, slow.__qualname__: 1}
    assert _handler_errors(registries[1]) == {}
    for handle in handles:
        handle.close()


def test_close_unregisters_and_a_second_registration_is_refused(
    volumes: tuple[KubeletWriter, KubeletWriter], settings: LiveSettings[Any]
) -> None:
    podinfo, _ = volumes
    registry = CollectorRegistry()
    handle = instrument(settings, registry)
    with pytest.raises(ValueError, match="Duplicated"):
        instrument(settings, registry)
    handle.close()
    assert registry.get_sample_value("canaryconf_last_reload_success") is None
    podinfo.write(_pod(db_url="postgres://c/app"))
    settings.reload()  # no receiver left to fail
    again = instrument(settings, registry)
    assert registry.get_sample_value("canaryconf_reloads_total", {"result": "applied"}) == 0
    again.close()


def test_metrics_app_serves_the_exposition_format(settings: LiveSettings[Any]) -> None:
    registry = CollectorRegistry()
    instrument(settings, registry)

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    httpd = make_server("127.0.0.1", 0, metrics_app(registry), handler_class=Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        text, samples = scrape(f"http://127.0.0.1:{httpd.server_port}/metrics")
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
    assert "# TYPE canaryconf_reloads_total counter" in text
    assert samples[("canaryconf_last_reload_success", ())] == 1


def test_live_watcher_feeds_the_metrics(
    volumes: tuple[KubeletWriter, KubeletWriter], settings: LiveSettings[Any], metrics_url: str
) -> None:
    import time

    podinfo, _ = volumes
    with settings:
        podinfo.write(_pod(db_url="postgres://watched/app"))
        deadline = time.monotonic() + 10
        while settings.db_url != "postgres://watched/app":
            assert time.monotonic() < deadline
            time.sleep(0.02)
    _, samples = scrape(metrics_url)
    assert samples[("canaryconf_reloads_total", (("result", "applied"),))] == 1
