"""Checks a LAUNCH against the offers it spends. Pure: returns why not, or ''."""
from __future__ import annotations

from meseta import proto
from meseta.proto import valid_id
from meseta.master.model import Agent, Framework
from meseta.resources import Resources


def validate_launch(info: proto.TaskInfo, framework: Framework, agent: Agent | None,
                    remaining: Resources) -> str:
    if agent is None:
        return "the offer's agent is no longer registered"
    if not valid_id(info.task_id):
        return (f"Task ID {info.task_id!r} is invalid: it must be 1-255 printable characters, "
                "not '.' or '..', without '/' or '\\'")
    if not info.name:
        return "Task name must be set"
    existing = framework.tasks.get(info.task_id)
    if existing is not None and existing.state not in proto.TERMINAL_STATES:
        return f"Task has duplicate ID: {info.task_id}"
    if info.agent_id != agent.id:
        return f"Task uses agent id {info.agent_id} but the offer is for agent {agent.id}"
    if info.resources.is_empty():
        return "Task uses no resources"
    if not remaining.contains(info.resources):
        return (f"Task uses more resources {info.resources} than available {remaining}")
    command = info.command
    if command.shell and not command.value.strip():
        return "Task's command is empty"
    if not command.shell and not command.value:
        return "Task's command must name an executable when shell is false"
    if info.kill_grace_seconds is not None and info.kill_grace_seconds < 0:
        return "kill grace period must not be negative"
    return ""
