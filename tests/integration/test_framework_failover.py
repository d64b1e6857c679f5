"""Frameworks that go away: back within failover_timeout with the same id -> tasks intact;
away longer -> torn down, tasks killed."""
from __future__ import annotations

import time

import psutil

from meseta import proto
from meseta.resources import Resources
from meseta.scheduler import CommandInfo, SchedulerDriver, TaskInfo
from meseta.testing import make_framework_info
from meseta.testing.frameworks import RecordingScheduler
from meseta.testing.processes import ProcessCluster, get_json

FAST = ["--framework_heartbeat_interval=100ms"]


def launch_sleeper(cluster, failover_timeout):
    sched = RecordingScheduler()
    driver = SchedulerDriver(sched, make_framework_info(name="fo", failover_timeout=failover_timeout),
                             cluster.master_address)
    driver.start()
    [offer] = sched.take_offers(1)
    driver.launch_tasks([offer.id], [TaskInfo("sleeper", "sleeper", offer.agent_id,
                                              Resources.parse("cpus:0.1;mem:32"), CommandInfo("sleep 600"))])
    running = sched.wait_state("sleeper", proto.TASK_RUNNING)
    return sched, driver, running


def framework_state(cluster, framework_id):
    body = get_json(cluster.master.url + "/master/frameworks")
    for group in ("frameworks", "completed_frameworks"):
        for framework in body[group]:
            if framework["id"] == framework_id:
                return group, framework
    return None, None


def test_framework_that_returns_in_time_keeps_its_tasks(tmp_path):
    with ProcessCluster(tmp_path, agents=1, agent_resources="cpus:1;mem:256", master_args=FAST) as cluster:
        sched, driver, running = launch_sleeper(cluster, failover_timeout=60)
        framework_id = sched.framework_id
        driver.stop(failover=True)                  # the process "dies": no teardown
        deadline = time.monotonic() + 10
        while framework_state(cluster, framework_id)[1]["connected"]:
            assert time.monotonic() < deadline, "the master never noticed the framework left"
            time.sleep(0.05)

        again = RecordingScheduler()
        info = make_framework_info(name="fo", failover_timeout=60, framework_id=framework_id)
        driver2 = SchedulerDriver(again, info, cluster.master_address)
        driver2.start()
        try:
            assert again.wait_event("registered") == framework_id
            driver2.reconcile_tasks([])
            update = again.wait_state("sleeper", proto.TASK_RUNNING)
            assert update.reason == proto.REASON_RECONCILIATION
            assert psutil.pid_exists(running.executor_pid)
            group, framework = framework_state(cluster, framework_id)
            assert group == "frameworks" and framework["connected"] and len(framework["tasks"]) == 1
        finally:
            driver2.stop()


def test_framework_that_stays_away_past_failover_timeout_is_torn_down(tmp_path):
    with ProcessCluster(tmp_path, agents=1, agent_resources="cpus:1;mem:256", master_args=FAST) as cluster:
        sched, driver, running = launch_sleeper(cluster, failover_timeout=1)
        framework_id = sched.framework_id
        driver.stop(failover=True)
        deadline = time.monotonic() + 15
        while framework_state(cluster, framework_id)[0] != "completed_frameworks":
            assert time.monotonic() < deadline, "the framework was never torn down"
            time.sleep(0.05)
        _, framework = framework_state(cluster, framework_id)
        assert [t["state"] for t in framework["completed_tasks"]] == ["TASK_KILLED"]
        deadline = time.monotonic() + 10
        while psutil.pid_exists(running.executor_pid):
            assert time.monotonic() < deadline, "the task outlived its framework"
            time.sleep(0.05)

        late = RecordingScheduler()
        info = make_framework_info(name="fo", framework_id=framework_id)
        driver2 = SchedulerDriver(late, info, cluster.master_address)
        driver2.start()
        try:
            assert "removed" in late.wait_event("error")
        finally:
            driver2.abort()
