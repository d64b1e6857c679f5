"""Record generation checked against upstream Mesos-DNS: the complete record sets its Go code made
from `fake.json` in 8 configurations, its `/v1/enumerate` body, the records its own tests assert
(reference mesos-dns.md §3, §9), and Meseta's own `/master/state`.
"""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meseta import proto
from meseta.dns.config import DnsConfig
from meseta.dns.incremental import RecordBook
from meseta.dns.labels import domain_frag, rfc952, rfc1123
from meseta.dns.records import (EMPTY, Lookup, RecordSet, hash_string, literal_ips, parse_ports,
                                records)
from meseta.master import views
from meseta.testing import MasterHarness, make_task

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "mesos-dns-fixtures"
FAKE = json.loads((FIXTURES / "fake.json").read_text())
EXPECTED = json.loads((FIXTURES / "expected-records.json").read_text())
VARIANTS = EXPECTED["variants"]
ENUMERATE = json.loads((FIXTURES / "expected-enumerate-rfc952.json").read_text())


def fake_lookup(host: str) -> tuple[str, ...]:
    """The fixture's one host name: framework "no pid" has hostname `localhost`."""
    return ("127.0.0.1",) if host == "localhost" else literal_ips(host)


LOOKUP = Lookup(resolve=fake_lookup)


def variant_config(variant: dict) -> DnsConfig:
    common = EXPECTED["common"]
    return DnsConfig(domain=common["domain"], soa_mname=common["ns"], listener=common["listener"],
                     masters=tuple(variant["masters"]), ip_sources=tuple(variant["ipSources"]),
                     enforce_rfc952=variant["labelSpec"] == "RFC952")


def generate(name: str = "gen_rfc952_all") -> RecordSet:
    variant = VARIANTS[name]
    return records(FAKE, variant_config(variant), variant["leader"], LOOKUP)


def as_rows(rs: RecordSet) -> set[tuple[str, str, tuple[str, ...]]]:
    """The fixture's layout: (fqdn, type, sorted answers), SRV answers as `target:port`."""
    rows = {(name, "A", tuple(sorted(ips))) for name, ips in rs.a.items()}
    rows |= {(name, "AAAA", tuple(sorted(ips))) for name, ips in rs.aaaa.items()}
    rows |= {(name, "SRV", tuple(sorted(f"{target}:{port}" for target, port in values)))
             for name, values in rs.srv.items()}
    return rows


def answers(rs: RecordSet, name: str, kind: str) -> set[str]:
    if kind == "SRV":
        return {f"{target}:{port}" for target, port in rs.srv.get(name, ())}
    return set((rs.a if kind == "A" else rs.aaaa).get(name, ()))


# --------------------------------------------------------------------------- upstream's output


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_fixture_variant_record_for_record(name):
    expected = {(fqdn, kind, tuple(sorted(values))) for fqdn, kind, values in
                VARIANTS[name]["records"]}
    got = as_rows(generate(name))
    assert sorted(got - expected) == [] and sorted(expected - got) == []


def test_enumerate_is_upstreams_body_in_upstreams_order():
    assert generate().to_enumerate() == ENUMERATE["enumerate"]
    assert json.dumps(generate().to_enumerate()) == json.dumps(ENUMERATE["enumerate"])


def test_enumerate_lists_a_record_under_the_first_task_that_made_it():
    state = json.loads(json.dumps(FAKE))
    marathon = next(f for f in state["frameworks"] if f["name"] == "marathon")
    marathon["tasks"].append(dict(marathon["tasks"][-1]))    # reviewbot, once more
    enumerated = records(state, variant_config(VARIANTS["gen_rfc952_all"]), None, LOOKUP)
    first, second = enumerated.to_enumerate()["frameworks"][3]["tasks"][-2:]
    assert first["records"] and second == {**first, "records": []}


# --------------------------------------------------------------------------- reference §9


ALL, HOST, MESOS, NETINFO, DOCKER = ("gen_rfc952_all", "gen_rfc952_host", "gen_rfc952_mesos_host",
                                     "gen_rfc952_netinfo", "gen_rfc952_docker_host")
CAR_STORE = "car-store-zinaz-0.marathon.slave.mesos."
ASSERTED = [
    (ALL, "big-dog.marathon.mesos.", "A", {"10.3.0.1"}),
    (ALL, "liquor-store.marathon.mesos.", "A", {"10.3.0.1", "10.3.0.2"}),
    (ALL, "liquor-store.marathon.slave.mesos.", "A", {"1.2.3.11", "1.2.3.12"}),
    (ALL, "car-store.marathon.slave.mesos.", "A", {"1.2.3.11"}),
    (ALL, "nginx.marathon.mesos.", "A", {"10.3.0.3"}),
    (ALL, "poseidon.marathon.mesos.", "A", set()),
    (ALL, "poseidon.marathon.slave.mesos.", "A", set()),
    (ALL, "master.mesos.", "A", {"144.76.157.37"}),
    (ALL, "master0.mesos.", "A", {"144.76.157.37"}),
    (ALL, "leader.mesos.", "A", {"144.76.157.37"}),
    (ALL, "slave.mesos.", "A", {"1.2.3.10", "1.2.3.11", "1.2.3.12"}),
    (ALL, "slave.mesos.", "AAAA", {"2001:db8::1"}),
    (ALL, "some-box.chronoswithaspaceandmixe.mesos.", "A", {"1.2.3.11"}),
    (ALL, "marathon.mesos.", "A", {"1.2.3.11"}),
    (ALL, "toy-store.ipv6-framework.mesos.", "AAAA", {"fd01:b::1:8000:2"}),
    (ALL, "toy-store.ipv6-framework.slave.mesos.", "AAAA", {"2001:db8::1"}),
    (ALL, "ipv6-framework.mesos.", "AAAA", {"2001:db8::1"}),
    (ALL, "_big-dog._tcp.marathon.mesos.", "SRV",
     {"big-dog-4dfjd-0.marathon.mesos.:80", "big-dog-4dfjd-0.marathon.mesos.:443"}),
    (ALL, "_poseidon._tcp.marathon.mesos.", "SRV", set()),
    (ALL, "_leader._tcp.mesos.", "SRV", {"leader.mesos.:5050"}),
    (ALL, "_liquor-store._tcp.marathon.mesos.", "SRV",
     {"liquor-store-4dfjd-0.marathon.mesos.:80", "liquor-store-4dfjd-0.marathon.mesos.:443",
      "liquor-store-zasmd-1.marathon.mesos.:80", "liquor-store-zasmd-1.marathon.mesos.:443"}),
    (ALL, "_liquor-store._udp.marathon.mesos.", "SRV", set()),
    (ALL, "_liquor-store.marathon.mesos.", "SRV", set()),
    (ALL, "_https._liquor-store._tcp.marathon.mesos.", "SRV",
     {"liquor-store-4dfjd-0.marathon.mesos.:443", "liquor-store-zasmd-1.marathon.mesos.:443"}),
    (ALL, "_http._liquor-store._tcp.marathon.mesos.", "SRV",
     {"liquor-store-4dfjd-0.marathon.mesos.:80", "liquor-store-zasmd-1.marathon.mesos.:80"}),
    (ALL, "_car-store._tcp.marathon.mesos.", "SRV", {CAR_STORE + ":31364", CAR_STORE + ":31365"}),
    (ALL, "_car-store._udp.marathon.mesos.", "SRV", {CAR_STORE + ":31364", CAR_STORE + ":31365"}),
    (ALL, "_slave._tcp.mesos.", "SRV", {"slave.mesos.:5051"}),
    (ALL, "_framework._tcp.marathon.mesos.", "SRV", {"marathon.mesos.:25501"}),
    (HOST, "liquor-store.marathon.mesos.", "A", {"1.2.3.11", "1.2.3.12"}),
    (HOST, "liquor-store.marathon.slave.mesos.", "A", {"1.2.3.11", "1.2.3.12"}),
    (HOST, "nginx.marathon.mesos.", "A", {"1.2.3.11"}),
    (HOST, "car-store.marathon.slave.mesos.", "A", {"1.2.3.11"}),
    (HOST, "toy-store.ipv6-framework.mesos.", "AAAA", {"2001:db8::1"}),
    (HOST, "toy-store.ipv6-framework.slave.mesos.", "AAAA", {"2001:db8::1"}),
    (MESOS, "liquor-store.marathon.mesos.", "A", {"1.2.3.11", "1.2.3.12"}),
    (MESOS, "liquor-store.marathon.slave.mesos.", "A", {"1.2.3.11", "1.2.3.12"}),
    (MESOS, "nginx.marathon.mesos.", "A", {"10.3.0.3"}),
    (MESOS, "car-store.marathon.slave.mesos.", "A", {"1.2.3.11"}),
    (MESOS, "toy-store.ipv6-framework.mesos.", "AAAA", {"2001:db8::1"}),
    (MESOS, "toy-store.ipv6-framework.slave.mesos.", "AAAA", {"2001:db8::1"}),
    (NETINFO, "toy-store.ipv6-framework.mesos.", "A", {"12.0.1.3", "12.0.1.2"}),
    (NETINFO, "toy-store.ipv6-framework.mesos.", "AAAA", {"fd01:b::1:8000:2"}),
    (NETINFO, "toy-store.ipv6-framework.slave.mesos.", "AAAA", {"2001:db8::1"}),
    (DOCKER, "liquor-store.marathon.mesos.", "A", {"10.3.0.1", "10.3.0.2"}),
    (DOCKER, "liquor-store.marathon.slave.mesos.", "A", {"1.2.3.11", "1.2.3.12"}),
    (DOCKER, "nginx.marathon.mesos.", "A", {"1.2.3.11"}),
    (DOCKER, "car-store.marathon.slave.mesos.", "A", {"1.2.3.11"}),
    (DOCKER, "toy-store.ipv6-framework.mesos.", "AAAA", {"2001:db8::1"}),
    (DOCKER, "toy-store.ipv6-framework.slave.mesos.", "AAAA", {"2001:db8::1"}),
]


@pytest.mark.parametrize("variant, name, kind, expected", ASSERTED)
def test_records_upstream_tests_assert(variant, name, kind, expected):
    assert answers(generate(variant), name, kind) == expected


def leader_records(leader: str, masters: tuple[str, ...] = ()) -> RecordSet:
    config = DnsConfig(domain="foo.com", masters=masters, soa_mname="")
    return records({"leader": leader}, config)


@pytest.mark.parametrize("leader", ["", "@", "1@", "@2", "3@4"])
def test_a_leader_that_is_no_pid_gives_no_master_records(leader):
    assert leader_records(leader).names() == set()


def test_leader_alone():
    rs = leader_records("5@0.0.0.6:7")
    assert {name: rs.a[name] for name in rs.a} == {
        "leader.foo.com.": ("0.0.0.6",), "master.foo.com.": ("0.0.0.6",),
        "master0.foo.com.": ("0.0.0.6",)}
    assert rs.srv == {"_leader._tcp.foo.com.": (("leader.foo.com.", 7),),
                      "_leader._udp.foo.com.": (("leader.foo.com.", 7),)}
    rs6 = leader_records("5@[2001:db8::1]:7")
    assert rs6.a == {} and rs6.aaaa["master0.foo.com."] == ("2001:db8::1",)


def test_master_n_follows_the_configured_list():
    rs = leader_records("5@0.0.0.6:7", ("0.0.0.8:9",))
    assert set(rs.a["master.foo.com."]) == {"0.0.0.6", "0.0.0.8"}
    assert (rs.a["master0.foo.com."], rs.a["master1.foo.com."]) == (("0.0.0.8",), ("0.0.0.6",))
    # The config refuses a repeated master; one on a known IP is skipped without an index.
    rs = leader_records("5@0.0.0.6:7", ("0.0.0.8:9", "0.0.0.6:7", "0.0.0.8:10", "0.0.0.7:0"))
    assert [rs.a[f"master{n}.foo.com."] for n in range(3)] == [("0.0.0.8",), ("0.0.0.6",),
                                                               ("0.0.0.7",)]
    assert "master3.foo.com." not in rs.a
    rs = leader_records("5@0.0.0.6:7", ("0.0.0.8:9", "0.0.0.6:7", "[2001:db8::1]:0"))
    assert rs.aaaa["master2.foo.com."] == ("2001:db8::1",)


@pytest.mark.parametrize("ns, listener, kind", [("jdef123.mesos.", "4.5.6.7", "A"),
                                                 ("ack456.mesos.", "2001:db8::1", "AAAA")])
def test_the_listener_record_is_the_soa_mname(ns, listener, kind):
    rs = records({}, DnsConfig(soa_mname=ns, listener=listener))
    assert answers(rs, ns, kind) == {listener}


def test_listener_0_0_0_0_means_every_interface_address():
    lookup = Lookup(interfaces=lambda: ("10.1.1.1", "fe80::1"))
    rs = records({}, DnsConfig(), lookup=lookup)
    assert rs.a == {"ns1.mesos.": ("10.1.1.1",)} and rs.aaaa == {"ns1.mesos.": ("fe80::1",)}
    assert records({}, DnsConfig()).names() == set()        # the pure default has no interfaces


def test_hash_string():
    assert hash_string("test") == "iffe9"


def test_ports_text():
    assert parse_ports("[31354-31354, 31355-31355]") == (31354, 31355)
    assert parse_ports("[31737-31738]") == (31737, 31738)
    assert parse_ports("[]") == parse_ports("") == ()
    assert parse_ports("[80, 90-91]") == (80, 90, 91)


# --------------------------------------------------------------------------- labels (§3)


@pytest.mark.parametrize("name, as_rfc952, as_rfc1123", [
    ("4abc123", "abc123", "4abc123"),
    ("-4abc123", "abc123", "4abc123"),
    ("a.b.c.d.e", "a-b-c-d-e", "a-b-c-d-e"),
    ("---a---b", "a---b", "a---b"),
    ("fd%gsf---gs7-f$gs--d7fddg-123", "fdgsf---gs7-fgs--d7fddg1", "fdgsf---gs7-fgs--d7fddg-123"),
    ("89fdgsf---gs7-fgs--d7fddg---123", "fdgsf---gs7-fgs--d7fddg1",
     "89fdgsf---gs7-fgs--d7fddg---123"),
    ("hello" + "-" * 56 + "f", "hellof", "hello" + "-" * 56 + "f"),
    ("chronos with a space AND----------MIXED--", "chronoswithaspaceandmixe",
     "chronoswithaspaceand----------mixed"),
    ("liquor.store", "liquor-store", "liquor-store"),
    ("ChronosTask:nightly_backup", "chronostasknightly-backu", "chronostasknightly-backup"),
    ("İstanbul", "stanbul", "stanbul"),            # only ASCII letters are lower-cased
])
def test_labels(name, as_rfc952, as_rfc1123):
    assert (rfc952(name), rfc1123(name)) == (as_rfc952, as_rfc1123)


@pytest.mark.parametrize("name, as_rfc952, as_rfc1123", [
    ("(@ host . com", "host.com", "host.com"),
    ("a..c.e", "a.c.e", "a.c.e"),
    ("MiXeDcase.CoM", "mixedcase.com", "mixedcase.com"),
    ("pod_123$abc.marathon-0.6.0-dev.mesos", "pod-123abc.marathon-0.dev.mesos",
     "pod-123abc.marathon-0.6.0-dev.mesos"),
    ("marathon-0.6.0-dev", "marathon-0.dev", "marathon-0.6.0-dev"),
    ("chronos with a space AND MIXED CASE-2.0.1", "chronoswithaspaceandmixe",
     "chronoswithaspaceandmixedcase-2.0.1"),
])
def test_domain_fragments(name, as_rfc952, as_rfc1123):
    assert (domain_frag(name, rfc952), domain_frag(name, rfc1123)) == (as_rfc952, as_rfc1123)


# --------------------------------------------------------------------------- the HTTP views


def test_hosts_view():
    rs = generate("resolver_fakeDNS")
    assert rs.hosts("leader.mesos") == [{"host": "leader.mesos.", "ip": "1.2.3.4"}]
    assert rs.hosts("LEADER.*.mesos.") == [{"host": "leader.mesos.", "ip": "1.2.3.4"}]
    assert rs.hosts("missing.mesos") == [{"host": "", "ip": ""}]
    assert {(h["host"], h["ip"]) for h in rs.hosts("toy-store.ipv6-framework.mesos")} == {
        ("toy-store.ipv6-framework.mesos.", ip) for ip in ("12.0.1.3", "12.0.1.2",
                                                           "fd01:b::1:8000:2")}


def test_services_view():
    rs = generate("resolver_fakeDNS")
    assert rs.services("_leader._tcp.mesos.") == [
        {"service": "_leader._tcp.mesos.", "host": "leader.mesos.", "ip": "1.2.3.4",
         "port": "5050"}]
    assert rs.services("_nothing._tcp.mesos.") == [
        {"service": "", "host": "", "ip": "", "port": ""}]
    toy = rs.services("_toy-store._tcp.ipv6-framework.mesos")      # target has only an AAAA
    assert {(s["ip"], s["port"]) for s in toy} == {("", "31354"), ("2001:db8::1", "31354"),
                                                   ("", "31355"), ("2001:db8::1", "31355")}


def test_empty_and_axfr():
    assert EMPTY.names() == set() and EMPTY.to_enumerate() == {"frameworks": []}
    axfr = generate().to_axfr_records()
    assert axfr["SRVs"]["_leader._tcp.mesos."] == ["leader.mesos.:5050"]
    assert axfr["AAAAs"]["slave.mesos."] == ["2001:db8::1"]


# --------------------------------------------------------------------------- Meseta's own state


def meseta_state(discovery: dict | None = None) -> dict:
    """/master/state of a harness master where Marathon runs `/product/web` (task name
    `web.product`) with two host ports on an agent at 10.0.0.5."""
    h = MasterHarness()
    agent = h.register_agent(b"agent", hostname="agent1.example", ip="10.0.0.5",
                             ports="[31000-31010]")
    framework = h.subscribe(b"marathon", name="marathon")
    h.allocate()
    [offer] = h.offers(b"marathon")
    extra = {"discovery": discovery} if discovery else {}
    h.launch(b"marathon", offer, make_task("product_web.1", agent, name="web.product",
                                           resources="cpus:0.1;mem:32;ports:[31000-31001]",
                                           **extra))
    h.agent_update(b"agent", framework, "product_web.1", proto.TASK_RUNNING)
    return views.state(h.master, {})


def test_meseta_state_marathon_app_records():
    state = meseta_state()
    rs = records(state, DnsConfig(masters=("127.0.0.1:5050",)))
    agent_id = state["slaves"][0]["id"]
    canonical = f"web-product-{hash_string('product_web.1')}-{agent_id.rsplit('-')[-1].lower()}"
    assert rs.a["web-product.marathon.mesos."] == ("10.0.0.5",)
    assert rs.a["web-product.marathon.slave.mesos."] == ("10.0.0.5",)
    assert rs.a[f"{canonical}.marathon.mesos."] == ("10.0.0.5",)
    target = f"{canonical}.marathon.slave.mesos."
    for name in ("_web-product._tcp.marathon.mesos.", "_web-product._udp.marathon.mesos.",
                 "_web-product._tcp.marathon.slave.mesos."):
        assert rs.srv[name] == ((target, 31000), (target, 31001))
    assert rs.a["slave.mesos."] == ("10.0.0.5",)
    assert rs.srv["_slave._tcp.mesos."] == (("slave.mesos.", 5051),)
    assert rs.a["leader.mesos."] == rs.a["master0.mesos."] == ("127.0.0.1",)
    assert "marathon.mesos." not in rs.a          # no pid, and the pure lookup resolves no names
    [framework] = rs.to_enumerate()["frameworks"]
    assert framework["name"] == "marathon" and framework["tasks"][0]["name"] == "web.product"


def test_meseta_state_framework_host_name_is_resolved_by_the_lookup():
    state = meseta_state()
    state["frameworks"][0]["hostname"] = "marathon-host"
    lookup = Lookup(resolve=lambda host: ("10.0.0.9",) if host == "marathon-host" else
                    literal_ips(host))
    rs = records(state, DnsConfig(masters=("127.0.0.1:5050",)), lookup=lookup)
    assert rs.a["marathon.mesos."] == ("10.0.0.9",)
    assert "_framework._tcp.marathon.mesos." not in rs.srv     # a host name has no port


def test_meseta_state_discovery_info_with_a_named_port():
    discovery = {"visibility": "FRAMEWORK", "name": "web.product",
                 "ports": {"ports": [{"number": 8080, "name": "http"}]}}
    rs = records(meseta_state(discovery), DnsConfig(masters=("127.0.0.1:5050",)))
    [target] = {t for t, _ in rs.srv["_web-product._tcp.marathon.mesos."]}
    assert target.endswith(".marathon.mesos.") and ".slave." not in target
    for proto_ in ("tcp", "udp"):                   # no protocol: published as both
        assert rs.srv[f"_web-product._{proto_}.marathon.mesos."] == ((target, 8080),)
        assert rs.srv[f"_http._web-product._{proto_}.marathon.mesos."] == ((target, 8080),)
    assert "_web.product._tcp.marathon.mesos." in rs.srv      # upstream's legacy raw name


def test_tasks_not_running_or_on_unknown_agents_get_no_records():
    state = meseta_state()
    state["frameworks"][0]["tasks"][0]["state"] = "TASK_STAGING"
    assert not any("web" in name for name in records(state, DnsConfig()).names())
    state = meseta_state()
    state["frameworks"][0]["tasks"][0]["slave_id"] = "elsewhere"
    assert not any("web" in name for name in records(state, DnsConfig()).names())


# --------------------------------------------------------------------------- performance


def big_state(n_tasks: int, n_agents: int = 200) -> dict:
    slaves = [{"id": f"M-S{i}", "pid": f"slave(1)@10.0.{i // 250}.{i % 250}:5051"}
              for i in range(n_agents)]
    tasks = [{"id": f"app{i % 500}.{i}", "name": f"app{i % 500}.group", "state": "TASK_RUNNING",
              "slave_id": f"M-S{i % n_agents}", "resources": {"ports": f"[{31000 + i % 1000}-"
                                                                        f"{31001 + i % 1000}]"},
              "statuses": [{"state": "TASK_RUNNING", "timestamp": 1.0}]}
             for i in range(n_tasks)]
    return {"leader": "master@10.1.0.1:5050", "slaves": slaves,
            "frameworks": [{"name": "marathon", "pid": "scheduler(1)@10.1.0.2:8080",
                            "tasks": tasks}]}


def test_ten_thousand_tasks_well_under_a_second():
    state = big_state(10_000)
    started = time.perf_counter()
    rs = records(state, DnsConfig())
    elapsed = time.perf_counter() - started
    assert len(rs.srv["_app7-group._tcp.marathon.mesos."]) == 20 * 2    # 20 tasks, 2 ports
    assert len(rs.a["app7-group.marathon.mesos."]) == 2                 # on 2 agents
    assert elapsed < 1.0, f"{elapsed:.2f}s for 10,000 tasks"


# --------------------------------------------------------------------------- incremental.RecordBook


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_a_book_of_every_fixture_variant_is_the_full_generation(name):
    variant = VARIANTS[name]
    book = RecordBook(FAKE, variant_config(variant), variant["leader"], LOOKUP)
    assert book.records == generate(name)
    assert book.records.to_enumerate() == generate(name).to_enumerate()


FIXTURE_TASKS = [task for framework in FAKE["frameworks"] for task in framework.get("tasks") or ()]
STATES = ("TASK_RUNNING", "TASK_RUNNING", "TASK_STAGING", "TASK_KILLED")

# One change: (framework index, template task index, existing task pick or None for a new task,
# state, slave pick, port shift, rename).
CHANGE = st.tuples(st.integers(0, 3), st.integers(0, len(FIXTURE_TASKS) - 1),
                   st.one_of(st.none(), st.integers(0, 99)), st.sampled_from(STATES),
                   st.integers(0, 4), st.integers(0, 2), st.booleans())


def changed_task(template: dict, state: dict, change, serial: int) -> dict:
    _, _, _, task_state, slave, shift, rename = change
    task = copy.deepcopy(template)
    task["state"] = task_state
    slaves = [s["id"] for s in state["slaves"]] + ["unknown-agent"]
    task["slave_id"] = slaves[slave % len(slaves)]
    if shift:
        ports = parse_ports(task["resources"].get("ports") or "")
        task["resources"]["ports"] = "[" + ", ".join(f"{p + shift}-{p + shift}" for p in ports) + "]"
    if rename:
        task["name"] = f"renamed{serial % 3}"
    return task


@settings(max_examples=120, deadline=None)
@given(variant=st.sampled_from(sorted(VARIANTS)), held_back=st.sets(st.integers(0, 9)),
       changes=st.lists(CHANGE, max_size=12))
def test_folding_task_changes_into_a_book_equals_generating_again(variant, held_back, changes):
    """Random task changes, each applied as the DNS follower applies a task_updated event
    (a new task appended to its framework, a known one replaced in place), folded into the
    book: after each one the book's records are exactly a full generation's."""
    config, leader = variant_config(VARIANTS[variant]), VARIANTS[variant]["leader"]
    state = copy.deepcopy(FAKE)
    for framework in state["frameworks"]:
        framework["tasks"] = [t for t in framework.get("tasks") or ()
                              if FIXTURE_TASKS.index(next(f for f in FIXTURE_TASKS
                                                          if f["id"] == t["id"])) not in held_back]
    book = RecordBook(state, config, leader, LOOKUP)
    assert book.records == records(state, config, leader, LOOKUP)
    for serial, change in enumerate(changes):
        framework = state["frameworks"][change[0]]
        tasks = framework.setdefault("tasks", [])
        pick = change[2]
        if pick is None or not tasks:
            task = changed_task(FIXTURE_TASKS[change[1]], state, change, serial)
            task["id"] = f"{task['id']}.{serial}"
            tasks.append(task)
        else:
            # The fixture repeats task ids in a framework: the follower (and the book) take
            # the last task of that id.
            known = [t for t in tasks if t["id"] == tasks[pick % len(tasks)]["id"]][-1]
            task = changed_task(known, state, change, serial)
            known.clear()
            known.update(task)
        before = book.records
        changed = book.upsert_task(framework["id"], copy.deepcopy(task))
        expected = records(state, config, leader, LOOKUP)
        assert book.records == expected
        assert book.records.to_enumerate() == expected.to_enumerate()
        assert changed == (book.records is not before)
        if not changed:
            assert before == expected


def test_a_book_refuses_a_task_of_a_framework_it_does_not_hold():
    book = RecordBook(FAKE, DnsConfig(), lookup=LOOKUP)
    assert book.upsert_task("another framework", dict(FIXTURE_TASKS[0])) is None


def test_a_task_that_does_not_change_its_records_leaves_the_record_set_alone():
    state = copy.deepcopy(FAKE)
    book = RecordBook(state, DnsConfig(), lookup=LOOKUP)
    before = book.records
    staging = dict(FIXTURE_TASKS[0], id="new-one", state="TASK_STAGING")
    assert book.upsert_task(state["frameworks"][0]["id"], staging) is False
    assert book.upsert_task(state["frameworks"][0]["id"], dict(FIXTURE_TASKS[0])) is False
    assert book.records is before
