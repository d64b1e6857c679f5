"""What the core knows of its instances' health and readiness, from both sources:

    Marathon-level checks (HTTP, HTTPS, TCP)   the checker's results -> health.HealthTracker,
                                               which decides events and rate-limited kills
    Mesos-level checks (COMMAND, MESOS_*)      TaskStatus.healthy from the agent (which kills
                                               by itself) -> a record and events here
    readiness                                  the checker's responses -> readiness.ReadinessTracker

`results` is each instance's `healthCheckResults` (Marathon's checks, then the agent's), what
the API shows; `is_ready` is what a deployment counts. Pure: the core passes time in and acts
on what comes back.
"""

from __future__ import annotations

from typing import Any

from meseta.frameworks.marathon.app import AppDefinition
from meseta.frameworks.marathon.health import (Decision, Health, HealthTracker,
                                               health_status_changed, instance_health_changed,
                                               marathon_checks)
from meseta.frameworks.marathon.instances import Instance
from meseta.frameworks.marathon.readiness import ReadinessTracker

__all__ = ["InstanceChecks", "MESOS_HEALTH"]

MESOS_HEALTH = frozenset({"COMMAND", "MESOS_HTTP", "MESOS_HTTPS", "MESOS_TCP"})


class InstanceChecks:
    def __init__(self) -> None:
        self.results: dict[str, tuple[dict[str, Any], ...]] = {}
        self.tracker = HealthTracker()
        self.readiness = ReadinessTracker()
        self._mesos: dict[str, Health] = {}

    @staticmethod
    def watched(app: AppDefinition) -> bool:
        """Does the checker have work for the app's instances?"""
        return bool(marathon_checks(app) or app.readiness_checks)

    def is_ready(self, inst: Instance, app: AppDefinition) -> bool:
        """Running, every check alive (the agent's through `inst.healthy`), and ready."""
        if not inst.running:
            return False
        for check in app.health_checks:
            if check.get("protocol") in MESOS_HEALTH:
                if inst.healthy is not True:
                    return False
            else:
                results = self.results.get(inst.instance_id)
                if not results or not all(r.get("alive") for r in results):
                    return False
        return self.readiness.ready(inst, app)

    def marathon_result(self, inst: Instance, app: AppDefinition, index: int, ok: bool | None,
                        cause: str, now: float) -> list[Decision]:
        decisions = self.tracker.result(inst, app, index, ok, cause, now)
        self._collect(inst.instance_id)
        return decisions

    def mesos_result(self, inst: Instance, healthy: bool, message: str, now: float
                     ) -> list[dict[str, Any]]:
        """The agent's verdict: the record, and the events of a change (no kill: the agent
        kills after the check's failures itself)."""
        before = self._mesos.get(inst.instance_id, Health(inst.instance_id))
        after = before.succeeded(now) if healthy else before.failed(now, message or "unhealthy")
        self._mesos[inst.instance_id] = after
        self._collect(inst.instance_id)
        if after.alive != before.alive or before.last_success is before.last_failure is None:
            return [health_status_changed(inst, after.alive, now),
                    instance_health_changed(inst, after.alive, now)]
        return []

    def readiness_result(self, inst: Instance, app: AppDefinition,
                         response: dict[str, Any]) -> bool:
        """True when the response made the instance ready."""
        return self.readiness.result(inst, app, response)

    def readiness_results(self, instance_id: str) -> tuple[dict[str, Any], ...]:
        return self.readiness.results(instance_id)

    def forget(self, instance_id: str) -> None:
        self.results.pop(instance_id, None)
        self._mesos.pop(instance_id, None)
        self.tracker.forget(instance_id)
        self.readiness.forget(instance_id)

    def _collect(self, instance_id: str) -> None:
        mesos = self._mesos.get(instance_id)
        results = self.tracker.results(instance_id) + ((mesos.to_json(),) if mesos else ())
        if results:
            self.results[instance_id] = results
