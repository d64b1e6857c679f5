"""Load balancer: how soon does HAProxy route to a new instance, and what does a reload cost?

1. `latency` — time from a new instance being ready for traffic to HAProxy routing to it:
   for an app without health checks, from its TASK_RUNNING (`status_update_event`); for one
   with a Marathon TCP health check, from its health turning green
   (`health_status_changed_event` alive). The start is the event's own `timestamp`
   (Marathon's clock when it published, ms). The end is when the instance's server first shows
   in HAProxy's stats CSV (`/haproxy?stats;csv` on the stats port, polled every 2 ms over new
   connections, so it is the serving worker's view). Master, agents, Marathon and `meseta lb`
   run as separate processes. The app is scaled up in steps of `--step` instances until
   `--tasks` are up. Target: p99 under 500 ms.
2. `reload` — `meseta lb`'s own work for a change with `--apps` apps of 3 tasks (synthetic
   Marathon JSON, no cluster): render, `haproxy -c`, and the hitless reload until the new
   worker serves; p50 and max over `--reloads` changes, each of which moves one server.

    .venv/bin/python bench/lb.py [--tasks 200] [--step 10] [--health-tasks 40] [--apps 1000]
"""
from __future__ import annotations

import argparse
import http.client
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from meseta.frameworks.marathon.app import parse_timestamp
from meseta.lb.haproxy import Haproxy
from meseta.lb.render import RenderConfig, render_result
from meseta.testing.lb import start_lb
from meseta.testing.marathon import MarathonApi, start_marathon
from meseta.testing.processes import Daemon, ProcessCluster, free_port

TARGET_P99_MS = 500


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * len(ordered))) - 1))]


def summary(prefix: str, seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {f"{prefix}_p50_ms": round(statistics.median(ms), 1),
            f"{prefix}_p99_ms": round(percentile(ms, 0.99), 1),
            f"{prefix}_max_ms": round(max(ms), 1), f"{prefix}_count": len(ms)}


class EventLog(threading.Thread):
    """Marathon's event stream: the publish time of each task's TASK_RUNNING and first green."""

    def __init__(self, base: str) -> None:
        super().__init__(daemon=True)
        self.base = base
        self.running: dict[str, float] = {}      # task id -> published
        self.green: dict[str, float] = {}        # instance id -> published
        self.ready = threading.Event()

    def run(self) -> None:
        url = urlsplit(self.base)
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=600)
        conn.request("GET", "/v2/events?event_type=status_update_event"
                            "&event_type=health_status_changed_event",
                     headers={"Accept": "text/event-stream"})
        response = conn.getresponse()
        self.ready.set()
        while True:
            line = response.readline()
            if not line:
                return
            if not line.startswith(b"data: "):
                continue
            event = json.loads(line[6:])
            at = parse_timestamp(event["timestamp"])
            if event["eventType"] == "status_update_event" and event["taskStatus"] == "TASK_RUNNING":
                self.running.setdefault(event["taskId"], at)
            elif event["eventType"] == "health_status_changed_event" and event.get("alive"):
                self.green.setdefault(event["instanceId"], at)


class StatsPoller(threading.Thread):
    """When each server name first appears in HAProxy's stats CSV."""

    def __init__(self, stats_port: int) -> None:
        super().__init__(daemon=True)
        self.port = stats_port
        self.seen: dict[tuple[str, str], float] = {}    # (backend, server) -> first seen
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/haproxy?stats;csv")
                body = conn.getresponse().read().decode()
                conn.close()
            except OSError:
                time.sleep(0.01)
                continue
            now = time.time()
            for row in body.splitlines()[1:]:
                fields = row.split(",")
                if len(fields) > 2 and fields[1] not in ("FRONTEND", "BACKEND"):
                    self.seen.setdefault((fields[0], fields[1]), now)
            time.sleep(0.002)


def latency(tasks: int, step: int, health_tasks: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="meseta-bench-lb-"))
    cluster = ProcessCluster(str(work), agents=2,
                             agent_args=["--hostname=127.0.0.1"],   # Marathon checks it, HAProxy routes to it
                             agent_resources="cpus:64;mem:65536;disk:65536;ports:[31000-32999]")
    daemons: list[Daemon] = []
    try:
        cluster.start()
        cluster.wait_agents(2)
        marathon = start_marathon(cluster.master_address, str(work / "marathon.log"),
                                  [f"--work_dir={work / 'marathon'}"])
        daemons.append(marathon)
        api = MarathonApi(marathon.url)
        lb = start_lb(marathon.url, str(work / "lb"), str(work / "lb.log"))
        daemons.append(lb)
        events = EventLog(marathon.url)
        events.start()
        events.ready.wait(10)
        poller = StatsPoller(lb.stats_port)
        poller.start()
        result = {}
        # Without health checks: routable from TASK_RUNNING.
        plain = {"id": "/plain", "cmd": "sleep 3600", "instances": 0, "cpus": 0.01, "mem": 4,
                 "labels": {"HAPROXY_GROUP": "external"}, "portDefinitions": [{"port": free_port()}]}
        result.update(scale_and_measure(api, plain, tasks, step, events, poller, "plain"))
        # With a TCP health check: routable from the first green.
        checked = {"id": "/checked", "cmd": "exec python3 -m http.server --bind 127.0.0.1 $PORT0",
                   "instances": 0, "cpus": 0.01, "mem": 16,
                   "labels": {"HAPROXY_GROUP": "external"}, "portDefinitions": [{"port": free_port()}],
                   "healthChecks": [{"protocol": "TCP", "portIndex": 0, "gracePeriodSeconds": 30,
                                     "intervalSeconds": 1, "timeoutSeconds": 2,
                                     "maxConsecutiveFailures": 0}]}
        result.update(scale_and_measure(api, checked, health_tasks, max(1, step // 2), events,
                                        poller, "health"))
        poller.stop.set()
        snapshot = json.loads(urllib.request.urlopen(lb.url + "/metrics/snapshot").read())
        result["lb_reloads"] = snapshot["lb/reloads"]
        result["lb_renders"] = snapshot["lb/renders"]
        return result
    finally:
        for daemon in reversed(daemons):
            daemon.stop()
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)


def scale_and_measure(api: MarathonApi, app: dict, tasks: int, step: int, events: EventLog,
                      poller: StatsPoller, name: str) -> dict:
    status, _, body = api.call("POST", "/v2/apps", app)
    assert status == 201, body
    backend = f"{app['id'][1:]}_{app['portDefinitions'][0]['port']}"
    started = time.monotonic()
    for size in range(step, tasks + step, step):
        api.call("PUT", f"/v2/apps{app['id']}", {"instances": min(size, tasks)})
        api.wait_deployed(300)
    instances = api.tasks(app["id"])
    deadline = time.monotonic() + 60
    latencies = []
    for task in instances:
        server = f"{task['host'].replace('.', '_')}_{task['ports'][0]}"
        instance = task["id"].rpartition("._app.")[0] or task["id"]
        ready_at = events.green.get(instance) if app.get("healthChecks") else events.running.get(task["id"])
        while (backend, server) not in poller.seen and time.monotonic() < deadline:
            time.sleep(0.01)
        if ready_at is None or (backend, server) not in poller.seen:
            continue
        latencies.append(max(0.0, poller.seen[(backend, server)] - ready_at))
    print(f"{name}: {len(latencies)}/{len(instances)} measured in {time.monotonic() - started:.1f}s",
          file=sys.stderr)
    return summary(name, latencies) if latencies else {f"{name}_count": 0}


def synthetic_apps(count: int, base_port: int, moved: int = -1) -> list[dict]:
    apps = []
    for index in range(count):
        tasks = [{"id": f"app{index}.instance-{n}._app.1", "appId": f"/bench/app{index}",
                  "host": "127.0.0.1", "state": "TASK_RUNNING",
                  "ports": [20000 + (index * 3 + n + (1 if index == moved else 0)) % 40000],
                  "ipAddresses": [], "healthCheckResults": []} for n in range(3)]
        apps.append({"id": f"/bench/app{index}", "labels": {"HAPROXY_GROUP": "external"},
                     "portDefinitions": [{"port": base_port + index, "protocol": "tcp"}],
                     "healthChecks": [], "tasks": tasks})
    return apps


def reload_cost(apps: int, reloads: int) -> dict:
    binary = Haproxy.find_binary()
    if binary is None:
        return {"reload_skipped": "haproxy not installed"}
    work = Path(tempfile.mkdtemp(prefix="meseta-bench-reload-"))
    haproxy = Haproxy(work, binary)
    config = RenderConfig(groups=("external",), bind_addr="127.0.0.1", bind_http_https=False,
                          stats_port=free_port(), appid_port=free_port(),
                          stats_socket=str(work / "haproxy.sock"))
    base_port = 21000                  # below the ephemeral range, so nothing else holds them
    renders, checks, applies = [], [], []
    try:
        first = render_result(synthetic_apps(apps, base_port), config)
        assert haproxy.apply(first.text).ok
        for index in range(reloads):
            data = synthetic_apps(apps, base_port, moved=index)
            t0 = time.monotonic()
            text = render_result(data, config).text
            t1 = time.monotonic()
            check = haproxy.check(text)
            t2 = time.monotonic()
            result = haproxy.apply(text)
            assert check.ok and result.ok, (check.output, result.reason)
            renders.append(t1 - t0)
            checks.append(t2 - t1)
            applies.append(result.seconds)
    finally:
        haproxy.stop()
        shutil.rmtree(work, ignore_errors=True)
    return {"reload_apps": apps, "reload_servers": apps * 3, "reload_config_bytes": len(text),
            **summary("render", renders), **summary("check", checks), **summary("reload", applies)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--step", type=int, default=10)
    parser.add_argument("--health-tasks", type=int, default=40)
    parser.add_argument("--apps", type=int, default=1000)
    parser.add_argument("--reloads", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="50 tasks, 10 checked, 200 apps")
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.health_tasks, args.apps = 50, 10, 200
    result = {"target_p99_ms": TARGET_P99_MS}
    result.update(reload_cost(args.apps, args.reloads))
    result.update(latency(args.tasks, args.step, args.health_tasks))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
