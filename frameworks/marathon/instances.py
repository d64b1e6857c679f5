"""Instances: one launch of an app on an agent, as Marathon tracks it (reference marathon.md §1.4).

    inst = Instance.launched(app, task_id=..., agent_id=..., host=..., host_ports=(31001,), now=t)
    inst = inst.updated(status_state="TASK_RUNNING", now=t2)
    inst.to_task_json(app)      -> the `/v2/tasks` object marathon-python reads

An instance is a value: every change makes a new one, so an API snapshot can hold the old one
while the service moves on. Its `goal` says what the service wants of it:

    Running         keep it running (the launch queue replaces it when it ends)
    Decommissioned  kill it and forget it once terminal (scale-down, stop, replaced by a new version)

Ids follow Marathon 1.5+: instance `product_web.instance-<uuid>`, its task
`product_web.instance-<uuid>._app.1` (pathid.parse_task_id reads both and the legacy form).
"""

from __future__ import annotations

import dataclasses
import uuid as _uuid
from dataclasses import dataclass, field
from typing import Any, Mapping

from meseta import proto
from meseta.frameworks.marathon.app import AppDefinition, format_timestamp
from meseta.frameworks.marathon.pathid import PathId, PathIdError

__all__ = ["Instance", "GOAL_RUNNING", "GOAL_DECOMMISSIONED", "new_instance_id", "task_id_for",
           "instance_id_of", "CONDITIONS"]

GOAL_RUNNING = "Running"
GOAL_DECOMMISSIONED = "Decommissioned"
GOALS = (GOAL_RUNNING, GOAL_DECOMMISSIONED)

# Mesos task state -> Marathon's instance condition (instance_changed_event `condition`).
CONDITIONS = {
    proto.TASK_STAGING: "Staging", proto.TASK_STARTING: "Starting", proto.TASK_RUNNING: "Running",
    proto.TASK_KILLING: "Killing", proto.TASK_FINISHED: "Finished", proto.TASK_FAILED: "Failed",
    proto.TASK_KILLED: "Killed", proto.TASK_ERROR: "Error", proto.TASK_LOST: "Unknown",
    proto.TASK_DROPPED: "Dropped", proto.TASK_UNREACHABLE: "Unreachable", proto.TASK_GONE: "Gone",
    proto.TASK_GONE_BY_OPERATOR: "Gone", proto.TASK_UNKNOWN: "Unknown",
}

_INSTANCE_MARK = ".instance-"
_TASK_SUFFIX = "._app."


def new_instance_id(app_id: PathId, unique: str | None = None) -> str:
    """`product_web.instance-<uuid>` for `/product/web`."""
    if app_id.is_root:
        raise PathIdError(str(app_id), ["the root group has no instances"])
    return f"{app_id.safe_path()}{_INSTANCE_MARK}{unique or _uuid.uuid4()}"


def task_id_for(instance_id: str, incarnation: int = 1) -> str:
    return f"{instance_id}{_TASK_SUFFIX}{incarnation}"


def instance_id_of(task_id: str) -> str:
    """The instance a task id belongs to (a legacy id is its own instance)."""
    head, sep, _ = task_id.rpartition(_TASK_SUFFIX)
    return head if sep and _INSTANCE_MARK in head else task_id


@dataclass(frozen=True, slots=True)
class Instance:
    instance_id: str
    task_id: str
    app_id: PathId
    version: str                  # the app version it was launched with
    config_version: str           # that version's lastConfigChangeAt: which configuration it runs
    agent_id: str
    host: str
    agent_attributes: Mapping[str, Any] = field(default_factory=dict)
    host_ports: tuple[int, ...] = ()
    state: str = proto.TASK_STAGING
    goal: str = GOAL_RUNNING
    staged_at: float = 0.0
    started_at: float | None = None
    updated_at: float = 0.0       # last status change
    message: str = ""
    healthy: bool | None = None   # Mesos-level health (TaskStatus.healthy)
    ip_address: str | None = None
    role: str = "*"

    @classmethod
    def launched(cls, app: AppDefinition, *, instance_id: str, agent_id: str, host: str,
                 host_ports: tuple[int, ...], now: float,
                 agent_attributes: Mapping[str, Any] | None = None, role: str = "*",
                 ip_address: str | None = None) -> Instance:
        """A new instance of `app` just handed to the master (TASK_STAGING)."""
        config = app.version_info.last_config_change_at if app.version_info else app.version
        return cls(instance_id=instance_id, task_id=task_id_for(instance_id), app_id=app.id,
                   version=app.version or "", config_version=config or "", agent_id=agent_id,
                   host=host, agent_attributes=dict(agent_attributes or {}),
                   host_ports=tuple(host_ports), staged_at=now, updated_at=now, role=role,
                   ip_address=ip_address)

    # -- state ------------------------------------------------------------------------------

    @property
    def terminal(self) -> bool:
        return self.state in proto.TERMINAL_STATES

    @property
    def active(self) -> bool:
        """Holds (or may hold) resources on an agent: not terminal."""
        return not self.terminal

    @property
    def running(self) -> bool:
        return self.state == proto.TASK_RUNNING

    @property
    def condition(self) -> str:
        return CONDITIONS.get(self.state, "Unknown")

    def runs_config(self, app: AppDefinition) -> bool:
        """Does it run `app`'s current configuration (a scale-only change keeps it current)?"""
        wanted = app.version_info.last_config_change_at if app.version_info else app.version
        return self.config_version == wanted

    def updated(self, *, state: str, now: float, message: str = "",
                healthy: bool | None = None, ip_address: str | None = None) -> Instance:
        started = self.started_at
        if state == proto.TASK_RUNNING and started is None:
            started = now
        return dataclasses.replace(
            self, state=state, updated_at=now, message=message,
            started_at=started,
            healthy=healthy if healthy is not None else self.healthy,
            ip_address=ip_address or self.ip_address)

    def decommissioned(self) -> Instance:
        return dataclasses.replace(self, goal=GOAL_DECOMMISSIONED)

    # -- JSON -------------------------------------------------------------------------------

    def to_task_json(self, app: AppDefinition | None,
                     health: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Marathon's Task object: exactly the keys marathon-python's MarathonTask accepts."""
        out: dict[str, Any] = {
            "id": self.task_id,
            "appId": str(self.app_id),
            "host": self.host,
            "ports": list(self.host_ports),
            "servicePorts": _service_ports(app),
            "slaveId": self.agent_id,
            "state": self.state,
            "stagedAt": format_timestamp(self.staged_at),
            "version": self.version,
            "ipAddresses": ([{"ipAddress": self.ip_address, "protocol": "IPv4"}]
                            if self.ip_address else []),
            "localVolumes": [],
            "role": self.role,
        }
        if self.started_at is not None:
            out["startedAt"] = format_timestamp(self.started_at)
        if health is not None:
            out["healthCheckResults"] = health
        return out

    # -- storage ----------------------------------------------------------------------------

    def to_record(self) -> dict[str, Any]:
        """A JSON-able record for the store (every field; ids as text)."""
        record = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        record["app_id"] = str(self.app_id)
        record["host_ports"] = list(self.host_ports)
        record["agent_attributes"] = dict(self.agent_attributes)
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Instance:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in record.items() if k in known}
        values["app_id"] = PathId.parse(values["app_id"])
        values["host_ports"] = tuple(values.get("host_ports", ()))
        return cls(**values)


def _service_ports(app: AppDefinition | None) -> list[int]:
    if app is None:
        return []
    if app.network_mode == "host":
        return [d.get("port", 0) for d in app.port_definitions]
    return [m.get("servicePort", 0) for m in (app.container or {}).get("portMappings", [])]
