"""Mesos-level health checks run by a real agent next to real tasks (master, agent and tasks
as processes on 127.0.0.1): health reported in TASK_RUNNING updates, changes only, the task
killed after enough failures, checks resumed after an agent restart."""
from __future__ import annotations

import glob
import os
import urllib.request

import psutil
import pytest

from meseta import proto
from meseta.resources import Resources
from meseta.scheduler import CommandInfo, SchedulerDriver, TaskInfo
from meseta.testing import make_framework_info
from meseta.testing.frameworks import RecordingScheduler
from meseta.testing.processes import ProcessCluster, get_json

HEALTH = proto.REASON_TASK_HEALTH_CHECK_STATUS_UPDATED
# Answers GET with 200 while `ok` exists in its sandbox, 500 once it is gone.
WEB = ("touch ok; exec python3 -c '"
       "import http.server, os, sys\n"
       "class H(http.server.BaseHTTPRequestHandler):\n"
       "    def do_GET(self):\n"
       "        self.send_response(200 if os.path.exists(\"ok\") else 500); self.end_headers()\n"
       "    def log_message(self, *a): pass\n"
       "http.server.HTTPServer((\"127.0.0.1\", int(sys.argv[1])), H).serve_forever()' $PORT0")
RESOURCES = "cpus:4;mem:1024;ports:[31000-31099]"
AGENT_ARGS = ["--status_update_retry_interval_min=200ms", "--executor_shutdown_grace_period=1secs"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with ProcessCluster(tmp_path_factory.mktemp("health"), agents=1, agent_resources=RESOURCES,
                        agent_args=AGENT_ARGS) as running:
        yield running


@pytest.fixture
def framework(cluster):
    sched = RecordingScheduler()
    driver = SchedulerDriver(sched, make_framework_info(name="health"), cluster.master_address)
    driver.start()
    sched.wait_event("registered")
    yield sched, driver
    driver.stop()


def make_check(kind, **fields):
    timing = dict(delay_seconds=0.0, interval_seconds=0.2, timeout_seconds=2.0,
                  consecutive_failures=3, grace_period_seconds=10.0)
    return proto.HealthCheck(type=kind, **{**timing, **fields})


def launch(sched, driver, task_id, command, check):
    """Launch on the next offer; the check's port (if any) is the offer's first port."""
    [offer] = sched.take_offers(1)
    port = offer.resources.ports()[0][0]
    if check.http is not None:
        check.http.port = port
    if check.tcp is not None:
        check.tcp.port = port
    driver.launch_tasks([offer.id], [TaskInfo(
        task_id, task_id, offer.agent_id, Resources.parse(f"cpus:0.1;mem:64;ports:[{port}-{port}]"),
        CommandInfo(command), health_check=check, kill_grace_seconds=1.0)])


def history(sched, task_id):
    """(state, healthy) of every update of the task, with the reason for health updates."""
    return [(u.state, u.healthy) + ((u.reason,) if u.reason == HEALTH else ())
            for u in sched.updates if u.task_id == task_id]


def final(sched, task_id, timeout=30.0):
    return sched.wait(lambda: next((u for u in sched.updates if u.task_id == task_id
                                    and u.state in proto.TERMINAL_STATES), None),
                      timeout, f"{task_id} to end")


def wait_healthy(sched, task_id, healthy, timeout=20.0):
    return sched.wait(lambda: next((u for u in sched.updates if u.task_id == task_id
                                    and u.healthy is healthy and u.reason == HEALTH), None),
                      timeout, f"{task_id} healthy={healthy}")


def sandbox(agent, task_id):
    state = get_json(agent.url + "/state")
    [directory] = [e["directory"] for f in state["frameworks"] for e in f["executors"]
                   if e["id"] == task_id]
    return directory


def test_http_check_reports_healthy_then_unhealthy_then_kills(cluster, framework):
    sched, driver = framework
    launch(sched, driver, "web", WEB, make_check("HTTP", http=proto.HTTPCheckInfo(port=0)))
    wait_healthy(sched, "web", True)
    os.remove(os.path.join(sandbox(cluster.agents[0], "web"), "ok"))
    killed = final(sched, "web")
    assert killed.state == proto.TASK_KILLED
    assert killed.message == "Task killed: health check failed 3 times"
    assert history(sched, "web") == [
        (proto.TASK_STARTING, None), (proto.TASK_RUNNING, None),
        (proto.TASK_RUNNING, True, HEALTH), (proto.TASK_RUNNING, False, HEALTH),
        (proto.TASK_KILLED, False)]
    with urllib.request.urlopen(cluster.agents[0].url + "/metrics", timeout=5) as response:
        metrics = response.read().decode()
    counts = {line.split()[0]: float(line.split()[1]) for line in metrics.splitlines()
              if line.startswith("meseta_agent_health_checks")}
    assert counts["meseta_agent_health_checks_failed_total"] >= 3
    assert counts["meseta_agent_health_checks_total"] >= 4


def test_command_check_runs_in_the_sandbox_with_the_task_environment(cluster, framework):
    sched, driver = framework
    check = make_check("COMMAND", consecutive_failures=2, command=proto.CommandInfo(
        'test -f ok && test "$MESOS_TASK_ID" = cmd'))
    launch(sched, driver, "cmd", "touch ok; exec sleep 60", check)
    wait_healthy(sched, "cmd", True)
    os.remove(os.path.join(sandbox(cluster.agents[0], "cmd"), "ok"))
    killed = final(sched, "cmd")
    assert (killed.state, killed.healthy) == (proto.TASK_KILLED, False)
    assert killed.message == "Task killed: health check failed 2 times"
    assert [h for h in history(sched, "cmd") if len(h) == 3] == [
        (proto.TASK_RUNNING, True, HEALTH), (proto.TASK_RUNNING, False, HEALTH)]


def test_tcp_check_and_a_kill_by_the_framework(cluster, framework):
    sched, driver = framework
    launch(sched, driver, "tcp", "exec python3 -m http.server --bind 127.0.0.1 $PORT0",
           make_check("TCP", tcp=proto.TCPCheckInfo(port=0)))
    wait_healthy(sched, "tcp", True)
    driver.kill_task("tcp")
    killed = final(sched, "tcp")
    assert (killed.state, killed.healthy) == (proto.TASK_KILLED, None)   # it ended healthy
    assert "health check" not in killed.message


def test_zero_consecutive_failures_kills_at_the_first_failure_after_the_grace(cluster, framework):
    sched, driver = framework
    launch(sched, driver, "deaf", "exec sleep 60",
           make_check("TCP", tcp=proto.TCPCheckInfo(port=0), consecutive_failures=0,
                      grace_period_seconds=0.0))
    killed = final(sched, "deaf")
    assert killed.message == "Task killed: health check failed 1 time"
    assert history(sched, "deaf")[2:] == [(proto.TASK_RUNNING, False, HEALTH),
                                          (proto.TASK_KILLED, False)]


def test_an_invalid_check_is_refused_before_launch(cluster, framework):
    sched, driver = framework
    launch(sched, driver, "bad", "exec sleep 60", make_check("COMMAND"))   # no command
    error = final(sched, "bad")
    assert (error.state, error.reason) == (proto.TASK_ERROR, proto.REASON_TASK_INVALID)
    assert error.message == "Invalid health check: command health check without a command value"


def test_checks_resume_after_an_agent_restart(tmp_path):
    cluster = ProcessCluster(tmp_path, agents=1, agent_resources=RESOURCES,
                             agent_args=AGENT_ARGS).start()
    sched = RecordingScheduler()
    driver = SchedulerDriver(sched, make_framework_info(name="health", failover_timeout=3600),
                             cluster.master_address)
    try:
        driver.start()
        check = make_check("COMMAND", command=proto.CommandInfo("test -f ok"),
                           grace_period_seconds=2.0)
        launch(sched, driver, "kept", "touch ok; exec sleep 60", check)
        pid = sched.wait_state("kept", proto.TASK_RUNNING).executor_pid
        wait_healthy(sched, "kept", True)
        agent = cluster.agents[0]
        agent.kill()                      # a crash: the task runs on, unchecked
        [directory] = glob.glob(f"{tmp_path}/agent0/frameworks/*/executors/kept/runs/*")
        os.remove(os.path.join(directory, "ok"))
        agent.restart()
        killed = final(sched, "kept")
        assert killed.state == proto.TASK_KILLED
        assert killed.message == "Task killed: health check failed 3 times"
        assert ended(pid)
    finally:
        driver.stop()
        cluster.stop()


def ended(pid):
    """Gone, or a zombie: the restarted agent is not its parent, so init reaps it (or not)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
