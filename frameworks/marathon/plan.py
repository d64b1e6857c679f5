"""Marathon's deployment planner: the diff of two root groups as steps of actions (reference
marathon.md §4.1). Pure: it decides, the deployment executor acts.

    target = stamp_versions(original, changed_root, now)
    plan = compute_plan(original, target)          DeploymentPlan, its steps run one after another
    plan.steps -> (Step(StopApplication /old), Step(StartApplication /new),
                   Step(ScaleApplication /db), Step(RestartApplication /api, ScaleApplication /new))
    conflicting(plan, running)                     running plans touching the same apps (409)
    rollback_root = revert(plan, current_root)     DELETE /v2/deployments/{id}

Steps, in Marathon 1.10's order (`DeploymentPlan.apply`); empty steps are dropped:
1. one step stopping every app of the original that the target lacks;
2. one step starting (at 0 instances) every app the target adds;
3. one step per dependency layer of the target (dependencies first), holding for each affected
   app one action: a new app scales to its instances; an existing app scaled to 0 scales down
   (a restart of 0 instances would finish at once and leave the old tasks running); a changed
   configuration, a moved `lastConfigChangeAt` (`app.restarted`) or an explicit `restart`
   replaces the tasks; other instance changes, or instances sentenced by the caller
   (`to_kill`), scale. Actions of one step run in parallel.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Collection, Iterable, Mapping

from meseta.frameworks.marathon.app import AppDefinition, is_upgrade
from meseta.frameworks.marathon.group import (
    Group,
    dependency_order,
    empty_root,
    find_app,
    find_group,
    put_app,
    put_group,
    remove_app,
    remove_group,
    transitive_apps,
    transitive_groups,
)
from meseta.frameworks.marathon.pathid import PathId

__all__ = [
    "ACTION_START",
    "ACTION_SCALE",
    "ACTION_RESTART",
    "ACTION_STOP",
    "ACTIONS",
    "Action",
    "Step",
    "DeploymentPlan",
    "compute_plan",
    "revert",
    "conflicting",
]

ACTION_START = "StartApplication"
ACTION_SCALE = "ScaleApplication"
ACTION_RESTART = "RestartApplication"
ACTION_STOP = "StopApplication"
ACTIONS = frozenset({ACTION_START, ACTION_SCALE, ACTION_RESTART, ACTION_STOP})


@dataclass(frozen=True)
class Action:
    """One thing to do to one app. `scale_to`: the instances to reach (Start: 0, Stop: None);
    `sentenced`: instance ids a scale must kill first (`POST /v2/tasks/delete?scale=true`)."""

    action: str
    app_id: PathId
    scale_to: int | None = None
    sentenced: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown deployment action {self.action!r}")

    def to_json(self) -> dict[str, str]:
        """Only Marathon's two keys: marathon-python rejects any other."""
        return {"action": self.action, "app": str(self.app_id)}

    def to_record(self) -> dict[str, Any]:
        return {"action": self.action, "app": str(self.app_id), "scale_to": self.scale_to,
                "sentenced": list(self.sentenced)}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Action:
        return cls(record["action"], PathId.parse(record["app"]), record.get("scale_to"),
                   tuple(record.get("sentenced", ())))


@dataclass(frozen=True)
class Step:
    """Actions run in parallel; the next step starts when all of them are done."""

    actions: tuple[Action, ...]

    def to_json(self) -> dict[str, Any]:
        return {"actions": [a.to_json() for a in self.actions]}


@dataclass(frozen=True)
class DeploymentPlan:
    id: str
    original: Group
    target: Group
    steps: tuple[Step, ...]
    version: str

    @property
    def affected_app_ids(self) -> frozenset[PathId]:
        """Every app some action touches: what two plans must not share (reference §4.4)."""
        return frozenset(a.app_id for step in self.steps for a in step.actions)

    @property
    def is_empty(self) -> bool:
        return not self.steps

    def to_json(self) -> dict[str, Any]:
        """The plan as events carry it (`deployment_info`, `deployment_success`, ...)."""
        return {"id": self.id, "steps": self._steps_json(), "version": self.version}

    def to_info_json(self, current_step: int, current_actions: list[dict]) -> dict[str, Any]:
        """One element of `GET /v2/deployments`; `current_step` is 1-based."""
        return {
            "id": self.id,
            "version": self.version,
            "affectedApps": sorted(str(a) for a in self.affected_app_ids),
            "affectedPods": [],
            "steps": self._steps_json(),
            "currentActions": current_actions,
            "currentStep": current_step,
            "totalSteps": len(self.steps),
        }

    def dry_run_json(self) -> dict[str, Any]:
        """The body of `PUT /v2/groups?dryRun=true`."""
        return {"steps": self._steps_json()}

    def _steps_json(self) -> list[dict[str, Any]]:
        return [step.to_json() for step in self.steps]

    def to_record(self) -> dict[str, Any]:
        """What the store keeps so a new leader can resume the plan. The roots are referenced
        by version (they are stored anyway) so the record stays small."""
        return {
            "id": self.id,
            "version": self.version,
            "original_version": self.original.version,
            "target_version": self.target.version,
            "steps": [{"actions": [a.to_record() for a in step.actions]} for step in self.steps],
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any],
                    root_at: Callable[[str], Group]) -> DeploymentPlan:
        """Inverse of `to_record`; `root_at(version)` loads a stored root. A root without a
        version was never stored: it can only be the initial empty root."""
        def root(version: str | None) -> Group:
            return empty_root() if version is None else root_at(version)

        steps = tuple(Step(tuple(Action.from_record(a) for a in step["actions"]))
                      for step in record["steps"])
        return cls(record["id"], root(record["original_version"]), root(record["target_version"]),
                   steps, record["version"])


# ---------------------------------------------------------------------------------------------
# Planning

def compute_plan(original: Group, target: Group, *, plan_id: str | None = None,
                 to_kill: Mapping[PathId, Collection[str]] | None = None,
                 restart: Collection[PathId] = ()) -> DeploymentPlan:
    """The plan taking `original` to `target` (both stamped, `target` validated).

    `to_kill` names instances the caller wants gone (their app then scales even if only they
    differ); `restart` forces a RestartApplication for apps present in both roots."""
    old_apps = {a.id: a for a in transitive_apps(original)}
    new_apps = {a.id: a for a in transitive_apps(target)}
    stops = [Action(ACTION_STOP, app_id) for app_id in sorted(old_apps.keys() - new_apps.keys())]
    starts = [Action(ACTION_START, app_id, 0) for app_id in sorted(new_apps.keys() - old_apps.keys())]
    wanted: dict[PathId, Action] = {}
    for app_id, new in new_apps.items():
        action = _deploy_action(old_apps.get(app_id), new, tuple((to_kill or {}).get(app_id, ())),
                                app_id in restart)
        if action is not None:
            wanted[app_id] = action
    # Layers are computed over the whole target, so an affected app waits for the layers of
    # the apps it depends on even when those are unchanged (Marathon does the same).
    layers = [[wanted[app_id] for app_id in layer]
              for layer in dependency_order(target, only=wanted.keys())]
    steps = tuple(Step(tuple(actions)) for actions in [stops, starts, *layers] if actions)
    return DeploymentPlan(plan_id or str(uuid.uuid4()), original, target, steps,
                          target.version or original.version or "")


def _deploy_action(old: AppDefinition | None, new: AppDefinition, sentenced: tuple[str, ...],
                   forced_restart: bool) -> Action | None:
    """What step 3 does to one app of the target; None when nothing changed."""
    if old is None:
        return Action(ACTION_SCALE, new.id, new.instances)
    restart = forced_restart or is_upgrade(old, new) or _config_changed_at(old, new)
    scale = sentenced or old.instances != new.instances
    # Checked first: a restart to 0 instances is done at once and would leave old tasks running.
    if new.instances == 0 and (restart or scale):
        return Action(ACTION_SCALE, new.id, 0, sentenced)
    if restart:
        return Action(ACTION_RESTART, new.id, new.instances)
    if scale:
        return Action(ACTION_SCALE, new.id, new.instances, sentenced)
    return None


def _config_changed_at(old: AppDefinition, new: AppDefinition) -> bool:
    """A moved `lastConfigChangeAt` without a configuration change: `POST .../restart`.
    An unstamped side says nothing (a root built in a test, or by hand)."""
    def mark(app: AppDefinition) -> str | None:
        return app.version_info.last_config_change_at if app.version_info else app.version
    return None not in (mark(old), mark(new)) and mark(old) != mark(new)


# ---------------------------------------------------------------------------------------------
# Conflicts and rollback

def conflicting(plan: DeploymentPlan, running: Iterable[DeploymentPlan]) -> list[DeploymentPlan]:
    """The running plans (other than `plan` itself) that touch an app `plan` touches."""
    mine = plan.affected_app_ids
    return [other for other in running if other.id != plan.id and other.affected_app_ids & mine]


def revert(plan: DeploymentPlan, current: Group) -> Group:
    """The target root of the rollback of `plan`: the inverse of original -> target applied to
    `current`, so changes other deployments made meanwhile survive (reference §4.4).

    In order: (1) groups of the original that the plan removed, or whose dependencies or
    enforceRole it changed, get their original shell back (parents first, contents kept);
    (2) every app whose definition the plan changed gets its original definition back, and every
    app the plan created is removed; (3) groups the plan created that are now empty go, deepest
    first. The result is not stamped or validated: the caller does both, as for any change (a
    concurrent change may have removed a dependency, or put an app where a group was: then
    `put_group`/`put_app` raise ValidationError)."""
    root = current
    target_groups = {g.id: g for g in transitive_groups(plan.target)}
    for old in transitive_groups(plan.original):
        new = target_groups.get(old.id)
        if new is None or _shell(new) != _shell(old):
            present = find_group(root, old.id) or Group(old.id)
            root = put_group(root, dataclasses.replace(
                present, dependencies=old.dependencies, enforce_role=old.enforce_role))
    old_apps = {a.id: a for a in transitive_apps(plan.original)}
    new_apps = {a.id: a for a in transitive_apps(plan.target)}
    for app_id in sorted(old_apps.keys() | new_apps.keys()):
        old = old_apps.get(app_id)
        if old is not None and old != new_apps.get(app_id):
            root = put_app(root, old)
        elif old is None and find_app(root, app_id) is not None:
            root = remove_app(root, app_id)
    original_groups = {g.id for g in transitive_groups(plan.original)}
    created = [gid for gid in target_groups if gid not in original_groups]
    for group_id in sorted(created, key=lambda gid: len(gid.segments), reverse=True):
        group = find_group(root, group_id)
        if group is not None and not group.apps and not group.groups:
            root = remove_group(root, group_id)
    return root


def _shell(group: Group) -> tuple[Any, ...]:
    """What a group says about itself, apart from its contents and version."""
    return group.dependencies, group.enforce_role
