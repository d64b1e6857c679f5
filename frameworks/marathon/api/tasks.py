"""Tasks: `GET /v2/tasks`, `POST /v2/tasks/delete`, and the task views the apps resource
delegates to (`/v2/apps/{id}/tasks[/{taskId}]`, `/v2/apps/{group}/*/tasks`).

Listings answer `{"tasks":[…]}`, or with `Accept: text/plain` the endpoint lines the old
haproxy-marathon-bridge reads: per service port of each app, `<app_safe_id>\\t<servicePort>\\t`
followed by `host:hostPort\\t` of every running task (reference marathon.md §1.4).
"""

from __future__ import annotations

from typing import Any, Iterable

from flask import Blueprint, Response, request

from meseta import proto
from meseta.frameworks.marathon.app import AppDefinition
from meseta.frameworks.marathon.errors import ApiError
from meseta.frameworks.marathon.group import UnknownId, find_app, find_group, transitive_apps
from meseta.frameworks.marathon.instances import Instance
from meseta.frameworks.marathon.pathid import PathId, PathIdError, parse_task_id
from meseta.frameworks.marathon.snapshot import DeploymentResult, Snapshot
from meseta.frameworks.marathon.api.common import (deployed, flag, json_object, json_response,
                                                   service)
from meseta.frameworks.marathon.api.render import active_instances, service_ports, task_json

__all__ = ["blueprint", "app_tasks", "kill_app_tasks", "kill_app_task", "endpoints_text"]

blueprint = Blueprint("tasks", __name__)

SCALE_AND_WIPE = "You cannot use scale and wipe at the same time."


def _wants_text() -> bool:
    return request.accept_mimetypes.best_match(["application/json", "text/plain"]) == "text/plain"


def endpoints_text(apps: Iterable[AppDefinition], snapshot: Snapshot) -> str:
    """Marathon's `EndpointsHelper`: one line per service port of each app, listing its running
    tasks' host and host port at the same index (an app without ports: one line of hosts)."""
    lines = []
    for app in apps:
        running = [i for i in active_instances(snapshot, app.id) if i.running]
        ports = service_ports(app)
        name = app.id.safe_path()
        if not ports:
            lines.append(f"{name}\t \t" + "".join(f"{i.host} " for i in running))
        for index, port in enumerate(ports):
            lines.append(f"{name}\t{port}\t" + "".join(
                f"{i.host}:{i.host_ports[index] if index < len(i.host_ports) else 0}\t"
                for i in running))
    return "".join(line + "\n" for line in lines)


def _listing(apps: list[AppDefinition], snapshot: Snapshot,
             states: frozenset[str] = frozenset()) -> Response:
    if _wants_text():
        return Response(endpoints_text(apps, snapshot), 200, mimetype="text/plain")
    tasks = [task_json(i, app, snapshot) for app in apps for i in active_instances(snapshot, app.id)
             if not states or i.state in states]
    return json_response({"tasks": tasks})


def app_tasks(app_id: PathId, *, group: bool = False) -> Response:
    """`GET /v2/apps/{id}/tasks`, or with `group` every app below `{id}` (`/*/tasks`)."""
    snapshot = service().snapshot()
    if group:
        found = find_group(snapshot.root, app_id)
        return _listing(transitive_apps(found) if found else [], snapshot)
    app = find_app(snapshot.root, app_id)
    if app is None:
        raise UnknownId(f"App '{app_id}' does not exist")
    return _listing([app], snapshot)


def _kill_flags() -> tuple[bool, bool, bool]:
    scale, wipe, force = flag("scale"), flag("wipe"), flag("force")
    if scale and wipe:
        raise ApiError(400, SCALE_AND_WIPE)
    return scale, wipe, force


def _killed(result: list[Instance] | DeploymentResult, *, single: bool = False) -> Response:
    if isinstance(result, DeploymentResult):
        return deployed(result)
    snapshot = service().snapshot()
    tasks = [task_json(i, find_app(snapshot.root, i.app_id), snapshot) for i in result]
    return json_response({"task": tasks[0]} if single else {"tasks": tasks})


def kill_app_tasks(app_id: PathId) -> Response:
    """`DELETE /v2/apps/{id}/tasks?host=&scale=&wipe=&force=`: every task of the app, or those
    on `host`."""
    scale, wipe, force = _kill_flags()
    snapshot = service().snapshot()
    if find_app(snapshot.root, app_id) is None:
        raise UnknownId(f"App '{app_id}' does not exist")
    host = request.args.get("host")
    ids = [i.task_id for i in active_instances(snapshot, app_id) if host is None or i.host == host]
    return _killed(service().kill_tasks(ids, scale=scale, wipe=wipe, force=force))


def kill_app_task(app_id: PathId, task_id: str) -> Response:
    """`DELETE /v2/apps/{id}/tasks/{taskId}`: `{"task": …}`, or a deployment with `scale`."""
    scale, wipe, force = _kill_flags()
    snapshot = service().snapshot()
    if not any(i.task_id == task_id for i in active_instances(snapshot, app_id)):
        raise UnknownId(f"Task '{task_id}' does not exist")
    result = service().kill_tasks([task_id], scale=scale, wipe=wipe, force=force)
    if not result:      # ended meanwhile
        raise UnknownId(f"Task '{task_id}' does not exist")
    return _killed(result, single=True)


# Query values of `status` (Marathon's names, lower case) -> the Mesos states they stand for.
_STATUS = {state.removeprefix("TASK_").lower(): state for state in proto.TASK_STATES}


@blueprint.get("/v2/tasks")
def list_tasks() -> Response:
    """`?status=running&status[]=staging`; unknown values are ignored, as Marathon does."""
    wanted = request.args.getlist("status") + request.args.getlist("status[]")
    states = frozenset(_STATUS[s.lower()] for s in wanted if s.lower() in _STATUS)
    snapshot = service().snapshot()
    return _listing(transitive_apps(snapshot.root), snapshot, states)


@blueprint.post("/v2/tasks/delete")
def delete_tasks() -> Response:
    """Body `{"ids": [...]}`; ids of unknown tasks are ignored, malformed ones are a 400."""
    scale, wipe, force = _kill_flags()
    body = json_object()
    ids: Any = body.get("ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ApiError(400, "Expected a body {\"ids\": [\"<task id>\", ...]}")
    for task_id in ids:
        try:
            parse_task_id(task_id)
        except PathIdError:
            raise ApiError(400, f"Invalid task id '{task_id}'") from None
    return _killed(service().kill_tasks(ids, scale=scale, wipe=wipe, force=force))
