"""Mesos-level health checks (TaskInfo.health_check), run by the agent next to each task.

    checks = HealthChecks(loop, registry)
    checks.start(container_id, task.info.health_check, Target(sandbox, env, user),
                 on_verdict=lambda verdict: ..., running_for=0.0)
    checks.stop(container_id)          # the task is being killed, or has ended
    checks.close()                     # the agent stops

In what order, for one task (as Mesos's health checker):

    start --delay_seconds--> probe on a worker thread --result--> loop: judge() --> Verdict
          <--interval_seconds after each result---------------------------------'

`judge()` is the whole policy, pure: a success ends the grace period and resets the count; a
failure while the task has never passed and is younger than grace_period_seconds is ignored;
any other failure counts, and `consecutive_failures` counted failures in a row ask for a kill
(0: the first one does, as in Mesos). A Verdict carries the health to report only when it
changed (the first result included); the agent turns it into TASK_RUNNING with `healthy` and
REASON_TASK_HEALTH_CHECK_STATUS_UPDATED, and kills the task when told to.

Probes block (a command, an HTTP GET, a TCP connect, each bounded by timeout_seconds), so they
run on a small thread pool and hand their result back with `call_soon_threadsafe`; the loop
thread owns every checker. One probe per task is in flight at most: the next is scheduled only
once the last has answered. A command check runs `sh -c` in the task's sandbox with the task's
environment (and user) in its own process group, which is killed at the timeout. HTTP and TCP
checks go to 127.0.0.1 (::1 for IPv6): a command task shares the agent's network.

A restarted agent resumes the checks of the tasks it adopts (the check is part of the
checkpointed TaskInfo): the grace period still runs from the task's start, but the failure
count starts over and the first result is reported again.
"""
from __future__ import annotations

import http.client
import os
import signal
import socket
import ssl
import subprocess
import threading
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Optional

from meseta import proto
from meseta.agent import containerizer as cz
from meseta.log import get_logger
from meseta.loop import EventLoop, Timer
from meseta.metrics import Registry

log = get_logger("meseta.agent.health")

COMMAND, HTTP, TCP = "COMMAND", "HTTP", "TCP"
USER_AGENT = "meseta-health-check"


# ---------------------------------------------------------------------------------------------
# The policy: pure


@dataclass(frozen=True, slots=True)
class HealthState:
    since: float                       # monotonic time the grace period runs from (task start)
    healthy: Optional[bool] = None     # last reported; None: nothing reported yet
    passed: bool = False               # a check has succeeded: the grace period is over
    failures: int = 0                  # counted failures in a row


@dataclass(frozen=True, slots=True)
class Verdict:
    healthy: Optional[bool] = None     # report this health (it changed); None: report nothing
    kill: bool = False
    failures: int = 0                  # counted failures in a row so far


def judge(state: HealthState, check: proto.HealthCheck, ok: bool, now: float
          ) -> tuple[HealthState, Verdict]:
    """One check's result applied to a task's health (Mesos's HealthCheckerProcess)."""
    if ok:
        changed = state.healthy is not True
        return (replace(state, healthy=True, passed=True, failures=0),
                Verdict(healthy=True if changed else None))
    grace = check.grace_period_seconds
    if not state.passed and grace > 0 and now - state.since <= grace:
        return state, Verdict()
    failures = state.failures + 1
    changed = state.healthy is not False
    return (replace(state, healthy=False, failures=failures),
            Verdict(healthy=False if changed else None,
                    kill=failures >= check.consecutive_failures, failures=failures))


def check_problem(check: proto.HealthCheck) -> Optional[str]:
    """Why the agent cannot run `check`, or None. Mesos's validateHealthCheck, plus positive
    interval and timeout: a zero interval would probe without pause."""
    port = None
    if check.type == COMMAND:
        if check.command is None or not check.command.value:
            return "command health check without a command value"
    elif check.type == HTTP:
        if check.http is None:
            return "HTTP health check without 'http'"
        if check.http.scheme not in ("http", "https"):
            return f"unsupported HTTP scheme {check.http.scheme!r}"
        if not check.http.path.startswith("/"):
            return f"HTTP path {check.http.path!r} must start with '/'"
        if any(not 100 <= code <= 599 for code in check.http.statuses):
            return "HTTP statuses must lie in 100-599"
        port = check.http.port
    elif check.type == TCP:
        if check.tcp is None:
            return "TCP health check without 'tcp'"
        port = check.tcp.port
    else:
        return f"unknown health check type {check.type!r}"
    if port is not None and not 0 < port <= 65535:
        return f"port {port} is not in 1-65535"
    if min(check.delay_seconds, check.grace_period_seconds, check.consecutive_failures) < 0:
        return "delay, grace period and consecutive failures must not be negative"
    if check.interval_seconds <= 0 or check.timeout_seconds <= 0:
        return "interval and timeout must be positive"
    return None


# ---------------------------------------------------------------------------------------------
# Probes: blocking, on worker threads


@dataclass(frozen=True)
class Target:
    """What a command check runs in: the task's sandbox, environment and user."""
    sandbox: str
    environment: dict[str, str] = field(default_factory=dict)
    user: Optional[str] = None


@dataclass(frozen=True, slots=True)
class Result:
    ok: bool
    detail: str                        # for the log: "HTTP GET ... returned 500"


class _Processes:
    """Command checks in flight, so that close() can end them (worker threads own them)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: set[subprocess.Popen] = set()

    def add(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._live.add(proc)

    def discard(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._live.discard(proc)

    def kill_all(self) -> None:
        with self._lock:
            for proc in self._live:
                _killpg(proc.pid)


def probe(check: proto.HealthCheck, target: Target, processes: _Processes | None = None
          ) -> Result:
    """Run `check` once; blocks for up to its timeout."""
    timeout = check.timeout_seconds
    if check.type == COMMAND:
        return _probe_command(check.command, target, timeout, processes or _Processes())
    if check.type == HTTP:
        return _probe_http(check.http, timeout)
    return _probe_tcp(check.tcp, timeout)


def _host(protocol: str) -> str:
    return "::1" if protocol == "IPv6" else "127.0.0.1"


def _probe_command(command: proto.CommandInfo, target: Target, timeout: float,
                   processes: _Processes) -> Result:
    argv = (["/bin/sh", "-c", command.value] if command.shell
            else [command.value, *command.arguments[1:]])
    env = {**target.environment, **command.environment}
    switch: dict[str, Any] = {}
    try:
        account = cz._account(target.user)      # the task's user when the agent is root
        if account is not None:
            switch = {"user": account.pw_uid, "group": account.pw_gid,
                      "extra_groups": os.getgrouplist(account.pw_name, account.pw_gid)}
        proc = subprocess.Popen(argv, cwd=target.sandbox, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                close_fds=True, start_new_session=True, **switch)
    except (OSError, cz.LaunchError) as error:
        return Result(False, f"command could not start: {error}")
    processes.add(proc)
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        _killpg(proc.pid)
        proc.wait()
        return Result(False, f"command timed out after {timeout:g}s")
    finally:
        processes.discard(proc)
    return Result(code == 0, f"command exited with status {code}")


def _probe_http(check: proto.HTTPCheckInfo, timeout: float) -> Result:
    host = _host(check.protocol)
    url = f"{check.scheme}://{host}:{check.port}{check.path}"
    if check.scheme == "https":
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            host, check.port, timeout=timeout, context=ssl._create_unverified_context())
    else:
        connection = http.client.HTTPConnection(host, check.port, timeout=timeout)
    try:
        connection.request("GET", check.path, headers={"User-Agent": USER_AGENT})
        status = connection.getresponse().status
    except (OSError, http.client.HTTPException) as error:
        return Result(False, f"HTTP GET {url} failed: {str(error) or type(error).__name__}")
    finally:
        connection.close()
    ok = status in check.statuses if check.statuses else 200 <= status <= 399
    return Result(ok, f"HTTP GET {url} returned {status}")


def _probe_tcp(check: proto.TCPCheckInfo, timeout: float) -> Result:
    address = (_host(check.protocol), check.port)
    try:
        socket.create_connection(address, timeout=timeout).close()
    except OSError as error:
        return Result(False, f"TCP connection to {address[0]}:{address[1]} failed: {error}")
    return Result(True, f"TCP connection to {address[0]}:{address[1]} succeeded")


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# ---------------------------------------------------------------------------------------------
# The shell: timers on the agent's loop, probes on a pool


@dataclass(eq=False)
class _Checker:
    check: proto.HealthCheck
    target: Target
    on_verdict: Callable[[Verdict], None]
    state: HealthState
    timer: Optional[Timer] = None


class HealthChecks:
    """The health checks of an agent's tasks, keyed by container id. Loop thread only."""

    def __init__(self, loop: EventLoop, registry: Registry, workers: int = 8,
                 pool: Executor | None = None) -> None:
        self.loop = loop
        # A probe waits at most its timeout; more tasks than workers only delay their checks.
        self._pool = pool or ThreadPoolExecutor(workers, thread_name_prefix="health")
        self._processes = _Processes()
        self._checkers: dict[str, _Checker] = {}
        self._run = registry.counter("health_checks_total", "Health checks run")
        self._failed = registry.counter("health_checks_failed_total", "Health checks failed")

    def start(self, container_id: str, check: proto.HealthCheck, target: Target,
              on_verdict: Callable[[Verdict], None], running_for: float = 0.0) -> None:
        """Check the task every interval after its delay. `running_for`: how long the task has
        run already (a task adopted after an agent restart), taken off the delay and the grace."""
        self.stop(container_id)
        now = self.loop.clock.monotonic()
        checker = _Checker(check, target, on_verdict, HealthState(since=now - running_for))
        self._checkers[container_id] = checker
        self._schedule(container_id, checker, max(0.0, check.delay_seconds - running_for))

    def stop(self, container_id: str) -> None:
        """No more checks for the task; a probe in flight is ignored when it answers."""
        checker = self._checkers.pop(container_id, None)
        if checker is not None and checker.timer is not None:
            checker.timer.cancel()

    def close(self) -> None:
        for container_id in list(self._checkers):
            self.stop(container_id)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._processes.kill_all()

    def __len__(self) -> int:
        return len(self._checkers)

    def _schedule(self, container_id: str, checker: _Checker, delay: float) -> None:
        checker.timer = self.loop.call_later(delay, lambda: self._probe(container_id, checker))

    def _probe(self, container_id: str, checker: _Checker) -> None:
        checker.timer = None
        if self._checkers.get(container_id) is not checker:
            return
        future = self._pool.submit(probe, checker.check, checker.target, self._processes)
        future.add_done_callback(lambda done: self.loop.call_soon_threadsafe(
            lambda: self._on_result(container_id, checker, done)))

    def _on_result(self, container_id: str, checker: _Checker, done: Future) -> None:
        if self._checkers.get(container_id) is not checker:
            return      # stopped (or restarted) while the probe ran
        try:
            result = done.result()
        except Exception as error:   # a bug in a probe is a failed check, not a dead checker
            result = Result(False, f"health check raised {error!r}")
        self._run.inc()
        if not result.ok:
            self._failed.inc()
        checker.state, verdict = judge(checker.state, checker.check, result.ok,
                                       self.loop.clock.monotonic())
        if verdict.kill:
            self.stop(container_id)
        else:
            self._schedule(container_id, checker, checker.check.interval_seconds)
        if verdict.healthy is not None or verdict.kill:
            log.info("task health changed", container_id=container_id,
                     healthy=checker.state.healthy, failures=verdict.failures, kill=verdict.kill,
                     detail=result.detail)
            checker.on_verdict(verdict)
