"""Reliable status updates: per task, in order, one outstanding at a time, retried with
backoff until the framework acknowledges (at-least-once, as Mesos's status update manager).

Pure bookkeeping: the daemon asks what to send now (`enqueue`, `acknowledge`, `due`) and
sends it. Times are monotonic seconds passed in by the caller. The daemon checkpoints what
`pending()` returns; a restarted agent puts it back with `restore()` and sends the heads again
once it has re-registered (`resend_all`).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Optional

from meseta import proto


@dataclass(slots=True)
class Stream:
    framework_id: str
    task_id: str
    pending: deque = field(default_factory=deque)     # of proto.TaskStatus, head = in flight
    next_retry: float = 0.0
    interval: float = 0.0


class UpdateManager:
    def __init__(self, retry_min: float = 10.0, retry_max: float = 600.0) -> None:
        self.retry_min = retry_min
        self.retry_max = retry_max
        self.streams: dict[tuple[str, str], Stream] = {}

    def enqueue(self, framework_id: str, status: proto.TaskStatus, now: float) -> Optional[proto.StatusUpdate]:
        """Queue an update; returns the message to send now if it became the head."""
        key = (framework_id, status.task_id)
        stream = self.streams.get(key)
        if stream is None:
            stream = self.streams[key] = Stream(framework_id, status.task_id)
        stream.pending.append(status)
        if len(stream.pending) == 1:
            return self._send_head(stream, now)
        return None

    def acknowledge(self, framework_id: str, task_id: str, uuid: bytes, now: float
                    ) -> tuple[bool, Optional[proto.StatusUpdate]]:
        """(matched, next message to send). A stale or unknown uuid matches nothing."""
        stream = self.streams.get((framework_id, task_id))
        if stream is None or not stream.pending or stream.pending[0].uuid != uuid:
            return False, None
        head = stream.pending.popleft()
        if head.state in proto.TERMINAL_STATES and not stream.pending:
            del self.streams[(framework_id, task_id)]
            return True, None
        if stream.pending:
            return True, self._send_head(stream, now)
        return True, None

    def due(self, now: float) -> list[proto.StatusUpdate]:
        """Heads whose retry time has come; their backoff doubles up to retry_max."""
        out = []
        for stream in self.streams.values():
            if stream.pending and now >= stream.next_retry:
                stream.interval = min(self.retry_max, stream.interval * 2)
                stream.next_retry = now + stream.interval
                out.append(self._message(stream))
        return out

    def resend_all(self, now: float) -> list[proto.StatusUpdate]:
        """After (re)registering with a master: every head again, backoff reset."""
        return [self._send_head(stream, now) for stream in self.streams.values() if stream.pending]

    def restore(self, framework_id: str, statuses: list[proto.TaskStatus]) -> None:
        """Queue checkpointed updates, oldest first, without sending: `resend_all` does that."""
        for status in statuses:
            key = (framework_id, status.task_id)
            stream = self.streams.get(key)
            if stream is None:
                stream = self.streams[key] = Stream(framework_id, status.task_id)
            stream.pending.append(status)

    def pending(self, framework_id: str, task_id: str) -> list[proto.TaskStatus]:
        """The task's unacknowledged updates, oldest (in flight) first."""
        stream = self.streams.get((framework_id, task_id))
        return list(stream.pending) if stream else []

    def forget_framework(self, framework_id: str) -> None:
        for key in [k for k in self.streams if k[0] == framework_id]:
            del self.streams[key]

    def pending_count(self) -> int:
        return sum(len(s.pending) for s in self.streams.values())

    def _send_head(self, stream: Stream, now: float) -> proto.StatusUpdate:
        stream.interval = self.retry_min
        stream.next_retry = now + self.retry_min
        return self._message(stream)

    @staticmethod
    def _message(stream: Stream) -> proto.StatusUpdate:
        head = stream.pending[0]
        return proto.StatusUpdate(framework_id=stream.framework_id, status=head,
                                  latest_state=stream.pending[-1].state)
