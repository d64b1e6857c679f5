"""Hollow agents: many agents in one thread that speak the real protocol but fake their
processes (as Kubernetes' kubemark), so one machine can stand in for a thousand nodes.

    hollow = HollowAgents("127.0.0.1:5050", count=1000).start()
    hollow.wait_registered(timeout=30)
    ... kill the leading master ...
    hollow.wait_registered(since=t0)      # every agent re-registered with the new leader

A launched task turns TASK_RUNNING at once and stays so; kills answer TASK_KILLED.
"""
from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Optional

import zmq

from meseta import proto
from meseta.detector import resolve, watch
from meseta.resources import Resources
from meseta.transport import Dealer


@dataclass
class HollowAgent:
    index: int
    info: proto.AgentInfo
    dealer: Optional[Dealer] = None
    agent_id: Optional[str] = None
    registered_at: float = 0.0                 # monotonic time of the last (re)registration
    tasks: dict[tuple[str, str], proto.TaskRecord] = field(default_factory=dict)


class HollowAgents:
    def __init__(self, master: str, count: int,
                 resources: str = "cpus:8;mem:16384;disk:100000;ports:[31000-32000]",
                 heartbeat_interval: float = 1.0) -> None:
        self.master = master
        self.heartbeat_interval = heartbeat_interval
        self.agents = [HollowAgent(i, proto.AgentInfo(hostname=f"hollow{i}", port=40000 + i,
                                                      resources=Resources.parse(resources)))
                       for i in range(count)]
        self._router: Optional[str] = None
        # Our own context: a thousand agents, reconnecting, exceed zmq's default 1,024 sockets.
        self._context = zmq.Context()
        self._context.set(zmq.MAX_SOCKETS, max(4096, 4 * count))
        self._stop = threading.Event()
        self._reconnect = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hollow-agents", daemon=True)
        self._lock = threading.Lock()
        self._last_heard = time.monotonic()
        self.timeout = 5.0
        self._watch = None
        self._next_leader: Optional[proto.MasterInfo] = None

    def start(self) -> "HollowAgents":
        self._thread.start()
        # With ZooKeeper, move to a new leader as soon as it is elected (as real agents do).
        self._watch = watch(self.master, self._leader_changed)
        return self

    def stop(self) -> None:
        if self._watch is not None:
            self._watch.close()
        self._stop.set()
        self._thread.join(10)

    def _leader_changed(self, info: proto.MasterInfo | None) -> None:
        if info is not None and info.router != self._router:
            self._next_leader = info
            self.reconnect()

    def reconnect(self) -> None:
        """Detect the master again and re-register everyone (e.g. after a leader change)."""
        self._reconnect.set()

    # -- waiting (any thread) -------------------------------------------------------------------

    def registered(self, since: float = 0.0) -> int:
        with self._lock:
            return sum(1 for a in self.agents if a.agent_id and a.registered_at >= since)

    def wait_registered(self, since: float = 0.0, timeout: float = 60.0) -> float:
        """Block until every agent registered at or after `since`; returns when the last did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.registered(since) == len(self.agents):
                with self._lock:
                    return max(a.registered_at for a in self.agents)
            time.sleep(0.01)
        raise TimeoutError(f"{self.registered(since)}/{len(self.agents)} hollow agents registered")

    # -- the thread -----------------------------------------------------------------------------

    def _connect_all(self) -> None:
        info, self._next_leader = self._next_leader, None
        while info is None and not self._stop.is_set():
            try:
                info = resolve(self.master, timeout=2.0)
            except Exception:
                time.sleep(0.1)
        if info is None:
            return
        self._router = info.router
        for agent in self.agents:
            if agent.dealer is not None:
                agent.dealer.close()
            agent.dealer = Dealer(info.router, proto.MASTER_TO_AGENT, context=self._context)
            self._hello(agent)
        self._last_heard = time.monotonic()

    def _hello(self, agent: HollowAgent) -> None:
        if agent.agent_id is None:
            agent.dealer.send(proto.RegisterAgent(proto.PROTOCOL_VERSION, agent.info))
        else:
            agent.info.id = agent.agent_id
            agent.dealer.send(proto.ReregisterAgent(proto.PROTOCOL_VERSION, agent.info,
                                                    list(agent.tasks.values())))

    def _run(self) -> None:
        self._connect_all()
        last_beat = time.monotonic()
        while not self._stop.is_set():
            if self._reconnect.is_set() or time.monotonic() - self._last_heard > self.timeout:
                self._reconnect.clear()
                self._connect_all()
            poller = zmq.Poller()
            by_socket = {}
            for agent in self.agents:
                poller.register(agent.dealer.socket, zmq.POLLIN)
                by_socket[agent.dealer.socket] = agent
            for sock, _ in poller.poll(50):
                agent = by_socket[sock]
                for message in agent.dealer.receive():
                    self._last_heard = time.monotonic()
                    self._handle(agent, message)
            if time.monotonic() - last_beat >= self.heartbeat_interval:
                last_beat = time.monotonic()
                for agent in self.agents:
                    if agent.agent_id:
                        agent.dealer.send(proto.Heartbeat())
        for agent in self.agents:
            if agent.dealer:
                agent.dealer.close()
        self._context.term()

    def _handle(self, agent: HollowAgent, message: proto.Message) -> None:
        kind = type(message)
        if kind is proto.AgentRegistered:
            with self._lock:
                agent.agent_id = message.agent_id
                agent.registered_at = time.monotonic()
            self.heartbeat_interval = min(self.heartbeat_interval, message.heartbeat_interval)
            self.timeout = message.total_ping_timeout
        elif kind is proto.RunTask:
            record = proto.TaskRecord(message.framework.id or "", message.task, proto.TASK_RUNNING,
                                      message.framework)
            agent.tasks[(record.framework_id, message.task.task_id)] = record
            self._update(agent, record.framework_id, message.task.task_id, proto.TASK_RUNNING)
        elif kind is proto.KillTask:
            agent.tasks.pop((message.framework_id, message.task_id), None)
            self._update(agent, message.framework_id, message.task_id, proto.TASK_KILLED)
        elif kind is proto.Error and message.code == "UNREGISTERED":
            self._hello(agent)
        elif kind is proto.Error and message.code == "NOT_LEADER":
            self._reconnect.set()

    def _update(self, agent: HollowAgent, framework_id: str, task_id: str, state: str) -> None:
        status = proto.TaskStatus(task_id=task_id, state=state, agent_id=agent.agent_id,
                                  timestamp=time.time(), uuid=uuid.uuid4().bytes)
        agent.dealer.send(proto.StatusUpdate(framework_id, status))
