"""An agent that stops answering (SIGSTOP) past the ping timeout: its tasks are reported
lost (or unreachable to partition-aware frameworks), the framework relaunches elsewhere, and
when the agent comes back (SIGCONT) it re-registers and its still-running task is re-announced."""
from __future__ import annotations

import signal

import psutil
import pytest

from meseta import proto
from meseta.resources import Resources
from meseta.scheduler import CommandInfo, SchedulerDriver, TaskInfo
from meseta.testing import make_framework_info
from meseta.testing.frameworks import RecordingScheduler
from meseta.testing.processes import ProcessCluster, get_json

FAST_PINGS = ["--agent_ping_timeout=200ms", "--max_agent_ping_timeouts=3"]


@pytest.mark.parametrize("partition_aware", [False, True], ids=["lost", "unreachable"])
def test_stopped_agent_is_unreachable_then_comes_back(tmp_path, partition_aware):
    with ProcessCluster(tmp_path, agents=2, agent_resources="cpus:1;mem:256;ports:[31000-31010]",
                        master_args=FAST_PINGS) as cluster:
        caps = [proto.PARTITION_AWARE] if partition_aware else []
        sched = RecordingScheduler()
        driver = SchedulerDriver(sched, make_framework_info(name="p", capabilities=caps),
                                 cluster.master_address)
        driver.start()
        try:
            offers = {o.hostname: o for o in sched.take_offers(2)}
            victim_offer = offers["agent0"]
            driver.launch_tasks([victim_offer.id], [TaskInfo(
                "victim", "victim", victim_offer.agent_id, Resources.parse("cpus:0.5;mem:64"),
                CommandInfo("sleep 600"))])
            running = sched.wait_state("victim", proto.TASK_RUNNING)
            driver.decline_offer([offers["agent1"].id], {"refuse_seconds": 0})

            cluster.agents[0].signal(signal.SIGSTOP)
            expected = proto.TASK_UNREACHABLE if partition_aware else proto.TASK_LOST
            gone = sched.wait_state("victim", expected, timeout=20)
            assert gone.reason == proto.REASON_AGENT_REMOVED and gone.uuid is None
            assert sched.wait_event("agent_lost") == victim_offer.agent_id

            # Relaunch on the healthy agent.
            spare = sched.wait(lambda: [o for o in sched.offers.values() if o.hostname == "agent1"])[0]
            driver.launch_tasks([spare.id], [TaskInfo(
                "replacement", "replacement", spare.agent_id, Resources.parse("cpus:0.5;mem:64"),
                CommandInfo("sleep 600"))])
            sched.wait_state("replacement", proto.TASK_RUNNING)
            state = get_json(cluster.master.url + "/master/state")
            assert state["unreachable_slaves"] == 1
            assert [s["hostname"] for s in state["slaves"]] == ["agent1"]

            cluster.agents[0].signal(signal.SIGCONT)
            cluster.wait_agents(2)
            back = sched.wait(lambda: [u for u in sched.updates if u.task_id == "victim"
                                       and u.reason == "REASON_AGENT_REREGISTERED"])[0]
            assert back.state == proto.TASK_RUNNING
            assert psutil.pid_exists(running.executor_pid)   # the task never stopped
            driver.kill_task("victim")
            sched.wait_state("victim", proto.TASK_KILLED)
        finally:
            driver.stop()
            cluster.agents[0].signal(signal.SIGCONT)
