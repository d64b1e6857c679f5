"""Marathon's state in ZooKeeper, laid out as Marathon's ZkPersistenceStore (reference §7).

    store = ZkMarathonStore("zk://h1:2181,h2:2181/marathon")          # a session of its own
    store = ZkMarathonStore(client, "/marathon", on_failure=report)     # share the election's
    state = store.load(); store.save_root(root); store.save_instance(instance); store.close()

The interface and its semantics are store.py's (`BaseStore`); this module only moves records:

    <path>/state/<category>/<bucket>/<id>             a record (deployment, instance, current root)
    <path>/state/<category>/<bucket>/<id>/<version>   a version (app, root)

`bucket` is crc32(id) % 16 in hex, which spreads thousands of instances over 16 parents (Marathon
uses Java's hashCode; Python's hash() is randomised per process, so it cannot be used). Ids and
versions are made node-safe by `store.safe_name` (`/product/web` -> `%2Fproduct%2Fweb`). Records
are compact JSON; one above 64 KiB is stored zlib-compressed behind the marker `zlib:` (JSON never
starts with `z`); one still above ZooKeeper's 1 MB limit is refused before anything is written.

Round trips. Writes go out in transactions of up to 512 KiB, all committed concurrently and
then waited for together: the 1,000 new app versions of a root cost a few round trips, not
1,000 (a transaction per call would also be slower: kazoo spends most of a small call waking its
connection thread). A transaction is all or nothing, so each is built from what the store knows
exists (containers it made or listed, records it wrote or read): set an existing node, create a
new one after its missing parents. Should that guess be wrong — someone else changed the tree —
the failed transaction is redone one call per node, each falling back from set to create and
back. Reads go out as concurrent async calls, waited for together.

Instances are written behind: `save_instance`/`delete_instance` only queue the record and return.
A writer thread takes everything queued, keeps the latest write per node, writes that batch
concurrently and waits for it before the next, so writes to one node land in the order made.

Failures. Synchronous calls retry connection loss until `timeout`, then raise StoreError. A
background write cannot raise in its caller, so when one fails (after the same retries) the
store logs it, drops the writes still queued, calls `on_failure(error)` on the writer thread,
and turns failed: every later call raises StoreError, until `load()` reads afresh what was
really written. Its owner should step down, as Marathon aborts when it cannot persist, and load
again once elected.
"""

from __future__ import annotations

import json
import time
import zlib
from dataclasses import dataclass
from typing import Any, Sequence
from urllib.parse import unquote

from kazoo.client import KazooClient
from kazoo.exceptions import (ConnectionLoss, KazooException, NodeExistsError, NoNodeError,
                              OperationTimeoutError, SessionExpiredError)
from kazoo.handlers.threading import KazooTimeoutError

from meseta.frameworks.marathon.store import (BaseStore, FailureCallback, Key, Unreadable,
                                              WriteBehind, safe_name)
from meseta.log import get_logger
from meseta.zk import MAX_NODE_BYTES, StoreError, ZkUrl, make_client, parse_zk_url

__all__ = ["ZkMarathonStore", "BUCKETS", "COMPRESS_ABOVE", "bucket", "encode", "decode"]

log = get_logger("meseta.marathon.zkstore")

BUCKETS = 16
COMPRESS_ABOVE = 64 * 1024
ZLIB_MARK = b"zlib:"
RETRYABLE = (ConnectionLoss, OperationTimeoutError, SessionExpiredError)
RETRY_PAUSE = 0.1                            # seconds between attempts after a connection loss
TRANSACTION_BYTES = 512 * 1024
TRANSACTION_OPS = 1000
ZK_ERRORS = (KazooException, KazooTimeoutError)


def bucket(item_id: str) -> str:
    return format(zlib.crc32(item_id.encode()) % BUCKETS, "x")


def encode(record: dict, where: str) -> bytes:
    data = json.dumps(record, separators=(",", ":")).encode()
    if len(data) > COMPRESS_ABOVE:
        data = ZLIB_MARK + zlib.compress(data)
    if len(data) > MAX_NODE_BYTES:
        raise StoreError(f"{where} is {len(data)} bytes even compressed; a ZooKeeper node holds "
                         f"at most {MAX_NODE_BYTES}")
    return data


def decode(data: bytes | None, where: str) -> dict | None | Unreadable:
    """A record; None for no node or an empty one (a parent made by makepath)."""
    if not data:
        return None
    try:
        if data.startswith(ZLIB_MARK):
            data = zlib.decompress(data[len(ZLIB_MARK):])
        record = json.loads(data)
    except (zlib.error, ValueError) as exc:
        return Unreadable(where, f"{type(exc).__name__}: {exc}")
    return record if isinstance(record, dict) else Unreadable(where, "not a JSON object")


@dataclass
class _Op:
    kind: str          # put | set | create | ensure (a parent: existing is fine) | delete
    #                    | get | children
    path: str
    data: bytes = b""


def _chunks(ops: Sequence[_Op]) -> list[list[_Op]]:
    """Transactions of at most TRANSACTION_BYTES of data (ZooKeeper caps a request at 1 MB);
    a bigger record goes alone."""
    chunks: list[list[_Op]] = []
    size = 0
    for op in ops:
        full = chunks and (size + len(op.data) > TRANSACTION_BYTES
                           or len(chunks[-1]) >= TRANSACTION_OPS)
        if not chunks or full:
            chunks.append([])
            size = 0
        chunks[-1].append(op)
        size += len(op.data) + len(op.path)
    return chunks


class ZkMarathonStore(BaseStore):
    """See the module docstring. `path` is Marathon's ZooKeeper path (`/marathon`); given a URL
    it defaults to the URL's path. A client passed in must be started by its owner."""

    def __init__(self, client_or_zk_url: KazooClient | ZkUrl | str, path: str | None = None, *,
                 timeout: float = 10.0, session_timeout: float = 10.0,
                 on_failure: FailureCallback | None = None) -> None:
        super().__init__()
        self.timeout = timeout
        self._on_failure = on_failure
        if isinstance(client_or_zk_url, KazooClient):
            if path is None:
                raise ValueError("ZkMarathonStore needs a path (e.g. '/marathon') with a client")
            self.client, self._owns_client = client_or_zk_url, False
        else:
            url = (client_or_zk_url if isinstance(client_or_zk_url, ZkUrl)
                   else parse_zk_url(client_or_zk_url))
            path = path or url.path
            self.client, self._owns_client = make_client(url, session_timeout), True
            try:
                self.client.start(timeout=timeout)
            except KazooTimeoutError:
                self.client.close()
                raise StoreError(f"ZooKeeper at {url.hosts} did not answer within "
                                 f"{timeout:g}s") from None
        self.root = "/" + path.strip("/") + "/state"
        # Nodes known to exist, so that a transaction knows what to create and what to set.
        self._known: set[str] = set()
        self._writer = WriteBehind(self._apply, self._background_failed, "marathon-zk-writer")

    def close(self) -> None:
        """Write what is queued (up to `timeout`), then end the session if it is ours."""
        if not self._writer.close(self.timeout):
            log.warning("instance writes still queued at close were dropped",
                        pending=self._writer.pending)
        if self._owns_client:
            self.client.stop()
            self.client.close()

    # -- records --------------------------------------------------------------------------------

    def _node(self, key: Key) -> str:
        category, item_id, version = key
        node = f"{self.root}/{category}/{bucket(item_id)}/{safe_name(item_id)}"
        return node if version is None else f"{node}/{safe_name(version)}"

    def _where(self, key: Key) -> str:
        return f"ZooKeeper node {self._node(key)}"

    def _read(self, keys: Sequence[Key]) -> list[dict | None | Unreadable]:
        found = self._run([_Op("get", self._node(key)) for key in keys])
        return [decode(data, self._where(key)) for key, data in zip(keys, found)]

    def _write(self, items: Sequence[tuple[Key, dict]], durable: bool = True) -> None:
        ops = [_Op("put", self._node(key), encode(record, self._where(key)))
               for key, record in items]
        if durable:
            self._apply(ops)
        else:
            for op in ops:
                self._writer.submit(op.path, op)

    def _delete(self, keys: Sequence[Key], durable: bool = True) -> None:
        ops = [_Op("delete", self._node(key)) for key in keys]
        if durable:
            self._apply(ops)
        else:
            for op in ops:
                self._writer.submit(op.path, op)

    def _ids(self, category: str) -> list[str]:
        buckets = [f"{self.root}/{category}/{b:x}" for b in range(BUCKETS)]
        ids = []
        for path, names in zip(buckets, self._run([_Op("children", p) for p in buckets])):
            if names is not None:
                self._known.add(path)
                self._known.update(f"{path}/{name}" for name in names)
                ids += [unquote(name) for name in names]
        return sorted(ids)

    def _versions(self, category: str, ids: Sequence[str]) -> dict[str, list[str]]:
        paths = [self._node((category, i, None)) for i in ids]
        found = {}
        for item_id, path, names in zip(ids, paths, self._run([_Op("children", p) for p in paths])):
            if names is not None:
                self._known.add(path)
                self._known.update(f"{path}/{name}" for name in names)
            found[item_id] = sorted(unquote(n) for n in names or ())
        return found

    def _flush(self) -> None:
        if not self._writer.flush(self.timeout):
            raise StoreError(f"instance writes to ZooKeeper did not finish within "
                             f"{self.timeout:g}s")

    # -- ZooKeeper calls ------------------------------------------------------------------------

    def _apply(self, ops: Sequence[_Op]) -> None:
        """Puts in transactions (parents first), deletes as concurrent calls; both waited for."""
        puts = [op for op in ops if op.kind == "put"]
        if puts and self.root not in self._known:     # once: then no transaction climbs above it
            self._run([_Op("ensure", self.root)])
            self._known.update(self.root.rsplit("/", i)[0] for i in range(self.root.count("/")))
        parents = sorted({p for op in puts for p in self._missing_parents(op.path)},
                         key=lambda path: path.count("/"))
        self._commit([_Op("ensure", path) for path in parents])
        self._commit([_Op("set" if op.path in self._known else "create", op.path, op.data)
                      for op in puts])
        deletes = [op for op in ops if op.kind == "delete"]
        self._run(deletes)
        self._known.difference_update(op.path for op in deletes)

    def _missing_parents(self, path: str) -> list[str]:
        missing, parent = [], path.rpartition("/")[0]
        while parent and parent not in self._known:
            missing.append(parent)
            parent = parent.rpartition("/")[0]
        return missing

    def _commit(self, ops: Sequence[_Op]) -> None:
        """Commit `ops` in concurrent transactions; redo a failed one op by op."""
        started = []
        for chunk in _chunks(ops):
            transaction = self.client.transaction()
            for op in chunk:
                if op.kind == "set":
                    transaction.set_data(op.path, op.data)
                else:                                # create, or ensure (a new parent)
                    transaction.create(op.path, op.data)
            started.append((chunk, transaction.commit_async()))
        deadline = time.monotonic() + self.timeout
        for chunk, pending in started:
            try:
                results = pending.get(timeout=max(0.0, deadline - time.monotonic()))
                failed = any(isinstance(result, Exception) for result in results)
            except ZK_ERRORS:                        # _run retries, or says what is wrong
                failed = True
            if failed:
                self._run(chunk)
            self._known.update(op.path for op in chunk)

    def _run(self, ops: Sequence[_Op]) -> list[Any]:
        """Run `ops` as concurrent calls and wait for all: node data for `get` and names for
        `children` (None where the node is absent), None for the rest. A write whose guess was
        wrong (set on no node, create on an existing one) is retried as the other; a connection
        loss is retried until `timeout`. StoreError otherwise."""
        deadline = time.monotonic() + self.timeout
        results: list[Any] = [None] * len(ops)
        todo = list(range(len(ops)))
        while todo:
            if time.monotonic() > deadline:
                op = ops[todo[0]]
                raise StoreError(f"ZooKeeper {op.kind} {op.path} (and {len(todo) - 1} more) "
                                 f"did not succeed within {self.timeout:g}s")
            started = [(i, self._start(ops[i])) for i in todo]
            todo, lost = [], False
            for i, pending in started:
                op = ops[i]
                try:
                    reply = pending.get(timeout=max(0.0, deadline - time.monotonic()))
                    results[i] = reply[0] if op.kind == "get" else reply   # get: (data, stat)
                except NoNodeError:
                    if op.kind in ("set", "create", "ensure"):   # (create: a parent vanished)
                        op.kind = "create" if op.kind == "set" else op.kind
                        todo.append(i)
                except NodeExistsError:
                    if op.kind == "create":
                        op.kind = "set"
                        todo.append(i)
                except RETRYABLE:
                    todo.append(i)
                    lost = True
                except KazooTimeoutError:
                    raise StoreError(f"ZooKeeper {op.kind} {op.path} timed out after "
                                     f"{self.timeout:g}s (outcome unknown)") from None
                except KazooException as exc:
                    raise StoreError(f"ZooKeeper {op.kind} {op.path} failed: "
                                     f"{type(exc).__name__} {exc}".rstrip()) from None
            if lost:
                time.sleep(RETRY_PAUSE)
        return results

    def _start(self, op: _Op) -> Any:
        if op.kind == "get":
            return self.client.get_async(op.path)
        if op.kind == "children":
            return self.client.get_children_async(op.path)
        if op.kind == "set":
            return self.client.set_async(op.path, op.data)
        if op.kind in ("create", "ensure"):
            return self.client.create_async(op.path, op.data, makepath=True)
        return self.client.delete_async(op.path)
