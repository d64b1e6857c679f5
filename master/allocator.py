"""The allocator: which framework is offered which agent's resources in this cycle.

`allocate(snapshot) -> list[Offer]` is a pure function of a read-only `Snapshot`: no sockets,
threads or clocks (`snapshot.now` is given). It follows Mesos's hierarchical DRF allocator
(reference §8) without quota and with flat roles.

One cycle, in order:

 1. Agents: active ones only, sorted by id, or shuffled with `snapshot.seed` so that no agent is
    always served first (Mesos shuffles every cycle).
 2. Sorters: one DRF sorter over roles and, per role, one over that role's frameworks. A framework
    enters a role's sorter only if it is active and not suppressed for the role; a role enters
    the role sorter only if it has such a framework. Shares start from what is already allocated
    (used + offered, of every framework in the role, eligible or not).
 3. For each agent, roles in DRF order. The role may take the agent's free unreserved resources
    plus its own reservations there ("offerable").
 4. Within the role, frameworks in DRF order; the first that
      a. finds the offerable resources allocatable (its `min_allocatable`, else the snapshot's:
         they must contain at least one of the listed quantities), and
      b. has no live filter on (agent, role) that refuses a superset of them
    gets everything offerable as one Offer. Its share and its role's share grow at once, so the
    next agent sees the new order. Nobody else in the role is asked.
 5. Once the unreserved resources are offered, only roles with reservations on the agent are
    left to visit; an agent with nothing allocatable for anyone gets no offer.

DRF order (Mesos `DRFSorter`): ascending share, then fewer allocations, then name. A share is the
largest fraction over scalar resources of `snapshot.total` that the client holds; a role's share
is divided by its weight (default 1.0). The sorters are heaps updated per allocation, never
re-sorted per agent (that re-sorting was Mesos's MESOS-9249).

Filters (`Filters`, `refuse`, `expire`, `revive`, `drop_agent`) are immutable: each helper
returns a new collection and leaves its argument alone, so a snapshot can hold one safely.
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Mapping, Sequence

from meseta.resources import EMPTY, MIN_ALLOCATABLE, Resources

__all__ = [
    "AgentView", "FrameworkView", "Snapshot", "Offer", "Filter", "Filters",
    "allocate", "refuse", "expire", "revive", "drop_agent", "allocatable",
    "DEFAULT_REFUSE_SECONDS", "MAX_REFUSE_SECONDS", "UNRESERVED",
]

UNRESERVED = "*"
DEFAULT_REFUSE_SECONDS = 5.0                   # Mesos Filters.refuse_seconds default
MAX_REFUSE_SECONDS = 365 * 24 * 3600.0         # Mesos caps filters at one year


# --------------------------------------------------------------------------- inputs and outputs


@dataclass(slots=True)
class AgentView:
    """What the allocator may offer on one agent."""

    agent_id: str
    available: Resources                       # unreserved: total - used - offered
    reserved: Mapping[str, Resources] = field(default_factory=dict)  # role -> still available
    active: bool = True


@dataclass(slots=True)
class FrameworkView:
    """One framework as DRF sees it."""

    framework_id: str
    roles: tuple[str, ...] = ()                # () means ("*",)
    suppressed_roles: frozenset[str] = frozenset()
    active: bool = True
    allocated: Mapping[str, Resources] = field(default_factory=dict)  # role -> used + offered
    min_allocatable: Sequence[Resources] | None = None  # FrameworkInfo.offer_filters override
    allocations: int = 0                       # allocations so far: the DRF tie-break


@dataclass(slots=True)
class Snapshot:
    agents: Sequence[AgentView]
    frameworks: Sequence[FrameworkView]
    total: Resources                           # the cluster's total, the DRF denominator
    now: float                                 # same clock as Filter.expires_at
    weights: Mapping[str, float] = field(default_factory=dict)  # role -> weight (default 1.0)
    filters: Filters = field(default_factory=lambda: Filters())
    min_allocatable: Sequence[Resources] = MIN_ALLOCATABLE
    seed: int | None = None                    # None: agents by id; else a seeded shuffle


@dataclass(frozen=True, slots=True)
class Offer:
    framework_id: str
    agent_id: str
    role: str
    resources: Resources                       # everything offered: unreserved + reserved
    reserved: Resources = field(default_factory=lambda: EMPTY)  # the part reserved for `role`

    @property
    def unreserved(self) -> Resources:
        return self.resources - self.reserved if self.reserved else self.resources


def allocatable(resources: Resources, minimums: Iterable[Resources]) -> bool:
    """True when `resources` hold at least one of the minimum quantities (Mesos semantics)."""
    return any(resources.contains(minimum) for minimum in minimums)


# --------------------------------------------------------------------------- filters


@dataclass(frozen=True, slots=True)
class Filter:
    """While live, `resources` (and anything less) on the agent are not offered to the framework."""

    framework_id: str
    agent_id: str
    role: str
    resources: Resources
    expires_at: float


@dataclass(frozen=True, slots=True)
class _RoleFilters:
    """The filters on one (agent, role), with what all of them refuse for a one-check answer."""

    by_framework: Mapping[str, Filter]
    frameworks: frozenset[str]                 # by_framework's keys, for a fast subset test
    meet: Resources                            # contained in every filter's resources
    earliest: float                            # first expiry among them

    @classmethod
    def of(cls, by_framework: Mapping[str, Filter]) -> _RoleFilters:
        meet = None
        for one in by_framework.values():
            meet = one.resources if meet is None else _meet(meet, one.resources)
        earliest = min(one.expires_at for one in by_framework.values())
        return cls(by_framework, frozenset(by_framework), meet, earliest)

    def adding(self, new: Filter) -> _RoleFilters:
        """These filters plus `new` (replacing the framework's earlier one, if any)."""
        if new.framework_id in self.by_framework:
            return _RoleFilters.of({**self.by_framework, new.framework_id: new})
        return _RoleFilters({**self.by_framework, new.framework_id: new},
                            self.frameworks | {new.framework_id},
                            _meet(self.meet, new.resources), min(self.earliest, new.expires_at))

    def blocks_all(self, frameworks: frozenset[str], offerable: Resources, now: float) -> bool:
        """Do these filters refuse `offerable` to every one of `frameworks`? (False: maybe not.)"""
        return (self.earliest > now and len(self.by_framework) >= len(frameworks)
                and self.meet.contains(offerable) and frameworks <= self.frameworks)

    def blocks(self, framework_id: str, offerable: Resources, now: float) -> bool:
        one = self.by_framework.get(framework_id)
        return one is not None and one.expires_at > now and one.resources.contains(offerable)


def _meet(a: Resources, b: Resources) -> Resources:
    return a if a is b or b.contains(a) else a.meet(b)


class Filters:
    """An immutable collection of offer filters, at most one per (framework, agent, role).

    Indexed by agent, then role, because the allocator asks per agent. `_earliest` is a lower
    bound on the first expiry, so `expire` costs nothing until a filter may have expired.
    """

    __slots__ = ("_agents", "_earliest", "_count")

    def __init__(self, filters: Iterable[Filter] = ()) -> None:
        grouped: dict[str, dict[str, dict[str, Filter]]] = {}
        for one in filters:
            grouped.setdefault(one.agent_id, {}).setdefault(one.role, {})[one.framework_id] = one
        built = Filters._of({agent: {role: _RoleFilters.of(by_fw) for role, by_fw in roles.items()}
                             for agent, roles in grouped.items()})
        self._agents, self._earliest, self._count = built._agents, built._earliest, built._count

    @classmethod
    def _of(cls, agents: dict[str, dict[str, _RoleFilters]], earliest: float | None = None,
            count: int | None = None) -> Filters:
        self = object.__new__(cls)
        self._agents = agents
        if earliest is None or count is None:
            every_role = [rf for roles in agents.values() for rf in roles.values()]
            earliest = min((rf.earliest for rf in every_role), default=math.inf)
            count = sum(len(rf.by_framework) for rf in every_role)
        self._earliest = earliest
        self._count = count
        return self

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Filter]:
        for roles in self._agents.values():
            for rf in roles.values():
                yield from rf.by_framework.values()

    def __repr__(self) -> str:
        return f"Filters({list(self)!r})"

    def get(self, framework_id: str, agent_id: str, role: str) -> Filter | None:
        rf = self._agents.get(agent_id, {}).get(role)
        return rf.by_framework.get(framework_id) if rf else None

    def _on(self, agent_id: str) -> Mapping[str, _RoleFilters] | None:
        return self._agents.get(agent_id)


def refuse(filters: Filters, framework_id: str, agent_id: str, role: str, resources: Resources,
           refuse_seconds: float | None, now: float, allocation_interval: float) -> Filters:
    """Filters after a framework declined (or left unused) `resources` on an agent for a role.

    Mesos's rules: None or negative refuse_seconds -> 5 s; 0 -> no filter; capped at 365 days;
    the filter lasts at least one allocation interval. Replaces an earlier filter on the same
    (framework, agent, role): the latest decision is the framework's current wish.
    Costs a copy of the per-agent index and of that (agent, role)'s filters.
    """
    seconds = _refuse_duration(refuse_seconds)
    if seconds == 0 or not resources:
        return filters
    new = Filter(framework_id, agent_id, role, resources, now + max(seconds, allocation_interval))
    roles = dict(filters._on(agent_id) or {})
    old = roles.get(role)
    roles[role] = old.adding(new) if old else _RoleFilters.of({framework_id: new})
    replaced = old is not None and framework_id in old.by_framework
    return Filters._of({**filters._agents, agent_id: roles},
                       min(filters._earliest, new.expires_at), filters._count + (not replaced))


def _refuse_duration(refuse_seconds: float | None) -> float:
    if refuse_seconds is None or math.isnan(refuse_seconds) or refuse_seconds < 0:
        return DEFAULT_REFUSE_SECONDS
    return min(float(refuse_seconds), MAX_REFUSE_SECONDS)


def expire(filters: Filters, now: float) -> Filters:
    """Filters without those that expired at or before `now` (the same object if none can have)."""
    if filters._earliest > now:
        return filters
    kept = _prune(filters, lambda role, rf: rf if rf.earliest > now else
                  {fw: one for fw, one in rf.by_framework.items() if one.expires_at > now})
    # Nothing expired, but the lower bound was stale: store the exact one.
    return Filters._of(filters._agents) if kept is filters else kept


def revive(filters: Filters, framework_id: str, roles: Iterable[str] | None = None) -> Filters:
    """Filters without the framework's filters for `roles`: REVIVE.

    None or an empty list means every role, as in Mesos's REVIVE call.
    """
    wanted = frozenset(roles or ()) or None

    def without_framework(role: str, rf: _RoleFilters) -> _RoleFilters | dict[str, Filter]:
        if framework_id not in rf.frameworks or (wanted is not None and role not in wanted):
            return rf
        return {fw: one for fw, one in rf.by_framework.items() if fw != framework_id}

    return _prune(filters, without_framework)


def drop_agent(filters: Filters, agent_id: str) -> Filters:
    """Filters without any on a removed agent."""
    if filters._on(agent_id) is None:
        return filters
    agents = dict(filters._agents)
    dropped = sum(len(rf.by_framework) for rf in agents.pop(agent_id).values())
    return Filters._of(agents, filters._earliest, filters._count - dropped)


def _prune(filters: Filters, prune) -> Filters:
    """Apply prune(role, rf) -> rf unchanged, or the filters to keep, to every (agent, role).

    Returns the same object when nothing changed.
    """
    agents: dict[str, dict[str, _RoleFilters]] = {}
    changed = False
    for agent_id, roles in filters._agents.items():
        kept_roles = {}
        for role, rf in roles.items():
            kept = prune(role, rf)
            if kept is rf:
                kept_roles[role] = rf
                continue
            changed = True
            if kept:
                kept_roles[role] = _RoleFilters.of(kept)
        if kept_roles:
            agents[agent_id] = kept_roles
    return Filters._of(agents) if changed else filters


# --------------------------------------------------------------------------- DRF sorters

Key = tuple[float, int, str]


class _Sorter:
    """Clients (roles, or one role's frameworks) in DRF order: a heap of (share, count, name).

    `pop` takes the first client out and `push` puts a client (back) in with its current key.
    Pushing a client that is still in the heap leaves a stale entry behind, which `pop` skips:
    `current` holds each client's one live entry. Shares only grow within a cycle, so an
    allocation updates a share from the resources just added instead of recomputing it.
    """

    __slots__ = ("total", "heap", "current", "allocated", "share", "count", "weight")

    def __init__(self, total: Mapping[str, float]) -> None:
        self.total = total
        self.heap: list[Key] = []
        self.current: dict[str, Key | None] = {}
        self.allocated: dict[str, dict[str, float]] = {}
        self.share: dict[str, float] = {}          # unweighted dominant share
        self.count: dict[str, int] = {}
        self.weight: dict[str, float] = {}

    def add(self, name: str, allocated: Mapping[str, float], count: int = 0,
            weight: float = 1.0) -> None:
        """Account for a client and what it holds (before the cycle starts)."""
        mine = self.allocated.setdefault(name, {})
        for resource, value in allocated.items():
            mine[resource] = mine.get(resource, 0.0) + value
        self.share[name] = max((mine.get(r, 0.0) / t for r, t in self.total.items()), default=0.0)
        self.count[name] = self.count.get(name, 0) + count
        self.weight[name] = weight

    def build(self, names: Iterable[str]) -> None:
        """Put these clients in the heap (the others are accounted for but never picked)."""
        self.heap = [self.key(name) for name in names]
        self.current = {key[2]: key for key in self.heap}
        heapq.heapify(self.heap)

    def key(self, name: str) -> Key:
        return (self.share[name] / self.weight[name], self.count[name], name)

    def pop(self) -> str | None:
        heap, current = self.heap, self.current
        while heap:
            entry = heapq.heappop(heap)
            if current[entry[2]] is entry:
                current[entry[2]] = None
                return entry[2]
        return None

    def take(self, name: str) -> None:
        """Take a client out wherever it is in the heap (its entry goes stale)."""
        self.current[name] = None

    def push(self, name: str) -> None:
        entry = self.current[name] = (self.share[name] / self.weight[name], self.count[name], name)
        heapq.heappush(self.heap, entry)

    def allocate(self, name: str, scalars: Mapping[str, float]) -> None:
        mine, total, share = self.allocated[name], self.total, self.share[name]
        for resource, value in scalars.items():
            held = mine.get(resource, 0.0) + value
            mine[resource] = held
            denominator = total.get(resource)
            if denominator and held / denominator > share:
                share = held / denominator
        self.share[name] = share
        self.count[name] += 1


@dataclass(slots=True)
class _Role:
    """A role's frameworks for this cycle: those eligible to be offered something."""

    sorter: _Sorter
    eligible: frozenset[str]
    minimums: dict[str, Sequence[Resources]]   # framework -> its own min_allocatable


# --------------------------------------------------------------------------- the cycle


def allocate(snapshot: Snapshot) -> list[Offer]:
    """Offers for this cycle: at most one per (framework, role, agent), never overlapping."""
    roles, role_sorter = _sorters(snapshot)
    if not roles:
        return []
    cycle = _Cycle(snapshot, roles, role_sorter)
    for agent in _agent_order(snapshot):
        cycle.serve(agent)
    return cycle.offers


def _agent_order(snapshot: Snapshot) -> list[AgentView]:
    """Step 1."""
    agents = sorted((a for a in snapshot.agents if a.active), key=lambda a: a.agent_id)
    if snapshot.seed is not None:
        random.Random(snapshot.seed).shuffle(agents)
    return agents


def _sorters(snapshot: Snapshot) -> tuple[dict[str, _Role], _Sorter]:
    """Step 2: DRF sorters seeded with what each role and framework already holds."""
    total = {name: value for name, value in snapshot.total.scalars.items() if value > 0}
    role_sorter = _Sorter(total)
    framework_sorters: dict[str, _Sorter] = {}
    eligible: dict[str, list[str]] = {}
    minimums: dict[str, dict[str, Sequence[Resources]]] = {}
    for fw in snapshot.frameworks:
        for role in fw.roles or (UNRESERVED,):
            held = fw.allocated.get(role, EMPTY).scalars
            role_sorter.add(role, held, weight=_weight(snapshot.weights, role))
            framework_sorters.setdefault(role, _Sorter(total)).add(
                fw.framework_id, held, fw.allocations)
            if fw.active and role not in fw.suppressed_roles:
                eligible.setdefault(role, []).append(fw.framework_id)
                if fw.min_allocatable is not None:
                    minimums.setdefault(role, {})[fw.framework_id] = tuple(fw.min_allocatable)
    roles = {}
    for role, names in eligible.items():
        framework_sorters[role].build(names)
        roles[role] = _Role(framework_sorters[role], frozenset(names), minimums.get(role, {}))
    role_sorter.build(roles)
    return roles, role_sorter


def _weight(weights: Mapping[str, float], role: str) -> float:
    weight = weights.get(role, 1.0)
    if not weight > 0:
        raise ValueError(f"weight of role {role!r} must be positive, not {weight!r}")
    return weight


class _Cycle:
    """Steps 3-5: serve agents one by one, updating the sorters as offers are made."""

    def __init__(self, snapshot: Snapshot, roles: dict[str, _Role], role_sorter: _Sorter) -> None:
        self.now = snapshot.now
        self.minimums = tuple(snapshot.min_allocatable)
        self.filters = snapshot.filters
        self.roles = roles
        self.role_sorter = role_sorter
        self.offers: list[Offer] = []

    def serve(self, agent: AgentView) -> None:
        free, reserved = agent.available, agent.reserved
        agent_filters = self.filters._on(agent.agent_id)
        sorter = self.role_sorter
        visited: list[str] = []
        # Step 3: roles in DRF order while unreserved resources are left.
        while free:
            role = sorter.pop()
            if role is None:
                break
            visited.append(role)
            own = reserved.get(role) if reserved else None
            if self._offer(agent, role, free + own if own else free, own, agent_filters):
                free = EMPTY
        for role in visited:
            sorter.push(role)
        # Step 5: then the roles that hold reservations here and were not visited yet.
        if reserved:
            rest = [r for r in reserved if reserved[r] and r in self.roles and r not in visited]
            for role in sorted(rest, key=sorter.key):
                if self._offer(agent, role, reserved[role], reserved[role], agent_filters):
                    sorter.push(role)               # its old heap entry is now stale

    def _offer(self, agent: AgentView, role: str, offerable: Resources, own: Resources | None,
               agent_filters: Mapping[str, _RoleFilters] | None) -> bool:
        """Step 4: offer everything to the role's first framework in DRF order that takes it."""
        state = self.roles[role]
        framework_id = self._pick(state, offerable,
                                  agent_filters.get(role) if agent_filters else None)
        if framework_id is None:
            return False
        self.offers.append(Offer(framework_id, agent.agent_id, role, offerable, own or EMPTY))
        state.sorter.allocate(framework_id, offerable.scalars)
        state.sorter.push(framework_id)
        self.role_sorter.allocate(role, offerable.scalars)
        return True

    def _pick(self, state: _Role, offerable: Resources, filters: _RoleFilters | None) -> str | None:
        """The first framework in DRF order that may have `offerable`, taken out of its heap."""
        if not allocatable(offerable, self.minimums):
            return self._pick_by_own_minimums(state, offerable, filters)
        if filters is not None and filters.blocks_all(state.eligible, offerable, self.now):
            return None
        sorter, skipped, chosen = state.sorter, [], None
        while (framework_id := sorter.pop()) is not None:
            own_minimums = state.minimums.get(framework_id)
            if ((own_minimums is None or allocatable(offerable, own_minimums))
                    and (filters is None or not filters.blocks(framework_id, offerable, self.now))):
                chosen = framework_id
                break
            skipped.append(framework_id)
        for framework_id in skipped:
            sorter.push(framework_id)
        return chosen

    def _pick_by_own_minimums(self, state: _Role, offerable: Resources,
                              filters: _RoleFilters | None) -> str | None:
        """Below the common minimum only frameworks with their own, lower one may take it."""
        takers = [fw for fw, own_minimums in state.minimums.items()
                  if allocatable(offerable, own_minimums)
                  and (filters is None or not filters.blocks(fw, offerable, self.now))]
        if not takers:
            return None
        chosen = min(takers, key=state.sorter.key)
        state.sorter.take(chosen)
        return chosen
