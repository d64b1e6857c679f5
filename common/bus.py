"""The event bus: snapshot + sequenced deltas (ZeroMQ PUB).

Every event carries the publisher's `epoch` (new each time the daemon starts or gains
leadership) and a `seq` that grows by one. A subscriber takes a snapshot that names the
(epoch, seq) it reflects, applies events with a higher seq, and re-snapshots on any gap or
epoch change — so a lost message costs a resync, never a stale answer.

Frame layout: [topic (the event kind, for SUB prefix filtering), msgpack map
{"epoch", "seq", "kind", "ts", "payload"}].
"""
from __future__ import annotations

import time
import uuid
from typing import Any, Callable, Optional

import msgpack
import zmq


class Publisher:
    def __init__(self, endpoint: str) -> None:
        self.socket = zmq.Context.instance().socket(zmq.PUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.SNDHWM, 100_000)
        self.socket.bind(endpoint)
        self.endpoint = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.epoch = uuid.uuid4().hex
        self.seq = 0

    def new_epoch(self) -> None:
        """A new leadership term: followers see the epoch change and resync."""
        self.epoch = uuid.uuid4().hex
        self.seq = 0

    def publish(self, kind: str, payload: dict[str, Any]) -> None:
        self.seq += 1
        body = {"epoch": self.epoch, "seq": self.seq, "kind": kind, "ts": time.time(),
                "payload": payload}
        try:
            self.socket.send_multipart([kind.encode(), msgpack.packb(body, use_bin_type=True)],
                                       zmq.NOBLOCK)
        except zmq.Again:
            pass    # subscribers detect the gap by seq and resync

    def position(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "epoch": self.epoch, "seq": self.seq}

    def close(self) -> None:
        self.socket.close(0)


class Follower:
    """Applies a publisher's events on top of a snapshot, resyncing on gaps.

    `snapshot()` must return (state, epoch, seq); `apply(state, event)` folds one event in.
    Call `on_frame()` for every received frame; it returns the current state.
    """

    def __init__(self, snapshot: Callable[[], tuple[Any, str, int]],
                 apply: Callable[[Any, dict], Any]) -> None:
        self._snapshot = snapshot
        self._apply = apply
        self.state: Any = None
        self.epoch: Optional[str] = None
        self.seq = 0
        self.resyncs = 0

    def resync(self) -> Any:
        self.state, self.epoch, self.seq = self._snapshot()
        self.resyncs += 1
        return self.state

    def on_frame(self, frames: list[bytes]) -> Any:
        event = msgpack.unpackb(frames[-1], raw=False)
        if self.epoch is None or event["epoch"] != self.epoch or event["seq"] > self.seq + 1:
            self.resync()
            if event["epoch"] == self.epoch and event["seq"] == self.seq + 1:
                self.state = self._apply(self.state, event)
                self.seq = event["seq"]
            return self.state
        if event["seq"] <= self.seq:
            return self.state          # already reflected in the snapshot
        self.state = self._apply(self.state, event)
        self.seq = event["seq"]
        return self.state
