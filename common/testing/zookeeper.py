"""A real ZooKeeper for tests: Debian's `zookeeper` package, run as the test's own child process.

Java is launched directly with the package's jars and a config written into `work_dir`, so no
root-owned path or system config is touched. tickTime is 500 ms, so sessions may be as short as
1 s (ZooKeeper allows 2-20 ticks).

    with ZooKeeperServer(tmp_path) as zk:
        contender = MasterContender(zk.url("/meseta"), ..., session_timeout=2)
        zk.stop(); zk.start()               # an outage: data and unexpired sessions survive
        expire_session(contender.client)    # the server ends the session

    with ZooKeeperEnsemble(tmp_path, size=3) as ensemble:
        ensemble.stop_server(ensemble.followers()[0])   # quorum holds

Tests call `require_zookeeper()` first: it skips, naming the package, where it is missing.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Optional, Sequence

from kazoo.client import KazooClient, KazooState

from meseta.testing.processes import free_port

__all__ = ["ZooKeeperServer", "ZooKeeperEnsemble", "expire_session", "require_zookeeper",
           "missing_reason", "four_letter_word"]

JAVA_DIR = Path("/usr/share/java")
ZOOKEEPER_JAR = JAVA_DIR / "zookeeper.jar"      # its manifest's Class-Path names its dependencies
LOG_BINDING = JAVA_DIR / "slf4j-simple.jar"     # slf4j -> stderr -> our log file (else no logs)
MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
# A small, quick-starting JVM: startup is what the suite waits for.
JVM_FLAGS = ("-XX:+UseSerialGC", "-Xms32m", "-Xmx256m", "-XX:TieredStopAtLevel=1",
             "-XX:-UsePerfData", "-Xshare:auto", "-Djava.net.preferIPv4Stack=true",
             "-Dzookeeper.jmx.log4j.disable=true",
             "-Dorg.slf4j.simpleLogger.showDateTime=true",
             "-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS")
TICK_MS = 500
BASE_CONFIG = (f"tickTime={TICK_MS}", "initLimit=10", "syncLimit=5", "forceSync=no",
               "admin.enableServer=false", "4lw.commands.whitelist=*",
               "clientPortAddress=127.0.0.1")


def _java() -> Optional[str]:
    return shutil.which("java") or ("/usr/bin/java" if os.access("/usr/bin/java", os.X_OK) else None)


def missing_reason() -> Optional[str]:
    """Why no ZooKeeper can run here, or None."""
    if not ZOOKEEPER_JAR.exists():
        return (f"Debian package 'zookeeper' is not installed ({ZOOKEEPER_JAR} missing); "
                "`make test` installs it")
    if _java() is None:
        return "no java found for the Debian package 'zookeeper' (install default-jre-headless)"
    return None


def require_zookeeper() -> None:
    """Skip the calling test (or fixture) where ZooKeeper cannot run."""
    reason = missing_reason()
    if reason:
        import pytest
        pytest.skip(reason)


def four_letter_word(host: str, port: int, word: bytes = b"srvr", timeout: float = 1.0) -> str:
    """Send a four-letter command; '' if the server does not answer."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(word)
            chunks = []
            while chunk := sock.recv(4096):
                chunks.append(chunk)
    except OSError:
        return ""
    return b"".join(chunks).decode(errors="replace")


class ZooKeeperServer:
    """One ZooKeeper server process, standalone unless given quorum lines (see the ensemble)."""

    def __init__(self, work_dir: str | os.PathLike, port: Optional[int] = None, *,
                 myid: Optional[int] = None, quorum: Sequence[str] = ()) -> None:
        self.work_dir = Path(work_dir)
        self.port = port or free_port()
        self.myid = myid
        self.quorum = list(quorum)
        self.data_dir = self.work_dir / "data"
        self.config_path = self.work_dir / "zoo.cfg"
        self.log_path = self.work_dir / "zookeeper.log"
        self.proc: Optional[subprocess.Popen] = None
        self.start_seconds: Optional[float] = None    # how long the last start() took

    @property
    def hosts(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, path: str = "/meseta") -> str:
        return f"zk://{self.hosts}/{path.lstrip('/')}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 30.0) -> "ZooKeeperServer":
        began = time.monotonic()
        self.spawn()
        self.wait_serving(timeout)
        self.start_seconds = time.monotonic() - began
        return self

    def spawn(self) -> None:
        """Start the process without waiting (an ensemble member serves only with a quorum)."""
        reason = missing_reason()
        if reason:
            raise RuntimeError(reason)
        if self.running:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.myid is not None:
            (self.data_dir / "myid").write_text(f"{self.myid}\n")
        lines = [*BASE_CONFIG, f"dataDir={self.data_dir}", f"clientPort={self.port}", *self.quorum]
        self.config_path.write_text("\n".join(lines) + "\n")
        classpath = ":".join(str(j) for j in (ZOOKEEPER_JAR, LOG_BINDING) if j.exists())
        with open(self.log_path, "ab") as log:
            log.write(f"--- starting ZooKeeper on {self.hosts} ---\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [_java(), *JVM_FLAGS, f"-Dzookeeper.log.dir={self.work_dir}", "-cp", classpath,
                 MAIN_CLASS, str(self.config_path)],
                cwd=self.work_dir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    def mode(self, timeout: float = 1.0) -> Optional[str]:
        """'standalone', 'leader' or 'follower' while serving, else None."""
        for line in four_letter_word("127.0.0.1", self.port, b"srvr", timeout).splitlines():
            if line.startswith("Mode: "):
                return line[len("Mode: "):].strip()
        return None

    def wait_serving(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                code = self.proc.returncode if self.proc else None
                raise RuntimeError(f"ZooKeeper on {self.hosts} exited with {code} before "
                                   f"serving; log {self.log_path}:\n{self.log_tail()}")
            if self.mode(timeout=0.2):           # a probe sent too early may go unanswered
                return
            time.sleep(0.02)
        raise RuntimeError(f"ZooKeeper on {self.hosts} did not serve within {timeout:g}s; "
                           f"log {self.log_path}:\n{self.log_tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (SIGKILL if it lingers). Data stays, so start() brings back every node and
        every session that has not timed out meanwhile."""
        if not self.running:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL, as a crash."""
        if self.running:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def restart(self, timeout: float = 30.0) -> "ZooKeeperServer":
        self.stop()
        return self.start(timeout)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> "ZooKeeperServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ZooKeeperEnsemble:
    """`size` servers on 127.0.0.1 forming one quorum; servers are indexed from 0."""

    def __init__(self, work_dir: str | os.PathLike, size: int = 3) -> None:
        ports = set()
        while len(ports) < 3 * size:               # client, peer and election port each
            ports.add(free_port())
        ports = sorted(ports)
        quorum = [f"server.{i + 1}=127.0.0.1:{ports[3 * i + 1]}:{ports[3 * i + 2]}"
                  for i in range(size)]
        self.servers = [ZooKeeperServer(Path(work_dir) / f"zk{i + 1}", ports[3 * i],
                                        myid=i + 1, quorum=quorum) for i in range(size)]
        self.start_seconds: Optional[float] = None

    @property
    def hosts(self) -> str:
        return ",".join(s.hosts for s in self.servers)

    def url(self, path: str = "/meseta") -> str:
        return f"zk://{self.hosts}/{path.lstrip('/')}"

    def start(self, timeout: float = 60.0) -> "ZooKeeperEnsemble":
        began = time.monotonic()
        for server in self.servers:
            if not server.running:
                server.spawn()
        for server in self.servers:
            server.wait_serving(max(1.0, began + timeout - time.monotonic()))
        self.start_seconds = time.monotonic() - began
        return self

    def stop_server(self, index: int) -> None:
        self.servers[index].stop()

    def start_server(self, index: int, timeout: float = 30.0) -> None:
        self.servers[index].start(timeout)

    def leader(self) -> Optional[int]:
        """Index of ZooKeeper's own leader, if one serves."""
        return next((i for i, s in enumerate(self.servers) if s.mode() == "leader"), None)

    def followers(self) -> list[int]:
        return [i for i, s in enumerate(self.servers) if s.mode() == "follower"]

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def kill(self) -> None:
        for server in self.servers:
            server.kill()

    def restart(self, timeout: float = 60.0) -> "ZooKeeperEnsemble":
        self.stop()
        return self.start(timeout)

    def __enter__(self) -> "ZooKeeperEnsemble":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def expire_session(client: KazooClient, timeout: float = 10.0) -> None:
    """Make the server expire `client`'s session, returning once the client has seen LOST.

    The classic trick: attach a second client to the same session (id + password) and close it;
    the server ends the session and drops its ephemeral nodes. The original client may win its
    session back before the close lands, so this tries a few times within `timeout`."""
    client_id = client.client_id
    if client_id is None:
        raise RuntimeError("expire_session: the client has no session (not connected)")
    hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in client.hosts)
    lost = threading.Event()

    def watch(state: str) -> Optional[bool]:
        if state == KazooState.LOST:
            lost.set()
            return True                            # removes this listener
        return None

    client.add_listener(watch)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            other = KazooClient(hosts=hosts, client_id=client_id, timeout=2.0)
            try:
                other.start(timeout=max(0.5, deadline - time.monotonic()))
                other.stop()
            except Exception:                      # the original took the session back; again
                pass
            finally:
                other.close()
            if lost.wait(max(0.0, min(2.0, deadline - time.monotonic()))):
                return
        raise TimeoutError(f"session 0x{client_id[0]:x} was not expired within {timeout:g}s")
    finally:
        client.remove_listener(watch)
