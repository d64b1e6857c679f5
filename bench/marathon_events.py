"""Event latency: from a task's TASK_RUNNING at its agent to its `status_update_event` at an
SSE client of Marathon's `/v2/events`, on the embedded cluster (master, 4 agents, Marathon).

Three runs (`sleep 3600` tasks, one host port each): a burst, one app of N instances in a
single POST; paced, N/10 apps of 10 instances, one POST every `--pace` seconds (100 tasks/s by
default); and single, `--single` apps of one instance, one POST every `--pace` seconds: the
latency of one event through the whole path when nothing else is going on. A separate process
reads `/v2/events?event_type=status_update_event` (as marathon-lb does, one
process per consumer) and notes the wall-clock time each TASK_RUNNING line arrives. The
agent-side time is the TaskStatus timestamp the agent stamped on the update (its `/state`
lists each task's statuses with it); everything runs on this machine, so the clocks agree.
The event's own `timestamp` (Marathon's clock when it published, in ms) splits the latency
into agent -> Marathon and Marathon -> client; TASK_STARTING's event splits the first part
into the one-way trip and the wait for Marathon's acknowledgement (see below). Target: p99 under 50 ms for N = 1,000.

The agent stamps TASK_STARTING and TASK_RUNNING together when the process starts, but sends
RUNNING only once Marathon has acknowledged STARTING (status updates are in order per task,
as in Mesos), so the total includes that round trip through the master and Marathon.

    .venv/bin/python bench/marathon_events.py [--instances 1000] [--single 200] [--agents 4]
                                              [--pace 0.1] [--processes]

`--processes` runs the master, the agents and Marathon as separate processes, as deployed,
instead of sharing one interpreter (and its GIL) as `meseta up` does.
"""
from __future__ import annotations

import argparse
import http.client
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from meseta.embedded import Cluster, ClusterSpec
from meseta.testing.marathon import start_marathon
from meseta.testing.processes import ProcessCluster
from meseta.frameworks.marathon.app import parse_timestamp
from meseta.log import setup_logging

GROUP = "/bench/events"
TARGET_P99_MS = 50


def read_events(base: str, out_path: str) -> None:
    """The SSE client (run as its own process). It writes to a file, not a pipe, so nothing
    pushes back on its reading: `ready`, then `<receive time> <event json>` for every
    TASK_STARTING and TASK_RUNNING status_update_event, one line each."""
    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=600)
    conn.request("GET", "/v2/events?event_type=status_update_event",
                 headers={"Accept": "text/event-stream"})
    response = conn.getresponse()
    assert response.status == 200, response.status
    with open(out_path, "w") as out:
        print("ready", file=out, flush=True)
        while True:
            line = response.readline()
            if not line:
                return
            if line.startswith(b"data: "):
                received = time.time()
                if b'"TASK_RUNNING"' in line or b'"TASK_STARTING"' in line:
                    print(f"{received:.6f} {line[6:].decode().strip()}", file=out, flush=True)


def reader_lines(path: Path) -> list[str]:
    text = path.read_text() if path.exists() else ""
    return text[:text.rfind("\n") + 1].splitlines()          # whole lines only


def call(base: str, method: str, path: str, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return resp.status, json.loads(resp.read() or b"null")


def agent_running_times(cluster: Cluster) -> dict[str, float]:
    """task id -> timestamp of its TASK_RUNNING status, as the agents stamped it."""
    times = {}
    for agent in cluster.agents:
        _, state = call(agent.url, "GET", "/state")
        for framework in state["frameworks"]:
            for executor in framework["executors"]:
                for task in executor["tasks"]:
                    for status in task["statuses"]:
                        if status["state"] == "TASK_RUNNING":
                            times[task["id"]] = status["timestamp"]
    return times


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * len(ordered))) - 1))]


def summary(prefix: str, seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {f"{prefix}_p50_ms": round(statistics.median(ms), 2),
            f"{prefix}_p99_ms": round(percentile(ms, 0.99), 2),
            f"{prefix}_max_ms": round(max(ms), 2)}


def measure(cluster: Cluster, run: str, instances: int, apps: int, pace: float) -> dict:
    base = cluster.marathon.url
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "events"
        reader = subprocess.Popen([sys.executable, __file__, "--reader", base, str(out)])
        try:
            wait_until(lambda: reader_lines(out)[:1] == ["ready"], 30)
            started = time.monotonic()
            for index in range(apps):
                status, _ = call(base, "POST", "/v2/apps", {
                    "id": f"{GROUP}/{run}-{index}", "cmd": "sleep 3600",
                    "instances": instances // apps, "cpus": 0.01, "mem": 4})
                assert status == 201, status
                time.sleep(pace)
            received: dict[str, tuple[float, float]] = {}    # task -> (received, published)
            starting: dict[str, float] = {}                  # task -> STARTING published

            def collect() -> bool:
                for line in reader_lines(out)[1:]:
                    at, _, data = line.partition(" ")
                    event = json.loads(data)
                    if not event["appId"].startswith(f"{GROUP}/{run}-"):
                        continue
                    published = parse_timestamp(event["timestamp"])
                    if event["taskStatus"] == "TASK_STARTING":
                        starting[event["taskId"]] = published
                    else:
                        received[event["taskId"]] = (float(at), published)
                return len(received) >= instances
            wait_until(collect, 300)
            all_running = time.monotonic() - started
        finally:
            reader.terminate()
            reader.wait(10)
    running_at = agent_running_times(cluster)
    missing = set(received) - set(running_at)
    assert not missing, f"{len(missing)} tasks without an agent TASK_RUNNING status"
    total = [received[t][0] - running_at[t] for t in received]
    to_marathon = [received[t][1] - running_at[t] for t in received]
    to_client = [received[t][0] - received[t][1] for t in received]
    # STARTING and RUNNING carry the same agent time: STARTING's arrival is the one-way trip,
    # RUNNING follows once Marathon's acknowledgement of STARTING reached the agent
    one_way = [starting[t] - running_at[t] for t in received if t in starting]
    ack_wait = [received[t][1] - starting[t] for t in received if t in starting]
    call(base, "DELETE", f"/v2/groups{GROUP}?force=true")
    wait_until(lambda: not call(base, "GET", "/v2/deployments")[1], 120)
    return {"instances": instances, "apps": apps, "post_every_seconds": pace,
            "seconds_to_all_running_events": round(all_running, 3),
            **summary("latency", total), **summary("agent_to_marathon", to_marathon),
            **summary("marathon_to_client", to_client),
            **summary("starting_agent_to_marathon", one_way),
            **summary("running_after_starting_at_marathon", ack_wait)}


class ProcessLayout:
    """The cluster as deployed: master, agents and Marathon each in its own process."""

    def __init__(self, agents: int, resources: str) -> None:
        self.work = tempfile.mkdtemp(prefix="meseta-bench-")
        self.processes = ProcessCluster(self.work, agents=agents, agent_resources=resources)
        self.marathon = None

    def start(self) -> None:
        self.processes.start()
        self.processes.wait_agents(self.processes.agent_count)
        self.marathon = start_marathon(self.processes.master_address,
                                       str(Path(self.work) / "marathon.log"),
                                       [f"--work_dir={Path(self.work) / 'marathon'}"])

    @property
    def agents(self) -> list:
        return self.processes.agents

    def stop(self) -> None:
        if self.marathon is not None:
            self.marathon.stop()
        self.processes.stop()
        shutil.rmtree(self.work, ignore_errors=True)


def wait_until(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(0.05)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--single", type=int, default=200)
    parser.add_argument("--pace", type=float, default=0.1,
                        help="seconds between the POSTs of the paced and single runs")
    parser.add_argument("--processes", action="store_true",
                        help="master, agents and Marathon as separate processes (as deployed) "
                             "instead of the embedded cluster of `meseta up`")
    parser.add_argument("--runs", default="burst,paced,single",
                        help="which runs, comma-separated")
    parser.add_argument("--reader", nargs=2, help=argparse.SUPPRESS)  # the SSE client process
    args = parser.parse_args()
    if args.reader:
        read_events(*args.reader)
        return 0
    setup_logging("warning", "text")
    per_agent = args.instances // args.agents + 10
    resources = (f"cpus:{per_agent * 0.01 + 1:.2f};mem:{per_agent * 4 + 512};disk:10000;"
                 "ports:[31000-32000]")
    cluster = (ProcessLayout(args.agents, resources) if args.processes else
               Cluster(ClusterSpec(agents=args.agents, port=0, marathon=True, resources=resources)))
    cluster.start()
    try:
        result = {"agents": args.agents, "target_p99_ms": TARGET_P99_MS,
                  "layout": "processes" if args.processes else "embedded"}
        runs = {"burst": (args.instances, 1, 0.0),
                "paced": (args.instances, max(1, args.instances // 10), args.pace),
                "single": (args.single, args.single, args.pace)}
        for run in args.runs.split(","):
            result[run] = measure(cluster, run, *runs[run])
            result[run]["target_met"] = result[run]["latency_p99_ms"] < TARGET_P99_MS
    finally:
        cluster.stop()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
