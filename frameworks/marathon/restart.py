"""The rolling restart of an app (Marathon's RestartApplication) as arithmetic on instance counts.

Reference marathon.md §4.3. Two pure pieces:

- `compute_restart_strategy` is Marathon's `TaskReplaceActor.computeRestartStrategy`, step for
  step: from the new instance count N, the upgrade strategy and the instances running when the
  restart begins, how many old instances to kill at once and the most instances that may run.

      >>> compute_restart_strategy(4, UpgradeStrategy(0.5, 0.0), healthy=4, running=4)
      RestartStrategy(kill_immediately=2, max_capacity=4, min_healthy=2)

- `next_actions` is the same algorithm as a level-triggered step: given today's counts (old
  running, new ready, new staged, ...) it says how many old instances to kill and how many new
  ones to start now. The executor calls it after every event (a new instance became healthy and
  ready, an instance failed or terminated) and applies the answer; calling it again before the
  next event returns (0, 0).

The two bounds, with N the new instance count:
    min_healthy  = ⌈N × minimumHealthCapacity⌉          healthy instances kept while killing
    max_capacity = ⌊N × (1 + maximumOverCapacity)⌋      instances alive at once (old + new)
Products are exact decimals (0.7 means 7/10), so 10 × 0.7 keeps 7, as the docs promise.
When min_healthy == max_capacity no instance could ever be replaced, so Marathon allows one
more instance (or, for resident apps, one fewer healthy): `_escape` below.

The step rules, in order:
  1. kill: every old instance that is not healthy (it counts for nothing and holds capacity),
     then healthy old ones while more than min_healthy instances are healthy;
  2. start: new instances up to N, while old (including those being killed, which hold their
     resources until they terminate) plus new stay within max_capacity.
From N healthy old instances these give exactly Marathon's sequence: kill `kill_immediately`,
start what capacity allows, then one old instance per new instance that becomes healthy and
ready, and more new ones as old ones terminate. New instances are never killed here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any, NamedTuple

__all__ = [
    "UpgradeStrategy", "RESIDENT_UPGRADE_STRATEGY", "RestartStrategy", "RestartState",
    "RestartActions", "compute_restart_strategy", "min_healthy", "max_capacity",
    "next_actions", "apply_actions",
]


def _decimal(value: float) -> Fraction:
    """The decimal a user wrote: 0.7 is 7/10, not the binary float just above it."""
    return Fraction(repr(float(value)))


def _capacity(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a number between 0 and 1, not {value!r}")
    if value < 0:
        raise ValueError(f"{name} is less than 0")
    if value > 1:
        raise ValueError(f"{name} is greater than 1")
    return float(value)


@dataclass(frozen=True, slots=True)
class UpgradeStrategy:
    """An app's `upgradeStrategy`; both values are fractions of N in [0, 1]."""
    minimum_health_capacity: float = 1.0
    maximum_over_capacity: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "minimum_health_capacity",
                           _capacity("minimumHealthCapacity", self.minimum_health_capacity))
        object.__setattr__(self, "maximum_over_capacity",
                           _capacity("maximumOverCapacity", self.maximum_over_capacity))

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> UpgradeStrategy:
        return cls(obj.get("minimumHealthCapacity", 1.0), obj.get("maximumOverCapacity", 1.0))

    def to_json(self) -> dict[str, float]:
        # Marathon writes whole doubles without a fraction.
        return {"minimumHealthCapacity": _whole(self.minimum_health_capacity),
                "maximumOverCapacity": _whole(self.maximum_over_capacity)}


def _whole(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


RESIDENT_UPGRADE_STRATEGY = UpgradeStrategy(0.5, 0.0)  # the default of apps with local volumes


def min_healthy(instances: int, upgrade: UpgradeStrategy) -> int:
    """⌈N × minimumHealthCapacity⌉."""
    return math.ceil(instances * _decimal(upgrade.minimum_health_capacity))


def max_capacity(instances: int, upgrade: UpgradeStrategy) -> int:
    """⌊N × (1 + maximumOverCapacity)⌋ = N + ⌊N × maximumOverCapacity⌋."""
    return math.floor(instances * (1 + _decimal(upgrade.maximum_over_capacity)))


def _escape(floor: int, capacity: int, healthy: int) -> bool:
    """Marathon's way out when min_healthy == max_capacity: with as many healthy instances as the
    capacity allows, nothing could be killed (health) nor started (capacity)."""
    return floor == capacity and capacity <= healthy


class RestartStrategy(NamedTuple):
    kill_immediately: int  # old instances to kill when the restart begins
    max_capacity: int      # most instances (old and new) alive at once
    min_healthy: int       # healthy instances kept while killing


def compute_restart_strategy(instances: int, upgrade: UpgradeStrategy, healthy: int, running: int,
                             resident: bool = False) -> RestartStrategy:
    """Marathon's computeRestartStrategy, exactly (reference §4.3).

    `healthy`: instances (old or new) meant to run and considered healthy now; `running`: all
    instances meant to run now.
    """
    if instances <= 0:
        raise ValueError(f"instances must be > 0 but is {instances}")
    floor, capacity = min_healthy(instances, upgrade), max_capacity(instances, upgrade)
    kill = max(0, healthy - floor)
    if _escape(floor, capacity, healthy):
        if resident:
            kill = healthy - floor + 1  # end one below min_healthy: the volumes are not doubled
        else:
            capacity += 1               # one extra instance, so one old one can go
    if instances < running:  # extra instances left by a forced, earlier deployment
        kill = max(running - instances, kill)
    return RestartStrategy(kill, capacity, floor)


@dataclass(frozen=True, slots=True)
class RestartState:
    """The counts a restart step looks at. Old = previous version, new = the target version."""
    instances: int                       # N, the target instance count
    upgrade: UpgradeStrategy = UpgradeStrategy()
    resident: bool = False
    old_running: int = 0    # old instances meant to run (not asked to die)
    old_unhealthy: int = 0  # ... of which not healthy (or not ready)
    old_killing: int = 0    # old instances asked to die, not yet terminal: they hold capacity
    new_ready: int = 0      # new instances healthy and ready
    new_staged: int = 0     # new instances launched, not (yet, or no longer) healthy and ready

    def __post_init__(self) -> None:
        counts = {"instances": self.instances, "old_running": self.old_running,
                  "old_unhealthy": self.old_unhealthy, "old_killing": self.old_killing,
                  "new_ready": self.new_ready, "new_staged": self.new_staged}
        for name, count in counts.items():
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ValueError(f"{name} must be a non-negative integer, not {count!r}")
        if self.old_unhealthy > self.old_running:
            raise ValueError("old_unhealthy cannot exceed old_running")

    @property
    def healthy(self) -> int:
        return self.old_running - self.old_unhealthy + self.new_ready

    @property
    def new_started(self) -> int:
        return self.new_ready + self.new_staged

    @property
    def total(self) -> int:
        """Instances holding resources: old (running or being killed) and new."""
        return self.old_running + self.old_killing + self.new_started

    @property
    def finished(self) -> bool:
        """Marathon's end: N new instances healthy and ready, no old instance left."""
        return self.old_running == self.old_killing == 0 and self.new_ready >= self.instances


class RestartActions(NamedTuple):
    kill_old: int   # old instances to kill now, the unhealthy ones first
    start_new: int  # new instances to launch now


def _bounds(state: RestartState) -> tuple[int, int]:
    """(healthy floor, capacity) for the current counts, with Marathon's escape applied."""
    floor = min_healthy(state.instances, state.upgrade)
    capacity = max_capacity(state.instances, state.upgrade)
    if _escape(floor, capacity, state.healthy):
        if state.resident:
            floor -= 1
        else:
            capacity += 1
    return floor, capacity


def next_actions(state: RestartState) -> RestartActions:
    """How many old instances to kill and new ones to start now (see the module docstring)."""
    floor, _ = _bounds(state)
    kill = min(state.old_running, state.old_unhealthy + max(0, state.healthy - floor))
    after = apply_actions(state, RestartActions(kill, 0))
    _, capacity = _bounds(after)
    room = capacity - after.old_running - after.old_killing - after.new_started
    start = max(0, min(state.instances - after.new_started, room))
    return RestartActions(kill, start)


def apply_actions(state: RestartState, actions: RestartActions) -> RestartState:
    """The counts once the actions are issued: killed old instances (unhealthy first) are
    `old_killing` until they terminate; started new ones are `new_staged`."""
    kill, start = actions
    if not 0 <= kill <= state.old_running or start < 0:
        raise ValueError(f"cannot apply {actions} to {state}")
    return replace(state, old_running=state.old_running - kill,
                   old_unhealthy=max(0, state.old_unhealthy - kill),
                   old_killing=state.old_killing + kill, new_staged=state.new_staged + start)
