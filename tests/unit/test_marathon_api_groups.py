"""meseta.frameworks.marathon.api: /v2/groups, /v2/deployments, /v2/queue, info/leader/ping/
metrics, the headers and error shapes every answer has, and the marathon-python key sets,
over the fake service of marathon_api_fake.py (each table row starts from `world()`).
"""

from __future__ import annotations


import pytest

from meseta.frameworks.marathon.api import create_app
from meseta.frameworks.marathon.app import format_timestamp
from meseta.frameworks.marathon.group import find_group, transitive_apps
from meseta.testing import marathon_fake as fake

P, world, call, run_case = fake.P, fake.world, fake.call, fake.run_case
ids, message, deployment, app_of = fake.ids, fake.message, fake.deployment, fake.app_of


def group_of(svc, group_id):
    return find_group(svc.root, P(group_id))


# ---------------------------------------------------------------------------------------------
# /v2/groups

GROUP_CASES = [
    ("GET", "/v2/groups", None, 200, lambda b, *_: b["id"] == "/" and ids(b["apps"]) == ["/web"]
     and "tasksRunning" not in b["apps"][0] and ids(b["groups"]) == ["/product"] and b["pods"] == []),
    ("GET", "/v2/groups/", None, 200, lambda b, *_: b["id"] == "/"),
    ("GET", "/v2/groups?embed=group.apps&embed=group.apps.counts", None, 200,
     lambda b, *_: "groups" not in b and b["apps"][0]["tasksRunning"] == 2
     and "deployments" not in b["apps"][0]),
    ("GET", "/v2/groups?embed=group.groups&embed=group.apps&embed=group.apps.tasks", None, 200,
     lambda b, *_: len(b["apps"][0]["tasks"]) == 3 and b["apps"][0]["deployments"] == []
     and ids(b["groups"][0]["apps"]) == ["/product/api", "/product/db"]),
    ("GET", "/v2/groups/product", None, 200,
     lambda b, *_: b["id"] == "/product" and "enforceRole" not in b
     and ids(b["apps"]) == ["/product/api", "/product/db"] and b["groups"] == []),
    ("GET", "/v2/groups/nope", None, 404, message("Group '/nope' does not exist")),
    ("POST", "/v2/groups", {"id": "team", "apps": [{"id": "svc", "cmd": "c"}]}, 201,
     lambda b, svc, r: r.headers["Location"] == "/v2/groups/team" and deployment()(b, svc, r)
     and app_of(svc, "/team/svc").cmd == "c"),
    ("POST", "/v2/groups/product", {"id": "sub"}, 201,
     lambda b, svc, r: r.headers["Location"] == "/v2/groups/product/sub" and group_of(svc, "/product/sub")),
    ("POST", "/v2/groups", {"id": "product"}, 409,
     message("Group /product is already created. Use PUT to change this group.")),
    ("POST", "/v2/groups", {}, 409, message("Group / is already created. Use PUT to change this group.")),
    ("POST", "/v2/groups", {"id": "web"}, 409, message("An app with the path /web already exists.")),
    ("POST", "/v2/groups", {"id": "team", "apps": [{"id": "/elsewhere", "cmd": "c"}]}, 422,
     lambda b, *_: b["details"][0]["path"] == "/apps(0)/id"),
    ("PUT", "/v2/groups/product", {"scaleBy": 3}, 200, deployment(
        lambda svc: [a.instances for a in transitive_apps(group_of(svc, "/product"))] == [3, 3])),
    ("PUT", "/v2/groups?dryRun=true", {"id": "product", "scaleBy": 2}, 200,
     lambda b, svc, r: b == {"steps": [
         {"actions": [{"action": "ScaleApplication", "app": "/product/db"}]},
         {"actions": [{"action": "ScaleApplication", "app": "/product/api"}]}]}
     and "Marathon-Deployment-Id" not in r.headers and app_of(svc, "/product/db").instances == 1),
    ("PUT", "/v2/groups/product", {"apps": [{"id": "db", "cmd": "postgres2"}]}, 200, deployment(
        lambda svc: app_of(svc, "/product/api") is None and app_of(svc, "/product/db").cmd == "postgres2")),
    ("PUT", "/v2/groups/product", {"dependencies": ["/web"]}, 200,
     deployment(lambda svc: group_of(svc, "/product").dependencies == (P("/web"),)
                and app_of(svc, "/product/api"))),
    ("PUT", "/v2/groups", {"groups": [{"id": "product", "groups": [{"id": "inner"}]}]}, 200,
     deployment(lambda svc: app_of(svc, "/web") and app_of(svc, "/product/db")
                and group_of(svc, "/product/inner"))),
    ("PUT", "/v2/groups", {"groups": []}, 200, deployment(
        lambda svc: app_of(svc, "/web") and group_of(svc, "/product") is None)),
    ("PUT", "/v2/groups/x/y", {"apps": [{"id": "a", "cmd": "c"}]}, 200,
     deployment(lambda svc: app_of(svc, "/x/y/a").cmd == "c")),
    ("PUT", "/v2/groups/product", {"apps": "x"}, 422, lambda b, *_: b["details"][0]["path"] == "/apps"),
    ("PUT", "/v2/groups/product", {"version": "2000-01-01T00:00:00.000Z"}, 404, None),
    ("PUT", "/v2/groups/nope", {"scaleBy": 2}, 404, message("Group '/nope' does not exist")),
    ("DELETE", "/v2/groups/product", None, 200, deployment(lambda svc: group_of(svc, "/product") is None)),
    ("DELETE", "/v2/groups", None, 200, deployment(lambda svc: transitive_apps(svc.root) == [])),
    ("DELETE", "/v2/groups/nope", None, 404, message("Group '/nope' does not exist")),
    ("GET", "/v2/groups/product/versions", None, 200,
     lambda b, svc, _: b == [group_of(svc, "/product").version]),
    ("GET", "/v2/groups/product/versions/$product_version", None, 200, lambda b, *_: b["id"] == "/product"),
    ("GET", "/v2/groups/product/apps", None, 200, lambda b, *_: ids(b) == ["/product/api", "/product/db"]),
    ("PATCH", "/v2/groups/product", {"enforceRole": True}, 200,
     lambda b, svc, r: r.data == b"" and group_of(svc, "/product").enforce_role is True),
    ("PATCH", "/v2/groups/product/sub", {"enforceRole": True}, 422, None),
    ("PATCH", "/v2/groups/product", {"apps": []}, 422, None),
    ("PATCH", "/v2/groups/nope", {"enforceRole": True}, 404, None),
    ("POST", "/v2/groups/product/versions", {}, 405, None),
]


@pytest.mark.parametrize("method, url, body, status, expect", GROUP_CASES,
                         ids=[f"{c[0]} {c[1]} {c[3]}" for c in GROUP_CASES])
def test_groups(method, url, body, status, expect):
    run_case(method, url, body, status, expect)


def test_group_rollback_by_body_and_by_marathon_python_path():
    svc = world()
    old = group_of(svc, "/product").version
    assert call(svc, "PUT", "/v2/groups/product", {"scaleBy": 2}).status_code == 200
    assert call(svc, "PUT", "/v2/groups/product?force=true", {"version": old}).status_code == 200
    assert app_of(svc, "/product/db").instances == 1
    assert call(svc, "PUT", "/v2/groups/product?force=true", {"scaleBy": 4}).status_code == 200
    assert call(svc, "PUT", f"/v2/groups/product/versions/{old}?force=true").status_code == 200
    assert app_of(svc, "/product/api").instances == 1


# ---------------------------------------------------------------------------------------------
# /v2/deployments and /v2/queue

def test_deployment_list_detail_rollback_and_cancel():
    svc = world()
    assert call(svc, "GET", "/v2/deployments").get_json() == []
    created = call(svc, "PUT", "/v2/apps/web", {"instances": 5}).get_json()["deploymentId"]
    [info] = call(svc, "GET", "/v2/deployments").get_json()
    scale = {"action": "ScaleApplication", "app": "/web"}
    assert info == {"id": created, "version": app_of(svc, "/web").version, "affectedApps": ["/web"],
                    "affectedPods": [], "steps": [{"actions": [scale]}],
                    "currentActions": [{**scale, "readinessCheckResults": []}],
                    "currentStep": 1, "totalSteps": 1}
    detail = call(svc, "GET", f"/v2/deployments/{created}").get_json()
    assert detail["currentActions"][0]["waiting"] == "0 of 1 running for /web"
    rollback = call(svc, "DELETE", f"/v2/deployments/{created}")
    assert rollback.status_code == 200 and app_of(svc, "/web").instances == 3
    assert rollback.headers["Marathon-Deployment-Id"] == rollback.get_json()["deploymentId"] != created
    cancelled = call(svc, "DELETE", f"/v2/deployments/{rollback.get_json()['deploymentId']}?force=true")
    assert (cancelled.status_code, cancelled.data, svc.views) == (202, b"", [])


def _reject(declined, processed):
    reasons = ["UnfulfilledRole", "UnfulfilledConstraint", "NoCorrespondingReservationFound",
               "AgentMaintenance", "InsufficientCpus", "InsufficientMemory", "InsufficientDisk",
               "InsufficientGpus", "InsufficientPorts", "DeclinedScarceResources"]
    return [{"reason": r, "declined": d, "processed": p} for r, d, p in zip(reasons, declined, processed)]


QUEUE_ITEM = {
    "count": 1, "delay": {"timeLeftSeconds": 3, "overdue": False},
    "since": format_timestamp(fake.NOW - 30),
    "processedOffersSummary": {
        "processedOffersCount": 10, "unusedOffersCount": 7,
        "rejectSummaryLastOffers": _reject([0, 1, 0, 0, 0, 2, 0, 0, 0, 0],
                                           [3, 3, 2, 2, 2, 2, 0, 0, 0, 0]),
        "rejectSummaryLaunchAttempt": _reject([0, 2, 0, 0, 0, 5, 0, 0, 0, 0],
                                              [10, 10, 8, 8, 8, 8, 3, 3, 3, 3]),
        "lastRejectReasons": ["agent a1: needs mem 128, has 64"]},
}

QUEUE_CASES = [
    ("GET", "/v2/deployments/nope", None, 404, message("DeploymentPlan nope does not exist")),
    ("DELETE", "/v2/deployments/nope", None, 404, message("DeploymentPlan nope does not exist")),
    ("GET", "/v2/queue", None, 200, lambda b, *_: b["queue"][0]["app"]["id"] == "/web"
     and {k: v for k, v in b["queue"][0].items() if k != "app"} == QUEUE_ITEM),
    ("GET", "/v2/queue?embed=lastUnusedOffers", None, 200,
     lambda b, *_: b["queue"][0]["lastUnusedOffers"] == []),
    ("DELETE", "/v2/queue/web/delay", None, 204, lambda b, svc, r: r.data == b""
     and svc.calls == [("reset_delay", P("/web"))]),
    ("DELETE", "/v2/queue/nope/delay", None, 404, message("Application /nope not found in tasks queue.")),
    ("DELETE", "/v2/queue/web", None, 404, None),
]


@pytest.mark.parametrize("method, url, body, status, expect", QUEUE_CASES,
                         ids=[f"{c[0]} {c[1]} {c[3]}" for c in QUEUE_CASES])
def test_deployments_and_queue(method, url, body, status, expect):
    run_case(method, url, body, status, expect)


# ---------------------------------------------------------------------------------------------
# Info, leader, ping, health, metrics, /, headers and errors

MISC_CASES = [
    ("GET", "/v2/info", None, 200, lambda b, *_: b["name"] == "marathon" and b["leader"] == "m1:8080"),
    ("GET", "/v2/leader", None, 200, lambda b, *_: b == {"leader": "m1:8080"}),
    ("DELETE", "/v2/leader", None, 200, lambda b, svc, _: b == {"message": "Leadership abdicated"}
     and svc.calls == [("abdicate",)]),
    ("GET", "/ping", None, 200, lambda b, svc, r: (r.data, r.mimetype) == (b"pong", "text/plain")),
    ("GET", "/health", None, 200, lambda b, svc, r: r.data == b""),
    ("GET", "/", None, 302, lambda b, svc, r: r.headers["Location"] == "/ui/"),
    ("GET", "/v2/nothing", None, 404, message("HTTP 404 Not Found")),
    ("POST", "/v2/info", None, 405, message("HTTP 405 Method Not Allowed")),
    ("HEAD", "/v2/apps/web", None, 200, None),
]


@pytest.mark.parametrize("method, url, body, status, expect", MISC_CASES,
                         ids=[f"{c[0]} {c[1]} {c[3]}" for c in MISC_CASES])
def test_misc(method, url, body, status, expect):
    run_case(method, url, body, status, expect)


def test_ping_answers_json_when_json_is_preferred():
    response = call(world(), "GET", "/ping", headers={"Accept": "application/json"})
    assert (response.get_json(), response.mimetype) == ("pong", "application/json")


def test_no_leader_known():
    svc = world()
    svc.leader_address = None
    response = call(svc, "GET", "/v2/leader")
    assert (response.status_code, response.get_json()) == (404, {"message": "There is no leader"})
    assert "X-Marathon-Leader" not in response.headers


@pytest.mark.parametrize("method, url", [("GET", "/v2/apps"), ("GET", "/v2/apps/nope"),
                                         ("POST", "/v2/apps"), ("GET", "/ping"), ("GET", "/nothing")])
def test_every_answer_carries_leader_and_no_cache_headers(method, url):
    headers = call(world(), method, url, "{}" if method == "POST" else None).headers
    assert headers["X-Marathon-Leader"] == "http://m1:8080"
    assert headers["Cache-Control"] == "no-cache, no-store, must-revalidate"
    assert (headers["Pragma"], headers["Expires"], headers["X-Frame-Options"]) == ("no-cache", "0", "DENY")


def test_metrics_text_json_and_prometheus():
    svc = world()
    client = create_app(svc).test_client()
    client.get("/v2/apps")
    text = client.get("/metrics")
    assert text.mimetype == "text/plain"
    assert 'marathon_http_requests_total{method="GET",status="200"} 1.0' in text.get_data(as_text=True)
    data = client.get("/metrics", headers={"Accept": "application/json"}).get_json()
    assert set(data) == {"version", "counters", "gauges", "histograms", "meters", "timers"}
    # /v2/apps and the text /metrics are counted; this request is counted once answered
    assert data["counters"]['marathon_http_requests{method="GET",status="200"}'] == {"count": 2.0}
    assert data["histograms"]["marathon_http_request_duration_seconds"]["count"] == 2.0
    prometheus = client.get("/metrics/prometheus", headers={"Accept": "application/json"})
    assert prometheus.mimetype == "text/plain"


def test_oversized_body_and_unexpected_failures_answer_json():
    svc = world()
    too_big = call(svc, "POST", "/v2/apps", "x" * (4 * 1024 * 1024 + 1))
    assert too_big.status_code == 413 and "exceeds" in too_big.get_json()["message"]

    def broken():
        raise RuntimeError("store unavailable")
    svc.snapshot = broken
    failed = call(svc, "GET", "/v2/apps")
    assert (failed.status_code, failed.get_json()) == (500, {"message": "store unavailable"})


# ---------------------------------------------------------------------------------------------
# marathon-python builds models with cls(**json): only these keys may appear (reference §10)

APP_KEYS = {"acceptedResourceRoles", "args", "backoffFactor", "backoffSeconds", "cmd", "constraints",
            "container", "cpus", "dependencies", "deployments", "disk", "env", "executor",
            "healthChecks", "id", "role", "instances", "killSelection", "labels", "lastTaskFailure",
            "maxLaunchDelaySeconds", "mem", "ports", "requirePorts", "storeUrls", "taskRateLimit",
            "tasks", "tasksRunning", "tasksStaged", "tasksHealthy", "taskKillGracePeriodSeconds",
            "tasksUnhealthy", "upgradeStrategy", "unreachableStrategy", "uris", "user", "version",
            "versionInfo", "ipAddress", "fetch", "taskStats", "readinessChecks",
            "readinessCheckResults", "secrets", "portDefinitions", "residency", "gpus", "networks"}
TASK_KEYS = {"appId", "healthCheckResults", "host", "id", "ports", "servicePorts", "slaveId",
             "stagedAt", "startedAt", "version", "ipAddresses", "state", "localVolumes", "region",
             "zone", "role"}
HEALTH_KEYS = {"alive", "consecutiveFailures", "firstSuccess", "lastFailure", "lastSuccess",
               "taskId", "lastFailureCause", "instanceId"}
DEPLOYMENT_KEYS = {"affectedApps", "currentActions", "currentStep", "id", "steps", "totalSteps",
                   "version", "affectedPods"}
ACTION_KEYS = {"action", "app", "apps", "type", "readinessCheckResults", "pod"}
GROUP_KEYS = {"apps", "dependencies", "groups", "id", "pods", "version", "enforceRole"}


def check_task(task):
    assert set(task) <= TASK_KEYS
    for result in task.get("healthCheckResults", ()):
        assert set(result) <= HEALTH_KEYS


def check_app(app):
    assert set(app) <= APP_KEYS, set(app) - APP_KEYS
    for task in app.get("tasks", ()):
        check_task(task)
    for deployment_ref in app.get("deployments", ()):
        assert set(deployment_ref) <= DEPLOYMENT_KEYS


def check_group(group):
    assert set(group) <= GROUP_KEYS
    for app in group.get("apps", ()):
        check_app(app)
    for child in group.get("groups", ()):
        check_group(child)


def check_deployment(info):
    assert set(info) <= DEPLOYMENT_KEYS
    for action in info["currentActions"] + [a for step in info["steps"] for a in step["actions"]]:
        assert set(action) <= ACTION_KEYS


def test_every_app_task_group_and_deployment_object_uses_marathon_python_keys():
    svc = world()
    embeds = ("tasks", "counts", "deployments", "readiness", "lastTaskFailure", "taskStats")
    every = "&".join(f"embed=apps.{e}" for e in (*embeds, "failures"))
    group_every = "&".join(f"embed={e}" for e in (
        "group.groups", "group.apps", "group.pods", *(f"group.apps.{e}" for e in embeds)))
    created = call(svc, "POST", "/v2/apps", {"id": "/product/new", "cmd": "c"}).get_json()
    check_app(created)
    for app in call(svc, "GET", f"/v2/apps?{every}").get_json()["apps"]:
        check_app(app)
    check_app(call(svc, "GET", "/v2/apps/web?embed=app.taskStats&embed=app.readiness").get_json()["app"])
    check_app(call(svc, "GET", "/v2/apps/web/versions/$web_version").get_json())
    for task in call(svc, "GET", "/v2/tasks").get_json()["tasks"]:
        check_task(task)
    check_task(call(svc, "DELETE", "/v2/apps/web/tasks/$task0").get_json()["task"])
    check_group(call(svc, "GET", f"/v2/groups?{group_every}").get_json())
    deployments = call(svc, "GET", "/v2/deployments").get_json()
    assert deployments
    for info in deployments:
        check_deployment(info)
