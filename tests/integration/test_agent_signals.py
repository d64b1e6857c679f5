"""A standalone agent and its signals, as a Mesos agent: SIGTERM stops the agent and leaves
its tasks running for the next start to take back; SIGUSR1 shuts down and kills them."""
from __future__ import annotations

import time

import psutil

from meseta import proto
from meseta.resources import Resources
from meseta.scheduler import CommandInfo, SchedulerDriver, TaskInfo
from meseta.testing import make_framework_info
from meseta.testing.frameworks import RecordingScheduler
from meseta.testing.processes import ProcessCluster


def test_sigterm_keeps_tasks_and_sigusr1_kills_them(tmp_path):
    with ProcessCluster(tmp_path, agents=1, agent_resources="cpus:1;mem:256") as cluster:
        sched = RecordingScheduler()
        driver = SchedulerDriver(sched, make_framework_info(name="sig", failover_timeout=60),
                                 cluster.master_address)
        driver.start()
        try:
            [offer] = sched.take_offers(1)
            driver.launch_tasks([offer.id], [TaskInfo("kept", "kept", offer.agent_id,
                                                      Resources.parse("cpus:0.1;mem:32"),
                                                      CommandInfo("sleep 600"))])
            pid = sched.wait_state("kept", proto.TASK_RUNNING).executor_pid
            agent = cluster.agents[0]
            assert agent.terminate() == 0
            assert psutil.pid_exists(pid), "SIGTERM must leave the task running"
            agent.restart()
            cluster.wait_agents(1)
            time.sleep(0.5)                      # give a wrong TASK_LOST the chance to show
            assert not [u for u in sched.updates if u.state in proto.TERMINAL_STATES]
            assert agent.stop() == 0             # SIGUSR1
            deadline = time.monotonic() + 10
            while psutil.pid_exists(pid):
                assert time.monotonic() < deadline, "SIGUSR1 must kill the agent's tasks"
                time.sleep(0.05)
        finally:
            driver.stop()
