"""Marathon's ZooKeeper store and leader election against a real ZooKeeper (Debian's package):
Marathon's node layout, node sizes and compression, instance writes behind the caller and their
failures, ZooKeeper outages; one leader among participants through stop, abdication, session
expiry, outages and a deleted node."""
from __future__ import annotations

import base64
import os
import threading
import time
import uuid
import zlib
from typing import Callable

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import KazooException
from kazoo.security import READ_ACL_UNSAFE

from meseta.frameworks.marathon.app import AppDefinition, next_version
from meseta.frameworks.marathon.election import ZkElection
from meseta.frameworks.marathon.group import empty_root, put_app, stamp_versions
from meseta.frameworks.marathon.instances import Instance
from meseta.frameworks.marathon.pathid import PathId
from meseta.frameworks.marathon.store import StoreError, safe_name
from meseta.frameworks.marathon.zkstore import ZLIB_MARK, ZkMarathonStore, bucket
from meseta.testing.zookeeper import ZooKeeperServer, expire_session, require_zookeeper
from meseta.zk import MAX_NODE_BYTES

P = PathId.parse
NOW = 1_700_000_000.0
SESSION = 2.0            # seconds; ZooKeeper runs with tickTime 500 ms, so 1-10 s are allowed
WAIT = 10.0              # bound of every wait below


@pytest.fixture(scope="module")
def zk_server(tmp_path_factory):
    """One server for the tests that do not stop it; each test uses its own path."""
    require_zookeeper()
    with ZooKeeperServer(tmp_path_factory.mktemp("zk")) as server:
        yield server


@pytest.fixture
def own_zk_server(tmp_path):
    """A server of the test's own, which it may stop and start."""
    require_zookeeper()
    with ZooKeeperServer(tmp_path / "zk") as server:
        yield server


@pytest.fixture
def zk_path():
    return f"/marathon-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def closing():
    """Closes (or stops) what a test opened, even when it fails; last opened, first closed."""
    opened: list = []
    yield opened
    for thing in reversed(opened):
        if isinstance(thing, KazooClient):
            thing.stop()
            thing.close()
        elif isinstance(thing, ZkElection):
            thing.stop()
        else:
            thing.close()


@pytest.fixture
def client(zk_server, closing):
    """A plain kazoo client, to look at the nodes."""
    kazoo = KazooClient(zk_server.hosts)
    kazoo.start()
    closing.append(kazoo)
    return kazoo


def wait_until(predicate: Callable[[], object], what: str, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def make_app(app_id: str, **fields) -> AppDefinition:
    return AppDefinition(P(app_id), cmd="sleep 1", **fields)


def make_instance(app: AppDefinition, n: int) -> Instance:
    return Instance.launched(app, instance_id=f"{app.id.safe_path()}.instance-{n:08d}",
                             agent_id="agent-1", host="h1", host_ports=(31000 + n,), now=NOW)


def node_sizes(kazoo: KazooClient, path: str) -> dict[str, int]:
    """Every node below `path` and its data size, read a level at a time."""
    sizes, level = {}, [path]
    while level:
        replies = [(node, kazoo.get_async(node), kazoo.get_children_async(node)) for node in level]
        level = []
        for node, data, children in replies:
            sizes[node] = len(data.get(timeout=WAIT)[0])
            level += [f"{node}/{child}" for child in children.get(timeout=WAIT)]
    return sizes


# ---------------------------------------------------------------------------------------------
# The store


def test_nodes_are_laid_out_as_marathon_does(zk_server, zk_path, client, closing):
    store = ZkMarathonStore(zk_server.url(zk_path))
    closing.append(store)
    root = stamp_versions(empty_root(), put_app(empty_root(), make_app("/product/web")), NOW)
    store.save_root(root)
    instance = make_instance(root.groups[P("/product")].apps[P("/product/web")], 1)
    store.save_instance(instance)
    store.save_framework_id("fw-1")
    store.load()                              # waits for the instance write
    state = f"{zk_path}/state"
    app_id, version = "/product/web", safe_name(root.version)
    app_node = f"{state}/app/{bucket(app_id)}/{safe_name(app_id)}/{version}"
    assert client.get(app_node)[0].startswith(b'{"id":"/product/web"')
    assert client.exists(f"{state}/group/{bucket('root')}/root/{version}")
    assert b'"apps":[{"id":"/product/web"' in client.get(f"{state}/group/{bucket('root')}/root")[0]
    assert client.exists(f"{state}/instance/{bucket(instance.instance_id)}/{instance.instance_id}")
    assert client.get(f"{state}/framework-id/{bucket('id')}/id")[0] == b'{"frameworkId":"fw-1"}'
    assert bucket(app_id) == format(zlib.crc32(app_id.encode()) % 16, "x")


def test_a_thousand_apps_stay_far_below_the_node_limit(zk_server, zk_path, client, closing):
    store = ZkMarathonStore(zk_server.url(zk_path))
    closing.append(store)
    target = empty_root()
    for n in range(1000):
        target = put_app(target, make_app(f"/team{n % 10}/app{n}", instances=3,
                                          labels={"owner": f"team{n % 10}"}))
    root = stamp_versions(empty_root(), target, NOW)
    store.save_root(root)
    sizes = node_sizes(client, zk_path)
    assert len(sizes) > 2000                   # one node per app id and per app version
    assert max(sizes.values()) < 100 * 1024    # the root names apps: ~60 bytes each
    assert max(sizes.values()) < MAX_NODE_BYTES
    assert ZkMarathonStore(zk_server.url(zk_path)).load().root == root


def test_big_records_are_compressed_and_too_big_ones_refused(zk_server, zk_path, client, closing):
    store = ZkMarathonStore(zk_server.url(zk_path))
    closing.append(store)
    big = {"id": "d1", "steps": [{"actions": [{"action": "StartApplication", "app": f"/a{n}"}
                                              for n in range(5000)]}]}
    store.save_deployment(big)
    data, _ = client.get(f"{zk_path}/state/deployment/{bucket('d1')}/d1")
    assert data.startswith(ZLIB_MARK) and len(data) < 64 * 1024
    huge = {"id": "d2", "noise": base64.b64encode(os.urandom(1_500_000)).decode()}
    with pytest.raises(StoreError, match="even compressed"):
        store.save_deployment(huge)
    assert store.load().deployments == [big]


def test_instance_writes_land_in_order_behind_the_caller(zk_server, zk_path, closing):
    store = ZkMarathonStore(zk_server.url(zk_path))
    closing.append(store)
    app = next_version(None, make_app("/web"), NOW)
    latest = {}
    for n in range(300):
        for state in ("TASK_STAGING", "TASK_STARTING", "TASK_RUNNING"):
            latest[n] = make_instance(app, n).updated(state=state, now=NOW + n)
            store.save_instance(latest[n])
    for n in range(0, 300, 3):
        store.delete_instance(latest.pop(n).instance_id)
    loaded = ZkMarathonStore(zk_server.url(zk_path))
    closing.append(loaded)
    assert sorted(store.load().instances, key=lambda i: i.instance_id) == list(latest.values())
    assert sorted(loaded.load().instances, key=lambda i: i.instance_id) == list(latest.values())


def test_sync_returns_once_instance_writes_are_in_zookeeper(zk_server, zk_path, closing):
    # what a launch waits for: a successor reading the store then knows every launched task
    store = ZkMarathonStore(zk_server.url(zk_path))
    closing.append(store)
    app = next_version(None, make_app("/web"), NOW)
    instances = [make_instance(app, n) for n in range(200)]
    for instance in instances:
        store.save_instance(instance)
    store.sync()
    successor = ZkMarathonStore(zk_server.url(zk_path))
    closing.append(successor)
    key = lambda i: i.instance_id
    assert sorted(successor.load().instances, key=key) == sorted(instances, key=key)


def test_a_failed_instance_write_fails_the_store(zk_server, zk_path, client, closing):
    failures = []
    store = ZkMarathonStore(zk_server.url(zk_path), on_failure=failures.append, timeout=2.0)
    closing.append(store)
    app = next_version(None, make_app("/web"), NOW)
    instance = make_instance(app, 1)
    # A read-only bucket: ZooKeeper refuses the write (NoAuth), which no retry can mend.
    client.ensure_path(f"{zk_path}/state/instance")
    client.create(f"{zk_path}/state/instance/{bucket(instance.instance_id)}", acl=READ_ACL_UNSAFE)
    store.save_instance(instance)             # returns at once; the write fails behind it
    wait_until(lambda: failures, "the failure callback")
    assert isinstance(failures[0], StoreError) and "NoAuth" in str(failures[0])
    with pytest.raises(StoreError, match="failed earlier"):
        store.sync()                          # so no task is launched on it
    with pytest.raises(StoreError, match="failed earlier"):
        store.save_deployment({"id": "d1"})
    assert store.load().instances == []       # what was really written; and on it goes
    store.save_deployment({"id": "d1"})
    assert store.load().deployments == [{"id": "d1"}]


def test_writes_wait_out_a_short_zookeeper_outage(own_zk_server, zk_path, closing):
    store = ZkMarathonStore(own_zk_server.url(zk_path), session_timeout=5.0)
    closing.append(store)
    store.save_deployment({"id": "before"})
    app = next_version(None, make_app("/web"), NOW)
    own_zk_server.stop()
    store.save_instance(make_instance(app, 1))            # queued; retried behind us
    saved = threading.Event()
    writer = threading.Thread(target=lambda: (store.save_deployment({"id": "during"}),
                                              saved.set()))
    writer.start()
    own_zk_server.start()
    writer.join(WAIT)
    assert saved.is_set()
    state = store.load()
    assert [i.instance_id for i in state.instances] == [make_instance(app, 1).instance_id]
    assert sorted(d["id"] for d in state.deployments) == ["before", "during"]


def test_store_and_election_share_one_session(zk_server, zk_path, closing):
    kazoo = KazooClient(zk_server.hosts)
    kazoo.start()
    closing.append(kazoo)
    elected = threading.Event()
    election = ZkElection(kazoo, "127.0.0.1:8080", path=zk_path)
    closing.append(election)
    election.start(elected.set, lambda why: None)
    store = ZkMarathonStore(kazoo, zk_path)
    closing.append(store)
    assert elected.wait(WAIT)
    store.save_framework_id("fw")
    assert store.load().framework_id == "fw"
    assert sorted(kazoo.get_children(zk_path)) == ["leader", "state"]


# ---------------------------------------------------------------------------------------------
# Elections


class Participants:
    """ZkElections under one path, recording their callbacks in order."""

    def __init__(self, url: str, closing: list) -> None:
        self.url, self.closing = url, closing
        self.events: list[tuple[str, str]] = []
        self.elections: dict[str, ZkElection] = {}
        self._lock = threading.Lock()

    def add(self, name: str, client: KazooClient | None = None) -> ZkElection:
        election = (ZkElection(self.url, name, session_timeout=SESSION) if client is None
                    else ZkElection(client, name, path=self.url.rsplit("/", 1)[1]))
        self.closing.append(election)
        self.elections[name] = election
        election.start(lambda: self._record(name, "elected"),
                       lambda why: self._record(name, f"deposed: {why}"))
        return election

    def _record(self, name: str, what: str) -> None:
        with self._lock:
            self.events.append((name, what))

    def of(self, name: str) -> list[str]:
        with self._lock:
            return [what for who, what in self.events if who == name]

    def leaders(self) -> list[str]:
        return [name for name, e in self.elections.items() if e.is_leader]

    def wait_for_one_leader(self) -> str:
        """Every running participant contends, exactly one leads, and all name it."""
        running = [e for e in self.elections.values() if not e._stopped]
        path = f"/{self.url.rsplit('/', 1)[1]}/leader"

        def settled():
            leaders = self.leaders()
            if len(leaders) != 1 or {e.leader() for e in running} != {leaders[0]}:
                return None
            try:                              # asked through the leader's own session
                contenders = self.elections[leaders[0]].client.get_children(path)
            except KazooException:
                return None
            return leaders[0] if len(contenders) == len(running) else None
        return wait_until(settled, "exactly one leader that every participant names")


def alternates(events: list[str]) -> bool:
    kinds = [e.split(":")[0] for e in events]
    return all(kind == ("elected" if i % 2 == 0 else "deposed") for i, kind in enumerate(kinds))


@pytest.fixture
def participants(zk_server, zk_path, closing):
    return Participants(zk_server.url(zk_path), closing)


def test_exactly_one_of_two_leads_and_both_name_it(participants, client, zk_path):
    participants.add("10.0.0.1:8080")
    participants.add("10.0.0.2:8080")
    leader = participants.wait_for_one_leader()
    assert participants.of(leader) == ["elected"]
    assert len(client.get_children(f"{zk_path}/leader")) == 2


def test_when_the_leader_stops_the_other_leads(participants):
    participants.add("a:1")
    participants.add("b:1")
    first = participants.wait_for_one_leader()
    participants.elections[first].stop()
    second = participants.wait_for_one_leader()
    assert second != first
    assert participants.of(first) == ["elected"]         # stop calls nothing back
    assert participants.elections[first].leader() is None


def test_abdication_hands_over_and_the_abdicator_contends_again(participants):
    participants.add("a:1")
    participants.add("b:1")
    first = participants.wait_for_one_leader()
    participants.elections[first].abdicate()
    second = participants.wait_for_one_leader()
    assert second != first
    assert participants.of(first) == ["elected", "deposed: abdicated (DELETE /v2/leader)"]
    participants.elections[second].stop()
    assert participants.wait_for_one_leader() == first
    assert alternates(participants.of(first))


def test_a_lone_participant_leads_again_after_abdicating(participants):
    alone = participants.add("a:1")
    participants.wait_for_one_leader()
    alone.abdicate()
    wait_until(lambda: len(participants.of("a:1")) == 3, "a second term")
    assert participants.of("a:1")[1:] == ["deposed: abdicated (DELETE /v2/leader)", "elected"]
    assert alone.is_leader and alone.leader() == "a:1"


def test_a_leader_whose_session_expires_is_deposed(participants):
    participants.add("a:1")
    participants.add("b:1")
    first = participants.wait_for_one_leader()
    expire_session(participants.elections[first].client)
    assert participants.of(first)[1].startswith("deposed: ZooKeeper")
    second = participants.wait_for_one_leader()
    assert second != first
    participants.elections[second].stop()                # the expired one still contends
    assert participants.wait_for_one_leader() == first
    assert alternates(participants.of(first))


def test_a_zookeeper_outage_deposes_the_leader_at_once(own_zk_server, zk_path, closing):
    participants = Participants(own_zk_server.url(zk_path), closing)
    participants.add("a:1")
    participants.add("b:1")
    first = participants.wait_for_one_leader()
    own_zk_server.stop()
    wait_until(lambda: not participants.leaders(), "no leader while ZooKeeper is down")
    assert participants.of(first)[-1] == ("deposed: ZooKeeper connection suspended: cannot "
                                         "know our session is alive")
    own_zk_server.start()
    participants.wait_for_one_leader()
    for name in participants.elections:
        assert alternates(participants.of(name))


def test_deleting_the_leaders_node_deposes_it(participants, client, zk_path):
    alone = participants.add("a:1")
    participants.wait_for_one_leader()
    [node] = client.get_children(f"{zk_path}/leader")
    client.delete(f"{zk_path}/leader/{node}")
    wait_until(lambda: len(participants.of("a:1")) == 3, "deposed and elected again")
    assert participants.of("a:1")[1] == f"deposed: our election node {node} was deleted"
    assert alone.is_leader


def test_participants_sharing_a_client_with_others(zk_server, zk_path, closing):
    """An election on a client it does not own leaves the client running when it stops."""
    kazoo = KazooClient(zk_server.hosts)
    kazoo.start()
    closing.append(kazoo)
    participants = Participants(zk_server.url(zk_path), closing)
    shared = participants.add("a:1", client=kazoo)
    participants.add("b:1")
    first = participants.wait_for_one_leader()
    if first == "a:1":
        shared.stop()
        assert participants.wait_for_one_leader() == "b:1"
        assert kazoo.connected and kazoo.get_children(f"{zk_path}/leader") is not None
    else:
        participants.elections["b:1"].stop()
        assert participants.wait_for_one_leader() == "a:1"
