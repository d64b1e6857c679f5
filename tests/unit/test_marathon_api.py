"""meseta.frameworks.marathon.api: /v2/apps and the task routes over a fake service
(meseta.testing.marathon_fake). Each table row starts from `world()`: /web with four instances (running
and healthy, running and unhealthy, staging, finished) and the group /product with db and api.
"""

from __future__ import annotations

import pytest

from meseta.testing import marathon_fake as fake

P, names, world, call, run_case = fake.P, fake.names, fake.world, fake.call, fake.run_case
ids, message, deployment, app_of = fake.ids, fake.message, fake.deployment, fake.app_of


# ---------------------------------------------------------------------------------------------
# /v2/apps

COUNTS = ("tasksStaged", "tasksRunning", "tasksHealthy", "tasksUnhealthy")
ALL_IDS = ["/product/api", "/product/db", "/web"]
NOT_AN_OBJECT = [{"path": "/", "errors": ["expected object, got array"]}]
VERSION_ALONE = [{"path": "/", "errors": ["The 'version' field may only be combined with the 'id' field."]}]


def counts_of(app):
    return [app[key] for key in COUNTS]


def web_in(svc):
    return app_of(svc, "/web")


# (method, url, body, status, check(body, svc, response)); `$name` is names(world())
APP_CASES = [
    ("GET", "/v2/apps", None, 200,
     lambda b, *_: ids(b["apps"]) == ALL_IDS and b["apps"][2]["tasksRunning"] == 2
     and b["apps"][2]["deployments"] == [] and "tasks" not in b["apps"][2]),
    ("GET", "/v2/apps?cmd=POSTGRES", None, 200, lambda b, *_: ids(b["apps"]) == ["/product/db"]),
    ("GET", "/v2/apps?id=PROD", None, 200, lambda b, *_: ids(b["apps"]) == ALL_IDS[:2]),
    ("GET", "/v2/apps?label=env==prod", None, 200, lambda b, *_: ids(b["apps"]) == ["/web"]),
    ("GET", "/v2/apps?label=env,env!=prod", None, 200,
     lambda b, *_: ids(b["apps"]) == ["/product/db"]),
    ("GET", "/v2/apps?label=env%20in%20(", None, 422,
     lambda b, *_: "Can not parse label selector" in b["message"]),
    ("GET", "/v2/apps?embed=apps.tasks&embed=apps.taskStats", None, 200,
     lambda b, *_: len(b["apps"][2]["tasks"]) == 3 and "totalSummary" in b["apps"][2]["taskStats"]),
    ("GET", "/v2/apps?embed=apps.failures", None, 200,
     lambda b, *_: b["apps"][2]["lastTaskFailure"]["message"] == "boom" and "tasks" in b["apps"][2]),
    ("GET", "/v2/apps/web", None, 200,
     lambda b, *_: set(b) == {"app"} and counts_of(b["app"]) == [1, 2, 1, 1]
     and len(b["app"]["tasks"]) == 3 and "lastTaskFailure" in b["app"] and "taskStats" not in b["app"]),
    ("GET", "/v2/apps/web?embed=app.readiness&embed=app.taskStats", None, 200,
     lambda b, *_: b["app"]["readinessCheckResults"] == [] and "taskStats" in b["app"]),
    ("GET", "/v2/apps/nope", None, 404, message("App '/nope' does not exist")),
    ("GET", "/v2/apps/product/*", None, 200, lambda b, *_: ids(b["*"]) == ALL_IDS[:2]),
    ("GET", "/v2/apps/*", None, 200, lambda b, *_: ids(b["*"]) == ALL_IDS),
    ("GET", "/v2/apps/*/tasks", None, 200, lambda b, *_: len(b["tasks"]) == 3),
    ("GET", "/v2/apps/product/*/tasks", None, 200, lambda b, *_: b == {"tasks": []}),
    ("POST", "/v2/apps", {"id": "new", "cmd": "x", "instances": 2}, 201,
     lambda b, svc, r: r.headers["Location"] == "/v2/apps/new"
     and b["deployments"] == [{"id": r.headers["Marathon-Deployment-Id"]}]
     and counts_of(b) == [0, 0, 0, 0] and b["tasks"] == []
     and b["id"] == "/new" and b["version"] == app_of(svc, "/new").version),
    ("POST", "/v2/apps", {"id": "web", "cmd": "x"}, 409,
     message("An app with id [/web] already exists.")),
    ("POST", "/v2/apps", {"id": "product", "cmd": "x"}, 409,
     message("A group with id [/product] already exists.")),
    ("POST", "/v2/apps", "{", 400,
     lambda b, *_: b["message"] == "Invalid JSON" and b["details"][0]["path"] == "/"),
    ("POST", "/v2/apps", {"id": "Bad", "cmd": "x"}, 422,
     lambda b, *_: b["message"] == "Object is not valid" and b["details"][0]["path"] == "/id"),
    ("POST", "/v2/apps", [], 422, lambda b, *_: b["details"] == NOT_AN_OBJECT),
    ("PUT", "/v2/apps/web", {"instances": 5}, 200,
     deployment(lambda svc: web_in(svc).instances == 5 and web_in(svc).cmd == "python -m http.server")),
    ("PUT", "/v2/apps/web?partialUpdate=false", {"cmd": "z"}, 200,
     deployment(lambda svc: web_in(svc).instances == 1 and web_in(svc).labels == {})),
    ("PUT", "/v2/apps/fresh", {"cmd": "y"}, 201,
     lambda b, svc, r: r.headers["Location"] == "/v2/apps/fresh" and deployment()(b, svc, r)
     and app_of(svc, "/fresh").cmd == "y"),
    ("PUT", "/v2/apps/web", {"version": "$web_version", "cmd": "q"}, 422,
     lambda b, *_: b["details"] == VERSION_ALONE),
    ("PUT", "/v2/apps/web", {"version": "2000-01-01T00:00:00.000Z"}, 404,
     message("App '/web' does not exist in version 2000-01-01T00:00:00.000Z")),
    ("PUT", "/v2/apps/web?partialUpdate=maybe", {"cmd": "q"}, 400, None),
    ("PATCH", "/v2/apps/web", {"instances": 1, "id": "/ignored"}, 200,
     deployment(lambda svc: web_in(svc).instances == 1 and app_of(svc, "/ignored") is None)),
    ("PATCH", "/v2/apps/nope", {"instances": 1}, 404, message("App '/nope' does not exist")),
    ("DELETE", "/v2/apps/web", None, 200, deployment(lambda svc: web_in(svc) is None)),
    ("DELETE", "/v2/apps/nope", None, 404, message("App '/nope' does not exist")),
    ("POST", "/v2/apps/web/restart", None, 200,
     deployment(lambda svc: svc.views[0].plan.steps[0].actions[0].action == "RestartApplication")),
    ("POST", "/v2/apps/nope/restart", None, 404, message("App '/nope' does not exist")),
    ("GET", "/v2/apps/web/restart", None, 405, message("HTTP 405 Method Not Allowed")),
    ("GET", "/v2/apps/web/versions", None, 200,
     lambda b, svc, _: b == {"versions": [web_in(svc).version]}),
    ("GET", "/v2/apps/web/versions/$web_version", None, 200,
     lambda b, *_: b["id"] == "/web" and "tasks" not in b),
    ("GET", "/v2/apps/web/versions/2001-01-01T00:00:00.000Z", None, 404, None),
    ("PUT", "/v2/apps", [{"id": "web", "instances": 2}, {"id": "/brand/new", "cmd": "c"}], 200,
     deployment(lambda svc: web_in(svc).instances == 2 and app_of(svc, "/brand/new").cmd == "c")),
    ("PUT", "/v2/apps", [{"id": "ok", "cmd": "c"}, {"cmd": "no id"}], 422,
     lambda b, *_: b["details"] == [{"path": "/(1)/id", "errors": ["is required"]}]),
    ("PUT", "/v2/apps", [{"id": "web", "version": 3}], 422,
     lambda b, *_: b["details"][0]["path"] == "/(0)/version"),
    ("PUT", "/v2/apps", {"id": "web"}, 422, None),
    ("PATCH", "/v2/apps", [{"id": "web", "instances": 7}], 200,
     deployment(lambda svc: web_in(svc).instances == 7)),
    ("PATCH", "/v2/apps", [{"id": "nope", "instances": 7}], 404, message("App '/nope' does not exist")),
]


@pytest.mark.parametrize("method, url, body, status, expect", APP_CASES,
                         ids=[f"{c[0]} {c[1]} {c[3]}" for c in APP_CASES])
def test_apps(method, url, body, status, expect):
    run_case(method, url, body, status, expect)


def test_rollback_to_a_stored_version_and_the_locked_app():
    svc = world()
    old = app_of(svc, "/web").version
    assert call(svc, "PUT", "/v2/apps/web", {"cmd": "v2"}).status_code == 200
    locked = call(svc, "PUT", "/v2/apps/web", {"version": old})
    assert locked.status_code == 409 and locked.get_json()["deployments"] == [{"id": svc.views[0].plan.id}]
    assert call(svc, "PUT", "/v2/apps/web?force=true", {"version": old}).status_code == 200
    assert app_of(svc, "/web").cmd == "python -m http.server" and app_of(svc, "/web").version > old
    # DELETE forces by default: it cancels the running deployment instead of answering 409
    assert call(svc, "DELETE", "/v2/apps/web").status_code == 200
    assert call(svc, "PUT", "/v2/apps/web/versions").status_code == 405


# ---------------------------------------------------------------------------------------------
# /v2/apps/{id}/tasks and /v2/tasks

def states(body):
    return [task["state"] for task in body["tasks"]]


TASK_CASES = [
    ("GET", "/v2/apps/web/tasks", None, 200,
     lambda b, *_: len(b["tasks"]) == 3 and all(t["servicePorts"] == [10001] for t in b["tasks"])),
    ("GET", "/v2/apps/nope/tasks", None, 404, message("App '/nope' does not exist")),
    ("DELETE", "/v2/apps/web/tasks?scale=true&wipe=true", None, 400,
     message("You cannot use scale and wipe at the same time.")),
    ("DELETE", "/v2/apps/web/tasks?host=a2", None, 200,
     lambda b, svc, _: states(b) == ["TASK_KILLED"] and svc.calls[0][1] == [names(svc)["task1"]]),
    ("DELETE", "/v2/apps/web/tasks?scale=true", None, 200,
     deployment(lambda svc: web_in(svc).instances == 0)),
    ("DELETE", "/v2/apps/web/tasks/$task0", None, 200,
     lambda b, *_: set(b) == {"task"} and b["task"]["host"] == "a1"),
    ("DELETE", "/v2/apps/web/tasks/$task0?scale=true&force=true", None, 200,
     deployment(lambda svc: web_in(svc).instances == 2 and svc.calls[0][2:] == (True, False, True))),
    ("DELETE", "/v2/apps/web/tasks/$finished", None, 404,
     lambda b, *_: b["message"].startswith("Task 'web.instance-")),
    ("DELETE", "/v2/apps/nope/tasks/$task0", None, 404, None),
    ("GET", "/v2/tasks", None, 200,
     lambda b, *_: len(b["tasks"]) == 3 and {t["appId"] for t in b["tasks"]} == {"/web"}),
    ("GET", "/v2/tasks?status=running", None, 200, lambda b, *_: len(b["tasks"]) == 2),
    ("GET", "/v2/tasks?status[]=staging&status[]=running", None, 200,
     lambda b, *_: len(b["tasks"]) == 3),
    ("GET", "/v2/tasks?status=staging", None, 200, lambda b, *_: states(b) == ["TASK_STAGING"]),
    ("GET", "/v2/tasks?status=bogus", None, 200, lambda b, *_: len(b["tasks"]) == 3),
    ("POST", "/v2/tasks/delete", {"ids": ["$task0"]}, 200,
     lambda b, *_: states(b) == ["TASK_KILLED"]),
    ("POST", "/v2/tasks/delete?scale=true", {"ids": ["$task0", "$task1"]}, 200,
     deployment(lambda svc: web_in(svc).instances == 1)),
    ("POST", "/v2/tasks/delete", {"ids": ["nope"]}, 400, message("Invalid task id 'nope'")),
    ("POST", "/v2/tasks/delete?wipe=true&scale=true", {"ids": []}, 400, None),
    ("POST", "/v2/tasks/delete", {"ids": "web.1"}, 400, None),
    ("POST", "/v2/tasks/delete", "[", 400, lambda b, *_: b["message"] == "Invalid JSON"),
]


@pytest.mark.parametrize("method, url, body, status, expect", TASK_CASES,
                         ids=[f"{c[0]} {c[1]} {c[3]}" for c in TASK_CASES])
def test_tasks(method, url, body, status, expect):
    run_case(method, url, body, status, expect)


def test_tasks_as_text_lines_per_service_port():
    svc = world()
    response = call(svc, "GET", "/v2/tasks", headers={"Accept": "text/plain"})
    assert response.mimetype == "text/plain"
    web = svc.instances[P("/web")]
    assert response.get_data(as_text=True).splitlines() == [
        "product_api\t0\t", "product_db\t0\t",
        f"web\t10001\ta1:{web[0].host_ports[0]}\ta2:{web[1].host_ports[0]}\t"]
    app_text = call(svc, "GET", "/v2/apps/web/tasks", headers={"Accept": "text/plain"})
    assert app_text.get_data(as_text=True).startswith("web\t10001\ta1:")


@pytest.mark.parametrize("query,status,options", [
    ("", 201, (None, None)),
    ("?deadline=600", 201, (600.0, None)),
    ("?deadline=30&rollbackOnDeadline=true", 201, (30.0, True)),
    ("?deadline=soon", 400, None),
    ("?deadline=0", 400, None),
])
def test_deployment_deadline_options(query, status, options):
    svc = world()
    response = call(svc, "POST", "/v2/apps" + query, {"id": "/timed", "cmd": "sleep 1"})
    assert response.status_code == status, response.get_data(as_text=True)
    if options is not None:
        assert svc.deadlines[-1] == options
