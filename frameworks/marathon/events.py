"""Marathon's events (reference marathon.md §6): the JSON of each type, built from the model.

Every event carries `eventType` and `timestamp`; deployment events carry the light plan
(`plan-format=light`, as Marathon 1.8+ always sends), except that `original` and `target` stay
as the root group's id and version only: marathon-python 0.13 builds every plan from both and
its `event_stream()` fails on a plan without them. The core publishes events through
`instructions.Publish`; the event bus (`eventbus.py`: SSE and ZeroMQ) sends them on.
"""

from __future__ import annotations

from typing import Any

from meseta.frameworks.marathon.app import format_timestamp
from meseta.frameworks.marathon.instances import CONDITIONS, Instance, instance_id_of
from meseta.frameworks.marathon.pathid import PathIdError, parse_task_id

__all__ = ["event", "status_update", "instance_changed", "group_change_success",
           "group_change_failed", "deployment_info", "deployment_step", "deployment_done",
           "app_terminated", "scheduler_registered", "add_health_check", "remove_health_check",
           "unknown_instance_terminated", "scheduler_reregistered",
           "scheduler_disconnected", "api_post"]


def event(event_type: str, now: float, **fields: Any) -> dict[str, Any]:
    return {**fields, "eventType": event_type, "timestamp": format_timestamp(now)}


def status_update(inst: Instance, now: float) -> dict[str, Any]:
    return event("status_update_event", now, slaveId=inst.agent_id, taskId=inst.task_id,
                 taskStatus=inst.state, message=inst.message, appId=str(inst.app_id),
                 host=inst.host, ipAddresses=_ip_addresses(inst), ports=list(inst.host_ports),
                 version=inst.version)


def instance_changed(inst: Instance, now: float) -> dict[str, Any]:
    return event("instance_changed_event", now, instanceId=inst.instance_id,
                 condition=inst.condition, runSpecId=str(inst.app_id), agentId=inst.agent_id,
                 host=inst.host, runSpecVersion=inst.version)


def group_change_success(group_id: str, version: str, now: float) -> dict[str, Any]:
    return event("group_change_success", now, groupId=group_id, version=version)


def group_change_failed(group_id: str, version: str, reason: str, now: float) -> dict[str, Any]:
    return event("group_change_failed", now, groupId=group_id, version=version, reason=reason)


def deployment_info(plan: Any, step: int, now: float) -> dict[str, Any]:
    """`step` is 0-based here; `currentStep` is the step's JSON."""
    return event("deployment_info", now, plan=_plan(plan),
                 currentStep=plan.steps[step].to_json() if plan.steps else {"actions": []})


def deployment_step(plan: Any, step: int, ok: bool, now: float) -> dict[str, Any]:
    kind = "deployment_step_success" if ok else "deployment_step_failure"
    return event(kind, now, plan=_plan(plan), currentStep=plan.steps[step].to_json())


def deployment_done(plan: Any, ok: bool, now: float, reason: str = "") -> dict[str, Any]:
    if ok:
        return event("deployment_success", now, id=plan.id, plan=_plan(plan))
    return event("deployment_failed", now, id=plan.id, plan=_plan(plan), reason=reason)


def app_terminated(app_id: str, now: float) -> dict[str, Any]:
    return event("app_terminated_event", now, appId=app_id)


def scheduler_registered(framework_id: str, master: str, now: float) -> dict[str, Any]:
    return event("scheduler_registered_event", now, frameworkId=framework_id, master=master)


def scheduler_reregistered(master: str, now: float) -> dict[str, Any]:
    return event("scheduler_reregistered_event", now, master=master)


def scheduler_disconnected(now: float) -> dict[str, Any]:
    return event("scheduler_disconnected_event", now)


def add_health_check(app_id: str, version: str, check: dict[str, Any], now: float) -> dict[str, Any]:
    return event("add_health_check_event", now, appId=app_id, version=version,
                 healthCheck=dict(check))


def remove_health_check(app_id: str, now: float) -> dict[str, Any]:
    return event("remove_health_check_event", now, appId=app_id)


def unknown_instance_terminated(status: Any, now: float) -> dict[str, Any]:
    """A terminal update of a task Marathon does not know (any more)."""
    instance_id = instance_id_of(status.task_id)
    try:
        run_spec = str(parse_task_id(status.task_id).app_id)
    except PathIdError:
        run_spec = ""
    return event("unknown_instance_terminated_event", now, instanceId=instance_id,
                 runSpecId=run_spec, condition=CONDITIONS.get(status.state, "Unknown"))


def api_post(client_ip: str, uri: str, app_json: dict[str, Any], now: float) -> dict[str, Any]:
    return event("api_post_event", now, clientIp=client_ip, uri=uri, appDefinition=app_json)


def _plan(plan: Any) -> dict[str, Any]:
    light = plan.to_json()
    return {"id": light["id"], "original": _root(plan.original), "target": _root(plan.target),
            "steps": light["steps"], "version": light["version"]}


def _root(group: Any) -> dict[str, Any]:
    return {"id": str(group.id), "version": group.version}


def _ip_addresses(inst: Instance) -> list[dict[str, str]]:
    return [{"ipAddress": inst.ip_address, "protocol": "IPv4"}] if inst.ip_address else []


