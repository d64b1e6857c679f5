"""Marathon at scale, on the embedded cluster (`meseta up`: master, 4 local agents, Marathon).

(a) launch: POST one app of N instances of `sleep 3600`; time from the POST until Marathon
    reports all N TASK_RUNNING (`tasksRunning` of GET /v2/apps?id=, polled every 20 ms) and
    until its deployment is gone. Target N=1,000 under 10 s (Marathon: 14 s for 500 on 189 agents).
(b) API: with A apps defined (instances 0, so nothing runs), latency of GET /v2/apps and
    GET /v2/groups over R requests each, p50 and p99. Target p99 under 100 ms for A=1,000.

    .venv/bin/python bench/marathon.py [--instances 1000] [--apps 1000] [--requests 200]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import urllib.request

from meseta.embedded import Cluster, ClusterSpec
from meseta.log import setup_logging


def call(base: str, method: str, path: str, body=None) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return resp.status, resp.read()


def get(base: str, path: str):
    return json.loads(call(base, "GET", path)[1])


def launch(base: str, instances: int) -> dict:
    app = {"id": "/bench/sleep", "cmd": "sleep 3600", "instances": instances,
           "cpus": 0.01, "mem": 4, "portDefinitions": []}
    t0 = time.monotonic()
    status, _ = call(base, "POST", "/v2/apps", app)
    assert status == 201, status
    posted = time.monotonic() - t0
    running_at = deployed_at = None
    while time.monotonic() - t0 < 300:
        # the list form: counts without rendering every task (GET /v2/apps/{id} embeds tasks)
        [info] = get(base, "/v2/apps?id=/bench/sleep&embed=apps.counts")["apps"]
        if running_at is None and info["tasksRunning"] >= instances:
            running_at = time.monotonic() - t0
        if running_at is not None and not info["deployments"]:
            deployed_at = time.monotonic() - t0
            break
        time.sleep(0.02)
    call(base, "DELETE", "/v2/apps/bench/sleep")
    while get(base, "/v2/deployments"):
        time.sleep(0.1)
    return {"instances": instances, "post_seconds": round(posted, 3),
            "seconds_to_all_running": round(running_at, 3) if running_at else None,
            "seconds_to_deployment_done": round(deployed_at, 3) if deployed_at else None}


def api_latency(base: str, apps: int, requests: int) -> dict:
    batch = [{"id": f"/bench/g{i // 100}/app-{i}", "cmd": "sleep 3600", "instances": 0,
              "cpus": 0.01, "mem": 4, "labels": {"team": f"t{i % 7}"},
              "env": {"MODE": "bench"}} for i in range(apps)]
    t0 = time.monotonic()
    call(base, "PUT", "/v2/apps", batch)
    created = time.monotonic() - t0
    while get(base, "/v2/deployments"):
        time.sleep(0.1)
    out = {"apps": apps, "put_seconds": round(created, 3)}
    for path in ("/v2/apps", "/v2/groups"):
        times = []
        for _ in range(requests):
            t = time.monotonic()
            call(base, "GET", path)
            times.append(time.monotonic() - t)
        times.sort()
        key = path.rsplit("/", 1)[1]
        out[f"{key}_p50_ms"] = round(statistics.median(times) * 1000, 1)
        out[f"{key}_p99_ms"] = round(times[int(len(times) * 0.99) - 1] * 1000, 1)
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--apps", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--agents", type=int, default=4)
    args = parser.parse_args()
    setup_logging("warning", "text")
    per_agent = args.instances // args.agents + 10
    cluster = Cluster(ClusterSpec(
        agents=args.agents, port=0, marathon=True,
        resources=f"cpus:{per_agent * 0.01 + 1:.2f};mem:{per_agent * 4 + 512};disk:10000;"
                  "ports:[31000-32000]"))
    cluster.start()
    try:
        base = cluster.marathon.url
        result = {"launch": launch(base, args.instances),
                  "api": api_latency(base, args.apps, args.requests)}
    finally:
        cluster.stop()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
