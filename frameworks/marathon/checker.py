"""Runs Marathon-level health checks (HTTP, HTTPS, TCP) and readiness checks against instances;
the IO side of health.py and readiness.py. Results go to callbacks, from a worker thread: the
service hands them to its loop (`loop.call_soon_threadsafe`), where the trackers judge them.

    checker = HealthChecker(on_health, on_ready, clock)
    checker.watch(instance, app)    # once the instance is TASK_RUNNING
    checker.unwatch(instance_id)    # once it is killed or gone
    checker.stop()

    on_health(instance_id, check_index, ok, cause, checked_at)   ok None: ignored (1xx)
    on_ready(instance_id, {"status", "contentType", "body"})     status None: no answer

What is checked, and when:
- HTTP(S): GET <scheme>://<host>:<port><path>; healthy iff 200-399 within timeoutSeconds; a 1xx is
  ignored with ignoreHttp1xx, else a failure; HTTPS does not verify the certificate. TCP: a
  connection within timeoutSeconds. COMMAND and MESOS_* checks run on the agent (they arrive as
  TaskStatus.healthy) and are skipped here.
- readiness: GET the readiness check's port (`portName`) and path every intervalSeconds until the
  status is one of httpStatusCodesForReady; then that instance is not checked for it again.
- the port: `port`, else `portIndex` (`portName` for readiness) into the app's port definitions
  (host networking) or port mappings: a mapping with a hostPort is checked at the agent's host
  and that port, one without (container networking) at the task's IP and its containerPort.
- timers: one per (instance, check). The first check runs `first_check` (1 s, or the interval
  when shorter) after `watch`, plus a jitter below that, so that instances watched together (a
  new leader watches every instance) do not stay in step; then every intervalSeconds. Marathon
  waits min(interval, 5 s), and users waited for deployments (issue #4028): a task that is up is
  seen at once. A check still running when its next tick comes skips that tick.
- workers: a pool of 32 threads. The timeout counts from when a worker starts the check, not
  from when it was due: a backlog (the leader under load) delays checks instead of failing them,
  which is how Marathon ended up killing healthy tasks (#3317). `stats()` counts skipped ticks.
"""

from __future__ import annotations

import heapq
import http.client
import itertools
import random
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

from meseta.clock import Clock
from meseta.frameworks.marathon.app import AppDefinition
from meseta.frameworks.marathon.health import MARATHON_PROTOCOLS
from meseta.frameworks.marathon.instances import Instance
from meseta.frameworks.marathon.readiness import is_ready_response
from meseta.log import get_logger

__all__ = ["HealthChecker", "check_address", "probe_health", "fetch", "WORKERS",
           "FIRST_CHECK_SECONDS"]

log = get_logger("meseta.marathon.checker")

WORKERS = 32
FIRST_CHECK_SECONDS = 1.0
MAX_BODY = 1 << 20          # readiness bodies kept up to 1 MiB
_MAX_WAIT = 1.0             # the scheduler looks at the clock at least this often

OnHealth = Callable[[str, int, "bool | None", str, float], None]
OnReady = Callable[[str, dict[str, Any]], None]


# -- what to check: pure ---------------------------------------------------------------------------

def check_address(instance: Instance, app: AppDefinition,
                  check: dict[str, Any]) -> tuple[str, int] | None:
    """(host, port) a health or readiness check of `instance` goes to; None if it has none."""
    if "port" in check:
        return instance.host, int(check["port"])
    host_mode = app.network_mode == "host"
    ports = app.port_definitions if host_mode else (app.container or {}).get("portMappings", [])
    if "portName" in check:
        index = next((i for i, p in enumerate(ports) if p.get("name") == check["portName"]), None)
    else:
        index = check.get("portIndex", 0)
    if index is None or not 0 <= index < len(ports):
        return None
    if not host_mode and "hostPort" not in ports[index]:
        ip, port = instance.ip_address, ports[index].get("containerPort", 0)
        return (ip, port) if ip and port else None
    position = index if host_mode else sum(1 for p in ports[:index] if "hostPort" in p)
    if position >= len(instance.host_ports):
        return None
    return instance.host, instance.host_ports[position]


# -- probes: blocking, run on a worker -----------------------------------------------------------

def probe_health(check: dict[str, Any], address: tuple[str, int]) -> tuple[bool | None, str]:
    """(ok, cause) of one health check; ok None = ignore the result."""
    timeout = float(check.get("timeoutSeconds", 20))
    if check.get("protocol", "HTTP") == "TCP":
        try:
            socket.create_connection(address, timeout=timeout).close()
        except OSError as exc:
            return False, _describe(exc, timeout)
        return True, ""
    try:
        status, _, _ = fetch(check, address, read_body=False)
    except (OSError, http.client.HTTPException) as exc:
        return False, _describe(exc, timeout)
    if 200 <= status < 400:
        return True, ""
    cause = f"HTTP request returned status code: {status}"
    if 100 <= status < 200 and check.get("ignoreHttp1xx"):
        return None, cause
    return False, cause


def fetch(check: dict[str, Any], address: tuple[str, int],
          read_body: bool = True) -> tuple[int, str | None, str | None]:
    """GET the check's path: (status, content type, body). The whole exchange gets
    timeoutSeconds; raises OSError (socket.timeout included) or HTTPException."""
    timeout = float(check.get("timeoutSeconds", 20))
    deadline = time.monotonic() + timeout
    host, port = address
    if check.get("protocol") == "HTTPS":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            host, port, timeout=timeout, context=_UNVERIFIED)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        path = check.get("path") or "/"
        conn.request("GET", path if path.startswith("/") else "/" + path,
                     headers={"User-Agent": "meseta-marathon"})
        _remaining(conn, deadline)
        response = conn.getresponse()
        body = None
        if read_body:
            _remaining(conn, deadline)
            body = response.read(MAX_BODY).decode("utf-8", "replace")
        if time.monotonic() > deadline:
            raise socket.timeout("timed out")
        return response.status, response.getheader("Content-Type"), body
    finally:
        conn.close()


def _remaining(conn: http.client.HTTPConnection, deadline: float) -> None:
    left = deadline - time.monotonic()
    if left <= 0:
        raise socket.timeout("timed out")
    if conn.sock is not None:
        conn.sock.settimeout(left)


def _unverified_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


_UNVERIFIED = _unverified_context()


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"timed out after {timeout:g}s"
    return str(exc) or type(exc).__name__


# -- scheduling ----------------------------------------------------------------------------------

@dataclass(eq=False)
class _Job:
    instance_id: str
    index: int                    # health check index; -1 for the readiness check
    check: dict[str, Any]
    address: tuple[str, int] | None
    interval: float
    due: float
    busy: bool = False
    cancelled: bool = False

    @property
    def readiness(self) -> bool:
        return self.index < 0


class HealthChecker:
    def __init__(self, on_health: OnHealth, on_ready: OnReady, clock: Clock | None = None, *,
                 workers: int = WORKERS, first_check: float = FIRST_CHECK_SECONDS,
                 rng: random.Random | None = None) -> None:
        self.on_health = on_health
        self.on_ready = on_ready
        self.clock = clock or Clock()
        self.first_check = first_check
        self.rng = rng or random.Random()
        self.skipped = 0
        self._cond = threading.Condition()
        self._jobs: dict[str, list[_Job]] = {}
        self._heap: list[tuple[float, int, _Job]] = []
        self._seq = itertools.count()
        self._stopped = False
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="marathon-check")
        self._thread = threading.Thread(target=self._schedule, name="marathon-checker",
                                        daemon=True)
        self._thread.start()

    def watch(self, instance: Instance, app: AppDefinition) -> None:
        """Check `instance` with `app`'s Marathon-level health checks and its readiness check
        (again from the start if it was watched already)."""
        now = self.clock.monotonic()
        jobs = [self._job(instance, app, i, c, now) for i, c in enumerate(app.health_checks)
                if c.get("protocol", "HTTP") in MARATHON_PROTOCOLS]
        jobs += [self._job(instance, app, -1, c, now) for c in app.readiness_checks[:1]]
        with self._cond:
            if self._stopped:
                return
            self._cancel(instance.instance_id)
            if jobs:
                self._jobs[instance.instance_id] = jobs
                for job in jobs:
                    heapq.heappush(self._heap, (job.due, next(self._seq), job))
                self._cond.notify()

    def unwatch(self, instance_id: str) -> None:
        """No more checks of it. A check under way is not reported, unless it was reporting
        already: a late result of an instance the caller forgot must be harmless."""
        with self._cond:
            self._cancel(instance_id)

    def watched(self) -> set[str]:
        with self._cond:
            return set(self._jobs)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            for instance_id in list(self._jobs):
                self._cancel(instance_id)
            self._cond.notify()
        self._thread.join(5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def stats(self) -> dict[str, float]:
        with self._cond:
            return {"marathon/checker/instances": float(len(self._jobs)),
                    "marathon/checker/running": float(sum(
                        j.busy for jobs in self._jobs.values() for j in jobs)),
                    "marathon/checker/skipped": float(self.skipped)}

    def _job(self, instance: Instance, app: AppDefinition, index: int, check: dict[str, Any],
             now: float) -> _Job:
        interval = float(check.get("intervalSeconds", 60))
        first = min(interval, self.first_check)
        return _Job(instance.instance_id, index, check, check_address(instance, app, check),
                    interval, now + first + self.rng.uniform(0, first))

    def _cancel(self, instance_id: str) -> None:
        for job in self._jobs.pop(instance_id, ()):
            job.cancelled = True     # the heap drops it when it comes up

    def _schedule(self) -> None:
        with self._cond:
            while not self._stopped:
                now = self.clock.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    _, _, job = heapq.heappop(self._heap)
                    if job.cancelled:
                        continue
                    # every interval from the first check on; after a stall, not a burst
                    job.due = max(job.due + job.interval, now)
                    heapq.heappush(self._heap, (job.due, next(self._seq), job))
                    if job.busy:
                        self.skipped += 1
                        continue
                    job.busy = True
                    self._pool.submit(self._run, job)
                wait = self._heap[0][0] - now if self._heap else _MAX_WAIT
                self._cond.wait(min(max(wait, 0.0), _MAX_WAIT))

    def _run(self, job: _Job) -> None:
        try:
            if job.readiness:
                self._ready(job)
            else:
                self._health(job)
        except Exception:
            log.exception("check failed to run", instance=job.instance_id, check=job.index)
        finally:
            with self._cond:
                job.busy = False

    def _health(self, job: _Job) -> None:
        if job.address is None:
            ok, cause = False, "the instance has no address for this check's port"
        else:
            ok, cause = probe_health(job.check, job.address)
        if not self._live(job):
            return
        self.on_health(job.instance_id, job.index, ok, cause, self.clock.time())

    def _ready(self, job: _Job) -> None:
        response: dict[str, Any] = {"status": None, "contentType": None, "body": None}
        if job.address is not None:
            try:
                status, content_type, body = fetch(job.check, job.address)
                response = {"status": status, "contentType": content_type, "body": body}
            except (OSError, http.client.HTTPException) as exc:
                log.debug("readiness check got no answer", instance=job.instance_id,
                          error=_describe(exc, float(job.check.get("timeoutSeconds", 10))))
        with self._cond:
            if job.cancelled or self._stopped:
                return
            if is_ready_response(job.check, response["status"]):
                job.cancelled = True     # ready is final: no more readiness checks
        self.on_ready(job.instance_id, response)

    def _live(self, job: _Job) -> bool:
        with self._cond:
            return not job.cancelled and not self._stopped
