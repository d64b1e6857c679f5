"""What the load balancer knows of Marathon: the apps of `GET /v2/apps?embed=apps.tasks`, kept
current by folding Marathon's events in — pure, no IO.

    apps = Apps.from_snapshot(body["apps"])
    apps, wanted = apps.apply(event)      # wanted: "" (folded), or why a fresh snapshot is needed

marathon-lb re-fetched every app on every relevant event. Here only a change of app
*definitions* needs the snapshot again (`api_post_event`, `group_change_success`,
`app_terminated_event`, `deployment_success`/`_failed`); the events that come by the thousand
during a deployment — `status_update_event` and `health_status_changed_event` — carry what the
renderer reads of a task (host, ports, ipAddresses, state, alive) and are folded in place. So a
new instance reaches HAProxy without a 1,000-app fetch in between.

Folding is per key, last writer wins: a task's state is the state of its latest event, its
health the latest health event. That makes it safe to replay events that a snapshot already
reflects — the follower opens the stream first, then takes the snapshot, then applies every event
the stream delivered since it opened: the snapshot may be older or newer than any one of them, and
the result after the last one is the same.

`Apps` is immutable and copy-on-write per app: a reader (the renderer's thread) can hold
`apps.values()` while the follower folds the next event.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

__all__ = ["Apps", "TERMINAL_STATES", "RESYNC_EVENTS", "RELEVANT_EVENTS"]

# Mesos states after which a task is gone for good (or as good as gone for routing).
TERMINAL_STATES = frozenset({
    "TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR", "TASK_DROPPED", "TASK_GONE",
    "TASK_GONE_BY_OPERATOR",
})

# App definitions changed: the snapshot is the only complete source.
RESYNC_EVENTS = frozenset({
    "api_post_event", "group_change_success", "app_terminated_event", "deployment_success",
    "deployment_failed",
})

# Everything the follower subscribes to (`/v2/events?event_type=...`).
RELEVANT_EVENTS = RESYNC_EVENTS | {"status_update_event", "health_status_changed_event"}


@dataclass(frozen=True)
class Apps:
    by_id: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_snapshot(cls, apps: Iterable[Mapping[str, Any]]) -> "Apps":
        return cls({app["id"]: app for app in apps if isinstance(app, Mapping) and "id" in app})

    def values(self) -> list[Mapping[str, Any]]:
        return list(self.by_id.values())

    def __len__(self) -> int:
        return len(self.by_id)

    def apply(self, event: Mapping[str, Any]) -> tuple["Apps", str]:
        """Fold one Marathon event in. Returns the new state and "" when it was folded, or the
        reason a new snapshot is needed (the state returned is then unchanged)."""
        kind = event.get("eventType", "")
        if kind in RESYNC_EVENTS:
            return self, kind
        if kind == "status_update_event":
            return self._status_update(event)
        if kind == "health_status_changed_event":
            return self._health_changed(event)
        return self, ""

    # -- folds ------------------------------------------------------------------------------------

    def _status_update(self, event: Mapping[str, Any]) -> tuple["Apps", str]:
        app_id, task_id = event.get("appId"), event.get("taskId")
        app = self.by_id.get(app_id) if isinstance(app_id, str) else None
        if not isinstance(task_id, str):
            return self, ""
        if app is None:
            if event.get("taskStatus") in TERMINAL_STATES:
                return self, ""                  # an app we do not know lost a task: nothing to do
            return self, f"status_update_event for unknown app {app_id}"
        tasks = [t for t in app.get("tasks") or () if t.get("id") != task_id]
        if event.get("taskStatus") not in TERMINAL_STATES:
            old = next((t for t in app.get("tasks") or () if t.get("id") == task_id), {})
            tasks.append({
                **old,
                "id": task_id,
                "appId": app_id,
                "slaveId": event.get("slaveId", old.get("slaveId")),
                "host": event.get("host", old.get("host", "")),
                "state": event.get("taskStatus"),
                "ports": list(event.get("ports") or []),
                "ipAddresses": list(event.get("ipAddresses") or []),
                "version": event.get("version", old.get("version")),
                "healthCheckResults": list(old.get("healthCheckResults") or []),
            })
        return self._with_tasks(app, tasks), ""

    def _health_changed(self, event: Mapping[str, Any]) -> tuple["Apps", str]:
        app = self.by_id.get(event.get("appId"))  # type: ignore[arg-type]
        if app is None:
            return self, ""
        # Marathon 1.5+ names the instance (`<app>.instance-<uuid>`, its tasks are
        # `<instance>._app.<n>`); older Marathons named the task.
        instance, task = event.get("instanceId"), event.get("taskId")
        alive = bool(event.get("alive"))
        changed = False
        tasks = []
        for t in app.get("tasks") or ():
            tid = t.get("id", "")
            if tid == task or (isinstance(instance, str) and (tid == instance or tid.startswith(instance + "."))):
                t = {**t, "healthCheckResults": [{"alive": alive, "taskId": tid,
                                                  **({"instanceId": instance} if instance else {})}]}
                changed = True
            tasks.append(t)
        return (self._with_tasks(app, tasks), "") if changed else (self, "")

    def _with_tasks(self, app: Mapping[str, Any], tasks: list) -> "Apps":
        by_id = dict(self.by_id)
        by_id[app["id"]] = {**app, "tasks": tasks}
        return Apps(by_id)
