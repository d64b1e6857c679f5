"""The master's IO shell: sockets, timers and HTTP around the IO-free `core.Master`.

    router (ZeroMQ) --> loop thread --> Master.handle --> outbox --> router
                                    \\-> events --> publisher (event bus)
    HTTP threads --> loop.call(view) --> JSON
"""
from __future__ import annotations

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
    Flag("max_frame_bytes", DEFAULT_MAX_FRAME, "Largest ZeroMQ frame accepted.", int),
    Flag("http_threads", 16, "HTTP server threads.", int),
    Flag("log_level", "info", "debug, info, warning or error."),
    Flag("log_format", "auto", "json, text, or auto (text on a terminal)."),
    bool_flag("quiet", False, "Log warnings and errors only."),
)


class MasterDaemon:
    def __init__(self, config: Any, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or Clock()
        self.loop = EventLoop(self.clock, "master")
        self.metrics = Registry("meseta_master")
        self._frames_dropped = self.metrics.counter(
            "frames_dropped_total", "ZeroMQ frames dropped", ("kind",))
        self._allocation_scheduled = False
        self.router: Router | None = None
        self.publisher: Publisher | None = None
        self.http: HttpServer | None = None
        self.core: Master | None = None
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
        info = proto.MasterInfo(
            id=new_master_id(), ip=advertise, port=self.http.port,
            hostname=cfg.hostname or socket.gethostname(),
            router=f"tcp://{advertise}:{self.router.port}",
            publisher=f"tcp://{advertise}:{self.publisher.endpoint.rsplit(':', 1)[1]}")
        self.core = Master(cfg, info, self.clock)
        self.metrics.export_snapshot(self.metrics_snapshot)
        self.loop.add_reader(self.router.socket, self._on_router)
        self.loop.call_every(cfg.allocation_interval, self._allocate)
        self.loop.call_every(0.25, self._tick)
        self.loop.call_every(cfg.framework_heartbeat_interval, self._heartbeat_frameworks)
        self.loop.call_every(cfg.agent_ping_timeout, self._heartbeat_agents)
        self._thread = self.loop.start_thread()
        self.http.start_prepared()
        log.info("master started", master_id=info.id, http=f"http://{advertise}:{self.http.port}",
                 router=info.router, publisher=info.publisher, pid=os.getpid())

    def stop(self) -> None:
        log.info("master stopping")
        if self.http:
            self.http.stop()
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
        return f"http://{self.core.info.ip}:{self.core.info.port}"

    def flags(self) -> dict[str, str]:
        from meseta.master.daemon import MASTER_FLAGS
        return render_flags(MASTER_FLAGS, self.config)

    # -- loop thread ----------------------------------------------------------------------------

    def _on_router(self) -> None:
        for peer, message in self.router.receive():
            self.core.handle(peer, message)
        self._flush()

    def _tick(self) -> None:
        self.core.tick()
        self._flush()

    def _heartbeat_frameworks(self) -> None:
        self.core.heartbeat("framework")
        self._flush()

    def _heartbeat_agents(self) -> None:
        self.core.heartbeat("agent")
        self._flush()

    def _allocate(self) -> None:
        self._allocation_scheduled = False
        self.core.allocate()
        self._flush()

    def _flush(self) -> None:
        core = self.core
        if core.outbox:
            outbox, core.outbox = core.outbox, []
            for peer, message in outbox:
                self.router.send(peer, message)
        if core.events:
            events, core.events = core.events, []
            for kind, payload in events:
                self.publisher.publish(kind, payload)
        if core.allocation_wanted and not self._allocation_scheduled:
            # Coalesce: everything that arrived in this burst is allocated in one cycle.
            self._allocation_scheduled = True
            self.loop.call_later(0, self._allocate)

    def _on_drop(self, kind: str, why: str) -> None:
        self._frames_dropped.labels(kind).inc()
        if self.core is not None:
            self.core.counters["dropped_messages"] += 1

    # -- HTTP threads ---------------------------------------------------------------------------

    def metrics_snapshot(self) -> dict[str, float]:
        from meseta.master import views
        snapshot = self.read(views.metrics_snapshot)
        snapshot["master/dropped_frames"] = float(self.router.drops.total())
        return snapshot

    def read(self, fn, timeout: float = 10.0):
        """Run `fn(core)` on the loop thread and return its result."""
        return self.loop.call(lambda: fn(self.core), timeout)

    def act(self, fn, timeout: float = 10.0):
        """Like read, for operator actions: flushes what the action decided."""
        def run():
            result = fn(self.core)
            self._flush()
            return result
        return self.loop.call(run, timeout)
