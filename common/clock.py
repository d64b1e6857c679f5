"""Time as an injected seam.

Daemons read time only through a `Clock`, so tests drive timers with `FakeClock.advance`
instead of sleeping. `monotonic()` orders timers; `time()` is wall-clock for timestamps that
leave the process (status updates, registered_time).
"""
from __future__ import annotations

import time as _time


class Clock:
    """The real clock."""

    def monotonic(self) -> float:
        return _time.monotonic()

    def time(self) -> float:
        return _time.time()


class FakeClock(Clock):
    """A clock that moves only when told to."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._mono = 1000.0
        self._wall = start

    def monotonic(self) -> float:
        return self._mono

    def time(self) -> float:
        return self._wall

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        self._mono += seconds
        self._wall += seconds
