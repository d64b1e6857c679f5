"""Follows Marathon for the load balancer: event stream first, then the snapshot, then events.

    follower = MarathonFollower(["http://m1:8080", "http://m2:8080"], on_change)
    follower.start()
    follower.apps          # the current `Apps` (one attribute read; immutable)
    follower.resync()      # take a fresh snapshot (SIGHUP, /_mlb_signal/hup)
    follower.stop()

One thread. Per connection:
  1. `GET /v2/events?event_type=...` with `Accept: text/event-stream` on the first Marathon that
     answers (a standby answers 307 to the leader; the redirect is followed, and the leader's
     address is used for the snapshot too). The stream is open once `event_stream_attached` (or
     any first frame) arrived.
  2. `GET /v2/apps?embed=apps.tasks` — the snapshot.
  3. Every event the stream delivered since it opened is folded in (`Apps.apply`, per key, last
     writer wins, so replaying events the snapshot already reflects is harmless); events that
     change app definitions ask for a new snapshot.
A broken or silent stream (no byte, not even Marathon's keep-alive comment, for `sse_timeout`
seconds) means a reconnect and so a new snapshot: resync on any reconnect, as the issue asks.
Reconnects back off from 0.1 s to `max_backoff` with jitter, cycling through the Marathons; the
one that worked is tried first next time (marathon-lb's sticky failover). A full resync also
runs every `resync_interval` seconds, like marathon-lb's five-minute safety net.

`on_change(reason)` is called after the state changed (from this thread); the daemon's reload
loop coalesces the calls.
"""
from __future__ import annotations

import http.client
import json
import random
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence
from urllib.parse import urlencode, urljoin, urlsplit

from meseta.lb.apps import RELEVANT_EVENTS, Apps
from meseta.log import get_logger

__all__ = ["MarathonFollower", "FollowerStats", "MarathonUnavailable"]

log = get_logger("meseta.lb.follower")

USER_AGENT = "meseta-lb"


class MarathonUnavailable(Exception):
    pass


@dataclass
class FollowerStats:
    events: int = 0
    folded: int = 0
    snapshots: int = 0
    snapshot_errors: int = 0
    reconnects: int = 0
    last_snapshot: float = 0.0          # wall clock
    last_snapshot_seconds: float = 0.0
    connected_to: str = ""


class MarathonFollower:
    def __init__(self, marathons: Sequence[str], on_change: Callable[[str], None], *,
                 sse_timeout: float = 60.0, connect_timeout: float = 3.05,
                 snapshot_timeout: float = 46.0, max_backoff: float = 300.0,
                 resync_interval: float = 300.0) -> None:
        if not marathons:
            raise ValueError("at least one Marathon URL is needed (--marathon)")
        self.marathons = [m.rstrip("/") for m in marathons]
        self.on_change = on_change
        self.sse_timeout = sse_timeout
        self.connect_timeout = connect_timeout
        self.snapshot_timeout = snapshot_timeout
        self.max_backoff = max_backoff
        self.resync_interval = resync_interval
        self.apps = Apps()
        self.ready = threading.Event()         # the first snapshot is in
        self.stats = FollowerStats()
        self._stop = threading.Event()
        self._resync = threading.Event()
        self._conn: Optional[http.client.HTTPConnection] = None
        self._thread: Optional[threading.Thread] = None

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="lb-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._interrupt()
        if self._thread is not None:
            self._thread.join(10)

    def resync(self) -> None:
        """Take a new snapshot soon (the stream is reopened: a snapshot always follows an open)."""
        self._resync.set()
        self._interrupt()

    def _interrupt(self) -> None:
        conn = self._conn
        if conn is not None and conn.sock is not None:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)     # wakes the blocked read with EOF
            except OSError:
                pass

    # -- the loop ---------------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            self._resync.clear()
            try:
                self._follow_once()
                backoff = 0.1                  # the stream ran and ended: reconnect at once
            except (OSError, http.client.HTTPException, MarathonUnavailable, ValueError) as exc:
                if self._stop.is_set():
                    break
                if self._resync.is_set():
                    continue
                self.stats.reconnects += 1
                delay = backoff * (0.5 + random.random() / 2)
                log.warning("marathon event stream lost; reconnecting", reason=str(exc) or type(exc).__name__,
                            retry_in=round(delay, 2))
                self._stop.wait(delay)
                backoff = min(backoff * 1.5 if backoff >= 1 else backoff * 3, self.max_backoff)
            finally:
                self._close()

    def _follow_once(self) -> None:
        base, conn, response = self._open_stream()
        self.stats.connected_to = base
        reader = _SseReader(response)
        # Marathon subscribes the client before it answers 200, so every change after this
        # point is in the stream (buffered by the socket while the snapshot is fetched).
        self._take_snapshot(base)
        deadline = time.monotonic() + self.resync_interval
        while not self._stop.is_set() and not self._resync.is_set():
            if time.monotonic() > deadline:
                self._take_snapshot(base)
                deadline = time.monotonic() + self.resync_interval
            event = reader.next_event()
            if event is None:
                if self._stop.is_set() or self._resync.is_set():
                    return
                raise MarathonUnavailable(f"{base}: the event stream ended")
            if event:
                self._fold(event, base)

    def _fold(self, event: dict[str, Any], base: str) -> None:
        self.stats.events += 1
        kind = event.get("eventType", "")
        if kind not in RELEVANT_EVENTS:
            return
        apps, wanted = self.apps.apply(event)
        if wanted:
            log.debug("snapshot wanted", reason=wanted)
            self._take_snapshot(base)
            return
        if apps is not self.apps:
            self.apps = apps
            self.stats.folded += 1
            self.on_change(kind)

    # -- HTTP -------------------------------------------------------------------------------------

    def _open_stream(self) -> tuple[str, http.client.HTTPConnection, http.client.HTTPResponse]:
        query = urlencode([("plan-format", "light")] + [("event_type", t) for t in sorted(RELEVANT_EVENTS)])
        errors = []
        for base in list(self.marathons):
            url = f"{base}/v2/events?{query}"
            try:
                for _hop in range(4):                       # standby -> leader redirects
                    conn = _connection(url, self.connect_timeout)
                    self._conn = conn
                    conn.request("GET", _path(url), headers={
                        "Accept": "text/event-stream", "User-Agent": USER_AGENT})
                    response = conn.getresponse()
                    if response.status in (301, 302, 303, 307, 308) and response.getheader("Location"):
                        url = urljoin(url, response.getheader("Location"))
                        conn.close()
                        continue
                    if response.status != 200:
                        raise MarathonUnavailable(f"{url}: HTTP {response.status}")
                    conn.sock.settimeout(self.sse_timeout)   # silence this long = a dead link
                    self._prefer(base)
                    split = urlsplit(url)
                    return f"{split.scheme}://{split.netloc}", conn, response
                raise MarathonUnavailable(f"{base}: too many redirects")
            except (OSError, http.client.HTTPException, MarathonUnavailable) as exc:
                self._close()
                errors.append(f"{base}: {exc}")
        raise MarathonUnavailable("; ".join(errors))

    def _prefer(self, base: str) -> None:
        if self.marathons[0] != base:
            self.marathons.remove(base)
            self.marathons.insert(0, base)

    def _take_snapshot(self, base: str) -> None:
        started = time.monotonic()
        try:
            body = _get_json(f"{base}/v2/apps?embed=apps.tasks", self.connect_timeout,
                             self.snapshot_timeout)
        except (OSError, http.client.HTTPException, ValueError, MarathonUnavailable):
            self.stats.snapshot_errors += 1
            raise
        apps = body.get("apps") if isinstance(body, dict) else None
        if not isinstance(apps, list):
            self.stats.snapshot_errors += 1
            raise MarathonUnavailable(f"{base}/v2/apps: no apps list in the answer")
        self.apps = Apps.from_snapshot(apps)
        self.stats.snapshots += 1
        self.stats.last_snapshot = time.time()
        self.stats.last_snapshot_seconds = time.monotonic() - started
        self.ready.set()
        self.on_change("snapshot")

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class _SseReader:
    """Server-Sent Events frames -> Marathon event dicts. A `data:` line may hold several JSON
    documents separated by CRLF (marathon-lb copes with that; so do we). Comments (`:`) are
    Marathon's keep-alives: they reset the socket's silence timer and come out as `{}`."""

    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.response = response
        self.queue: list[dict[str, Any]] = []

    def next_event(self) -> Optional[dict[str, Any]]:
        """The next event; `{}` for a keep-alive; None when the stream ended."""
        data: list[str] = []
        while not self.queue:
            line = self.response.readline()
            if not line:
                return None
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            if text.startswith("data:"):
                data.append(text[5:].lstrip(" "))
            elif text.startswith(":") and not data:
                return {}
            elif text == "" and data:
                for doc in "\n".join(data).split("\r\n"):
                    self._parse(doc)
                data = []
        return self.queue.pop(0)

    def _parse(self, doc: str) -> None:
        try:
            event = json.loads(doc)
        except ValueError:
            log.warning("undecodable event from Marathon", data=doc[:200])
            return
        if isinstance(event, dict):
            self.queue.append(event)


def _connection(url: str, timeout: float) -> http.client.HTTPConnection:
    split = urlsplit(url)
    if split.scheme == "https":
        import ssl
        return http.client.HTTPSConnection(split.hostname, split.port, timeout=timeout,
                                           context=ssl._create_unverified_context())
    if split.scheme != "http" or not split.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    return http.client.HTTPConnection(split.hostname, split.port, timeout=timeout)


def _path(url: str) -> str:
    split = urlsplit(url)
    return (split.path or "/") + (f"?{split.query}" if split.query else "")


def _get_json(url: str, connect_timeout: float, read_timeout: float) -> Any:
    for _hop in range(4):
        conn = _connection(url, connect_timeout)
        try:
            conn.connect()
            conn.sock.settimeout(read_timeout)
            conn.request("GET", _path(url), headers={"Accept": "application/json",
                                                     "User-Agent": USER_AGENT})
            response = conn.getresponse()
            body = response.read()
            if response.status in (301, 302, 303, 307, 308) and response.getheader("Location"):
                url = urljoin(url, response.getheader("Location"))
                continue
            if response.status != 200:
                raise MarathonUnavailable(f"{url}: HTTP {response.status}")
            return json.loads(body)
        finally:
            conn.close()
    raise MarathonUnavailable(f"{url}: too many redirects")
