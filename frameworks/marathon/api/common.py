"""What every blueprint shares: the service facade it calls, request parsing (JSON bodies,
boolean query parameters, ids from the URL) and the deployment response.

Views validate with these, call the service, and serialise with `render`; they hold no
Marathon rules themselves.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Protocol

from flask import Response, current_app, request

from meseta.frameworks.marathon.app import AppDefinition
from meseta.frameworks.marathon.errors import ApiError
from meseta.frameworks.marathon.group import Group
from meseta.frameworks.marathon.instances import Instance
from meseta.frameworks.marathon.pathid import PathId
from meseta.frameworks.marathon.schema import ValidationError, json_type
from meseta.frameworks.marathon.snapshot import DeploymentResult, Snapshot
from meseta.http import json_response

__all__ = ["MarathonService", "service", "json_body", "json_object", "json_array", "flag",
           "path_id", "deploy", "deployed", "json_response", "DEPLOYMENT_HEADER", "EXTENSION"]

DEPLOYMENT_HEADER = "Marathon-Deployment-Id"
EXTENSION = "meseta.marathon"
_TRUE, _FALSE = ("true", "1"), ("false", "0")


class MarathonService(Protocol):
    """The facade the HTTP layer calls; thread-safe, each call runs on the service's thread.

    Calls raise `errors.ApiError`, `schema.ValidationError` or `group.UnknownId`. `change`
    functions given to `deploy` run on that thread too: they must not call the service.
    `events` is its `eventbus.EventBus` (what `/v2/events` streams)."""

    events: Any

    def snapshot(self) -> Snapshot: ...
    def deploy(self, change: Callable[[Group], Group], *, force: bool = False,
               dry_run: bool = False,
               announce: Callable[[Group, float], list[dict[str, Any]]] | None = None,
               deadline: float | None = None, rollback_on_deadline: bool | None = None
               ) -> Any: ...   # DeploymentResult | plan.DeploymentPlan
    def rollback_deployment(self, deployment_id: str, *,
                            force: bool) -> DeploymentResult | None: ...
    def kill_tasks(self, task_ids: list[str], *, scale: bool, wipe: bool,
                   force: bool) -> list[Instance] | DeploymentResult: ...
    def app_versions(self, app_id: PathId) -> list[str]: ...
    def app_version(self, app_id: PathId, version: str) -> AppDefinition: ...
    def group_versions(self, group_id: PathId) -> list[str]: ...
    def group_version(self, group_id: PathId, version: str) -> Group: ...
    def reset_delay(self, app_id: PathId) -> None: ...
    def abdicate(self) -> None: ...
    def info(self) -> dict[str, Any]: ...
    def is_leader(self) -> bool: ...
    def leader(self) -> str | None: ...
    def now(self) -> float: ...


def service() -> MarathonService:
    return current_app.extensions[EXTENSION]


def json_body() -> Any:
    """The request body as JSON; 400 in Marathon's shape when it is not JSON at all."""
    data = request.get_data(cache=True)
    try:
        return json.loads(data)
    except ValueError as exc:     # JSONDecodeError and UnicodeDecodeError
        raise ApiError(400, "Invalid JSON", details=[{"path": "/", "errors": [str(exc)]}]) from None


def json_object() -> dict[str, Any]:
    body = json_body()
    if not isinstance(body, dict):
        raise ValidationError([("/", f"expected object, got {json_type(body)}")])
    return body


def json_array() -> list[Any]:
    body = json_body()
    if not isinstance(body, list):
        raise ValidationError([("/", f"expected array, got {json_type(body)}")])
    return body


def flag(name: str, default: bool = False) -> bool:
    """A boolean query parameter (`?force=true`, `True`, `1`); 400 for anything else."""
    value = request.args.get(name)
    if value is None or value == "":
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ApiError(400, f"Query parameter '{name}' must be true or false, not '{value}'")


def path_id(text: str) -> PathId:
    """An id taken from the URL, canonical and absolute (lookups only: bodies are validated)."""
    return PathId.parse(text).canonical()


def deploy(change: Callable[[Group], Group], **options: Any) -> Any:
    """`service().deploy` with Meseta's deadline options of the request: `?deadline=<seconds>`
    fails the deployment if it has not finished by then (Marathon's run forever), and
    `?rollbackOnDeadline=true` then rolls it back. Without them the daemon's defaults hold."""
    seconds = request.args.get("deadline")
    if seconds:
        try:
            options["deadline"] = float(seconds)
        except ValueError:
            raise ApiError(400, f"Query parameter 'deadline' must be seconds, not '{seconds}'") from None
        if not options["deadline"] > 0:
            raise ApiError(400, "Query parameter 'deadline' must be more than 0 seconds")
    if request.args.get("rollbackOnDeadline") is not None:
        options["rollback_on_deadline"] = flag("rollbackOnDeadline")
    return service().deploy(change, **options)


def deployed(result: DeploymentResult, status: int = 200,
             headers: dict[str, str] | None = None, body: Any = None) -> Response:
    """A deployment-producing call's answer: `{"deploymentId","version"}` (or `body`) and the
    `Marathon-Deployment-Id` header."""
    return json_response(result.to_json() if body is None else body, status,
                         {DEPLOYMENT_HEADER: result.deployment_id, **(headers or {})})
