"""Mesos-DNS against a real cluster: records follow Marathon's instances through the master's
event bus, `dig` reads them, the HTTP API serves them, and they outlive the master.

1. The embedded cluster (master, agent, Marathon and DNS in one process): an app's SRV records
   follow a deploy, a scale-up and a killed task.
2. `meseta dns` as a child process against a master and an agent as child processes: the CLI
   flags, /health before and after the first build, the master stopped (the last records keep
   being served), SIGTERM.
"""
from __future__ import annotations

import shutil
import subprocess
import urllib.request

import pytest

from meseta import proto
from meseta.embedded import Cluster, ClusterSpec
from meseta.resources import Resources
from meseta.scheduler import CommandInfo, SchedulerDriver, TaskInfo
from meseta.testing import make_framework_info, wait_until
from meseta.testing.frameworks import RecordingScheduler
from meseta.testing.marathon import MarathonApi
from meseta.testing.processes import Daemon, ProcessCluster, free_port, get_json

pytestmark = [pytest.mark.timeout(180),
              pytest.mark.skipif(shutil.which("dig") is None, reason="needs dig (bind9-dnsutils)")]

RESOURCES = "cpus:4;mem:2048;disk:4096;ports:[31000-31999]"
WEB_SRV = "_web-product._tcp.marathon.mesos."


def dig(port: int, name: str, qtype: str = "A") -> list[str]:
    out = subprocess.run(["dig", "@127.0.0.1", "-p", str(port), name, qtype, "+short",
                          "+tries=1", "+time=2"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr or out.stdout
    return sorted(line for line in out.stdout.splitlines() if line and not line.startswith(";"))


def srv_ports(port: int, name: str) -> set[int]:
    """The ports of `dig SRV +short` lines: `priority weight port target`."""
    return {int(line.split()[2]) for line in dig(port, name, "SRV")}


def marathon_ports(api: MarathonApi, app_id: str) -> set[int]:
    return {task["ports"][0] for task in api.tasks(app_id) if task.get("state") == "TASK_RUNNING"}


@pytest.fixture
def cluster(tmp_path):
    cluster = Cluster(ClusterSpec(agents=1, port=0, marathon=True, dns=True, resources=RESOURCES,
                                  work_dir=str(tmp_path))).start()
    try:
        yield cluster
    finally:
        cluster.stop()


def test_srv_records_follow_marathon_instances(cluster):
    api = MarathonApi(cluster.marathon.url)
    dns_port, dns_api = cluster.dns.dns_port, cluster.dns.http_url
    assert dig(dns_port, WEB_SRV, "SRV") == []

    status, _, body = api.call("POST", "/v2/apps", {
        "id": "/product/web", "cmd": "sleep 3600", "instances": 2, "cpus": 0.1, "mem": 16,
        "portDefinitions": [{"port": 0, "name": "http"}]})
    assert status == 201, body
    api.wait_deployed()
    running = marathon_ports(api, "/product/web")
    assert len(running) == 2
    wait_until(lambda: srv_ports(dns_port, WEB_SRV) == running, "SRV records of 2 instances", 10)

    # Each SRV target resolves to the agent, as the A record of the task does.
    targets = {line.split()[3] for line in dig(dns_port, WEB_SRV, "SRV")}
    assert all(dig(dns_port, target) == ["127.0.0.1"] for target in targets), targets
    assert dig(dns_port, "web-product.marathon.mesos.") == ["127.0.0.1"]

    # Scale to 3: the new instance appears.
    status, _, body = api.call("PUT", "/v2/apps/product/web", {"instances": 3})
    assert status == 200, body
    api.wait_deployed()
    running = marathon_ports(api, "/product/web")
    assert len(running) == 3
    wait_until(lambda: srv_ports(dns_port, WEB_SRV) == running, "SRV records of 3 instances", 10)

    # Kill one task (no scale): its record goes; Marathon's replacement appears.
    victim = api.tasks("/product/web")[0]
    status, _, body = api.call("DELETE", f"/v2/apps/product/web/tasks/{victim['id']}")
    assert status == 200, body
    wait_until(lambda: victim["ports"][0] not in srv_ports(dns_port, WEB_SRV),
               "the killed task's record to go", 10)
    api.wait_deployed()
    wait_until(lambda: len(marathon_ports(api, "/product/web")) == 3, "the replacement", 30)
    wait_until(lambda: srv_ports(dns_port, WEB_SRV) == marathon_ports(api, "/product/web"),
               "SRV records of the replacement", 10)

    # The HTTP API serves the same records.
    services = get_json(f"{dns_api}/v1/services/{WEB_SRV}")
    assert {int(s["port"]) for s in services} == srv_ports(dns_port, WEB_SRV)
    assert {s["ip"] for s in services} == {"127.0.0.1"}
    assert get_json(f"{dns_api}/v1/hosts/web-product.marathon.mesos") == [
        {"host": "web-product.marathon.mesos.", "ip": "127.0.0.1"}]
    assert get_json(f"{dns_api}/v1/hosts/nothing.mesos") == [{"host": "", "ip": ""}]
    enumerate_body = get_json(f"{dns_api}/v1/enumerate")
    [marathon] = [f for f in enumerate_body["frameworks"] if f["name"] == "marathon"]
    assert len(marathon["tasks"]) == 3
    assert get_json(f"{dns_api}/v1/version") == {
        "Service": "Mesos-DNS", "Version": get_json(f"{dns_api}/v1/version")["Version"],
        "URL": "https://github.com/mesosphere/mesos-dns"}
    assert get_json(f"{dns_api}/v1/config")["Masters"] == [cluster.master_address]
    metrics = urllib.request.urlopen(f"{dns_api}/metrics", timeout=5).read().decode()
    assert "meseta_dns_events_followed_total" in metrics and "meseta_dns_queries_total" in metrics

    # The master gone: the last records are still served.
    last = srv_ports(dns_port, WEB_SRV)
    cluster.master.stop()
    cluster.master = None
    wait_until(lambda: cluster.dns.follower.stats.fetch_errors > 0, "a failed refresh", 15)
    assert srv_ports(dns_port, WEB_SRV) == last and len(last) == 3
    assert get_json(f"{dns_api}/health")["ready"] is True


def test_dns_daemon_process_keeps_records_without_master(tmp_path):
    with ProcessCluster(str(tmp_path), agents=1, agent_resources=RESOURCES) as processes:
        processes.wait_agents(1)
        dns_port, http_port = free_port(), free_port()
        dns = Daemon("dns", [f"--masters={processes.master_address}", "--listener=127.0.0.1",
                             "--HTTPListener=127.0.0.1", f"--port={dns_port}",
                             f"--httpport={http_port}", "--externalon=false",
                             "--refreshSeconds=5"],
                     str(tmp_path / "dns.log"), http_port)
        try:
            dns.wait_ready()
            assert dig(dns_port, "leader.mesos.") == ["127.0.0.1"]
            sched = RecordingScheduler()
            driver = SchedulerDriver(sched, make_framework_info(name="batch"),
                                     processes.master_address)
            driver.start()
            try:
                [offer] = sched.take_offers(1)
                task = TaskInfo("sleeper-1", "sleeper", offer.agent_id,
                                Resources.parse("cpus:0.1;mem:16"), CommandInfo("sleep 3600"))
                driver.launch_tasks([offer.id], [task])
                sched.wait_state(task.task_id, proto.TASK_RUNNING)
                wait_until(lambda: dig(dns_port, "sleeper.batch.mesos.") == ["127.0.0.1"],
                           "the task's A record", 10)
            finally:
                driver.stop()     # the framework goes: its task's record must not outlive it
            wait_until(lambda: dig(dns_port, "sleeper.batch.mesos.") == [],
                       "the record of the removed framework's task to go", 15)

            # Another task under a framework that stays; then the master is killed.
            sched = RecordingScheduler()
            driver = SchedulerDriver(sched, make_framework_info(name="keep"),
                                     processes.master_address)
            driver.start()
            [offer] = sched.take_offers(1)
            task = TaskInfo("kept-1", "kept", offer.agent_id, Resources.parse("cpus:0.1;mem:16"),
                            CommandInfo("sleep 3600"))
            driver.launch_tasks([offer.id], [task])
            sched.wait_state(task.task_id, proto.TASK_RUNNING)
            wait_until(lambda: dig(dns_port, "kept.keep.mesos.") == ["127.0.0.1"],
                       "the kept task's A record", 10)
            processes.master.kill()
            driver.stop()
            assert dig(dns_port, "kept.keep.mesos.") == ["127.0.0.1"]
            wait_until(lambda: "keeping the last good ones" in dns.log(), "the fetch failure", 15)
            assert dig(dns_port, "kept.keep.mesos.") == ["127.0.0.1"]
            health = get_json(f"{dns.url}/health")
            assert health["ready"] is True and health["records_age_seconds"] >= 0
        finally:
            assert dns.stop() == 0, dns.log()[-2000:]   # SIGTERM: a clean exit
