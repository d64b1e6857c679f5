"""The master's decisions, free of IO.

`Master.handle(peer, message)` and the timer entry points (`tick`, `allocate`) change the
records in `model.py` and append what must be said to `outbox` (peer, message), what
happened to `events` (kind, payload) for the event bus, and what the agent registry must
record to `registry_ops`. The daemon shell (`daemon.py`) owns
the sockets and flushes both after every call, so this class is tested with a FakeClock and
no sockets at all.

Order of an allocation cycle: expire filters -> snapshot (available = total - used - offered)
-> `allocator.allocate` (pure DRF) -> record offers -> one `offers` message per framework.
"""
from __future__ import annotations

import uuid as uuidlib
from collections import Counter, deque
from typing import Any, Callable, Optional

from meseta import proto
from meseta.clock import Clock
from meseta.log import get_logger
from meseta.master import allocation
from meseta.master.model import (MAX_COMPLETED_FRAMEWORKS, Agent, Framework, OfferRecord,
                                 StatusRecord, Task, add_to, take_from)
from meseta.master.validation import validate_launch
from meseta.master.views import task_json
from meseta.proto import valid_id
from meseta.resources import Resources

log = get_logger("meseta.master")

Outbox = list[tuple[bytes, proto.Message]]


class Master:
    def __init__(self, config: Any, info: proto.MasterInfo, clock: Clock | None = None) -> None:
        self.config = config
        self.info = info
        self.clock = clock or Clock()
        self.start_time = self.clock.time()
        self.elected_time: Optional[float] = self.start_time
        self.agents: dict[str, Agent] = {}
        self.unreachable_agents: dict[str, Agent] = {}
        self.frameworks: dict[str, Framework] = {}
        self.completed_frameworks: deque[Framework] = deque(maxlen=MAX_COMPLETED_FRAMEWORKS)
        self.peers: dict[bytes, tuple[str, str]] = {}        # zmq identity -> ("agent"|"framework", id)
        self.failover_deadlines: dict[str, float] = {}       # framework id -> monotonic deadline
        # Admitted in an earlier term (registry) but not re-registered yet: id -> (info, deadline).
        self.recovered_agents: dict[str, tuple[proto.AgentInfo, float]] = {}
        self.allocator = allocation.AllocatorState()
        self.counters: Counter[str] = Counter()
        self.outbox: Outbox = []
        self.events: list[tuple[str, dict]] = []
        self.registry_ops: list[tuple[str, str]] = []        # ("admit"|"forget", agent id)
        self.allocation_wanted = True
        self._next_agent = 0
        self._next_framework = 0
        self._next_offer = 0
        self._handlers: dict[type, Callable[[bytes, Any], None]] = {
            proto.RegisterAgent: self._register_agent,
            proto.ReregisterAgent: self._reregister_agent,
            proto.StatusUpdate: self._status_update,
            proto.Subscribe: self._subscribe,
            proto.Accept: self._accept,
            proto.Decline: self._decline,
            proto.Revive: self._revive,
            proto.Suppress: self._suppress,
            proto.Kill: self._kill,
            proto.Acknowledge: self._acknowledge,
            proto.Reconcile: self._reconcile,
            proto.FrameworkMessageCall: self._framework_message,
            proto.Teardown: self._teardown,
            proto.Heartbeat: self._heartbeat,
        }

    # -- entry points -------------------------------------------------------------------------

    def handle(self, peer: bytes, message: proto.Message | proto.ProtocolError) -> None:
        if isinstance(message, proto.ProtocolError):
            self.counters["dropped_messages"] += 1
            self._send(peer, proto.Error(f"invalid message: {message}", code="INVALID"))
            return
        self.counters[f"messages_{message.TYPE}"] += 1
        if isinstance(message, proto.FIRST_MESSAGES):
            if message.protocol_version != proto.PROTOCOL_VERSION:
                self.counters["dropped_messages"] += 1
                self._send(peer, proto.Error(
                    f"protocol version {message.protocol_version} is not supported: this master "
                    f"speaks version {proto.PROTOCOL_VERSION}; upgrade the peer", code="PROTOCOL_VERSION"))
                return
        elif peer not in self.peers:
            self.counters["dropped_messages"] += 1
            self._send(peer, proto.Error(
                f"'{message.TYPE}' from a peer that has not registered; register or subscribe first",
                code="UNREGISTERED"))
            return
        self._handlers[type(message)](peer, message)

    def recover_agents(self, admitted: dict[str, proto.AgentInfo], deadline: float) -> None:
        """After an election: agents of the registry get until `deadline` to re-register."""
        for agent_id, info in admitted.items():
            if agent_id not in self.agents:
                self.recovered_agents[agent_id] = (info, deadline)

    def tick(self) -> None:
        """Liveness of peers, failover timeouts and offer timeouts; called a few times a second."""
        now = self.clock.monotonic()
        for agent_id, (info, deadline) in list(self.recovered_agents.items()):
            if now >= deadline:
                self._recovered_agent_expired(agent_id, info)
        agent_deadline = self.config.agent_ping_timeout * self.config.max_agent_ping_timeouts
        for agent in list(self.agents.values()):
            if agent.active and now - agent.last_seen > agent_deadline:
                self._agent_unreachable(agent, "agent stopped answering pings")
        framework_deadline = self.config.framework_heartbeat_interval * 5
        for framework in list(self.frameworks.values()):
            if framework.connected and now - framework.last_seen > framework_deadline:
                self._framework_disconnected(framework, "framework stopped sending heartbeats")
        for framework_id, deadline in list(self.failover_deadlines.items()):
            if now >= deadline:
                del self.failover_deadlines[framework_id]
                framework = self.frameworks.get(framework_id)
                if framework and not framework.connected:
                    log.info("framework failover timeout expired", framework_id=framework_id)
                    self._remove_framework(framework)
        if self.config.offer_timeout:
            for framework in self.frameworks.values():
                for offer_id, record in list(framework.offers.items()):
                    if now - record.created >= self.config.offer_timeout:
                        self._rescind(framework, offer_id, notify=True)

    def heartbeat(self, kind: str) -> None:
        """Heartbeat every registered peer of one kind ("agent" or "framework")."""
        beat = proto.Heartbeat()
        for peer, (peer_kind, _) in self.peers.items():
            if peer_kind == kind:
                self._send(peer, beat)

    def allocate(self) -> int:
        """One allocation cycle; returns the number of offers made."""
        self.allocation_wanted = False
        now = self.clock.monotonic()
        offers = allocation.run_cycle(self, now)
        by_framework: dict[str, list[proto.Offer]] = {}
        for decision in offers:
            framework = self.frameworks[decision.framework_id]
            agent = self.agents[decision.agent_id]
            self._next_offer += 1
            offer = proto.Offer(
                id=f"{self.info.id}-O{self._next_offer}", framework_id=framework.id,
                agent_id=agent.id, hostname=agent.hostname, role=decision.role,
                resources=decision.resources, attributes=agent.info.attributes,
                agent_port=agent.info.port)
            framework.offers[offer.id] = OfferRecord(offer, now)
            framework.allocations += 1
            agent.offered = agent.offered + offer.resources
            add_to(framework.offered, offer.role, offer.resources)
            by_framework.setdefault(framework.id, []).append(offer)
        for framework_id, batch in by_framework.items():
            self._send(self.frameworks[framework_id].peer, proto.Offers(batch))
        self.counters["allocation_runs"] += 1
        return len(offers)

    # -- operator actions (HTTP) ----------------------------------------------------------------

    def operator_kill(self, task_id: str, framework_id: str | None = None) -> tuple[bool, str]:
        for framework in self.frameworks.values():
            if framework_id and framework.id != framework_id:
                continue
            task = framework.tasks.get(task_id)
            if task and task.state not in proto.TERMINAL_STATES:
                self._kill_task(framework, task, None)
                return True, f"killing task {task_id} of framework {framework.id}"
        return False, f"no active task {task_id!r}"

    def operator_teardown(self, framework_id: str) -> bool:
        framework = self.frameworks.get(framework_id)
        if framework is None:
            return False
        self._remove_framework(framework)
        return True

    # -- agents ---------------------------------------------------------------------------------

    def _register_agent(self, peer: bytes, msg: proto.RegisterAgent) -> None:
        existing = self._agent_at(msg.agent)
        if existing is not None and existing.active and self._live_tasks(existing):
            # A fresh registration (no id) from an address whose agent runs tasks: that agent
            # restarted without its state, so its tasks are gone; this is a new agent.
            self._remove_agent(existing, proto.TASK_LOST, proto.REASON_AGENT_RESTARTED,
                               "the agent restarted without its tasks", unreachable=False)
            existing = None
        if existing is not None and existing.active:
            # The same agent (same address) registering again - a retry, perhaps on a new
            # connection: as Mesos, answer with the id it has and follow the new connection.
            if existing.peer != peer:
                self.peers.pop(existing.peer, None)
                existing.peer = peer
                self.peers[peer] = ("agent", existing.id)
            existing.last_seen = self.clock.monotonic()
            self._send_registered(existing)
            return
        agent_id = f"{self.info.id}-S{self._next_agent}"
        self._next_agent += 1
        now = self.clock.time()
        msg.agent.id = agent_id
        agent = Agent(id=agent_id, info=msg.agent, peer=peer, registered_time=now,
                      last_seen=self.clock.monotonic(), version=msg.version)
        self.agents[agent_id] = agent
        self.peers[peer] = ("agent", agent_id)
        self.counters["slave_registrations"] += 1
        log.info("agent registered", agent_id=agent_id, hostname=agent.hostname,
                 resources=str(agent.total))
        self._send_registered(agent)
        self.registry_ops.append(("admit", agent_id))
        self._event("agent_added", {"agent_id": agent_id, "hostname": agent.hostname, "pid": agent.pid})
        self.allocation_wanted = True

    def _agent_at(self, info: proto.AgentInfo) -> Agent | None:
        for agent in self.agents.values():
            if (agent.info.ip, agent.info.port) == (info.ip, info.port):
                return agent
        return None

    def _reregister_agent(self, peer: bytes, msg: proto.ReregisterAgent) -> None:
        agent_id = msg.agent.id
        if not agent_id:
            self._send(peer, proto.Error("reregister_agent needs the agent id", code="INVALID"))
            return
        agent = self.agents.get(agent_id) or self.unreachable_agents.pop(agent_id, None)
        now_mono = self.clock.monotonic()
        if agent is None:
            agent = Agent(id=agent_id, info=msg.agent, peer=peer, registered_time=self.clock.time(),
                          last_seen=now_mono, version=msg.version)
        if agent.peer and agent.peer != peer:
            self.peers.pop(agent.peer, None)
        agent.peer, agent.info, agent.active = peer, msg.agent, True
        agent.last_seen, agent.reregistered_time, agent.unreachable_time = now_mono, self.clock.time(), None
        self.agents[agent_id] = agent
        self.peers[peer] = ("agent", agent_id)
        self.counters["slave_reregistrations"] += 1
        if self.recovered_agents.pop(agent_id, None) is None:
            self.registry_ops.append(("admit", agent_id))      # not in the registry yet
        self._readopt_tasks(agent, msg.tasks)
        log.info("agent reregistered", agent_id=agent_id, tasks=len(msg.tasks))
        self._send_registered(agent)
        self._event("agent_added", {"agent_id": agent_id, "hostname": agent.hostname, "pid": agent.pid})
        self.allocation_wanted = True

    def _readopt_tasks(self, agent: Agent, records: list[proto.TaskRecord]) -> None:
        reported = set()
        for record in records:
            reported.add((record.framework_id, record.task.task_id))
            framework = self.frameworks.get(record.framework_id)
            if framework is None:
                info = record.framework or proto.FrameworkInfo(user="", name="", id=record.framework_id)
                framework = Framework(id=record.framework_id, info=info, peer=None,
                                      registered_time=self.clock.time(), connected=False,
                                      active=False, recovered=True)
                self.frameworks[framework.id] = framework
            task = framework.tasks.get(record.task.task_id) or framework.unreachable_tasks.pop(
                record.task.task_id, None)
            if task is None:
                task = Task(info=record.task, framework_id=framework.id, role=framework.roles[0],
                            state=record.state, released=True)
            framework.tasks[task.id] = task
            if task.released and record.state not in proto.TERMINAL_STATES:
                self._charge(agent, framework, task)
            task.state = record.state
            task.unreachable_time = None
            agent.task_keys.add((framework.id, task.id))
            if framework.connected:
                self._send(framework.peer, proto.Update(proto.TaskStatus(
                    task_id=task.id, state=task.state, source=proto.SOURCE_MASTER,
                    reason="REASON_AGENT_REREGISTERED", agent_id=agent.id,
                    timestamp=self.clock.time(), message="agent reregistered")))
        for key in list(agent.task_keys):
            if key not in reported:
                framework = self.frameworks.get(key[0])
                task = framework.tasks.get(key[1]) if framework else None
                if task and task.state not in proto.TERMINAL_STATES and task.state != proto.TASK_STAGING:
                    self._master_update(framework, task, proto.TASK_LOST, proto.REASON_AGENT_REMOVED,
                                        "task was not reported by its reregistering agent")

    def _send_registered(self, agent: Agent) -> None:
        self._send(agent.peer, proto.AgentRegistered(
            agent_id=agent.id, master_id=self.info.id,
            heartbeat_interval=self.config.agent_ping_timeout,
            total_ping_timeout=self.config.agent_ping_timeout * self.config.max_agent_ping_timeouts))

    def _agent_unreachable(self, agent: Agent, why: str) -> None:
        log.warning("agent unreachable", agent_id=agent.id, reason=why)
        self._remove_agent(agent, proto.TASK_UNREACHABLE, proto.REASON_AGENT_REMOVED,
                           f"Agent {agent.id} is unreachable: {why}", unreachable=True)

    def _live_tasks(self, agent: Agent) -> list[Task]:
        tasks = []
        for framework_id, task_id in agent.task_keys:
            framework = self.frameworks.get(framework_id)
            task = framework.tasks.get(task_id) if framework else None
            if task is not None and task.state not in proto.TERMINAL_STATES:
                tasks.append(task)
        return tasks

    def _remove_agent(self, agent: Agent, state: str, reason: str, message: str,
                      unreachable: bool) -> None:
        """Offers rescinded, tasks reported (`state` for partition-aware frameworks, else
        TASK_LOST), resources released, frameworks told agent_lost. An unreachable agent is kept
        (it may come back and re-register); a restarted one is gone."""
        agent.active = False
        agent.unreachable_time = self.clock.time()
        if agent.peer:
            self.peers.pop(agent.peer, None)
        agent.peer = None
        for framework in self.frameworks.values():
            for offer_id, record in list(framework.offers.items()):
                if record.offer.agent_id == agent.id:
                    self._rescind(framework, offer_id, notify=True)
        for task in sorted(self._live_tasks(agent), key=lambda t: (t.framework_id, t.id)):
            framework = self.frameworks[task.framework_id]
            task.unreachable_time = agent.unreachable_time if unreachable else None
            self._master_update(framework, task, state if framework.partition_aware else proto.TASK_LOST,
                                reason, message)
            self._release(task)      # as Mesos: the agent's resources leave the cluster
            framework.tasks.pop(task.id, None)
            if unreachable:
                framework.unreachable_tasks[task.id] = task
            else:
                framework.completed_tasks.append(task)
        for framework in self.frameworks.values():
            if framework.connected:
                self._send(framework.peer, proto.Failure(agent_id=agent.id))
        del self.agents[agent.id]
        if unreachable:
            self.unreachable_agents[agent.id] = agent
        else:
            self.registry_ops.append(("forget", agent.id))
        self.allocator.forget_agent(agent.id)
        self.counters["slave_removals"] += 1
        self._event("agent_removed", {"agent_id": agent.id})

    def _recovered_agent_expired(self, agent_id: str, info: proto.AgentInfo) -> None:
        """An admitted agent did not re-register after the failover: it is gone (Mesos marks
        it unreachable); frameworks hear agent_lost and reconcile its tasks to LOST."""
        log.warning("admitted agent did not re-register in time", agent_id=agent_id)
        del self.recovered_agents[agent_id]
        self.registry_ops.append(("forget", agent_id))     # re-admitted if it ever returns
        now = self.clock.time()
        self.unreachable_agents[agent_id] = Agent(id=agent_id, info=info, peer=None,
                                                  registered_time=now, active=False,
                                                  unreachable_time=now)
        for framework in self.frameworks.values():
            if framework.connected:
                self._send(framework.peer, proto.Failure(agent_id=agent_id))
        self.counters["slave_removals"] += 1
        self._event("agent_removed", {"agent_id": agent_id})

    # -- frameworks -----------------------------------------------------------------------------

    def _subscribe(self, peer: bytes, msg: proto.Subscribe) -> None:
        info = msg.framework
        problem = _invalid_framework(info)
        if problem:
            self._send(peer, proto.Error(problem, code="INVALID"))
            return
        now, now_mono = self.clock.time(), self.clock.monotonic()
        framework = self.frameworks.get(info.id) if info.id else None
        if info.id and framework is None and any(f.id == info.id for f in self.completed_frameworks):
            self._send(peer, proto.Error("Framework has been removed", code="REMOVED"))
            return
        reregistered = framework is not None or bool(info.id)
        if framework is None:
            if not info.id:
                info.id = f"{self.info.id}-{self._next_framework:04d}"
                self._next_framework += 1
            framework = Framework(id=info.id, info=info, peer=peer, registered_time=now)
            self.frameworks[info.id] = framework
            self.counters["framework_registrations"] += 1
        else:
            if framework.peer and framework.peer != peer:
                self.peers.pop(framework.peer, None)
                if framework.connected:
                    self._send(framework.peer, proto.Error("Framework failed over", code="FAILED_OVER"))
            # Offers made to the old connection die with it.
            for offer_id in list(framework.offers):
                self._rescind(framework, offer_id, notify=False)
            info.user = framework.info.user or info.user
            framework.info = info
            framework.reregistered_time = now
        framework.peer, framework.connected, framework.active, framework.recovered = peer, True, True, False
        framework.last_seen = now_mono
        framework.suppressed_roles = set(msg.suppressed_roles)
        self.failover_deadlines.pop(framework.id, None)
        self.peers[peer] = ("framework", framework.id)
        log.info("framework subscribed", framework_id=framework.id, name=info.name,
                 reregistered=reregistered)
        self._send(peer, proto.Subscribed(framework_id=framework.id, master=self.info,
                                          heartbeat_interval=self.config.framework_heartbeat_interval,
                                          reregistered=reregistered))
        self._event("framework_added", {"framework_id": framework.id, "name": info.name})
        self.allocation_wanted = True

    def _framework_of(self, peer: bytes) -> Framework | None:
        kind, ident = self.peers.get(peer, ("", ""))
        if kind != "framework":
            self._send(peer, proto.Error("only frameworks may make this call", code="INVALID"))
            return None
        framework = self.frameworks.get(ident)
        if framework is not None:
            framework.last_seen = self.clock.monotonic()
        return framework

    def _framework_disconnected(self, framework: Framework, why: str) -> None:
        log.warning("framework disconnected", framework_id=framework.id, reason=why)
        framework.connected = framework.active = False
        framework.unregistered_time = self.clock.time()
        if framework.peer:
            self.peers.pop(framework.peer, None)
        framework.peer = None
        for offer_id in list(framework.offers):
            self._rescind(framework, offer_id, notify=False)
        self.failover_deadlines[framework.id] = self.clock.monotonic() + framework.info.failover_timeout

    def _remove_framework(self, framework: Framework) -> None:
        log.info("removing framework", framework_id=framework.id)
        for offer_id in list(framework.offers):
            self._rescind(framework, offer_id, notify=False)
        agents_told = set()
        for task in list(framework.tasks.values()):
            agent = self.agents.get(task.agent_id)
            if agent and agent.id not in agents_told and agent.peer:
                self._send(agent.peer, proto.ShutdownFramework(framework.id))
                agents_told.add(agent.id)
            if task.state not in proto.TERMINAL_STATES:
                now = self.clock.time()
                self._record_status(task, StatusRecord(proto.TASK_KILLED, now))
                self._set_state(framework, task, proto.TASK_KILLED, now)
            self._complete(framework, task)
        if framework.peer:
            self.peers.pop(framework.peer, None)
        framework.connected = framework.active = False
        framework.unregistered_time = self.clock.time()
        self.frameworks.pop(framework.id, None)
        self.failover_deadlines.pop(framework.id, None)
        self.allocator.forget_framework(framework.id)
        self.completed_frameworks.append(framework)
        self._event("framework_removed", {"framework_id": framework.id})
        self.allocation_wanted = True

    def _teardown(self, peer: bytes, msg: proto.Teardown) -> None:
        framework = self._framework_of(peer)
        if framework:
            self._remove_framework(framework)

    def _heartbeat(self, peer: bytes, msg: proto.Heartbeat) -> None:
        kind, ident = self.peers[peer]
        record = (self.agents if kind == "agent" else self.frameworks).get(ident)
        if record is not None:
            record.last_seen = self.clock.monotonic()

    # -- offers -----------------------------------------------------------------------------------

    def _accept(self, peer: bytes, msg: proto.Accept) -> None:
        framework = self._framework_of(peer)
        if framework is None:
            return
        offers, problem = self._take_offers(framework, msg.offer_ids)
        tasks = [task for op in msg.operations if op.type == "LAUNCH" for task in op.tasks]
        unknown_ops = [op.type for op in msg.operations if op.type != "LAUNCH"]
        if problem or unknown_ops:
            why = problem or f"unsupported operation(s) {', '.join(unknown_ops)}"
            for offer in offers:       # give back what was valid
                self._release_offer(framework, offer)
            for info in tasks:
                self._reject_task(framework, info, proto.TASK_LOST, proto.REASON_INVALID_OFFERS, why)
            self.counters["invalid_accepts"] += 1
            return
        agent = self.agents.get(offers[0].agent_id) if offers else None
        remaining = Resources()
        for offer in offers:
            self._release_offer(framework, offer)
            remaining = remaining + offer.resources
        role = offers[0].role if offers else "*"
        for info in tasks:
            error = validate_launch(info, framework, agent, remaining)
            if error:
                self._reject_task(framework, info, proto.TASK_ERROR, proto.REASON_TASK_INVALID, error)
                continue
            remaining = remaining - info.resources
            self._launch(framework, agent, info, role)
        if agent is not None and remaining:
            self.allocator.refuse(framework.id, agent.id, role, remaining, msg.refuse_seconds,
                                  self.clock.monotonic(), self.config.allocation_interval)
        self.allocation_wanted = True

    def _take_offers(self, framework: Framework, offer_ids: list[str]) -> tuple[list[proto.Offer], str]:
        """Remove the offers from the framework; say why if any is unknown or they span agents."""
        offers, problem = [], ""
        for offer_id in dict.fromkeys(offer_ids):
            record = framework.offers.pop(offer_id, None)
            if record is None:
                problem = problem or f"Offer {offer_id} is no longer valid"
                continue
            offers.append(record.offer)
        if not offer_ids:
            problem = "no offer ids given"
        elif len({offer.agent_id for offer in offers}) > 1:
            problem = "all offers of one accept must be from the same agent"
        if len(offer_ids) != len(set(offer_ids)):
            problem = problem or "an offer id appears more than once"
        return offers, problem

    def _release_offer(self, framework: Framework, offer: proto.Offer) -> None:
        agent = self.agents.get(offer.agent_id)
        if agent is not None:
            agent.offered = agent.offered - offer.resources
        take_from(framework.offered, offer.role, offer.resources)

    def _rescind(self, framework: Framework, offer_id: str, notify: bool) -> None:
        record = framework.offers.pop(offer_id, None)
        if record is None:
            return
        self._release_offer(framework, record.offer)
        if notify and framework.connected:
            self._send(framework.peer, proto.Rescind(offer_id))
        self.allocation_wanted = True

    def _decline(self, peer: bytes, msg: proto.Decline) -> None:
        framework = self._framework_of(peer)
        if framework is None:
            return
        for offer_id in msg.offer_ids:
            record = framework.offers.pop(offer_id, None)
            if record is None:
                continue
            self._release_offer(framework, record.offer)
            self.allocator.refuse(framework.id, record.offer.agent_id, record.offer.role,
                                  record.offer.resources, msg.refuse_seconds,
                                  self.clock.monotonic(), self.config.allocation_interval)

    def _revive(self, peer: bytes, msg: proto.Revive) -> None:
        framework = self._framework_of(peer)
        if framework is None:
            return
        roles = set(msg.roles) or set(framework.roles)
        framework.suppressed_roles -= roles
        self.allocator.revive(framework.id, roles)
        self.allocation_wanted = True

    def _suppress(self, peer: bytes, msg: proto.Suppress) -> None:
        framework = self._framework_of(peer)
        if framework is not None:
            framework.suppressed_roles |= set(msg.roles) or set(framework.roles)

    # -- tasks ----------------------------------------------------------------------------------

    def _launch(self, framework: Framework, agent: Agent, info: proto.TaskInfo, role: str) -> None:
        task = Task(info=info, framework_id=framework.id, role=role, user=framework.info.user)
        task.statuses.append(StatusRecord(proto.TASK_STAGING, self.clock.time()))
        framework.tasks[info.task_id] = task
        self._charge(agent, framework, task)
        agent.task_keys.add((framework.id, info.task_id))
        self._send(agent.peer, proto.RunTask(framework=framework.info, task=info))
        self.counters["tasks_launched"] += 1
        self._event("task_updated", _task_event(task, agent))

    def _charge(self, agent: Agent, framework: Framework, task: Task) -> None:
        agent.used = agent.used + task.resources
        add_to(framework.used, task.role, task.resources)
        task.released = False

    def _release(self, task: Task) -> None:
        if task.released:
            return
        task.released = True
        agent = self.agents.get(task.agent_id) or self.unreachable_agents.get(task.agent_id)
        if agent is not None:
            agent.used = agent.used - task.resources
        framework = self.frameworks.get(task.framework_id)
        if framework is not None:
            take_from(framework.used, task.role, task.resources)
        self.allocation_wanted = True

    def _reject_task(self, framework: Framework, info: proto.TaskInfo, state: str, reason: str,
                     message: str) -> None:
        log.warning("task rejected", framework_id=framework.id, task_id=info.task_id,
                    state=state, reason=message)
        self.counters["invalid_tasks"] += 1
        self._send(framework.peer, proto.Update(proto.TaskStatus(
            task_id=info.task_id, state=state, message=message, source=proto.SOURCE_MASTER,
            reason=reason, agent_id=info.agent_id or None, timestamp=self.clock.time())))

    def _status_update(self, peer: bytes, msg: proto.StatusUpdate) -> None:
        kind, agent_id = self.peers[peer]
        agent = self.agents.get(agent_id)
        if kind != "agent" or agent is None:
            self._send(peer, proto.Error("only agents send status updates", code="INVALID"))
            return
        agent.last_seen = self.clock.monotonic()
        status = msg.status
        status.agent_id = agent.id
        framework = self.frameworks.get(msg.framework_id)
        task = framework.tasks.get(status.task_id) if framework else None
        if framework is None or task is None:
            self.counters["invalid_status_updates"] += 1
            # The task is gone here (framework removed); acknowledge so the agent stops retrying.
            if status.uuid:
                self._send(peer, proto.StatusUpdateAck(msg.framework_id, status.task_id, status.uuid))
            return
        self.counters["valid_status_updates"] += 1
        latest = msg.latest_state or status.state
        task.status_update_state = status.state
        task.status_update_uuid = status.uuid
        self._record_status(task, StatusRecord(status.state, status.timestamp or self.clock.time(),
                                               status.healthy, dict(status.labels), status.container_ip))
        self._set_state(framework, task, latest, status.timestamp or self.clock.time(), agent)
        if framework.connected:
            self._send(framework.peer, proto.Update(status))

    @staticmethod
    def _record_status(task: Task, record: StatusRecord) -> None:
        # As Mesos: a status in the same state as the last replaces it (a newer IP or health).
        if task.statuses and task.statuses[-1].state == record.state:
            task.statuses[-1] = record
        else:
            task.statuses.append(record)

    def _set_state(self, framework: Framework, task: Task, state: str, timestamp: float,
                   agent: Agent | None = None) -> None:
        if task.state == state:
            return
        task.state = state
        self.counters[f"tasks_{state[5:].lower()}"] += 1
        if state in proto.TERMINAL_STATES:
            self._release(task)
        agent = agent or self.agents.get(task.agent_id)
        self._event("task_updated", _task_event(task, agent))

    def _acknowledge(self, peer: bytes, msg: proto.Acknowledge) -> None:
        framework = self._framework_of(peer)
        if framework is None:
            return
        task = framework.tasks.get(msg.task_id)
        agent = self.agents.get(msg.agent_id)
        if task is None or agent is None or task.status_update_uuid != msg.uuid:
            self.counters["invalid_status_update_acknowledgements"] += 1
            if agent is not None and agent.peer:
                # Still pass it on: the agent knows which uuid it is waiting for.
                self._send(agent.peer, proto.StatusUpdateAck(framework.id, msg.task_id, msg.uuid))
            return
        self.counters["valid_status_update_acknowledgements"] += 1
        if agent.peer:
            self._send(agent.peer, proto.StatusUpdateAck(framework.id, msg.task_id, msg.uuid))
        task.status_update_uuid = None
        if task.status_update_state in proto.TERMINAL_STATES and task.state in proto.TERMINAL_STATES:
            self._complete(framework, task)

    def _complete(self, framework: Framework, task: Task) -> None:
        framework.tasks.pop(task.id, None)
        framework.completed_tasks.append(task)
        agent = self.agents.get(task.agent_id)
        if agent is not None:
            agent.task_keys.discard((framework.id, task.id))

    def _kill(self, peer: bytes, msg: proto.Kill) -> None:
        framework = self._framework_of(peer)
        if framework is None:
            return
        task = framework.tasks.get(msg.task_id)
        if task is None:
            # Unknown to the master: answer as reconciliation would, so the framework can move on.
            self._reconcile_one(framework, msg.task_id, msg.agent_id)
            return
        self._kill_task(framework, task, msg.grace_seconds)

    def _kill_task(self, framework: Framework, task: Task, grace: float | None) -> None:
        agent = self.agents.get(task.agent_id)
        if agent is None or agent.peer is None:
            self._master_update(framework, task, proto.TASK_LOST, proto.REASON_AGENT_UNKNOWN,
                                "the task's agent is not connected")
            return
        if grace is None:
            grace = task.info.kill_grace_seconds
        self._send(agent.peer, proto.KillTask(framework.id, task.id, grace))

    def _master_update(self, framework: Framework, task: Task, state: str, reason: str,
                       message: str) -> None:
        """A master-generated update: no uuid, not retried (frameworks reconcile)."""
        now = self.clock.time()
        self._record_status(task, StatusRecord(state, now))
        self._set_state(framework, task, state, now)
        if framework.connected:
            self._send(framework.peer, proto.Update(proto.TaskStatus(
                task_id=task.id, state=state, message=message, source=proto.SOURCE_MASTER,
                reason=reason, agent_id=task.agent_id, timestamp=now)))

    def _reconcile(self, peer: bytes, msg: proto.Reconcile) -> None:
        framework = self._framework_of(peer)
        if framework is None:
            return
        if not msg.tasks:      # implicit: everything non-terminal or unacknowledged
            for task in framework.tasks.values():
                self._send(peer, self._reconcile_status(task))
            return
        for item in msg.tasks:
            self._reconcile_one(framework, item.task_id, item.agent_id)

    def _reconcile_one(self, framework: Framework, task_id: str, agent_id: str | None) -> None:
        task = framework.tasks.get(task_id) or framework.unreachable_tasks.get(task_id)
        if task is not None:
            self._send(framework.peer, self._reconcile_status(task))
            return
        if (agent_id in self.recovered_agents) or (not agent_id and self.recovered_agents):
            # Mesos: the agent may still re-register with this task; say nothing, the
            # framework retries with backoff.
            return
        if agent_id and agent_id in self.unreachable_agents:
            state = proto.TASK_UNREACHABLE
        elif agent_id and agent_id not in self.agents:
            state = proto.TASK_UNKNOWN
        else:
            state = proto.TASK_GONE
        if not framework.partition_aware:
            state = proto.TASK_LOST
        self._send(framework.peer, proto.Update(proto.TaskStatus(
            task_id=task_id, state=state, source=proto.SOURCE_MASTER,
            reason=proto.REASON_RECONCILIATION, agent_id=agent_id,
            message="Reconciliation: task is unknown", timestamp=self.clock.time())))

    def _reconcile_status(self, task: Task) -> proto.Update:
        last = task.statuses[-1] if task.statuses else None
        return proto.Update(proto.TaskStatus(
            task_id=task.id, state=task.status_update_state or task.state,
            source=proto.SOURCE_MASTER, reason=proto.REASON_RECONCILIATION,
            agent_id=task.agent_id, message="Reconciliation: latest task status",
            timestamp=self.clock.time(), healthy=last.healthy if last else None))

    def _framework_message(self, peer: bytes, msg: proto.FrameworkMessageCall) -> None:
        framework = self._framework_of(peer)
        agent = self.agents.get(msg.agent_id)
        if framework is None:
            return
        if agent is None or agent.peer is None:
            self.counters["dropped_messages"] += 1
            return
        self._send(agent.peer, proto.FrameworkToExecutor(framework.id, msg.executor_id, msg.data))

    # -- output ---------------------------------------------------------------------------------

    def _send(self, peer: bytes | None, message: proto.Message) -> None:
        if peer is not None:
            self.outbox.append((peer, message))

    def _event(self, kind: str, payload: dict) -> None:
        self.events.append((kind, payload))


def _invalid_framework(info: proto.FrameworkInfo) -> str:
    if not info.name:
        return "FrameworkInfo.name must be set"
    if info.id is not None and not valid_id(info.id):
        return f"invalid framework id {info.id!r}"
    for role in info.roles:
        if not role or role in (".", "..") or role.startswith("-") or any(c in role for c in " \t\n\\"):
            return f"invalid role {role!r}"
    if info.failover_timeout < 0:
        return "failover_timeout must not be negative"
    return ""


def _task_event(task: Task, agent: Agent | None) -> dict:
    """`task_updated`: the task as `/master/state` shows it (ports, discovery, labels, statuses
    with their IPs), so a follower such as the DNS keeps its copy of the state without
    fetching `/master/state` again."""
    return {"task_id": task.id, "framework_id": task.framework_id, "agent_id": task.agent_id,
            "name": task.info.name, "state": task.state,
            "hostname": agent.hostname if agent else None, "task": task_json(task)}


def new_master_id() -> str:
    return str(uuidlib.uuid4())
