"""Master election and detection against a real ZooKeeper (Debian's package), in Mesos's layout:
election, failover, session expiry, ZooKeeper outages without two leaders, a 3-node ensemble
losing a member, the detectors frameworks use, and the registry store."""
from __future__ import annotations

import json
import re
import threading
import time
from typing import Callable

import pytest
from kazoo.client import KazooClient

from meseta import proto, zk
from meseta.testing.processes import free_port
from meseta.testing.zookeeper import (ZooKeeperEnsemble, ZooKeeperServer, expire_session,
                                      require_zookeeper)

SESSION = 2.0            # seconds; ZooKeeper runs with tickTime 500 ms, so 1-10 s are allowed
WAIT = 10.0              # bound of every wait below


@pytest.fixture
def zk_server(tmp_path):
    require_zookeeper()
    with ZooKeeperServer(tmp_path / "zk") as server:
        yield server


@pytest.fixture
def closing():
    """Closes what a test opened (contenders, detectors, clients), even when it fails."""
    opened: list = []
    yield opened
    for thing in reversed(opened):
        if isinstance(thing, KazooClient):
            thing.stop()
        thing.close()


def wait_until(predicate: Callable[[], object], what: str, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Timeline:
    """Elected/deposed callbacks of several contenders, timestamped as they arrive."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str, str]] = []
        self._lock = threading.Lock()

    def callbacks(self, name: str):
        def record(kind: str) -> None:
            with self._lock:
                self.events.append((time.monotonic(), name, kind))
        return (lambda: record("elected")), (lambda reason: record("deposed"))

    def close(self, contender: zk.MasterContender, name: str) -> None:
        """close() calls nothing back; it stops leading as it begins, so that ends a term."""
        with self._lock:
            self.events.append((time.monotonic(), name, "closed"))
        contender.close()

    def kinds(self, name: str) -> list[str]:
        return [kind for _, who, kind in self.events if who == name and kind != "closed"]

    def intervals(self, name: str) -> list[tuple[float, float]]:
        spans, start = [], None
        for at, who, kind in self.events:
            if who == name and kind == "elected":
                start = at
            elif who == name and kind in ("deposed", "closed") and start is not None:
                spans.append((start, at))
                start = None
        if start is not None:
            spans.append((start, float("inf")))
        return spans

    def assert_consistent(self) -> None:
        """Per contender, elected and deposed alternate (starting with elected); across
        contenders, leadership intervals never overlap."""
        names = {who for _, who, _ in self.events}
        for name in names:
            kinds = self.kinds(name)
            assert all(a != b for a, b in zip(kinds, kinds[1:])), (name, kinds)
            assert kinds[0] == "elected", (name, kinds)
        spans = sorted((s, e, n) for n in names for s, e in self.intervals(n))
        for (s1, e1, n1), (s2, e2, n2) in zip(spans, spans[1:]):
            assert e1 <= s2, f"{n1} led until {e1} but {n2} was elected at {s2}"


def master_info(name: str, port: int = 5050) -> proto.MasterInfo:
    return proto.MasterInfo(id=f"id-{name}", ip="127.0.0.1", port=port, hostname=name,
                            router=f"tcp://127.0.0.1:{port + 10}",
                            publisher=f"tcp://127.0.0.1:{port + 11}")


def contend(url: str, name: str, timeline: Timeline, closing: list,
            port: int = 5050) -> zk.MasterContender:
    on_elected, on_deposed = timeline.callbacks(name)
    contender = zk.MasterContender(url, zk.master_info_json(master_info(name, port)),
                                   on_elected, on_deposed, session_timeout=SESSION)
    closing.append(contender)
    return contender


def children(client: KazooClient, path: str) -> list[str]:
    return client.get_children(path)


# ---------------------------------------------------------------------------------------------


def test_lowest_node_leads_in_mesos_layout_and_failover(zk_server, closing):
    url, timeline = zk_server.url("/mesos"), Timeline()
    reader = KazooClient(zk_server.hosts)
    reader.start(WAIT)
    closing.append(reader)
    reader.ensure_path("/mesos/registry/agents")      # the master's registry: not a candidate
    reader.create("/mesos/log_replicas", b"")

    first = contend(url, "m1", timeline, closing, port=5050)
    wait_until(lambda: first.leading, "m1 to lead")
    second = contend(url, "m2", timeline, closing, port=5150)
    wait_until(lambda: second.node, "m2 to create its node")
    assert re.fullmatch(r"json\.info_\d{10}", first.node)
    assert int(second.node[-10:]) > int(first.node[-10:])

    # What pymesos does: drop log_replicas, string-min of the children, json.loads, address.
    names = [c for c in children(reader, "/mesos") if c != "log_replicas"]
    data, _ = reader.get(f"/mesos/{min(names)}")
    assert b", " not in data and b": " not in data                 # compact, as Mesos writes
    node = json.loads(data)
    assert (node["address"]["ip"], node["address"]["port"]) == ("127.0.0.1", 5050)
    assert node["ip"] == 16777343 and node["pid"] == "master@127.0.0.1:5050"
    assert {"id", "ip", "port", "pid", "hostname", "version", "address",
            "capabilities"} <= set(node)
    assert node["meseta"] == {"router": "tcp://127.0.0.1:5060",
                              "publisher": "tcp://127.0.0.1:5061",
                              "protocol_version": proto.PROTOCOL_VERSION}
    assert wait_until(second.leader_info, "m2 to see the leader") == master_info("m1", 5050)
    assert not second.leading

    timeline.close(first, "m1")
    wait_until(lambda: second.leading, "m2 to take over")
    assert first.node is None and timeline.kinds("m1") == ["elected"]   # close() calls nothing

    third = contend(url, "m3", timeline, closing, port=5250)
    assert wait_until(third.leader_info, "m3 to see the leader") == master_info("m2", 5150)
    assert not third.leading and second.leading
    assert timeline.kinds("m3") == []
    timeline.assert_consistent()


def test_leader_session_expiry_deposes_and_recontends_with_a_new_node(zk_server, closing):
    url, timeline = zk_server.url("/meseta"), Timeline()
    first = contend(url, "m1", timeline, closing)
    wait_until(lambda: first.leading, "m1 to lead")
    second = contend(url, "m2", timeline, closing)
    wait_until(lambda: second.node, "m2 to create its node")
    old_node = first.node

    expire_session(first.client)

    wait_until(lambda: second.leading, "m2 to be elected")
    assert "deposed" in timeline.kinds("m1")
    wait_until(lambda: first.node not in (None, old_node), "m1 to contend with a new node")
    reader = KazooClient(zk_server.hosts)
    reader.start(WAIT)
    closing.append(reader)
    current = children(reader, "/meseta")
    assert old_node not in current and first.node in current
    assert zk.leader_node(current) == second.node
    assert not first.leading and timeline.kinds("m1")[-1] == "deposed"
    assert wait_until(first.leader_info, "m1 to see the new leader") == master_info("m2")


def test_zookeeper_outage_never_leaves_two_leaders(zk_server, closing):
    url, timeline = zk_server.url("/meseta"), Timeline()
    first = contend(url, "m1", timeline, closing)
    wait_until(lambda: first.leading, "m1 to lead")
    second = contend(url, "m2", timeline, closing)
    wait_until(lambda: second.node, "m2 to stand by")

    zk_server.stop()
    stopped = time.monotonic()
    # No zombie: deposed on SUSPENDED, while ZooKeeper is still down.
    wait_until(lambda: timeline.kinds("m1")[-1] == "deposed", "m1 to step down")
    assert not first.leading and not second.leading and first.leader_info() is None
    restarted = time.monotonic()
    zk_server.start()

    wait_until(lambda: first.client.connected and second.client.connected
               and first.leading != second.leading, "exactly one leader after ZooKeeper returns")
    assert not [e for e in timeline.events if stopped <= e[0] <= restarted and e[2] == "elected"]
    timeline.assert_consistent()


def test_detector_follows_the_leader(zk_server, closing):
    url, timeline = zk_server.url("/meseta"), Timeline()
    seen: list = []
    detector = zk.MasterDetector(url, seen.append, session_timeout=SESSION)
    closing.append(detector)

    first = contend(url, "m1", timeline, closing, port=5050)
    wait_until(lambda: detector.current() == master_info("m1", 5050), "the detector to see m1")
    second = contend(url, "m2", timeline, closing, port=5150)
    wait_until(lambda: second.node, "m2 to create its node")

    info = zk.detect_leader(url, timeout=WAIT)
    assert info == master_info("m1", 5050)
    assert (info.router, info.publisher) == ("tcp://127.0.0.1:5060", "tcp://127.0.0.1:5061")

    first.close()
    wait_until(lambda: detector.current() == master_info("m2", 5150), "the detector to see m2")
    second.close()
    wait_until(lambda: seen and seen[-1] is None, "the detector to report no leader")
    assert seen == [master_info("m1", 5050), master_info("m2", 5150), None]


def test_detect_leader_waits_for_a_master_then_fails_clearly(zk_server, closing):
    url = zk_server.url("/nobody")
    with pytest.raises(zk.NoLeaderError, match="no master has registered under zk://"):
        zk.detect_leader(url, timeout=0.5)

    timeline = Timeline()
    later = threading.Timer(0.3, lambda: contend(url, "m1", timeline, closing))
    later.start()
    assert zk.detect_leader(url, timeout=WAIT) == master_info("m1")   # woken by the watch
    later.join()

    with pytest.raises(zk.NoLeaderError, match="did not answer"):
        zk.detect_leader(f"zk://127.0.0.1:{free_port()}/meseta", timeout=0.5)


def test_ensemble_keeps_its_leader_when_one_server_stops(tmp_path, closing):
    require_zookeeper()
    with ZooKeeperEnsemble(tmp_path, size=3) as ensemble:
        timeline = Timeline()
        # Stop a follower the leader is not connected to: its session never notices.
        victim = ensemble.followers()[0]
        others = ",".join(s.hosts for i, s in enumerate(ensemble.servers) if i != victim)
        first = contend(f"zk://{others}/meseta", "m1", timeline, closing)
        wait_until(lambda: first.leading, "m1 to lead")
        second = contend(ensemble.url("/meseta"), "m2", timeline, closing)
        wait_until(lambda: second.node, "m2 to create its node")

        ensemble.stop_server(victim)
        store = zk.ZkStore(first.client, "/meseta/registry", timeout=WAIT)
        store.set("agents/a1", b"admitted")                 # 2 of 3: the quorum still writes
        wait_until(lambda: second.client.connected, "m2 to be connected to a live server")
        assert wait_until(second.leader_info, "m2 to see m1") == master_info("m1")
        assert first.leading and timeline.kinds("m1") == ["elected"]

        timeline.close(first, "m1")
        wait_until(lambda: second.leading, "m2 to be elected with one server down")
        third = contend(ensemble.url("/meseta"), "m3", timeline, closing)
        assert wait_until(third.leader_info, "m3 to see m2") == master_info("m2")
        assert not third.leading
        assert zk.ZkStore(third.client, "/meseta/registry").get("agents/a1") == b"admitted"
        timeline.assert_consistent()
        for thing in reversed(closing):                     # before the ensemble goes away
            thing.close()
        closing.clear()


def test_store_maps_every_failure_to_store_error(zk_server, closing):
    client = KazooClient(zk_server.hosts)
    client.start(WAIT)
    closing.append(client)
    store = zk.ZkStore(client, "/meseta/registry", timeout=1.0)

    store.ensure_path("agents")
    assert store.children("agents") == [] and store.get("agents/a1") is None
    store.create("agents/a1", b"one")
    with pytest.raises(zk.StoreError, match="already exists"):
        store.create("agents/a1", b"again")
    store.set("agents/a1", b"two")
    store.set("agents/a2", b"new")                          # set creates
    assert store.get("agents/a1") == b"two"
    assert store.children("agents") == ["a1", "a2"]
    store.delete("agents/a1")
    store.delete("agents/a1")                               # absent is fine
    assert store.children("agents") == ["a2"]
    with pytest.raises(zk.StoreError, match="NotEmptyError"):
        store.delete("agents")
    with pytest.raises(zk.StoreError, match="invalid store key"):
        store.get("../etc")
    with pytest.raises(zk.StoreError, match="ZooKeeper takes at most"):
        store.set("agents/big", b"x" * (1024 * 1024))

    zk_server.stop()
    with pytest.raises(zk.StoreError, match="ZooKeeper get /meseta/registry/agents/a2"):
        store.get("agents/a2")
