"""Marathon-level health checks (reference marathon.md §5): what a result means and what to do.
No IO: the checker (checker.py) runs the checks and hands each result in with its time; the
answer is a list of decisions (`Publish` an event, `Kill` an instance) the core applies.

    tracker = HealthTracker()
    tracker.result(inst, app, check_index=0, ok=False, cause="HTTP 503", now=t)
        -> [Publish(failed_health_check_event), Kill(inst.instance_id, "HTTP 503"), Publish(...)]
    tracker.results(inst.instance_id)   -> the task's `healthCheckResults`, one per check
    tracker.forget(inst.instance_id)    when the instance is terminal

Only HTTP, HTTPS and TCP checks are Marathon's own; COMMAND and MESOS_* checks run on the agent
and arrive as `TaskStatus.healthy` (the core reads that flag itself).

One result, in this order:
 1. ignored: `ok is None` (a 1xx answer with `ignoreHttp1xx`), a task not TASK_RUNNING
    (staging, killing, unreachable: never killed for its checks), a check Marathon does not run;
 2. grace: a failure while the task has never passed this check and `startedAt` (else
    `stagedAt`) + `gracePeriodSeconds` is still ahead is ignored too, and leaves no record;
 3. the record (firstSuccess, lastSuccess, lastFailure, lastFailureCause, consecutiveFailures)
    is updated; `alive` = a success, later than the last failure. A success resets the count;
 4. events: every counted failure publishes `failed_health_check_event`; an `alive` flip
    publishes `health_status_changed_event`; a change of the instance's health (all of its
    Marathon-level checks alive; None before any record) publishes `instance_health_changed_event`;
 5. kill: a counted failure with consecutiveFailures >= maxConsecutiveFailures > 0 of an
    instance whose goal is Running, not killed before, and allowed by the rate limit below.

Rate limit (Marathon issues #3317, #2874: an overloaded leader marks a healthy fleet unhealthy
and kills it all). A health kill of app A is allowed when

    (a) the circuit breaker is closed, and
    (b) no earlier health kill of A is in flight, or A still has at least
        ceil(instances x minimumHealthCapacity) healthy instances (all Marathon-level checks
        alive, not killed).

A kill is in flight from the kill until an instance of A that was not killed turns healthy (its
replacement, or a recovering one: each turn releases the oldest kill), or until it expires after
`gracePeriodSeconds + (maxConsecutiveFailures + 1) x intervalSeconds` of the failed check, the
time its replacement had to prove itself. So with the default minimumHealthCapacity of 1 an app
loses at most one instance at a time to health kills: the next waits for the replacement
(which the core launches at once, as a killed instance is decommissioned) to become healthy.
An app that tolerates less capacity (minimumHealthCapacity < 1) is limited only once it falls
below that capacity. A genuinely broken app is still cycled, one instance per expiry.

The circuit breaker is about the checker itself: it opens while, of every (instance, check) pair
with a counted result, at least `breaker_min_checked` exist and more than `breaker_ratio` of them
failed their latest check. Most of the cluster failing at once is more likely the checker (or the
leader's network) than the tasks; failures are still counted and published, but nothing is
killed until it closes (logged on every change; `stats()` for metrics). Below
`breaker_min_checked` pairs it never opens: a small cluster cannot tell the two apart.

A kill that is held is not queued: it is tried again at the instance's next counted failure.
Health is in memory only, as in Marathon: a new leader starts with no results.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from meseta.frameworks.marathon.app import AppDefinition, format_timestamp
from meseta.frameworks.marathon.events import event
from meseta.frameworks.marathon.instances import GOAL_RUNNING, Instance
from meseta.frameworks.marathon.instructions import Publish
from meseta.frameworks.marathon.pathid import PathId
from meseta.log import get_logger

__all__ = ["MARATHON_PROTOCOLS", "marathon_checks", "Health", "Kill", "Decision", "HealthPolicy",
           "HealthTracker"]

log = get_logger("meseta.marathon.health")

MARATHON_PROTOCOLS = frozenset({"HTTP", "HTTPS", "TCP"})


def marathon_checks(app: AppDefinition) -> tuple[int, ...]:
    """Indices into `app.health_checks` of the checks Marathon runs itself."""
    return tuple(i for i, c in enumerate(app.health_checks)
                 if c.get("protocol", "HTTP") in MARATHON_PROTOCOLS)


@dataclass(frozen=True, slots=True)
class Health:
    """One instance's record for one check (Marathon's `Health`)."""
    instance_id: str
    first_success: float | None = None
    last_success: float | None = None
    last_failure: float | None = None
    last_failure_cause: str | None = None
    consecutive_failures: int = 0

    @property
    def alive(self) -> bool:
        return self.last_success is not None and (
            self.last_failure is None or self.last_success > self.last_failure)

    def succeeded(self, now: float) -> Health:
        return replace(self, first_success=self.first_success if self.first_success is not None
                       else now, last_success=now, consecutive_failures=0)

    def failed(self, now: float, cause: str) -> Health:
        return replace(self, last_failure=now, last_failure_cause=cause,
                       consecutive_failures=self.consecutive_failures + 1)

    def to_json(self) -> dict[str, Any]:
        return {"alive": self.alive, "consecutiveFailures": self.consecutive_failures,
                "firstSuccess": _timestamp(self.first_success),
                "lastSuccess": _timestamp(self.last_success),
                "lastFailure": _timestamp(self.last_failure),
                "lastFailureCause": self.last_failure_cause, "instanceId": self.instance_id}


@dataclass(frozen=True, slots=True)
class Kill:
    """Kill this instance for failed health checks (the core decommissions it, so it is
    replaced at once, and counts it toward the app's backoff)."""
    instance_id: str
    reason: str


Decision = Publish | Kill


@dataclass(frozen=True)
class HealthPolicy:
    breaker_ratio: float = 0.5       # open when more than this share of checked pairs fail ...
    breaker_min_checked: int = 10    # ... and at least this many pairs have a counted result


@dataclass
class _Checked:
    """What the tracker knows of one instance."""
    app_id: PathId
    checks: tuple[int, ...]                       # the app's Marathon-level check indices
    health: dict[int, Health] = field(default_factory=dict)
    killed: bool = False
    held: bool = False                            # due for a kill the rate limit holds

    @property
    def healthy(self) -> bool | None:
        if not self.health:
            return None
        return all(i in self.health and self.health[i].alive for i in self.checks)


class HealthTracker:
    def __init__(self, policy: HealthPolicy | None = None) -> None:
        self.policy = policy or HealthPolicy()
        self._checked: dict[str, _Checked] = {}
        self._by_app: dict[PathId, set[str]] = {}
        # app -> killed instance id -> when its slot expires (insertion order = kill order)
        self._in_flight: dict[PathId, dict[str, float]] = {}
        self._latest: dict[tuple[str, int], bool] = {}    # (instance, check) -> last counted ok
        self._failing = 0
        self.breaker_open = False
        self.kills = 0
        self.kills_held = 0

    # -- results -----------------------------------------------------------------------------

    def result(self, instance: Instance, app: AppDefinition, check_index: int, ok: bool | None,
               cause: str, now: float) -> list[Decision]:
        """One check result of `instance`; `app` is the definition whose `health_checks` ran."""
        checks = marathon_checks(app)
        if ok is None or not instance.running or check_index not in checks:
            return []
        check = app.health_checks[check_index]
        iid = instance.instance_id
        entry = self._checked.get(iid)
        before = entry.health.get(check_index) if entry else None
        if before is None:
            before = Health(iid)
        if not ok and _in_grace(instance, check, before, now):
            return []
        if entry is None:
            entry = self._checked[iid] = _Checked(instance.app_id, checks)
            self._by_app.setdefault(instance.app_id, set()).add(iid)
        after = before.succeeded(now) if ok else before.failed(now, cause)
        was_healthy = entry.healthy
        entry.health[check_index] = after
        entry.held = entry.held and not ok
        self._count(iid, check_index, ok)

        out: list[Decision] = []
        if not ok:
            out.append(Publish(failed_health_check(instance, check, now)))
        if after.alive != before.alive:
            out.append(Publish(health_status_changed(instance, after.alive, now)))
        if entry.healthy != was_healthy:
            out.append(Publish(instance_health_changed(instance, entry.healthy, now)))
            if entry.healthy and not entry.killed:
                self._release_one(instance.app_id)
        limit = check.get("maxConsecutiveFailures", 3)
        if (not ok and 0 < limit <= after.consecutive_failures
                and instance.goal == GOAL_RUNNING and not entry.killed):
            out.extend(self._kill(instance, app, check, entry, cause, now))
        return out

    def results(self, instance_id: str) -> tuple[dict[str, Any], ...]:
        """`healthCheckResults`: one per Marathon-level check once any has a record (a check
        without a result yet shows as not alive), none before."""
        entry = self._checked.get(instance_id)
        if entry is None:
            return ()
        return tuple(entry.health.get(i, Health(instance_id)).to_json() for i in entry.checks)

    def forget(self, instance_id: str) -> None:
        """The instance is terminal. A health kill in flight for it stays until its
        replacement is healthy or it expires."""
        entry = self._checked.pop(instance_id, None)
        if entry is None:
            return
        ids = self._by_app.get(entry.app_id)
        if ids is not None:
            ids.discard(instance_id)
            if not ids:
                del self._by_app[entry.app_id]
        for index in entry.checks:
            if self._latest.pop((instance_id, index), True) is False:
                self._failing -= 1
        self._update_breaker()

    def stats(self) -> dict[str, float]:
        return {"marathon/health/checked": float(len(self._latest)),
                "marathon/health/failing": float(self._failing),
                "marathon/health/breaker_open": float(self.breaker_open),
                "marathon/health/kills": float(self.kills),
                "marathon/health/kills_held": float(self.kills_held)}

    # -- kills and their rate limit ------------------------------------------------------------

    def _kill(self, instance: Instance, app: AppDefinition, check: dict[str, Any],
              entry: _Checked, cause: str, now: float) -> list[Decision]:
        held = self._held_because(app, now)
        if held:
            self.kills_held += 1
            if not entry.held:       # once per instance: an overload would flood the log
                log.info("health kill held", instance=instance.instance_id, reason=held)
            entry.held = True
            return []
        entry.killed = True
        self.kills += 1
        expires = now + (check.get("gracePeriodSeconds", 300)
                         + (check.get("maxConsecutiveFailures", 3) + 1)
                         * check.get("intervalSeconds", 60))
        self._in_flight.setdefault(app.id, {})[instance.instance_id] = expires
        log.info("killing unhealthy instance", instance=instance.instance_id, reason=cause)
        return [Kill(instance.instance_id, cause),
                Publish(unhealthy_instance_kill(instance, cause, now))]

    def _held_because(self, app: AppDefinition, now: float) -> str:
        """Why a health kill of `app` must wait now ("" = it may go ahead)."""
        if self.breaker_open:
            return (f"circuit breaker open: {self._failing} of {len(self._latest)} checked "
                    f"targets failing")
        in_flight = self._in_flight.get(app.id)
        if in_flight:
            for iid, expires in list(in_flight.items()):
                if expires <= now:
                    del in_flight[iid]
        if not in_flight:
            return ""
        floor = math.ceil(app.instances * app.upgrade_strategy.minimum_health_capacity)
        healthy = self._healthy_count(app.id)
        if healthy >= floor:
            return ""
        return (f"{len(in_flight)} health kill(s) of {app.id} wait for a healthy replacement "
                f"({healthy} healthy, {floor} wanted)")

    def _healthy_count(self, app_id: PathId) -> int:
        return sum(1 for iid in self._by_app.get(app_id, ())
                   if not self._checked[iid].killed and self._checked[iid].healthy)

    def _release_one(self, app_id: PathId) -> None:
        in_flight = self._in_flight.get(app_id)
        if in_flight:
            del in_flight[next(iter(in_flight))]
            if not in_flight:
                del self._in_flight[app_id]

    # -- circuit breaker ---------------------------------------------------------------------

    def _count(self, instance_id: str, check_index: int, ok: bool) -> None:
        previous = self._latest.get((instance_id, check_index))
        self._latest[(instance_id, check_index)] = ok
        if previous is not False and not ok:
            self._failing += 1
        elif previous is False and ok:
            self._failing -= 1
        self._update_breaker()

    def _update_breaker(self) -> None:
        checked = len(self._latest)
        is_open = (checked >= self.policy.breaker_min_checked
                   and self._failing > self.policy.breaker_ratio * checked)
        if is_open != self.breaker_open:
            self.breaker_open = is_open
            if is_open:
                log.warning("health checks failing across the cluster: no health kills until "
                            "they recover", failing=self._failing, checked=checked)
            else:
                log.info("health checks recovered: health kills resume",
                         failing=self._failing, checked=checked)


def _in_grace(instance: Instance, check: dict[str, Any], health: Health, now: float) -> bool:
    started = instance.started_at if instance.started_at is not None else instance.staged_at
    return (health.first_success is None
            and started + check.get("gracePeriodSeconds", 300) > now)


def _timestamp(seconds: float | None) -> str | None:
    return None if seconds is None else format_timestamp(seconds)


# -- events (reference §6) ---------------------------------------------------------------------

def failed_health_check(inst: Instance, check: dict[str, Any], now: float) -> dict[str, Any]:
    return event("failed_health_check_event", now, appId=str(inst.app_id),
                 taskId=inst.instance_id, healthCheck=dict(check))


def health_status_changed(inst: Instance, alive: bool, now: float) -> dict[str, Any]:
    return event("health_status_changed_event", now, appId=str(inst.app_id),
                 instanceId=inst.instance_id, version=inst.version, alive=alive)


def instance_health_changed(inst: Instance, healthy: bool | None, now: float) -> dict[str, Any]:
    return event("instance_health_changed_event", now, instanceId=inst.instance_id,
                 runSpecId=str(inst.app_id), runSpecVersion=inst.version, healthy=healthy)


def unhealthy_instance_kill(inst: Instance, reason: str, now: float) -> dict[str, Any]:
    return event("unhealthy_instance_kill_event", now, appId=str(inst.app_id),
                 taskId=inst.task_id, instanceId=inst.instance_id, version=inst.version,
                 reason=reason, host=inst.host, slaveId=inst.agent_id)
