"""Real daemons as child processes on 127.0.0.1, for integration tests and benchmarks.

    with ProcessCluster(agents=2, tmp_path) as cluster:
        cluster.master_address       # "127.0.0.1:<port>"
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any, Sequence


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONSAFEPATH"] = "1"       # the repo root must never be on sys.path (./dns)
    env.setdefault("MESETA_LOG_FORMAT", "json")
    env.update(extra or {})
    return env


def wait_http(url: str, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


class Daemon:
    """One `meseta <command>` child process with its log in a file."""

    def __init__(self, command: str, args: Sequence[str], log_path: str, http_port: int) -> None:
        self.command = command
        self.args = list(args)
        self.http_port = http_port
        self.log_path = log_path
        self.url = f"http://127.0.0.1:{http_port}"
        self._spawn()

    def _spawn(self) -> None:
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "meseta.cli", self.command, *self.args], env=child_env(),
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def kill(self) -> None:
        """SIGKILL, as a crash: nothing is cleaned up."""
        self.signal(signal.SIGKILL)
        self.proc.wait(10)
        self._log.close()

    def terminate(self, timeout: float = 10.0) -> int:
        """Plain SIGTERM (for an agent: stop, tasks keep running) and wait."""
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def restart(self) -> "Daemon":
        """Start again with the same flags (same ports), e.g. after kill()."""
        if self.proc.poll() is None:
            self.stop()
        self._spawn()
        return self.wait_ready()

    def wait_ready(self, timeout: float = 20.0) -> "Daemon":
        wait_http(self.url + "/health", timeout, self.proc)
        return self

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> int:
        # An agent's SIGTERM leaves its tasks running (for its next start); a test wants them
        # gone, which is SIGUSR1 (shut down and kill the tasks), as for a Mesos agent.
        self.signal(signal.SIGUSR1 if self.command == "agent" else signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)
        finally:
            self._log.close()

    def log(self) -> str:
        with open(self.log_path, "rb") as handle:
            return handle.read().decode(errors="replace")


class ProcessCluster:
    """Masters and agents as child processes. With `zk` (a zk:// URL) it starts `masters`
    masters contending in ZooKeeper and points agents at the URL."""

    def __init__(self, work_dir: str, agents: int = 1, agent_resources: str = "",
                 master_args: Sequence[str] = (), agent_args: Sequence[str] = (),
                 masters: int = 1, zk: str = "") -> None:
        self.work_dir = str(work_dir)
        self.agent_count = agents
        self.master_count = masters
        self.zk = zk
        self.agent_resources = agent_resources
        self.master_args = list(master_args)
        self.agent_args = list(agent_args)
        self.masters: list[Daemon] = []
        self.agents: list[Daemon] = []

    @property
    def master(self) -> Daemon:
        """The leading master (the first one when none leads, or without ZooKeeper)."""
        return self.leader() or self.masters[0]

    def start(self) -> "ProcessCluster":
        for index in range(self.master_count):
            self.add_master(index)
        if self.zk:
            self.wait_leader()
        for index in range(self.agent_count):
            self.add_agent(index)
        self.wait_agents(self.agent_count)
        return self

    def add_master(self, index: int) -> Daemon:
        port = free_port()
        args = ["--ip=127.0.0.1", f"--port={port}", f"--native_port={free_port()}",
                f"--publisher_port={free_port()}", f"--work_dir={self.work_dir}/master{index}",
                f"--hostname=127.0.0.1", "--allocation_interval=100ms", *self.master_args]
        if self.zk:
            args.append(f"--zk={self.zk}")
        name = "master.log" if index == 0 else f"master{index}.log"
        master = Daemon("master", args, os.path.join(self.work_dir, name), port).wait_ready()
        self.masters.append(master)
        return master

    def leader(self) -> "Daemon | None":
        for master in self.masters:
            if master.proc.poll() is not None:
                continue
            try:
                if get_json(master.url + "/metrics/snapshot", timeout=2)["master/elected"] == 1.0:
                    return master
            except OSError:
                continue
        return None

    def wait_leader(self, exclude: "Daemon | None" = None, timeout: float = 30.0) -> Daemon:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.leader()
            if leader is not None and leader is not exclude:
                return leader
            time.sleep(0.02)
        raise TimeoutError(f"no leading master within {timeout}s")

    def add_agent(self, index: int, extra: Sequence[str] = ()) -> Daemon:
        port = free_port()
        args = [f"--master={self.master_address}", "--ip=127.0.0.1", f"--port={port}",
                f"--work_dir={self.work_dir}/agent{index}", f"--hostname=agent{index}",
                *self.agent_args, *extra]
        if self.agent_resources:
            args.append(f"--resources={self.agent_resources}")
        agent = Daemon("agent", args, os.path.join(self.work_dir, f"agent{index}.log"), port).wait_ready()
        self.agents.append(agent)
        return agent

    def wait_agents(self, count: int, timeout: float = 20.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                slaves = get_json(self.master.url + "/master/slaves")["slaves"]
            except OSError:
                slaves = []
            if len([s for s in slaves if s["active"]]) >= count:
                return slaves
            time.sleep(0.05)
        raise TimeoutError(f"{count} agents did not register within {timeout}s")

    @property
    def master_address(self) -> str:
        return self.zk or f"127.0.0.1:{self.masters[0].http_port}"

    def stop(self) -> None:
        for agent in self.agents:
            agent.stop()
        for master in self.masters:
            master.stop()

    def __enter__(self) -> "ProcessCluster":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
