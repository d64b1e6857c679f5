"""Readiness checks (reference marathon.md §2.7): is a new instance ready to take traffic? No IO:
the checker (checker.py) GETs the endpoint and hands each response in.

    readiness = ReadinessTracker()
    readiness.result(inst, app, {"status": 200, "contentType": "text/plain", "body": "ok"})
        -> True: the instance just became ready (deployments should look again)
    readiness.ready(inst, app)          -> bool, for the core's is_ready
    readiness.results(inst.instance_id) -> {"taskId","name","ready","lastResponse"?}

An app has at most one readiness check. Readiness gates only instances running the app's
current configuration, the new instances of a deployment (Marathon checks no others): every
other instance, and every instance of an app without a readiness check, is ready. Ready is
final: the checker stops checking an instance once it answered one of
`httpStatusCodesForReady`, and a late result cannot take it back. `lastResponse` is kept only
with `preserveLastResponse`; an error (no answer) has none. In memory only, as health.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from meseta.frameworks.marathon.app import AppDefinition
from meseta.frameworks.marathon.instances import Instance

__all__ = ["Readiness", "ReadinessTracker", "is_ready_response"]


def is_ready_response(check: Mapping[str, Any], status: int | None) -> bool:
    return status is not None and status in check.get("httpStatusCodesForReady", [200])


@dataclass(frozen=True, slots=True)
class Readiness:
    task_id: str
    name: str
    ready: bool
    last_response: Mapping[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"taskId": self.task_id, "name": self.name, "ready": self.ready}
        if self.last_response is not None:
            out["lastResponse"] = dict(self.last_response)
        return out


class ReadinessTracker:
    def __init__(self) -> None:
        self._results: dict[str, Readiness] = {}

    def result(self, instance: Instance, app: AppDefinition, response: Mapping[str, Any]) -> bool:
        """A response of `app.readiness_checks[0]` for `instance`: `{"status", "contentType",
        "body"}`, status None when there was no answer. True when it made the instance ready."""
        if not app.readiness_checks or not instance.running:
            return False
        previous = self._results.get(instance.instance_id)
        if previous is not None and previous.ready:
            return False
        check = app.readiness_checks[0]
        status = response.get("status")
        kept = None
        if check.get("preserveLastResponse") and status is not None:
            kept = {"status": status, "contentType": response.get("contentType"),
                    "body": response.get("body")}
        ready = is_ready_response(check, status)
        self._results[instance.instance_id] = Readiness(
            instance.task_id, check.get("name", "readinessCheck"), ready, kept)
        return ready

    def ready(self, instance: Instance, app: AppDefinition) -> bool:
        if not app.readiness_checks or not instance.runs_config(app):
            return True
        result = self._results.get(instance.instance_id)
        return result is not None and result.ready

    def results(self, instance_id: str) -> tuple[dict[str, Any], ...]:
        """The instance's entry of `readinessCheckResults` (none before its first result)."""
        result = self._results.get(instance_id)
        return (result.to_json(),) if result is not None else ()

    def forget(self, instance_id: str) -> None:
        self._results.pop(instance_id, None)
