"""A Prometheus registry per daemon (never the global default registry).

Several daemons may share one process (`meseta up`, tests), so each builds its own
`CollectorRegistry` and its metric objects hang off a small namespace object.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
import re
from typing import Callable, Iterable

__all__ = ["Registry", "SnapshotCollector", "CONTENT_TYPE_LATEST"]

_INVALID = re.compile(r"[^a-zA-Z0-9_]")


class SnapshotCollector(Collector):
    """Exports a Mesos-style flat snapshot ({"master/cpus_total": 4.0, ...}) as gauges
    (`meseta_master_cpus_total`), read fresh at every scrape: one source for both endpoints."""

    def __init__(self, snapshot: Callable[[], dict[str, float]], prefix: str = "meseta") -> None:
        self._snapshot = snapshot
        self._prefix = prefix

    def describe(self) -> list:
        # Without this, registering calls collect() to learn the names: a loop round trip
        # before the daemon's loop even runs.
        return []

    def collect(self) -> Iterable[GaugeMetricFamily]:
        try:
            values = self._snapshot()
        except Exception:       # a scrape during shutdown must not raise through the server
            return
        for key, value in sorted(values.items()):
            name = f"{self._prefix}_{_INVALID.sub('_', key)}"
            yield GaugeMetricFamily(name, f"Mesos metric {key}", value=float(value))


class Registry:
    """Owns a CollectorRegistry and makes metrics in it."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.registry = CollectorRegistry(auto_describe=True)

    def counter(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
        return Counter(name, doc, labels, namespace=self.namespace, registry=self.registry)

    def gauge(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(name, doc, labels, namespace=self.namespace, registry=self.registry)

    def histogram(self, name: str, doc: str, buckets: tuple[float, ...] | None = None) -> Histogram:
        kwargs = {"buckets": buckets} if buckets else {}
        return Histogram(name, doc, namespace=self.namespace, registry=self.registry, **kwargs)

    def export_snapshot(self, snapshot: Callable[[], dict[str, float]]) -> None:
        self.registry.register(SnapshotCollector(snapshot))

    def render(self) -> bytes:
        return generate_latest(self.registry)
