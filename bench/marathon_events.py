"""Event latency: from a task's TASK_RUNNING at its agent to its `status_update_event` at an
SSE client of Marathon's `/v2/events`, on the embedded cluster (master, 4 agents, Marathon).

Two runs of N tasks (`sleep 3600`, one host port each): a burst, one app of N instances in a
single POST; and paced, N/10 apps of 10 instances, one POST every `--pace` seconds (100
tasks/s by default), to see the latency when Marathon is not busy with a thousand launches. A
separate process reads `/v2/events?event_type=status_update_event` (as marathon-lb does, one
process per consumer) and notes the wall-clock time each TASK_RUNNING line arrives. The
agent-side time is the TaskStatus timestamp the agent stamped on the update (its `/state`
lists each task's statuses with it); everything runs on this machine, so the clocks agree.
The event's own `timestamp` (Marathon's clock when it published, in ms) splits the latency
into agent -> Marathon and Marathon -> client. Target: p99 under 50 ms for N = 1,000.

The agent stamps TASK_STARTING and TASK_RUNNING together when the process starts, but sends
RUNNING only once Marathon has acknowledged STARTING (status updates are in order per task,
as in Mesos), so the total includes that round trip through the master and Marathon.

    .venv/bin/python bench/marathon_events.py [--instances 1000] [--agents 4] [--pace 0.1]
"""
from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import time
import urllib.request
from urllib.parse import urlsplit

from meseta.embedded import Cluster, ClusterSpec
from meseta.frameworks.marathon.app import parse_timestamp
from meseta.log import setup_logging

GROUP = "/bench/events"
TARGET_P99_MS = 50


def read_events(base: str) -> None:
    """The SSE client (run as its own process): `ready`, then `<receive time> <event json>`
    for every TASK_RUNNING status_update_event, one line each."""
    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=600)
    conn.request("GET", "/v2/events?event_type=status_update_event",
                 headers={"Accept": "text/event-stream"})
    response = conn.getresponse()
    assert response.status == 200, response.status
    print("ready", flush=True)
    while True:
        line = response.readline()
        if not line:
            return
        if line.startswith(b"data: "):
            received = time.time()
            if b'"TASK_RUNNING"' in line:
                print(f"{received:.6f} {line[6:].decode().strip()}", flush=True)


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
    reader = subprocess.Popen([sys.executable, __file__, "--reader", base],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout is not None
        assert reader.stdout.readline().strip() == "ready"
        started = time.monotonic()
        for index in range(apps):
            status, _ = call(base, "POST", "/v2/apps", {
                "id": f"{GROUP}/{run}-{index}", "cmd": "sleep 3600", "instances": instances // apps,
                "cpus": 0.01, "mem": 4})
            assert status == 201, status
            time.sleep(pace)
        received: dict[str, tuple[float, float]] = {}    # task -> (received, published)
        while len(received) < instances:
            line = reader.stdout.readline()
            if not line:
                raise RuntimeError(f"the SSE reader stopped after {len(received)} events")
            at, _, data = line.partition(" ")
            event = json.loads(data)
            if event["appId"].startswith(f"{GROUP}/{run}-"):
                received[event["taskId"]] = (float(at), parse_timestamp(event["timestamp"]))
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
    call(base, "DELETE", f"/v2/groups{GROUP}?force=true")
    while call(base, "GET", "/v2/deployments")[1]:
        time.sleep(0.1)
    return {"instances": instances, "apps": apps, "post_every_seconds": pace,
            "seconds_to_all_running_events": round(all_running, 3),
            **summary("latency", total), **summary("agent_to_marathon", to_marathon),
            **summary("marathon_to_client", to_client)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--pace", type=float, default=0.1,
                        help="seconds between the paced run's POSTs of 10 instances")
    parser.add_argument("--reader", help=argparse.SUPPRESS)   # the SSE client process
    args = parser.parse_args()
    if args.reader:
        read_events(args.reader)
        return 0
    setup_logging("warning", "text")
    per_agent = args.instances // args.agents + 10
    cluster = Cluster(ClusterSpec(
        agents=args.agents, port=0, marathon=True,
        resources=f"cpus:{per_agent * 0.01 + 1:.2f};mem:{per_agent * 4 + 512};disk:10000;"
                  "ports:[31000-32000]"))
    cluster.start()
    try:
        result = {"agents": args.agents, "target_p99_ms": TARGET_P99_MS,
                  "burst": measure(cluster, "burst", args.instances, 1, 0.0),
                  "paced": measure(cluster, "paced", args.instances, args.instances // 10,
                                   args.pace)}
    finally:
        cluster.stop()
    for run in ("burst", "paced"):
        result[run]["target_met"] = result[run]["latency_p99_ms"] < TARGET_P99_MS
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
