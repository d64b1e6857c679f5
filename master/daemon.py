"""The master's IO shell: sockets, timers and HTTP around the IO-free `core.Master`.

    router (ZeroMQ) --> loop thread --> Master.handle --> outbox --> router
                                    \\-> events --> publisher (event bus)
    HTTP threads --> loop.call(view) --> JSON
"""
from __future__ import annotations

import dataclasses
import os
import socket
from typing import Any

from meseta import proto
from meseta.bus import Publisher
from meseta.clock import Clock
from meseta.config import Flag, bool_flag, duration_flag, parse_duration, parse_port, render_flags
from meseta.http import HttpServer
from meseta.log import get_logger
from meseta.loop import EventLoop
from meseta.master.core import Master, new_master_id
from meseta.master.leadership import make_elector
from meseta.metrics import Registry
from meseta.transport import DEFAULT_MAX_FRAME, Router

log = get_logger("meseta.master")


def _optional_duration(text: str) -> float | None:
    return parse_duration(text) if text not in ("", None) else None


def _weights(text: str) -> dict[str, float]:
    """Mesos's --weights: 'role1=2.0,role2=3'."""
    weights = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        role, sep, value = item.partition("=")
        if not sep or not role:
            raise ValueError(f"invalid weight {item!r}: expected role=weight")
        weights[role] = float(value)
        if weights[role] <= 0:
            raise ValueError(f"weight of role {role!r} must be positive")
    return weights


MASTER_FLAGS = (
    Flag("ip", "127.0.0.1", "IP address to listen on (HTTP and ZeroMQ)."),
    Flag("port", 5050, "HTTP port (the Mesos master port).", parse_port),
    Flag("advertise_ip", "", "IP address other hosts use to reach this master (default: --ip)."),
    Flag("hostname", "", "Hostname to advertise (default: the machine's name)."),
    Flag("native_port", 5060, "ZeroMQ ROUTER port for agents and frameworks.", parse_port),
    Flag("publisher_port", 5061, "ZeroMQ PUB port of the cluster event bus.", parse_port),
    Flag("work_dir", "", "Directory for the master's files."),
    duration_flag("allocation_interval", "1secs", "Time between periodic allocation cycles."),
    Flag("offer_timeout", None, "Rescind offers not used for this long (default: never).",
         _optional_duration),
    Flag("weights", {}, "Role weights for DRF, e.g. 'web=2,batch=1'.", _weights,
         lambda w: ",".join(f"{k}={v:g}" for k, v in w.items())),
    duration_flag("agent_ping_timeout", "15secs", "Interval of heartbeats to agents."),
    Flag("max_agent_ping_timeouts", 5, "Missed agent heartbeats before the agent is unreachable.", int),
    duration_flag("framework_heartbeat_interval", "2secs",
                  "Heartbeat interval for native frameworks (5 missed = disconnected)."),
    Flag("zk", "", "ZooKeeper URL for leader election and the agent registry, "
         "e.g. zk://h1:2181,h2:2181/meseta (default: standalone, leader by itself)."),
    duration_flag("zk_session_timeout", "10secs", "ZooKeeper session timeout."),
    duration_flag("agent_reregister_timeout", "10mins",
                  "After a failover, how long admitted agents have to re-register before they are "
                  "marked unreachable."),
    Flag("max_frame_bytes", DEFAULT_MAX_FRAME, "Largest ZeroMQ frame accepted.", int),
    Flag("http_threads", 16, "HTTP server threads.", int),
    Flag("log_level", "info", "debug, info, warning or error."),
    Flag("log_format", "auto", "json, text, or auto (text on a terminal)."),
    bool_flag("quiet", False, "Log warnings and errors only."),
)


class NotLeader(Exception):
    """This master does not lead; `leader` is who does (None: nobody, answer 503)."""

    def __init__(self, leader: proto.MasterInfo | None) -> None:
        super().__init__("not the leading master")
        self.leader = leader


class MasterDaemon:
    def __init__(self, config: Any, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or Clock()
        self.loop = EventLoop(self.clock, "master")
        self.metrics = Registry("meseta_master")
        self._frames_dropped = self.metrics.counter(
            "frames_dropped_total", "ZeroMQ frames dropped", ("kind",))
        self._terms = self.metrics.counter("leadership_terms_total", "Terms this master led")
        self._allocation_scheduled = False
        self.router: Router | None = None
        self.publisher: Publisher | None = None
        self.http: HttpServer | None = None
        self.core: Master | None = None        # None while standing by
        self.elector: Any = None
        self.base_info: proto.MasterInfo | None = None
        self.term_info: proto.MasterInfo | None = None
        self._thread = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        from meseta.master.http import create_app

        cfg = self.config
        advertise = cfg.advertise_ip or cfg.ip
        if advertise in ("0.0.0.0", ""):
            advertise = "127.0.0.1"
        self.router = Router(f"tcp://{cfg.ip}:{cfg.native_port or '*'}",
                             proto.AGENT_TO_MASTER + proto.FRAMEWORK_TO_MASTER,
                             cfg.max_frame_bytes, on_drop=self._on_drop)
        self.publisher = Publisher(f"tcp://{cfg.ip}:{cfg.publisher_port or '*'}")
        self.http = HttpServer(create_app(self), cfg.ip, cfg.port, cfg.http_threads, "master-http")
        self.http.server.prepare()
        self.base_info = proto.MasterInfo(
            id="", ip=advertise, port=self.http.port, hostname=cfg.hostname or socket.gethostname(),
            router=f"tcp://{advertise}:{self.router.port}",
            publisher=f"tcp://{advertise}:{self.publisher.endpoint.rsplit(':', 1)[1]}")
        self.metrics.export_snapshot(self.metrics_snapshot)
        self.loop.add_reader(self.router.socket, self._on_router)
        self.loop.call_every(cfg.allocation_interval, self._allocate)
        self.loop.call_every(0.25, self._tick)
        self.loop.call_every(cfg.framework_heartbeat_interval, self._heartbeat_frameworks)
        self.loop.call_every(cfg.agent_ping_timeout, self._heartbeat_agents)
        self.elector = make_elector(cfg.zk, cfg.zk_session_timeout)
        self._thread = self.loop.start_thread()
        self.loop.call(self._new_term)
        self.http.start_prepared()
        log.info("master started", http=f"http://{advertise}:{self.http.port}",
                 router=self.base_info.router, publisher=self.base_info.publisher,
                 zk=cfg.zk or "standalone", pid=os.getpid())

    def stop(self) -> None:
        log.info("master stopping")
        if self.http:
            self.http.stop()
        if self.elector:
            self.elector.close()
        self.loop.stop()
        if self._thread:
            self._thread.join(5)
        if self.router:
            self.router.close()
        if self.publisher:
            self.publisher.close()
        self.loop.close()

    @property
    def url(self) -> str:
        return f"http://{self.base_info.ip}:{self.base_info.port}"

    @property
    def leading(self) -> bool:
        return self.core is not None

    def flags(self) -> dict[str, str]:
        return render_flags(MASTER_FLAGS, self.config)

    # -- leadership (loop thread) ---------------------------------------------------------------

    def _new_term(self) -> None:
        """Contend with a fresh master id; the elector calls back (maybe from its threads)."""
        info = dataclasses.replace(self.base_info, id=new_master_id())
        self.term_info = info
        hop = self.loop.call_soon_threadsafe
        self.elector.contend(info, lambda: hop(lambda: self._elected(info.id)),
                             lambda why: hop(lambda: self._deposed(info.id, why)))

    def _elected(self, term_id: str) -> None:
        if self.term_info is None or term_id != self.term_info.id or self.core is not None:
            return
        core = Master(self.config, self.term_info, self.clock)
        registry = self.elector.registry
        if registry is not None:
            try:
                admitted = registry.load()
            except Exception as exc:
                log.error("cannot read the agent registry; not leading this term", reason=str(exc))
                self._new_term()
                return
            core.recover_agents(admitted, self.clock.monotonic() + self.config.agent_reregister_timeout)
        self.core = core
        self.publisher.new_epoch()
        self._terms.inc()
        log.info("elected leading master", master_id=term_id,
                 recovered_agents=len(core.recovered_agents))

    def _deposed(self, term_id: str, why: str) -> None:
        if self.term_info is None or term_id != self.term_info.id:
            return
        if self.core is None:
            return                       # a standby that lost its node: the elector re-contends
        log.warning("no longer the leading master; dropping soft state", master_id=term_id, reason=why)
        core, self.core = self.core, None
        for peer in core.peers:          # say so, so peers look for the new leader at once
            self.router.send(peer, proto.Error("this master is no longer the leader", code="NOT_LEADER"))
        self._new_term()

    # -- loop thread ----------------------------------------------------------------------------

    def _on_router(self) -> None:
        core = self.core
        for peer, message in self.router.receive():
            if core is None:
                self.router.send(peer, proto.Error("this master is not the leader", code="NOT_LEADER"))
                continue
            core.handle(peer, message)
        self._flush()

    def _tick(self) -> None:
        if self.core:
            self.core.tick()
            self._flush()

    def _heartbeat_frameworks(self) -> None:
        if self.core:
            self.core.heartbeat("framework")
            self._flush()

    def _heartbeat_agents(self) -> None:
        if self.core:
            self.core.heartbeat("agent")
            self._flush()

    def _allocate(self) -> None:
        self._allocation_scheduled = False
        if self.core:
            self.core.allocate()
            self._flush()

    def _flush(self) -> None:
        core = self.core
        if core is None:
            return
        if core.outbox:
            outbox, core.outbox = core.outbox, []
            for peer, message in outbox:
                self.router.send(peer, message)
        if core.events:
            events, core.events = core.events, []
            for kind, payload in events:
                self.publisher.publish(kind, payload)
        if core.registry_ops:
            ops, core.registry_ops = core.registry_ops, []
            registry = self.elector.registry
            for op, agent_id in ops if registry is not None else ():
                if op == "admit" and agent_id in core.agents:
                    registry.admit(agent_id, core.agents[agent_id].info)
                elif op == "forget":
                    registry.remove(agent_id)
        if core.allocation_wanted and not self._allocation_scheduled:
            # Coalesce: everything that arrived in this burst is allocated in one cycle.
            self._allocation_scheduled = True
            self.loop.call_later(0, self._allocate)

    def _on_drop(self, kind: str, why: str) -> None:
        self._frames_dropped.labels(kind).inc()
        if self.core is not None:
            self.core.counters["dropped_messages"] += 1

    # -- HTTP threads ---------------------------------------------------------------------------

    def leader(self) -> proto.MasterInfo | None:
        """The leading master's info, from the elector (this one's when it leads)."""
        if self.core is not None:
            return self.core.info
        try:
            return self.elector.leader()
        except Exception:        # ZooKeeper unreachable: no known leader
            return None

    def metrics_snapshot(self) -> dict[str, float]:
        from meseta.master import views
        try:
            snapshot = self.read(views.metrics_snapshot)
        except NotLeader:
            snapshot = {"master/elected": 0.0}
        snapshot["master/dropped_frames"] = float(self.router.drops.total())
        return snapshot

    def read(self, fn, timeout: float = 10.0):
        """Run `fn(core)` on the loop thread and return its result; NotLeader when standing by."""
        def run():
            if self.core is None:
                raise NotLeader(None)
            return fn(self.core)
        try:
            return self.loop.call(run, timeout)
        except NotLeader:
            raise NotLeader(self.leader()) from None

    def act(self, fn, timeout: float = 10.0):
        """Like read, for operator actions: flushes what the action decided."""
        def run():
            result = fn(self.core)
            self._flush()
            return result
        return self.read(lambda core: run(), timeout)
