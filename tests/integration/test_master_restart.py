"""A standalone master that crashes and comes back on the same address: agents re-register
with their running tasks, frameworks re-subscribe with their id, nothing is lost."""
from __future__ import annotations

import psutil

from meseta import proto
from meseta.resources import Resources
from meseta.scheduler import CommandInfo, SchedulerDriver, TaskInfo
from meseta.testing import make_framework_info
from meseta.testing.frameworks import RecordingScheduler
from meseta.testing.processes import ProcessCluster, get_json


def test_master_crash_and_restart_keeps_tasks_running(tmp_path):
    with ProcessCluster(tmp_path, agents=2, agent_resources="cpus:2;mem:512;ports:[31000-31010]",
                        master_args=["--framework_heartbeat_interval=200ms",
                                     "--agent_ping_timeout=200ms"]) as cluster:
        sched = RecordingScheduler()
        driver = SchedulerDriver(sched, make_framework_info(name="survivor", failover_timeout=3600),
                                 cluster.master_address)
        driver.start()
        try:
            offers = sched.take_offers(2)
            for index, offer in enumerate(offers):
                driver.launch_tasks([offer.id], [TaskInfo(
                    f"long-{index}", f"long-{index}", offer.agent_id,
                    Resources.parse("cpus:0.1;mem:32"), CommandInfo("sleep 600"))])
            pids = {}
            for index in range(2):
                running = sched.wait_state(f"long-{index}", proto.TASK_RUNNING)
                pids[f"long-{index}"] = running.executor_pid
            assert all(pids.values())
            framework_id = sched.framework_id

            cluster.master.kill()
            cluster.master.restart()

            sched.wait_event("reregistered", timeout=30)
            cluster.wait_agents(2)
            state = get_json(cluster.master.url + "/master/state")
            [framework] = [f for f in state["frameworks"] if f["id"] == framework_id]
            assert framework["active"] and not framework["recovered"]
            tasks = {t["id"]: t for t in framework["tasks"]}
            assert {tid: t["state"] for tid, t in tasks.items()} == {
                "long-0": "TASK_RUNNING", "long-1": "TASK_RUNNING"}
            assert {a["id"] for a in state["slaves"]} == {o.agent_id for o in offers}
            for pid in pids.values():
                assert psutil.pid_exists(pid)
            lost = [u for u in sched.updates if u.state in proto.TERMINAL_STATES]
            assert not lost, lost
            # The new master can still kill what the old one launched.
            driver.kill_task("long-0")
            sched.wait_state("long-0", proto.TASK_KILLED)
        finally:
            driver.stop()
