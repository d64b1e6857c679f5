"""The launch queue's bookkeeping: which apps wait for offers, since when, behind what backoff,
and what the last offers said about them (reference marathon.md §1.6, §2.8).

    queue.failed(app, now)                a task of the app failed: the launch delay grows
    queue.delayed(app_id, now)            still inside the delay?
    queue.rejected(app_id, host, rejection, now) / queue.used(app_id, now)
    queue.entries(demand, now)            -> {app_id: QueueEntry} for /v2/queue

Backoff is Marathon's: the first failure delays the next launch by `backoffSeconds`, each further
consecutive one multiplies the delay by `backoffFactor`, capped at `maxLaunchDelaySeconds`. It
resets on a new app version, on `DELETE /v2/queue/{id}/delay`, and after a quiet period of
delay + maxLaunchDelaySeconds with no failure.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

from meseta.frameworks.marathon.app import AppDefinition
from meseta.frameworks.marathon.pathid import PathId
from meseta.frameworks.marathon.snapshot import LaunchDelay, OfferSummary, QueueEntry

__all__ = ["LaunchQueue"]

LAST_OFFERS = 10          # refusals remembered per app for "why is it waiting"


@dataclass
class _Backoff:
    delay: float = 0.0
    until: float = 0.0
    last_failure: float = 0.0


@dataclass
class _Offers:
    processed: int = 0
    unused: int = 0
    last_unused_at: float | None = None
    last_used_at: float | None = None
    total: Counter = field(default_factory=Counter)
    last: deque = field(default_factory=lambda: deque(maxlen=LAST_OFFERS))  # (reasons, message)


class LaunchQueue:
    def __init__(self) -> None:
        self._since: dict[PathId, float] = {}
        self._backoff: dict[PathId, _Backoff] = {}
        self._offers: dict[PathId, _Offers] = {}

    # -- backoff -----------------------------------------------------------------------------

    def failed(self, app: AppDefinition, now: float) -> None:
        b = self._backoff.setdefault(app.id, _Backoff())
        if b.delay and now - b.last_failure > b.delay + app.max_launch_delay_seconds:
            b.delay = 0.0                     # quiet long enough: start over
        b.delay = min(float(app.max_launch_delay_seconds),
                      b.delay * app.backoff_factor if b.delay else float(app.backoff_seconds))
        b.until = now + b.delay
        b.last_failure = now

    def delayed(self, app_id: PathId, now: float) -> bool:
        b = self._backoff.get(app_id)
        return b is not None and b.until > now

    def delay_left(self, app_id: PathId, now: float) -> float:
        b = self._backoff.get(app_id)
        return max(0.0, b.until - now) if b is not None else 0.0

    def reset_delay(self, app_id: PathId) -> None:
        self._backoff.pop(app_id, None)

    def knows(self, app_id: PathId) -> bool:
        return app_id in self._since or app_id in self._backoff

    def forget(self, app_id: PathId) -> None:
        self._since.pop(app_id, None)
        self._backoff.pop(app_id, None)
        self._offers.pop(app_id, None)

    # -- offers ------------------------------------------------------------------------------

    def order(self, demand: dict[PathId, int], now: float) -> list[PathId]:
        """Apps to offer to, longest waiting first."""
        self._track(demand, now)
        return sorted(demand, key=lambda app_id: (self._since[app_id], app_id))

    def rejected(self, app_id: PathId, host: str, rejection, now: float) -> None:
        o = self._offers.setdefault(app_id, _Offers())
        o.processed += 1
        o.unused += 1
        o.last_unused_at = now
        o.total.update(rejection.reasons)
        o.last.append((tuple(rejection.reasons), rejection.message))

    def used(self, app_id: PathId, now: float) -> None:
        o = self._offers.setdefault(app_id, _Offers())
        o.processed += 1
        o.last_used_at = now

    def why_waiting(self, app_id: PathId, now: float) -> list[str]:
        out = []
        b = self._backoff.get(app_id)
        if b is not None and b.until > now:
            out.append(f"launch delayed {b.until - now:.1f}s after failures (backoff)")
        o = self._offers.get(app_id)
        if o is not None and o.last and (o.last_used_at is None or
                                         (o.last_unused_at or 0) >= o.last_used_at):
            out.append(f"last offer refused: {o.last[-1][1]}")
        return out

    def entries(self, demand: dict[PathId, int], now: float) -> dict[PathId, QueueEntry]:
        self._track(demand, now)
        return {app_id: QueueEntry(app_id, count, self._since[app_id],
                                   LaunchDelay(self.delay_left(app_id, now)),
                                   offers=self._summary(app_id))
                for app_id, count in demand.items()}

    def _summary(self, app_id: PathId) -> OfferSummary:
        o = self._offers.get(app_id)
        if o is None:
            return OfferSummary()
        last = Counter(r for reasons, _ in o.last for r in reasons)
        return OfferSummary(o.processed, o.unused, o.last_unused_at, o.last_used_at,
                            dict(last), dict(o.total), tuple(m for _, m in o.last))

    def _track(self, demand: dict[PathId, int], now: float) -> None:
        for app_id in demand:
            self._since.setdefault(app_id, now)
        for app_id in [a for a in self._since if a not in demand]:
            del self._since[app_id]
            self._offers.pop(app_id, None)
