"""The Marathon service: the IO shell around `core.MarathonCore`.

One thread (an EventLoop) owns the core. The SDK driver, the election and HTTP threads hand it
their news; after every input the shell runs the core's instructions in order — store writes
first, so what is answered or launched is already durable — against the driver, the store and
the event listeners. HTTP handlers call the facade methods below (the API's `MarathonService`),
which run on the loop and return values or raise the API's errors. Status updates jump the
queue: the loop takes every one that has arrived before any other work, and acknowledges each
once it is stored (its agent holds the task's next update until then).

    service = MarathonService(config, store, election)
    service.start()          contend; when elected: load the store, register with the master
    service.deploy(lambda root: put_app(root, app), force=False)
    service.stop()           leave tasks running (the framework fails over), leave the election

Leadership: elected -> load state, create the core, start the driver (with the stored framework
id, so the master hands the tasks back), resume deployments, reconcile. Deposed -> stop the
driver in failover mode (tasks keep running), drop the core; contend again.
"""

from __future__ import annotations

import socket
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

from meseta import proto
from meseta.clock import Clock
from meseta.frameworks.marathon.app import AppDefinition
from meseta.frameworks.marathon.checker import HealthChecker
from meseta.frameworks.marathon.core import CoreConfig, MarathonCore, StoredState
from meseta.frameworks.marathon.errors import ApiError
from meseta.frameworks.marathon.eventbus import EventBus
from meseta.frameworks.marathon.group import (Group, UnknownId, find_app, find_group,
                                              transitive_apps)
from meseta.frameworks.marathon.instructions import (DeclineOffer, DeleteDeployment, DeleteInstance,
                                                     Instruction, KillTask, LaunchTasks, Publish,
                                                     Reconcile, ReviveOffers, SaveDeployment,
                                                     SaveFrameworkId, SaveInstance, SaveRoot,
                                                     SuppressOffers, UnwatchChecks, WatchChecks)
from meseta.frameworks.marathon.pathid import PathId
from meseta.frameworks.marathon.plan import DeploymentPlan
from meseta.frameworks.marathon.snapshot import DeploymentResult, Snapshot
from meseta.frameworks.marathon.store import StoreError
from meseta.log import get_logger
from meseta.loop import EventLoop
from meseta.scheduler import (Filters, FrameworkInfo, Scheduler, SchedulerDriver, TaskStatus)

__all__ = ["MarathonService", "ServiceConfig", "VERSION"]

log = get_logger("meseta.marathon")

Announce = Callable[[Group, float], list[dict[str, Any]]]

VERSION = "1.10.26"           # the Marathon API level we answer as (/v2/info `version`)
TICK_SECONDS = 1.0
FAILOVER_TIMEOUT = 604800.0   # Marathon's --failover_timeout: a week


@dataclass(frozen=True)
class ServiceConfig:
    master: str
    hostname: str = ""
    http_port: int = 8080
    framework_name: str = "marathon"
    mesos_role: str = "*"
    zk: str = ""
    core: CoreConfig = CoreConfig()
    call_timeout: float = 30.0

    @property
    def host_port(self) -> str:
        return f"{self.hostname or socket.gethostname()}:{self.http_port}"


class MarathonService:
    def __init__(self, config: ServiceConfig, store: Any, election: Any,
                 clock: Clock | None = None, events: EventBus | None = None) -> None:
        self.config = config
        self.store = store
        self.election = election
        self.clock = clock or Clock()
        self.loop = EventLoop(self.clock, "marathon")
        self.core: MarathonCore | None = None
        self.driver: SchedulerDriver | None = None
        self.checker: HealthChecker | None = None       # runs while leading
        self.master_url = ""
        self.listeners: list[Callable[[dict[str, Any]], None]] = []   # the event bus
        self.events = events if events is not None else EventBus(clock=self.clock)
        self.listeners.append(self.events.publish)     # SSE /v2/events and the ZeroMQ PUB
        self._thread = None
        self._flush_pending = False
        self._statuses: deque[TaskStatus] = deque()   # from the driver's thread, not yet taken

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = self.loop.start_thread()
        self.loop.call_every(TICK_SECONDS, self._tick)
        self.election.start(lambda: self.loop.call_soon_threadsafe(self._elected),
                            lambda why: self.loop.call_soon_threadsafe(lambda: self._deposed(why)))

    def stop(self) -> None:
        self.election.stop()
        try:
            self.loop.call(lambda: self._deposed("stopping"), timeout=15)
        finally:
            self.loop.stop()
            if self._thread is not None:
                self._thread.join(5)
            self.store.close()

    def _elected(self) -> None:
        if self.core is not None:
            return
        state = self.store.load()
        plans = []
        for record in state.deployments:
            try:
                plans.append(DeploymentPlan.from_record(record, self._root_at))
            except Exception as exc:   # a plan whose roots are gone cannot be resumed
                log.error("stored deployment dropped", deployment=record.get("id"), error=str(exc))
        self.core = MarathonCore(self.config.core, StoredState(
            state.root, plans, state.instances, state.framework_id))
        log.info("elected leader", apps=len(transitive_apps(state.root)),
                 instances=len(state.instances), deployments=len(plans))
        framework = FrameworkInfo(
            user="", name=self.config.framework_name, id=state.framework_id,
            failover_timeout=FAILOVER_TIMEOUT, checkpoint=True, roles=[self.config.mesos_role],
            hostname=self.config.host_port.rsplit(":", 1)[0],
            webui_url=f"http://{self.config.host_port}", capabilities=["MULTI_ROLE"])
        self.checker = HealthChecker(self._on_health, self._on_ready)
        self.driver = SchedulerDriver(_Adapter(self), framework, self.config.master,
                                      implicit_acknowledgements=False, clock=self.clock)
        self.driver.start()
        self._run(lambda core: core.resume(self.clock.time()))

    def _deposed(self, why: str) -> None:
        if self.core is None:
            return
        log.warning("no longer leader", reason=why)
        self._statuses.clear()               # unacknowledged: the agents send them again
        self.events.close_all()              # a former leader's event streams end
        driver, self.driver, self.core = self.driver, None, None
        checker, self.checker = self.checker, None
        if checker is not None:
            checker.stop()
        if driver is not None:
            driver.stop(failover=True)       # the tasks stay; the next leader takes them over

    def _store_failed(self, exc: Exception) -> None:
        """The store lost a write (ZooKeeper gone, disk full): no zombie leader."""
        if self.core is None:
            return
        log.error("state could not be stored; stepping down", error=str(exc))
        self._deposed(f"store failed: {exc}")
        self.election.abdicate()

    def _root_at(self, version: str) -> Group:
        root = self.store.root_at(version)
        if root is None:
            raise LookupError(f"root group version {version} is not stored")
        return root

    # -- driver callbacks (on the loop) ------------------------------------------------------

    def _registered(self, framework_id: str, master: proto.MasterInfo, first: bool) -> None:
        if self.core is None:
            return
        self.master_url = f"{master.hostname}:{master.port}"
        self._run(lambda core: core.registered(framework_id, self.master_url,
                                               self.clock.time(), first))

    def _offers(self, offers: list[proto.Offer]) -> None:
        """One offer per turn of the loop, the rest queued behind whatever arrived meanwhile:
        a status update (drained before each turn) waits for one offer's matching, not for a
        whole batch of them, and its acknowledgement releases the task's next update sooner."""
        if self.core is None or not offers:   # deposed meanwhile: the driver is stopped with it
            return
        offer, rest = offers[0], offers[1:]
        self._run(lambda core: core.resource_offers([offer], self.clock.time()))
        if rest:
            self.loop.call_soon_threadsafe(lambda: self._offers(rest))

    def _status_arrived(self, status: TaskStatus) -> None:    # on the driver's thread
        self._statuses.append(status)
        self.loop.call_soon_threadsafe(self._drain_statuses)

    def _drain_statuses(self) -> None:
        """Every status update that has arrived, oldest first, each handed to the store and only
        then acknowledged; when the store has failed it is not, so its agent sends it again (the
        store writes instances behind the loop; a write failing later steps this leader down,
        and the next one reconciles with the master).
        Runs before any other work of the loop (`_run`): the acknowledgement releases the
        task's next update at its agent, so waiting behind an API call or an offer would hold
        up the task's whole stream."""
        while self._statuses and self.core is not None:
            status = self._statuses.popleft()
            self._run(lambda core: core.status_update(status, self.clock.time()), drain=False)
            if self.driver is not None and status.uuid is not None:
                self.driver.acknowledge_status_update(status)

    def _on_health(self, instance_id: str, index: int, ok: bool | None, cause: str,
                   at: float) -> None:       # on a checker thread
        self.loop.call_soon_threadsafe(lambda: self.core is not None and self._run(
            lambda core: core.health_result(instance_id, index, ok, cause, at)))

    def _on_ready(self, instance_id: str, response: dict) -> None:   # on a checker thread
        self.loop.call_soon_threadsafe(lambda: self.core is not None and self._run(
            lambda core: core.readiness_result(instance_id, response, self.clock.time())))

    def _tick(self) -> None:
        if self.core is not None:
            self._run(lambda core: core.tick(self.clock.time()))

    # -- running instructions ----------------------------------------------------------------

    def _run(self, fn: Callable[[MarathonCore], Any], drain: bool = True) -> Any:
        if drain:
            self._drain_statuses()           # status updates before any other work
        core = self.core
        if core is None:
            raise ApiError(503, "There is no leader")
        try:
            return fn(core)
        finally:
            try:
                self._execute(core.take())
            except StoreError as exc:
                # what could not be stored must not be acted on: step down, the next leader
                # (or this one, re-elected) starts again from what the store holds
                self._store_failed(exc)
                raise ApiError(503, f"Marathon could not store its state: {exc}") from exc
            if core.dirty and not self._flush_pending:
                # after the updates already queued behind this one: a burst is one flush
                self._flush_pending = True
                self.loop.call_soon_threadsafe(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        if self.core is not None:
            self._run(lambda core: core.flush(self.clock.time()))

    def _execute(self, instructions: list[Instruction]) -> None:
        driver = self.driver
        for ins in instructions:
            if isinstance(ins, SaveInstance):
                self.store.save_instance(ins.instance)
            elif isinstance(ins, DeleteInstance):
                self.store.delete_instance(ins.instance_id)
            elif isinstance(ins, SaveRoot):
                self.store.save_root(ins.root)
            elif isinstance(ins, SaveDeployment):
                self.store.save_deployment(ins.record)
            elif isinstance(ins, DeleteDeployment):
                self.store.delete_deployment(ins.deployment_id)
            elif isinstance(ins, SaveFrameworkId):
                self.store.save_framework_id(ins.framework_id)
            elif isinstance(ins, Publish):
                for listener in list(self.listeners):
                    listener(ins.event)
            elif isinstance(ins, WatchChecks):
                if self.checker is not None:
                    self.checker.watch(ins.instance, ins.app)
            elif isinstance(ins, UnwatchChecks):
                if self.checker is not None:
                    self.checker.unwatch(ins.instance_id)
            elif driver is None:
                continue
            elif isinstance(ins, LaunchTasks):
                self.store.sync()               # its instances are stored before it runs
                driver.launch_tasks([ins.offer_id], list(ins.tasks))
            elif isinstance(ins, DeclineOffer):
                driver.decline_offer(ins.offer_id, Filters(refuse_seconds=ins.refuse_seconds))
            elif isinstance(ins, KillTask):
                driver.kill_task(ins.task_id, ins.agent_id, ins.grace_seconds)
            elif isinstance(ins, Reconcile):
                driver.reconcile_tasks([{"task_id": t, "agent_id": a} for t, a in ins.tasks])
            elif isinstance(ins, ReviveOffers):
                driver.revive_offers()
            elif isinstance(ins, SuppressOffers):
                driver.suppress_offers()

    def _call(self, fn: Callable[[MarathonCore], Any]) -> Any:
        return self.loop.call(lambda: self._run(fn), timeout=self.config.call_timeout)

    # -- the API's facade --------------------------------------------------------------------

    def now(self) -> float:
        return self.clock.time()

    def is_leader(self) -> bool:
        return self.election.is_leader

    def leader(self) -> str | None:
        return self.election.leader()

    def snapshot(self) -> Snapshot:
        return self._call(lambda core: core.snapshot(self.clock.time()))

    def deploy(self, change: Callable[[Group], Group], *, force: bool = False,
               dry_run: bool = False, announce: Announce | None = None,
               deadline: float | None = None, rollback_on_deadline: bool | None = None
               ) -> DeploymentResult | DeploymentPlan:
        """`announce(root, now)` gives the request's own events (`api_post_event`) once the
        change is accepted; they go out before the deployment's (`group_change_success`...)."""
        def run(core: MarathonCore) -> DeploymentResult | DeploymentPlan:
            now = self.clock.time()
            result = core.deploy(change, force=force, dry_run=dry_run, now=now, deadline=deadline,
                                 rollback_on_deadline=rollback_on_deadline)
            if announce is not None and not dry_run:
                self._execute([Publish(event) for event in announce(core.root, now)])
            return result
        return self._call(run)

    def rollback_deployment(self, deployment_id: str, *, force: bool) -> DeploymentResult | None:
        return self._call(lambda core: core.rollback(deployment_id, force=force,
                                                     now=self.clock.time()))

    def kill_tasks(self, task_ids: list[str], *, scale: bool, wipe: bool, force: bool):
        # wipe: Marathon forgets resident instances' reservations; without local volumes a
        # killed instance is forgotten anyway, so wipe adds nothing here.
        return self._call(lambda core: core.kill_tasks(task_ids, scale=scale, force=force,
                                                       now=self.clock.time()))

    def reset_delay(self, app_id: PathId) -> None:
        self._call(lambda core: core.reset_delay(app_id, self.clock.time()))

    def app_versions(self, app_id: PathId) -> list[str]:
        def read(core: MarathonCore) -> list[str]:
            versions = self.store.app_versions(app_id)
            if not versions and find_app(core.root, app_id) is None:
                raise UnknownId(f"App '{app_id}' does not exist")
            return versions
        return self._call(read)

    def app_version(self, app_id: PathId, version: str) -> AppDefinition:
        # on the loop, as every store call: the store's index is the loop's to change
        def read(_core: MarathonCore) -> AppDefinition:
            app = self.store.app_at(app_id, version)
            if app is None:
                raise UnknownId(f"App '{app_id}' does not exist in version {version}")
            return app
        return self._call(read)

    def group_versions(self, group_id: PathId) -> list[str]:
        def read(core: MarathonCore) -> list[str]:
            if find_group(core.root, group_id) is None:
                raise UnknownId(f"Group '{group_id}' does not exist")
            return [v for v in self.store.root_versions() if self._has_group(v, group_id)]
        return self._call(read)

    def group_version(self, group_id: PathId, version: str) -> Group:
        def read(_core: MarathonCore) -> Group:
            root = self.store.root_at(version)
            group = find_group(root, group_id) if root is not None else None
            if group is None:
                raise UnknownId(f"Group '{group_id}' does not exist in version {version}")
            return group
        return self._call(read)

    def _has_group(self, version: str, group_id: PathId) -> bool:
        if group_id.is_root:
            return True
        root = self.store.root_at(version)
        return root is not None and find_group(root, group_id) is not None

    def abdicate(self) -> None:
        if not self.election.is_leader:
            raise ApiError(503, "There is no leader")
        self.election.abdicate()

    def info(self) -> dict[str, Any]:
        core = self.core
        cfg = self.config
        return {
            "name": "marathon", "version": VERSION, "buildref": "meseta",
            "elected": self.election.is_leader, "leader": self.election.leader(),
            "frameworkId": core.framework_id if core else None,
            "marathon_config": {
                "master": cfg.master, "failover_timeout": int(FAILOVER_TIMEOUT),
                "framework_name": cfg.framework_name, "ha": bool(cfg.zk),
                "hostname": cfg.host_port.rsplit(":", 1)[0],
                "local_port_min": cfg.core.local_port_min, "local_port_max": cfg.core.local_port_max,
                "mesos_role": cfg.mesos_role, "mesos_user": None,
                "webui_url": f"http://{cfg.host_port}", "executor": "//cmd",
                "task_launch_timeout": int(cfg.core.task_launch_timeout * 1000),
                "checkpoint": True, "env_vars_prefix": cfg.core.env_vars_prefix,
            },
            "zookeeper_config": ({"zk": cfg.zk, "zk_max_versions": 50} if cfg.zk else {}),
            "http_config": {"http_port": cfg.http_port},
            "event_subscriber": self.events.subscriber_info(),
        }


class _Adapter(Scheduler):
    """SDK callbacks (driver thread) -> the service's loop."""

    def __init__(self, service: MarathonService) -> None:
        self.service = service
        self.loop = service.loop

    def registered(self, driver, framework_id, master) -> None:
        self.loop.call_soon_threadsafe(lambda: self.service._registered(framework_id, master, True))

    def reregistered(self, driver, master) -> None:
        fid = driver.framework_id or ""
        self.loop.call_soon_threadsafe(lambda: self.service._registered(fid, master, False))

    def resource_offers(self, driver, offers) -> None:
        self.loop.call_soon_threadsafe(lambda: self.service._offers(offers))

    def status_update(self, driver, status) -> None:
        self.service._status_arrived(status)

    def disconnected(self, driver) -> None:
        self.loop.call_soon_threadsafe(lambda: self.service.core is not None and self.service._run(
            lambda core: core.disconnected(self.service.clock.time())))

    def error(self, driver, message) -> None:
        log.error("master refused the framework", message=message)

