"""JSON from a `Snapshot`: AppInfo, GroupInfo, tasks, deployments and the launch queue, in
Marathon 1.10's shapes (reference marathon.md §1, §2.2, §5.3).

    embed = app_embeds(request.args.getlist("embed"), "apps.", always=LIST_ALWAYS)
    app_info(app, snapshot, embed)    -> app.to_json() plus what `embed` asks for

Every object written here uses only keys marathon-python knows (reference §10): that client
builds its models with `cls(**json)` and raises on any other key. Meseta's additions (why a
deployment waits, why offers were refused) go where no such model reads them: the Meseta-only
`GET /v2/deployments/{id}` and the queue's free-form `processedOffersSummary`.

Only active (non-terminal) instances count and are listed: a terminal one may linger in the
snapshot until the service forgets it.
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Collection, Iterable

from meseta import proto
from meseta.frameworks.marathon.app import AppDefinition, format_timestamp
from meseta.frameworks.marathon.group import DEFAULT_EMBED, Group, find_app
from meseta.frameworks.marathon.instances import Instance, _service_ports  # the tasks' rule
from meseta.frameworks.marathon.pathid import PathId
from meseta.frameworks.marathon.snapshot import CurrentAction, DeploymentView, QueueEntry, Snapshot

__all__ = ["APP_EMBEDS", "LIST_ALWAYS", "SHOW_ALWAYS", "app_embeds", "group_embeds",
           "active_instances", "service_ports", "task_json", "app_info", "created_app_info",
           "counts", "task_stats", "group_info", "deployment_json", "queue_json"]

APP_EMBEDS = frozenset({"tasks", "counts", "deployments", "readiness", "lastTaskFailure",
                        "taskStats"})
# What one embed value brings along (`failures` is deprecated shorthand).
_IMPLIES = {"tasks": {"tasks", "deployments"},
            "failures": {"lastTaskFailure", "tasks", "counts", "deployments"}}
LIST_ALWAYS = frozenset({"counts", "deployments"})                          # GET /v2/apps
SHOW_ALWAYS = frozenset({"counts", "tasks", "lastTaskFailure", "deployments"})  # GET /v2/apps/{id}
_GROUP_KEYS = frozenset({"group.groups", "group.apps", "group.pods"})

# Marathon's order of offer checks: an offer refused for one reason never reached the next.
REJECT_REASONS = ("UnfulfilledRole", "UnfulfilledConstraint", "NoCorrespondingReservationFound",
                  "AgentMaintenance", "InsufficientCpus", "InsufficientMemory", "InsufficientDisk",
                  "InsufficientGpus", "InsufficientPorts", "DeclinedScarceResources")


# ---------------------------------------------------------------------------------------------
# Embeds

def app_embeds(values: Iterable[str], *prefixes: str,
               always: Collection[str] = ()) -> frozenset[str]:
    """The app embeds asked for with any of `prefixes` (`apps.counts` -> `counts`); unknown
    values are ignored, as Marathon does."""
    result = set(always)
    for value in values:
        for prefix in prefixes:
            if value.startswith(prefix):
                name = value[len(prefix):]
                result |= _IMPLIES.get(name, {name} & APP_EMBEDS)
    return frozenset(result)


def group_embeds(values: list[str]) -> tuple[frozenset[str], frozenset[str]]:
    """(group embeds for `Group.to_json`, app embeds for its apps). No `embed` at all means
    groups, apps and pods, with apps as bare definitions (no counts)."""
    if not values:
        return DEFAULT_EMBED, frozenset()
    return frozenset(values) & _GROUP_KEYS, app_embeds(values, "group.apps.")


# ---------------------------------------------------------------------------------------------
# Apps and tasks

def active_instances(snapshot: Snapshot, app_id: PathId) -> list[Instance]:
    return [i for i in snapshot.instances.get(app_id, ()) if i.active]


def _health(snapshot: Snapshot, instance: Instance) -> list[dict[str, Any]]:
    return [dict(result) for result in snapshot.health.get(instance.instance_id, ())]


def service_ports(app: AppDefinition) -> list[int]:
    """The app's service ports, as its tasks' `servicePorts` show them."""
    return _service_ports(app)


def task_json(instance: Instance, app: AppDefinition | None, snapshot: Snapshot) -> dict[str, Any]:
    return instance.to_task_json(app, health=_health(snapshot, instance))


def counts(instances: Iterable[Instance], snapshot: Snapshot) -> dict[str, int]:
    """tasksStaged/Running/Healthy/Unhealthy (reference §5.3): healthy = at least one health
    result and all alive; unhealthy = any result not alive; no results = neither."""
    staged = running = healthy = unhealthy = 0
    for instance in instances:
        staged += instance.state == proto.TASK_STAGING
        running += instance.state == proto.TASK_RUNNING
        alive = [bool(r.get("alive")) for r in snapshot.health.get(instance.instance_id, ())]
        healthy += bool(alive) and all(alive)
        unhealthy += not all(alive)
    return {"tasksStaged": staged, "tasksRunning": running, "tasksHealthy": healthy,
            "tasksUnhealthy": unhealthy}


def _stats(instances: list[Instance], snapshot: Snapshot) -> dict[str, Any]:
    c = counts(instances, snapshot)
    stats: dict[str, Any] = {"counts": {"staged": c["tasksStaged"], "running": c["tasksRunning"],
                                        "healthy": c["tasksHealthy"],
                                        "unhealthy": c["tasksUnhealthy"]}}
    lives = [snapshot.now - i.started_at for i in instances if i.started_at is not None]
    if lives:
        stats["lifeTime"] = {"averageSeconds": sum(lives) / len(lives),
                             "medianSeconds": statistics.median(lives)}
    return {"stats": stats}


def task_stats(app: AppDefinition, instances: list[Instance], snapshot: Snapshot) -> dict[str, Any]:
    """Marathon's TaskStatsByVersion: the instances launched with a version since the last
    scaling, with the latest configuration, with an older one, and all of them. A group
    without instances is left out, as Marathon does."""
    groups: dict[str, list[Instance]] = {}
    info = app.version_info
    if info is not None:
        groups["startedAfterLastScaling"] = [i for i in instances
                                             if i.version >= info.last_scaling_at]
        groups["withLatestConfig"] = [i for i in instances
                                      if i.version >= info.last_config_change_at]
        groups["withOutdatedConfig"] = [i for i in instances
                                        if i.version < info.last_config_change_at]
    groups["totalSummary"] = instances
    return {name: _stats(members, snapshot) for name, members in groups.items() if members}


def _readiness(snapshot: Snapshot, app_id: PathId) -> list[dict[str, Any]]:
    return [dict(result) for view in snapshot.deployments for action in view.current_actions
            if action.app_id == app_id for result in action.readiness_check_results]


def app_info(app: AppDefinition, snapshot: Snapshot, embed: Collection[str]) -> dict[str, Any]:
    """AppInfo: the definition plus, per `embed`, counts, deployments, readiness results,
    tasks, the last task failure and task statistics (in Marathon's key order)."""
    out = app.json_view()
    instances = active_instances(snapshot, app.id)
    if "counts" in embed:
        out.update(counts(instances, snapshot))
    if "deployments" in embed:
        out["deployments"] = [{"id": i} for i in snapshot.deployment_ids(app.id)]
    if "readiness" in embed:
        out["readinessCheckResults"] = _readiness(snapshot, app.id)
    if "tasks" in embed:
        out["tasks"] = [task_json(i, app, snapshot) for i in instances]
    failure = snapshot.last_task_failures.get(app.id)
    if "lastTaskFailure" in embed and failure is not None:
        out["lastTaskFailure"] = dict(failure)
    if "taskStats" in embed:
        out["taskStats"] = task_stats(app, instances, snapshot)
    return out


def created_app_info(app: AppDefinition, deployment_id: str) -> dict[str, Any]:
    """The body of `POST /v2/apps`: nothing runs yet, one deployment does."""
    return {**app.json_view(), "tasksStaged": 0, "tasksRunning": 0, "tasksHealthy": 0,
            "tasksUnhealthy": 0, "deployments": [{"id": deployment_id}], "tasks": []}


def group_info(group: Group, snapshot: Snapshot, embed: Collection[str],
               apps_embed: Collection[str]) -> dict[str, Any]:
    return group.to_json(embed, app_json=lambda app: app_info(app, snapshot, apps_embed))


# ---------------------------------------------------------------------------------------------
# Deployments

def _action_json(action: CurrentAction, waiting: bool) -> dict[str, Any]:
    results = [dict(r) for r in action.readiness_check_results]
    out: dict[str, Any] = {"action": action.action, "app": str(action.app_id),
                           "readinessCheckResults": results}
    if waiting:
        out["waiting"] = action.waiting
    return out


def deployment_json(view: DeploymentView, *, waiting: bool = False) -> dict[str, Any]:
    """One element of `GET /v2/deployments`. `waiting=True` adds each current action's
    `waiting` text: only for Meseta's `GET /v2/deployments/{id}`, which no client models."""
    actions = [_action_json(a, waiting) for a in view.current_actions]
    return view.plan.to_info_json(view.current_step, actions)


# ---------------------------------------------------------------------------------------------
# Launch queue

def _reject_summary(declined: dict[str, int], total: int) -> list[dict[str, Any]]:
    """Marathon's `rejectSummary*`: per reason, the offers refused for it and the offers that
    reached that check (those not refused by an earlier one)."""
    reasons = [*REJECT_REASONS, *sorted(set(declined) - set(REJECT_REASONS))]
    processed = max(total, sum(declined.values()))
    summary = []
    for reason in reasons:
        count = declined.get(reason, 0)
        summary.append({"reason": reason, "declined": count, "processed": processed})
        processed = max(0, processed - count)
    return summary


def _offers_json(entry: QueueEntry) -> dict[str, Any]:
    offers = entry.offers
    out: dict[str, Any] = {"processedOffersCount": offers.processed_offers_count,
                           "unusedOffersCount": offers.unused_offers_count}
    if offers.last_unused_offer_at is not None:
        out["lastUnusedOfferAt"] = format_timestamp(offers.last_unused_offer_at)
    if offers.last_used_offer_at is not None:
        out["lastUsedOfferAt"] = format_timestamp(offers.last_used_offer_at)
    last = dict(offers.reject_summary_last_offers)
    out["rejectSummaryLastOffers"] = _reject_summary(last, 0)
    out["rejectSummaryLaunchAttempt"] = _reject_summary(dict(offers.reject_summary_launch_attempt),
                                                        offers.processed_offers_count)
    out["lastRejectReasons"] = list(offers.last_reasons)    # Meseta: the refusals, readable
    return out


def queue_json(snapshot: Snapshot, *, last_unused_offers: bool = False) -> dict[str, Any]:
    """`GET /v2/queue`. `lastUnusedOffers` (embed) is written empty: the snapshot keeps
    per-reason counts and texts, not the refused offers themselves."""
    queue = []
    for app_id, entry in sorted(snapshot.queue.items()):
        app = find_app(snapshot.root, app_id)
        if app is None:
            continue
        time_left = max(0.0, entry.delay.time_left_seconds)
        item: dict[str, Any] = {
            "app": app.json_view(),
            "count": entry.count,
            # no "role" (Marathon 1.9+ writes one): marathon-python's queue item rejects it
            "delay": {"timeLeftSeconds": math.ceil(time_left), "overdue": entry.delay.overdue},
            "since": format_timestamp(entry.since),
            "processedOffersSummary": _offers_json(entry),
        }
        if last_unused_offers:
            item["lastUnusedOffers"] = []
        queue.append(item)
    return {"queue": queue}
