"""Running a deployment plan: one step after the other, the actions of a step side by side.

The executor is level-triggered, in the style of a state machine with instructions: after every
change the core calls `progress(deployment, core, now)`, which looks at the app's instances as
they are now and issues what is missing (kills through the core; launches happen through the
core's launch demand, which asks `launch_demand` below). Running it twice in a row does
nothing the second time, and a new leader can resume a stored plan from its first step: done
actions find nothing to do.

    action              on entering                         done when
    StartApplication    -                                   at once
    ScaleApplication    kill the sentenced and the excess   no killed instance left, scale_to ready
    RestartApplication  restart.next_actions, again after   restart.RestartState.finished
                        every change (kill old, start new)
    StopApplication     kill every instance                 none left

Unlike Marathon, an action says what it waits for (`waiting`): instances still to launch and
why offers did not fit, instances failing, health or readiness pending.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from meseta.frameworks.marathon import events
from meseta.frameworks.marathon.app import AppDefinition
from meseta.frameworks.marathon.constraints import KillCandidate, parse_constraints, select_for_kill
from meseta.frameworks.marathon.group import find_app
from meseta.frameworks.marathon.instances import GOAL_RUNNING, Instance
from meseta.frameworks.marathon.pathid import PathId
from meseta.frameworks.marathon.plan import (ACTION_RESTART, ACTION_SCALE, ACTION_START,
                                             ACTION_STOP, Action, DeploymentPlan)
from meseta.frameworks.marathon.restart import RestartState, next_actions
from meseta.frameworks.marathon.snapshot import CurrentAction, DeploymentView

if TYPE_CHECKING:
    from meseta.frameworks.marathon.core import MarathonCore

__all__ = ["RunningDeployment", "progress", "launch_demand", "kill_excess"]


@dataclass
class RunningDeployment:
    plan: DeploymentPlan
    started_at: float
    deadline: float | None = None   # when it fails if not done (None: never, as Marathon)
    rollback_on_deadline: bool = False
    step: int = 0                   # 0-based index of the step being run
    entered: bool = False           # the current step's entry kills are issued
    done: set[PathId] = field(default_factory=set)        # finished actions of the step

    @property
    def finished(self) -> bool:
        return self.step >= len(self.plan.steps)

    def current_actions(self) -> tuple[Action, ...]:
        return () if self.finished else self.plan.steps[self.step].actions

    def action_for(self, app_id: PathId) -> Action | None:
        for action in self.current_actions():
            if action.app_id == app_id:
                return action
        return None

    def view(self, core: MarathonCore) -> DeploymentView:
        actions = tuple(CurrentAction(a.action, a.app_id, _readiness(a, core),
                                      waiting="" if a.app_id in self.done else _describe(a, core))
                        for a in self.current_actions())
        return DeploymentView(self.plan, min(self.step + 1, len(self.plan.steps)), actions)


def progress(dep: RunningDeployment, core: MarathonCore, now: float) -> bool:
    """Advance `dep` as far as it goes now; True when the whole plan is done."""
    while not dep.finished:
        if not dep.entered:
            dep.entered = True
            dep.done.clear()
            core.publish(events.deployment_info(dep.plan, dep.step, now))
            for action in dep.current_actions():
                _enter(action, core, now)
        for action in dep.current_actions():
            if action.app_id not in dep.done and _check(action, core, now):
                dep.done.add(action.app_id)
        if len(dep.done) < len(dep.current_actions()):
            return False
        core.publish(events.deployment_step(dep.plan, dep.step, True, now))
        dep.step += 1
        dep.entered = False
    return True


def launch_demand(action: Action, app: AppDefinition, core: MarathonCore) -> int:
    """How many instances of `app` the current action wants launched now."""
    if action.action == ACTION_SCALE:
        return max(0, app.instances - len(core.wanted(app.id)))
    if action.action == ACTION_RESTART:
        return next_actions(_restart_state(app, core)).start_new
    return 0


# -- actions -----------------------------------------------------------------------------------

def _enter(action: Action, core: MarathonCore, now: float) -> None:
    if action.action == ACTION_STOP:
        for inst in core.app_instances(action.app_id):
            core.kill(inst, now)
    elif action.action == ACTION_SCALE:
        app = find_app(core.root, action.app_id)
        if app is not None:
            kill_excess(app, core, now, sentenced=action.sentenced)


def _check(action: Action, core: MarathonCore, now: float) -> bool:
    app_id = action.app_id
    if action.action == ACTION_START:
        return True
    if action.action == ACTION_STOP:
        if any(i.active for i in core.app_instances(app_id)):
            return False
        core.app_stopped(app_id, now)
        return True
    app = find_app(core.root, app_id)
    if app is None:      # removed by a forced deployment since: nothing left to do here
        return True
    if action.action == ACTION_RESTART:
        return _restart(app, core, now)
    dying, ready = _scale_counts(app, core)
    return not dying and ready >= app.instances


def _scale_counts(app: AppDefinition, core: MarathonCore) -> tuple[int, int]:
    dying = sum(1 for i in core.app_instances(app.id) if i.active and i.goal != GOAL_RUNNING)
    return dying, sum(1 for i in core.wanted(app.id) if core.is_ready(i, app))


def _restart(app: AppDefinition, core: MarathonCore, now: float) -> bool:
    state = _restart_state(app, core)
    if state.finished:
        return True
    kill = next_actions(state).kill_old
    if kill:
        old = [i for i in core.wanted(app.id) if not i.runs_config(app)]
        for inst in _kill_order(old, app, core, kill):
            core.kill(inst, now)
    return False


def _readiness(action: Action, core: MarathonCore) -> tuple[dict, ...]:
    return tuple(r for i in core.app_instances(action.app_id)
                 for r in core.checks.readiness_results(i.instance_id))


def _describe(action: Action, core: MarathonCore) -> str:
    """What an unfinished action waits for, in words."""
    if action.action == ACTION_START:
        return ""
    if action.action == ACTION_STOP:
        left = sum(1 for i in core.app_instances(action.app_id) if i.active)
        return f"{left} instances still terminating"
    app = find_app(core.root, action.app_id)
    if app is None:
        return ""
    if action.action == ACTION_RESTART:
        state = _restart_state(app, core)
        return core.waiting_reason(app, state.new_ready, state.old_killing, old=state.old_running)
    dying, ready = _scale_counts(app, core)
    return core.waiting_reason(app, ready, dying)


def _restart_state(app: AppDefinition, core: MarathonCore) -> RestartState:
    old_running = old_unhealthy = old_killing = new_ready = new_staged = 0
    for inst in core.app_instances(app.id):
        if not inst.active:
            continue
        current = inst.runs_config(app)
        if inst.goal != GOAL_RUNNING:
            old_killing += not current
            continue
        ready = core.is_ready(inst, app)
        if current:
            new_ready += ready
            new_staged += not ready
        else:
            old_running += 1
            old_unhealthy += not ready
    return RestartState(app.instances, app.upgrade_strategy, app.is_resident, old_running,
                        old_unhealthy, old_killing, new_ready, new_staged)


def kill_excess(app: AppDefinition, core: MarathonCore, now: float,
                sentenced: tuple[str, ...] = ()) -> None:
    """Scale down to `app.instances`: the sentenced first, then Marathon's kill selection."""
    wanted = core.wanted(app.id)
    excess = len(wanted) - app.instances
    if excess <= 0 and not sentenced:
        return
    for inst in _kill_order(wanted, app, core, max(0, excess), sentenced):
        core.kill(inst, now)


def _kill_order(instances: list[Instance], app: AppDefinition, core: MarathonCore, count: int,
                sentenced: tuple[str, ...] = ()) -> list[Instance]:
    by_id = {i.instance_id: i for i in instances}
    candidates = [KillCandidate(i.instance_id, i.host, i.agent_attributes,
                                i.started_at or i.staged_at, i.state,
                                core.is_ready(i, app) if app.health_checks else None)
                  for i in instances]
    chosen = select_for_kill(candidates, parse_constraints(list(map(list, app.constraints))),
                             count, app.kill_selection, sentenced)
    return [by_id[c.instance_id] for c in chosen]
