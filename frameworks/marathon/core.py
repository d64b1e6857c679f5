"""The Marathon core: desired state (the root group), instances, running deployments, the launch
queue. No IO: every input is a method call with the time; every effect is an `Instruction` in
`outbox`, which the service (service.py) runs against the SDK driver, the store and the bus.

    core = MarathonCore(CoreConfig(), stored_state)
    result = core.deploy(lambda root: put_app(root, app), force=False, now=t)
    core.resource_offers(offers, now=t)      -> LaunchTasks / DeclineOffer in core.outbox
    core.status_update(status, now=t)        -> SaveInstance, Publish, deployments advance
    core.tick(now=t)                         -> launch timeouts, kill retries, revive

Inputs and what they change:
    deploy / rollback       root (stored first), plan -> RunningDeployment (deployment.py)
    resource_offers         new instances (TASK_STAGING), launch stats per app
    status_update           an instance's state; terminal ones are forgotten (goal Decommissioned)
                            or replaced through the launch demand (goal Running, with backoff)
    kill_tasks              instances' goal -> Decommissioned, or a scale-down deployment
    registered              framework id stored, reconciliation of every known task
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from meseta import proto
from meseta.frameworks.marathon import events
from meseta.frameworks.marathon.app import AppDefinition, format_timestamp
from meseta.frameworks.marathon.deployment import (RunningDeployment, kill_excess, launch_demand,
                                                   progress)
from meseta.frameworks.marathon.errors import app_locked, not_found, too_many_deployments
from meseta.frameworks.marathon.group import (Group, find_app, put_app, stamp_versions,
                                              transitive_apps, validate_root)
from meseta.frameworks.marathon.instances import GOAL_RUNNING, Instance, instance_id_of
from meseta.frameworks.marathon.checks import InstanceChecks
from meseta.frameworks.marathon.health import Kill
from meseta.frameworks.marathon.instructions import (DeclineOffer, DeleteDeployment, DeleteInstance,
                                                     Instruction, KillTask, LaunchTasks, Publish,
                                                     Reconcile, ReviveOffers, SaveDeployment,
                                                     SaveFrameworkId, SaveInstance, SaveRoot,
                                                     SuppressOffers, UnwatchChecks, WatchChecks)
from meseta.frameworks.marathon.launch import Launch, OfferMatcher
from meseta.frameworks.marathon.pathid import PathId
from meseta.frameworks.marathon.plan import DeploymentPlan, compute_plan, conflicting, revert
from meseta.frameworks.marathon.ports import LOCAL_PORT_MAX, LOCAL_PORT_MIN, assign_service_ports
from meseta.frameworks.marathon.queue import LaunchQueue
from meseta.frameworks.marathon.snapshot import DeploymentResult, Snapshot
from meseta.log import get_logger

__all__ = ["MarathonCore", "CoreConfig", "StoredState"]

log = get_logger("meseta.marathon.core")

FAILURES = frozenset({proto.TASK_FAILED, proto.TASK_FINISHED, proto.TASK_ERROR})


@dataclass(frozen=True)
class CoreConfig:
    max_running_deployments: int = 100
    local_port_min: int = LOCAL_PORT_MIN
    local_port_max: int = LOCAL_PORT_MAX
    task_launch_timeout: float = 300.0     # --task_launch_timeout (s): STAGING this long is killed
    kill_retry: float = 10.0               # resend a kill not answered within this
    decline_seconds: float = 5.0           # refuse_seconds when an offer fits nothing wanted
    idle_decline_seconds: float = 120.0    # ... when nothing is wanted at all (then suppress)
    env_vars_prefix: str = ""
    deployment_deadline: float | None = None   # Meseta: fail deployments not done by then
    deployment_deadline_rollback: bool = False  # ... and roll them back


@dataclass
class StoredState:
    root: Group
    deployments: list[DeploymentPlan] = field(default_factory=list)
    instances: list[Instance] = field(default_factory=list)
    framework_id: str | None = None


class MarathonCore:
    def __init__(self, config: CoreConfig, state: StoredState, rng: random.Random | None = None):
        self.config = config
        self.root = state.root
        self.framework_id = state.framework_id
        self.instances: dict[str, Instance] = {}
        self._by_app: dict[PathId, dict[str, Instance]] = {}
        for inst in state.instances:
            self._index(inst)
        self.deployments: dict[str, RunningDeployment] = {
            plan.id: RunningDeployment(plan, started_at=0.0) for plan in state.deployments}
        self.queue = LaunchQueue()
        self.checks = InstanceChecks()            # health and readiness of the instances
        self.last_failures: dict[PathId, dict[str, Any]] = {}
        self.outbox: list[Instruction] = []
        self.rng = rng or random.Random()
        self._kills: dict[str, float] = {}        # task id -> when the kill was last sent
        self._suppressed = False
        self.dirty: set[PathId] = set()           # apps whose instances changed since flush()
        self._now = 0.0                           # the time of the input being handled

    # -- reading -----------------------------------------------------------------------------

    def root_apps(self) -> list[AppDefinition]:
        return transitive_apps(self.root)

    def app_instances(self, app_id: PathId) -> list[Instance]:
        return list(self._by_app.get(app_id, {}).values())

    def wanted(self, app_id: PathId) -> list[Instance]:
        """Instances meant to keep running: active with goal Running. An unreachable one counts
        until its app's `unreachableStrategy.inactiveAfterSeconds` pass (then it is replaced);
        with the strategy `disabled` it always counts."""
        instances = self._by_app.get(app_id)
        if not instances:
            return []
        app = find_app(self.root, app_id)
        inactive_after = _unreachable(app)[0]
        return [i for i in instances.values()
                if i.goal == GOAL_RUNNING and i.active
                and (i.state != proto.TASK_UNREACHABLE or self._now - i.updated_at < inactive_after)]

    def is_ready(self, inst: Instance, app: AppDefinition) -> bool:
        """Counts toward a deployment's target: running, healthy and ready."""
        return self.checks.is_ready(inst, app)

    def snapshot(self, now: float) -> Snapshot:
        by_app = {app_id: tuple(i for i in insts.values() if i.active)
                  for app_id, insts in self._by_app.items()}
        return Snapshot(root=self.root, instances=by_app,
                        deployments=tuple(d.view(self) for d in self.deployments.values()),
                        queue=self.queue.entries(self._demand(), now),
                        last_task_failures=dict(self.last_failures), health=dict(self.checks.results),
                        framework_id=self.framework_id, now=now)

    def waiting_reason(self, app: AppDefinition, ready: int, dying: int, old: int = 0) -> str:
        parts = [f"{ready} of {app.instances} instances ready"]
        if old:
            parts.append(f"{old} old instances to replace")
        if dying:
            parts.append(f"{dying} instances terminating")
        pending = [i for i in self.wanted(app.id) if i.running and not self.is_ready(i, app)]
        if pending:
            parts.append(f"{len(pending)} running but not yet healthy")
        parts.extend(self.queue.why_waiting(app.id, self._now))
        return "; ".join(parts)

    # -- deployments -------------------------------------------------------------------------

    def deploy(self, change: Callable[[Group], Group], *, force: bool, now: float,
               dry_run: bool = False, to_kill: dict[PathId, tuple[str, ...]] | None = None,
               deadline: float | None = None, rollback_on_deadline: bool | None = None
               ) -> DeploymentResult | DeploymentPlan:
        """Apply `change` to the root group and start the deployment to it. `deadline`
        (seconds; default `CoreConfig.deployment_deadline`, None = none, as Marathon) fails a
        deployment that has not finished by then, and rolls it back if asked."""
        self._now = now
        try:
            target = change(self.root)
            validate_root(target)
            # ports first: a re-posted `0` that gets its old port back is no change at all
            target = stamp_versions(self.root, self._with_service_ports(target), now)
            plan = compute_plan(self.root, target, to_kill=to_kill)
            if dry_run:
                return plan
            self._admit(plan, force, now)
        except Exception as exc:
            if not dry_run:
                self.publish(events.group_change_failed("/", format_timestamp(now),
                                                        _reason(exc), now))
            raise
        deadline = self.config.deployment_deadline if deadline is None else deadline
        rollback = (self.config.deployment_deadline_rollback if rollback_on_deadline is None
                    else rollback_on_deadline)
        self._start(plan, now, now + deadline if deadline else None, rollback)
        return DeploymentResult(plan.id, plan.version)

    def rollback(self, deployment_id: str, *, force: bool, now: float) -> DeploymentResult | None:
        self._now = now
        dep = self.deployments.get(deployment_id)
        if dep is None:
            raise not_found(f"DeploymentPlan {deployment_id} does not exist")
        self._cancel(dep, now, "canceled")
        if force:
            return None
        return self.deploy(lambda root: revert(dep.plan, root), force=True, now=now)

    def _admit(self, plan: DeploymentPlan, force: bool, now: float) -> None:
        blocking = conflicting(plan, [d.plan for d in self.deployments.values()])
        if blocking and not force:
            raise app_locked(p.id for p in blocking)
        for other in blocking:
            self._cancel(self.deployments[other.id], now, "canceled by a forced deployment")
        if len(self.deployments) >= self.config.max_running_deployments:
            raise too_many_deployments(self.config.max_running_deployments)

    def _start(self, plan: DeploymentPlan, now: float, deadline: float | None = None,
               rollback: bool = False) -> None:
        for app in transitive_apps(plan.target):
            old = find_app(plan.original, app.id)
            if old is None or old.version_info != app.version_info:
                self.queue.reset_delay(app.id)        # a new version starts without backoff
            if old is None or old.health_checks != app.health_checks:
                if old is not None and old.health_checks:
                    self.publish(events.remove_health_check(str(app.id), now))
                for check in app.health_checks:
                    self.publish(events.add_health_check(str(app.id), app.version or "", check, now))
        for app in transitive_apps(plan.original):
            if app.health_checks and find_app(plan.target, app.id) is None:
                self.publish(events.remove_health_check(str(app.id), now))
        self.root = plan.target
        self.emit(SaveRoot(plan.target))
        self.emit(SaveDeployment(plan.to_record()))
        self.publish(events.group_change_success("/", plan.version, now))
        self.deployments[plan.id] = RunningDeployment(plan, started_at=now, deadline=deadline,
                                                      rollback_on_deadline=rollback)
        self._advance([plan.id], now)
        self._revive()

    def _cancel(self, dep: RunningDeployment, now: float, reason: str) -> None:
        del self.deployments[dep.plan.id]
        self.emit(DeleteDeployment(dep.plan.id))
        if not dep.finished:
            self.publish(events.deployment_step(dep.plan, dep.step, False, now))
        self.publish(events.deployment_done(dep.plan, False, now, reason))

    def _advance(self, ids: Iterable[str], now: float) -> None:
        for dep_id in list(ids):
            dep = self.deployments.get(dep_id)
            if dep is not None and progress(dep, self, now):
                del self.deployments[dep_id]
                self.emit(DeleteDeployment(dep_id))
                self.publish(events.deployment_done(dep.plan, True, now))

    def resume(self, now: float) -> None:
        """A new leader: check the running instances again (health is not stored, as in
        Marathon), and run the stored deployments again from their first step."""
        self._now = now
        for inst in list(self.instances.values()):
            self._watch(inst)
        self._advance(list(self.deployments), now)
        self._revive()

    # -- health and readiness ------------------------------------------------------------------

    def checked_app(self, inst: Instance) -> AppDefinition | None:
        """The definition whose checks `inst` runs: the current one, or during a restart the
        original one its (old) configuration came from."""
        app = find_app(self.root, inst.app_id)
        if app is not None and inst.runs_config(app):
            return app
        for dep in self.deployments.values():
            old = find_app(dep.plan.original, inst.app_id)
            if old is not None and inst.runs_config(old):
                return old
        return None

    def health_result(self, instance_id: str, check_index: int, ok: bool | None, cause: str,
                      now: float) -> None:
        """A Marathon-level check's result (HTTP, HTTPS, TCP) from the checker."""
        self._now = now
        inst = self.instances.get(instance_id)
        app = self.checked_app(inst) if inst is not None else None
        if inst is None or app is None or check_index >= len(app.health_checks):
            return
        for decision in self.checks.marathon_result(inst, app, check_index, ok, cause, now):
            if isinstance(decision, Kill):
                self.kill(inst, now)          # decommissioned: its replacement launches now
                self.queue.failed(app, now)   # and it counts toward backoff, as in Marathon
            else:
                self.outbox.append(decision)
        self.dirty.add(inst.app_id)

    def readiness_result(self, instance_id: str, response: dict[str, Any], now: float) -> None:
        self._now = now
        inst = self.instances.get(instance_id)
        app = find_app(self.root, inst.app_id) if inst is not None else None
        if inst is not None and app is not None and self.checks.readiness_result(inst, app, response):
            self.dirty.add(inst.app_id)

    def _watch(self, inst: Instance) -> None:
        app = self.checked_app(inst) if inst.running else None
        if app is not None and self.checks.watched(app):
            self.emit(WatchChecks(inst, app))

    def _unwatch(self, inst: Instance) -> None:
        self.checks.forget(inst.instance_id)
        self.emit(UnwatchChecks(inst.instance_id))

    def _with_service_ports(self, target: Group) -> Group:
        def ports(root: Group) -> dict[str, tuple[int, ...]]:
            return {str(a.id): tuple(_service_ports(a)) for a in transitive_apps(root)}
        assigned = assign_service_ports(ports(target), ports(self.root),
                                        self.config.local_port_min, self.config.local_port_max)
        for app in transitive_apps(target):
            wanted = assigned[str(app.id)]
            if tuple(_service_ports(app)) != wanted:
                target = put_app(target, _set_service_ports(app, wanted))
        return target

    # -- the launch queue ----------------------------------------------------------------------

    def _demand(self) -> dict[PathId, int]:
        """Instances to launch per app now. An app under deployment launches only when its
        action is current (a later step waits for the steps before it)."""
        steering: dict[PathId, Any] = {}
        for dep in self.deployments.values():
            for app_id in dep.plan.affected_app_ids:
                steering.setdefault(app_id, None)
            for action in dep.current_actions():
                steering[action.app_id] = action
        demand = {}
        for app in transitive_apps(self.root):
            if app.id in steering:
                action = steering[app.id]
                count = launch_demand(action, app, self) if action is not None else 0
            else:
                count = max(0, app.instances - len(self.wanted(app.id)))
            if count:
                demand[app.id] = count
        return demand

    def resource_offers(self, offers: list[proto.Offer], now: float) -> None:
        self._now = now
        demand = self._demand()
        ready = {app_id: n for app_id, n in demand.items() if not self.queue.delayed(app_id, now)}
        apps = [find_app(self.root, app_id) for app_id in self.queue.order(ready, now)]
        for offer in offers:
            launches = self._fill(offer, [a for a in apps if a is not None], ready, now)
            if launches:
                for launch in launches:         # stored first: a successor knows every task
                    self._launched(launch, now)
                self.emit(LaunchTasks(offer.id, tuple(l.task for l in launches)))
            else:
                self.emit(DeclineOffer(offer.id, self._refuse_seconds(demand, now)))
        if not demand and not self._suppressed:
            self._suppressed = True
            self.emit(SuppressOffers())

    def _refuse_seconds(self, demand: dict[PathId, int], now: float) -> float:
        """How long the master should keep a declined offer away: long when nothing is wanted
        (offers are suppressed then too), short when something is, and no longer than until
        the first launch delay ends, so a backed-off app launches when its delay is over."""
        if not demand:
            return self.config.idle_decline_seconds
        delays = [self.queue.delay_left(app_id, now) for app_id in demand]
        waiting = [d for d in delays if d > 0]
        return max(0.1, min([self.config.decline_seconds, *waiting]))

    def _fill(self, offer: proto.Offer, apps: list[AppDefinition], ready: dict[PathId, int],
              now: float) -> list[Launch]:
        matcher = OfferMatcher(offer, now=now, rng=self.rng,
                               env_vars_prefix=self.config.env_vars_prefix)
        launches: list[Launch] = []
        for app in apps:
            placed = self.wanted(app.id)
            used = False
            while ready.get(app.id, 0) > 0:
                result = matcher.try_launch(app, placed)
                if not isinstance(result, Launch):
                    self.queue.rejected(app.id, offer.hostname, result, now)
                    break
                used = True
                launches.append(result)
                placed.append(result.instance)
                ready[app.id] -= 1
            if used:
                self.queue.used(app.id, now)
        return launches

    def _launched(self, launch: Launch, now: float) -> None:
        self._index(launch.instance)
        self.emit(SaveInstance(launch.instance))
        self.publish(events.instance_changed(launch.instance, now))

    def _revive(self) -> None:
        if self._suppressed and self._demand():
            self._suppressed = False
            self.emit(ReviveOffers())

    def reset_delay(self, app_id: PathId, now: float) -> None:
        if find_app(self.root, app_id) is None or not self.queue.knows(app_id):
            raise not_found(f"Application {app_id} not found in tasks queue.")
        self.queue.reset_delay(app_id)
        self._revive()

    # -- task status ---------------------------------------------------------------------------

    def status_update(self, status: proto.TaskStatus, now: float) -> None:
        """Record the update; deployments look at it in the next `flush` (so a burst of
        updates costs one pass over the app's instances, not one per update)."""
        self._now = now
        inst = self.instances.get(instance_id_of(status.task_id))
        if inst is None or inst.task_id != status.task_id:
            if status.state not in proto.TERMINAL_STATES:   # not ours (any more): stop it
                self.emit(KillTask(status.task_id, status.agent_id))
            else:
                self.publish(events.unknown_instance_terminated(status, now))
            return
        if inst.state == status.state and status.healthy in (None, inst.healthy):
            return                                          # a resent or reconciled update
        inst = inst.updated(state=status.state, now=now, message=status.message,
                            healthy=status.healthy, ip_address=status.container_ip)
        self.publish(events.status_update(inst, now))
        self.publish(events.instance_changed(inst, now))
        was_running = self.instances[inst.instance_id].running
        if status.healthy is not None and not inst.terminal:
            for event in self.checks.mesos_result(inst, status.healthy, status.message, now):
                self.publish(event)
        if inst.terminal:
            self._ended(inst, status, now)
        else:
            self._index(inst)
            self.emit(SaveInstance(inst))
            if inst.running and not was_running:
                self._watch(inst)
            elif was_running and not inst.running:
                self._unwatch(inst)           # unreachable or being killed: no checks
        self.dirty.add(inst.app_id)

    def flush(self, now: float) -> None:
        """Let deployments see what changed since the last flush."""
        self._now = now
        dirty, self.dirty = self.dirty, set()
        self._advance([d.plan.id for d in self.deployments.values()
                       if not dirty.isdisjoint(d.plan.affected_app_ids)], now)
        self._revive()

    def _ended(self, inst: Instance, status: proto.TaskStatus, now: float) -> None:
        self._forget(inst)
        self._kills.pop(inst.task_id, None)
        app = find_app(self.root, inst.app_id)
        if inst.goal == GOAL_RUNNING and inst.state in FAILURES and app is not None:
            self.queue.failed(app, now)
        if inst.state in FAILURES or inst.state == proto.TASK_LOST:
            self.last_failures[inst.app_id] = {
                "appId": str(inst.app_id), "host": inst.host, "message": status.message,
                "state": inst.state, "taskId": inst.task_id, "timestamp": format_timestamp(now),
                "version": inst.version, "slaveId": inst.agent_id}

    def kill(self, inst: Instance, now: float) -> None:
        """Decommission `inst` and ask the master to kill it (again after `kill_retry`)."""
        if inst.goal == GOAL_RUNNING:
            inst = inst.decommissioned()
            self._index(inst)
            self.emit(SaveInstance(inst))
        app = find_app(self.root, inst.app_id)
        grace = app.task_kill_grace_period_seconds if app else None
        self._kills[inst.task_id] = now
        self.emit(KillTask(inst.task_id, inst.agent_id, grace))

    def kill_tasks(self, task_ids: list[str], *, scale: bool, force: bool, now: float
                   ) -> list[Instance] | DeploymentResult:
        """`DELETE .../tasks`, `POST /v2/tasks/delete`: kill (and forget, or replace) them."""
        self._now = now
        found = []
        for task_id in task_ids:
            inst = self.instances.get(instance_id_of(task_id))
            if inst is None or inst.task_id != task_id:
                raise not_found(f"Task '{task_id}' does not exist")
            found.append(inst)
        if scale:
            return self._scale_down(found, force, now)
        for inst in found:
            self._kills[inst.task_id] = now
            self.emit(KillTask(inst.task_id, inst.agent_id))   # goal stays Running: replaced
        return found

    def _scale_down(self, found: list[Instance], force: bool, now: float) -> DeploymentResult:
        by_app: dict[PathId, list[str]] = {}
        for inst in found:
            by_app.setdefault(inst.app_id, []).append(inst.instance_id)

        def change(root: Group) -> Group:
            for app_id, ids in by_app.items():
                app = find_app(root, app_id)
                if app is not None:
                    root = put_app(root, dataclasses.replace(
                        app, instances=max(0, app.instances - len(ids))))
            return root
        result = self.deploy(change, force=force, now=now,
                             to_kill={k: tuple(v) for k, v in by_app.items()})
        assert isinstance(result, DeploymentResult)
        return result

    def app_stopped(self, app_id: PathId, now: float) -> None:
        for inst in self.app_instances(app_id):
            self._forget(inst)
        self.queue.forget(app_id)
        self.last_failures.pop(app_id, None)
        self.publish(events.app_terminated(str(app_id), now))

    # -- framework ---------------------------------------------------------------------------

    def registered(self, framework_id: str, master: str, now: float, first: bool) -> None:
        self._now = now
        if framework_id != self.framework_id:
            self.framework_id = framework_id
            self.emit(SaveFrameworkId(framework_id))
        self.publish(events.scheduler_registered(framework_id, master, now) if first
                     else events.scheduler_reregistered(master, now))
        self.reconcile()
        self._suppressed = False
        self.emit(ReviveOffers())

    def disconnected(self, now: float) -> None:
        """The driver lost the master (it reconnects by itself)."""
        self.publish(events.scheduler_disconnected(now))

    def reconcile(self) -> None:
        """Explicit for what we know, then implicit, so tasks we forgot are reported (and killed)."""
        known = tuple((i.task_id, i.agent_id) for i in self.instances.values() if i.active)
        if known:
            self.emit(Reconcile(known))
        self.emit(Reconcile())

    def tick(self, now: float) -> None:
        """What waits on time: launch timeouts, kill retries, unreachable instances to expunge,
        deployments past their deadline, instances beyond an app's count (scale check)."""
        self._now = now
        for inst in list(self.instances.values()):
            if inst.state == proto.TASK_STAGING and now - inst.staged_at > self.config.task_launch_timeout:
                self.kill(inst, now)
            elif inst.state == proto.TASK_UNREACHABLE:
                self._expunge_if_due(inst, now)
            sent = self._kills.get(inst.task_id)
            if sent is not None and now - sent > self.config.kill_retry and inst.active:
                self._kills[inst.task_id] = now
                self.emit(KillTask(inst.task_id, inst.agent_id))
        for dep in list(self.deployments.values()):
            if dep.deadline is not None and now >= dep.deadline:
                self._missed_deadline(dep, now)
        self._advance(list(self.deployments), now)
        self._scale_check(now)
        self._revive()

    def _expunge_if_due(self, inst: Instance, now: float) -> None:
        """Forget an instance unreachable for `expungeAfterSeconds` (kill it, should it return)."""
        if now - inst.updated_at >= _unreachable(find_app(self.root, inst.app_id))[1]:
            self.emit(KillTask(inst.task_id, inst.agent_id))
            self._forget(inst)
            self.dirty.add(inst.app_id)

    def _scale_check(self, now: float) -> None:
        """An app no deployment steers with more wanted instances than it asks for (an
        unreachable instance came back after its replacement started): kill the extra."""
        steered = {a for d in self.deployments.values() for a in d.plan.affected_app_ids}
        for app_id in list(self._by_app):
            app = find_app(self.root, app_id)
            if app is not None and app_id not in steered and len(self.wanted(app_id)) > app.instances:
                kill_excess(app, self, now)

    def _missed_deadline(self, dep: RunningDeployment, now: float) -> None:
        waiting = "; ".join(f"{a.app_id}: {a.waiting}" for a in dep.view(self).current_actions
                            if a.waiting)
        reason = f"deadline of {dep.deadline - dep.started_at:g}s passed ({waiting or 'no progress'})"
        log.warning("deployment missed its deadline", deployment=dep.plan.id, reason=reason)
        self._cancel(dep, now, reason)
        if dep.rollback_on_deadline:
            self.deploy(lambda root: revert(dep.plan, root), force=True, now=now)

    # -- plumbing ----------------------------------------------------------------------------

    def emit(self, instruction: Instruction) -> None:
        self.outbox.append(instruction)

    def publish(self, event: dict[str, Any]) -> None:
        self.outbox.append(Publish(event))

    def take(self) -> list[Instruction]:
        out, self.outbox = self.outbox, []
        return out

    def _index(self, inst: Instance) -> None:
        self.instances[inst.instance_id] = inst
        self._by_app.setdefault(inst.app_id, {})[inst.instance_id] = inst

    def _forget(self, inst: Instance) -> None:
        if self.instances.pop(inst.instance_id, None) is not None:
            self.emit(DeleteInstance(inst.instance_id))
        self._unwatch(inst)
        app = self._by_app.get(inst.app_id)
        if app is not None:
            app.pop(inst.instance_id, None)
            if not app:
                del self._by_app[inst.app_id]


def _reason(exc: Exception) -> str:
    """A rejected change in words, for `group_change_failed`."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and "message" in body:
        return str(body["message"])
    to_json = getattr(exc, "to_json", None)
    if callable(to_json):
        details = to_json().get("details", [])
        return "; ".join(f"{d['path']}: {', '.join(d['errors'])}" for d in details) or str(exc)
    return str(exc)


def _unreachable(app: AppDefinition | None) -> tuple[float, float]:
    """(inactiveAfterSeconds, expungeAfterSeconds); `disabled`: never (infinity)."""
    strategy = app.unreachable_strategy if app is not None else None
    if not isinstance(strategy, dict):
        return (math.inf, math.inf) if strategy == "disabled" else (0.0, 0.0)
    return (float(strategy.get("inactiveAfterSeconds", 0)),
            float(strategy.get("expungeAfterSeconds", 0)))


def _service_ports(app: AppDefinition) -> list[int]:
    if app.network_mode == "host":
        return [d.get("port", 0) for d in app.port_definitions]
    return [m.get("servicePort", 0) for m in (app.container or {}).get("portMappings", [])]


def _set_service_ports(app: AppDefinition, ports: tuple[int, ...]) -> AppDefinition:
    if app.network_mode == "host":
        defs = [{**d, "port": p} for d, p in zip(app.port_definitions, ports)]
        return dataclasses.replace(app, port_definitions=defs)
    container = dict(app.container or {})
    container["portMappings"] = [{**m, "servicePort": p}
                                 for m, p in zip(container.get("portMappings", []), ports)]
    return dataclasses.replace(app, container=container)

