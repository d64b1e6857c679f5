"""Who leads: the leader-elector seam of the master.

A master leads in *terms*. Each term has its own master id (so agent and framework ids minted
in one term never collide with another's) and, with ZooKeeper, its own `json.info_` node. A
term ends when the elector deposes us (session suspended or lost): the master drops its soft
state at once — no zombie leader — and contends again with a new term.

    Standalone          leads immediately (meseta up, single node, tests)
    ZooKeeperElector    kazoo contender in Mesos's layout + the admitted-agent registry

Elector callbacks may come from other threads; the daemon hops them onto its loop.
"""
from __future__ import annotations

from typing import Callable, Optional

from meseta import proto
from meseta.log import get_logger

log = get_logger("meseta.master.leadership")

Callback = Callable[[], None]
Deposed = Callable[[str], None]


class Standalone:
    """Leader by itself; nothing is persisted (agents re-register after a restart)."""

    registry = None

    def __init__(self) -> None:
        self._info: Optional[proto.MasterInfo] = None

    def contend(self, info: proto.MasterInfo, on_elected: Callback, on_deposed: Deposed) -> None:
        self._info = info
        on_elected()

    def leader(self) -> Optional[proto.MasterInfo]:
        return self._info

    def close(self) -> None:
        pass


class AgentRegistry:
    """Admitted agents under `<path>/registry/agents/<agent_id>` (AgentInfo, msgpack).

    Reads happen once per term on election; writes are asynchronous so registration never
    waits on ZooKeeper (failures are logged; the agent is written again when it re-registers).
    """

    def __init__(self, client, path: str, timeout: float) -> None:
        from meseta.zk import ZkStore
        self.client = client
        self.path = path.rstrip("/") + "/registry/agents"
        self.store = ZkStore(client, self.path, timeout=timeout)    # bounded reads

    def load(self) -> dict[str, proto.AgentInfo]:
        """Every admitted agent; a StoreError (ZooKeeper unreachable) propagates: a master that
        cannot read its registry must not lead."""
        agents = {}
        for agent_id in self.store.children():
            data = self.store.get(agent_id)
            if data is None:
                continue
            try:
                agents[agent_id] = proto.unpack(proto.AgentInfo, data)
            except proto.ProtocolError as exc:
                log.error("unreadable registry entry skipped", agent_id=agent_id, reason=str(exc))
        return agents

    def admit(self, agent_id: str, info: proto.AgentInfo) -> None:
        node, data = f"{self.path}/{agent_id}", proto.pack(info)

        def created(result) -> None:
            try:
                result.get()
            except Exception:      # NodeExistsError: a re-registration; anything else: say so
                self.client.set_async(node, data).rawlink(_log_failure("update", agent_id))
        self.client.create_async(node, data, makepath=True).rawlink(created)

    def remove(self, agent_id: str) -> None:
        self.client.delete_async(f"{self.path}/{agent_id}").rawlink(_log_failure("remove", agent_id))


def _log_failure(what: str, agent_id: str):
    def check(result) -> None:
        try:
            result.get()
        except Exception as exc:
            log.error(f"registry {what} failed", agent_id=agent_id, reason=repr(exc))
    return check


class ZooKeeperElector:
    """Mesos's ZooKeeper contention: ephemeral sequential `json.info_` nodes, lowest leads."""

    def __init__(self, url: str, session_timeout: float) -> None:
        from meseta import zk
        self.url = url
        self.session_timeout = session_timeout
        self._zk = zk
        self._contender = None
        self.registry: Optional[AgentRegistry] = None

    def contend(self, info: proto.MasterInfo, on_elected: Callback, on_deposed: Deposed) -> None:
        if self._contender is not None:
            self._contender.close()
        self._contender = self._zk.MasterContender(
            self.url, self._zk.master_info_json(info), on_elected, on_deposed,
            session_timeout=self.session_timeout)
        self.registry = AgentRegistry(self._contender.client, self._zk.parse_zk_url(self.url).path,
                                      timeout=self.session_timeout)

    def leader(self) -> Optional[proto.MasterInfo]:
        return self._contender.leader_info() if self._contender else None

    def close(self) -> None:
        if self._contender is not None:
            self._contender.close()
            self._contender = None


def make_elector(zk_url: str, session_timeout: float):
    return ZooKeeperElector(zk_url, session_timeout) if zk_url else Standalone()
