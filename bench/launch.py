"""One agent launching N `sleep` tasks through the SDK: offer -> every task TASK_RUNNING.

Real master and agent processes on 127.0.0.1; the framework is this process, using
`meseta.scheduler`. All N tasks go in one ACCEPT of the first offer (as a batch framework
would), so the figure is the agent's launch rate plus status-update round trips.
Target: >= 100 tasks/s (a Mesos agent launches ~33/s: Mesos 1.7 blog, 1,000 containers in 30 s).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

from meseta import proto
from meseta.resources import Resources
from meseta.scheduler import CommandInfo, SchedulerDriver, TaskInfo
from meseta.testing import make_framework_info
from meseta.testing.frameworks import RecordingScheduler
from meseta.testing.processes import ProcessCluster


def run(tasks: int, isolation: str) -> dict:
    with tempfile.TemporaryDirectory() as work, ProcessCluster(
            work, agents=1, agent_resources=f"cpus:{tasks};mem:{64 * tasks};ports:[31000-32000]",
            agent_args=[f"--isolation={isolation}"]) as cluster:
        sched = RecordingScheduler()
        driver = SchedulerDriver(sched, make_framework_info(name="bench"), cluster.master_address)
        driver.start()
        [offer] = sched.take_offers(1, timeout=30)
        t0 = time.monotonic()
        per_task = Resources.parse("cpus:0.1;mem:32")
        batch = [TaskInfo(f"sleep-{i}", f"sleep-{i}", offer.agent_id, per_task, CommandInfo("sleep 3600"))
                 for i in range(tasks)]
        driver.launch_tasks([offer.id], batch)
        running_at: dict[str, float] = {}

        def all_running():
            for update in sched.updates:
                if update.state == proto.TASK_RUNNING and update.task_id not in running_at:
                    running_at[update.task_id] = time.monotonic()
            return len(running_at) == tasks
        sched.wait(all_running, timeout=300, what="all tasks running")
        elapsed = max(running_at.values()) - t0
        first = min(running_at.values()) - t0
        failed = [u for u in sched.updates if u.state in proto.TERMINAL_STATES]
        t1 = time.monotonic()
        driver.stop()              # teardown: every task is killed
        return {"tasks": tasks, "isolation": isolation, "seconds_to_all_running": round(elapsed, 3),
                "seconds_to_first_running": round(first, 3),
                "tasks_per_second": round(tasks / elapsed, 1), "failed": len(failed),
                "teardown_call_seconds": round(time.monotonic() - t1, 3)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--isolation", action="append", default=None)
    args = parser.parse_args()
    results = [run(args.tasks, isolation) for isolation in (args.isolation or ["auto", "posix"])]
    print(json.dumps({"name": "launch", "results": results, "target_tasks_per_second": 100}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
