"""A peer's connection to the leading master, shared by agents and SDK frameworks.

    detect the master (meseta.detector) -> DEALER -> first message ("hello")
      -> the owner calls established() on the master's answer
      -> heartbeats every interval; no word from the master within the timeout -> lost
      -> detect again, with backoff

The link runs on its owner's EventLoop thread and calls back on it. The owner decides what
the hello is (register or re-register, subscribe with or without an id) and what an answer
means; the link only keeps the line up.
"""
from __future__ import annotations

from typing import Callable, Optional

from meseta import proto
from meseta.detector import resolve_async, watch
from meseta.log import get_logger
from meseta.loop import EventLoop, Timer
from meseta.transport import Dealer, backoff

log = get_logger("meseta.link")

CHECK_INTERVAL = 0.25


class MasterLink:
    def __init__(self, loop: EventLoop, master: str, allowed: tuple[type, ...],
                 hello: Callable[[], proto.Message], on_message: Callable[[proto.Message], None],
                 on_lost: Callable[[str], None], name: str) -> None:
        self.loop = loop
        self.master = master
        self.allowed = allowed
        self._hello = hello
        self._on_message = on_message
        self._on_lost = on_lost
        self.name = name
        self.master_info: Optional[proto.MasterInfo] = None
        self.established_ = False
        self.dealer: Optional[Dealer] = None
        self._attempt = 0
        self._attempt_timer: Optional[Timer] = None
        self._check_timer: Optional[Timer] = None
        self._last_heard = 0.0
        self._last_sent = 0.0
        self._interval = 1.0
        self._timeout = 5.0
        self._closed = False
        self._watch = None

    @property
    def established(self) -> bool:
        return self.established_

    def start(self) -> None:
        self._check_timer = self.loop.call_every(CHECK_INTERVAL, self._check)
        self.loop.call_soon_threadsafe(self._detect)
        # With ZooKeeper, a leader change is seen at once instead of after missed heartbeats.
        try:
            self._watch = watch(self.master, lambda info: self.loop.call_soon_threadsafe(
                lambda: self._leader_changed(info)))
        except Exception as exc:
            log.warning("cannot watch the leader; relying on heartbeats", reason=str(exc))

    def _leader_changed(self, info: proto.MasterInfo | None) -> None:
        # Only a change away from the master we are talking to matters; while a detection
        # is in flight (no dealer yet) it will find the current leader by itself.
        if self._closed or info is None or self.dealer is None or self.master_info is None:
            return
        if info.router != self.master_info.router:
            why = f"the leader is now {info.hostname}:{info.port}"
            log.warning("connection to the master lost", peer=self.name, reason=why)
            was = self.established_
            self.established_ = False
            if was:
                self._on_lost(why)
            self._attempt = 0
            self._detected(info, "")        # the watch already says where: no new detection

    def established_with(self, heartbeat_interval: float, timeout: float) -> None:
        """The master accepted the hello: heartbeat every interval, give up after timeout."""
        if self._attempt_timer:
            self._attempt_timer.cancel()
        self.established_ = True
        self._attempt = 0
        self._interval = max(0.05, heartbeat_interval)
        self._timeout = max(timeout, 2 * self._interval)
        self._last_heard = self.loop.clock.monotonic()

    def send(self, message: proto.Message) -> bool:
        if self.dealer is None:
            return False
        self.dealer.send(message)
        self._last_sent = self.loop.clock.monotonic()
        return True

    def resend_hello(self) -> None:
        """The master does not know us (it restarted): say hello again on this connection."""
        self.established_ = False
        if self.dealer is not None:
            self.send(self._hello())
            self._arm_attempt_timer()

    def reconnect(self, why: str, patient: bool = False) -> None:
        """Drop the connection and detect the master again (after a backoff when `patient`,
        so a stale answer from detection cannot turn into a tight loop)."""
        log.warning("connection to the master lost", peer=self.name, reason=why)
        was = self.established_
        self.established_ = False
        self._close_dealer()
        if was:
            self._on_lost(why)
        if patient:
            self.loop.call_later(backoff(self._attempt, base=0.05, cap=2.0), self._detect)
        else:
            self._attempt = 0
            self._detect()

    def close(self) -> None:
        self._closed = True
        self.established_ = False
        if self._watch is not None:
            self._watch.close()
        for timer in (self._attempt_timer, self._check_timer):
            if timer:
                timer.cancel()
        self._close_dealer()

    # -- internals --------------------------------------------------------------------------

    def _detect(self) -> None:
        if self._closed:
            return
        self._attempt += 1
        resolve_async(self.master, lambda info, error: self.loop.call_soon_threadsafe(
            lambda: self._detected(info, error)))

    def _detected(self, info: proto.MasterInfo | None, error: str) -> None:
        if self._closed:
            return
        if info is None:
            log.warning("no master yet", peer=self.name, master=self.master, reason=error)
            self.loop.call_later(backoff(self._attempt, cap=5.0), self._detect)
            return
        self._close_dealer()
        self.master_info = info
        self.dealer = Dealer(info.router, self.allowed)
        self.loop.add_reader(self.dealer.socket, self._readable)
        self.send(self._hello())
        self._arm_attempt_timer()

    def _arm_attempt_timer(self) -> None:
        if self._attempt_timer:
            self._attempt_timer.cancel()
        # No answer in time: detect again (the master may have moved or restarted).
        self._attempt_timer = self.loop.call_later(max(2.0, backoff(self._attempt, cap=10.0)),
                                                   self._attempt_expired)

    def _attempt_expired(self) -> None:
        if not self.established_ and not self._closed:
            self._close_dealer()
            self._detect()

    def _readable(self) -> None:
        dealer = self.dealer
        if dealer is None:
            return
        for message in dealer.receive():
            self._last_heard = self.loop.clock.monotonic()
            if isinstance(message, proto.Error) and message.code == "NOT_LEADER":
                self.reconnect("the master we reached does not lead", patient=True)
                return
            self._on_message(message)
            if self.dealer is not dealer:      # the handler reconnected or closed
                return

    def _check(self) -> None:
        if not self.established_:
            return
        now = self.loop.clock.monotonic()
        if now - self._last_heard > self._timeout:
            self.reconnect("no heartbeat from the master")
        elif now - self._last_sent >= self._interval:
            self.send(proto.Heartbeat())

    def _close_dealer(self) -> None:
        if self.dealer is not None:
            self.loop.remove_reader(self.dealer.socket)
            self.dealer.close()
            self.dealer = None

    def dropped_frames(self) -> int:
        return self.dealer.drops.total() if self.dealer else 0
