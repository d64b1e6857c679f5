"""Info, leader, ping, health and metrics (reference marathon.md §1.8).

    GET /v2/info            the service's info document
    GET /v2/leader          {"leader": "host:port"}, 404 when none is known
    DELETE /v2/leader       abdicate: {"message": "Leadership abdicated"}
    GET /ping               pong (text/plain; "pong" as JSON when JSON is preferred)
    GET /health             200, empty, as every Meseta daemon answers
    GET /metrics            Prometheus text; with `Accept: application/json` Marathon's
                            Dropwizard-style JSON from the same registry
    GET /metrics/prometheus Prometheus text always
    GET /                   302 to /ui/

`/health` and `/metrics` are answered by every instance itself, leader or not (Marathon 1.10
proxies them to the leader): each process reports its own health and its own metrics.
"""

from __future__ import annotations

import math
import time
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, redirect, request

from meseta.frameworks.marathon.errors import not_found
from meseta.http import metrics_response
from meseta.metrics import Registry
from meseta.frameworks.marathon.api.common import json_response, service

__all__ = ["blueprint", "install_request_metrics", "dropwizard_json", "REGISTRY"]

blueprint = Blueprint("misc", __name__)
REGISTRY = "meseta.marathon.registry"     # app.extensions key
DROPWIZARD_VERSION = "4.0.0"
QUANTILES = (("p50", 0.5), ("p75", 0.75), ("p95", 0.95), ("p98", 0.98), ("p99", 0.99),
             ("p999", 0.999))


@blueprint.get("/v2/info")
def info() -> Response:
    return json_response(service().info())


@blueprint.get("/v2/leader")
def leader() -> Response:
    address = service().leader()
    if address is None:
        raise not_found("There is no leader")
    return json_response({"leader": address})


@blueprint.delete("/v2/leader")
def abdicate() -> Response:
    service().abdicate()
    return json_response({"message": "Leadership abdicated"})


def _prefers_json() -> bool:
    """JSON only when asked for over text (`*/*` and no Accept at all get text)."""
    best = request.accept_mimetypes.best_match(["text/plain", "application/json"])
    return best == "application/json"


@blueprint.get("/ping")
def ping() -> Response:
    if _prefers_json():
        return json_response("pong")
    return Response("pong", 200, mimetype="text/plain")


@blueprint.get("/health")
def health() -> Response:
    return Response("", 200)


@blueprint.get("/")
def root() -> Response:
    return redirect("/ui/", 302)


def _registry() -> Registry:
    return current_app.extensions[REGISTRY]


@blueprint.get("/metrics")
def metrics() -> Response:
    if _prefers_json():
        return json_response(dropwizard_json(_registry()))
    return metrics_response(_registry().render())


@blueprint.get("/metrics/prometheus")
def prometheus() -> Response:
    return metrics_response(_registry().render())


# ---------------------------------------------------------------------------------------------
# Request metrics

def install_request_metrics(app: Flask, registry: Registry) -> None:
    """Count every request by method and status and time it (`marathon_http_requests_total`,
    `marathon_http_request_duration_seconds`). Registered first so proxied requests and
    errors are counted too."""
    requests = registry.counter("http_requests", "HTTP requests answered", ("method", "status"))
    duration = registry.histogram("http_request_duration_seconds", "Time to answer a request")

    @app.before_request
    def start() -> None:
        g.request_started = time.monotonic()

    @app.after_request
    def count(response: Response) -> Response:
        requests.labels(request.method, str(response.status_code)).inc()
        started = g.get("request_started")
        if started is not None:
            duration.observe(time.monotonic() - started)
        return response


# ---------------------------------------------------------------------------------------------
# Prometheus registry -> Marathon's /metrics JSON

def _series_name(name: str, labels: dict[str, str]) -> str:
    if not labels:
        return name
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def _quantile(buckets: list[tuple[float, float]], count: float, q: float) -> float:
    """Linear interpolation inside the bucket holding rank q*count (Prometheus's
    histogram_quantile); the +Inf bucket answers the highest finite bound."""
    rank = q * count
    lower, below = 0.0, 0.0
    for bound, cumulative in buckets:
        if cumulative >= rank:
            if math.isinf(bound):
                return lower
            inside = cumulative - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 0.0)
        lower, below = bound, cumulative
    return lower


def _histogram(name: str, samples: list[Any]) -> dict[str, dict[str, float]]:
    series: dict[str, dict[str, Any]] = {}
    for sample in samples:
        labels = {k: v for k, v in sample.labels.items() if k != "le"}
        entry = series.setdefault(_series_name(name, labels),
                                  {"buckets": [], "count": 0.0, "sum": 0.0})
        if sample.name.endswith("_bucket"):
            entry["buckets"].append((float(sample.labels["le"]), sample.value))
        elif sample.name.endswith("_count"):
            entry["count"] = sample.value
        elif sample.name.endswith("_sum"):
            entry["sum"] = sample.value
    out = {}
    for series_name, entry in series.items():
        count, buckets = entry["count"], sorted(entry["buckets"])
        values: dict[str, float] = {"count": count,
                                    "mean": entry["sum"] / count if count else 0.0}
        values.update({key: _quantile(buckets, count, q) if count else 0.0 for key, q in QUANTILES})
        out[series_name] = values
    return out


def dropwizard_json(registry: Registry) -> dict[str, Any]:
    """Counters as `{"count"}`, gauges as `{"value"}`, histograms as count, mean and
    quantiles estimated from the buckets, summaries as timers (count, mean). Labelled series
    are named `name{label="value"}`. Prometheus has no meters: that section stays empty."""
    out: dict[str, Any] = {"version": DROPWIZARD_VERSION, "counters": {}, "gauges": {},
                           "histograms": {}, "meters": {}, "timers": {}}
    for family in registry.registry.collect():
        if family.type == "counter":
            for s in family.samples:
                if s.name.endswith("_total"):
                    out["counters"][_series_name(family.name, s.labels)] = {"count": s.value}
        elif family.type == "gauge":
            for s in family.samples:
                out["gauges"][_series_name(s.name, s.labels)] = {"value": s.value}
        elif family.type == "histogram":
            out["histograms"].update(_histogram(family.name, family.samples))
        elif family.type == "summary":
            sums = {_series_name(family.name, s.labels): s.value
                    for s in family.samples if s.name.endswith("_sum")}
            for s in family.samples:
                if s.name.endswith("_count"):
                    name = _series_name(family.name, s.labels)
                    mean = sums.get(name, 0.0) / s.value if s.value else 0.0
                    out["timers"][name] = {"count": s.value, "mean": mean}
    return out
