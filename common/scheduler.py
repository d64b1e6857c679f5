"""The framework SDK: write a scheduler, hand it to a driver, get offers.

    from meseta.scheduler import Scheduler, SchedulerDriver, TaskInfo, CommandInfo, Resources

    class Hello(Scheduler):
        def resource_offers(self, driver, offers):
            offer = offers[0]
            task = TaskInfo(task_id="hello-1", name="hello", agent_id=offer.agent_id,
                            resources=Resources.parse("cpus:0.1;mem:32"),
                            command=CommandInfo("echo hello"))
            driver.launch_tasks([offer.id], [task])

        def status_update(self, driver, status):
            print(status.task_id, status.state)

    SchedulerDriver(Hello(), FrameworkInfo(user="", name="hello"), "127.0.0.1:5050").run()

The driver runs its own thread; every callback is called on it, one at a time, in the order
events arrive. Driver methods may be called from any thread. Status updates are acknowledged
after `status_update` returns unless `implicit_acknowledgements=False`.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Iterable, Optional

from meseta import proto
from meseta.clock import Clock
from meseta.link import MasterLink
from meseta.log import get_logger
from meseta.loop import EventLoop
from meseta.proto import (CommandInfo, FrameworkInfo, MasterInfo, Offer, Operation,
                          ReconcileTask, TaskInfo, TaskStatus)
from meseta.resources import Resources

__all__ = ["Scheduler", "SchedulerDriver", "Filters", "CommandInfo", "FrameworkInfo", "MasterInfo",
           "Offer", "Operation", "ReconcileTask", "TaskInfo", "TaskStatus", "Resources",
           "DRIVER_NOT_STARTED", "DRIVER_RUNNING", "DRIVER_ABORTED", "DRIVER_STOPPED"]

log = get_logger("meseta.scheduler")

DRIVER_NOT_STARTED = "DRIVER_NOT_STARTED"
DRIVER_RUNNING = "DRIVER_RUNNING"
DRIVER_ABORTED = "DRIVER_ABORTED"
DRIVER_STOPPED = "DRIVER_STOPPED"

MISSED_HEARTBEATS = 5


class Scheduler:
    """Override what you need; every callback gets the driver first."""

    def registered(self, driver: "SchedulerDriver", framework_id: str, master: MasterInfo) -> None: ...
    def reregistered(self, driver: "SchedulerDriver", master: MasterInfo) -> None: ...
    def disconnected(self, driver: "SchedulerDriver") -> None: ...
    def resource_offers(self, driver: "SchedulerDriver", offers: list[Offer]) -> None: ...
    def offer_rescinded(self, driver: "SchedulerDriver", offer_id: str) -> None: ...
    def status_update(self, driver: "SchedulerDriver", status: TaskStatus) -> None: ...
    def framework_message(self, driver: "SchedulerDriver", executor_id: str, agent_id: str,
                          data: bytes) -> None: ...
    def agent_lost(self, driver: "SchedulerDriver", agent_id: str) -> None: ...
    def error(self, driver: "SchedulerDriver", message: str) -> None: ...


@dataclass
class Filters:
    refuse_seconds: float = 5.0


def _refuse_seconds(filters: Filters | dict | None) -> float:
    if filters is None:
        return 5.0
    if isinstance(filters, dict):
        return float(filters.get("refuse_seconds", 5.0))
    return float(filters.refuse_seconds)


class SchedulerDriver:
    """Connects a Scheduler to the leading master and keeps it connected."""

    def __init__(self, scheduler: Scheduler, framework: FrameworkInfo, master: str,
                 implicit_acknowledgements: bool = True, clock: Clock | None = None) -> None:
        self.scheduler = scheduler
        self.framework = framework
        self.master = master
        self.implicit_acknowledgements = implicit_acknowledgements
        self.status = DRIVER_NOT_STARTED
        self.master_info: Optional[MasterInfo] = None
        self._loop = EventLoop(clock, name=f"driver-{framework.name}")
        self._link = MasterLink(self._loop, master, proto.MASTER_TO_FRAMEWORK, self._hello,
                                self._dispatch, self._lost_master, f"framework {framework.name}")
        self._ever_registered = False
        self._thread: Optional[threading.Thread] = None
        self._done = threading.Event()

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def framework_id(self) -> Optional[str]:
        return self.framework.id

    @property
    def connected(self) -> bool:
        return self._link.established

    def start(self) -> str:
        if self.status != DRIVER_NOT_STARTED:
            return self.status
        self.status = DRIVER_RUNNING
        self._link.start()
        self._thread = self._loop.start_thread()
        return self.status

    def stop(self, failover: bool = False) -> str:
        """Stop; without failover the framework is torn down and its tasks killed (as Mesos)."""
        def work() -> None:
            if not failover and self._link.established:
                self._link.send(proto.Teardown())
            self._shutdown(DRIVER_STOPPED)
        self._call(work)
        self._join_thread()
        return self.status

    def abort(self) -> str:
        self._call(lambda: self._shutdown(DRIVER_ABORTED))
        self._join_thread()
        return self.status

    def join(self, timeout: float | None = None) -> str:
        self._done.wait(timeout)
        return self.status

    def run(self) -> str:
        self.start()
        try:
            return self.join()
        except KeyboardInterrupt:
            return self.stop(failover=True)

    # -- calls ----------------------------------------------------------------------------------

    def launch_tasks(self, offer_ids: str | Iterable[str], tasks: Iterable[TaskInfo],
                     filters: Filters | dict | None = None) -> str:
        tasks = list(tasks)
        return self.accept_offers(offer_ids, [Operation("LAUNCH", tasks)], filters)

    def accept_offers(self, offer_ids: str | Iterable[str], operations: Iterable[Operation],
                      filters: Filters | dict | None = None) -> str:
        ids = [offer_ids] if isinstance(offer_ids, str) else list(offer_ids)
        message = proto.Accept(ids, list(operations), _refuse_seconds(filters))
        self._call(lambda: self._send_or_lose(message))
        return self.status

    def decline_offer(self, offer_ids: str | Iterable[str], filters: Filters | dict | None = None) -> str:
        ids = [offer_ids] if isinstance(offer_ids, str) else list(offer_ids)
        return self._send(proto.Decline(ids, _refuse_seconds(filters)))

    def kill_task(self, task_id: str, agent_id: str | None = None,
                  grace_seconds: float | None = None) -> str:
        return self._send(proto.Kill(task_id, agent_id, grace_seconds))

    def revive_offers(self, roles: Iterable[str] = ()) -> str:
        return self._send(proto.Revive(list(roles)))

    def suppress_offers(self, roles: Iterable[str] = ()) -> str:
        return self._send(proto.Suppress(list(roles)))

    def acknowledge_status_update(self, status: TaskStatus) -> str:
        if status.uuid is None or status.agent_id is None:
            return self.status          # master-generated updates are not acknowledged
        return self._send(proto.Acknowledge(status.agent_id, status.task_id, status.uuid))

    def reconcile_tasks(self, tasks: Iterable[TaskStatus | ReconcileTask | dict]) -> str:
        items = []
        for task in tasks:
            if isinstance(task, dict):
                items.append(ReconcileTask(task["task_id"], task.get("agent_id")))
            else:
                items.append(ReconcileTask(task.task_id, task.agent_id))
        return self._send(proto.Reconcile(items))

    def send_framework_message(self, executor_id: str, agent_id: str, data: bytes) -> str:
        return self._send(proto.FrameworkMessageCall(agent_id, executor_id, data))

    # -- internals (loop thread) ----------------------------------------------------------------

    def _call(self, fn) -> None:
        if self._loop.in_loop_thread():
            fn()
        else:
            self._loop.call_soon_threadsafe(fn)

    def _send(self, message: proto.Message) -> str:
        def work() -> None:
            if not (self._link.established and self._link.send(message)):
                log.warning("not connected to a master; call dropped", call=message.TYPE)
        self._call(work)
        return self.status

    def _send_or_lose(self, message: proto.Accept) -> None:
        if self._link.established and self._link.send(message):
            return
        # As Mesos's driver: tasks of an accept made while disconnected are reported lost.
        for op in message.operations:
            for task in op.tasks:
                self._deliver(lambda t=task: self.scheduler.status_update(self, TaskStatus(
                    task_id=t.task_id, state=proto.TASK_LOST, source=proto.SOURCE_MASTER,
                    reason="REASON_MASTER_DISCONNECTED", agent_id=t.agent_id,
                    message="Master disconnected", timestamp=self._loop.clock.time())))

    def _hello(self) -> proto.Subscribe:
        return proto.Subscribe(proto.PROTOCOL_VERSION, self.framework)

    def _lost_master(self, why: str) -> None:
        self._deliver(lambda: self.scheduler.disconnected(self))

    def _dispatch(self, message: proto.Message) -> None:
        kind = type(message)
        if kind is proto.Subscribed:
            self._on_subscribed(message)
        elif kind is proto.Offers:
            self._deliver(lambda: self.scheduler.resource_offers(self, message.offers))
        elif kind is proto.Update:
            self._on_update(message.status)
        elif kind is proto.Rescind:
            self._deliver(lambda: self.scheduler.offer_rescinded(self, message.offer_id))
        elif kind is proto.Failure:
            self._deliver(lambda: self.scheduler.agent_lost(self, message.agent_id))
        elif kind is proto.FrameworkMessage:
            self._deliver(lambda: self.scheduler.framework_message(
                self, message.executor_id, message.agent_id, message.data))
        elif kind is proto.Error:
            self._on_error(message)

    def _on_subscribed(self, message: proto.Subscribed) -> None:
        self.framework.id = message.framework_id
        self._link.established_with(message.heartbeat_interval,
                                    message.heartbeat_interval * MISSED_HEARTBEATS)
        master = message.master
        self.master_info = master
        if self._ever_registered:
            self._deliver(lambda: self.scheduler.reregistered(self, master))
        else:
            self._ever_registered = True
            self._deliver(lambda: self.scheduler.registered(self, message.framework_id, master))

    def _on_update(self, status: TaskStatus) -> None:
        self._deliver(lambda: self.scheduler.status_update(self, status))
        if self.implicit_acknowledgements and status.uuid is not None:
            self._link.send(proto.Acknowledge(status.agent_id, status.task_id, status.uuid))

    def _on_error(self, message: proto.Error) -> None:
        if message.code == "UNREGISTERED":
            self._link.resend_hello()
            return
        subscribed = self._link.established
        self._deliver(lambda: self.scheduler.error(self, message.message))
        if message.code in ("PROTOCOL_VERSION", "REMOVED", "FAILED_OVER") or not subscribed:
            # As libmesos: an error from the master is fatal for the driver.
            self._shutdown(DRIVER_ABORTED)

    def _deliver(self, callback) -> None:
        try:
            callback()
        except Exception:
            log.exception("scheduler callback raised", framework=self.framework.name)

    def _shutdown(self, status: str) -> None:
        if self.status not in (DRIVER_RUNNING, DRIVER_NOT_STARTED):
            return
        self.status = status
        self._link.close()
        self._loop.stop()
        self._done.set()

    def _join_thread(self) -> None:
        if self._thread and threading.current_thread() is not self._thread:
            self._thread.join(5)
