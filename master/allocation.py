"""Glue between the master's records and the pure allocator.

The master keeps the allocator's only state — the offer filters — here, and builds a
read-only `Snapshot` from its records each cycle.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from meseta.master import allocator
from meseta.resources import Resources

if TYPE_CHECKING:
    from meseta.master.core import Master


class AllocatorState:
    def __init__(self) -> None:
        self.filters = allocator.Filters()

    def refuse(self, framework_id: str, agent_id: str, role: str, resources: Resources,
               refuse_seconds: float, now: float, allocation_interval: float) -> None:
        self.filters = allocator.refuse(self.filters, framework_id, agent_id, role, resources,
                                        refuse_seconds, now, allocation_interval)

    def revive(self, framework_id: str, roles: Iterable[str] | None = None) -> None:
        self.filters = allocator.revive(self.filters, framework_id, roles)

    def forget_framework(self, framework_id: str) -> None:
        self.filters = allocator.revive(self.filters, framework_id)

    def forget_agent(self, agent_id: str) -> None:
        self.filters = allocator.drop_agent(self.filters, agent_id)


def snapshot(master: "Master", now: float) -> allocator.Snapshot:
    state = master.allocator
    state.filters = allocator.expire(state.filters, now)
    total = Resources()
    agents = []
    for agent in master.agents.values():
        if not agent.active or agent.peer is None:
            continue
        total = total + agent.total
        available = agent.available()
        if available:
            agents.append(allocator.AgentView(agent.id, available))
    frameworks = [
        allocator.FrameworkView(
            framework_id=fw.id, roles=fw.roles, suppressed_roles=frozenset(fw.suppressed_roles),
            active=fw.active and fw.connected,
            allocated={role: fw.allocated(role) for role in fw.roles},
            allocations=fw.allocations)
        for fw in master.frameworks.values()
    ]
    return allocator.Snapshot(agents=agents, frameworks=frameworks, total=total, now=now,
                              weights=master.config.weights, filters=state.filters)


def run_cycle(master: "Master", now: float) -> list[allocator.Offer]:
    if not master.agents or not master.frameworks:
        return []
    return allocator.allocate(snapshot(master, now))
