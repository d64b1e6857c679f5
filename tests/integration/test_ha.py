"""Masters elected in a real ZooKeeper: failover keeps every task, standbys redirect, a leader
that loses its session steps down, agents that never come back are marked lost."""
from __future__ import annotations

import os
import signal
import time
import urllib.error
import urllib.request

import psutil
import pytest

from meseta import proto
from meseta.resources import Resources
from meseta.scheduler import CommandInfo, SchedulerDriver, TaskInfo
from meseta.testing import make_framework_info
from meseta.testing.frameworks import RecordingScheduler
from meseta.testing.processes import ProcessCluster, get_json
from meseta.testing.zookeeper import ZooKeeperServer, require_zookeeper

SESSION = "2secs"
MASTER_ARGS = [f"--zk_session_timeout={SESSION}", "--agent_ping_timeout=300ms",
               "--max_agent_ping_timeouts=5", "--framework_heartbeat_interval=200ms"]


@pytest.fixture
def zookeeper(tmp_path):
    require_zookeeper()
    server = ZooKeeperServer(str(tmp_path / "zk"))
    server.start()
    yield server
    server.stop()


def start_tasks(cluster, count=2):
    sched = RecordingScheduler()
    driver = SchedulerDriver(sched, make_framework_info(name="ha", failover_timeout=3600),
                             cluster.master_address)
    driver.start()
    offers = sched.take_offers(len(cluster.agents))
    pids = {}
    for index in range(count):
        offer = offers[index % len(offers)]
        driver.launch_tasks([offer.id], [TaskInfo(
            f"t{index}", f"t{index}", offer.agent_id, Resources.parse("cpus:0.1;mem:32"),
            CommandInfo("sleep 600"))])
    for index in range(count):
        pids[f"t{index}"] = sched.wait_state(f"t{index}", proto.TASK_RUNNING).executor_pid
    return sched, driver, pids


def status_of(url):
    request = urllib.request.Request(url)
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=5) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_leader_sigkill_fails_over_without_losing_a_task(tmp_path, zookeeper):
    with ProcessCluster(tmp_path, agents=2, agent_resources="cpus:1;mem:256", masters=2,
                        zk=zookeeper.url("/meseta"), master_args=MASTER_ARGS) as cluster:
        leader = cluster.wait_leader()
        standby = next(m for m in cluster.masters if m is not leader)
        # A standby redirects to the leader; /health is fine everywhere.
        code, headers = status_of(standby.url + "/master/state")
        assert code == 307 and headers["Location"] == f"//127.0.0.1:{leader.http_port}/master/state"
        assert status_of(standby.url + "/health")[0] == 200
        assert get_json(standby.url + "/master/info")["port"] == leader.http_port

        sched, driver, pids = start_tasks(cluster)
        try:
            leader.kill()
            new_leader = cluster.wait_leader(exclude=leader, timeout=30)
            assert new_leader is standby
            sched.wait_event("reregistered", timeout=30)
            cluster.wait_agents(2, timeout=30)
            state = get_json(new_leader.url + "/master/state")
            [framework] = [f for f in state["frameworks"] if f["id"] == sched.framework_id]
            assert sorted((t["id"], t["state"]) for t in framework["tasks"]) == [
                ("t0", "TASK_RUNNING"), ("t1", "TASK_RUNNING")]
            assert all(psutil.pid_exists(pid) for pid in pids.values())
            bad = [u for u in sched.updates if u.state in proto.TERMINAL_STATES]
            assert not bad, bad
            driver.kill_task("t0")
            sched.wait_state("t0", proto.TASK_KILLED)
        finally:
            driver.stop()


def test_leader_that_loses_its_session_steps_down(tmp_path, zookeeper):
    with ProcessCluster(tmp_path, agents=1, agent_resources="cpus:1;mem:256", masters=2,
                        zk=zookeeper.url("/meseta"), master_args=MASTER_ARGS) as cluster:
        leader = cluster.wait_leader()
        standby = next(m for m in cluster.masters if m is not leader)
        leader.signal(signal.SIGSTOP)          # its session expires while it cannot answer
        try:
            assert cluster.wait_leader(exclude=leader, timeout=30) is standby
        finally:
            leader.signal(signal.SIGCONT)
        # Resumed, the old leader must not think it still leads (no zombie leader).
        deadline = time.monotonic() + 10
        while get_json(leader.url + "/metrics/snapshot")["master/elected"] != 0.0:
            assert time.monotonic() < deadline, "the deposed leader kept leading"
            time.sleep(0.05)
        # Once its new ZooKeeper session is up, it points at the new leader.
        deadline = time.monotonic() + 10
        while (answer := status_of(leader.url + "/master/state"))[0] != 307:
            assert answer[0] == 503 and time.monotonic() < deadline, answer
            time.sleep(0.05)
        assert f":{standby.http_port}/" in answer[1]["Location"]
        cluster.wait_agents(1, timeout=30)


def test_no_leader_means_503(tmp_path, zookeeper):
    with ProcessCluster(tmp_path, agents=0, masters=1, zk=zookeeper.url("/meseta"),
                        master_args=MASTER_ARGS) as cluster:
        leader = cluster.wait_leader()
        zookeeper.stop()                       # the leader cannot know it still leads
        try:
            deadline = time.monotonic() + 10
            while status_of(leader.url + "/master/state")[0] != 503:
                assert time.monotonic() < deadline, "a master without ZooKeeper kept leading"
                time.sleep(0.05)
            assert status_of(leader.url + "/health")[0] == 200
        finally:
            zookeeper.start()
        cluster.wait_leader(timeout=30)


def test_agent_that_never_returns_after_failover_is_marked_lost(tmp_path, zookeeper):
    args = MASTER_ARGS + ["--agent_reregister_timeout=2secs"]
    with ProcessCluster(tmp_path, agents=2, agent_resources="cpus:1;mem:256", masters=2,
                        zk=zookeeper.url("/meseta"), master_args=args) as cluster:
        sched, driver, pids = start_tasks(cluster, count=2)
        try:
            leader = cluster.wait_leader()
            slaves = {s["hostname"]: s["id"] for s in get_json(leader.url + "/master/slaves")["slaves"]}
            cluster.agents[1].kill()            # this agent never comes back
            leader.kill()
            new_leader = cluster.wait_leader(exclude=leader, timeout=30)
            lost_agent = sched.wait(lambda: [v for k, v in sched.events
                                             if k == "agent_lost" and v == slaves["agent1"]], timeout=30)
            assert lost_agent
            lost_task = next(t for t in ("t0", "t1")
                             if any(u.agent_id == slaves["agent1"] for u in sched.updates if u.task_id == t))
            driver.reconcile_tasks([{"task_id": lost_task, "agent_id": slaves["agent1"]}])
            assert sched.wait_state(lost_task, proto.TASK_LOST, timeout=15).reason == proto.REASON_RECONCILIATION
            survivors = [t for t in ("t0", "t1") if t != lost_task]
            state = get_json(new_leader.url + "/master/state")
            [framework] = [f for f in state["frameworks"] if f["id"] == sched.framework_id]
            assert [t["id"] for t in framework["tasks"]] == survivors
        finally:
            driver.stop()
            for pid in pids.values():          # the dead agent's task has no one to kill it
                try:
                    os.killpg(pid, signal.SIGKILL)  # the task's own process group
                except ProcessLookupError:
                    pass


def test_example_framework_rides_through_a_leader_failover(tmp_path, zookeeper):
    import json
    import subprocess
    import sys
    from meseta.testing.processes import child_env
    example = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), "examples", "batch_framework.py")
    with ProcessCluster(tmp_path, agents=2, agent_resources="cpus:1;mem:256", masters=2,
                        zk=zookeeper.url("/meseta"), master_args=MASTER_ARGS) as cluster:
        leader = cluster.wait_leader()
        proc = subprocess.Popen([sys.executable, example, "--master", cluster.master_address, "--json",
                                 "--name", "rider", "--tasks", "2", "--cmd", "sleep 600", "--grace", "1"],
                                stdout=subprocess.PIPE, text=True, env=child_env())
        try:
            events = []
            for line in proc.stdout:
                events.append(json.loads(line))
                if sum(e.get("state") == "TASK_RUNNING" for e in events) == 2:
                    break
            leader.kill()
            new_leader = cluster.wait_leader(exclude=leader, timeout=30)
            cluster.wait_agents(2, timeout=30)
            deadline = time.monotonic() + 30
            while True:
                state = get_json(new_leader.url + "/master/state")
                tasks = {t["id"]: t["state"] for f in state["frameworks"] if f["name"] == "rider"
                         for t in f["tasks"]}
                if tasks == {"rider-0": "TASK_RUNNING", "rider-1": "TASK_RUNNING"}:
                    break
                assert time.monotonic() < deadline, tasks
                time.sleep(0.1)
            for task_id in tasks:
                killed = subprocess.run([sys.executable, "-m", "meseta.cli", "task", "kill", task_id,
                                         "--master", f"127.0.0.1:{new_leader.http_port}"],
                                        capture_output=True, text=True, env=child_env(), timeout=30)
                assert killed.returncode == 0, killed.stderr
            out, _ = proc.communicate(timeout=30)
        finally:
            proc.kill()
        events += [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        states = [(e["task_id"], e["state"]) for e in events if e.get("event") == "update"]
        assert not [s for s in states if s[1] in ("TASK_LOST", "TASK_FAILED")], states
        assert sorted(s for s in states if s[1] == "TASK_KILLED") == [
            ("rider-0", "TASK_KILLED"), ("rider-1", "TASK_KILLED")]
