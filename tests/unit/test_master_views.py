"""The master's Mesos-shaped JSON views, rendered from a master core driven through handle().

The key sets below are Mesos's (reference mesos.md §3); `fake.json` is a real master state used
by Mesos-DNS's own tests, so our elements must carry at least the keys it has.
"""
from __future__ import annotations

import json
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from meseta import proto
from meseta.clock import FakeClock
from meseta.master import views
from meseta.master.core import Master
from meseta.master.model import StatusRecord
from meseta.resources import Resources, parse_attributes

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "mesos-dns-fixtures"
FAKE_JSON = FIXTURES / "fake.json"
EXPECTED_RECORDS = FIXTURES / "expected-records.json"

TOP_KEYS = {
    "version", "build_date", "build_time", "build_user", "start_time", "elected_time", "id",
    "pid", "hostname", "capabilities", "activated_slaves", "deactivated_slaves",
    "unreachable_slaves", "leader", "leader_info", "flags", "slaves", "recovered_slaves",
    "frameworks", "completed_frameworks", "orphan_tasks", "unregistered_frameworks"}
SLAVE_KEYS = {
    "id", "hostname", "port", "attributes", "pid", "registered_time", "resources",
    "used_resources", "offered_resources", "reserved_resources", "unreserved_resources",
    "active", "deactivated", "version", "capabilities"}
FRAMEWORK_SUMMARY_KEYS = {
    "id", "name", "used_resources", "offered_resources", "capabilities", "hostname",
    "webui_url", "active", "connected", "recovered"}
FRAMEWORK_KEYS = FRAMEWORK_SUMMARY_KEYS | {
    "user", "failover_timeout", "checkpoint", "registered_time", "unregistered_time",
    "resources", "tasks", "unreachable_tasks", "completed_tasks", "offers", "executors"}
TASK_KEYS = {"id", "name", "framework_id", "executor_id", "slave_id", "state", "resources",
             "role", "statuses", "user"}
OFFER_KEYS = {"id", "framework_id", "allocation_info", "slave_id", "resources"}
SUMMARY_COUNTS = {"TASK_STAGING", "TASK_STARTING", "TASK_RUNNING", "TASK_KILLING",
                  "TASK_FINISHED", "TASK_KILLED", "TASK_FAILED", "TASK_LOST", "TASK_ERROR",
                  "TASK_UNREACHABLE"}

WEB_DISCOVERY = {"visibility": "FRAMEWORK", "name": "web",
                 "ports": {"ports": [{"number": 31000, "name": "http", "protocol": "tcp"}]}}
FLAGS = {"port": "5050", "allocation_interval": "1secs", "offer_timeout": ""}


# --------------------------------------------------------------------------- a small cluster


class Cluster:
    """The master core with a fake clock, driven by messages as the daemon shell would."""

    def __init__(self) -> None:
        self.clock = FakeClock(1_700_000_000.0)
        config = SimpleNamespace(agent_ping_timeout=15.0, max_agent_ping_timeouts=5,
                                 framework_heartbeat_interval=2.0, offer_timeout=None,
                                 allocation_interval=1.0, weights={})
        info = proto.MasterInfo(id="M1", ip="10.0.0.1", port=5050, hostname="master1")
        self.master = Master(config, info, self.clock)

    def send(self, peer: bytes, message: proto.Message) -> list[proto.Message]:
        self.master.handle(peer, message)
        out, self.master.outbox = self.master.outbox, []
        return [m for p, m in out if p == peer]

    def register_agent(self, peer: bytes, hostname: str, ip: str, resources: str,
                       attributes: str = "") -> str:
        info = proto.AgentInfo(hostname=hostname, port=5051, ip=ip,
                               resources=Resources.parse(resources),
                               attributes=parse_attributes(attributes))
        [reply] = self.send(peer, proto.RegisterAgent(proto.PROTOCOL_VERSION, info))
        return reply.agent_id

    def subscribe(self, peer: bytes, info: proto.FrameworkInfo) -> str:
        [reply] = self.send(peer, proto.Subscribe(proto.PROTOCOL_VERSION, info))
        return reply.framework_id

    def offers(self, framework_id: str) -> dict[str, proto.Offer]:
        """Outstanding offers of a framework, by agent id."""
        return {r.offer.agent_id: r.offer
                for r in self.master.frameworks[framework_id].offers.values()}

    def launch(self, peer: bytes, offer: proto.Offer, *tasks: proto.TaskInfo) -> None:
        self.send(peer, proto.Accept([offer.id], [proto.Operation("LAUNCH", list(tasks))]))

    def update(self, agent_peer: bytes, framework_peer: bytes, framework_id: str,
               task_id: str, state: str, **fields) -> None:
        """A reliable status update from the agent, acknowledged by the framework."""
        status = proto.TaskStatus(task_id=task_id, state=state, uuid=uuid.uuid4().bytes,
                                  timestamp=self.clock.time(), **fields)
        self.send(agent_peer, proto.StatusUpdate(framework_id, status))
        self.send(framework_peer, proto.Acknowledge(status.agent_id, task_id, status.uuid))
        self.clock.advance(1)


def task(task_id: str, name: str, agent_id: str, resources: str, **fields) -> proto.TaskInfo:
    return proto.TaskInfo(task_id=task_id, name=name, agent_id=agent_id,
                          resources=Resources.parse(resources),
                          command=proto.CommandInfo("sleep 1000"), **fields)


@pytest.fixture
def cluster() -> SimpleNamespace:
    """Two agents; marathon runs web.1 (container IP) and db.1 (host IP) and ran batch.1;
    a MULTI_ROLE framework subscribed later and holds offers."""
    c = Cluster()
    a = c.register_agent(b"agent-a", "agent-a.example", "10.0.0.5",
                         "cpus:4;mem:4096;disk:10000;ports:[31000-31010]", "rack:r1;level:10")
    b = c.register_agent(b"agent-b", "agent-b.example", "10.0.0.6",
                         "cpus:2;mem:2048;disk:5000;ports:[32000-32010]")
    f1 = c.subscribe(b"marathon", proto.FrameworkInfo(
        user="root", name="marathon", roles=["web"], hostname="marathon-host",
        webui_url="http://marathon-host:8080", principal="marathon", failover_timeout=604800.0,
        checkpoint=True, capabilities=[proto.PARTITION_AWARE]))
    c.master.allocate()
    offers = c.offers(f1)
    c.launch(b"marathon", offers[a],
             task("web.1", "web", a, "cpus:1;mem:128;ports:[31000-31000,31005-31010]",
                  labels={"HAPROXY_GROUP": "external"}, discovery=WEB_DISCOVERY),
             task("batch.1", "batch", a, "cpus:0.5;mem:64"))
    c.launch(b"marathon", offers[b], task("db.1", "db", b, "cpus:1;mem:256;ports:[32000-32000]"))
    c.clock.advance(1)
    c.update(b"agent-a", b"marathon", f1, "web.1", proto.TASK_STARTING)
    c.update(b"agent-a", b"marathon", f1, "web.1", proto.TASK_RUNNING, healthy=True,
             labels={"k": "v"}, container_ip="172.17.0.2")
    c.update(b"agent-a", b"marathon", f1, "batch.1", proto.TASK_RUNNING)
    c.update(b"agent-a", b"marathon", f1, "batch.1", proto.TASK_FINISHED)
    c.update(b"agent-b", b"marathon", f1, "db.1", proto.TASK_RUNNING)
    f2 = c.subscribe(b"multi", proto.FrameworkInfo(
        user="nobody", name="multi", roles=["web", "batch"], capabilities=[proto.MULTI_ROLE]))
    c.master.allocate()
    return SimpleNamespace(c=c, master=c.master, a=a, b=b, f1=f1, f2=f2)


# --------------------------------------------------------------------------- Mesos-DNS's way


def parse_pid(pid: str) -> tuple[str, int]:
    """Mesos-DNS's UPID unmarshaller: exactly one '@' and a host:port; anything else fails."""
    if not isinstance(pid, str) or pid.count("@") != 1:
        raise ValueError(f"invalid pid {pid!r}")
    _, address = pid.split("@")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"invalid pid {pid!r}")
    return host.strip("[]"), int(port)


def parse_ports(text: str) -> tuple[int, ...]:
    """Mesos-DNS's parsePorts: inside '[...]', ranges split on ',' then '-'."""
    inside = text.split("[")[1].split("]")[0] if "[" in text else ""
    ports: list[int] = []
    for item in filter(None, (part.strip() for part in inside.split(","))):
        lo, hi = item.split("-")
        ports.extend(range(int(lo), int(hi) + 1))
    return tuple(ports)


LABEL_IP_SOURCES = ("Docker.NetworkSettings.IPAddress",
                    "MesosContainerizer.NetworkSettings.IPAddress")


def task_ips(task_json: dict, agent_ip: str) -> tuple[str, ...]:
    """Latest TASK_RUNNING status: netinfo, then docker/mesos labels, else the agent's IP."""
    running = [s for s in task_json["statuses"] if s["state"] == "TASK_RUNNING"]
    if running:
        latest = max(running, key=lambda s: s["timestamp"])
        netinfos = latest.get("container_status", {}).get("network_infos", [])
        ips = tuple(a["ip_address"] for n in netinfos for a in n.get("ip_addresses", []))
        if ips:
            return ips
        labels = {label["key"]: label["value"] for label in latest.get("labels", [])}
        for key in LABEL_IP_SOURCES:
            if labels.get(key):
                return (labels[key],)
    return (agent_ip,)


def mesos_dns_tasks(state: dict) -> set[tuple[str, tuple[str, ...], tuple[int, ...]]]:
    """(task name, IPs, ports) for every task Mesos-DNS would make records for."""
    if not state.get("leader"):
        raise ValueError("no leader")
    parse_pid(state["leader"])
    agent_ips = {s["id"]: parse_pid(s["pid"])[0] for s in state["slaves"]}
    found = set()
    for framework in state["frameworks"]:
        if "pid" in framework:
            parse_pid(framework["pid"])     # present but invalid: the whole decode fails
        for t in framework["tasks"]:
            if t["state"] != "TASK_RUNNING" or t["slave_id"] not in agent_ips:
                continue
            ports = parse_ports(t["resources"].get("ports", ""))
            found.add((t["name"], task_ips(t, agent_ips[t["slave_id"]]), ports))
    return found


def test_the_parser_reads_fake_json_as_mesos_dns_does():
    fake = json.loads(FAKE_JSON.read_text())
    found = mesos_dns_tasks(fake)
    assert ("liquor.store", ("10.3.0.1",), (31354, 31355)) in found       # latest RUNNING label
    assert ("car.store", ("1.2.3.11",), (31364, 31365)) in found          # the agent's IP
    assert ("nginx", ("10.3.0.3",), ()) in found                          # Mesos label
    assert ("toy-store", ("12.0.1.3", "12.0.1.2", "fd01:b::1:8000:2"), (31354, 31355)) in found
    assert not any(name.startswith("poseidon") for name, _, _ in found)  # TASK_KILLED
    # Cross-check with what upstream Mesos-DNS generated from the same file.
    records = json.loads(EXPECTED_RECORDS.read_text())["variants"]["resolver_fakeDNS"]["records"]
    a_records = {fqdn: answers for fqdn, kind, answers in records if kind == "A"}
    for name, fqdn in (("liquor.store", "liquor.store"), ("car.store", "car-store"),
                       ("nginx", "nginx"), ("chronos", "chronos"), ("reviewbot", "reviewbot")):
        [(_, ips, _)] = [item for item in found if item[0] == name]
        assert set(ips) <= set(a_records[f"{fqdn}.marathon.mesos."])


def test_mesos_dns_finds_running_tasks_with_container_or_agent_ip(cluster):
    state = views.state(cluster.master, FLAGS)
    assert mesos_dns_tasks(state) == {
        ("web", ("172.17.0.2",), (31000, 31005, 31006, 31007, 31008, 31009, 31010)),
        ("db", ("10.0.0.6",), (32000,)),
    }


# --------------------------------------------------------------------------- /master/state


def test_state_top_level_has_exactly_mesos_keys(cluster):
    state = views.state(cluster.master, FLAGS)
    assert set(state) == TOP_KEYS
    assert state["version"] == "1.11.0"
    assert state["id"] == "M1" and state["hostname"] == "master1"
    assert state["pid"] == state["leader"] == "master@10.0.0.1:5050"
    assert parse_pid(state["leader"]) == ("10.0.0.1", 5050)
    assert state["leader_info"] == {"id": "M1", "pid": "master@10.0.0.1:5050", "port": 5050,
                                    "hostname": "master1"}
    assert all(isinstance(c, str) for c in state["capabilities"])
    assert state["flags"] == FLAGS
    assert (state["activated_slaves"], state["deactivated_slaves"],
            state["unreachable_slaves"]) == (2, 0, 0)
    assert state["start_time"] == state["elected_time"] == 1_700_000_000.0
    assert state["orphan_tasks"] == state["unregistered_frameworks"] == []
    assert state["recovered_slaves"] == [] and state["completed_frameworks"] == []


def test_state_extra_is_merged_at_the_top_level(cluster):
    state = views.state(cluster.master, FLAGS, extra={"meseta": {"event_bus": [1, 7]}})
    assert set(state) == TOP_KEYS | {"meseta"}
    assert state["meseta"] == {"event_bus": [1, 7]}


def test_slave_elements(cluster):
    slaves = {s["id"]: s for s in views.state(cluster.master, FLAGS)["slaves"]}
    a = slaves[cluster.a]
    assert set(a) == SLAVE_KEYS
    assert a["pid"] == "slave(1)@10.0.0.5:5051" and parse_pid(a["pid"]) == ("10.0.0.5", 5051)
    assert a["hostname"] == "agent-a.example" and a["port"] == 5051
    assert a["attributes"] == {"rack": "r1", "level": 10.0}
    assert a["resources"] == {"cpus": 4.0, "gpus": 0.0, "mem": 4096.0, "disk": 10000.0,
                              "ports": "[31000-31010]"}
    # batch.1 finished: only web.1 is charged.
    assert a["used_resources"] == {"cpus": 1.0, "gpus": 0.0, "mem": 128.0, "disk": 0.0,
                                   "ports": "[31000-31000, 31005-31010]"}
    assert a["reserved_resources"] == {} and a["unreserved_resources"] == a["resources"]
    assert a["active"] is True and a["deactivated"] is False
    assert a["version"] == "1.11.0" and all(isinstance(c, str) for c in a["capabilities"])
    assert slaves[cluster.b]["attributes"] == {}


def test_framework_elements(cluster):
    state = views.state(cluster.master, FLAGS)
    frameworks = {f["id"]: f for f in state["frameworks"]}
    marathon, multi = frameworks[cluster.f1], frameworks[cluster.f2]
    assert set(marathon) == FRAMEWORK_KEYS | {"role", "principal"}
    assert set(multi) == FRAMEWORK_KEYS | {"roles"}
    assert "pid" not in marathon and "pid" not in multi
    assert marathon["role"] == "web" and multi["roles"] == ["web", "batch"]
    assert marathon["capabilities"] == ["PARTITION_AWARE"]
    assert (marathon["user"], marathon["principal"], marathon["hostname"],
            marathon["webui_url"]) == ("root", "marathon", "marathon-host",
                                       "http://marathon-host:8080")
    assert marathon["failover_timeout"] == 604800.0 and marathon["checkpoint"] is True
    assert (marathon["active"], marathon["connected"], marathon["recovered"]) == (True, True, False)
    assert marathon["unregistered_time"] == 0.0
    assert {t["id"] for t in marathon["tasks"]} == {"web.1", "db.1"}
    assert [t["id"] for t in marathon["completed_tasks"]] == ["batch.1"]
    assert marathon["unreachable_tasks"] == [] and marathon["executors"] == []
    assert marathon["used_resources"]["cpus"] == 2.0
    assert marathon["resources"] == marathon["used_resources"]          # it holds no offers
    assert multi["offers"] and multi["offered_resources"]["cpus"] > 0


def test_offer_elements(cluster):
    state = views.state(cluster.master, FLAGS)
    [multi] = [f for f in state["frameworks"] if f["id"] == cluster.f2]
    for offer in multi["offers"]:
        assert set(offer) == OFFER_KEYS
        assert offer["framework_id"] == cluster.f2
        assert offer["slave_id"] in (cluster.a, cluster.b)
        assert offer["allocation_info"]["role"] in ("web", "batch")
        assert {"cpus", "gpus", "mem", "disk"} <= set(offer["resources"])


def test_task_elements(cluster):
    state = views.state(cluster.master, FLAGS)
    [marathon] = [f for f in state["frameworks"] if f["id"] == cluster.f1]
    tasks = {t["id"]: t for t in marathon["tasks"] + marathon["completed_tasks"]}
    web, db, batch = tasks["web.1"], tasks["db.1"], tasks["batch.1"]
    assert set(web) == TASK_KEYS | {"labels", "discovery"}
    assert set(db) == set(batch) == TASK_KEYS
    assert (web["name"], web["framework_id"], web["slave_id"], web["executor_id"]) == (
        "web", cluster.f1, cluster.a, "")
    assert web["state"] == "TASK_RUNNING" and web["role"] == "web" and web["user"] == "root"
    assert web["resources"] == {"cpus": 1.0, "gpus": 0.0, "mem": 128.0, "disk": 0.0,
                                "ports": "[31000-31000, 31005-31010]"}
    assert web["labels"] == [{"key": "HAPROXY_GROUP", "value": "external"}]
    assert web["discovery"] == WEB_DISCOVERY
    staging, starting, running = web["statuses"]
    assert staging == {"state": "TASK_STAGING", "timestamp": 1_700_000_000.0}
    assert starting == {"state": "TASK_STARTING", "timestamp": 1_700_000_001.0}
    assert running == {
        "state": "TASK_RUNNING", "timestamp": 1_700_000_002.0, "healthy": True,
        "labels": [{"key": "k", "value": "v"}],
        "container_status": {"network_infos": [
            {"ip_addresses": [{"protocol": "IPv4", "ip_address": "172.17.0.2"}]}]}}
    assert "ports" not in batch["resources"]
    assert [s["state"] for s in batch["statuses"]] == [
        "TASK_STAGING", "TASK_RUNNING", "TASK_FINISHED"]
    assert batch["state"] == "TASK_FINISHED"


def test_our_elements_carry_every_key_of_fake_json(cluster):
    fake = json.loads(FAKE_JSON.read_text())
    state = views.state(cluster.master, FLAGS)
    ours_slave = set(state["slaves"][0])
    [ours_fw] = [f for f in state["frameworks"] if f["id"] == cluster.f1]
    ours_task = set().union(*(t for t in ours_fw["tasks"]))
    ours_status = set().union(*(s for t in ours_fw["tasks"] for s in t["statuses"]))
    assert {"leader", "frameworks", "slaves"} <= set(state)
    for slave in fake["slaves"]:
        assert set(slave) - {"reregistered_time"} <= ours_slave
    for framework in fake["frameworks"]:
        # pid: ours are HTTP-style frameworks; reregistered_time: only once reregistered.
        assert set(framework) - {"pid", "reregistered_time"} <= set(ours_fw)
        for t in framework["tasks"]:
            assert set(t) <= ours_task
            for status in t["statuses"]:
                assert set(status) <= ours_status


def test_mesos_dns_contract_keys(cluster):
    """The fields Mesos-DNS decodes (reference §3) are all where it looks for them."""
    state = views.state(cluster.master, FLAGS)
    for slave in state["slaves"]:
        assert {"id", "hostname", "pid"} <= set(slave)
    for framework in state["frameworks"]:
        assert {"tasks", "name", "hostname"} <= set(framework)
        for t in framework["tasks"]:
            assert {"framework_id", "id", "name", "slave_id", "state", "statuses",
                    "resources"} <= set(t)
            assert all({"timestamp", "state"} <= set(s) for s in t["statuses"])


def test_reregistered_time_appears_after_a_reregistration(cluster):
    c = cluster.c
    agent = cluster.master.agents[cluster.a]
    c.send(b"agent-a", proto.ReregisterAgent(proto.PROTOCOL_VERSION, agent.info, tasks=[
        proto.TaskRecord(cluster.f1, cluster.master.frameworks[cluster.f1].tasks["web.1"].info,
                         proto.TASK_RUNNING)]))
    [slave] = [s for s in views.state(cluster.master, FLAGS)["slaves"] if s["id"] == cluster.a]
    assert set(slave) == SLAVE_KEYS | {"reregistered_time"}


def test_unreachable_agent_moves_its_tasks(cluster):
    c = cluster.c
    c.clock.advance(80)
    for peer in (b"agent-a", b"marathon", b"multi"):
        c.send(peer, proto.Heartbeat())
    cluster.master.tick()
    state = views.state(cluster.master, FLAGS)
    assert state["unreachable_slaves"] == 1 and [s["id"] for s in state["slaves"]] == [cluster.a]
    [marathon] = [f for f in state["frameworks"] if f["id"] == cluster.f1]
    [db] = marathon["unreachable_tasks"]
    assert db["id"] == "db.1" and db["state"] == "TASK_UNREACHABLE"
    assert {name for name, _, _ in mesos_dns_tasks(state)} == {"web"}
    metrics = views.metrics_snapshot(cluster.master)
    assert metrics["master/slaves_unreachable"] == 1.0
    assert metrics["master/tasks_unreachable"] == 1.0


def test_completed_frameworks_after_teardown(cluster):
    cluster.c.send(b"multi", proto.Teardown())
    state = views.state(cluster.master, FLAGS)
    [gone] = state["completed_frameworks"]
    assert gone["id"] == cluster.f2 and set(gone) == FRAMEWORK_KEYS | {"roles"}
    assert gone["active"] is False and gone["connected"] is False and gone["offers"] == []
    assert gone["unregistered_time"] > 0
    assert cluster.f2 not in {f["id"] for f in state["frameworks"]}


# --------------------------------------------------------------------------- other endpoints


def test_state_summary(cluster):
    summary = views.state_summary(cluster.master)
    assert set(summary) == {"hostname", "slaves", "frameworks"}
    assert summary["hostname"] == "master1"
    slaves = {s["id"]: s for s in summary["slaves"]}
    assert set(slaves[cluster.a]) == SLAVE_KEYS | SUMMARY_COUNTS | {"framework_ids"}
    assert slaves[cluster.a]["TASK_RUNNING"] == 1 and slaves[cluster.a]["TASK_FINISHED"] == 1
    assert slaves[cluster.a]["framework_ids"] == [cluster.f1]
    assert slaves[cluster.b]["TASK_RUNNING"] == 1
    frameworks = {f["id"]: f for f in summary["frameworks"]}
    marathon = frameworks[cluster.f1]
    assert set(marathon) == FRAMEWORK_SUMMARY_KEYS | SUMMARY_COUNTS | {"slave_ids"}
    assert marathon["TASK_RUNNING"] == 2 and marathon["TASK_FINISHED"] == 1
    assert marathon["slave_ids"] == sorted([cluster.a, cluster.b])
    assert frameworks[cluster.f2]["slave_ids"] == []


def test_tasks_endpoint_sorts_pages_and_filters(cluster):
    everything = views.tasks(cluster.master)
    assert set(everything) == {"tasks"}
    # Latest status: web.1 RUNNING at +2, batch.1 FINISHED at +4, db.1 RUNNING at +5.
    assert [t["id"] for t in everything["tasks"]] == ["db.1", "batch.1", "web.1"]
    ascending = views.tasks(cluster.master, order="asc")
    assert [t["id"] for t in ascending["tasks"]] == ["web.1", "batch.1", "db.1"]
    assert [t["id"] for t in views.tasks(cluster.master, limit=1, offset=1)["tasks"]] == ["batch.1"]
    assert views.tasks(cluster.master, task_id="batch.1")["tasks"][0]["state"] == "TASK_FINISHED"
    assert views.tasks(cluster.master, framework_id=cluster.f2) == {"tasks": []}
    assert set(everything["tasks"][0]) == TASK_KEYS


def test_frameworks_endpoint(cluster):
    out = views.frameworks(cluster.master)
    assert set(out) == {"frameworks", "completed_frameworks", "unregistered_frameworks"}
    assert {f["id"] for f in out["frameworks"]} == {cluster.f1, cluster.f2}
    state = views.state(cluster.master, FLAGS)
    assert out["frameworks"] == state["frameworks"]
    only = views.frameworks(cluster.master, framework_id=cluster.f2)
    assert [f["id"] for f in only["frameworks"]] == [cluster.f2]


def test_slaves_endpoint_adds_protobuf_json_arrays(cluster):
    out = views.slaves(cluster.master)
    assert set(out) == {"slaves", "recovered_slaves"} and out["recovered_slaves"] == []
    slaves = {s["id"]: s for s in out["slaves"]}
    full = {"reserved_resources_full", "unreserved_resources_full", "used_resources_full",
            "offered_resources_full"}
    a = slaves[cluster.a]
    assert set(a) == SLAVE_KEYS | full
    assert a["reserved_resources_full"] == {}
    assert Resources.from_mesos(a["unreserved_resources_full"]) == Resources.parse(
        "cpus:4;mem:4096;disk:10000;ports:[31000-31010]")
    used = a["used_resources_full"]
    assert Resources.from_mesos(used) == Resources.parse(
        "cpus:1;mem:128;ports:[31000-31000,31005-31010]")
    assert all(item["allocation_info"] == {"role": "web"} and item["role"] == "*"
               for item in used)
    offered = a["offered_resources_full"]
    assert offered and all(item["allocation_info"]["role"] in ("web", "batch")
                           for item in offered)
    only = views.slaves(cluster.master, slave_id=cluster.b)
    assert [s["id"] for s in only["slaves"]] == [cluster.b]


def test_metrics_snapshot(cluster):
    master = cluster.master
    metrics = views.metrics_snapshot(master)
    assert all(isinstance(v, float) for v in metrics.values())
    required = {"master/elected", "master/uptime_secs", "master/outstanding_offers",
                "master/dropped_messages", "allocator/mesos/allocation_runs",
                "system/cpus_total", "system/mem_total_bytes", "system/mem_free_bytes"}
    required |= {f"master/{r}_{k}" for r in ("cpus", "mem", "disk", "gpus")
                 for k in ("total", "used", "percent")}
    required |= {f"master/slaves_{k}" for k in
                 ("active", "connected", "disconnected", "inactive", "unreachable")}
    required |= {f"master/frameworks_{k}" for k in
                 ("active", "connected", "disconnected", "inactive")}
    required |= {f"master/tasks_{s}" for s in (
        "staging", "starting", "running", "killing", "finished", "failed", "killed", "lost",
        "error", "unreachable", "dropped", "gone", "gone_by_operator")}
    required |= {f"master/{k}" for k in (
        "slave_registrations", "slave_reregistrations", "slave_removals",
        "valid_status_updates", "invalid_status_updates",
        "valid_status_update_acknowledgements", "invalid_status_update_acknowledgements")}
    assert required <= set(metrics)
    assert metrics["master/elected"] == 1.0
    assert metrics["master/uptime_secs"] == master.clock.time() - master.start_time
    assert metrics["master/cpus_total"] == 6.0 and metrics["master/cpus_used"] == 2.0
    assert metrics["master/cpus_percent"] == pytest.approx(2 / 6)
    assert metrics["master/mem_used"] == 384.0 and metrics["master/gpus_percent"] == 0.0
    assert metrics["master/slaves_active"] == 2.0 and metrics["master/slaves_connected"] == 2.0
    assert metrics["master/frameworks_active"] == 2.0
    assert metrics["master/outstanding_offers"] == float(len(master.frameworks[cluster.f2].offers))
    assert metrics["master/tasks_running"] == 2.0 and metrics["master/tasks_finished"] == 1.0
    assert metrics["master/tasks_staging"] == 0.0
    assert metrics["master/slave_registrations"] == 2.0
    assert metrics["master/valid_status_updates"] == 5.0
    assert metrics["master/valid_status_update_acknowledgements"] == 5.0
    assert metrics["allocator/mesos/allocation_runs"] == 2.0
    assert metrics["system/cpus_total"] >= 1.0 and metrics["system/mem_total_bytes"] > 0


def test_an_empty_master_renders_too():
    master = Cluster().master
    state = views.state(master, {})
    assert set(state) == TOP_KEYS and state["slaves"] == state["frameworks"] == []
    assert mesos_dns_tasks(state) == set()
    assert views.metrics_snapshot(master)["master/cpus_percent"] == 0.0
    assert views.tasks(master) == {"tasks": []}


def test_every_view_is_compact_json(cluster):
    master = cluster.master
    for body in (views.state(master, FLAGS, extra={"meseta": {"seq": 1}}),
                 views.state_summary(master), views.tasks(master), views.frameworks(master),
                 views.slaves(master), views.metrics_snapshot(master)):
        text = json.dumps(body, separators=(",", ":"), allow_nan=False)
        assert json.loads(text) == body


def test_an_ipv6_container_address_says_so():
    status = views.status_json(StatusRecord(proto.TASK_RUNNING, 1.5, container_ip="fd01:b::2"))
    assert status["container_status"] == {"network_infos": [
        {"ip_addresses": [{"protocol": "IPv6", "ip_address": "fd01:b::2"}]}]}
