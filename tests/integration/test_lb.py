"""`meseta lb` with a real HAProxy and a real Marathon (master and agents as child processes):
the backends follow scale, kill and health; a bad label leaves only its app out; reloads under
load fail no request; SIGTERM ends HAProxy too."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from meseta.lb.haproxy import Haproxy
from meseta.testing import wait_until
from meseta.testing.lb import start_lb
from meseta.testing.marathon import SERVE, MarathonApi, start_marathon
from meseta.testing.processes import Daemon, ProcessCluster, child_env, free_port, get_json

pytestmark = [pytest.mark.timeout(300),
              pytest.mark.skipif(Haproxy.find_binary() is None,
                                 reason="haproxy is not installed (make test installs Debian's)")]

SERVICE_PORT = 10000
HEALTH = {"protocol": "HTTP", "path": "/healthy", "portIndex": 0, "gracePeriodSeconds": 10,
          "intervalSeconds": 1, "timeoutSeconds": 2, "maxConsecutiveFailures": 0}


class Lb:
    def __init__(self, daemon: Daemon, stats_port: int) -> None:
        self.daemon = daemon
        self.url = daemon.url
        self.stats_port = stats_port

    def text(self, path: str) -> str:
        with urllib.request.urlopen(self.url + path, timeout=5) as resp:
            return resp.read().decode()

    def status(self) -> dict:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=5) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return json.loads(err.read())

    def snapshot(self) -> dict:
        return get_json(self.url + "/metrics/snapshot")


@pytest.fixture
def cluster(tmp_path):
    cluster = ProcessCluster(str(tmp_path), agents=2,
                             agent_args=["--hostname=127.0.0.1"],   # Marathon checks it, HAProxy routes to it
                             agent_resources="cpus:8;mem:4096;disk:4096;ports:[31000-31999]")
    cluster.start()
    daemons: list[Daemon] = []
    try:
        cluster.wait_agents(2)
        marathon = start_marathon(cluster.master_address, str(tmp_path / "marathon.log"),
                                  [f"--work_dir={tmp_path / 'marathon'}"])
        daemons.append(marathon)
        lb = start_lb(marathon.url, str(tmp_path / "lb"), str(tmp_path / "lb.log"))
        daemons.append(lb)
        yield MarathonApi(marathon.url), Lb(lb, lb.stats_port), tmp_path, marathon
    finally:
        for daemon in reversed(daemons):
            daemon.stop()
        cluster.stop()


def web_app(instances: int, **extra) -> dict:
    return {"id": "/web", "cmd": "touch healthy && " + SERVE, "instances": instances,
            "cpus": 0.1, "mem": 32, "labels": {"HAPROXY_GROUP": "external"},
            "portDefinitions": [{"port": SERVICE_PORT, "protocol": "tcp"}],
            "healthChecks": [HEALTH], **extra}


def through_lb(path: str = "/env.txt", port: int = SERVICE_PORT) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
        return resp.read().decode()


def task_behind_lb() -> str:
    env = dict(line.split("=", 1) for line in through_lb().splitlines() if "=" in line)
    return env["MESOS_TASK_ID"]


def reachable(expected: set[str], tries: int = 60) -> bool:
    """Whether round-robin through the LB reaches exactly `expected` (and nothing else)."""
    seen = set()
    for _ in range(tries):
        try:
            seen.add(task_behind_lb())
        except OSError:
            return False
        if not seen <= expected:
            return False
        if seen == expected:
            return True
    return False


def healthy_ids(api: MarathonApi, app_id: str = "/web") -> set[str]:
    return {t["id"] for t in api.tasks(app_id)
            if t["state"] == "TASK_RUNNING" and any(r.get("alive") for r in t.get("healthCheckResults") or [])}


def sandbox_of(root: Path, task_id: str) -> Path:
    for env in root.rglob("env.txt"):
        if f"MESOS_TASK_ID={task_id}\n" in env.read_text():
            return env.parent
    raise AssertionError(f"no sandbox for {task_id}")


def test_backends_follow_scale_kill_and_health(cluster):
    api, lb, root, _ = cluster
    status, _, body = api.call("POST", "/v2/apps", web_app(3))
    assert status == 201, body
    api.wait_deployed()
    three = wait_until(lambda: healthy_ids(api) if len(healthy_ids(api)) == 3 else None,
                       what="3 healthy instances")
    wait_until(lambda: reachable(three), what="all three instances behind the LB")

    config = lb.text("/_haproxy_getconfig")
    assert "frontend web_10000" in config and "backend web_10000" in config
    assert config.count("server ") >= 3
    pids = lb.text("/_haproxy_getpids").split()
    assert len(pids) >= 2 and all(p.isdigit() for p in pids)
    status = lb.status()
    assert status["healthy"] and status["services"] == 1
    with urllib.request.urlopen(f"http://127.0.0.1:{lb.stats_port}/haproxy?stats;csv", timeout=5) as r:
        assert b"web_10000" in r.read()
    # marathon-lb's URLs on the stats port reach the daemon
    with urllib.request.urlopen(f"http://127.0.0.1:{lb.stats_port}/_haproxy_getconfig", timeout=5) as r:
        assert b"backend web_10000" in r.read()
    assert b"meseta_lb_reloads" in urllib.request.urlopen(lb.url + "/metrics", timeout=5).read()

    # scale to 5
    api.call("PUT", "/v2/apps/web", {"instances": 5})
    api.wait_deployed()
    five = wait_until(lambda: healthy_ids(api) if len(healthy_ids(api)) == 5 else None,
                      what="5 healthy instances")
    wait_until(lambda: reachable(five), what="five instances behind the LB")

    # kill one (and scale down): it leaves the backend
    victim = sorted(five)[0]
    status, _, body = api.call("DELETE", f"/v2/apps/web/tasks/{victim}?scale=true")
    assert status == 200, body
    four = five - {victim}
    wait_until(lambda: reachable(four), what="the killed instance out of the backend")

    # make one unhealthy (maxConsecutiveFailures 0: Marathon keeps it): it leaves the backend
    sick = sorted(four)[0]
    (sandbox_of(root, sick) / "healthy").unlink()
    wait_until(lambda: sick not in healthy_ids(api), what="Marathon to see it unhealthy")
    wait_until(lambda: reachable(four - {sick}), what="the unhealthy instance out of the backend")
    assert sick in {t["id"] for t in api.tasks("/web")}          # still running
    (sandbox_of(root, sick) / "healthy").touch()
    wait_until(lambda: reachable(four), what="the instance back once healthy again")


def test_an_app_with_a_label_haproxy_rejects_is_left_out_and_the_rest_still_updates(cluster):
    api, lb, _, _ = cluster
    bad = {"id": "/bad", "cmd": SERVE, "instances": 1, "cpus": 0.1, "mem": 32,
           "labels": {"HAPROXY_GROUP": "external", "HAPROXY_0_BIND_OPTIONS": "no-such-bind-option"},
           "portDefinitions": [{"port": free_port()}]}
    assert api.call("POST", "/v2/apps", bad)[0] == 201
    assert api.call("POST", "/v2/apps", web_app(1))[0] == 201
    api.wait_deployed()
    wait_until(lambda: "/bad" in lb.status()["excluded"], what="/bad excluded")
    assert "no-such-bind-option" in lb.status()["excluded"]["/bad"]
    one = wait_until(lambda: healthy_ids(api) or None, what="a healthy /web")
    wait_until(lambda: reachable(one), what="/web behind the LB despite /bad")
    # (HAProxy's new worker serves before the reload is confirmed and the config recorded)
    config = wait_until(lambda: next((text for text in [lb.text("/_haproxy_getconfig")]
                                      if "backend web_10000" in text), None),
                        what="/web in the config HAProxy runs")
    assert "bad_" not in config, config

    # /web still follows its changes while /bad stays out
    api.call("PUT", "/v2/apps/web", {"instances": 2})
    api.wait_deployed()
    two = wait_until(lambda: healthy_ids(api) if len(healthy_ids(api)) == 2 else None,
                     what="2 healthy instances")
    wait_until(lambda: reachable(two), what="both /web instances behind the LB")

    # fixing the label brings /bad in
    fixed = {**bad, "labels": {"HAPROXY_GROUP": "external"}}
    assert api.call("PUT", "/v2/apps/bad", fixed)[0] == 200
    api.wait_deployed()
    wait_until(lambda: "/bad" not in lb.status()["excluded"]
               and "frontend bad_" in lb.text("/_haproxy_getconfig"), what="/bad back in")


def test_fifty_reloads_while_scaling_fail_no_request(cluster):
    """Scale-downs kill instances while requests are in flight. The app stops as services
    behind a load balancer should (listener closed at once, requests in flight finished): a
    request that reaches a closed port is retried on another server by HAProxy (retry-on), and
    one being answered completes. An app that dies mid-answer loses that answer behind any LB."""
    api, lb, root, _ = cluster
    graceful = f"touch healthy && env > env.txt && exec {sys.executable} -m meseta.testing.graceful_http $PORT0"
    assert api.call("POST", "/v2/apps", web_app(3, cmd=graceful))[0] == 201
    api.wait_deployed()
    three = wait_until(lambda: healthy_ids(api) if len(healthy_ids(api)) == 3 else None,
                       what="3 healthy instances")
    wait_until(lambda: reachable(three), what="three instances behind the LB")

    stop_file, out = root / "load.stop", root / "load.json"
    load = subprocess.Popen([sys.executable, "-m", "meseta.testing.http_load",
                             f"http://127.0.0.1:{SERVICE_PORT}/env.txt", "--stop-file", str(stop_file),
                             "--out", str(out), "--seconds", "240", "--concurrency", "4"],
                            env=child_env(), stdin=subprocess.DEVNULL)
    try:
        before = lb.snapshot()["lb/reloads"]
        size = 3
        while lb.snapshot()["lb/reloads"] - before < 50:
            size = 6 if size <= 3 else size - 1          # 3 -> 6 -> 5 -> 4 -> 3 -> 6 ...
            assert api.call("PUT", "/v2/apps/web", {"instances": size})[0] == 200
            api.wait_deployed(90)
            for _ in range(3):                            # and reloads with nothing changed
                reloads = lb.snapshot()["lb/reloads"]
                urllib.request.urlopen(lb.url + "/_mlb_signal/usr1", data=b"", timeout=5).read()
                wait_until(lambda: lb.snapshot()["lb/reloads"] > reloads, what="a forced reload")
        reloads = lb.snapshot()["lb/reloads"] - before
    finally:
        stop_file.touch()
        load.wait(60)
    result = json.loads(out.read_text())
    assert reloads >= 50
    assert result["ok"] > 100, result
    assert result["failed"] == 0, result


def test_sigterm_stops_haproxy_too(cluster):
    _, lb, _, _ = cluster
    pids = [int(p) for p in lb.text("/_haproxy_getpids").split()]
    assert pids
    assert lb.daemon.stop() == 0
    for pid in pids:
        wait_until(lambda: not _alive(pid), what=f"haproxy {pid} gone")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (not yet reaped by a parent that is itself gone) is not running
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_backends_keep_their_last_health_across_a_marathon_restart(cluster):
    """After a Marathon failover the tasks' health results are empty until the first checks
    run; the LB keeps each task's last verdict instead of emptying the backend."""
    api, lb, _, marathon = cluster
    assert api.call("POST", "/v2/apps", web_app(3, healthChecks=[{**HEALTH, "intervalSeconds": 5,
                                                                   "gracePeriodSeconds": 30}]))[0] == 201
    api.wait_deployed()
    three = wait_until(lambda: healthy_ids(api) if len(healthy_ids(api)) == 3 else None,
                       what="3 healthy instances", timeout=60)
    wait_until(lambda: reachable(three), what="three instances behind the LB")
    snapshots = lb.snapshot()["lb/marathon_snapshots"]
    marathon.kill()
    marathon.restart()
    wait_until(lambda: lb.snapshot()["lb/marathon_snapshots"] > snapshots, what="a new snapshot")
    unknown_seen = False
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        tasks = api.tasks("/web")
        unknown = [t for t in tasks if not t.get("healthCheckResults")]
        unknown_seen |= bool(unknown)
        assert lb.text("/_haproxy_getconfig").count(" check inter ") == 3   # never emptied
        if not unknown:
            break
        time.sleep(0.05)
    assert unknown_seen, "Marathon had health results at once: the memory was not exercised"
    assert reachable(three)
