"""Mesos-DNS's HTTP API (reference mesos-dns.md §7), plus /health and /metrics.

Every view reads the daemon's current RecordSet once (one attribute read, no lock) and
serialises what `meseta.dns.records` computes; nothing here decides what a record is.

    GET /v1/version                 {"Service": "Mesos-DNS", "Version", "URL"}
    GET /v1/config                  the effective config, Go field names
    GET /v1/hosts/{host}            [{"host", "ip"}]          (no match: one all-empty entry)
    GET /v1/hosts/{host}/ports      501, as upstream
    GET /v1/services/{service}      [{"service", "host", "ip", "port"}]
    GET /v1/enumerate               {"frameworks": [...]}     (404 when EnumerationOn is off)
    GET /v1/axfr                    every record, the SOA fields
    GET /health                     200 once records are built and fresh enough, else 503
    GET /metrics                    Prometheus text
"""
from __future__ import annotations

import time
from typing import Any

from flask import Response

from meseta.http import base_app, json_response, metrics_response, text_error


def create_app(daemon: Any):
    app = base_app("meseta.dns")
    config = daemon.config

    @app.get("/v1/version")
    def version() -> Response:
        from meseta.dns.daemon import MESOS_DNS_URL, VERSION
        return json_response({"Service": "Mesos-DNS", "Version": VERSION, "URL": MESOS_DNS_URL})

    @app.get("/v1/config")
    def show_config() -> Response:
        return json_response(config.to_json())

    @app.get("/v1/hosts/<path:host>")
    def hosts(host: str) -> Response:
        if host.endswith("/ports"):      # `<path:>` would otherwise swallow the suffix
            return text_error("To be implemented...", 501)
        return json_response(daemon.get_records().hosts(host))

    @app.get("/v1/services/<path:service>")
    def services(service: str) -> Response:
        return json_response(daemon.get_records().services(service))

    @app.get("/v1/enumerate")
    def enumerate_records() -> Response:
        if not config.enumeration_on:
            return text_error("Enumeration is off (EnumerationOn: false)", 404)
        return json_response(daemon.get_records().to_enumerate())

    @app.get("/v1/axfr")
    def axfr() -> Response:
        if not config.enumeration_on:
            return text_error("Enumeration is off (EnumerationOn: false)", 404)
        stats = daemon.follower.stats
        return json_response({
            "Records": daemon.get_records().to_axfr_records(),
            "Serial": int(stats.last_refresh), "Mname": config.soa_mname,
            "Rname": config.soa_rname, "TTL": config.ttl,
            "RefreshSeconds": config.refresh_seconds, "Domain": config.domain})

    @app.get("/health")
    def health() -> Response:
        body = health_body(daemon)
        return json_response(body, 200 if body["ready"] else 503)

    app.add_url_rule("/metrics", "metrics", lambda: metrics_response(daemon.metrics.render()))
    return app


def health_body(daemon: Any) -> dict[str, Any]:
    stats = daemon.follower.stats
    # Ready: records built and, with DNS on, the DNS socket open (it opens after the build).
    return {"ready": daemon.follower.ready.is_set() and (daemon.server is not None
                                                          or not daemon.config.dns_on),
            "leader": stats.leader or None,
            "records_age_seconds": round(time.time() - stats.last_refresh, 3)
            if stats.last_refresh else None,
            "event_bus": {"epoch": stats.epoch or None, "seq": stats.seq, "events": stats.events},
            "dns": daemon.dns_address if daemon.server is not None else None}
