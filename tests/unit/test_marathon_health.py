"""meseta.frameworks.marathon.health and .readiness: results in, decisions out; time passed in."""
from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meseta import proto
from meseta.frameworks.marathon.app import AppDefinition, VersionInfo, format_timestamp
from meseta.frameworks.marathon.health import (Health, HealthPolicy, HealthTracker, Kill,
                                               marathon_checks)
from meseta.frameworks.marathon.instances import Instance
from meseta.frameworks.marathon.instructions import Publish
from meseta.frameworks.marathon.readiness import ReadinessTracker

T0 = 1_700_000_000.0
NO_BREAKER = HealthPolicy(breaker_min_checked=10**9)


def make_app(app_id="/web", instances=3, mhc=1.0, checks=None, readiness=None, **extra):
    body = {"id": app_id, "cmd": "serve", "instances": instances,
            "portDefinitions": [{"port": 0, "name": "http"}],
            "upgradeStrategy": {"minimumHealthCapacity": mhc, "maximumOverCapacity": 1},
            "healthChecks": checks if checks is not None else [
                {"protocol": "HTTP", "gracePeriodSeconds": 30, "intervalSeconds": 10,
                 "maxConsecutiveFailures": 3}], **extra}
    if readiness is not None:
        body["readinessChecks"] = readiness
    version = format_timestamp(T0 - 3600)
    return dataclasses.replace(AppDefinition.from_json(body), version=version,
                               version_info=VersionInfo(version, version))


def make_instance(app, n=1, started_at=T0, state=proto.TASK_RUNNING, host="agent1"):
    inst = Instance.launched(app, instance_id=f"{app.id.safe_path()}.instance-{n}",
                             agent_id=f"S-{host}", host=host, host_ports=(31000 + n,),
                             now=started_at - 5)
    return inst.updated(state=state, now=started_at)


def events(decisions, kind=None):
    out = [d.event for d in decisions if isinstance(d, Publish)]
    return [e for e in out if kind is None or e["eventType"] == kind]


def kills(decisions):
    return [d for d in decisions if isinstance(d, Kill)]


# -- the record -----------------------------------------------------------------------------------

@pytest.mark.parametrize("last_success, last_failure, alive", [
    (None, None, False),          # no result yet: not alive
    (None, 5.0, False),
    (5.0, None, True),
    (6.0, 5.0, True),
    (5.0, 6.0, False),
    (5.0, 5.0, False),            # a success must be later than the failure
])
def test_alive_rule(last_success, last_failure, alive):
    assert Health("i", last_success=last_success, last_failure=last_failure).alive is alive


def test_success_resets_the_count_and_keeps_the_first_success():
    h = Health("i").failed(1.0, "boom").failed(2.0, "boom")
    assert h.consecutive_failures == 2 and not h.alive
    h = h.succeeded(3.0).succeeded(4.0)
    assert (h.first_success, h.last_success, h.consecutive_failures, h.alive) == (3.0, 4.0, 0, True)
    assert h.last_failure_cause == "boom"


def test_health_json_is_marathons():
    assert Health("web.instance-1").to_json() == {
        "alive": False, "consecutiveFailures": 0, "firstSuccess": None, "lastSuccess": None,
        "lastFailure": None, "lastFailureCause": None, "instanceId": "web.instance-1"}
    h = Health("web.instance-1").succeeded(T0).failed(T0 + 1.5, "HTTP 503")
    assert h.to_json() == {
        "alive": False, "consecutiveFailures": 1, "firstSuccess": "2023-11-14T22:13:20.000Z",
        "lastSuccess": "2023-11-14T22:13:20.000Z", "lastFailure": "2023-11-14T22:13:21.500Z",
        "lastFailureCause": "HTTP 503", "instanceId": "web.instance-1"}


def test_only_http_https_tcp_are_marathons_checks():
    app = make_app(checks=[{"protocol": "COMMAND", "command": {"value": "true"}},
                           {"protocol": "HTTP"}, {"protocol": "TCP"}, {"protocol": "HTTPS"}])
    assert marathon_checks(app) == (1, 2, 3)


# -- which results count ----------------------------------------------------------------------------

@pytest.mark.parametrize("state, ok, index, counted", [
    (proto.TASK_RUNNING, False, 0, True),
    (proto.TASK_RUNNING, None, 0, False),        # 1xx with ignoreHttp1xx
    (proto.TASK_STAGING, False, 0, False),
    (proto.TASK_KILLING, False, 0, False),
    (proto.TASK_UNREACHABLE, False, 0, False),   # unreachable tasks are not judged (#3942)
    (proto.TASK_RUNNING, False, 1, False),       # a COMMAND check: the agent runs it
])
def test_ignored_results(state, ok, index, counted):
    app = make_app(checks=[{"protocol": "HTTP", "gracePeriodSeconds": 0},
                           {"protocol": "COMMAND", "command": {"value": "true"}}])
    inst = make_instance(app, started_at=T0 - 1000)
    inst = dataclasses.replace(inst, state=state)
    tracker = HealthTracker()
    out = tracker.result(inst, app, index, ok, "HTTP 503", T0)
    assert bool(events(out, "failed_health_check_event")) is counted
    assert bool(tracker.results(inst.instance_id)) is counted


@pytest.mark.parametrize("started_ago, passed_before, now_offset, counted", [
    (0, False, 29.9, False),     # inside the 30 s grace period, never passed: ignored
    (0, False, 30.0, True),      # grace over
    (0, True, 10.0, True),       # passed once: failures count even inside the grace period
    (100, False, 0, True),
])
def test_grace_period(started_ago, passed_before, now_offset, counted):
    app = make_app()
    inst = make_instance(app, started_at=T0 - started_ago)
    tracker = HealthTracker()
    if passed_before:
        tracker.result(inst, app, 0, True, "", T0 + 1)
    out = tracker.result(inst, app, 0, False, "refused", T0 + now_offset)
    assert bool(events(out, "failed_health_check_event")) is counted
    results = tracker.results(inst.instance_id)
    assert (results[0]["consecutiveFailures"] if results else 0) == int(counted)


def test_grace_period_runs_from_staged_at_without_started_at():
    app = make_app()
    inst = dataclasses.replace(make_instance(app), started_at=None, staged_at=T0 - 40)
    assert events(HealthTracker().result(inst, app, 0, False, "x", T0), "failed_health_check_event")


# -- events ------------------------------------------------------------------------------------------

def test_events_on_flips_and_failures():
    app = make_app()
    inst = make_instance(app, started_at=T0 - 100)
    tracker = HealthTracker()
    out = tracker.result(inst, app, 0, True, "", T0)
    assert events(out) == [
        {"appId": "/web", "instanceId": inst.instance_id, "version": inst.version, "alive": True,
         "eventType": "health_status_changed_event", "timestamp": format_timestamp(T0)},
        {"instanceId": inst.instance_id, "runSpecId": "/web", "runSpecVersion": inst.version,
         "healthy": True, "eventType": "instance_health_changed_event",
         "timestamp": format_timestamp(T0)}]
    assert tracker.result(inst, app, 0, True, "", T0 + 10) == []    # no flip: nothing
    out = tracker.result(inst, app, 0, False, "HTTP 503", T0 + 20)
    assert [e["eventType"] for e in events(out)] == [
        "failed_health_check_event", "health_status_changed_event",
        "instance_health_changed_event"]
    failed = events(out)[0]
    assert failed == {"appId": "/web", "taskId": inst.instance_id,
                      "healthCheck": app.health_checks[0],
                      "eventType": "failed_health_check_event",
                      "timestamp": format_timestamp(T0 + 20)}
    assert events(out)[1]["alive"] is False and events(out)[2]["healthy"] is False
    out = tracker.result(inst, app, 0, False, "HTTP 503", T0 + 30)
    assert [e["eventType"] for e in events(out)] == ["failed_health_check_event"]


def test_results_have_one_entry_per_marathon_check():
    app = make_app(checks=[{"protocol": "HTTP"}, {"protocol": "COMMAND", "command": {"value": "x"}},
                           {"protocol": "TCP"}])
    inst = make_instance(app)
    tracker = HealthTracker()
    assert tracker.results(inst.instance_id) == ()
    tracker.result(inst, app, 2, True, "", T0)
    first, second = tracker.results(inst.instance_id)
    assert (first["alive"], first["lastSuccess"]) == (False, None)   # not checked yet: not alive
    assert second["alive"] is True
    tracker.forget(inst.instance_id)
    assert tracker.results(inst.instance_id) == ()


# -- kills ---------------------------------------------------------------------------------------------

def fail(tracker, inst, app, times, start=T0, step=10.0, cause="HTTP 503"):
    out = []
    for k in range(times):
        out += tracker.result(inst, app, 0, False, cause, start + k * step)
    return out


@pytest.mark.parametrize("limit, failures, killed", [
    (3, 2, False), (3, 3, True), (1, 1, True), (0, 50, False),   # 0: never killed
])
def test_kill_at_max_consecutive_failures(limit, failures, killed):
    app = make_app(checks=[{"protocol": "HTTP", "gracePeriodSeconds": 0,
                            "maxConsecutiveFailures": limit}])
    inst = make_instance(app, started_at=T0 - 100)
    out = fail(HealthTracker(), inst, app, failures)
    assert bool(kills(out)) is killed


def test_kill_decision_and_event():
    app = make_app()
    inst = make_instance(app, started_at=T0 - 100)
    tracker = HealthTracker()
    fail(tracker, inst, app, 2)
    out = tracker.result(inst, app, 0, False, "timed out after 20s", T0 + 20)
    assert kills(out) == [Kill(inst.instance_id, "timed out after 20s")]
    assert events(out, "unhealthy_instance_kill_event") == [{
        "appId": "/web", "taskId": inst.task_id, "instanceId": inst.instance_id,
        "version": inst.version, "reason": "timed out after 20s", "host": "agent1",
        "slaveId": "S-agent1", "eventType": "unhealthy_instance_kill_event",
        "timestamp": format_timestamp(T0 + 20)}]
    assert kills(fail(tracker, inst, app, 3, start=T0 + 30)) == []   # once is enough
    assert tracker.stats()["marathon/health/kills"] == 1


def test_success_in_between_starts_the_count_again():
    app = make_app()
    inst = make_instance(app, started_at=T0 - 100)
    tracker = HealthTracker()
    fail(tracker, inst, app, 2)
    tracker.result(inst, app, 0, True, "", T0 + 25)
    assert kills(fail(tracker, inst, app, 2, start=T0 + 30)) == []
    assert kills(fail(tracker, inst, app, 1, start=T0 + 50))


def test_a_decommissioned_instance_is_not_killed_again():
    app = make_app()
    inst = make_instance(app, started_at=T0 - 100).decommissioned()
    out = fail(HealthTracker(), inst, app, 5)
    assert kills(out) == [] and events(out, "failed_health_check_event")


# -- rate limit ----------------------------------------------------------------------------------

def fleet(app, n, tracker, now=T0):
    """n instances that have passed their check once."""
    insts = [make_instance(app, k, started_at=T0 - 1000) for k in range(1, n + 1)]
    for inst in insts:
        tracker.result(inst, app, 0, True, "", now)
    return insts


def test_one_health_kill_at_a_time_until_the_replacement_is_healthy():
    app = make_app(instances=3)
    tracker = HealthTracker(NO_BREAKER)
    a, b, c = fleet(app, 3, tracker)
    assert kills(fail(tracker, a, app, 3, start=T0 + 10))
    assert kills(fail(tracker, b, app, 3, start=T0 + 10)) == []          # held
    assert tracker.stats()["marathon/health/kills_held"] == 1
    replacement = make_instance(app, 4, started_at=T0 + 40)
    assert kills(tracker.result(b, app, 0, False, "x", T0 + 45)) == []   # not healthy yet
    tracker.result(replacement, app, 0, True, "", T0 + 46)              # healthy: released
    assert kills(tracker.result(b, app, 0, False, "x", T0 + 50)) == [Kill(b.instance_id, "x")]


def test_a_held_kill_goes_ahead_when_the_slot_expires():
    app = make_app(instances=3)     # expiry: grace 30 + (3 + 1) x interval 10 = 70 s
    tracker = HealthTracker(NO_BREAKER)
    a, b, _ = fleet(app, 3, tracker)
    fail(tracker, a, app, 3, start=T0 + 10)                 # killed at T0 + 30
    assert kills(fail(tracker, b, app, 3, start=T0 + 10)) == []
    assert kills(tracker.result(b, app, 0, False, "x", T0 + 99)) == []
    assert kills(tracker.result(b, app, 0, False, "x", T0 + 100))


def test_apps_are_limited_separately():
    web, api = make_app("/web"), make_app("/api")
    tracker = HealthTracker(NO_BREAKER)
    w1, w2 = fleet(web, 2, tracker)
    (a1,) = fleet(api, 1, tracker)
    assert kills(fail(tracker, w1, web, 3, start=T0 + 10))
    assert kills(fail(tracker, a1, api, 3, start=T0 + 10))
    assert kills(fail(tracker, w2, web, 3, start=T0 + 10)) == []


@pytest.mark.parametrize("mhc, unhealthy, killed", [
    (0.5, 2, 2),     # 2 healthy of 4 >= ceil(4 x 0.5): kills go ahead side by side
    (0.5, 3, 1),     # 1 healthy < 2: one at a time
    (0.75, 2, 1),    # 2 healthy < 3
    (0.0, 4, 4),     # capacity does not matter to this app
])
def test_capacity_the_app_tolerates_allows_more_kills(mhc, unhealthy, killed):
    app = make_app(instances=4, mhc=mhc)
    tracker = HealthTracker(NO_BREAKER)
    insts = fleet(app, 4, tracker)
    out = []
    for k in range(3):       # round after round, as a checker does
        for inst in insts[:unhealthy]:
            out += tracker.result(inst, app, 0, False, "x", T0 + 10 + k)
    assert len(kills(out)) == killed


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.booleans()), max_size=80))
def test_property_each_further_kill_is_paid_for_by_a_healthy_instance(steps):
    """minimumHealthCapacity 1: kills <= 1 + healthy turns of instances not killed."""
    app = make_app(instances=6, checks=[{"protocol": "HTTP", "gracePeriodSeconds": 0,
                                         "maxConsecutiveFailures": 1, "intervalSeconds": 1000}])
    insts = [make_instance(app, k, started_at=T0 - 10) for k in range(6)]
    tracker = HealthTracker(NO_BREAKER)
    killed: set[str] = set()
    turns = 0
    for t, (k, ok) in enumerate(steps):
        out = tracker.result(insts[k], app, 0, ok, "x", T0 + t)
        for e in events(out, "instance_health_changed_event"):
            turns += e["healthy"] is True and e["instanceId"] not in killed
        killed |= {d.instance_id for d in kills(out)}
        assert len(killed) <= 1 + turns


# -- circuit breaker ---------------------------------------------------------------------------------

def test_breaker_opens_when_most_of_the_cluster_fails_and_closes_on_recovery():
    web, api = make_app("/web", instances=6), make_app("/api", instances=6)
    tracker = HealthTracker(HealthPolicy(breaker_ratio=0.5, breaker_min_checked=10))
    insts = [(web, i) for i in fleet(web, 6, tracker)] + [(api, i) for i in fleet(api, 6, tracker)]
    out = []
    for k in range(3):                       # the leader is overloaded: every check times out
        for app, inst in insts:
            out += tracker.result(inst, app, 0, False, "timed out", T0 + 10 + 10 * k)
    assert tracker.breaker_open and kills(out) == []
    assert len(events(out, "failed_health_check_event")) == 36      # still counted and published
    stats = tracker.stats()
    assert (stats["marathon/health/checked"], stats["marathon/health/failing"],
            stats["marathon/health/breaker_open"]) == (12, 12, 1.0)
    for app, inst in insts[1:]:              # it recovers; one instance really is broken
        tracker.result(inst, app, 0, True, "", T0 + 50)
    assert not tracker.breaker_open
    web0 = insts[0][1]
    assert kills(tracker.result(web0, web, 0, False, "timed out", T0 + 60)) == [
        Kill(web0.instance_id, "timed out")]


def test_breaker_needs_enough_checked_targets_and_ignores_grace():
    app = make_app(instances=20)
    tracker = HealthTracker(HealthPolicy(breaker_min_checked=10))
    old = fleet(app, 3, tracker)
    for inst in old:
        tracker.result(inst, app, 0, False, "x", T0 + 1)
    assert not tracker.breaker_open                    # 3 checked: too few to tell
    new = [make_instance(app, k, started_at=T0) for k in range(10, 20)]
    for inst in new:                                   # starting up, within grace
        tracker.result(inst, app, 0, False, "refused", T0 + 2)
    assert not tracker.breaker_open and tracker.stats()["marathon/health/checked"] == 3


def test_forget_leaves_the_breaker_counts():
    app = make_app(instances=12)
    tracker = HealthTracker(HealthPolicy(breaker_min_checked=4))
    insts = fleet(app, 4, tracker)
    for inst in insts[:3]:
        tracker.result(inst, app, 0, False, "x", T0 + 1)
    assert tracker.breaker_open
    for inst in insts[:2]:
        tracker.forget(inst.instance_id)
    assert not tracker.breaker_open                    # 1 of 2: below the minimum again
    assert tracker.stats()["marathon/health/failing"] == 1


# -- readiness -------------------------------------------------------------------------------------

READY = [{"name": "ready", "protocol": "HTTP", "path": "/ready", "portName": "http",
          "intervalSeconds": 5, "timeoutSeconds": 2, "httpStatusCodesForReady": [200, 204],
          "preserveLastResponse": True}]


@pytest.mark.parametrize("status, ready", [(200, True), (204, True), (503, False), (None, False)])
def test_readiness_codes(status, ready):
    app = make_app(readiness=READY)
    inst = make_instance(app)
    tracker = ReadinessTracker()
    assert tracker.result(inst, app, {"status": status, "contentType": None, "body": None}) is ready
    assert tracker.ready(inst, app) is ready


def test_readiness_json_with_and_without_the_last_response():
    app = make_app(readiness=READY)
    inst = make_instance(app)
    tracker = ReadinessTracker()
    assert tracker.results(inst.instance_id) == ()
    tracker.result(inst, app, {"status": 503, "contentType": "text/plain", "body": "warming"})
    assert tracker.results(inst.instance_id) == ({
        "taskId": inst.task_id, "name": "ready", "ready": False,
        "lastResponse": {"status": 503, "contentType": "text/plain", "body": "warming"}},)
    plain = make_app(readiness=[{**READY[0], "preserveLastResponse": False}])
    tracker.result(inst, plain, {"status": 200, "contentType": "text/plain", "body": "ok"})
    assert tracker.results(inst.instance_id) == (
        {"taskId": inst.task_id, "name": "ready", "ready": True},)


def test_ready_is_final_and_only_new_instances_are_gated():
    app = make_app(readiness=READY)
    inst = make_instance(app)
    tracker = ReadinessTracker()
    assert not tracker.ready(inst, app)
    tracker.result(inst, app, {"status": 200})
    assert tracker.result(inst, app, {"status": 503}) is False and tracker.ready(inst, app)
    assert ReadinessTracker().ready(inst, make_app())          # no readiness check: ready
    newer = dataclasses.replace(app, version_info=dataclasses.replace(
        app.version_info, last_config_change_at="2030-01-01T00:00:00.000Z"))
    assert ReadinessTracker().ready(inst, newer)               # an old instance: not gated
    staging = dataclasses.replace(inst, state=proto.TASK_STAGING)
    assert ReadinessTracker().result(staging, app, {"status": 200}) is False
    tracker.forget(inst.instance_id)
    assert tracker.results(inst.instance_id) == () and not tracker.ready(inst, app)
