"""What the Marathon core asks its IO shell to do. The core decides; the shell (service.py) runs
these in order against the SDK driver, the store and the event bus.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from meseta import proto
from meseta.frameworks.marathon.app import AppDefinition
from meseta.frameworks.marathon.group import Group
from meseta.frameworks.marathon.instances import Instance

__all__ = ["Instruction", "LaunchTasks", "DeclineOffer", "KillTask", "ReviveOffers",
           "SuppressOffers", "Reconcile", "SaveRoot", "SaveInstance", "DeleteInstance",
           "SaveDeployment", "DeleteDeployment", "SaveFrameworkId", "Publish", "WatchChecks",
           "UnwatchChecks"]


class Instruction:
    __slots__ = ()


@dataclass(frozen=True, slots=True)
class LaunchTasks(Instruction):
    offer_id: str
    tasks: tuple[proto.TaskInfo, ...]


@dataclass(frozen=True, slots=True)
class DeclineOffer(Instruction):
    offer_id: str
    refuse_seconds: float


@dataclass(frozen=True, slots=True)
class KillTask(Instruction):
    task_id: str
    agent_id: str | None
    grace_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class ReviveOffers(Instruction):
    pass


@dataclass(frozen=True, slots=True)
class SuppressOffers(Instruction):
    pass


@dataclass(frozen=True, slots=True)
class Reconcile(Instruction):
    """Ask the master for the state of these tasks; none = every task of the framework."""
    tasks: tuple[tuple[str, str | None], ...] = ()   # (task id, agent id)


@dataclass(frozen=True, slots=True)
class SaveRoot(Instruction):
    root: Group


@dataclass(frozen=True, slots=True)
class SaveInstance(Instruction):
    instance: Instance


@dataclass(frozen=True, slots=True)
class DeleteInstance(Instruction):
    instance_id: str


@dataclass(frozen=True, slots=True)
class SaveDeployment(Instruction):
    record: dict[str, Any] = field(hash=False)


@dataclass(frozen=True, slots=True)
class DeleteDeployment(Instruction):
    deployment_id: str


@dataclass(frozen=True, slots=True)
class SaveFrameworkId(Instruction):
    framework_id: str


@dataclass(frozen=True, slots=True)
class Publish(Instruction):
    """A Marathon event (reference §6): `event["eventType"]` names it."""
    event: dict[str, Any] = field(hash=False)


@dataclass(frozen=True, slots=True)
class WatchChecks(Instruction):
    """Run the app's Marathon-level health checks and its readiness check on the instance."""
    instance: Instance
    app: AppDefinition


@dataclass(frozen=True, slots=True)
class UnwatchChecks(Instruction):
    instance_id: str
