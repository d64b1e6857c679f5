"""Marathon's event bus: what the service publishes goes to every event-stream client's bounded
queue and, optionally, to a ZeroMQ PUB (reference marathon.md §1.7 and §6; DESIGN "Event bus").

    bus = EventBus(capacity=1024, publisher=Publisher("tcp://127.0.0.1:*"))
    service.listeners.append(bus.publish)                   # the service's loop publishes
    sub = bus.subscribe({"status_update_event"}, "10.0.0.7")  # an HTTP thread, per client
    sub.take(timeout=15.0)    # queued SSE frames, joined; b"" when none came; StreamClosed at the end
    bus.unsubscribe(sub)      # the client left: event_stream_detached
    bus.close_all()           # leadership lost: every stream ends

`publish`, in order: serialise the event once into one SSE frame (`event: <type>\\ndata: <json>\\n\\n`)
shared by every queue; offer it to each subscription that wants the type; send it on the PUB
(topic = eventType, so a SUB can filter by prefix). That is O(clients) and never waits for a
client. A client whose queue already holds `capacity` frames (Marathon's
`--event_stream_max_outstanding_messages`) is dropped, as Marathon 1.5+ does: its subscription
is closed and marked overflowed, its stream ends, and the bus tells the others
(`event_stream_detached`). Nobody else loses an event because of a slow client.

Threads: the service's loop publishes; HTTP threads subscribe, take and unsubscribe (and so
publish `event_stream_attached` / `event_stream_detached`). One lock orders every publish, so
all clients see one order and the ZeroMQ socket is used by one thread at a time; each
subscription has its own condition, waited on only by its reader.

ZeroMQ followers get the publisher's epoch and sequence (`meseta.bus`): on a gap or a new epoch
they resync from `GET /v2/apps?embed=apps.tasks`. The epoch changes when leadership is lost.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from typing import Any, Collection

from meseta.bus import Publisher
from meseta.clock import Clock
from meseta.frameworks.marathon import events
from meseta.log import get_logger

__all__ = ["EventBus", "Subscription", "StreamClosed", "DEFAULT_CAPACITY", "sse_frame"]

log = get_logger("meseta.marathon.events")

DEFAULT_CAPACITY = 1024     # Marathon's --event_stream_max_outstanding_messages


class StreamClosed(Exception):
    """The subscription has ended: its client overflowed or left, or leadership was lost."""


def sse_frame(event: dict[str, Any]) -> bytes:
    """One Server-Sent Events frame; compact JSON has no newline, so `data:` is one line."""
    data = json.dumps(event, separators=(",", ":"))
    return f"event: {event['eventType']}\ndata: {data}\n\n".encode()


class Subscription:
    """One client's queue of SSE frames. `event_types` None means every type."""

    def __init__(self, event_types: frozenset[str] | None, remote_address: str,
                 capacity: int) -> None:
        self.event_types = event_types
        self.remote_address = remote_address
        self.capacity = capacity
        self.closed = False
        self.overflowed = False
        self._frames: deque[bytes] = deque()
        self._ready = threading.Condition()

    def wants(self, event_type: str) -> bool:
        return self.event_types is None or event_type in self.event_types

    def take(self, timeout: float) -> bytes:
        """Every queued frame, oldest first, as one chunk; b"" when none came within `timeout`
        seconds. Raises StreamClosed once the subscription is closed (what was queued then is
        dropped: the client is too slow, gone, or talking to a former leader)."""
        with self._ready:
            if not self._frames and not self.closed and timeout > 0:
                self._ready.wait(timeout)
            if self.closed:
                raise StreamClosed(self.remote_address)
            chunk = b"".join(self._frames)
            self._frames.clear()
            return chunk

    def _offer(self, frame: bytes) -> bool:
        """Queue `frame`; False when the queue is full (the bus then drops this client)."""
        with self._ready:
            if self.closed:
                return True
            if len(self._frames) >= self.capacity:
                return False
            self._frames.append(frame)
            self._ready.notify()
            return True

    def _close(self, overflowed: bool = False) -> None:
        with self._ready:
            self.closed = True
            self.overflowed = self.overflowed or overflowed
            self._frames.clear()
            self._ready.notify_all()


class EventBus:
    def __init__(self, capacity: int = DEFAULT_CAPACITY, publisher: Publisher | None = None,
                 clock: Clock | None = None) -> None:
        if capacity < 1:
            raise ValueError("an event stream needs room for at least one message")
        self.capacity = capacity
        self.publisher = publisher
        self.clock = clock or Clock()
        self._lock = threading.Lock()
        self._subscriptions: list[Subscription] = []

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        with self._lock:
            return tuple(self._subscriptions)

    def publish(self, event: dict[str, Any]) -> None:
        """Send `event` (it has `eventType` and `timestamp`) to every client that wants it and
        to the PUB. Safe from any thread; never blocks on a client."""
        with self._lock:
            self._publish(event)

    def subscribe(self, event_types: Collection[str] | None, remote_address: str) -> Subscription:
        """A new client's subscription (empty or None `event_types`: all types). The client's
        own `event_stream_attached` is the first frame it gets, if its filter lets it through."""
        sub = Subscription(frozenset(event_types) if event_types else None, remote_address,
                           self.capacity)
        with self._lock:
            self._subscriptions.append(sub)
            self._publish(events.event("event_stream_attached", self.clock.time(),
                                       remoteAddress=remote_address))
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """The client left (or its stream ended); idempotent."""
        with self._lock:
            if sub not in self._subscriptions:
                return
            self._subscriptions.remove(sub)
            sub._close()
            self._publish(self._detached(sub))

    def close_all(self) -> None:
        """Leadership lost: end every stream. Followers of the PUB see a new epoch next."""
        with self._lock:
            subs, self._subscriptions = self._subscriptions, []
            for sub in subs:
                sub._close()
            if self.publisher is not None:
                self.publisher.new_epoch()
        if subs:
            log.info("event streams closed", streams=len(subs))

    def subscriber_info(self) -> dict[str, Any] | None:
        """Where the PUB is, for `/v2/info`: under `event_subscriber`, the one key of that
        document marathon-python (0.13) lets us add (Marathon up to 1.4 described its HTTP
        callbacks there). None without a PUB, as Marathon without `--event_subscriber`."""
        if self.publisher is None:
            return None
        return {"type": "zeromq", "http_endpoints": [self.publisher.endpoint]}

    # -- under the lock ------------------------------------------------------------------------

    def _publish(self, event: dict[str, Any]) -> None:
        pending = [event]
        while pending:
            event = pending.pop(0)
            event_type = event["eventType"]
            frame: bytes | None = None
            for sub in list(self._subscriptions):
                if not sub.wants(event_type):
                    continue
                if frame is None:
                    frame = sse_frame(event)
                if not sub._offer(frame):
                    pending.append(self._drop(sub))
            if self.publisher is not None:
                self.publisher.publish(event_type, event)

    def _drop(self, sub: Subscription) -> dict[str, Any]:
        self._subscriptions.remove(sub)
        sub._close(overflowed=True)
        log.warning("event stream client too slow, disconnected",
                    remote_address=sub.remote_address, outstanding=self.capacity)
        return self._detached(sub)

    def _detached(self, sub: Subscription) -> dict[str, Any]:
        return events.event("event_stream_detached", self.clock.time(),
                            remoteAddress=sub.remote_address)
