"""The embedded cluster behind `meseta up`: a standalone master and local agents in one
process, each daemon on its own loop thread. Tests use it too (`meseta.testing`)."""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any

from meseta.config import load_config


@dataclass
class ClusterSpec:
    agents: int = 1
    ip: str = "127.0.0.1"
    port: int = 5050                 # master HTTP; 0 = free ports everywhere (tests)
    work_dir: str = ""
    resources: str = ""
    master_flags: tuple[str, ...] = ()
    agent_flags: tuple[str, ...] = ()
    marathon: bool = False           # also run Marathon (`meseta up` does), on port + 3030 (8080)
    marathon_flags: tuple[str, ...] = ()
    dns: bool = False                # also run Mesos-DNS (`meseta up` does): DNS on port + 48, HTTP 8123
    dns_config: tuple[tuple[str, object], ...] = ()   # config.json keys, e.g. (("ttl", 0),)
    lb: bool = False                 # also run the load balancer when HAProxy is installed (`meseta up`
                                     # does): API on port + 4039 (9089), stats + 4040, app-id router + 4041
    lb_flags: tuple[str, ...] = ()


class Cluster:
    def __init__(self, spec: ClusterSpec) -> None:
        self.spec = spec
        self.master: Any = None
        self.agents: list[Any] = []
        self.marathon: Any = None
        self.dns: Any = None
        self.lb: Any = None
        self.lb_missing = ""             # why the load balancer did not start
        self._own_dir = not spec.work_dir
        self.work_dir = spec.work_dir or tempfile.mkdtemp(prefix="meseta-")

    def start(self) -> "Cluster":
        from meseta.agent.daemon import AGENT_FLAGS, AgentDaemon
        from meseta.master.daemon import MASTER_FLAGS, MasterDaemon

        spec = self.spec
        free = spec.port == 0
        master_argv = [f"--ip={spec.ip}", f"--port={spec.port}",
                       f"--work_dir={os.path.join(self.work_dir, 'master')}"]
        if free:
            master_argv += ["--native_port=0", "--publisher_port=0"]
        self.master = MasterDaemon(load_config(MASTER_FLAGS, master_argv + list(spec.master_flags), {}))
        self.master.start()
        try:
            for index in range(spec.agents):
                argv = [f"--master={spec.ip}:{self.master.http.port}", f"--ip={spec.ip}",
                        f"--port={0 if free else spec.port + 1 + index}",
                        f"--work_dir={os.path.join(self.work_dir, f'agent{index}')}"]
                if spec.resources:
                    argv.append(f"--resources={spec.resources}")
                agent = AgentDaemon(load_config(AGENT_FLAGS, argv + list(spec.agent_flags), {}))
                agent.start()
                self.agents.append(agent)
            if spec.marathon:
                self._start_marathon(free)
            if spec.dns:
                self._start_dns(free)
            if spec.lb and self.marathon is not None:
                self._start_lb(free)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_marathon(self, free: bool) -> None:
        from meseta.frameworks.marathon.daemon import MARATHON_FLAGS, MarathonDaemon

        spec = self.spec
        argv = [f"--master={self.master_address}", f"--http_address={spec.ip}",
                f"--http_port={0 if free else spec.port + 3030}",
                f"--work_dir={os.path.join(self.work_dir, 'marathon')}"]
        self.marathon = MarathonDaemon(load_config(MARATHON_FLAGS, argv + list(spec.marathon_flags), {}))
        self.marathon.start()

    def _start_dns(self, free: bool) -> None:
        from meseta.dns.config import load_config as load_dns_config
        from meseta.dns.daemon import DaemonOptions, DnsDaemon

        spec = self.spec
        # Only the cluster's own names: nothing is forwarded, so a test never waits on 8.8.8.8.
        config = load_dns_config({"masters": [self.master_address], "listener": spec.ip,
                                  "HTTPListener": spec.ip, "externalOn": False,
                                  "refreshSeconds": 60}, dict(spec.dns_config))
        ports = DaemonOptions(dns_port=0 if free else spec.port + 48,
                              http_port=0 if free else 8123, first_build_timeout=10.0)
        self.dns = DnsDaemon(config, ports)
        self.dns.start()

    def _start_lb(self, free: bool) -> None:
        from meseta.lb.daemon import LB_FLAGS, LbDaemon
        from meseta.lb.haproxy import Haproxy
        from meseta.testing.processes import free_port

        spec = self.spec
        if Haproxy.find_binary() is None:
            self.lb_missing = "haproxy is not installed (Debian: apt-get install haproxy)"
            return
        argv = [f"--marathon={self.marathon.url}", "--group=external", f"--bind_addr={spec.ip}",
                f"--http_address={spec.ip}", f"--work_dir={os.path.join(self.work_dir, 'lb')}",
                f"--http_port={0 if free else spec.port + 4039}",
                f"--stats_port={free_port() if free else spec.port + 4040}",
                f"--appid_port={free_port() if free else spec.port + 4041}"]
        if os.geteuid() != 0:
            argv.append("--dont_bind_http_https")     # :80 and :443 need root
        self.lb = LbDaemon(load_config(LB_FLAGS, argv + list(spec.lb_flags), {}))
        self.lb.start()

    def stop(self) -> None:
        if self.lb is not None:
            self.lb.stop()
            self.lb = None
        if self.dns is not None:
            self.dns.stop()
            self.dns = None
        if self.marathon is not None:
            self.marathon.stop()
            self.marathon = None
        for agent in self.agents:
            agent.stop(kill_tasks=True)
        self.agents.clear()
        if self.master is not None:
            self.master.stop()
            self.master = None
        if self._own_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    @property
    def master_address(self) -> str:
        return f"{self.spec.ip}:{self.master.http.port}"

    def describe(self) -> str:
        lines = [f"Meseta cluster (work dir {self.work_dir})",
                 f"  master   {self.master.url}   (state: {self.master.url}/master/state)",
                 f"           native {self.master.core.info.router}, event bus {self.master.core.info.publisher}"]
        for index, agent in enumerate(self.agents):
            lines.append(f"  agent {index}  {agent.url}")
        if self.marathon is not None:
            lines.append(f"  marathon {self.marathon.url}   (apps: {self.marathon.url}/v2/apps)")
        if self.dns is not None:
            lines.append(f"  dns      {self.dns.dns_address} (udp, tcp; domain {self.dns.config.domain})"
                         f"   api {self.dns.http_url}/v1/enumerate")
        if self.lb is not None:
            cfg = self.lb.config
            lines.append(f"  lb       haproxy stats http://{self.spec.ip}:{cfg.stats_port}/haproxy?stats"
                         f"   api {self.lb.http_url}/health   (apps labelled HAPROXY_GROUP=external)")
        elif self.lb_missing:
            lines.append(f"  lb       not started: {self.lb_missing}")
        lines.append(f"  frameworks connect with --master {self.master_address}")
        return "\n".join(lines)

