"""What the master knows: agents, frameworks, tasks and outstanding offers.

Plain records owned by the master loop. Resources are kept incrementally (used and offered per
agent, allocated per framework and role) so an allocation cycle never has to re-add every
task. `/master/state` and friends render these records (see `views.py`).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Optional

from meseta import proto
from meseta.resources import Resources

MAX_COMPLETED_TASKS_PER_FRAMEWORK = 1000
MAX_COMPLETED_FRAMEWORKS = 50


@dataclass(slots=True)
class StatusRecord:
    """One entry of a task's `statuses[]` in /master/state."""
    state: str
    timestamp: float
    healthy: Optional[bool] = None
    labels: dict[str, str] = field(default_factory=dict)
    container_ip: Optional[str] = None


@dataclass(slots=True)
class Task:
    info: proto.TaskInfo
    framework_id: str
    role: str
    state: str = proto.TASK_STAGING
    statuses: list[StatusRecord] = field(default_factory=list)
    # What the framework is being told (head of the agent's queue) vs. the latest known state.
    status_update_state: Optional[str] = None
    status_update_uuid: Optional[bytes] = None
    user: str = ""
    released: bool = False          # resources returned to the agent after a terminal state
    unreachable_time: Optional[float] = None

    @property
    def id(self) -> str:
        return self.info.task_id

    @property
    def agent_id(self) -> str:
        return self.info.agent_id

    @property
    def resources(self) -> Resources:
        return self.info.resources


@dataclass(slots=True)
class OfferRecord:
    offer: proto.Offer
    created: float                  # monotonic, for --offer_timeout


@dataclass(slots=True)
class Agent:
    id: str
    info: proto.AgentInfo
    peer: Optional[bytes]
    registered_time: float
    reregistered_time: Optional[float] = None
    active: bool = True
    last_seen: float = 0.0          # monotonic
    used: Resources = field(default_factory=Resources)
    offered: Resources = field(default_factory=Resources)
    task_keys: set[tuple[str, str]] = field(default_factory=set)   # (framework_id, task_id)
    unreachable_time: Optional[float] = None
    version: str = proto.MESOS_VERSION

    @property
    def hostname(self) -> str:
        return self.info.hostname

    @property
    def total(self) -> Resources:
        return self.info.resources

    @property
    def pid(self) -> str:
        return f"slave(1)@{self.info.ip}:{self.info.port}"

    def available(self) -> Resources:
        """Unreserved resources neither used nor offered."""
        return self.total - self.used - self.offered


@dataclass(slots=True)
class Framework:
    id: str
    info: proto.FrameworkInfo
    peer: Optional[bytes]
    registered_time: float
    reregistered_time: Optional[float] = None
    unregistered_time: float = 0.0
    connected: bool = True
    active: bool = True
    recovered: bool = False         # known from a re-registering agent, not yet re-subscribed
    last_seen: float = 0.0
    suppressed_roles: set[str] = field(default_factory=set)
    tasks: dict[str, Task] = field(default_factory=dict)
    unreachable_tasks: dict[str, Task] = field(default_factory=dict)
    completed_tasks: deque = field(default_factory=lambda: deque(maxlen=MAX_COMPLETED_TASKS_PER_FRAMEWORK))
    offers: dict[str, OfferRecord] = field(default_factory=dict)
    used: dict[str, Resources] = field(default_factory=dict)       # per role
    offered: dict[str, Resources] = field(default_factory=dict)    # per role
    allocations: int = 0            # DRF tie-breaker

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(self.info.roles) or ("*",)

    @property
    def partition_aware(self) -> bool:
        return proto.PARTITION_AWARE in self.info.capabilities

    def allocated(self, role: str) -> Resources:
        return self.used.get(role, Resources()) + self.offered.get(role, Resources())

    def total_used(self) -> Resources:
        total = Resources()
        for res in self.used.values():
            total = total + res
        return total

    def total_offered(self) -> Resources:
        total = Resources()
        for res in self.offered.values():
            total = total + res
        return total


def add_to(mapping: dict[str, Resources], key: str, res: Resources) -> None:
    """Per-framework totals keep scalar quantities only: what DRF needs, and ranges from
    different agents (the same ports on two hosts) cannot be summed."""
    mapping[key] = mapping.get(key, Resources()) + Resources(scalars=res.scalars)


def take_from(mapping: dict[str, Resources], key: str, res: Resources) -> None:
    current = mapping.get(key, Resources()).scalars
    remaining = {name: round(value - res.scalars.get(name, 0.0), 3) for name, value in current.items()}
    remaining = {name: value for name, value in remaining.items() if value > 1e-9}
    if remaining:
        mapping[key] = Resources(scalars=remaining)
    else:
        mapping.pop(key, None)
