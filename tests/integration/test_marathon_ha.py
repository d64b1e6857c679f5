"""Two Marathon processes elected in a real ZooKeeper: the standby proxies the API, and when the
leader is SIGKILLed in the middle of a rolling restart the standby finishes it — never more
instances than the upgrade strategy allows, none lost."""
from __future__ import annotations

import signal
import threading
import time

import pytest

from meseta.testing.marathon import SERVE, MarathonApi, start_marathon
from meseta.testing.processes import ProcessCluster, get_json
from meseta.testing.zookeeper import ZooKeeperServer, require_zookeeper

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def zookeeper(tmp_path):
    require_zookeeper()
    server = ZooKeeperServer(str(tmp_path / "zk"))
    server.start()
    yield server
    server.stop()


def wait_leader(daemons, exclude=None, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for d in daemons:
            if d is exclude or d.proc.poll() is not None:
                continue
            status, _, body = MarathonApi(d.url).call("GET", "/v2/leader")
            if status == 200 and body["leader"].endswith(f":{d.http_port}"):
                return d
        time.sleep(0.1)
    raise AssertionError("no Marathon leader")


def test_standby_finishes_a_deployment_after_the_leader_dies(tmp_path, zookeeper):
    cluster = ProcessCluster(str(tmp_path), agents=2,
                             agent_resources="cpus:4;mem:2048;disk:4096;ports:[31000-31999]")
    cluster.start()
    zk = zookeeper.url("/marathon")
    daemons = []
    try:
        cluster.wait_agents(2)
        daemons = [start_marathon(cluster.master_address, str(tmp_path / f"marathon{i}.log"),
                                  [f"--zk={zk}", "--zk_session_timeout=2secs"]) for i in range(2)]
        leader = wait_leader(daemons)
        standby = next(d for d in daemons if d is not leader)
        api = MarathonApi(standby.url)           # everything through the standby's proxy

        app = {"id": "/web", "cmd": SERVE, "instances": 5, "cpus": 0.1, "mem": 32,
               "upgradeStrategy": {"minimumHealthCapacity": 1, "maximumOverCapacity": 0}}
        status, headers, body = api.call("POST", "/v2/apps", app)
        assert status == 201, body
        assert headers["X-Marathon-Leader"].endswith(f":{leader.http_port}")
        api.wait_deployed()
        assert len(api.tasks("/web")) == 5

        # N=5, (1, 0): min healthy 5 = capacity 5, so Marathon allows one extra: at most 6
        alive: list[int] = []
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                state = get_json(cluster.master.url + "/master/state")
                alive.append(sum(1 for f in state["frameworks"] for t in f["tasks"]
                                 if t["state"] in ("TASK_STAGING", "TASK_STARTING", "TASK_RUNNING")))
                time.sleep(0.02)
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()

        status, _, body = MarathonApi(leader.url).call("PUT", "/v2/apps/web", {"env": {"V": "2"}})
        assert status == 200, body
        assert [d["id"] for d in MarathonApi(leader.url).get("/v2/deployments")] == [body["deploymentId"]]
        leader.signal(signal.SIGKILL)
        leader.proc.wait(10)

        assert wait_leader(daemons, exclude=leader) is standby
        api.wait_deployed(timeout=90)
        stop.set()
        watcher.join(5)

        tasks = api.tasks("/web")
        version = api.get("/v2/apps/web")["app"]["version"]
        assert len(tasks) == 5 and {t["state"] for t in tasks} == {"TASK_RUNNING"}
        assert {t["version"] for t in tasks} == {version}
        assert max(alive) <= 6, max(alive)
        state = get_json(cluster.master.url + "/master/state")
        running = [t for f in state["frameworks"] for t in f["tasks"] if t["state"] == "TASK_RUNNING"]
        assert sorted(t["id"] for t in running) == sorted(t["id"] for t in tasks)
    finally:
        for d in daemons:
            if d.proc.poll() is None:
                d.stop()
        cluster.stop()
