"""Marathon against a real master and two real agents (child processes): apps run, scale,
roll, deploy in dependency order and go away; task ids, ports and environment are Marathon's."""
from __future__ import annotations

import time
import urllib.request

import pytest

from meseta.testing.marathon import SERVE, MarathonApi, start_marathon
from meseta.testing.processes import ProcessCluster

pytestmark = pytest.mark.timeout(180)

@pytest.fixture
def marathon(tmp_path):
    cluster = ProcessCluster(str(tmp_path), agents=2,
                             agent_resources="cpus:4;mem:2048;disk:4096;ports:[31000-31999]")
    cluster.start()
    try:
        cluster.wait_agents(2)
        daemon = start_marathon(cluster.master_address, str(tmp_path / "marathon.log"),
                                [f"--work_dir={tmp_path / 'marathon'}"])
        try:
            yield MarathonApi(daemon.url)
        finally:
            daemon.stop()
    finally:
        cluster.stop()


def fetch(host: str, port: int, path: str = "/env.txt") -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
        return resp.read().decode()


def env_of(task: dict) -> dict[str, str]:
    deadline = time.monotonic() + 10
    while True:
        try:
            text = fetch(task["host"], task["ports"][0])
            return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_app_lifecycle(marathon):
    app = {"id": "/product/web", "cmd": SERVE, "instances": 3, "cpus": 0.1, "mem": 32,
           "labels": {"team": "shop"},
           "upgradeStrategy": {"minimumHealthCapacity": 1, "maximumOverCapacity": 0.34}}
    status, headers, body = marathon.call("POST", "/v2/apps", app)
    assert status == 201, body
    assert headers["Location"].endswith("/v2/apps/product/web")
    assert headers["Marathon-Deployment-Id"] == body["deployments"][0]["id"]
    marathon.wait_deployed()

    tasks = marathon.tasks("/product/web")
    assert len(tasks) == 3 and {t["state"] for t in tasks} == {"TASK_RUNNING"}
    service_port = marathon.get("/v2/apps/product/web")["app"]["portDefinitions"][0]["port"]
    assert service_port == 10000
    for task in tasks:
        assert task["id"].startswith("product_web.instance-")
        assert 31000 <= task["ports"][0] <= 31999 and task["servicePorts"] == [10000]
        env = env_of(task)
        assert env["MARATHON_APP_ID"] == "/product/web"
        assert env["PORT0"] == env["PORT"] == str(task["ports"][0])
        assert env["MESOS_TASK_ID"] == task["id"]
        assert env["MARATHON_APP_LABEL_TEAM"] == "shop"
        assert env["MARATHON_APP_VERSION"] == task["version"]

    status, _, body = marathon.call("PUT", "/v2/apps/product/web", {"instances": 5})
    assert status == 200 and "deploymentId" in body
    marathon.wait_deployed()
    assert len(marathon.tasks("/product/web")) == 5

    # rolling restart: N=5, minimumHealthCapacity 1, maximumOverCapacity 0.34 -> at most 6 alive,
    # never fewer than 5 running
    old_version = marathon.get("/v2/apps/product/web")["app"]["version"]
    status, _, body = marathon.call("PUT", "/v2/apps/product/web", {"env": {"COLOUR": "blue"}})
    assert status == 200
    most = least = 5
    deadline = time.monotonic() + 60
    while marathon.get("/v2/deployments") and time.monotonic() < deadline:
        tasks = marathon.tasks("/product/web")
        most = max(most, len(tasks))
        least = min(least, sum(1 for t in tasks if t["state"] == "TASK_RUNNING"))
        time.sleep(0.02)
    marathon.wait_deployed()
    assert most <= 6 and least >= 5, (most, least)
    tasks = marathon.tasks("/product/web")
    new_version = marathon.get("/v2/apps/product/web")["app"]["version"]
    assert new_version != old_version
    assert len(tasks) == 5 and {t["version"] for t in tasks} == {new_version}
    assert env_of(tasks[0])["COLOUR"] == "blue"

    status, _, _ = marathon.call("DELETE", "/v2/apps/product/web")
    assert status == 200
    marathon.wait_deployed()
    assert marathon.get("/v2/apps")["apps"] == []


def test_group_with_dependencies_deploys_in_order(marathon):
    group = {"id": "/shop", "apps": [
        {"id": "db", "cmd": SERVE, "cpus": 0.1, "mem": 32},
        {"id": "api", "cmd": SERVE, "cpus": 0.1, "mem": 32, "dependencies": ["db"]},
        {"id": "web", "cmd": SERVE, "cpus": 0.1, "mem": 32, "instances": 2,
         "dependencies": ["/shop/api"]}]}
    status, headers, body = marathon.call("POST", "/v2/groups", group)
    assert status == 201, body
    marathon.wait_deployed()
    started = {name: marathon.tasks(f"/shop/{name}") for name in ("db", "api", "web")}
    assert [len(started[n]) for n in ("db", "api", "web")] == [1, 1, 2]
    assert started["db"][0]["startedAt"] <= started["api"][0]["stagedAt"]
    assert all(started["api"][0]["startedAt"] <= t["stagedAt"] for t in started["web"])
    names = {t["id"].split(".instance-")[0] for ts in started.values() for t in ts}
    assert names == {"shop_db", "shop_api", "shop_web"}
    [version] = marathon.get("/v2/groups/shop/versions")           # a bare array, as Marathon
    assert [a["id"] for a in marathon.get(f"/v2/groups/shop/versions/{version}")["apps"]] == \
        ["/shop/api", "/shop/db", "/shop/web"]
    assert marathon.call("GET", "/v2/groups/shop/versions/2001-01-01T00:00:00.000Z")[0] == 404

    status, _, _ = marathon.call("DELETE", "/v2/groups/shop")
    assert status == 200
    marathon.wait_deployed()
    assert marathon.get("/v2/tasks")["tasks"] == []


def test_flags_version_health_and_metrics(marathon):
    flags = marathon.get("/flags")["flags"]
    assert flags["http_port"] == marathon.url.rsplit(":", 1)[1]
    assert marathon.get("/version")["version"] == marathon.get("/v2/info")["version"]
    status, _, _ = marathon.call("GET", "/health")
    assert status == 200
    with urllib.request.urlopen(marathon.url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    assert "meseta_marathon_leader 1.0" in text and "meseta_marathon_apps 0.0" in text
