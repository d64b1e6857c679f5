"""The Marathon core driven as a state machine: offers and status updates in, instructions out.
No sockets, threads or sleeps; time is passed in."""
from __future__ import annotations

import dataclasses
import itertools

import pytest

from meseta import proto
from meseta.frameworks.marathon.app import AppDefinition
from meseta.frameworks.marathon.core import CoreConfig, MarathonCore, StoredState
from meseta.frameworks.marathon.errors import ApiError
from meseta.frameworks.marathon.group import empty_root, find_app, put_app, remove_app
from meseta.frameworks.marathon.instructions import (DeclineOffer, KillTask, LaunchTasks, Publish,
                                                     SaveDeployment, SaveRoot)
from meseta.frameworks.marathon.pathid import PathId
from meseta.frameworks.marathon.plan import DeploymentPlan
from meseta.resources import Resources


class Harness:
    def __init__(self, **config) -> None:
        self.core = MarathonCore(CoreConfig(**config), StoredState(empty_root()))
        self.now = 1_700_000_000.0
        self.offer_ids = itertools.count(1)
        self.events: list[dict] = []
        self.kills: list[str] = []
        self.saved_roots = []
        self.deployment_records: dict[str, dict] = {}

    def drain(self):
        out = self.core.take()
        for ins in out:
            if isinstance(ins, Publish):
                self.events.append(ins.event)
            elif isinstance(ins, KillTask):
                self.kills.append(ins.task_id)
            elif isinstance(ins, SaveRoot):
                self.saved_roots.append(ins.root)
            elif isinstance(ins, SaveDeployment):
                self.deployment_records[ins.record["id"]] = ins.record
        return out

    def tick(self, seconds: float = 0.1) -> None:
        self.now += seconds

    def deploy(self, change, force=False, **kw):
        result = self.core.deploy(change, force=force, now=self.now, **kw)
        self.drain()
        return result

    def put(self, body: dict, force=False):
        app = AppDefinition.from_json(body)
        return self.deploy(lambda root: put_app(root, app), force=force)

    def offer(self, host="agent1", cpus=4.0, mem=2048.0, ports="[31000-31999]", attributes=None):
        n = next(self.offer_ids)
        res = Resources.parse(f"cpus:{cpus};mem:{mem};disk:1000;ports:{ports}")
        return proto.Offer(id=f"O{n}", framework_id="F", agent_id=f"S-{host}", hostname=host,
                           role="*", resources=res, attributes=dict(attributes or {}))

    def offers(self, *offers) -> list[proto.TaskInfo]:
        self.core.resource_offers(list(offers or [self.offer()]), now=self.now)
        return [t for ins in self.drain() if isinstance(ins, LaunchTasks) for t in ins.tasks]

    def status(self, task_id: str, state: str, healthy=None) -> None:
        self.core.status_update(proto.TaskStatus(task_id=task_id, state=state, healthy=healthy,
                                                 agent_id="S-agent1", timestamp=self.now),
                                now=self.now)
        self.core.flush(self.now)
        self.drain()

    def run(self, tasks) -> None:
        for task in tasks:
            self.status(task.task_id, proto.TASK_RUNNING)

    def active(self, app_id="/web"):
        return [i for i in self.core.app_instances(PathId.parse(app_id)) if i.active]

    def event_types(self):
        return [e["eventType"] for e in self.events]


def app(instances=3, **extra):
    return {"id": "/web", "cmd": "sleep 3600", "cpus": 0.1, "mem": 32, "instances": instances, **extra}


def test_create_scale_up_and_finish():
    h = Harness()
    result = h.put(app(3))
    assert h.core.deployments and result.deployment_id in h.core.deployments
    tasks = h.offers()
    assert len(tasks) == 3
    assert {t.name for t in tasks} == {"web"}
    assert all(t.task_id.startswith("web.instance-") and t.task_id.endswith("._app.1") for t in tasks)
    assert h.core.deployments, "not done until the tasks run"
    h.run(tasks)
    assert not h.core.deployments
    types = h.event_types()
    assert types[0] == "group_change_success"
    assert types.index("deployment_info") < types.index("deployment_step_success")
    assert types[-1] == "deployment_success"
    assert types.count("status_update_event") == 3


def test_offers_beyond_demand_are_declined_then_suppressed():
    h = Harness()
    h.put(app(1))
    h.run(h.offers())
    h.core.resource_offers([h.offer()], now=h.now)
    out = h.drain()
    assert any(isinstance(i, DeclineOffer) and i.refuse_seconds == 120.0 for i in out)
    assert any(type(i).__name__ == "SuppressOffers" for i in out)


def test_scale_down_kills_youngest_and_forgets_them():
    h = Harness()
    h.put(app(3))
    tasks = h.offers()
    for task in tasks:
        h.tick()
        h.status(task.task_id, proto.TASK_RUNNING)
    h.put(app(1))
    assert len(h.kills) == 2
    youngest = [t.task_id for t in tasks[1:]]
    assert sorted(h.kills) == sorted(youngest)
    for task_id in h.kills:
        h.status(task_id, proto.TASK_KILLED)
    assert not h.core.deployments
    assert [i.task_id for i in h.active()] == [tasks[0].task_id]


@pytest.mark.parametrize("strategy,first_kills,first_launches", [
    ({"minimumHealthCapacity": 1, "maximumOverCapacity": 1}, 0, 4),
    ({"minimumHealthCapacity": 0, "maximumOverCapacity": 0}, 4, 0),
    ({"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0}, 2, 0),  # killed ones hold capacity
])
def test_rolling_restart_follows_the_upgrade_strategy(strategy, first_kills, first_launches):
    h = Harness()
    h.put(app(4, upgradeStrategy=strategy))
    h.run(h.offers())
    h.kills.clear()
    h.put(app(4, upgradeStrategy=strategy, env={"COLOUR": "blue"}))
    assert len(h.kills) == first_kills
    new = h.offers()
    assert len(new) == first_launches
    floor = {0: 0, 1: 4, 0.5: 2}[strategy["minimumHealthCapacity"]]
    # drive to the end, checking the floor of running instances of either version
    for _ in range(20):
        for task_id in list(h.kills):
            h.status(task_id, proto.TASK_KILLED)
            h.kills.remove(task_id)
        running = [i for i in h.active() if i.running and i.goal == "Running"]
        assert len(running) >= min(floor, 4) or not h.core.deployments
        for task in new:
            h.status(task.task_id, proto.TASK_RUNNING)
        new = h.offers()
        if not h.core.deployments:
            break
    assert not h.core.deployments
    web = find_app(h.core.root, PathId.parse("/web"))
    assert len(h.active()) == 4 and all(i.runs_config(web) for i in h.active())


def test_dependencies_deploy_in_order():
    h = Harness()
    from meseta.frameworks.marathon.group import Group, put_group
    group = Group.from_json({"id": "/shop", "apps": [
        {"id": "db", "cmd": "sleep 1", "cpus": 0.1, "mem": 16},
        {"id": "web", "cmd": "sleep 1", "cpus": 0.1, "mem": 16, "dependencies": ["db"]}]})
    h.deploy(lambda root: put_group(root, group))
    first = h.offers()
    assert [t.name for t in first] == ["db.shop"]
    h.run(first)
    second = h.offers()
    assert [t.name for t in second] == ["web.shop"]
    h.run(second)
    assert not h.core.deployments


def test_conflicting_deployment_is_refused_unless_forced():
    h = Harness()
    first = h.put(app(2))
    with pytest.raises(ApiError) as info:
        h.put(app(3))
    assert info.value.status == 409
    assert info.value.body["deployments"] == [{"id": first.deployment_id}]
    second = h.put(app(3), force=True)
    assert list(h.core.deployments) == [second.deployment_id]
    assert "deployment_failed" in h.event_types()


def test_failed_task_is_replaced_after_backoff():
    h = Harness()
    h.put(app(1, backoffSeconds=2, backoffFactor=2))
    [task] = h.offers()
    h.status(task.task_id, proto.TASK_RUNNING)
    h.status(task.task_id, proto.TASK_FAILED)
    assert h.core.last_failures[PathId.parse("/web")]["taskId"] == task.task_id
    h.tick(1.0)
    assert h.offers() == []
    entry = h.core.snapshot(h.now).queue[PathId.parse("/web")]
    assert 0 < entry.delay.time_left_seconds <= 1.0 and not entry.delay.overdue
    h.tick(1.5)
    [again] = h.offers()
    assert again.task_id != task.task_id
    h.status(again.task_id, proto.TASK_FAILED)
    h.tick(3.0)
    assert h.offers() == []                    # the delay doubled to 4 s
    h.core.reset_delay(PathId.parse("/web"), h.now)
    assert len(h.offers()) == 1


def test_unknown_task_is_killed():
    h = Harness()
    h.status("ghost.instance-1._app.1", proto.TASK_RUNNING)
    assert h.kills == ["ghost.instance-1._app.1"]


def test_why_waiting_names_the_offer_reasons():
    h = Harness()
    h.put(app(1, mem=4096))
    assert h.offers() == []
    snap = h.core.snapshot(h.now)
    entry = snap.queue[PathId.parse("/web")]
    assert entry.offers.reject_summary_last_offers.get("InsufficientMemory") == 1
    [view] = snap.deployments
    waiting = " ".join(a.waiting for a in view.current_actions)
    assert "InsufficientMemory" in waiting and "0 of 1" in waiting


def test_kill_and_scale_sentences_those_tasks():
    h = Harness()
    h.put(app(3))
    tasks = h.offers()
    h.run(tasks)
    result = h.core.kill_tasks([tasks[1].task_id], scale=True, force=False, now=h.now)
    h.drain()
    assert result.deployment_id in h.core.deployments
    assert h.kills == [tasks[1].task_id]
    assert find_app(h.core.root, PathId.parse("/web")).instances == 2
    h.status(tasks[1].task_id, proto.TASK_KILLED)
    assert not h.core.deployments


def test_kill_without_scale_is_replaced():
    h = Harness()
    h.put(app(1))
    [task] = h.offers()
    h.run([task])
    killed = h.core.kill_tasks([task.task_id], scale=False, force=False, now=h.now)
    h.drain()
    assert [i.task_id for i in killed] == [task.task_id]
    h.status(task.task_id, proto.TASK_KILLED)
    assert len(h.offers()) == 1                # TASK_KILLED does not back off


def test_delete_stops_every_instance():
    h = Harness()
    h.put(app(2))
    h.run(h.offers())
    h.deploy(lambda root: remove_app(root, PathId.parse("/web")))
    assert len(h.kills) == 2
    for task_id in h.kills:
        h.status(task_id, proto.TASK_KILLED)
    assert not h.core.deployments and not h.active()
    assert "app_terminated_event" in h.event_types()


def test_rollback_reverts_the_plan():
    h = Harness()
    h.put(app(1))
    h.run(h.offers())
    stuck = h.put(app(1, mem=99999))             # never fits: the deployment waits
    assert stuck.deployment_id in h.core.deployments
    result = h.core.rollback(stuck.deployment_id, force=False, now=h.now)
    h.drain()
    assert find_app(h.core.root, PathId.parse("/web")).mem == 32
    assert stuck.deployment_id not in h.core.deployments
    h.offers()
    assert not h.core.deployments or result.deployment_id in h.core.deployments


def test_service_ports_are_assigned_and_kept():
    h = Harness()
    h.put(app(0))
    web = find_app(h.core.root, PathId.parse("/web"))
    assert [d["port"] for d in web.port_definitions] == [10000]
    h.put(app(0), force=True)                  # the default port definition again: port 0
    again = find_app(h.core.root, PathId.parse("/web"))
    assert [d["port"] for d in again.port_definitions] == [10000]
    assert again.version == web.version          # re-posting a 0 changes nothing


def test_a_new_leader_resumes_a_stored_deployment():
    h = Harness()
    h.put(app(3))
    tasks = h.offers()
    h.status(tasks[0].task_id, proto.TASK_RUNNING)
    [record] = h.deployment_records.values()
    roots = {r.version: r for r in h.saved_roots}
    plan = DeploymentPlan.from_record(record, roots.__getitem__)
    instances = list(h.core.instances.values())
    fresh = MarathonCore(CoreConfig(), StoredState(h.core.root, [plan], instances, "F"))
    h.core = fresh
    h.core.resume(h.now)
    h.drain()
    assert h.offers() == []                      # all three were launched: nothing to add
    for task in tasks[1:]:
        h.status(task.task_id, proto.TASK_RUNNING)
    assert not h.core.deployments


def test_launch_timeout_kills_a_task_stuck_staging():
    h = Harness(task_launch_timeout=10)
    h.put(app(1))
    [task] = h.offers()
    h.tick(11)
    h.core.tick(h.now)
    h.drain()
    assert h.kills == [task.task_id]


def unreachable(h, task_id):
    h.status(task_id, proto.TASK_UNREACHABLE)


def test_unreachable_instance_is_replaced_after_inactive_and_forgotten_after_expunge():
    h = Harness()
    h.put(app(1, unreachableStrategy={"inactiveAfterSeconds": 60, "expungeAfterSeconds": 120}))
    [task] = h.offers()
    h.status(task.task_id, proto.TASK_RUNNING)
    unreachable(h, task.task_id)
    h.tick(10)
    assert h.offers() == []                     # still counted: it may come back
    h.tick(51)
    h.core.tick(h.now)
    h.drain()
    [replacement] = h.offers()
    h.status(replacement.task_id, proto.TASK_RUNNING)
    h.tick(60)
    h.core.tick(h.now)
    h.drain()
    assert task.task_id in h.kills              # expunged: killed should it ever return
    assert [i.task_id for i in h.active()] == [replacement.task_id]


def test_unreachable_instance_that_returns_after_replacement_is_scaled_away():
    h = Harness()
    h.put(app(1))                               # default strategy: replaced at once
    [task] = h.offers()
    h.status(task.task_id, proto.TASK_RUNNING)
    h.status(task.task_id, proto.TASK_UNREACHABLE)
    h.core.tick(h.now)
    h.drain()
    assert task.task_id in h.kills              # expungeAfterSeconds 0: forgotten at once
    [replacement] = h.offers()
    h.status(replacement.task_id, proto.TASK_RUNNING)
    h.status(task.task_id, proto.TASK_RUNNING)  # back, but unknown now: killed
    assert h.kills.count(task.task_id) == 2


def test_disabled_unreachable_strategy_never_replaces():
    h = Harness()
    h.put(app(1, unreachableStrategy="disabled"))
    [task] = h.offers()
    h.status(task.task_id, proto.TASK_RUNNING)
    unreachable(h, task.task_id)
    h.tick(10_000)
    h.core.tick(h.now)
    h.drain()
    assert h.offers() == [] and task.task_id not in h.kills


def test_deployment_deadline_fails_and_rolls_back():
    h = Harness(deployment_deadline=30, deployment_deadline_rollback=True)
    h.put(app(1))
    h.run(h.offers())
    stuck = h.put(app(1, mem=99999))
    assert h.offers() == []
    h.tick(31)
    h.core.tick(h.now)
    h.drain()
    failed = [e for e in h.events if e["eventType"] == "deployment_failed"]
    assert failed and failed[-1]["id"] == stuck.deployment_id
    assert "deadline of 30s passed" in failed[-1]["reason"]
    assert "InsufficientMemory" in failed[-1]["reason"]
    assert find_app(h.core.root, PathId.parse("/web")).mem == 32
    assert stuck.deployment_id not in h.core.deployments


def test_deployments_have_no_deadline_by_default():
    h = Harness()
    stuck = h.put(app(1, mem=99999))
    h.tick(100_000)
    h.core.tick(h.now)
    h.drain()
    assert stuck.deployment_id in h.core.deployments


def test_health_check_events_follow_the_app_versions():
    h = Harness()
    check = {"protocol": "MESOS_TCP", "portIndex": 0}
    h.put(app(1, healthChecks=[check]))
    added = [e for e in h.events if e["eventType"] == "add_health_check_event"]
    assert len(added) == 1 and added[0]["appId"] == "/web"
    assert added[0]["healthCheck"]["protocol"] == "MESOS_TCP"
    h.events.clear()
    h.put(app(1), force=True)
    assert [e["eventType"] for e in h.events if "health_check" in e["eventType"]] == \
        ["remove_health_check_event"]


def test_terminal_update_of_an_unknown_task_is_an_event():
    h = Harness()
    h.status("web.instance-gone._app.1", proto.TASK_KILLED)
    [event] = [e for e in h.events if e["eventType"] == "unknown_instance_terminated_event"]
    assert event["instanceId"] == "web.instance-gone" and event["runSpecId"] == "/web"
    assert event["condition"] == "Killed" and not h.kills


def watched(h):
    return [i for i in h.drain() if type(i).__name__ == "WatchChecks"]


def test_marathon_checks_gate_the_deployment_and_kill_after_failures():
    h = Harness()
    check = {"protocol": "HTTP", "path": "/", "portIndex": 0, "gracePeriodSeconds": 0,
             "maxConsecutiveFailures": 2}
    h.put(app(1, healthChecks=[check], portDefinitions=[{"port": 0}]))
    [task] = h.offers()
    h.core.status_update(proto.TaskStatus(task.task_id, proto.TASK_RUNNING), now=h.now)
    [watch] = watched(h)
    assert watch.instance.task_id == task.task_id
    h.core.flush(h.now)
    h.drain()
    assert h.core.deployments, "running is not enough: the check has not passed"
    iid = watch.instance.instance_id
    h.core.health_result(iid, 0, True, "", h.now)
    h.core.flush(h.now)
    h.drain()
    assert not h.core.deployments
    assert h.core.snapshot(h.now).health[iid][0]["alive"] is True
    for _ in range(2):
        h.tick(1)
        h.core.health_result(iid, 0, False, "503", h.now)
    h.drain()
    assert h.kills == [task.task_id]
    assert "unhealthy_instance_kill_event" in h.event_types()


def test_mesos_health_from_status_updates_is_recorded():
    h = Harness()
    h.put(app(1, healthChecks=[{"protocol": "MESOS_TCP", "portIndex": 0}],
              portDefinitions=[{"port": 0}]))
    [task] = h.offers()
    h.status(task.task_id, proto.TASK_RUNNING)
    assert h.core.deployments
    h.status(task.task_id, proto.TASK_RUNNING, healthy=True)
    assert not h.core.deployments
    [inst] = h.active()
    [record] = h.core.snapshot(h.now).health[inst.instance_id]
    assert record["alive"] is True and record["instanceId"] == inst.instance_id
    h.status(task.task_id, proto.TASK_RUNNING, healthy=False)
    [record] = h.core.snapshot(h.now).health[inst.instance_id]
    assert record["alive"] is False
    flips = [e["alive"] for e in h.events if e["eventType"] == "health_status_changed_event"]
    assert flips == [True, False]


def test_readiness_holds_the_deployment_until_ready():
    h = Harness()
    h.put(app(1, portDefinitions=[{"port": 0, "name": "http"}],
              readinessChecks=[{"portName": "http", "path": "/ready"}]))
    [task] = h.offers()
    h.core.status_update(proto.TaskStatus(task.task_id, proto.TASK_RUNNING), now=h.now)
    [watch] = watched(h)
    iid = watch.instance.instance_id
    h.core.readiness_result(iid, {"status": 503, "contentType": "text/plain", "body": "no"}, h.now)
    h.core.flush(h.now)
    h.drain()
    assert h.core.deployments
    h.core.readiness_result(iid, {"status": 200, "contentType": "text/plain", "body": "ok"}, h.now)
    h.core.flush(h.now)
    h.drain()
    assert not h.core.deployments


def test_rejected_changes_and_cancelled_steps_are_events():
    h = Harness()
    h.put(app(1, mem=99999))                    # waits for offers that never fit
    with pytest.raises(ApiError):
        h.put(app(2))
    h.drain()
    [failed] = [e for e in h.events if e["eventType"] == "group_change_failed"]
    assert failed["groupId"] == "/" and "locked" in failed["reason"]
    h.put(app(2), force=True)
    types = h.event_types()
    assert types.index("deployment_step_failure") < types.index("deployment_failed")
    h.core.disconnected(h.now)
    assert h.drain()[-1].event["eventType"] == "scheduler_disconnected_event"
