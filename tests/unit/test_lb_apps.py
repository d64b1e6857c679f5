"""lb/apps.py: folding Marathon's events into the apps the load balancer renders."""
from __future__ import annotations

import pytest

from meseta.lb.apps import Apps

WEB = {"id": "/web", "labels": {"HAPROXY_GROUP": "external"}, "portDefinitions": [{"port": 10000}],
       "healthChecks": [{"protocol": "HTTP", "path": "/"}],
       "tasks": [{"id": "web.instance-a._app.1", "appId": "/web", "host": "10.0.0.1",
                  "ports": [31001], "state": "TASK_RUNNING", "ipAddresses": [],
                  "healthCheckResults": [{"alive": True}]}]}


def status(task_id: str, state: str, app_id: str = "/web", **extra) -> dict:
    return {"eventType": "status_update_event", "appId": app_id, "taskId": task_id,
            "taskStatus": state, "host": "10.0.0.2", "ports": [31002], "slaveId": "s1",
            "ipAddresses": [{"ipAddress": "10.0.0.2", "protocol": "IPv4"}], "version": "v1", **extra}


def tasks(apps: Apps, app_id: str = "/web") -> dict[str, dict]:
    return {t["id"]: t for t in apps.by_id[app_id]["tasks"]}


def test_a_new_task_is_added_with_what_the_renderer_reads():
    apps, wanted = Apps.from_snapshot([WEB]).apply(status("web.instance-b._app.1", "TASK_RUNNING"))
    assert wanted == ""
    task = tasks(apps)["web.instance-b._app.1"]
    assert task["host"] == "10.0.0.2" and task["ports"] == [31002]
    assert task["state"] == "TASK_RUNNING" and task["healthCheckResults"] == []
    assert task["ipAddresses"] == [{"ipAddress": "10.0.0.2", "protocol": "IPv4"}]
    assert "web.instance-a._app.1" in tasks(apps)


@pytest.mark.parametrize("state", ["TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR",
                                   "TASK_DROPPED", "TASK_GONE", "TASK_GONE_BY_OPERATOR"])
def test_a_terminal_state_removes_the_task(state):
    apps, wanted = Apps.from_snapshot([WEB]).apply(status("web.instance-a._app.1", state))
    assert wanted == "" and tasks(apps) == {}


@pytest.mark.parametrize("state", ["TASK_KILLING", "TASK_UNREACHABLE", "TASK_LOST", "TASK_STAGING"])
def test_non_terminal_states_are_kept_for_the_renderer_to_filter(state):
    apps, _ = Apps.from_snapshot([WEB]).apply(status("web.instance-a._app.1", state))
    assert tasks(apps)["web.instance-a._app.1"]["state"] == state


def test_a_state_change_keeps_the_known_health():
    apps, _ = Apps.from_snapshot([WEB]).apply(status("web.instance-a._app.1", "TASK_KILLING"))
    assert tasks(apps)["web.instance-a._app.1"]["healthCheckResults"] == [{"alive": True}]


def test_health_changes_by_instance_id_as_marathon_1_5_sends_them():
    event = {"eventType": "health_status_changed_event", "appId": "/web",
             "instanceId": "web.instance-a", "version": "v1", "alive": False}
    apps, wanted = Apps.from_snapshot([WEB]).apply(event)
    assert wanted == ""
    assert [r["alive"] for r in tasks(apps)["web.instance-a._app.1"]["healthCheckResults"]] == [False]


def test_health_changes_by_task_id_as_older_marathons_send_them():
    event = {"eventType": "health_status_changed_event", "appId": "/web",
             "taskId": "web.instance-a._app.1", "alive": False}
    apps, _ = Apps.from_snapshot([WEB]).apply(event)
    assert tasks(apps)["web.instance-a._app.1"]["healthCheckResults"][0]["alive"] is False


def test_health_of_an_unknown_instance_changes_nothing():
    state = Apps.from_snapshot([WEB])
    event = {"eventType": "health_status_changed_event", "appId": "/web",
             "instanceId": "web.instance-zzz", "alive": True}
    assert state.apply(event) == (state, "")


@pytest.mark.parametrize("kind", ["api_post_event", "group_change_success", "app_terminated_event",
                                  "deployment_success", "deployment_failed"])
def test_definition_changes_ask_for_a_snapshot(kind):
    state = Apps.from_snapshot([WEB])
    new, wanted = state.apply({"eventType": kind})
    assert new is state and wanted == kind


def test_a_task_of_an_unknown_app_asks_for_a_snapshot_unless_it_ended():
    state = Apps.from_snapshot([WEB])
    assert state.apply(status("new.instance-x._app.1", "TASK_RUNNING", "/new"))[1]
    assert state.apply(status("new.instance-x._app.1", "TASK_KILLED", "/new")) == (state, "")


def test_other_events_are_ignored():
    state = Apps.from_snapshot([WEB])
    assert state.apply({"eventType": "deployment_info"}) == (state, "")


def test_replaying_events_the_snapshot_already_reflects_ends_in_the_latest_state():
    """The follower applies every event since the stream opened on top of a later snapshot."""
    events = [status("web.instance-b._app.1", "TASK_STAGING"),
              status("web.instance-b._app.1", "TASK_RUNNING"),
              status("web.instance-a._app.1", "TASK_KILLING"),
              status("web.instance-a._app.1", "TASK_KILLED")]
    live = Apps.from_snapshot([WEB])
    for event in events:
        live, _ = live.apply(event)
    # A snapshot taken after the second event, then all four replayed:
    later = Apps.from_snapshot([WEB])
    for event in events[:2]:
        later, _ = later.apply(event)
    replayed = Apps.from_snapshot(later.values())
    for event in events:
        replayed, _ = replayed.apply(event)
    assert replayed == live
    assert list(tasks(live)) == ["web.instance-b._app.1"]


def test_copy_on_write_leaves_a_reader_s_apps_alone():
    state = Apps.from_snapshot([WEB])
    held = state.values()
    state.apply(status("web.instance-a._app.1", "TASK_KILLED"))
    assert held[0]["tasks"][0]["state"] == "TASK_RUNNING"
    assert WEB["tasks"][0]["state"] == "TASK_RUNNING"
