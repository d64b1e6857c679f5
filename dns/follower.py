"""Keeps the current RecordSet fresh by following the leading master.

    leader (masters list | zk://) --> GET /master/state --> RecordBook --> .records (one assignment)
         \\-> event bus (ZeroMQ SUB) --> bus.Follower --> fold a task into the book | re-fetch

Deltas first: a Meseta master's `task_updated` event carries the task as `/master/state` shows
it (ports, DiscoveryInfo, labels, statuses with their IPs), so the follower puts it into its copy
of the state and folds it into the book (`incremental.RecordBook`: only that task's records are
redone, the result equal to a full `records()` generation) without asking the master anything;
a change that touches no record (STAGING -> STARTING) publishes nothing. A task of a framework
or agent it does not know yet, agents and frameworks coming and going, and masters whose events
carry less (only the task's new state) mark the state stale and take `/master/state` again (a
new book); with those, a task it already holds leaving TASK_RUNNING is still folded in locally.
Fetches are coalesced: one thread owns the SUB socket and the state; it drains every queued
frame, then fetches at most once; events already covered by the snapshot's bus position (epoch,
seq) are skipped. A burst of 1,000 events therefore costs a handful of fetches, never 1,000, and
a lone TASK_RUNNING is served one fetch after its event.

Gaps and epoch changes resync (bus.Follower). The master unreachable: the last good records keep
being served, and the leader is looked for again with a capped backoff. Every `refresh_seconds`
a full refresh runs anyway (the safety net for anything the bus does not carry, such as a new
health label on a task that stays RUNNING). Masters without an event bus (a plain Mesos master)
are simply polled.

Readers (the DNS server, HTTP threads) read `.records` without a lock: the RecordSet is never
mutated once built, and replacing it is one attribute assignment.
"""
from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import zmq

from meseta import detector, proto
from meseta.bus import Follower
from meseta.dns.incremental import RecordBook
from meseta.log import get_logger

log = get_logger("meseta.dns.follower")

TASK_RUNNING = proto.TASK_RUNNING
# Events that can add records or change their targets: take the state again.
FETCH_KINDS = frozenset({"agent_added", "agent_removed", "framework_added", "framework_removed"})
SETTLE_SECONDS = 0.25      # a second snapshot after (re)subscribing: covers the slow joiner
MAX_BACKOFF = 5.0


class FetchError(RuntimeError):
    """The state could not be taken from any master; the text says why."""


@dataclass(frozen=True)
class FollowOptions:
    masters: tuple[str, ...] = ()            # host:port of each master's HTTP API
    zk: str = ""                             # zk://h1:2181,h2:2181/mesos (preferred when set)
    refresh_seconds: float = 60.0            # full refresh, the safety net
    state_timeout: float = 30.0              # one /master/state fetch
    follow_bus: bool = True                  # False: poll only, as Mesos-DNS does


@dataclass
class FollowStats:
    """Counters read by /metrics (plain ints; one writer, the follower thread)."""
    fetches: int = 0
    fetch_errors: int = 0
    events: int = 0
    local_updates: int = 0
    rebuilds: int = 0
    resyncs: int = 0
    last_refresh: float = 0.0                # wall time of the last successful build
    last_build_seconds: float = 0.0
    leader: str = ""
    epoch: str = ""
    seq: int = 0
    event_kinds: dict[str, int] = field(default_factory=dict)


class StateFollower:
    """Owns one thread; `.records` is the current RecordSet (`empty` until the first build).

    `book(state, leader)` makes an `incremental.RecordBook` of a state (the config bound): it
    is made once per snapshot, and task events are folded into it."""

    def __init__(self, options: FollowOptions, book: Callable[[dict, Optional[str]], RecordBook],
                 empty: Any) -> None:
        if not options.masters and not options.zk:
            raise ValueError("give masters (host:port list) or zk (zk://...) to find the master")
        self.options = options
        self._make_book = book
        self._book: Optional[RecordBook] = None  # the records of the state we hold
        self.records: Any = empty
        self.ready = threading.Event()           # set after the first complete build
        self.stats = FollowStats()
        self.on_rebuild: Optional[Callable[[Any], None]] = None   # hook for benchmarks
        self._leader: Optional[proto.MasterInfo] = None
        self._zk_leader: Optional[proto.MasterInfo] = None
        self._leader_changed = False
        self._stopping = False
        self._wake_r, self._wake_w = os.pipe()
        self._thread: Optional[threading.Thread] = None
        self._watch: Any = None
        self._sub: Optional[zmq.Socket] = None
        self._monitor: Optional[zmq.Socket] = None    # the SUB's disconnects: the master gone
        self._sub_endpoint = ""
        self._bus = Follower(self._snapshot, self._apply)
        self._stale = False                      # set by _apply: the state must be fetched
        self._dirty = False                      # set by _apply: the book has new records
        self._tasks: dict[tuple[Any, Any], dict] = {}   # (framework id, task id) -> task in state

    # -- lifecycle (any thread) -----------------------------------------------------------------

    def start(self) -> None:
        if self.options.zk:
            self._watch = detector.watch(self.options.zk, self._on_zk_leader)
        self._thread = threading.Thread(target=self._run, name="dns-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._wake()
        if self._thread:
            self._thread.join(5)
        if self._watch is not None:
            self._watch.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def refresh_now(self) -> None:
        """Ask for a full refresh soon (a leader change, an operator's request)."""
        self._leader_changed = True
        self._wake()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def _on_zk_leader(self, info: Optional[proto.MasterInfo]) -> None:   # a kazoo thread
        self._zk_leader = info
        self.refresh_now()

    # -- the follower thread --------------------------------------------------------------------

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._wake_r, zmq.POLLIN)
        backoff = 0.1
        next_full = 0.0                          # monotonic time of the next full refresh
        settle_at: Optional[float] = None
        try:
            while not self._stopping:
                now = time.monotonic()
                if self._leader_changed:
                    self._leader_changed = False
                    self._leader = None
                    next_full = now
                if settle_at is not None and now >= settle_at:
                    settle_at, next_full = None, now
                if now >= next_full:
                    subscribed = self._sub_endpoint
                    if self._refresh(poller):
                        backoff = 0.1
                        next_full = time.monotonic() + self.options.refresh_seconds
                        if self._sub_endpoint and self._sub_endpoint != subscribed:
                            settle_at = time.monotonic() + SETTLE_SECONDS
                    else:
                        next_full = time.monotonic() + backoff
                        backoff = min(backoff * 2, MAX_BACKOFF, self.options.refresh_seconds)
                deadline = min(next_full, settle_at or next_full)
                timeout_ms = max(0, int((deadline - time.monotonic()) * 1000)) + 1
                ready = dict(poller.poll(timeout_ms))
                if self._wake_r in ready:
                    os.read(self._wake_r, 4096)
                if self._monitor is not None and self._monitor in ready:
                    if self._on_monitor():
                        next_full = time.monotonic()      # look for the leader again
                if self._sub is not None and self._sub in ready:
                    if not self._drain():
                        next_full = time.monotonic()      # the fetch failed: retry with backoff
        except Exception:                        # never die silently: records would go stale
            log.exception("dns follower stopped on an unexpected error")
            raise
        finally:
            self._close_sub(poller)

    def _refresh(self, poller: zmq.Poller) -> bool:
        """Find the leader if unknown, take its state, rebuild, (re)subscribe to its bus."""
        try:
            if self._leader is None:
                self._leader = self._find_leader()
                self.stats.leader = f"{self._leader.ip}:{self._leader.port}"
                log.info("following master", leader=self.stats.leader,
                         publisher=self._leader.publisher or "(none: polling)")
            self._bus.resync()
            self.stats.resyncs = self._bus.resyncs
            self._publish()
        except (FetchError, detector.DetectionError, ValueError) as exc:
            self.stats.fetch_errors += 1
            self._leader = None
            log.warning("cannot refresh DNS records; keeping the last good ones", reason=str(exc),
                        records_age=round(time.time() - self.stats.last_refresh, 1)
                        if self.stats.last_refresh else None)
            return False
        publisher = self._leader.publisher if self.options.follow_bus else ""
        if publisher and self._bus.epoch is not None and publisher != self._sub_endpoint:
            self._subscribe(poller, publisher)
        return True

    def _drain(self) -> bool:
        """Fold in every queued event, publishing the records as soon as one changed them (a
        fold is cheap and the swap one assignment: a long burst must not hold back its first
        records until the queue is empty); then fetch once if any event needed it."""
        self._stale = self._dirty = False
        try:
            while True:
                try:
                    frames = self._sub.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self.stats.events += 1
                resyncs = self._bus.resyncs
                self._bus.on_frame(frames)
                if self._bus.resyncs != resyncs:           # gap or new epoch: a fresh state
                    self._dirty = True
                if self._dirty and not self._stale:        # else the fetch below publishes
                    self._publish()
                    self._dirty = False
            if self._stale:
                self._bus.resync()
                self._dirty = True
            self.stats.resyncs = self._bus.resyncs
            if self._dirty:
                self._publish()
        except FetchError as exc:
            self.stats.fetch_errors += 1
            self._leader = None
            log.warning("cannot refresh DNS records; keeping the last good ones", reason=str(exc))
            return False
        return True

    # -- state: snapshot and events (follower thread) -------------------------------------------

    def _snapshot(self) -> tuple[dict, Optional[str], int]:
        leader = self._leader
        state = self._fetch_state(leader)
        if leader is not None and state.get("leader") != f"master@{leader.ip}:{leader.port}":
            self._leader_changed = True          # a standby redirected us: follow the new bus
        self._tasks = {(framework.get("id"), task.get("id")): task
                       for framework in state.get("frameworks") or ()
                       for task in framework.get("tasks") or ()}
        started = time.perf_counter()
        self._book = self._make_book(state, state.get("leader") or None)
        self.stats.last_build_seconds = time.perf_counter() - started
        bus = (state.get("meseta") or {}).get("event_bus") or {}
        self.stats.epoch, self.stats.seq = bus.get("epoch", ""), int(bus.get("seq", 0))
        return state, bus.get("epoch"), int(bus.get("seq", 0))

    def _apply(self, state: dict, event: dict) -> dict:
        kind = event.get("kind", "")
        self.stats.event_kinds[kind] = self.stats.event_kinds.get(kind, 0) + 1
        self.stats.seq = event.get("seq", self.stats.seq)
        if kind == "task_updated":
            self._apply_task(event.get("payload") or {})
        elif kind in FETCH_KINDS:
            self._stale = True
        return state

    def _apply_task(self, payload: dict) -> None:
        framework_id = payload.get("framework_id")
        if payload.get("task") is not None:      # a Meseta master sends the whole task
            if self._upsert(framework_id, payload["task"]):
                self._fold(framework_id, payload["task"])
            else:
                self._stale = True               # a framework or agent we do not know yet
            return
        new_state = payload.get("state")
        task = self._tasks.get((payload.get("framework_id"), payload.get("task_id")))
        if new_state == TASK_RUNNING:
            if task is None or task.get("state") != TASK_RUNNING:
                self._stale = True               # ports, IPs and labels come with the state
        elif task is not None and task.get("state") == TASK_RUNNING:
            task["state"] = new_state            # leaving RUNNING: its records just go
            self._fold(framework_id, task)

    def _fold(self, framework_id: Optional[str], task: dict) -> None:
        """The task into the book; STAGING -> STARTING, say, changes no record."""
        if self._stale or self._book is None:
            return                               # a fetch is coming: the book is rebuilt anyway
        started = time.perf_counter()
        changed = self._book.upsert_task(framework_id, task)
        if changed is None:
            self._stale = True
        elif changed:
            self.stats.local_updates += 1
            self.stats.last_build_seconds = time.perf_counter() - started
            self._dirty = True

    def _upsert(self, framework_id: Optional[str], task: dict) -> bool:
        """Put the task as the master now shows it into our copy of the state; False when its
        framework or agent is not in that copy (then only a fetch brings them)."""
        state = self._bus.state
        framework = next((f for f in state.get("frameworks") or () if f.get("id") == framework_id),
                         None)
        agents = {a.get("id") for a in state.get("slaves") or ()}
        if framework is None or task.get("slave_id") not in agents:
            return False
        key = (framework_id, task.get("id"))
        known = self._tasks.get(key)
        if known is not None:
            known.clear()
            known.update(task)
        else:
            framework.setdefault("tasks", []).append(task)
            self._tasks[key] = task
        return True

    def _publish(self) -> None:
        records = self._book.records
        self.records = records                   # the one swap readers see
        self.stats.rebuilds += 1
        self.stats.last_refresh = time.time()
        if not self.ready.is_set():
            log.info("first DNS record set built", build_ms=round(self.stats.last_build_seconds * 1000, 2))
            self.ready.set()
        if self.on_rebuild is not None:
            self.on_rebuild(records)

    # -- IO: the leader, its state, its bus -----------------------------------------------------

    def _find_leader(self) -> proto.MasterInfo:
        if self.options.zk:
            info = self._zk_leader or (self._watch.current() if self._watch else None)
            if info is None:
                info = detector.resolve(self.options.zk, self.options.state_timeout)
            return info
        errors = []
        for master in self.options.masters:    # a standby names the leader in /master/info
            try:
                return detector.resolve(master, min(self.options.state_timeout, 5.0))
            except (detector.DetectionError, ValueError) as exc:
                errors.append(str(exc))
        raise FetchError("no master answered: " + "; ".join(errors))

    def _fetch_state(self, leader: Optional[proto.MasterInfo]) -> dict:
        if leader is None:
            raise FetchError("no leading master known")
        url = f"http://{leader.ip}:{leader.port}/master/state"
        request = urllib.request.Request(url, headers={"User-Agent": "Mesos-DNS",
                                                       "Content-Type": "application/json"})
        self.stats.fetches += 1
        try:               # urllib follows a standby's 307 to the leader
            with urllib.request.urlopen(request, timeout=self.options.state_timeout) as response:
                state = json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise FetchError(f"GET {url}: {exc}") from None
        if not isinstance(state, dict) or not state.get("leader"):
            raise FetchError(f"GET {url}: the state names no leader")
        return state

    def _subscribe(self, poller: zmq.Poller, endpoint: str) -> None:
        self._close_sub(poller)
        sub = zmq.Context.instance().socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.RCVHWM, 100_000)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        self._monitor = sub.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        sub.connect(endpoint)
        poller.register(sub, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        self._sub, self._sub_endpoint = sub, endpoint
        log.info("following the master's event bus", publisher=endpoint)

    def _on_monitor(self) -> bool:
        """True when the bus connection dropped: the master stopped or moved."""
        from zmq.utils.monitor import recv_monitor_message
        dropped = False
        while True:
            try:
                event = recv_monitor_message(self._monitor, zmq.NOBLOCK)
            except zmq.Again:
                return dropped
            if event["event"] == zmq.EVENT_DISCONNECTED:
                log.warning("event bus disconnected; looking for the leading master",
                            publisher=self._sub_endpoint)
                self._leader = None
                dropped = True

    def _close_sub(self, poller: zmq.Poller) -> None:
        if self._monitor is not None:
            poller.unregister(self._monitor)
            self._sub.disable_monitor()
            self._monitor.close(0)
            self._monitor = None
        if self._sub is not None:
            poller.unregister(self._sub)
            self._sub.close(0)
            self._sub, self._sub_endpoint = None, ""

