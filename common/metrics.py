"""A Prometheus registry per daemon (never the global default registry).

Several daemons may share one process (`meseta up`, tests), so each builds its own
`CollectorRegistry` and its metric objects hang off a small namespace object.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST

__all__ = ["Registry", "CONTENT_TYPE_LATEST"]


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

    def render(self) -> bytes:
        return generate_latest(self.registry)
