#!/usr/bin/env python3
"""A complete Meseta framework: run a batch of shell commands across the cluster.

    meseta up --agents 2 &                      # or any running cluster
    python3 examples/batch_framework.py --tasks 4 --cmd 'echo hello from $HOST; sleep 2'

It registers, takes offers, spreads its tasks over the offered agents (round-robin inside
every batch of offers), declines what it does not need, prints every status update and exits
when every task has ended: 0 if all finished, 1 otherwise. `--json` prints one JSON object per
update instead, for scripts. See docs/writing-a-framework.md for a walk-through.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading

from meseta import proto
from meseta.scheduler import (CommandInfo, Filters, FrameworkInfo, Resources, Scheduler,
                              SchedulerDriver, TaskInfo)

TERMINAL = {"TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR", "TASK_LOST",
            "TASK_DROPPED", "TASK_GONE", "TASK_GONE_BY_OPERATOR"}


class BatchScheduler(Scheduler):
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.per_task = Resources.parse(f"cpus:{args.cpus};mem:{args.mem}")
        self.pending = [f"{args.name}-{i}" for i in range(args.tasks)]
        self.states: dict[str, str] = {}
        self.lock = threading.Lock()

    def registered(self, driver, framework_id, master):
        self.say({"event": "registered", "framework_id": framework_id,
                  "master": f"{master.hostname}:{master.port}"})

    def resource_offers(self, driver, offers):
        # Round-robin over this batch of offers, so tasks spread over agents.
        remaining = {offer.id: offer.resources for offer in offers}
        chosen: dict[str, list[TaskInfo]] = {offer.id: [] for offer in offers}
        placed = True
        while self.pending and placed:
            placed = False
            for offer in offers:
                if not self.pending or not remaining[offer.id].contains(self.per_task):
                    continue
                task_id = self.pending.pop(0)
                chosen[offer.id].append(TaskInfo(
                    task_id=task_id, name=task_id, agent_id=offer.agent_id,
                    resources=self.per_task, command=CommandInfo(self.args.cmd),
                    kill_grace_seconds=self.args.grace))
                remaining[offer.id] = remaining[offer.id] - self.per_task
                placed = True
        for offer in offers:
            if chosen[offer.id]:
                driver.launch_tasks([offer.id], chosen[offer.id])
            else:
                # Nothing to run here: do not offer this agent again for a while.
                driver.decline_offer([offer.id], Filters(refuse_seconds=30))
        if not self.pending:
            driver.suppress_offers()

    def status_update(self, driver, status):
        self.say({"event": "update", "task_id": status.task_id, "state": status.state,
                  "agent_id": status.agent_id, "message": status.message, "reason": status.reason})
        with self.lock:
            self.states[status.task_id] = status.state
            done = (len(self.states) == self.args.tasks
                    and all(state in TERMINAL for state in self.states.values()))
        if done:
            driver.stop()

    def agent_lost(self, driver, agent_id):
        self.say({"event": "agent_lost", "agent_id": agent_id})

    def error(self, driver, message):
        self.say({"event": "error", "message": message})

    def say(self, event: dict) -> None:
        if self.args.json:
            print(json.dumps(event), flush=True)
        elif event["event"] == "update":
            line = f"{event['task_id']:>12}  {event['state']:<14} on {event['agent_id']}"
            print(line + (f"  ({event['message']})" if event["message"] else ""), flush=True)
        else:
            print(" ".join(f"{k}={v}" for k, v in event.items()), flush=True)

    def succeeded(self) -> bool:
        return all(state == proto.TASK_FINISHED for state in self.states.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--master", default="127.0.0.1:5050", help="the master's host:port")
    parser.add_argument("--name", default="batch", help="framework name and task id prefix")
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--cmd", default="echo hello from $HOST; sleep 1")
    parser.add_argument("--cpus", type=float, default=0.1)
    parser.add_argument("--mem", type=float, default=32)
    parser.add_argument("--grace", type=float, default=2.0, help="seconds from SIGTERM to SIGKILL")
    parser.add_argument("--json", action="store_true", help="one JSON object per event")
    args = parser.parse_args(argv)
    scheduler = BatchScheduler(args)
    framework = FrameworkInfo(user="", name=args.name, capabilities=[])
    driver = SchedulerDriver(scheduler, framework, args.master)
    status = driver.run()
    return 0 if status == "DRIVER_STOPPED" and scheduler.succeeded() else 1


if __name__ == "__main__":
    sys.exit(main())
