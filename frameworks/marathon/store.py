"""Marathon's persistent state: root group versions, app versions, deployments, instances and
the framework id (reference marathon.md §7), behind one interface with two implementations.

    store = DirectoryStore("/var/lib/meseta/marathon")      # single node (`meseta up`)
    store = ZkMarathonStore("zk://h1:2181/marathon")         # HA, see zkstore.py
    state = store.load()                 # at election: root (apps resolved), deployments, instances
    store.save_root(target)              # every new app version, then the root that references them
    store.save_instance(instance)        # on every task state change: queued, written behind
    store.sync()                         # before a launch: every instance write so far is stored
    store.root_versions(); store.root_at(version); store.app_versions(app_id); store.app_at(...)

Records are JSON objects keyed by `(category, id, version)`; `version` is None for records that
have one value (the current root, deployments, instances, the framework id):

    app          (app id, version)     AppDefinition.to_json() — one record per stored version
    group        ("root", version)     a stored root version; ("root", None) is the current root
    deployment   (deployment id)       plan.to_record(), opaque here
    instance     (instance id)         Instance.to_record()
    framework-id ("id")                {"frameworkId": ...}

A root record keeps the group tree (ids, dependencies, versions, enforceRole) and names its apps
by (id, version) instead of embedding them, as Marathon's StoredGroup does, so a root of 1,000
apps stays far below ZooKeeper's 1 MB node limit. `save_root` writes the app versions first and
the root last, so a stored root never references an app version that is not stored.

`BaseStore` holds those semantics, including what to prune (`prune_plan`, a pure function:
at most MAX_VERSIONS versions per app and MAX_VERSIONS root versions; an app version a kept
root references is never pruned; an app no kept root references at all is dropped entirely).
Subclasses only read, write, list and delete records. To answer `save_root` without listing
every app each time it keeps an index (app versions, root versions and their references) built
on first use; this is sound because only the leading Marathon writes.

Bad data never crashes `load()`: an unreadable deployment, instance or framework id is skipped,
logged and named in `StoredState.problems`; only an unreadable current root (or an app version
it references) raises StoreError naming the record, since carrying on without it would make
Marathon believe those apps were deleted and kill their tasks.
"""

from __future__ import annotations

import bisect
import json
import os
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generic, Iterable, NamedTuple, Protocol, Sequence, TypeVar
from urllib.parse import quote, unquote

from meseta.frameworks.marathon.app import AppDefinition
from meseta.frameworks.marathon.group import Group, empty_root, transitive_apps
from meseta.frameworks.marathon.instances import Instance
from meseta.frameworks.marathon.pathid import PathId
from meseta.log import get_logger
from meseta.zk import StoreError

__all__ = ["MAX_VERSIONS", "StoredState", "Store", "StoreError", "BaseStore", "DirectoryStore",
           "WriteBehind", "FailureCallback",
           "ZkMarathonStore", "Index", "PrunePlan", "prune_plan", "root_record", "record_refs",
           "root_from_record", "safe_name", "Unreadable"]

log = get_logger("meseta.marathon.store")

MAX_VERSIONS = 50                        # Marathon's --zk_max_versions
APP, GROUP, DEPLOYMENT, INSTANCE = "app", "group", "deployment", "instance"    # categories
FRAMEWORK_ID = "framework-id"
ROOT_ID = "root"

Key = tuple[str, str, "str | None"]      # (category, id, version)
FailureCallback = Callable[[StoreError], None]   # a background write failed (writer's thread)
Ref = tuple[str, str]                    # (app id, app version) as a root record names an app


@dataclass
class StoredState:
    root: Group                          # the current root, apps resolved; empty_root() if none
    deployments: list[dict]              # opaque records (plan.to_record()), by id
    instances: list[Instance]
    framework_id: str | None
    problems: list[str] = field(default_factory=list)   # records load() skipped, and why


class Store(Protocol):
    def load(self) -> StoredState: ...
    def save_root(self, root: Group) -> None: ...
    def root_versions(self) -> list[str]: ...
    def root_at(self, version: str) -> Group | None: ...
    def app_versions(self, app_id: PathId) -> list[str]: ...
    def app_at(self, app_id: PathId, version: str) -> AppDefinition | None: ...
    def save_deployment(self, record: dict) -> None: ...
    def delete_deployment(self, deployment_id: str) -> None: ...
    def save_instance(self, instance: Instance) -> None: ...
    def delete_instance(self, instance_id: str) -> None: ...
    def save_framework_id(self, framework_id: str) -> None: ...
    def sync(self) -> None: ...
    def close(self) -> None: ...


class Unreadable(NamedTuple):
    """A record that exists but cannot be used: where it is and why."""
    where: str
    reason: str


def safe_name(text: str) -> str:
    """A file or znode name for an id or version: `/` and anything unusual percent-encoded, and a
    leading `.` too, so no name is `.`, `..` or hidden (temporary files start with `.`)."""
    name = quote(text, safe="")
    return "%2E" + name[1:] if name.startswith(".") else name


# ---------------------------------------------------------------------------------------------
# Root records: the group tree with apps as references


def root_record(root: Group) -> dict[str, Any]:
    """The stored form of a root: the tree, apps named by `{"id", "version"}`."""
    out: dict[str, Any] = {"id": str(root.id)}
    if root.version is not None:
        out["version"] = root.version
    out["dependencies"] = [str(d) for d in root.dependencies]
    if root.enforce_role:
        out["enforceRole"] = True
    out["apps"] = [{"id": str(app.id), "version": app.version}
                   for _, app in sorted(root.apps.items())]
    out["groups"] = [root_record(group) for _, group in sorted(root.groups.items())]
    return out


def record_refs(record: dict[str, Any]) -> list[Ref]:
    """Every (app id, version) a root record names; ValueError if it is not a root record."""
    refs, pending = [], [record]
    while pending:
        group = pending.pop()
        if not isinstance(group, dict) or not isinstance(group.get("id"), str):
            raise ValueError("not a group record")
        for ref in group.get("apps", []):
            if not (isinstance(ref, dict) and isinstance(ref.get("id"), str)
                    and isinstance(ref.get("version"), str)):
                raise ValueError(f"bad app reference {ref!r}")
            refs.append((ref["id"], ref["version"]))
        pending.extend(group.get("groups", []))
    return refs


def root_from_record(record: dict[str, Any], apps: dict[Ref, AppDefinition]) -> Group:
    """The Group a root record describes, apps taken from `apps` (KeyError if one is missing)."""
    named = [apps[(ref["id"], ref["version"])] for ref in record.get("apps", [])]
    return Group(
        PathId.parse(record["id"]),
        apps={app.id: app for app in named},
        groups={g.id: g for g in (root_from_record(r, apps) for r in record.get("groups", []))},
        dependencies=tuple(PathId.parse(d) for d in record.get("dependencies", [])),
        version=record.get("version"),
        enforce_role=record.get("enforceRole") is True)


# ---------------------------------------------------------------------------------------------
# Pruning, decided as data


@dataclass
class Index:
    """What is stored, kept in memory by the writer: versions sort oldest first."""
    apps: dict[str, list[str]]                       # app id -> its stored versions
    roots: list[str]                                 # stored root versions
    refs: dict[str, frozenset[Ref]]                  # root version -> app versions it names
    current: frozenset[Ref] = frozenset()            # what the current root names
    current_version: str | None = None


@dataclass(frozen=True)
class PrunePlan:
    roots: tuple[str, ...] = ()                      # root versions to delete
    app_versions: tuple[Ref, ...] = ()               # app versions to delete
    apps: tuple[str, ...] = ()                       # app ids to delete with all their versions


def prune_plan(index: Index, max_versions: int = MAX_VERSIONS) -> PrunePlan:
    """What to delete so at most `max_versions` root versions and versions per app remain.

    The oldest root versions go first (never the current one). Then an app that no remaining
    root (nor the current root) names is dropped entirely — it was deleted long ago — and an
    app with too many versions loses its oldest unreferenced ones; a referenced version stays
    even if that leaves more than `max_versions`."""
    extra = max(0, len(index.roots) - max_versions)
    old_roots = tuple(v for v in index.roots[:extra] if v != index.current_version)
    referenced = set(index.current)
    for version, refs in index.refs.items():
        if version not in old_roots:
            referenced |= refs
    named = {app_id for app_id, _ in referenced}
    versions: list[Ref] = []
    for app_id, stored in sorted(index.apps.items()):
        if app_id in named and len(stored) > max_versions:
            spare = [(app_id, v) for v in stored if (app_id, v) not in referenced]
            versions += spare[:len(stored) - max_versions]
    return PrunePlan(old_roots, tuple(versions), tuple(sorted(set(index.apps) - named)))


# ---------------------------------------------------------------------------------------------
# The store's semantics over records


class BaseStore:
    """The Store interface over five record operations a subclass provides:

        _read(keys) -> [dict | None (absent) | Unreadable]     in the order of keys
        _write([(key, record)], durable)                       durable=False: instances
        _delete(keys, durable)
        _ids(category) -> [id]                                 ids with a record or versions
        _versions(category, ids) -> {id: [version]}            sorted oldest first

    `durable=False` marks instance records: the Mesos master reconciles them after a crash, so
    a subclass may skip fsync or write them in the background. Calls are serialised by a lock,
    so the service's loop and HTTP threads may share one store.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._index_cache: Index | None = None
        self._current_apps: dict[Ref, AppDefinition] = {}   # parsed once; old roots share them
        self._failure: StoreError | None = None              # set by a failed background write
        self._on_failure: FailureCallback | None = None

    # -- the interface ------------------------------------------------------------------------

    def load(self) -> StoredState:
        """Everything stored, read afresh. It also clears an earlier background failure: what
        it returns is what was really written, so its caller can carry on from there."""
        with self._lock:
            self._flush()
            self._failure = None
            self._index_cache = None
            problems: list[str] = []
            root = self._load_root()
            deployments = [record for _, record in self._load_all(DEPLOYMENT, problems)]
            instances = []
            for where, record in self._load_all(INSTANCE, problems):
                try:
                    instances.append(Instance.from_record(record))
                except (KeyError, TypeError, ValueError) as exc:
                    self._skip(problems, where, f"not an instance record: {exc!r}")
            framework_id = None
            [found] = self._read([(FRAMEWORK_ID, "id", None)])
            if isinstance(found, Unreadable):
                self._skip(problems, found.where, found.reason)
            elif found is not None and isinstance(found.get("frameworkId"), str):
                framework_id = found["frameworkId"]
            elif found is not None:
                self._skip(problems, self._where((FRAMEWORK_ID, "id", None)), "no frameworkId")
            return StoredState(root, deployments, instances, framework_id, problems)

    def save_root(self, root: Group) -> None:
        with self._lock:
            self._check()
            index = self._index()
            apps = transitive_apps(root)
            unversioned = [str(app.id) for app in apps if app.version is None]
            if unversioned:
                raise ValueError(f"apps without a version cannot be stored: {unversioned[:5]}")
            new = [app for app in apps if app.version not in index.apps.get(str(app.id), ())]
            self._write([((APP, str(app.id), app.version), app.to_json()) for app in new])
            for app in new:
                bisect.insort(index.apps.setdefault(str(app.id), []), app.version)
            record = root_record(root)
            refs = frozenset(record_refs(record))
            writes: list[tuple[Key, dict]] = [((GROUP, ROOT_ID, None), record)]
            if root.version is not None:          # an unversioned root has only a current copy
                writes.append(((GROUP, ROOT_ID, root.version), record))
            self._write(writes)
            if root.version is not None:
                if root.version not in index.roots:
                    bisect.insort(index.roots, root.version)
                index.refs[root.version] = refs
            index.current, index.current_version = refs, root.version
            self._current_apps = {(str(app.id), app.version): app for app in apps}
            self._prune(index)

    def root_versions(self) -> list[str]:
        with self._lock:
            self._check()
            return list(reversed(self._index().roots))

    def root_at(self, version: str) -> Group | None:
        with self._lock:
            self._check()
            [record] = self._read([(GROUP, ROOT_ID, version)])
            if isinstance(record, Unreadable):
                log.warning("stored root version is unreadable", where=record.where,
                            reason=record.reason)
                return None
            if record is None:
                return None
            try:
                return self._resolve(record)
            except StoreError as exc:
                log.warning("stored root version cannot be resolved", version=version,
                            reason=str(exc))
                return None

    def app_versions(self, app_id: PathId) -> list[str]:
        with self._lock:
            self._check()
            return list(reversed(self._index().apps.get(str(app_id), [])))

    def app_at(self, app_id: PathId, version: str) -> AppDefinition | None:
        with self._lock:
            self._check()
            known = self._current_apps.get((str(app_id), version))
            if known is not None:
                return known
            [record] = self._read([(APP, str(app_id), version)])
            if record is None:
                return None
            app = self._parse_app(record, (APP, str(app_id), version))
            if isinstance(app, Unreadable):
                log.warning("stored app version is unreadable", where=app.where, reason=app.reason)
                return None
            return app

    def save_deployment(self, record: dict) -> None:
        with self._lock:
            self._check()
            self._write([((DEPLOYMENT, str(record["id"]), None), record)])

    def delete_deployment(self, deployment_id: str) -> None:
        with self._lock:
            self._check()
            self._delete([(DEPLOYMENT, deployment_id, None)])

    def save_instance(self, instance: Instance) -> None:
        with self._lock:
            self._check()
            self._write([((INSTANCE, instance.instance_id, None), instance.to_record())],
                        durable=False)

    def delete_instance(self, instance_id: str) -> None:
        with self._lock:
            self._check()
            self._delete([(INSTANCE, instance_id, None)], durable=False)

    def save_framework_id(self, framework_id: str) -> None:
        with self._lock:
            self._check()
            self._write([((FRAMEWORK_ID, "id", None), {"frameworkId": framework_id})])

    def sync(self) -> None:
        """Return once every instance write so far is stored. A task is launched only after
        this (as Marathon stores an instance before it launches it): a leader that dies right
        after a launch leaves no task its successor does not know, and so no task beyond the
        capacity its successor's deployment counts on."""
        with self._lock:
            self._check()
            self._flush()
            self._check()

    def close(self) -> None:
        pass

    # -- what subclasses provide ----------------------------------------------------------------

    def _read(self, keys: Sequence[Key]) -> list[dict | None | Unreadable]:
        raise NotImplementedError

    def _write(self, items: Sequence[tuple[Key, dict]], durable: bool = True) -> None:
        raise NotImplementedError

    def _delete(self, keys: Sequence[Key], durable: bool = True) -> None:
        raise NotImplementedError

    def _ids(self, category: str) -> list[str]:
        raise NotImplementedError

    def _versions(self, category: str, ids: Sequence[str]) -> dict[str, list[str]]:
        raise NotImplementedError

    def _flush(self) -> None:
        """Wait for background writes (none here)."""

    def _background_failed(self, error: Exception) -> None:
        """On the writer thread. Not under the store's lock: its holder may be waiting for us."""
        failure = error if isinstance(error, StoreError) else StoreError(repr(error))
        self._failure = failure
        if self._on_failure is not None:
            try:
                self._on_failure(failure)
            except Exception:
                log.exception("the store's on_failure callback failed")

    # -- helpers --------------------------------------------------------------------------------

    def _check(self) -> None:
        if self._failure is not None:
            raise StoreError(f"the store failed earlier; load() again to go on: {self._failure}")

    def _index(self) -> Index:
        if self._index_cache is None:
            self._index_cache = self._build_index()
        return self._index_cache

    def _build_index(self) -> Index:
        apps = self._versions(APP, self._ids(APP))
        roots = self._versions(GROUP, [ROOT_ID]).get(ROOT_ID, [])
        records = self._read([(GROUP, ROOT_ID, v) for v in roots] + [(GROUP, ROOT_ID, None)])
        refs: dict[str, frozenset[Ref]] = {}
        for version, record in zip(roots, records):
            if isinstance(record, dict):
                try:
                    refs[version] = frozenset(record_refs(record))
                    continue
                except ValueError as exc:
                    record = Unreadable(f"root version {version}", str(exc))
            if isinstance(record, Unreadable):     # pruned in time, like any old version
                log.warning("stored root version is unreadable", where=record.where,
                            reason=record.reason)
        index = Index({a: v for a, v in apps.items() if v}, roots, refs)
        current = records[-1]
        if isinstance(current, dict):
            try:
                index.current = frozenset(record_refs(current))
                index.current_version = current.get("version")
            except ValueError:
                pass                               # load() reports it
        return index

    def _load_root(self) -> Group:
        [record] = self._read([(GROUP, ROOT_ID, None)])
        if record is None:
            self._current_apps = {}
            return empty_root()
        if isinstance(record, Unreadable):
            raise StoreError(f"the current root group is unreadable ({record.where}): "
                             f"{record.reason}")
        root = self._resolve(record)
        self._current_apps = {(str(app.id), app.version): app for app in transitive_apps(root)}
        return root

    def _resolve(self, record: dict) -> Group:
        """The root a record describes with its apps read; StoreError names what is missing."""
        try:
            refs = record_refs(record)
        except ValueError as exc:
            raise StoreError(f"a stored root group record is malformed: {exc}") from None
        missing = [ref for ref in refs if ref not in self._current_apps]
        found = self._read([(APP, app_id, version) for app_id, version in missing])
        apps = {ref: self._current_apps[ref] for ref in refs if ref in self._current_apps}
        for ref, result in zip(missing, found):
            app = self._parse_app(result, (APP, *ref))
            if isinstance(app, Unreadable):
                raise StoreError(f"root group version {record.get('version')} names app {ref[0]} "
                                 f"version {ref[1]}, which is unreadable ({app.where}): "
                                 f"{app.reason}")
            apps[ref] = app
        try:
            return root_from_record(record, apps)
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"a stored root group record is malformed: {exc!r}") from None

    def _parse_app(self, record: dict | None | Unreadable, key: Key) -> AppDefinition | Unreadable:
        if record is None:
            return Unreadable(self._where(key), "missing")
        if isinstance(record, Unreadable):
            return record
        try:
            return AppDefinition.from_json(record)
        except ValueError as exc:                  # ValidationError and PathIdError are ValueErrors
            return Unreadable(self._where(key), f"not a valid app: {exc}")

    def _load_all(self, category: str, problems: list[str]) -> Iterable[tuple[str, dict]]:
        keys: list[Key] = [(category, item_id, None) for item_id in self._ids(category)]
        for key, record in zip(keys, self._read(keys)):
            if isinstance(record, Unreadable):
                self._skip(problems, record.where, record.reason)
            elif record is not None:
                yield self._where(key), record

    def _skip(self, problems: list[str], where: str, reason: str) -> None:
        log.warning("skipping an unreadable stored record", where=where, reason=reason)
        problems.append(f"{where}: {reason}")

    def _prune(self, index: Index) -> None:
        plan = prune_plan(index)
        if not (plan.roots or plan.app_versions or plan.apps):
            return
        try:
            self._delete([(GROUP, ROOT_ID, v) for v in plan.roots]
                         + [(APP, a, v) for a, v in plan.app_versions]
                         + [(APP, a, v) for a in plan.apps for v in index.apps[a]])
            self._delete([(APP, a, None) for a in plan.apps])
        except StoreError as exc:                  # housekeeping: the root itself is saved
            log.warning("pruning old versions failed; retried after the next save",
                        reason=str(exc))
            self._index_cache = None
            return
        for version in plan.roots:
            index.roots.remove(version)
            index.refs.pop(version, None)
        for app_id, version in plan.app_versions:
            index.apps[app_id].remove(version)
        for app_id in plan.apps:
            del index.apps[app_id]

    def _where(self, key: Key) -> str:
        category, item_id, version = key
        return f"{category} {item_id}" + (f" version {version}" if version else "")


# ---------------------------------------------------------------------------------------------
# The local directory store


class DirectoryStore(BaseStore):
    """Records as JSON files under `path` (created if missing):

        <path>/<category>/<id>.json              e.g. instance/product_web.instance-<uuid>.json
        <path>/<category>/<id>/<version>.json    e.g. app/%2Fproduct%2Fweb/2024-...Z.json

    Every write goes to a temporary file renamed over the record, so a record is whole or
    absent. Everything but instances is fsynced (file, then directory) before the call returns.
    Instances are written behind the caller by one thread (the latest record per file wins), as
    the ZooKeeper store does: a status update costs the service's loop no file system call, and
    `sync()` (before a launch) or `load()` waits for them. A failed one fails the store and
    calls `on_failure`.
    """

    def __init__(self, path: str | os.PathLike, *, timeout: float = 10.0,
                 on_failure: FailureCallback | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.timeout = timeout
        self._on_failure = on_failure
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            for leftover in self.path.glob("*/**/.*.tmp"):   # from a crash mid-write
                leftover.unlink(missing_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot use {self.path} as Marathon's store: {exc}") from None
        self._writer: WriteBehind[tuple[Path, bytes | None]] = WriteBehind(
            self._apply, self._background_failed, "marathon-store-writer")

    def close(self) -> None:
        """Write what is queued (up to `timeout`)."""
        if not self._writer.close(self.timeout):
            log.warning("instance writes still queued at close were dropped",
                        pending=self._writer.pending)

    def _file(self, key: Key) -> Path:
        category, item_id, version = key
        if version is None:
            return self.path / category / f"{safe_name(item_id)}.json"
        return self.path / category / safe_name(item_id) / f"{safe_name(version)}.json"

    def _where(self, key: Key) -> str:
        return str(self._file(key))

    def _read(self, keys: Sequence[Key]) -> list[dict | None | Unreadable]:
        results: list[dict | None | Unreadable] = []
        for key in keys:
            path = self._file(key)
            try:
                record = json.loads(path.read_bytes())
            except FileNotFoundError:
                results.append(None)
                continue
            except (OSError, ValueError) as exc:   # UnicodeDecodeError is a ValueError
                results.append(Unreadable(str(path), f"{type(exc).__name__}: {exc}"))
                continue
            results.append(record if isinstance(record, dict)
                           else Unreadable(str(path), "not a JSON object"))
        return results

    def _write(self, items: Sequence[tuple[Key, dict]], durable: bool = True) -> None:
        files = [(self._file(key), json.dumps(record, separators=(",", ":")).encode())
                 for key, record in items]
        if durable:
            self._sync_dirs(self._put(files, durable=True))
        else:
            for path, data in files:
                self._writer.submit(str(path), (path, data))

    def _delete(self, keys: Sequence[Key], durable: bool = True) -> None:
        if not durable:
            for key in keys:
                path = self._file(key)
                self._writer.submit(str(path), (path, None))
            return
        dirty: set[Path] = set()
        for key in keys:
            path = self._file(key)
            try:
                path.unlink(missing_ok=True)
                if key[2] is None and path.with_suffix("").is_dir():
                    path.with_suffix("").rmdir()   # its versions' directory, now empty
            except OSError as exc:
                raise StoreError(f"could not delete {path}: {exc}") from None
            dirty.add(path.parent)
        self._sync_dirs(dirty)

    def _put(self, files: Sequence[tuple[Path, bytes]], durable: bool) -> set[Path]:
        """Write each file through a temporary renamed over it; the directories touched."""
        dirty: set[Path] = set()                   # directories whose entries changed
        for path, data in files:
            temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
            try:
                dirty.update(_make_dirs(path.parent, self.path))
                with open(temporary, "wb") as out:
                    out.write(data)
                    if durable:
                        out.flush()
                        os.fsync(out.fileno())
                os.replace(temporary, path)
            except OSError as exc:
                try:
                    temporary.unlink(missing_ok=True)
                except OSError:
                    pass                           # e.g. its directory could not be made
                raise StoreError(f"could not write {path}: {exc}") from None
            dirty.add(path.parent)
        return dirty

    def _apply(self, batch: list[tuple[Path, bytes | None]]) -> None:
        """On the writer thread: a batch of instance writes (data) and deletes (None)."""
        self._put([(path, data) for path, data in batch if data is not None], durable=False)
        for path, data in batch:
            if data is None:
                try:
                    path.unlink(missing_ok=True)
                except OSError as exc:
                    raise StoreError(f"could not delete {path}: {exc}") from None

    def _flush(self) -> None:
        if not self._writer.flush(self.timeout):
            raise StoreError(f"instance writes to {self.path} did not finish within "
                             f"{self.timeout:g}s")

    def _ids(self, category: str) -> list[str]:
        try:
            names = os.listdir(self.path / category)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StoreError(f"could not list {self.path / category}: {exc}") from None
        ids = {unquote(n.removesuffix(".json")) for n in names if not n.startswith(".")}
        return sorted(ids)

    def _versions(self, category: str, ids: Sequence[str]) -> dict[str, list[str]]:
        found = {}
        for item_id in ids:
            folder = self.path / category / safe_name(item_id)
            try:
                names = os.listdir(folder)
            except (FileNotFoundError, NotADirectoryError):
                names = []
            except OSError as exc:
                raise StoreError(f"could not list {folder}: {exc}") from None
            found[item_id] = sorted(unquote(n.removesuffix(".json")) for n in names
                                    if n.endswith(".json") and not n.startswith("."))
        return found

    def _sync_dirs(self, folders: Iterable[Path]) -> None:
        for folder in folders:
            try:
                descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.fsync(descriptor)
                finally:
                    os.close(descriptor)
            except OSError as exc:
                raise StoreError(f"could not sync directory {folder}: {exc}") from None


def _make_dirs(folder: Path, top: Path) -> list[Path]:
    """Create `folder` and missing parents below `top`; the parents whose entries changed."""
    if folder.is_dir():
        return []
    changed = _make_dirs(folder.parent, top) if folder.parent != top else []
    folder.mkdir(exist_ok=True)
    return changed + [folder.parent]


def __getattr__(name: str) -> Any:
    """`store.ZkMarathonStore` lives in zkstore.py (it builds on BaseStore), imported on use."""
    if name == "ZkMarathonStore":
        from meseta.frameworks.marathon.zkstore import ZkMarathonStore
        return ZkMarathonStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------------------------
# Writes behind the caller


Op = TypeVar("Op")


class WriteBehind(Generic[Op]):
    """Queued writes, run in batches by one thread: the latest write per key wins, and a batch
    is finished before the next begins, so no write overtakes an earlier one to the same key.
    A failed batch drops what was queued behind it and reports (`failed`): later writes must
    not land without it."""

    def __init__(self, write: Callable[[list[Op]], Any], failed: Callable[[Exception], None],
                 name: str) -> None:
        self._write, self._failed = write, failed
        self._queued: dict[str, Op] = {}
        self._busy = False
        self._closed = False
        self._ready = threading.Condition()
        self._name = name
        self._thread: threading.Thread | None = None

    @property
    def pending(self) -> int:
        with self._ready:
            return len(self._queued) + self._busy

    def submit(self, key: str, op: Op) -> None:
        with self._ready:
            if self._closed:
                raise StoreError("the store is closed")
            if self._thread is None:             # started by the first write
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
            self._queued[key] = op
            self._ready.notify_all()

    def flush(self, timeout: float) -> bool:
        """Wait until everything submitted so far is written (or failed); False on timeout."""
        with self._ready:
            return self._ready.wait_for(lambda: not self._queued and not self._busy, timeout)

    def close(self, timeout: float) -> bool:
        flushed = self.flush(timeout)
        with self._ready:
            self._closed = True
            self._queued.clear()
            self._ready.notify_all()
        if self._thread is not None:
            self._thread.join(timeout if flushed else 0.1)
        return flushed

    def _loop(self) -> None:
        while True:
            with self._ready:
                self._ready.wait_for(lambda: self._queued or self._closed)
                if self._closed:
                    return
                batch, self._queued, self._busy = list(self._queued.values()), {}, True
            try:
                self._write(batch)
            except Exception as exc:                 # StoreError, or a bug: either way, report
                with self._ready:                    # later writes must not land without these
                    dropped, self._queued = len(self._queued), {}
                log.error("instance writes failed", dropped_after=dropped, reason=str(exc))
                self._failed(exc)
            finally:
                with self._ready:
                    self._busy = False
                    self._ready.notify_all()
