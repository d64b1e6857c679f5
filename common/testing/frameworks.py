"""A scheduler that records everything, for tests that drive the SDK against a real master.

    sched = RecordingScheduler()
    driver = SchedulerDriver(sched, make_framework_info(), master_address)
    driver.start()
    offers = sched.wait_offers()
    driver.launch_tasks([offers[0].id], [task])
    sched.wait_state("t1", "TASK_RUNNING")
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

from meseta import proto
from meseta.scheduler import Scheduler


class RecordingScheduler(Scheduler):
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.events: list[tuple[str, Any]] = []
        self.offers: dict[str, proto.Offer] = {}
        self.updates: list[proto.TaskStatus] = []
        self.framework_id: str | None = None

    def _record(self, kind: str, value: Any) -> None:
        with self.cond:
            self.events.append((kind, value))
            self.cond.notify_all()

    def registered(self, driver, framework_id, master):
        self.framework_id = framework_id
        self._record("registered", framework_id)

    def reregistered(self, driver, master):
        self._record("reregistered", master)

    def disconnected(self, driver):
        self._record("disconnected", None)

    def resource_offers(self, driver, offers):
        with self.cond:
            for offer in offers:
                self.offers[offer.id] = offer
        self._record("offers", offers)

    def offer_rescinded(self, driver, offer_id):
        with self.cond:
            self.offers.pop(offer_id, None)
        self._record("rescind", offer_id)

    def status_update(self, driver, status):
        with self.cond:
            self.updates.append(status)
        self._record("update", status)

    def agent_lost(self, driver, agent_id):
        self._record("agent_lost", agent_id)

    def error(self, driver, message):
        self._record("error", message)

    # -- waiting ------------------------------------------------------------------------------

    def wait(self, predicate: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                result = predicate()
                if result:
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"timed out waiting for {what or predicate}; events: "
                                       f"{[(k, getattr(v, 'state', v)) for k, v in self.events[-20:]]}")
                self.cond.wait(remaining)

    def take_offers(self, count: int = 1, timeout: float = 20.0) -> list[proto.Offer]:
        """Wait until `count` offers are outstanding and hand them over (forgetting them here)."""
        def ready():
            if len(self.offers) >= count:
                taken = list(self.offers.values())
                self.offers.clear()
                return taken
            return None
        return self.wait(ready, timeout, f"{count} offers")

    def states(self, task_id: str) -> list[str]:
        return [u.state for u in self.updates if u.task_id == task_id]

    def wait_state(self, task_id: str, state: str, timeout: float = 20.0) -> proto.TaskStatus:
        def seen():
            for update in self.updates:
                if update.task_id == task_id and update.state == state:
                    return update
            return None
        return self.wait(seen, timeout, f"{task_id} {state}")

    def wait_event(self, kind: str, timeout: float = 20.0) -> Any:
        def seen():
            for k, value in self.events:
                if k == kind:
                    return value if value is not None else True
            return None
        return self.wait(seen, timeout, kind)
