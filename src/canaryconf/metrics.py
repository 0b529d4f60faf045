"""Prometheus metrics for live settings (install ``canaryconf[prometheus]``).

One call registers them for a :class:`~canaryconf.LiveSettings`::

    from canaryconf import live
    from canaryconf.metrics import instrument, start_http_server

    settings = live(Settings).start()
    instrument(settings)                   # into prometheus_client's default registry
    start_http_server(9090)                # or mount metrics_app() in your WSGI app

=================================================  ==========================================
``canaryconf_reloads_total{result}``               reloads by outcome: ``applied``,
                                                   ``unchanged``, ``failed``
``canaryconf_reload_duration_seconds``             histogram of how long reloads took (read,
                                                   parse, validate, swap; handlers excluded)
``canaryconf_last_reload_timestamp_seconds``       when the last reload ran (Unix time)
``canaryconf_last_reload_success``                 1 when the last reload succeeded, 0 when it
                                                   rejected a new version (the last good
                                                   settings stay)
``canaryconf_handler_errors_total{handler}``       handlers that raised or timed out
``canaryconf_config_info{generation,digest,role}`` always 1; one label set, the current one
=================================================  ==========================================

``digest`` in ``canaryconf_config_info`` is the first 12 hex digits of the SHA-256 of the
snapshot's redacted JSON (:func:`canaryconf.redacted_dump`), not :attr:`LiveSettings.digest`:
that one covers the bytes of Secret files, and publishing it would let anyone who can read
the metrics test guesses of a weak secret offline. Pods running the same effective,
non-secret settings show the same digest. No label value ever holds a secret.

The values live in the process that calls :func:`instrument` and are read at each scrape.
Under a pre-fork server (gunicorn, uvicorn ``--workers``) every worker has its own;
prometheus_client's multiprocess mode does not add up collectors like this one. The
"Pre-fork servers" section of the automatic rollback recipe says how to expose them.

``import canaryconf`` never imports ``prometheus_client``; only this module does.
"""

from __future__ import annotations

import bisect
import itertools
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

try:
    from prometheus_client import REGISTRY, CollectorRegistry, make_asgi_app, make_wsgi_app
    from prometheus_client import start_http_server as _start_http_server
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "canaryconf.metrics needs prometheus-client: pip install 'canaryconf[prometheus]'"
    ) from exc

from canaryconf import signals
from canaryconf._live import LiveSettings
from canaryconf.change import ReloadResult
from canaryconf.settings import redacted_digest

__all__ = [
    "Instrumentation",
    "MetricsServer",
    "instrument",
    "metrics_app",
    "metrics_asgi_app",
    "start_http_server",
]

RESULTS = ("applied", "unchanged", "failed")
#: Upper bounds of the reload duration buckets, in seconds. A reload of a few small files
#: takes about a millisecond; tens of milliseconds means large volumes or a slow disk.
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class _SettingsCollector(Collector):
    """Reload counters kept from the ``reloaded`` signal; the current generation, digest
    and role read from the LiveSettings at each scrape, so they are never stale."""

    def __init__(self, live: LiveSettings[Any], namespace: str) -> None:
        self._live = weakref.ref(live)
        self._namespace = namespace
        self._lock = threading.Lock()
        self.reloads = dict.fromkeys(RESULTS, 0)
        self.duration_counts = [0] * (len(DURATION_BUCKETS) + 1)  # the last one: +Inf
        self.duration_sum = 0.0
        self.handler_errors: dict[str, int] = {}
        self.last_timestamp = time.time()
        self.last_success = 1.0
        self._digest_for: tuple[str, str] | None = None

    # -- updates ------------------------------------------------------------------------

    def reloaded(self, result: ReloadResult[Any]) -> None:
        with self._lock:
            self.reloads[result.status] = self.reloads.get(result.status, 0) + 1
            self.last_timestamp = result.timestamp
            self.last_success = 0.0 if result.failed else 1.0
            self.duration_counts[bisect.bisect_left(DURATION_BUCKETS, result.duration)] += 1
            self.duration_sum += result.duration

    def handler_failed(self, handler: str) -> None:
        with self._lock:
            self.handler_errors[handler] = self.handler_errors.get(handler, 0) + 1

    # -- scraping -----------------------------------------------------------------------

    def _settings_digest(self, live: LiveSettings[Any]) -> str:
        cached = self._digest_for
        if cached is not None and cached[0] == live.digest:
            return cached[1]
        digest = redacted_digest(live.current)[:12]
        self._digest_for = (live.digest, digest)
        return digest

    def collect(self) -> Iterator[Metric]:
        ns = self._namespace
        with self._lock:
            reloads = dict(self.reloads)
            errors = dict(self.handler_errors)
            timestamp, success = self.last_timestamp, self.last_success
            duration_counts, duration_sum = list(self.duration_counts), self.duration_sum
        family = CounterMetricFamily(
            f"{ns}_reloads", "Reloads of the live settings, by result.", labels=["result"]
        )
        for result in RESULTS:
            family.add_metric([result], reloads.get(result, 0))
        yield family
        cumulative = list(itertools.accumulate(duration_counts))
        bounds = [*(repr(float(b)) for b in DURATION_BUCKETS), "+Inf"]
        yield HistogramMetricFamily(
            f"{ns}_reload_duration_seconds",
            "Time a reload took: read, parse, validate and swap (handlers not included).",
            buckets=list(zip(bounds, cumulative, strict=True)),
            sum_value=duration_sum,
        )
        yield GaugeMetricFamily(
            f"{ns}_last_reload_timestamp_seconds",
            "Unix time of the last reload (of the first load before any reload).",
            value=timestamp,
        )
        yield GaugeMetricFamily(
            f"{ns}_last_reload_success",
            "1 if the last reload succeeded, 0 if it rejected a new version.",
            value=success,
        )
        handlers = CounterMetricFamily(
            f"{ns}_handler_errors",
            "Change handlers that raised or timed out, by handler.",
            labels=["handler"],
        )
        for handler, count in sorted(errors.items()):
            handlers.add_metric([handler], count)
        yield handlers
        info = GaugeMetricFamily(
            f"{ns}_config_info",
            "The settings in use: generation directory, digest of the redacted settings,"
            " rollout role. Always 1.",
            labels=["generation", "digest", "role"],
        )
        live = self._live()
        if live is not None:
            info.add_metric(
                [live.generation or "", self._settings_digest(live), live.rollout_role or ""], 1
            )
        yield info

    def describe(self) -> Iterable[Metric]:
        ns = self._namespace
        return [
            CounterMetricFamily(f"{ns}_reloads", "", labels=["result"]),
            HistogramMetricFamily(f"{ns}_reload_duration_seconds", ""),
            GaugeMetricFamily(f"{ns}_last_reload_timestamp_seconds", ""),
            GaugeMetricFamily(f"{ns}_last_reload_success", ""),
            CounterMetricFamily(f"{ns}_handler_errors", "", labels=["handler"]),
            GaugeMetricFamily(f"{ns}_config_info", "", labels=["generation", "digest", "role"]),
        ]


@dataclass
class Instrumentation:
    """What :func:`instrument` registered; :meth:`close` removes it again."""

    collector: Collector
    registry: CollectorRegistry
    _close: Callable[[], None]

    def close(self) -> None:
        """Unregister the metrics and stop listening to the settings' signals."""
        self._close()


def instrument(
    live: LiveSettings[Any],
    registry: CollectorRegistry | None = None,
    *,
    namespace: str = "canaryconf",
) -> Instrumentation:
    """Register canaryconf's metrics for ``live`` in ``registry`` (default: the
    prometheus_client default registry). One LiveSettings per registry: names would clash.

    >>> from prometheus_client import CollectorRegistry, generate_latest
    >>> from canaryconf import CanarySettings, live
    >>> class Settings(CanarySettings):
    ...     flag: bool = False
    >>> settings = live(Settings)
    >>> registry = CollectorRegistry()
    >>> _ = instrument(settings, registry)
    >>> _ = settings.reload()
    >>> b'canaryconf_reloads_total{result="unchanged"} 1.0' in generate_latest(registry)
    True
    """
    target = REGISTRY if registry is None else registry
    collector = _SettingsCollector(live, namespace)
    target.register(collector)

    def on_reloaded(sender: Any, result: ReloadResult[Any], **_: Any) -> None:
        collector.reloaded(result)

    def on_handler_failed(sender: Any, handler: str, **_: Any) -> None:
        collector.handler_failed(handler)

    signals.reloaded.connect(on_reloaded, sender=live, weak=False)
    signals.handler_failed.connect(on_handler_failed, sender=live, weak=False)

    def close() -> None:
        signals.reloaded.disconnect(on_reloaded, sender=live)
        signals.handler_failed.disconnect(on_handler_failed, sender=live)
        target.unregister(collector)

    return Instrumentation(collector, target, close)


def metrics_app(registry: CollectorRegistry | None = None) -> Callable[..., Any]:
    """A WSGI app serving the exposition format (mount it at ``/metrics``)."""
    return make_wsgi_app(REGISTRY if registry is None else registry)


def metrics_asgi_app(registry: CollectorRegistry | None = None) -> Callable[..., Any]:
    """An ASGI app serving the exposition format (``app.mount("/metrics", ...)``)."""
    return make_asgi_app(REGISTRY if registry is None else registry)


@dataclass
class MetricsServer:
    """A running exposition endpoint; :meth:`close` stops it."""

    server: Any
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    @property
    def url(self) -> str:
        host = self.server.server_address[0]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def start_http_server(
    port: int,
    addr: str = "0.0.0.0",  # noqa: S104  (Prometheus scrapes the pod from outside)
    registry: CollectorRegistry | None = None,
) -> MetricsServer:
    """Serve the metrics over HTTP in a daemon thread (port 0: any free port).

    >>> server = start_http_server(0, "127.0.0.1")
    >>> server.url.startswith("http://127.0.0.1:")
    True
    >>> server.close()
    """
    server, thread = _start_http_server(port, addr, REGISTRY if registry is None else registry)
    return MetricsServer(server, thread)
