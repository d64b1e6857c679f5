"""ZeroMQ transport: a ROUTER on the master, one DEALER per agent or framework.

Frames are single msgpack messages (see meseta.proto). Oversized frames and frames that do not
decode are counted, logged and dropped — a peer can never crash the receiver. Heartbeats and
re-registration are the business of the daemons; this module moves bytes and says what it saw.
"""
from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Callable, Iterator

import zmq

from meseta import proto
from meseta.log import get_logger

log = get_logger("meseta.transport")

DEFAULT_MAX_FRAME = 4 * 1024 * 1024


@dataclass
class DropCounters:
    oversized: int = 0
    undecodable: int = 0

    def total(self) -> int:
        return self.oversized + self.undecodable


def _context() -> zmq.Context:
    return zmq.Context.instance()


def _tune(sock: zmq.Socket, max_frame: int) -> None:
    sock.setsockopt(zmq.LINGER, 0)
    # Hard cap far above the soft limit: zmq silently disconnects peers above it, so the
    # soft limit below is what normally applies (and is counted and logged).
    sock.setsockopt(zmq.MAXMSGSIZE, max_frame * 4)
    sock.setsockopt(zmq.SNDHWM, 100_000)
    sock.setsockopt(zmq.RCVHWM, 100_000)
    sock.setsockopt(zmq.TCP_KEEPALIVE, 1)


class Router:
    """Master side. `receive()` yields (peer, message | ProtocolError) without blocking."""

    def __init__(self, endpoint: str, allowed: tuple[type, ...], max_frame: int = DEFAULT_MAX_FRAME,
                 on_drop: Callable[[str, str], None] | None = None) -> None:
        self.max_frame = max_frame
        self.allowed = allowed
        self.drops = DropCounters()
        self._on_drop = on_drop
        self.socket = _context().socket(zmq.ROUTER)
        _tune(self.socket, max_frame)
        self.socket.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.socket.bind(endpoint)
        self.endpoint = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)

    @property
    def port(self) -> int:
        return int(self.endpoint.rsplit(":", 1)[1])

    def receive(self, budget: int = 1000) -> Iterator[tuple[bytes, proto.Message | proto.ProtocolError]]:
        for _ in range(budget):
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                return
            if len(frames) != 2:
                self._drop("undecodable", frames[0] if frames else b"?",
                           f"expected one body frame, got {len(frames) - 1}")
                continue
            peer, body = frames
            if len(body) > self.max_frame:
                self._drop("oversized", peer, f"frame of {len(body)} bytes exceeds {self.max_frame}")
                yield peer, proto.ProtocolError(f"frame of {len(body)} bytes exceeds the limit of {self.max_frame}")
                continue
            try:
                yield peer, proto.decode(body, self.allowed)
            except proto.ProtocolError as exc:
                self._drop("undecodable", peer, str(exc))
                yield peer, exc

    def send(self, peer: bytes, message: proto.Message) -> None:
        try:
            self.socket.send_multipart([peer, proto.encode(message)], zmq.NOBLOCK)
        except zmq.Again:
            log.warning("send queue full, message dropped", peer=peer.hex(), type=message.TYPE)

    def _drop(self, kind: str, peer: bytes, why: str) -> None:
        setattr(self.drops, kind, getattr(self.drops, kind) + 1)
        log.warning("dropped frame", kind=kind, peer=peer.hex(), reason=why)
        if self._on_drop:
            self._on_drop(kind, why)

    def close(self) -> None:
        self.socket.close(0)


class Dealer:
    """Agent / framework side: one connection to the master's ROUTER.

    A fresh identity per connection, so the master can tell a reconnect from a stale peer.
    """

    def __init__(self, endpoint: str, allowed: tuple[type, ...], max_frame: int = DEFAULT_MAX_FRAME,
                 context: zmq.Context | None = None) -> None:
        self.endpoint = endpoint
        self.allowed = allowed
        self.max_frame = max_frame
        self.drops = DropCounters()
        self.socket = (context or _context()).socket(zmq.DEALER)
        _tune(self.socket, max_frame)
        self.socket.setsockopt(zmq.IDENTITY, uuid.uuid4().bytes)
        self.socket.setsockopt(zmq.RECONNECT_IVL, 100)
        self.socket.setsockopt(zmq.RECONNECT_IVL_MAX, 5000)
        self.socket.connect(endpoint)

    def receive(self, budget: int = 1000) -> Iterator[proto.Message]:
        for _ in range(budget):
            try:
                body = self.socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(body) > self.max_frame:
                self.drops.oversized += 1
                log.warning("dropped frame", kind="oversized", size=len(body))
                continue
            try:
                yield proto.decode(body, self.allowed)
            except proto.ProtocolError as exc:
                self.drops.undecodable += 1
                log.warning("dropped frame", kind="undecodable", reason=str(exc))

    def send(self, message: proto.Message) -> None:
        try:
            self.socket.send(proto.encode(message), zmq.NOBLOCK)
        except zmq.Again:
            log.warning("send queue full, message dropped", type=message.TYPE)

    def close(self) -> None:
        self.socket.close(0)


def backoff(attempt: int, base: float = 0.1, cap: float = 10.0) -> float:
    """Full-jitter exponential backoff for reconnects."""
    ceiling = min(cap, base * (2 ** min(attempt, 20)))
    return ceiling * (0.5 + int.from_bytes(os.urandom(2), "big") / 65535 / 2)
