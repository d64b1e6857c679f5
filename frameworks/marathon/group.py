"""Marathon's groups. The root group `/` is the whole desired state: an immutable tree whose
branches are groups and whose leaves are apps (reference marathon.md §3).

    root = Group.from_json(body)                      a validated tree; relative ids resolved
    target = put_app(root, app)                       a new root; `root` is unchanged
    validate_root(target)                             dependencies exist, no cycles
    target = stamp_versions(root, target, now)        versions of what changed
    dependency_order(target) -> [[/db], [/api, /worker], [/web]]

Every API call is one or more transformations of the root group; the planner then diffs the
original against the target. Transformations are structural and refuse only what cannot be a
tree (an app where a group is); `validate_root` checks the result once, so a batch of changes
(`PUT /v2/apps` with many apps) is validated as a whole; `stamp_versions` then gives every
changed app and group its new version. Unchanged subtrees are shared between roots.

Dependencies name apps or groups. An app's relative dependencies resolve against its enclosing
group, a group's against the group itself (`"../database"` in `/product/service` is
`/product/database`). A dependency on a group means one on every app below it; a group's
dependencies hold for every app below it.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Callable, Collection, Mapping

from meseta.frameworks.marathon.app import (
    AppDefinition,
    canonical_timestamp,
    format_timestamp,
    next_version,
)
from meseta.frameworks.marathon.pathid import ROOT, PathId, PathIdError, id_errors, resolve
from meseta.frameworks.marathon.schema import (
    GROUP_VALIDATOR,
    INT32_MAX,
    Problems,
    ValidationError,
    join_path,
    json_type,
    prefixed,
    strip_nulls,
    structure_problems,
)

__all__ = [
    "Group",
    "UnknownId",
    "DEFAULT_EMBED",
    "SAME_ID",
    "empty_root",
    "find",
    "find_app",
    "find_group",
    "transitive_apps",
    "transitive_groups",
    "put_app",
    "remove_app",
    "put_group",
    "remove_group",
    "scale_group",
    "validate_root",
    "stamp_versions",
    "dependency_order",
]

SAME_ID = "Groups and Applications may not have the same identifier."
CYCLE = "Dependency graph has cyclic dependencies"
DEFAULT_EMBED = frozenset({"group.groups", "group.apps", "group.pods"})


class UnknownId(LookupError):
    """A 404: `message` is Marathon's text (`App '/foo' does not exist`)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Group:
    """A group; `apps` and `groups` map each child's id to it and are read-only."""

    id: PathId
    apps: Mapping[PathId, AppDefinition] = field(default_factory=dict)
    groups: Mapping[PathId, Group] = field(default_factory=dict)
    dependencies: tuple[PathId, ...] = ()
    version: str | None = None
    enforce_role: bool = False  # 1.9+: top-level groups only

    def __post_init__(self) -> None:
        object.__setattr__(self, "apps", MappingProxyType(dict(self.apps)))
        object.__setattr__(self, "groups", MappingProxyType(dict(self.groups)))

    @classmethod
    def from_json(cls, obj: Any, base: PathId = ROOT) -> Group:
        """A group body (GroupInfo, or a GroupUpdate without `scaleBy`/rollback `version`).

        Its `id` is resolved against `base` (absent: the group is `base`; `"/"`: the root);
        nested ids against their enclosing group, which they must be direct children of.
        Dependencies are resolved but not checked here: they may point outside the body, so
        `validate_root` checks them once the body is part of a root.
        """
        problems: Problems = []
        group = _build(obj, base, None, "/", problems)
        if problems or group is None:
            raise ValidationError(problems)
        return group

    def to_json(self, embed: Collection[str] = DEFAULT_EMBED,
                app_json: Callable[[AppDefinition], dict[str, Any]] | None = None) -> dict[str, Any]:
        """GroupInfo: `{"id","apps","groups","pods","dependencies","version","enforceRole"?}`.

        `embed` takes the API's `group.apps`, `group.groups`, `group.pods`; `app_json` lets the
        service write AppInfo (counts, tasks) for the apps."""
        write_app = app_json or AppDefinition.to_json
        out: dict[str, Any] = {"id": str(self.id)}
        if "group.apps" in embed:
            out["apps"] = [write_app(app) for _, app in sorted(self.apps.items())]
        if "group.groups" in embed:
            out["groups"] = [g.to_json(embed, app_json) for _, g in sorted(self.groups.items())]
        if "group.pods" in embed:
            out["pods"] = []
        out["dependencies"] = [str(d) for d in self.dependencies]
        if self.version is not None:
            out["version"] = self.version
        if self.enforce_role:
            # Marathon 1.9+ writes it on every top-level group; PyPI's marathon-python (0.13)
            # rejects the key, so it appears only where it says something
            out["enforceRole"] = True
        return out


def empty_root() -> Group:
    return Group(ROOT)


def _top_level(group_id: PathId) -> bool:
    return len(group_id.segments) == 1


# ---------------------------------------------------------------------------------------------
# Building from JSON

def _build(obj: Any, base: PathId, parent: PathId | None, path: str,
           problems: Problems) -> Group | None:
    if not isinstance(obj, dict):
        problems.append((path, f"expected object, got {json_type(obj)}"))
        return None
    doc = strip_nulls(obj)
    problems += prefixed(path, structure_problems(doc, GROUP_VALIDATOR))
    group_id = _group_id(doc.get("id"), base, parent, join_path(path, "id"), problems)
    if group_id is None:
        return None
    apps: dict[PathId, AppDefinition] = {}
    groups: dict[PathId, Group] = {}
    for index, item in enumerate(_list(doc.get("apps"))):
        item_path = join_path(path, "apps", index)
        try:
            app = AppDefinition.from_json(item, base_group=group_id)
        except ValidationError as error:
            problems += prefixed(item_path, error.problems)
            continue
        if _check_child(app.id, group_id, apps, groups, join_path(item_path, "id"), problems):
            apps[app.id] = app
    for index, item in enumerate(_list(doc.get("groups"))):
        item_path = join_path(path, "groups", index)
        child = _build(item, group_id, group_id, item_path, problems)
        if child and _check_child(child.id, group_id, apps, groups, join_path(item_path, "id"), problems):
            groups[child.id] = child
    if _list(doc.get("pods")):
        problems.append((join_path(path, "pods"), "pods are not supported"))
    dependencies = []
    for index, text in enumerate(_list(doc.get("dependencies"))):
        errors = id_errors(text) if isinstance(text, str) else []
        problems += [(join_path(path, "dependencies", index), m) for m in errors]
        if isinstance(text, str) and not errors:
            dependencies.append(PathId.parse(text).canonical(group_id))
    enforce_role = doc.get("enforceRole") is True
    if enforce_role and not _top_level(group_id):
        problems.append((join_path(path, "enforceRole"), "can only be set for top-level groups"))
    try:
        version = canonical_timestamp(doc["version"]) if "version" in doc else None
    except (TypeError, ValueError):
        version = None  # the schema said so
    return Group(group_id, apps, groups, tuple(dependencies), version, enforce_role)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _group_id(text: Any, base: PathId, parent: PathId | None, path: str,
              problems: Problems) -> PathId | None:
    if text is None:
        if parent is not None:
            problems.append((path, "is required"))
            return None
        return base
    if not isinstance(text, str):
        return None  # the schema said so
    if parent is None and not PathId.parse(text).segments:
        return ROOT if text.startswith("/") else base
    try:
        return resolve(text, base)
    except PathIdError as error:
        problems += [(path, m) for m in error.errors]
        return None


def _check_child(child: PathId, group_id: PathId, apps: Mapping[PathId, Any],
                 groups: Mapping[PathId, Any], path: str, problems: Problems) -> bool:
    if child.parent != group_id:
        problems.append((path, f"identifier {child} is not child of {group_id}. Hint: use relative paths."))
    elif child in apps or child in groups:
        problems.append((path, f"{SAME_ID} {child} is used more than once"))
    else:
        return True
    return False


# ---------------------------------------------------------------------------------------------
# Queries

def find(root: Group, item_id: PathId) -> AppDefinition | Group | None:
    """The app or group at `item_id`, or None."""
    group = root
    for depth in range(1, len(item_id.segments) + 1):
        current = PathId(item_id.segments[:depth])
        if depth == len(item_id.segments):
            return group.apps.get(current) or group.groups.get(current)
        next_group = group.groups.get(current)
        if next_group is None:
            return None
        group = next_group
    return root


def find_app(root: Group, app_id: PathId) -> AppDefinition | None:
    found = find(root, app_id)
    return found if isinstance(found, AppDefinition) else None


def find_group(root: Group, group_id: PathId) -> Group | None:
    found = find(root, group_id)
    return found if isinstance(found, Group) else None


def transitive_groups(group: Group) -> list[Group]:
    """`group` and every group below it, parents before children."""
    result, pending = [], [group]
    while pending:
        current = pending.pop()
        result.append(current)
        pending.extend(g for _, g in sorted(current.groups.items(), reverse=True))
    return result


def transitive_apps(group: Group) -> list[AppDefinition]:
    """Every app below `group`, sorted by id."""
    return sorted((app for g in transitive_groups(group) for app in g.apps.values()),
                  key=lambda app: app.id)


# ---------------------------------------------------------------------------------------------
# Transformations: each returns a new root and shares every untouched subtree.

def _update(root: Group, group_id: PathId, change: Callable[[Group], Group]) -> Group:
    """Apply `change` to the group at `group_id`, creating missing groups on the way."""
    chain = [root]
    for depth in range(1, len(group_id.segments) + 1):
        current = PathId(group_id.segments[:depth])
        if current in chain[-1].apps:
            raise ValidationError([("/id", f"{SAME_ID} {current} is an app")])
        chain.append(chain[-1].groups.get(current) or Group(current))
    new = change(chain.pop())
    while chain:
        parent = chain.pop()
        new = dataclasses.replace(parent, groups={**parent.groups, new.id: new})
    return new


def put_app(root: Group, app: AppDefinition) -> Group:
    """Create or replace `app` (`mkdir -p` for its groups)."""
    def change(parent: Group) -> Group:
        if app.id in parent.groups:
            raise ValidationError([("/id", f"{SAME_ID} {app.id} is a group")])
        return dataclasses.replace(parent, apps={**parent.apps, app.id: app})
    return _update(root, app.id.parent, change)


def remove_app(root: Group, app_id: PathId) -> Group:
    """Remove the app; its (possibly now empty) group stays, as in Marathon."""
    if find_app(root, app_id) is None:
        raise UnknownId(f"App '{app_id}' does not exist")
    return _update(root, app_id.parent, lambda parent: dataclasses.replace(
        parent, apps={k: v for k, v in parent.apps.items() if k != app_id}))


def put_group(root: Group, group: Group) -> Group:
    """Create or replace the subtree at `group.id`; putting the root replaces everything."""
    if group.id.is_root:
        return group

    def change(parent: Group) -> Group:
        if group.id in parent.apps:
            raise ValidationError([("/id", f"{SAME_ID} {group.id} is an app")])
        return dataclasses.replace(parent, groups={**parent.groups, group.id: group})
    return _update(root, group.id.parent, change)


def remove_group(root: Group, group_id: PathId) -> Group:
    """Remove the subtree; removing the root empties it (`DELETE /v2/groups`)."""
    if find_group(root, group_id) is None:
        raise UnknownId(f"Group '{group_id}' does not exist")
    if group_id.is_root:
        return dataclasses.replace(root, apps={}, groups={}, dependencies=())
    return _update(root, group_id.parent, lambda parent: dataclasses.replace(
        parent, groups={k: v for k, v in parent.groups.items() if k != group_id}))


def scale_group(root: Group, group_id: PathId, factor: Any) -> Group:
    """`{"scaleBy": factor}`: every app below the group gets ceil(instances * factor).

    The product is taken in decimal, so `10 * 0.3` is 3 (in binary floating point it is
    3.0000000000000004, which would round up to 4)."""
    group = find_group(root, group_id)
    if group is None:
        raise UnknownId(f"Group '{group_id}' does not exist")
    if isinstance(factor, bool) or not isinstance(factor, (int, float)):
        raise ValidationError([("/scaleBy", f"expected number, got {json_type(factor)}")])
    if not math.isfinite(factor) or factor < 0:
        raise ValidationError([("/scaleBy", "must be a finite number of at least 0")])
    exact = Decimal(repr(factor))

    def scaled(g: Group) -> Group:
        apps = {}
        for app_id, app in g.apps.items():
            instances = math.ceil(Decimal(app.instances) * exact)
            if instances > INT32_MAX:
                raise ValidationError([("/scaleBy", f"would give {app_id} {instances} instances")])
            apps[app_id] = dataclasses.replace(app, instances=instances)
        return dataclasses.replace(g, apps=apps, groups={k: scaled(v) for k, v in g.groups.items()})
    return put_group(root, scaled(group))


# ---------------------------------------------------------------------------------------------
# Whole-tree rules, versions and the dependency order

def validate_root(root: Group) -> None:
    """Raise ValidationError unless every dependency exists and none is cyclic. Tree-level
    problems have the path `/` and name the ids involved."""
    problems: Problems = []
    groups = {g.id: g for g in transitive_groups(root)}
    apps = {a.id: a for a in transitive_apps(root)}
    for group in groups.values():
        for child in [*group.apps, *group.groups]:
            if child.parent != group.id:
                problems.append(("/", f"identifier {child} is not child of {group.id}"))
        if group.enforce_role and not _top_level(group.id):
            problems.append(("/", f"enforceRole can only be set for top-level groups, not {group.id}"))
    for kind, items in (("app", apps), ("group", groups)):
        for item in items.values():
            problems += [("/", f"{kind} {item.id} depends on {dep}, which does not exist")
                         for dep in item.dependencies if dep not in apps and dep not in groups]
    cycle = _find_cycle(_dependency_graph(root))
    if cycle:
        problems.append(("/", f"{CYCLE}: " + " -> ".join(map(str, cycle))))
    if problems:
        raise ValidationError(problems)


def stamp_versions(original: Group, target: Group, now: float) -> Group:
    """`target` with versions for what changed since `original` (reference §2.9).

    Every app gets `next_version` against the original app (new, config change, scale only, or
    unchanged: old stamps kept), except one whose version is newer than the original's: the
    caller stamped it (`restarted`). An older version, as in a GET body sent back, counts for
    nothing. A group whose contents changed gets `now` as its version; an unchanged one keeps
    its original version."""
    old_apps = {a.id: a for a in transitive_apps(original)}
    old_groups = {g.id: g for g in transitive_groups(original)}
    stamp = format_timestamp(now)

    def stamped(group: Group) -> Group:
        apps = {}
        for app_id, app in group.apps.items():
            old = old_apps.get(app_id)
            keep = (old is not None and app.version is not None and old.version is not None
                    and app.version > old.version)  # canonical timestamps sort as text
            apps[app_id] = app if keep else next_version(old, app, now)
        new = dataclasses.replace(group, apps=apps,
                                  groups={k: stamped(v) for k, v in group.groups.items()})
        old_group = old_groups.get(group.id)
        if old_group is not None and dataclasses.replace(new, version=old_group.version) == old_group:
            return old_group
        return dataclasses.replace(new, version=stamp)
    return stamped(target)


def _dependency_graph(root: Group) -> dict[PathId, set[PathId]]:
    """App id -> the app ids it depends on, with group dependencies expanded on both ends."""
    below = {g.id: [a.id for a in transitive_apps(g)] for g in transitive_groups(root)}
    apps = {a.id: a for a in transitive_apps(root)}

    def targets(dependency: PathId) -> list[PathId]:
        return [dependency] if dependency in apps else below.get(dependency, [])

    graph: dict[PathId, set[PathId]] = {app_id: set() for app_id in apps}
    for app in apps.values():
        for dependency in app.dependencies:
            graph[app.id].update(targets(dependency))
    for group in transitive_groups(root):
        wanted = {t for dependency in group.dependencies for t in targets(dependency)}
        for app_id in below[group.id] if wanted else ():
            graph[app_id] |= wanted
    return graph


def _find_cycle(graph: Mapping[PathId, set[PathId]]) -> list[PathId] | None:
    """One cycle as `[a, b, ..., a]`, or None; iterative, so deep chains do not recurse."""
    done: set[PathId] = set()
    for start in sorted(graph):
        if start in done:
            continue
        trail, on_trail = [start], {start}
        stack = [iter(sorted(graph[start]))]
        while stack:
            following = next(stack[-1], None)
            if following is None:
                stack.pop()
                done.add(trail[-1])
                on_trail.discard(trail.pop())
            elif following in on_trail:
                return trail[trail.index(following):] + [following]
            elif following not in done:
                trail.append(following)
                on_trail.add(following)
                stack.append(iter(sorted(graph[following])))
    return None


def dependency_order(root: Group, only: Collection[PathId] | None = None) -> list[list[PathId]]:
    """App ids in deployment layers: an app's layer is the length of the longest dependency
    path starting at it (no dependencies: the first layer), so everything an app depends on
    (apps, or every app of a group) sits in an earlier layer. Apps of one layer may deploy in
    parallel. `only` keeps just those apps (the affected ones) and drops empty layers; the
    layers are still computed over the whole tree, as Marathon's planner does."""
    graph = _dependency_graph(root)
    cycle = _find_cycle(graph)
    if cycle:
        raise ValidationError([("/", f"{CYCLE}: " + " -> ".join(map(str, cycle)))])
    depth: dict[PathId, int] = {}
    for start in sorted(graph):
        stack = [start]
        while stack:
            node = stack[-1]
            if node in depth:
                stack.pop()
                continue
            pending = [d for d in graph[node] if d not in depth]
            if pending:
                stack.extend(pending)
                continue
            depth[node] = 1 + max((depth[d] for d in graph[node]), default=0)
            stack.pop()
    layers: dict[int, list[PathId]] = defaultdict(list)
    for node, length in depth.items():
        if only is None or node in only:
            layers[length].append(node)
    return [sorted(layers[length]) for length in sorted(layers)]
