"""`meseta marathon`: flags, and the wiring of store, election, service and HTTP server.

    meseta marathon --master 127.0.0.1:5050 --http_port 8080 --work_dir /var/lib/marathon
    meseta marathon --master zk://h1:2181/meseta --zk zk://h1:2181/marathon --http_port 8080

With `--zk` the state lives in ZooKeeper and several processes elect one leader (standbys proxy
the API to it); without, the state lives in `--work_dir` and the process leads by itself.
SIGTERM stops the process and leaves the tasks running: the framework fails over to the next
leader (or to this one restarted) within `--failover_timeout`.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from meseta.bus import Publisher
from meseta.clock import Clock
from meseta import __version__
from meseta.config import (Flag, bool_flag, duration_flag, parse_duration, parse_port,
                           render_flags)
from meseta.frameworks.marathon.core import CoreConfig
from meseta.frameworks.marathon.eventbus import EventBus
from meseta.frameworks.marathon.service import VERSION, MarathonService, ServiceConfig
from meseta.http import HttpServer, json_response
from meseta.log import get_logger
from meseta.metrics import Registry

__all__ = ["MARATHON_FLAGS", "MarathonDaemon"]

log = get_logger("meseta.marathon")

def _optional_duration(text: str | float | None) -> float | None:
    return parse_duration(text) if text not in (None, "") else None


MARATHON_FLAGS = (
    Flag("master", "127.0.0.1:5050", "The Mesos master: host:port or zk://host:port/path."),
    Flag("zk", "", "ZooKeeper URL for state and leader election, e.g. zk://h1:2181/marathon "
                   "(default: a local store in --work_dir, no election)."),
    Flag("http_address", "127.0.0.1", "Address the HTTP API listens on."),
    Flag("http_port", 8080, "HTTP port of the REST API.", parse_port),
    Flag("hostname", "", "Hostname advertised to other instances and the master "
                         "(default: --http_address, or the machine's name when that is 0.0.0.0)."),
    Flag("work_dir", "", "Directory of the local store (used without --zk)."),
    Flag("framework_name", "marathon", "Framework name registered with the master."),
    Flag("mesos_role", "*", "Role the framework registers with."),
    Flag("local_port_min", 10000, "Lowest service port assigned.", parse_port),
    Flag("local_port_max", 20000, "Service ports are assigned below this.", parse_port),
    Flag("max_running_deployments", 100, "Deployments that may run at once.", int),
    duration_flag("task_launch_timeout", "5mins", "A task staging longer than this is killed."),
    duration_flag("zk_session_timeout", "10secs", "ZooKeeper session timeout."),
    Flag("env_vars_prefix", "", "Prefix of the port variables Marathon sets in tasks."),
    Flag("deployment_deadline", None, "Fail a deployment not finished within this duration "
                                      "(e.g. 10mins; default: never, as Marathon).",
         _optional_duration),
    bool_flag("deployment_deadline_rollback", False,
              "Roll back a deployment that missed its deadline."),
    Flag("http_threads", 64, "HTTP server threads (event streams hold one each).", int),
    Flag("event_stream_max_outstanding_messages", 1024,
         "Events queued for one /v2/events client; a client further behind is disconnected.", int),
    Flag("events_port", 0, "ZeroMQ PUB port of the event bus, on --http_address (0: a free "
                           "port; the endpoint is logged and shown in /v2/info).", parse_port),
    Flag("log_level", "info", "debug, info, warning or error."),
    Flag("log_format", "auto", "json, text, or auto (text on a terminal)."),
)


class MarathonDaemon:
    def __init__(self, config: Any, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or Clock()
        self.metrics = Registry("meseta_marathon")
        self.service: MarathonService | None = None
        self.http: HttpServer | None = None
        self.publisher: Publisher | None = None

    def start(self) -> None:
        from meseta.frameworks.marathon.api import create_app

        cfg = self.config
        app_holder: list[Any] = []
        self.http = HttpServer(lambda environ, start: app_holder[0](environ, start),
                               cfg.http_address, cfg.http_port, cfg.http_threads, "marathon-http")
        self.http.server.prepare()          # the port is known now (0 picks one)
        hostname = cfg.hostname or (cfg.http_address if cfg.http_address not in ("0.0.0.0", "")
                                    else socket.gethostname())
        service_config = ServiceConfig(
            master=cfg.master, hostname=hostname, http_port=self.http.port,
            framework_name=cfg.framework_name, mesos_role=cfg.mesos_role, zk=cfg.zk,
            core=CoreConfig(max_running_deployments=cfg.max_running_deployments,
                            local_port_min=cfg.local_port_min, local_port_max=cfg.local_port_max,
                            task_launch_timeout=cfg.task_launch_timeout,
                            env_vars_prefix=cfg.env_vars_prefix,
                            deployment_deadline=cfg.deployment_deadline,
                            deployment_deadline_rollback=cfg.deployment_deadline_rollback))
        store, election = self._state(service_config)
        self.service = MarathonService(service_config, store, election, self.clock,
                                       self._event_bus(hostname))
        self._export_metrics()
        app = create_app(self.service, registry=self.metrics, address=service_config.host_port)
        app.add_url_rule("/flags", "flags",
                         lambda: json_response({"flags": render_flags(MARATHON_FLAGS, cfg)}))
        app.add_url_rule("/version", "version", lambda: json_response(
            {"version": VERSION, "meseta_version": __version__}))
        app_holder.append(app)
        self.service.start()
        self.http.start_prepared()
        log.info("marathon started", http=f"http://{service_config.host_port}",
                 master=cfg.master, zk=cfg.zk or "standalone", pid=os.getpid())

    def _event_bus(self, hostname: str) -> EventBus:
        cfg = self.config
        publisher = Publisher(f"tcp://{cfg.http_address or '*'}:{cfg.events_port or '*'}")
        # followers connect to the advertised host, not to a wildcard bind address
        publisher.endpoint = publisher.endpoint.replace("0.0.0.0", hostname, 1)
        log.info("event bus", zeromq=publisher.endpoint)
        self.publisher = publisher
        return EventBus(cfg.event_stream_max_outstanding_messages, publisher, self.clock)

    def _state(self, service_config: ServiceConfig) -> tuple[Any, Any]:
        from meseta.frameworks.marathon.election import StandaloneElection, ZkElection
        from meseta.frameworks.marathon.store import DirectoryStore, ZkMarathonStore

        cfg = self.config
        me = service_config.host_port
        def failed(exc: Exception) -> None:         # on the store's writer thread
            service = self.service
            if service is not None:
                service.loop.call_soon_threadsafe(lambda: service._store_failed(exc))
        if cfg.zk:
            return (ZkMarathonStore(cfg.zk, session_timeout=cfg.zk_session_timeout,
                                    on_failure=failed),
                    ZkElection(cfg.zk, me, session_timeout=cfg.zk_session_timeout))
        work_dir = cfg.work_dir or os.path.join(os.getcwd(), "marathon")
        return DirectoryStore(work_dir, on_failure=failed), StandaloneElection(me)

    def _export_metrics(self) -> None:
        service = self.service

        def figures() -> dict[str, float]:      # on the loop: the core is its state
            core = service.core
            if core is None:
                return {"marathon/leader": 0.0}
            return {**core.checks.tracker.stats(),
                    "marathon/leader": 1.0,
                    "marathon/apps": float(len(core.root_apps())),
                    "marathon/deployments": float(len(core.deployments)),
                    "marathon/instances": float(len(core.instances)),
                    "marathon/instances_running": float(sum(
                        1 for i in core.instances.values() if i.running))}

        def snapshot() -> dict[str, float]:
            return service.loop.call(figures, timeout=5)
        self.metrics.export_snapshot(snapshot)

    def stop(self) -> None:
        log.info("marathon stopping")
        if self.service is not None:
            self.service.events.close_all()     # event streams would hold HTTP threads
        if self.http is not None:
            self.http.stop()
        if self.service is not None:
            self.service.stop()
        if self.publisher is not None:
            self.publisher.close()

    @property
    def url(self) -> str:
        assert self.service is not None
        return f"http://{self.service.config.host_port}"
