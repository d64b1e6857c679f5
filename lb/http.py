"""The load balancer's HTTP API, with marathon-lb's endpoint names.

    GET  /health                 200 when HAProxy runs and Marathon's apps are in; JSON details
    GET  /metrics                Prometheus (meseta_lb_*); /metrics/snapshot the flat JSON
    GET  /flags                  the effective configuration
    GET  /_haproxy_getconfig     the haproxy.cfg HAProxy runs, as text
    GET  /_haproxy_getpids       HAProxy's pids, space-separated (marathon-lb: `pidof haproxy`)
    GET  /_haproxy_getvhostmap   \\ marathon-lb's --haproxy-map files; Meseta renders ACLs
    GET  /_haproxy_getappmap     /  instead, so both are empty
    GET|POST /_mlb_signal/hup    fetch every app again and regenerate (SIGHUP)
    GET|POST /_mlb_signal/usr1   validate and reload the current config (SIGUSR1)

HAProxy's stats port (9090) proxies the `/_haproxy_*` and `/_mlb_signal/*` paths here, so
marathon-lb's URLs work unchanged on it.
"""
from __future__ import annotations

from typing import Any

from flask import Flask, Response

from meseta.http import add_metrics_routes, base_app, json_response


def create_app(daemon: Any) -> Flask:
    app = base_app("meseta.lb")

    @app.get("/health")
    def health() -> Response:
        status = daemon.status()
        return json_response(status, 200 if status["healthy"] else 503)

    @app.get("/flags")
    def flags() -> Response:
        return json_response({"flags": daemon.flags()})

    @app.get("/_haproxy_getconfig")
    def getconfig() -> Response:
        return Response(daemon.haproxy.last_config, 200, mimetype="text/plain")

    @app.get("/_haproxy_getpids")
    def getpids() -> Response:
        return Response(" ".join(str(pid) for pid in daemon.haproxy.pids()) + "\n", 200,
                        mimetype="text/plain")

    @app.get("/_haproxy_getvhostmap")
    @app.get("/_haproxy_getappmap")
    def getmap() -> Response:
        return Response("", 200, mimetype="text/plain")

    @app.route("/_mlb_signal/hup", methods=["GET", "POST"])
    def signal_hup() -> Response:
        daemon.hup()
        return Response("Sent SIGHUP signal to marathon-lb\n", 200, mimetype="text/plain")

    @app.route("/_mlb_signal/usr1", methods=["GET", "POST"])
    def signal_usr1() -> Response:
        daemon.usr1()
        return Response("Sent SIGUSR1 signal to marathon-lb\n", 200, mimetype="text/plain")

    add_metrics_routes(app, daemon)
    return app
