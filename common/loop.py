"""The one thread that owns a daemon's state.

A zmq.Poller over sockets and plain fds, a timer heap read through the injected `Clock`, and
an inbox other threads (HTTP handlers) use to run a function on the loop and wait for its
result. Nothing else touches the state, so no locks guard it.
"""
from __future__ import annotations

import heapq
import itertools
import os
import threading
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable

import zmq

from meseta.clock import Clock
from meseta.log import get_logger

log = get_logger("meseta.loop")


class Timer:
    __slots__ = ("deadline", "fn", "interval", "cancelled")

    def __init__(self, deadline: float, fn: Callable[[], Any], interval: float | None) -> None:
        self.deadline = deadline
        self.fn = fn
        self.interval = interval
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class EventLoop:
    def __init__(self, clock: Clock | None = None, name: str = "loop") -> None:
        self.clock = clock or Clock()
        self.name = name
        self._poller = zmq.Poller()
        self._readers: dict[Any, Callable[[], Any]] = {}
        self._keys: dict[int, Any] = {}
        self._timers: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._inbox: deque[Callable[[], Any]] = deque()
        self._wakeup = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._poller.register(self._wakeup, zmq.POLLIN)
        self._running = False
        self._thread: threading.Thread | None = None

    # -- registration -----------------------------------------------------------------------

    def add_reader(self, source: Any, callback: Callable[[], Any]) -> None:
        """source: a zmq socket, an int fd or an object with fileno().

        zmq.Poller reports plain fds as ints, so those are keyed by fd; the fd is remembered,
        so a reader can be removed after its object closed the descriptor.
        """
        key = source if isinstance(source, (zmq.Socket, int)) else source.fileno()
        self._keys[id(source)] = key
        self._readers[key] = callback
        self._poller.register(key, zmq.POLLIN)

    def remove_reader(self, source: Any) -> None:
        key = self._keys.pop(id(source), None)
        if key is not None and self._readers.pop(key, None) is not None:
            self._poller.unregister(key)

    def call_later(self, delay: float, fn: Callable[[], Any]) -> Timer:
        timer = Timer(self.clock.monotonic() + max(0.0, delay), fn, None)
        heapq.heappush(self._timers, (timer.deadline, next(self._seq), timer))
        return timer

    def call_every(self, interval: float, fn: Callable[[], Any]) -> Timer:
        timer = Timer(self.clock.monotonic() + interval, fn, interval)
        heapq.heappush(self._timers, (timer.deadline, next(self._seq), timer))
        return timer

    # -- other threads ------------------------------------------------------------------------

    def call_soon_threadsafe(self, fn: Callable[[], Any]) -> None:
        self._inbox.append(fn)
        try:
            os.eventfd_write(self._wakeup, 1)
        except OSError:
            pass        # closed: the daemon stopped, nothing will run it (late threads land here)

    def submit(self, fn: Callable[[], Any]) -> Future:
        """Run fn on the loop thread; the future carries its result or exception."""
        future: Future = Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to the waiting thread
                future.set_exception(exc)

        if threading.current_thread() is self._thread:
            run()
        else:
            self.call_soon_threadsafe(run)
        return future

    def call(self, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        return self.submit(fn).result(timeout)

    # -- running ------------------------------------------------------------------------------

    def in_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def stop(self) -> None:
        self._running = False
        try:
            os.eventfd_write(self._wakeup, 1)
        except OSError:
            pass

    def run(self) -> None:
        self._thread = threading.current_thread()
        self._running = True
        try:
            while self._running:
                self._run_once()
        finally:
            self._thread = None

    def start_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name=self.name, daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        wakeup, self._wakeup = self._wakeup, -1
        os.close(wakeup)

    def _poll_timeout_ms(self) -> int | None:
        if self._inbox:
            return 0
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        if not self._timers:
            return 1000
        delay = self._timers[0][0] - self.clock.monotonic()
        return max(0, min(1000, int(delay * 1000) + 1))

    def _run_once(self) -> None:
        events = self._poller.poll(self._poll_timeout_ms())
        for source, _ in events:
            if source == self._wakeup:
                try:
                    os.eventfd_read(self._wakeup)
                except BlockingIOError:
                    pass
                continue
            callback = self._readers.get(source)
            if callback is not None:
                self._guard(callback)
        self._run_timers()
        while self._inbox:
            self._guard(self._inbox.popleft())

    def _run_timers(self) -> None:
        now = self.clock.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, _, timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            if timer.interval is not None:
                timer.deadline = now + timer.interval
                heapq.heappush(self._timers, (timer.deadline, next(self._seq), timer))
            self._guard(timer.fn)

    def _guard(self, fn: Callable[[], Any]) -> None:
        # A bug in one handler must not take the daemon down with it.
        try:
            fn()
        except Exception:
            log.exception("handler failed", loop=self.name)
