"""A real master and two real agents (separate processes) on 127.0.0.1, driven by the example
framework and by the SDK: launch, finish, kill, memory limits, environment, state shape."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from meseta import proto
from meseta.resources import Resources
from meseta.scheduler import CommandInfo, SchedulerDriver, TaskInfo
from meseta.testing import make_framework_info
from meseta.testing.frameworks import RecordingScheduler
from meseta.testing.processes import ProcessCluster, child_env, get_json

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "examples", "batch_framework.py")
HOG = "python3 -c 'b = bytearray(400 * 1024 * 1024); import time; time.sleep(60)'"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with ProcessCluster(tmp_path_factory.mktemp("cluster"), agents=2,
                        agent_resources="cpus:4;mem:2048;disk:4096;ports:[31000-31099]") as running:
        yield running


@pytest.fixture
def framework(cluster):
    sched = RecordingScheduler()
    driver = SchedulerDriver(sched, make_framework_info(name="it"), cluster.master_address)
    driver.start()
    sched.wait_event("registered")
    yield sched, driver
    driver.stop()


def run_example(cluster, *args, timeout=60):
    result = subprocess.run([sys.executable, EXAMPLE, "--master", cluster.master_address, "--json", *args],
                            capture_output=True, text=True, timeout=timeout, env=child_env())
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return result.returncode, [e for e in events if e["event"] == "update"], result.stderr


def cli(*args, timeout=30):
    return subprocess.run([sys.executable, "-m", "meseta.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env=child_env())


def test_example_framework_runs_tasks_on_both_agents(cluster):
    code, updates, stderr = run_example(cluster, "--name", "spread", "--tasks", "4",
                                        "--cmd", "echo hello from $HOST; sleep 0.3")
    assert code == 0, stderr
    by_task: dict[str, list[str]] = {}
    for update in updates:
        by_task.setdefault(update["task_id"], []).append(update["state"])
    assert sorted(by_task) == [f"spread-{i}" for i in range(4)]
    for states in by_task.values():
        assert states == ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]
    agents = {u["agent_id"] for u in updates}
    assert len(agents) == 2
    finished = [u for u in updates if u["state"] == "TASK_FINISHED"]
    assert all(u["message"] == "Command exited with status 0" for u in finished)


def test_example_framework_reports_failures_and_cli_kills(cluster):
    proc = subprocess.Popen([sys.executable, EXAMPLE, "--master", cluster.master_address, "--json",
                             "--name", "killme", "--tasks", "2", "--cmd", "sleep 60", "--grace", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            tasks = get_json(f"{cluster.master.url}/master/tasks")["tasks"]
            if sum(t["state"] == "TASK_RUNNING" and t["name"].startswith("killme") for t in tasks) == 2:
                break
            time.sleep(0.1)
        for task_id in ("killme-0", "killme-1"):
            result = cli("task", "kill", task_id, "--master", cluster.master_address)
            assert result.returncode == 0, result.stderr
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    updates = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    final = {u["task_id"]: u for u in updates if u.get("event") == "update"}
    assert {tid: u["state"] for tid, u in final.items()} == {"killme-0": "TASK_KILLED", "killme-1": "TASK_KILLED"}
    assert proc.returncode == 1          # not everything finished


def test_sdk_launch_kill_round_trip(cluster, framework):
    sched, driver = framework
    offer = sched.take_offers(2)[0]
    task = TaskInfo("sleeper", "sleeper", offer.agent_id, Resources.parse("cpus:0.5;mem:64"),
                    CommandInfo("trap 'echo got TERM; exit 0' TERM; sleep 60 & wait"),
                    kill_grace_seconds=5)
    driver.launch_tasks([offer.id], [task])
    running = sched.wait_state("sleeper", proto.TASK_RUNNING)
    assert running.uuid and running.agent_id == offer.agent_id
    driver.kill_task("sleeper")
    final = sched.wait(lambda: [u for u in sched.updates if u.task_id == "sleeper"
                                and u.state in proto.TERMINAL_STATES])[0]
    # The task handled SIGTERM and exited 0: Mesos reports that as FINISHED, not KILLED.
    assert final.state in (proto.TASK_KILLED, proto.TASK_FINISHED)
    assert sched.states("sleeper")[:2] == [proto.TASK_STARTING, proto.TASK_RUNNING]


def test_sdk_kill_of_a_stubborn_task_escalates_to_sigkill(cluster, framework):
    sched, driver = framework
    offer = sched.take_offers(2)[0]
    task = TaskInfo("stubborn", "stubborn", offer.agent_id, Resources.parse("cpus:0.5;mem:64"),
                    CommandInfo("trap '' TERM; while true; do sleep 0.1; done"), kill_grace_seconds=0.5)
    driver.launch_tasks([offer.id], [task])
    sched.wait_state("stubborn", proto.TASK_RUNNING)
    driver.kill_task("stubborn")
    killed = sched.wait_state("stubborn", proto.TASK_KILLED)
    assert "signal" in killed.message.lower()


@pytest.mark.parametrize("isolation", ["cgroups", "posix"])
def test_task_over_its_memory_is_killed_with_the_reason(tmp_path, isolation):
    with ProcessCluster(tmp_path, agents=1, agent_resources="cpus:2;mem:1024;ports:[31000-31010]",
                        agent_args=[f"--isolation={isolation}", "--resource_check_interval=100ms"]) as one:
        code, updates, stderr = run_example(one, "--name", "hog", "--tasks", "1", "--mem", "64",
                                            "--cmd", HOG)
    assert code == 1, stderr
    final = updates[-1]
    assert final["state"] == "TASK_FAILED", updates
    assert final["reason"] == "REASON_CONTAINER_LIMITATION_MEMORY"
    assert "Memory limit exceeded" in final["message"]


def test_task_environment_ports_and_sandbox_files(cluster, framework):
    sched, driver = framework
    offer = sched.take_offers(2)[0]
    ports = offer.resources.allocate_ports(2)
    res = Resources.parse(f"cpus:0.1;mem:32;ports:[{ports[0]}-{ports[0]},{ports[1]}-{ports[1]}]")
    task = TaskInfo("env", "env", offer.agent_id, res,
                    CommandInfo('echo "P0=$PORT0 P1=$PORT1 PORTS=$PORTS ID=$MESOS_TASK_ID '
                                'SB=$MESOS_SANDBOX HOST=$HOST X=$X"', environment={"X": "y"}))
    driver.launch_tasks([offer.id], [task])
    sched.wait_state("env", proto.TASK_FINISHED)
    result = cli("task", "log", "env", "--master", cluster.master_address)
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert f"P0={ports[0]} P1={ports[1]} PORTS={ports[0]},{ports[1]} ID=env" in line
    assert "X=y" in line and "HOST=agent" in line
    sandbox = line.split("SB=")[1].split()[0]
    agent = next(a for a in get_json(f"{cluster.master.url}/master/slaves")["slaves"]
                 if a["id"] == offer.agent_id)
    base = "http://" + agent["pid"].split("@")[1]
    read = get_json(f"{base}/files/read?" + urllib.parse.urlencode(
        {"path": sandbox + "/stdout", "offset": 0}))
    assert read["data"].strip() == line
    download = urllib.request.urlopen(f"{base}/files/download?" + urllib.parse.urlencode({"path": sandbox + "/stdout"}))
    assert download.read().decode().strip() == line
    assert "attachment" in download.headers["Content-Disposition"]
    for bad in (sandbox + "/../../../../../../etc/passwd", "/etc/passwd"):
        with pytest.raises(urllib.error.HTTPError) as err:
            get_json(f"{base}/files/read?" + urllib.parse.urlencode({"path": bad, "offset": 0}))
        assert err.value.code == 403


def test_master_state_parses_the_way_mesos_dns_reads_it(cluster, framework):
    sched, driver = framework
    offer = sched.take_offers(2)[0]
    port = offer.resources.allocate_ports(1)[0]
    task = TaskInfo("web.1", "web", offer.agent_id,
                    Resources.parse(f"cpus:0.1;mem:32;ports:[{port}-{port}]"), CommandInfo("sleep 30"),
                    discovery={"visibility": "FRAMEWORK", "name": "web",
                               "ports": {"ports": [{"number": port, "name": "http", "protocol": "tcp"}]}})
    driver.launch_tasks([offer.id], [task])
    sched.wait_state("web.1", proto.TASK_RUNNING)
    state = get_json(f"{cluster.master.url}/master/state")
    assert state["leader"] == state["pid"] and state["leader"].startswith("master@127.0.0.1:")
    slaves = {s["id"]: s for s in state["slaves"]}
    records = []
    for fw in state["frameworks"]:
        assert "pid" not in fw                       # an empty pid breaks Mesos-DNS's parse
        for t in fw["tasks"]:
            if t["state"] != "TASK_RUNNING" or t["slave_id"] not in slaves:
                continue
            running = [s for s in t["statuses"] if s["state"] == "TASK_RUNNING"]
            latest = max(running, key=lambda s: s["timestamp"])
            ips = [a["ip_address"] for n in latest.get("container_status", {}).get("network_infos", [])
                   for a in n.get("ip_addresses", [])]
            host_ip = slaves[t["slave_id"]]["pid"].split("@")[1].split(":")[0]
            ports_text = t["resources"].get("ports", "")
            tokens = ports_text.replace("[", " ").replace("]", " ").replace(",", " ").replace("-", " ").split()
            records.append((fw["name"], t["name"], ips or [host_ip], tokens, t.get("discovery")))
    mine = [r for r in records if r[0] == "it" and r[1] == "web"]
    assert mine == [("it", "web", ["127.0.0.1"], [str(port), str(port)], task.discovery)]
    driver.kill_task("web.1")


def test_cli_lists_agents_frameworks_and_tasks(cluster, framework):
    sched, driver = framework
    offer = sched.take_offers(2)[0]                 # one task running and one ended, its own
    driver.launch_tasks([offer.id], [
        TaskInfo(task_id, task_id, offer.agent_id, Resources.parse("cpus:0.1;mem:32"),
                 CommandInfo(command))
        for task_id, command in (("listed-live", "sleep 60"), ("listed-done", "true"))])
    sched.wait_state("listed-live", proto.TASK_RUNNING)
    sched.wait_state("listed-done", proto.TASK_FINISHED)
    agents = json.loads(cli("agent", "list", "--json", "--master", cluster.master_address).stdout)
    assert len(agents) == 2 and all(a["active"] for a in agents)
    table = cli("agent", "list", "--master", cluster.master_address).stdout
    assert "AGENT ID" in table and "agent0" in table and "agent1" in table
    frameworks = json.loads(cli("framework", "list", "--json", "--master", cluster.master_address).stdout)
    assert sched.framework_id in [f["id"] for f in frameworks]
    tasks = json.loads(cli("task", "list", "--all", "--json", "--master", cluster.master_address).stdout)
    assert {"listed-live", "listed-done"} <= {t["id"] for t in tasks}
    active = json.loads(cli("task", "list", "--json", "--master", cluster.master_address).stdout)
    assert "listed-live" in {t["id"] for t in active} and "listed-done" not in {t["id"] for t in active}
    driver.kill_task("listed-live")
    missing = cli("task", "kill", "no-such-task", "--master", cluster.master_address)
    assert missing.returncode != 0 and "no active task" in missing.stderr


def test_every_daemon_serves_health_metrics_and_flags(cluster):
    for daemon in [cluster.master, *cluster.agents]:
        with urllib.request.urlopen(daemon.url + "/health") as response:
            assert response.status == 200
        with urllib.request.urlopen(daemon.url + "/metrics") as response:
            text = response.read().decode()
        name = "master_slaves_active" if daemon is cluster.master else "slave_registered"
        assert f"meseta_{name} " in text
        assert get_json(daemon.url + "/flags")["flags"]
    snapshot = get_json(cluster.master.url + "/metrics/snapshot")
    assert snapshot["master/elected"] == 1.0 and snapshot["master/slaves_active"] == 2.0
    assert get_json(cluster.master.url + "/version")["version"] == "1.11.0"


def test_cli_task_log_follows_a_growing_file(cluster, framework):
    sched, driver = framework
    offer = sched.take_offers(2)[0]
    task = TaskInfo("ticker", "ticker", offer.agent_id, Resources.parse("cpus:0.1;mem:32"),
                    CommandInfo("for i in 1 2 3 4 5 6 7 8 9 10; do echo tick $i; sleep 0.2; done; "
                                "echo oops >&2"))
    driver.launch_tasks([offer.id], [task])
    sched.wait_state("ticker", proto.TASK_RUNNING)
    follower = subprocess.Popen([sys.executable, "-m", "meseta.cli", "task", "log", "ticker", "--follow",
                                 "--master", cluster.master_address, "--interval", "0.05"],
                                stdout=subprocess.PIPE, text=True, env=child_env())
    try:
        seen = []
        for line in follower.stdout:
            seen.append(line.strip())
            if line.strip() == "tick 10":
                break
    finally:
        follower.kill()
    assert seen == [f"tick {i}" for i in range(1, 11)]
    sched.wait_state("ticker", proto.TASK_FINISHED)
    stderr = cli("task", "log", "ticker", "--file", "stderr", "--master", cluster.master_address)
    assert stderr.stdout.strip() == "oops"
