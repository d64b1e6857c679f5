"""`/v2/apps`: list, create, update, delete, restart, versions, and the app's tasks
(reference marathon.md §1.2).

Ids contain slashes, so one rule takes `/v2/apps/<path>` and `_route` reads the suffix the way
Marathon's `{id:.+}/…` resources do: a last segment `restart`, `tasks`, `versions` or `*`, or
`…/tasks/{taskId}`, `…/versions/{version}`. That is why those words cannot end an app id.

Every write is a change of the root group handed to `service.deploy`; the change reads the
current app from the root it is given, so a read-modify-write (`PATCH`, partial `PUT`) sees
exactly the state it replaces. Anything that needs the service (an old version, the clock) is
fetched before: a change runs on the service's thread and must not call back into it.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

from flask import Blueprint, Response, abort, request

from meseta.frameworks.marathon.app import AppDefinition, merge, restarted
from meseta.frameworks.marathon.errors import conflict
from meseta.frameworks.marathon.group import (Group, UnknownId, find_app, find_group, put_app,
                                              remove_app, transitive_apps)
from meseta.frameworks.marathon.pathid import PathId, PathIdError, resolve
from meseta.frameworks.marathon.schema import ValidationError, json_type, prefixed
from meseta.frameworks.marathon.api import tasks
from meseta.frameworks.marathon.api.common import (deploy, deployed, flag, json_array,
                                                   json_object, json_response, path_id, service)
from meseta.frameworks.marathon.api.events import api_posted
from meseta.frameworks.marathon.api.render import (LIST_ALWAYS, SHOW_ALWAYS, app_embeds,
                                                   app_info, created_app_info)
from meseta.frameworks.marathon.api.selectors import app_filter

__all__ = ["blueprint"]

blueprint = Blueprint("apps", __name__)

VERSION_ALONE = "The 'version' field may only be combined with the 'id' field."
_OUTPUT_ONLY = ("version", "versionInfo")   # stamped by the service, never taken from a body


# ---------------------------------------------------------------------------------------------
# Turning a body into the new app, given the root it changes

def _rollback_version(body: dict[str, Any]) -> str | None:
    """`{"version": v}` (with at most an `id`) asks for a stored version back."""
    if "version" not in body:
        return None
    if set(body) - {"id", "version"}:
        raise ValidationError([("/", VERSION_ALONE)])
    if not isinstance(body["version"], str):
        raise ValidationError([("/version", f"expected string, got {json_type(body['version'])}")])
    return body["version"]


def _body_id(body: Any) -> PathId:
    if not isinstance(body, dict):
        raise ValidationError([("/", f"expected object, got {json_type(body)}")])
    if "id" not in body:
        raise ValidationError([("/id", "is required")])
    try:
        return resolve(body["id"])
    except PathIdError as error:
        raise ValidationError([("/id", m) for m in error.errors]) from None


@contextmanager
def _element(index: int | None) -> Iterator[None]:
    """Problems of the `index`th element of an array body get its path, `/(index)/...`."""
    try:
        yield
    except ValidationError as error:
        if index is None:
            raise
        raise ValidationError(prefixed(f"/({index})", error.problems)) from None


def _updated(root: Group, app_id: PathId, body: dict[str, Any], *, partial: bool,
             create: bool) -> AppDefinition:
    """The app `body` makes of `app_id` in `root`: merged onto the existing app when `partial`,
    else a whole new definition; UnknownId when it does not exist and `create` is false."""
    existing = find_app(root, app_id)
    if existing is None and not create:
        raise UnknownId(f"App '{app_id}' does not exist")
    if existing is not None and partial:
        return merge(existing, body)
    doc = {k: v for k, v in body.items() if k not in _OUTPUT_ONLY}
    return AppDefinition.from_json({**doc, "id": str(app_id)})


class _Batch:
    """App updates (`PUT`/`PATCH /v2/apps` bodies, or one app's) as one change of the root.
    Rollbacks to stored versions are looked up when it is made, before deploying; `created`
    says afterwards which apps the change created."""

    def __init__(self, items: list[tuple[PathId, dict[str, Any]]], *, partial: bool,
                 create: bool, array: bool) -> None:
        self.items, self.partial, self.create, self.array = items, partial, create, array
        self.rollbacks: dict[PathId, AppDefinition] = {}
        for index, (app_id, body) in enumerate(items):
            with _element(index if array else None):
                version = _rollback_version(body)
            if version is not None:
                self.rollbacks[app_id] = service().app_version(app_id, version)
        self.created: set[PathId] = set()

    def __call__(self, root: Group) -> Group:
        self.created = set()
        for index, (app_id, body) in enumerate(self.items):
            if find_app(root, app_id) is None:
                self.created.add(app_id)
            with _element(index if self.array else None):
                app = self.rollbacks.get(app_id) or _updated(
                    root, app_id, body, partial=self.partial, create=self.create)
            root = put_app(root, app)
        return root

    def posted(self) -> Callable[[Group, float], list[dict[str, Any]]]:
        """The `api_post_event`s of this write, one per app."""
        return api_posted(app_id for app_id, _ in self.items)


def _batch(*, partial: bool, create: bool) -> _Batch:
    items = []
    for index, body in enumerate(json_array()):
        with _element(index):
            items.append((_body_id(body), body))
    return _Batch(items, partial=partial, create=create, array=True)


# ---------------------------------------------------------------------------------------------
# /v2/apps

@blueprint.get("/v2/apps", strict_slashes=False)
def list_apps() -> Response:
    select = app_filter(request.args.get("cmd"), request.args.get("id"), request.args.get("label"))
    embed = app_embeds(request.args.getlist("embed"), "apps.", "app.", always=LIST_ALWAYS)
    snapshot = service().snapshot()
    return json_response({"apps": [app_info(a, snapshot, embed)
                                   for a in transitive_apps(snapshot.root) if select(a)]})


@blueprint.post("/v2/apps", strict_slashes=False)
def create() -> Response:
    app = AppDefinition.from_json(json_object())

    def change(root: Group) -> Group:
        if find_app(root, app.id) is not None:
            raise conflict(f"An app with id [{app.id}] already exists.")
        if find_group(root, app.id) is not None:
            raise conflict(f"A group with id [{app.id}] already exists.")
        return put_app(root, app)

    result = deploy(change, force=flag("force"), announce=api_posted([app.id]))
    stored = find_app(service().snapshot().root, app.id) or app
    return deployed(result, 201, {"Location": f"/v2/apps{app.id}"},
                    body=created_app_info(stored, result.deployment_id))


@blueprint.put("/v2/apps", strict_slashes=False)
def update_many() -> Response:
    change = _batch(partial=flag("partialUpdate", True), create=True)
    return deployed(deploy(change, force=flag("force"), announce=change.posted()))


@blueprint.patch("/v2/apps", strict_slashes=False)
def patch_many() -> Response:
    change = _batch(partial=True, create=False)
    return deployed(deploy(change, force=flag("force"), announce=change.posted()))


# ---------------------------------------------------------------------------------------------
# /v2/apps/{id}[/suffix]

def _route(rest: str) -> tuple[str, PathId, str | None]:
    """(what, app or group id, task id or version) of the path below `/v2/apps/`."""
    segments = [s for s in rest.split("/") if s]
    last, before = segments[-1], segments[:-1]
    if last == "*":
        return "group_apps", path_id("/".join(before)), None
    if last == "tasks" and before and before[-1] == "*":
        return "group_tasks", path_id("/".join(before[:-1])), None
    if last in ("restart", "tasks", "versions") and before:
        return last, path_id("/".join(before)), None
    if len(before) >= 2 and before[-1] == "tasks":
        return "task", path_id("/".join(before[:-1])), last
    if len(before) >= 2 and before[-1] == "versions":
        return "version", path_id("/".join(before[:-1])), last
    return "app", path_id(rest), None


def _show(app_id: PathId, _: str | None) -> Response:
    embed = app_embeds(request.args.getlist("embed"), "app.", "apps.", always=SHOW_ALWAYS)
    snapshot = service().snapshot()
    app = find_app(snapshot.root, app_id)
    if app is None:
        raise UnknownId(f"App '{app_id}' does not exist")
    return json_response({"app": app_info(app, snapshot, embed)})


def _group_apps(group_id: PathId, _: str | None) -> Response:
    embed = app_embeds(request.args.getlist("embed"), "apps.", "app.", always=LIST_ALWAYS)
    snapshot = service().snapshot()
    group = find_group(snapshot.root, group_id)
    apps = transitive_apps(group) if group is not None else []
    return json_response({"*": [app_info(a, snapshot, embed) for a in apps]})


def _put(app_id: PathId, _: str | None) -> Response:
    change = _Batch([(app_id, json_object())], partial=flag("partialUpdate", True), create=True,
                    array=False)
    result = deploy(change, force=flag("force"), announce=change.posted())
    if app_id in change.created:
        return deployed(result, 201, {"Location": f"/v2/apps{app_id}"})
    return deployed(result)


def _patch(app_id: PathId, _: str | None) -> Response:
    change = _Batch([(app_id, json_object())], partial=True, create=False, array=False)
    return deployed(deploy(change, force=flag("force"), announce=change.posted()))


def _delete(app_id: PathId, _: str | None) -> Response:
    return deployed(deploy(lambda root: remove_app(root, app_id),
                                     force=flag("force", True)))


def _restart(app_id: PathId, _: str | None) -> Response:
    now = service().now()

    def change(root: Group) -> Group:
        app = find_app(root, app_id)
        if app is None:
            raise UnknownId(f"App '{app_id}' does not exist")
        return put_app(root, restarted(app, now))

    return deployed(deploy(change, force=flag("force")))


def _versions(app_id: PathId, _: str | None) -> Response:
    return json_response({"versions": service().app_versions(app_id)})


def _version(app_id: PathId, version: str | None) -> Response:
    return json_response(service().app_version(app_id, version or "").to_json())


_VIEWS: dict[tuple[str, str], Callable[[PathId, str | None], Response]] = {
    ("GET", "app"): _show,
    ("PUT", "app"): _put,
    ("PATCH", "app"): _patch,
    ("DELETE", "app"): _delete,
    ("POST", "restart"): _restart,
    ("GET", "versions"): _versions,
    ("GET", "version"): _version,
    ("GET", "group_apps"): _group_apps,
    ("GET", "tasks"): lambda app_id, _: tasks.app_tasks(app_id),
    ("DELETE", "tasks"): lambda app_id, _: tasks.kill_app_tasks(app_id),
    ("DELETE", "task"): lambda app_id, task_id: tasks.kill_app_task(app_id, task_id or ""),
    ("GET", "group_tasks"): lambda group_id, _: tasks.app_tasks(group_id, group=True),
}


@blueprint.route("/v2/apps/<path:rest>", methods=["GET", "PUT", "PATCH", "DELETE", "POST"])
def app_resource(rest: str) -> Response:
    kind, item_id, extra = _route(rest)
    view = _VIEWS.get(("GET" if request.method == "HEAD" else request.method, kind))
    if view is None:
        abort(405)
    return view(item_id, extra)
