"""`/v2/groups`: the root group and its subtrees (reference marathon.md §1.3, §3).

    GET    /v2/groups[/{id}]             GroupInfo (embeds: group.groups, group.apps, group.pods,
                                         group.apps.counts|tasks|deployments|readiness|...)
    POST   /v2/groups[/{id}]             create (201 + Location); 409 when something is there
    PUT    /v2/groups[/{id}]             update ("mkdir -p"), `{"scaleBy": f}`, `{"version": v}`
                                         (rollback), `?dryRun=true` -> the plan's steps
    PATCH  /v2/groups/{id}               only `enforceRole`, top-level groups only
    DELETE /v2/groups[/{id}]             remove (the root: everything in it)
    GET    /v2/groups/{id}/versions[/v]  a bare array of versions / GroupInfo at that version
    GET    /v2/groups/{id}/apps          a bare array of every app below the group

A PUT body is Marathon's GroupUpdate: fields it leaves out keep their current values, see
`apply_update`. marathon-python's `rollback_group` sends `PUT /v2/groups/{id}/versions/{v}`,
which Marathon itself never served; it is answered as the rollback it means.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from flask import Blueprint, Response, abort, request

from meseta.frameworks.marathon.errors import conflict
from meseta.frameworks.marathon.group import (Group, UnknownId, find_app, find_group, put_group,
                                              remove_group, scale_group, transitive_apps)
from meseta.frameworks.marathon.pathid import ROOT, PathId
from meseta.frameworks.marathon.schema import ValidationError, json_type
from meseta.frameworks.marathon.api.common import (deploy, deployed, flag, json_object,
                                                   json_response, path_id, service)
from meseta.frameworks.marathon.api.render import group_embeds, group_info

__all__ = ["blueprint", "apply_update"]

blueprint = Blueprint("groups", __name__)


def _given(body: dict[str, Any], key: str) -> bool:
    return body.get(key) is not None       # null means "not given", as for apps


def apply_update(current: Group | None, update: Group, body: dict[str, Any]) -> Group:
    """Marathon's `GroupUpdate.apply`: `update` (parsed from `body`) onto the group it
    replaces. Apps and dependencies given replace the current ones, absent ones stay; groups
    given are updated the same way, recursively, and groups not listed are removed; with no
    `groups` key at all the current subgroups stay. A group that does not exist yet is
    `update` as it is."""
    if current is None:
        return update
    groups = current.groups
    if _given(body, "groups"):
        groups = {}
        for child_body in body["groups"]:
            child_id = PathId.parse(child_body["id"]).canonical(update.id)
            groups[child_id] = apply_update(current.groups.get(child_id),
                                            update.groups[child_id], child_body)
    return dataclasses.replace(
        update,
        apps=update.apps if _given(body, "apps") else current.apps,
        groups=groups,
        dependencies=update.dependencies if _given(body, "dependencies") else current.dependencies,
        enforce_role=update.enforce_role if _given(body, "enforceRole") else current.enforce_role,
        version=current.version)


def _target_id(body: dict[str, Any], base: PathId) -> PathId:
    """The group a special body (`scaleBy`, `version`) names: its `id` against `base`."""
    return Group.from_json({"id": body["id"]} if _given(body, "id") else {}, base).id


# ---------------------------------------------------------------------------------------------
# Views

def _show(group_id: PathId, _: str | None) -> Response:
    embed, apps_embed = group_embeds(request.args.getlist("embed"))
    snapshot = service().snapshot()
    group = find_group(snapshot.root, group_id)
    if group is None:
        raise UnknownId(f"Group '{group_id}' does not exist")
    return json_response(group_info(group, snapshot, embed, apps_embed))


def _apps(group_id: PathId, _: str | None) -> Response:
    group = find_group(service().snapshot().root, group_id)
    if group is None:
        raise UnknownId(f"Group '{group_id}' does not exist")
    return json_response([app.to_json() for app in transitive_apps(group)])


def _versions(group_id: PathId, _: str | None) -> Response:
    return json_response(service().group_versions(group_id))


def _version(group_id: PathId, version: str | None) -> Response:
    embed, _ = group_embeds(request.args.getlist("embed"))
    return json_response(service().group_version(group_id, version or "").to_json(embed))


def _create(base: PathId, _: str | None) -> Response:
    group = Group.from_json(json_object(), base)

    def change(root: Group) -> Group:
        if find_group(root, group.id) is not None:
            raise conflict(f"Group {group.id} is already created. Use PUT to change this group.")
        if find_app(root, group.id) is not None:
            raise conflict(f"An app with the path {group.id} already exists.")
        return put_group(root, group)

    result = deploy(change, force=flag("force"))
    return deployed(result, 201, {"Location": f"/v2/groups{group.id}"})


def _change_for(body: dict[str, Any], base: PathId) -> Callable[[Group], Group]:
    if _given(body, "version"):       # wins over scaleBy, as in Marathon
        target = service().group_version(_target_id(body, base), body["version"])
        return lambda root: put_group(root, target)
    if "scaleBy" in body:
        group_id, factor = _target_id(body, base), body["scaleBy"]
        return lambda root: scale_group(root, group_id, factor)
    update = Group.from_json(body, base)
    return lambda root: put_group(root, apply_update(find_group(root, update.id), update, body))


def _update(base: PathId, version: str | None) -> Response:
    body = {"version": version} if version is not None else json_object()
    dry_run = flag("dryRun")
    result = deploy(_change_for(body, base), force=flag("force"), dry_run=dry_run)
    return json_response(result.dry_run_json()) if dry_run else deployed(result)


def _patch(group_id: PathId, _: str | None) -> Response:
    body = json_object()
    problems = [(f"/{key}", "only enforceRole can be patched") for key in body
                if key not in ("id", "enforceRole")]
    enforce = body.get("enforceRole")
    if not isinstance(enforce, bool):
        problems.append(("/enforceRole", f"expected boolean, got {json_type(enforce)}"))
    if len(group_id.segments) != 1:
        problems.append(("/enforceRole", "can only be set for top-level groups"))
    if problems:
        raise ValidationError(problems)

    def change(root: Group) -> Group:
        group = find_group(root, group_id)
        if group is None:
            raise UnknownId(f"Group '{group_id}' does not exist")
        return put_group(root, dataclasses.replace(group, enforce_role=enforce))

    deploy(change, force=flag("force"))
    return Response("", 200)


def _delete(group_id: PathId, _: str | None) -> Response:
    return deployed(deploy(lambda root: remove_group(root, group_id),
                                     force=flag("force")))


_VIEWS: dict[tuple[str, str], Callable[[PathId, str | None], Response]] = {
    ("GET", "group"): _show,
    ("POST", "group"): _create,
    ("PUT", "group"): _update,
    ("PATCH", "group"): _patch,
    ("DELETE", "group"): _delete,
    ("GET", "apps"): _apps,
    ("GET", "versions"): _versions,
    ("GET", "version"): _version,
    ("PUT", "version"): _update,
}


def _route(rest: str, method: str) -> tuple[str, PathId, str | None]:
    segments = [s for s in rest.split("/") if s]
    if not segments:
        return "group", ROOT, None
    last, before = segments[-1], segments[:-1]
    if last == "versions":
        return "versions", path_id("/".join(before)), None
    if before and before[-1] == "versions":
        return "version", path_id("/".join(before[:-1])), last
    if last == "apps" and method == "GET":      # `apps` is not reserved: only GET reads it so
        return "apps", path_id("/".join(before)), None
    return "group", path_id(rest), None


_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


@blueprint.route("/v2/groups", defaults={"rest": ""}, methods=_METHODS, strict_slashes=False)
@blueprint.route("/v2/groups/<path:rest>", methods=_METHODS)
def group_resource(rest: str) -> Response:
    method = "GET" if request.method == "HEAD" else request.method
    kind, group_id, extra = _route(rest, method)
    view = _VIEWS.get((method, kind))
    if view is None:
        abort(405)
    return view(group_id, extra)
