"""Test helpers that ship with the package (as trio.testing does): a fake clock, builders,
a harness that drives the master core with no sockets, and real-process clusters.

    h = MasterHarness()
    agent = h.register_agent(b"a1", cpus=4, mem=1024)
    fw = h.subscribe(b"f1", name="web")
    h.allocate()
    [offer] = h.offers(b"f1")
"""
from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any, Iterable

from meseta import proto
from meseta.clock import FakeClock
from meseta.resources import Resources

__all__ = ["FakeClock", "MasterHarness", "make_agent_info", "make_framework_info", "make_task",
           "master_config", "wait_until"]


def wait_until(predicate: Any, what: str = "condition", timeout: float = 30.0,
               interval: float = 0.05) -> Any:
    """Poll `predicate` until it returns something truthy, and return that; AssertionError
    naming `what` after `timeout` seconds. For tests against real processes and threads."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def make_agent_info(cpus: float = 4, mem: float = 1024, disk: float = 10000,
                    ports: str = "[31000-32000]", hostname: str = "agent1", ip: str = "127.0.0.1",
                    port: int = 5051, attributes: dict | None = None) -> proto.AgentInfo:
    text = f"cpus:{cpus};mem:{mem};disk:{disk}" + (f";ports:{ports}" if ports else "")
    return proto.AgentInfo(hostname=hostname, port=port, resources=Resources.parse(text),
                           attributes=dict(attributes or {}), ip=ip)


def make_framework_info(name: str = "test", roles: Iterable[str] = (), user: str = "nobody",
                        capabilities: Iterable[str] = (), failover_timeout: float = 0.0,
                        framework_id: str | None = None) -> proto.FrameworkInfo:
    caps = list(capabilities)
    roles = list(roles)
    if len(roles) > 1 and proto.MULTI_ROLE not in caps:
        caps.append(proto.MULTI_ROLE)
    return proto.FrameworkInfo(user=user, name=name, id=framework_id, roles=roles,
                               capabilities=caps, failover_timeout=failover_timeout)


def make_task(task_id: str, agent_id: str, resources: str = "cpus:0.1;mem:32",
              command: str = "true", name: str | None = None, **extra: Any) -> proto.TaskInfo:
    return proto.TaskInfo(task_id=task_id, name=name or task_id, agent_id=agent_id,
                          resources=Resources.parse(resources), command=proto.CommandInfo(command),
                          **extra)


def master_config(**overrides: Any) -> SimpleNamespace:
    from meseta.config import load_config
    from meseta.master.daemon import MASTER_FLAGS
    config = load_config(MASTER_FLAGS, [], {})
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


class MasterHarness:
    """The master core with a fake clock; records everything it says, per peer."""

    def __init__(self, **config: Any) -> None:
        from meseta.master.core import Master
        self.clock = FakeClock()
        info = proto.MasterInfo(id="M", ip="127.0.0.1", port=5050, hostname="master",
                                router="tcp://127.0.0.1:5060")
        self.master = Master(master_config(**config), info, self.clock)
        self.sent: list[tuple[bytes, proto.Message]] = []

    def send(self, peer: bytes, message: proto.Message | proto.ProtocolError) -> list[proto.Message]:
        """Deliver one message; returns what the master said to that peer in reply."""
        self.master.handle(peer, message)
        return self._drain(peer)

    def _drain(self, peer: bytes | None = None) -> list[proto.Message]:
        out, self.master.outbox = self.master.outbox, []
        self.sent.extend(out)
        return [m for p, m in out if peer is None or p == peer]

    def register_agent(self, peer: bytes, **kwargs: Any) -> str:
        [reply] = self.send(peer, proto.RegisterAgent(proto.PROTOCOL_VERSION, make_agent_info(**kwargs)))
        assert isinstance(reply, proto.AgentRegistered), reply
        return reply.agent_id

    def subscribe(self, peer: bytes, **kwargs: Any) -> str:
        [reply] = self.send(peer, proto.Subscribe(proto.PROTOCOL_VERSION, make_framework_info(**kwargs)))
        assert isinstance(reply, proto.Subscribed), reply
        return reply.framework_id

    def allocate(self) -> int:
        count = self.master.allocate()
        self._drain()
        return count

    def messages(self, peer: bytes, kind: type | None = None) -> list[proto.Message]:
        return [m for p, m in self.sent if p == peer and (kind is None or isinstance(m, kind))]

    def offers(self, peer: bytes) -> list[proto.Offer]:
        """Offers currently outstanding for the framework connected as `peer`."""
        _, framework_id = self.master.peers[peer]
        return [r.offer for r in self.master.frameworks[framework_id].offers.values()]

    def updates(self, peer: bytes) -> list[proto.TaskStatus]:
        return [m.status for m in self.messages(peer, proto.Update)]

    def launch(self, peer: bytes, offer: proto.Offer, *tasks: proto.TaskInfo,
               refuse_seconds: float = 5.0) -> list[proto.Message]:
        return self.send(peer, proto.Accept([offer.id], [proto.Operation("LAUNCH", list(tasks))],
                                            refuse_seconds))

    def agent_update(self, agent_peer: bytes, framework_id: str, task_id: str, state: str,
                     message: str = "", uuid: bytes | None = None) -> None:
        status = proto.TaskStatus(task_id=task_id, state=state, message=message,
                                  uuid=uuid or (task_id + state).encode()[:16].ljust(16, b"-"),
                                  timestamp=self.clock.time())
        self.send(agent_peer, proto.StatusUpdate(framework_id, status))
        self._drain()
