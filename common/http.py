"""Serving Flask apps: cheroot's thread pool (streams and SSE need real threads), plus the
pieces every daemon's API shares (JSON with Mesos's `?jsonp=`, /metrics, /health)."""
from __future__ import annotations

import json
import threading
from typing import Any

from cheroot import wsgi
from flask import Flask, Response, request

from meseta.metrics import CONTENT_TYPE_LATEST

MAX_BODY_BYTES = 4 * 1024 * 1024


class HttpServer:
    """A cheroot server on its own thread; port 0 picks a free port (see `.port`)."""

    def __init__(self, app: Any, host: str, port: int, threads: int = 16, name: str = "http") -> None:
        self.server = wsgi.Server((host, port), app, numthreads=threads, server_name=name,
                                  max=-1, request_queue_size=128, shutdown_timeout=1)
        self.server.max_request_body_size = MAX_BODY_BYTES
        self._thread: threading.Thread | None = None
        self.name = name

    def start(self) -> None:
        self.server.prepare()       # binds now, so the port is known before we return
        self.start_prepared()

    def start_prepared(self) -> None:
        self._thread = threading.Thread(target=self.server.serve, name=self.name, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self.server.bind_addr[1]

    def stop(self) -> None:
        self.server.stop()
        if self._thread:
            self._thread.join(5)


def json_response(body: Any, status: int = 200, headers: dict | None = None) -> Response:
    """Compact JSON; honours Mesos's `?jsonp=<callback>`."""
    text = json.dumps(body, separators=(",", ":"))
    callback = request.args.get("jsonp")
    if callback and callback.replace("_", "").replace(".", "").isalnum():
        return Response(f"{callback}({text});", status, headers, mimetype="text/javascript")
    return Response(text, status, headers, mimetype="application/json")


def text_error(message: str, status: int) -> Response:
    """Mesos answers errors as plain text."""
    return Response(message + "\n", status, mimetype="text/plain")


def metrics_response(payload: bytes) -> Response:
    return Response(payload, 200, mimetype=CONTENT_TYPE_LATEST.split(";")[0],
                    headers={"Content-Type": CONTENT_TYPE_LATEST})


def base_app(name: str) -> Flask:
    app = Flask(name)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False

    @app.errorhandler(404)
    def not_found(_exc: Exception) -> Response:
        return text_error(f"No such endpoint: {request.path}", 404)

    @app.errorhandler(405)
    def bad_method(_exc: Exception) -> Response:
        return text_error(f"Method {request.method} is not allowed on {request.path}", 405)

    @app.errorhandler(413)
    def too_large(_exc: Exception) -> Response:
        return text_error(f"Request body exceeds {MAX_BODY_BYTES} bytes", 413)

    return app


def add_metrics_routes(app: Flask, daemon: Any) -> None:
    """/metrics (Prometheus) and /metrics/snapshot (Mesos's flat JSON), one source for both:
    `daemon.metrics` (a meseta.metrics.Registry) and `daemon.metrics_snapshot()`."""
    app.add_url_rule("/metrics/snapshot", "metrics_snapshot",
                     lambda: json_response(daemon.metrics_snapshot()))
    app.add_url_rule("/metrics", "metrics", lambda: metrics_response(daemon.metrics.render()))
