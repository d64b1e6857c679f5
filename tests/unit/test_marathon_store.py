"""meseta.frameworks.marathon.store: the store contract (run against the directory store, and the
ZooKeeper store where ZooKeeper is installed), what the directory store does with damaged files,
the pruning rules, and the standalone election."""

import dataclasses
import json
import os
import threading
import uuid

import pytest

from meseta.frameworks.marathon.app import AppDefinition, next_version
from meseta.frameworks.marathon.election import StandaloneElection
from meseta.frameworks.marathon.group import (Group, empty_root, find_app, put_app, put_group,
                                              remove_app, stamp_versions)
from meseta.frameworks.marathon.instances import Instance
from meseta.frameworks.marathon.pathid import PathId
from meseta.frameworks.marathon.store import (MAX_VERSIONS, DirectoryStore, Index, StoreError,
                                              prune_plan, safe_name)
from meseta.testing.zookeeper import ZooKeeperServer, missing_reason

P = PathId.parse
NOW = 1_700_000_000.0


# ---------------------------------------------------------------------------------------------
# Builders


def make_app(app_id, **fields):
    if "args" not in fields:
        fields.setdefault("cmd", "sleep 1")
    return AppDefinition(P(app_id), **fields)


def deploy(store, original, target, now):
    """What the service does: stamp what changed, then store the new root."""
    stamped = stamp_versions(original, target, now)
    store.save_root(stamped)
    return stamped


def nested_root():
    """/db, /product/api -> /db, /product/web -> ../api, group /product/backend -> /db."""
    root = empty_root()
    root = put_app(root, make_app("/db", mem=512, env={"A": "b"}))
    root = put_app(root, make_app("/product/api", instances=3, dependencies=(P("/db"),)))
    root = put_app(root, make_app("/product/web", dependencies=(P("/product/api"),),
                                  labels={"HAPROXY_GROUP": "external"}))
    root = put_group(root, Group(P("/product/backend"), dependencies=(P("/db"),)))
    root = put_app(root, make_app("/product/backend/worker", args=("run", "--fast")))
    top = root.groups[P("/product")]
    return put_group(root, dataclasses.replace(top, enforce_role=True))


def make_instance(app, n=0, state="TASK_STAGING"):
    return Instance.launched(app, instance_id=f"{app.id.safe_path()}.instance-{n:08d}",
                             agent_id="agent-1", host="h1", host_ports=(31000 + n,), now=NOW + n,
                             agent_attributes={"rack": "r1"}).updated(state=state, now=NOW + n)


# ---------------------------------------------------------------------------------------------
# Both stores


@pytest.fixture(scope="module")
def zk_server(tmp_path_factory):
    if missing_reason():
        yield None
        return
    with ZooKeeperServer(tmp_path_factory.mktemp("zk")) as server:
        yield server


@pytest.fixture(params=["directory", "zookeeper"])
def open_store(request, tmp_path, zk_server):
    """Opens stores over one location (a directory, or a ZooKeeper path), closed at the end."""
    opened = []
    if request.param == "zookeeper":
        if zk_server is None:
            pytest.skip(missing_reason())
        from meseta.frameworks.marathon.zkstore import ZkMarathonStore
        url = zk_server.url(f"/marathon-{uuid.uuid4().hex[:8]}")

        def factory():
            opened.append(ZkMarathonStore(url, session_timeout=5.0))
            return opened[-1]
    else:
        def factory():
            opened.append(DirectoryStore(tmp_path / "marathon"))
            return opened[-1]
    yield factory
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store):
    return open_store()


def test_an_empty_store_loads_an_empty_state(store):
    state = store.load()
    assert state.root == empty_root()
    assert (state.deployments, state.instances, state.framework_id) == ([], [], None)
    assert store.root_versions() == [] and store.app_versions(P("/nothing")) == []
    assert store.root_at("2020-01-01T00:00:00.000Z") is None
    assert store.app_at(P("/nothing"), "2020-01-01T00:00:00.000Z") is None


def test_a_nested_root_round_trips(open_store):
    store = open_store()
    root = deploy(store, empty_root(), nested_root(), NOW)
    store.close()
    again = open_store()
    loaded = again.load().root
    assert loaded == root
    assert loaded.groups[P("/product")].enforce_role
    assert loaded.groups[P("/product")].groups[P("/product/backend")].dependencies == (P("/db"),)
    assert again.root_versions() == [root.version]
    assert again.app_versions(P("/product/web")) == [root.version]
    assert again.app_at(P("/db"), root.version) == root.apps[P("/db")]


def test_old_root_versions_stay_readable(store):
    first = deploy(store, empty_root(), nested_root(), NOW)
    scaled = put_app(first, dataclasses.replace(first.apps[P("/db")], instances=5))
    second = deploy(store, first, scaled, NOW + 10)
    assert store.root_versions() == [second.version, first.version]
    assert store.root_at(first.version) == first
    assert store.root_at(second.version) == second
    assert store.app_versions(P("/db")) == [second.version, first.version]
    assert store.app_at(P("/db"), first.version).instances == 1
    assert store.load().root == second


def test_at_most_fifty_versions_of_an_app_are_kept(open_store):
    store = open_store()
    root, versions = empty_root(), []
    for n in range(60):
        target = put_app(root, make_app("/web", instances=1, cmd=f"sleep {n}"))
        root = deploy(store, root, target, NOW + n)
        versions.append(root.apps[P("/web")].version)
    kept = versions[-MAX_VERSIONS:]
    assert store.app_versions(P("/web")) == kept[::-1]
    assert store.root_versions() == [r for r in versions[-MAX_VERSIONS:]][::-1]
    assert store.app_at(P("/web"), versions[0]) is None
    assert store.root_at(versions[0]) is None
    assert store.app_at(P("/web"), versions[-MAX_VERSIONS]).cmd == f"sleep {60 - MAX_VERSIONS}"
    store.close()
    again = open_store()                      # the pruning was stored, not only remembered
    assert again.app_versions(P("/web")) == kept[::-1]
    assert len(again.root_versions()) == MAX_VERSIONS


def test_an_unchanged_app_keeps_its_one_version_however_often_the_root_changes(store):
    root = deploy(store, empty_root(), put_app(empty_root(), make_app("/steady")), NOW)
    steady = root.apps[P("/steady")].version
    for n in range(1, 60):
        root = deploy(store, root, put_app(root, make_app("/busy", cmd=f"sleep {n}")), NOW + n)
    assert store.app_versions(P("/steady")) == [steady]
    assert store.load().root.apps[P("/steady")].version == steady


def test_a_removed_app_is_forgotten_once_no_kept_root_names_it(store):
    root = deploy(store, empty_root(), put_app(empty_root(), make_app("/gone")), NOW)
    root = deploy(store, root, remove_app(put_app(root, make_app("/other")), P("/gone")), NOW + 1)
    assert store.app_versions(P("/gone"))       # the first root still names it
    for n in range(2, MAX_VERSIONS + 2):
        root = deploy(store, root, put_app(root, make_app("/other", cmd=f"sleep {n}")), NOW + n)
    assert store.app_versions(P("/gone")) == []


def test_deployments_are_saved_replaced_and_deleted(open_store):
    store = open_store()
    store.save_deployment({"id": "d1", "steps": [{"actions": []}], "version": "v1"})
    store.save_deployment({"id": "d2", "steps": []})
    store.save_deployment({"id": "d1", "steps": [], "version": "v2"})
    store.delete_deployment("d2")
    store.delete_deployment("never-there")
    store.close()
    assert open_store().load().deployments == [{"id": "d1", "steps": [], "version": "v2"}]


def test_instances_are_saved_updated_and_deleted(open_store):
    store = open_store()
    app = next_version(None, make_app("/product/web"), NOW)
    kept, gone = make_instance(app, 1), make_instance(app, 2)
    store.save_instance(kept)
    store.save_instance(gone)
    running = kept.updated(state="TASK_RUNNING", now=NOW + 5, healthy=True)
    store.save_instance(running)
    store.delete_instance(gone.instance_id)
    store.close()
    assert open_store().load().instances == [running]


def test_the_framework_id_is_kept(open_store):
    store = open_store()
    store.save_framework_id("fw-1")
    store.save_framework_id("fw-2")
    store.close()
    assert open_store().load().framework_id == "fw-2"


def test_a_root_with_a_thousand_apps_saves_and_loads(open_store):
    store = open_store()
    target = empty_root()
    for n in range(1000):
        target = put_app(target, make_app(f"/team{n % 20}/app{n}", instances=2,
                                          env={"N": str(n)}))
    root = deploy(store, empty_root(), target, NOW)
    store.save_root(root)                     # nothing new: writes only the root again
    store.close()
    again = open_store()
    assert again.load().root == root
    assert again.app_versions(P("/team7/app7")) == [root.version]


def test_apps_without_a_version_are_refused(store):
    with pytest.raises(ValueError, match="/web"):
        store.save_root(put_app(empty_root(), make_app("/web")))


def test_an_unversioned_root_is_current_but_not_a_version(store):
    store.save_root(empty_root())
    assert store.load().root == empty_root()
    assert store.root_versions() == []


# ---------------------------------------------------------------------------------------------
# The directory store's files


@pytest.fixture
def folder(tmp_path):
    return tmp_path / "marathon"


def test_directory_layout(folder):
    store = DirectoryStore(folder)
    root = deploy(store, empty_root(), put_app(empty_root(), make_app("/product/web")), NOW)
    store.save_instance(make_instance(find_app(root, P("/product/web"))))
    store.save_framework_id("fw")
    store.sync()                              # instances are written behind the caller
    assert (folder / "group" / "root.json").exists()
    assert (folder / "group" / "root" / f"{safe_name(root.version)}.json").exists()
    assert (folder / "app" / "%2Fproduct%2Fweb" / f"{safe_name(root.version)}.json").exists()
    assert (folder / "instance" / "product_web.instance-00000000.json").exists()
    record = json.loads((folder / "group" / "root.json").read_text())
    assert record["groups"][0]["apps"] == [{"id": "/product/web", "version": root.version}]


def test_only_instance_writes_skip_fsync(folder, monkeypatch):
    store = DirectoryStore(folder)
    store.save_deployment({"id": "d0"})       # its directory exists: one file, one directory
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    app = next_version(None, make_app("/web"), NOW)
    for n in range(20):
        store.save_instance(make_instance(app, n))
    store.delete_instance(make_instance(app, 0).instance_id)
    store.sync()
    assert synced == []
    store.save_deployment({"id": "d1"})
    assert len(synced) == 2                   # the file, then its directory
    synced.clear()
    store.save_framework_id("fw")
    deploy(store, empty_root(), put_app(empty_root(), app), NOW)
    assert len(synced) >= 5


def test_instance_writes_go_behind_the_caller_and_sync_waits_for_them(folder, monkeypatch):
    store = DirectoryStore(folder)
    writers = set()
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (writers.add(threading.current_thread().name),
                                                     real_replace(a, b)))
    app = next_version(None, make_app("/web"), NOW)
    latest = {}
    for n in range(100):
        for state in ("TASK_STAGING", "TASK_STARTING", "TASK_RUNNING"):
            latest[n] = make_instance(app, n, state)
            store.save_instance(latest[n])
    for n in range(0, 100, 4):
        store.delete_instance(latest.pop(n).instance_id)
    store.sync()
    assert writers == {"marathon-store-writer"}
    on_disk = sorted(p.name for p in (folder / "instance").iterdir())
    assert on_disk == sorted(f"{i.instance_id}.json" for i in latest.values())
    assert DirectoryStore(folder).load().instances == sorted(latest.values(),
                                                             key=lambda i: i.instance_id)


def test_a_failed_instance_write_fails_the_store(folder):
    failures = []
    store = DirectoryStore(folder, on_failure=failures.append)
    (folder / "instance").write_text("not a directory")      # no instance file can be made
    app = next_version(None, make_app("/web"), NOW)
    store.save_instance(make_instance(app, 1))                # returns at once
    with pytest.raises(StoreError, match="failed earlier"):
        store.sync()                                          # so nothing is launched on it
    assert len(failures) == 1 and "could not write" in str(failures[0])
    with pytest.raises(StoreError, match="failed earlier"):
        store.save_deployment({"id": "d1"})
    (folder / "instance").unlink()
    assert store.load().instances == []                       # what was really written
    store.save_instance(make_instance(app, 2))
    store.sync()
    assert [i.instance_id for i in store.load().instances] == [make_instance(app, 2).instance_id]


def test_damaged_records_are_skipped_and_reported(folder):
    store = DirectoryStore(folder)
    app = next_version(None, make_app("/web"), NOW)
    good, bad = make_instance(app, 1), make_instance(app, 2)
    store.save_instance(good)
    store.save_instance(bad)
    store.save_deployment({"id": "d1"})
    store.save_deployment({"id": "d2"})
    store.save_framework_id("fw")
    bad_file = folder / "instance" / f"{bad.instance_id}.json"
    bad_file.write_text(bad_file.read_text()[:25])                 # truncated
    (folder / "deployment" / "d2.json").write_bytes(b"\xff\xfe")    # not even text
    (folder / "instance" / "odd.json").write_text('{"instance_id": "odd"}')   # not an instance
    (folder / "framework-id" / "id.json").write_text("[]")
    state = DirectoryStore(folder).load()
    assert state.instances == [good]
    assert state.deployments == [{"id": "d1"}]
    assert state.framework_id is None
    assert len(state.problems) == 4
    assert any(str(bad_file) in problem for problem in state.problems)


def test_a_damaged_current_root_raises_naming_the_file(folder):
    store = DirectoryStore(folder)
    deploy(store, empty_root(), nested_root(), NOW)
    current = folder / "group" / "root.json"
    current.write_text(current.read_text()[:-10])
    with pytest.raises(StoreError, match=str(current)):
        DirectoryStore(folder).load()


def test_a_damaged_app_of_the_current_root_raises_naming_the_file(folder):
    store = DirectoryStore(folder)
    root = deploy(store, empty_root(), nested_root(), NOW)
    app_file = folder / "app" / "%2Fdb" / f"{safe_name(root.version)}.json"
    app_file.write_text('{"id": "/db", "cpus": "many"}')
    with pytest.raises(StoreError, match="app /db") as raised:
        DirectoryStore(folder).load()
    assert str(app_file) in str(raised.value)
    app_file.unlink()
    with pytest.raises(StoreError, match="missing"):
        DirectoryStore(folder).load()
    assert DirectoryStore(folder).root_at(root.version) is None     # an old version: just absent


def test_leftover_temporary_files_are_removed_and_never_read(folder):
    store = DirectoryStore(folder)
    store.save_deployment({"id": "d1"})
    leftover = folder / "deployment" / ".d2.json.1234abcd.tmp"
    leftover.write_text('{"id": "d2"}')
    assert DirectoryStore(folder).load().deployments == [{"id": "d1"}]
    assert not leftover.exists()


def test_an_unusable_directory_raises_store_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match="file"):
        DirectoryStore(tmp_path / "file" / "marathon")


def test_safe_names():
    assert safe_name("/product/web") == "%2Fproduct%2Fweb"
    assert safe_name("product_web.instance-1") == "product_web.instance-1"
    assert safe_name("..") == "%2E."
    assert safe_name("2015-09-25T15:13:48.343Z") == "2015-09-25T15%3A13%3A48.343Z"


# ---------------------------------------------------------------------------------------------
# Pruning rules, as data


def index_of(apps, roots, current=None):
    """roots: {version: [(app, version)]}; the newest root is current unless given."""
    refs = {v: frozenset(r) for v, r in roots.items()}
    current = current or max(roots)
    return Index(apps={a: sorted(v) for a, v in apps.items()}, roots=sorted(roots),
                 refs=refs, current=refs[current], current_version=current)


def test_prune_keeps_the_newest_roots_and_never_the_current():
    roots = {f"r{n:02d}": [] for n in range(5)}
    assert prune_plan(index_of({}, roots), max_versions=3).roots == ("r00", "r01")
    assert prune_plan(index_of({}, roots, current="r00"), max_versions=3).roots == ("r01",)


def test_prune_keeps_referenced_app_versions_beyond_the_limit():
    versions = [f"v{n}" for n in range(6)]
    roots = {"r1": [("/a", "v0")], "r2": [("/a", "v5")]}
    plan = prune_plan(index_of({"/a": versions}, roots), max_versions=3)
    assert plan.app_versions == (("/a", "v1"), ("/a", "v2"), ("/a", "v3"))
    assert plan.apps == ()


def test_prune_drops_apps_no_kept_root_names():
    roots = {"r1": [("/old", "v1")], "r2": [("/new", "v2")], "r3": [("/new", "v2")]}
    plan = prune_plan(index_of({"/old": ["v1"], "/new": ["v2"]}, roots), max_versions=2)
    assert plan.roots == ("r1",) and plan.apps == ("/old",)


# ---------------------------------------------------------------------------------------------
# The standalone election


def test_standalone_election_leads_at_once_and_again_after_abdicating():
    events = []
    election = StandaloneElection("127.0.0.1:8080")
    assert election.leader() is None and not election.is_leader
    election.start(lambda: events.append("elected"), lambda why: events.append(f"deposed: {why}"))
    assert election.is_leader and election.leader() == "127.0.0.1:8080"
    election.abdicate()
    assert events == ["elected", "deposed: abdicated (DELETE /v2/leader)", "elected"]
    election.stop()
    election.abdicate()
    assert not election.is_leader and election.leader() is None
    assert len(events) == 3
