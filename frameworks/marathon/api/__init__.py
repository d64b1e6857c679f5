"""Marathon's REST API v2 over the service facade (reference marathon.md §1).

    app = create_app(service, registry=Registry("marathon"), address="10.0.0.2:8080")
    HttpServer(app, "0.0.0.0", 8080).start()

| module | routes |
|---|---|
| `apps.py` | `/v2/apps`, `/v2/apps/{id}[/restart|/tasks[/{taskId}]|/versions[/{v}]]`, `/v2/apps/{group}/*[/tasks]` |
| `groups.py` | `/v2/groups[/{id}[/versions[/{v}]|/apps]]` |
| `tasks.py` | `/v2/tasks`, `/v2/tasks/delete` (and the app task views) |
| `deployments.py` | `/v2/deployments[/{id}]`, `/v2/queue`, `/v2/queue/{id}/delay` |
| `misc.py` | `/v2/info`, `/v2/leader`, `/ping`, `/health`, `/metrics[/prometheus]`, `/` |
| `events.py` | `/v2/events` (Server-Sent Events from the service's `events` bus) |
| `render.py` | AppInfo, GroupInfo, task, deployment and queue JSON from a `Snapshot`; embeds |
| `selectors.py` | `?cmd=&id=&label=` of `GET /v2/apps` |
| `proxy.py` | a standby forwards to the leader |
| `common.py` | the `MarathonService` facade, body and parameter parsing, deployment answers |

A request: proxy (standby: forward and stop) -> view (validate, call the service, render) ->
headers every answer carries (`X-Marathon-Leader`, no-cache, `X-Frame-Options: DENY`).
Errors answer in Marathon's shapes: 400 invalid JSON, 422 `ValidationError`, 404 `UnknownId`,
`ApiError` with its own status and body, 500 `{"message"}` for anything else (logged).
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from meseta.frameworks.marathon.errors import ApiError
from meseta.frameworks.marathon.group import UnknownId
from meseta.frameworks.marathon.schema import ValidationError
from meseta.http import MAX_BODY_BYTES, base_app, json_response
from meseta.log import get_logger
from meseta.metrics import Registry
from meseta.frameworks.marathon.api import apps, deployments, events, groups, misc, proxy, tasks
from meseta.frameworks.marathon.api.common import EXTENSION, MarathonService

__all__ = ["create_app", "MarathonService"]

log = get_logger("meseta.marathon.api")

LEADER_HEADER = "X-Marathon-Leader"
ALWAYS_HEADERS = {
    "Cache-Control": "no-cache, no-store, must-revalidate",
    "Pragma": "no-cache",
    "Expires": "0",
    "X-Frame-Options": "DENY",
}
_HTTP_MESSAGES = {404: "HTTP 404 Not Found", 405: "HTTP 405 Method Not Allowed",
                  413: f"Request body exceeds {MAX_BODY_BYTES} bytes"}


def create_app(service: MarathonService, *, registry: Registry | None = None,
               address: str | None = None) -> Flask:
    """The Flask app serving `service`. `registry` holds the metrics `/metrics` shows (a new
    one when None; request metrics are added to it, so one registry serves one app);
    `address` is this instance's `host:port` for the leader proxy's loop detection."""
    app = base_app("meseta.marathon")
    app.extensions[EXTENSION] = service
    registry = registry if registry is not None else Registry("marathon")
    app.extensions[misc.REGISTRY] = registry
    misc.install_request_metrics(app, registry)
    proxy.install(app, service, address)
    for module in (apps, groups, tasks, deployments, misc, events):
        app.register_blueprint(module.blueprint)
    _install_errors(app)
    _install_headers(app, service)
    return app


def _install_errors(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> Response:
        return json_response(exc.body, exc.status)

    @app.errorhandler(ValidationError)
    def invalid(exc: ValidationError) -> Response:
        return json_response(exc.to_json(), 422)

    @app.errorhandler(UnknownId)
    def unknown(exc: UnknownId) -> Response:
        return json_response({"message": exc.message}, 404)

    def http_error(exc: HTTPException) -> Any:
        if exc.code is None or exc.code < 400:       # routing redirects pass through
            return exc
        message = _HTTP_MESSAGES.get(exc.code, f"HTTP {exc.code} {exc.name}")
        return json_response({"message": message}, exc.code)

    # base_app answers these as text (Mesos style); Marathon answers JSON.
    for code in _HTTP_MESSAGES:
        app.register_error_handler(code, http_error)
    app.register_error_handler(HTTPException, http_error)

    @app.errorhandler(Exception)
    def failure(exc: Exception) -> Response:
        log.exception("request failed", method=request.method, path=request.path)
        return json_response({"message": str(exc) or type(exc).__name__}, 500)


def _install_headers(app: Flask, service: MarathonService) -> None:
    @app.after_request
    def headers(response: Response) -> Response:
        if LEADER_HEADER not in response.headers:
            leader = service.leader()
            if leader:
                response.headers[LEADER_HEADER] = f"http://{leader}"
        response.headers.update(ALWAYS_HEADERS)
        return response
