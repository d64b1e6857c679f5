"""Marathon's runtime behaviour with real tasks on the embedded cluster: health checks kill and
replace, readiness holds a deployment, a crash loop backs off, a rolling restart keeps
minimumHealthCapacity healthy."""
from __future__ import annotations

import sys
import time
import urllib.request

import pytest

from meseta.embedded import Cluster, ClusterSpec
from meseta.testing import wait_until
from meseta.testing.marathon import MarathonApi
from meseta.testing.processes import get_json

pytestmark = pytest.mark.timeout(180)

PROBE = f"{sys.executable} -m meseta.testing.probe_app $PORT0"
HEALTH = {"protocol": "HTTP", "path": "/health", "portIndex": 0, "gracePeriodSeconds": 5,
          "intervalSeconds": 1, "timeoutSeconds": 1, "maxConsecutiveFailures": 2}


@pytest.fixture
def api(tmp_path):
    cluster = Cluster(ClusterSpec(agents=2, port=0, marathon=True, work_dir=str(tmp_path),
                                  resources="cpus:4;mem:2048;disk:4096;ports:[31000-31999]"))
    cluster.start()
    try:
        api = MarathonApi(cluster.marathon.url)
        api.master_url = cluster.master.url
        yield api
    finally:
        cluster.stop()



def poke(task: dict, path: str) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{task['ports'][0]}{path}", timeout=5):
        pass


def healthy(task: dict) -> bool:
    results = task.get("healthCheckResults") or []
    return bool(results) and all(r["alive"] for r in results)


def test_unhealthy_instance_is_killed_after_max_failures_and_replaced(api):
    status, _, body = api.call("POST", "/v2/apps", {
        "id": "/probe", "cmd": PROBE + " --healthy", "instances": 2, "cpus": 0.1, "mem": 32,
        "healthChecks": [HEALTH]})
    assert status == 201, body
    api.wait_deployed()
    tasks = api.tasks("/probe")
    assert len(tasks) == 2 and all(healthy(t) for t in tasks)
    app = api.get("/v2/apps/probe")["app"]
    assert app["tasksHealthy"] == 2 and app["tasksUnhealthy"] == 0

    victim = tasks[0]
    poke(victim, "/sick")
    wait_until(lambda: victim["id"] not in {t["id"] for t in api.tasks("/probe")}, what="the kill")
    replaced = wait_until(lambda: [t for t in api.tasks("/probe") if healthy(t)]
                    if len(api.tasks("/probe")) == 2 and all(healthy(t) for t in api.tasks("/probe"))
                    else None, what="a healthy replacement")
    assert victim["id"] not in {t["id"] for t in replaced}
    assert tasks[1]["id"] in {t["id"] for t in replaced}


def test_readiness_holds_the_deployment_until_ready(api):
    status, _, body = api.call("POST", "/v2/apps", {
        "id": "/slow", "cmd": PROBE, "instances": 1, "cpus": 0.1, "mem": 32,
        "portDefinitions": [{"port": 0, "name": "http"}],
        "readinessChecks": [{"name": "ready", "portName": "http", "path": "/ready",
                             "intervalSeconds": 2, "timeoutSeconds": 1,
                             "preserveLastResponse": True}]})
    assert status == 201, body
    [task] = wait_until(lambda: [t for t in api.tasks("/slow") if t["state"] == "TASK_RUNNING"],
                  what="running")
    result = wait_until(lambda: [r for d in api.get("/v2/deployments") for a in d["currentActions"]
                           for r in a.get("readinessCheckResults", [])], what="a readiness result")
    assert result[0]["ready"] is False and result[0]["lastResponse"]["status"] == 503
    time.sleep(2)
    assert api.get("/v2/deployments"), "a 503 from /ready must hold the deployment"
    poke(task, "/make-ready")
    api.wait_deployed(timeout=15)


def test_crash_looping_app_backs_off(api):
    status, _, body = api.call("POST", "/v2/apps", {
        "id": "/crash", "cmd": "exit 1", "instances": 1, "cpus": 0.1, "mem": 16,
        "backoffSeconds": 1, "backoffFactor": 2, "maxLaunchDelaySeconds": 4})
    assert status == 201, body
    delayed = wait_until(lambda: [q for q in api.get("/v2/queue")["queue"]
                            if q["app"]["id"] == "/crash" and not q["delay"]["overdue"]],
                   what="a launch delay")
    assert delayed[0]["delay"]["timeLeftSeconds"] >= 1
    failure = api.get("/v2/apps/crash")["app"]["lastTaskFailure"]
    assert failure["state"] == "TASK_FAILED" and failure["appId"] == "/crash"
    time.sleep(7)
    # without backoff a task that exits at once is relaunched on every offer; with delays of
    # 1, 2, 4, 4 s only four or five launches fit into the ~8 s since the first
    state = get_json(api.master_url + "/master/state")
    launches = [t for f in state["frameworks"] for t in f["tasks"] + f["completed_tasks"]
                if t["name"] == "crash"]
    assert 3 <= len(launches) <= 6, len(launches)
    status, _, _ = api.call("DELETE", "/v2/queue/crash/delay")
    assert status == 204
    queue = api.get("/v2/queue")["queue"]
    assert all(q["delay"]["overdue"] for q in queue if q["app"]["id"] == "/crash")


def test_rolling_restart_keeps_minimum_health_capacity(api):
    strategy = {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0}
    status, _, body = api.call("POST", "/v2/apps", {
        "id": "/roll", "cmd": PROBE + " --healthy", "instances": 4, "cpus": 0.1, "mem": 32,
        "healthChecks": [HEALTH], "upgradeStrategy": strategy})
    assert status == 201, body
    api.wait_deployed()
    status, _, body = api.call("PUT", "/v2/apps/roll", {"env": {"V": "2"}})
    assert status == 200, body
    least = 4
    while api.get("/v2/deployments"):
        least = min(least, sum(1 for t in api.tasks("/roll") if healthy(t)))
        time.sleep(0.05)
    assert least >= 2, least             # ceil(4 × 0.5)
    tasks = api.tasks("/roll")
    assert len(tasks) == 4 and all(healthy(t) for t in tasks)
    assert len({t["version"] for t in tasks}) == 1
