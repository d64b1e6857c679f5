"""ZooKeeper for masters, agents and frameworks, in Mesos's layout.

Masters contend under the `--zk` path with EPHEMERAL|SEQUENTIAL children `json.info_<seq>` that
hold MasterInfo as compact JSON (plus a `meseta` object naming the native endpoints); the child
with the smallest sequence number leads. pymesos, mesos-go (Mesos-DNS) and mesoshttp read the
same nodes, so they find a Meseta master exactly as they find a Mesos one.

    contender = MasterContender("zk://h1:2181,h2:2181/meseta", master_info_json(info),
                                on_elected=lambda: loop.call_soon_threadsafe(lead),
                                on_deposed=lambda why: loop.call_soon_threadsafe(step_down, why))
    detector = MasterDetector("zk://h1:2181/meseta", on_change=print)
    info = detect_leader("zk://h1:2181/meseta", timeout=5)

Threads: kazoo runs every callback here on its own threads (connection, watch and spawned
worker threads). Callbacks run while the object holds its lock, so they arrive in order and
never twice in a row with the same meaning; they must return quickly, must not call back into
the object that called them, and should only hand the news to their owner's loop
(`EventLoop.call_soon_threadsafe`).

The contender reacts to kazoo's events as follows (no zombie leader: it leads only while its
connection is up and its node is the lowest):

    event                       effect
    CONNECTED                   adopt our node (same session) or create one; re-evaluate
    children changed            lead iff connected and our node is the lowest `json.info_`
    SUSPENDED                   depose at once: our session may be expiring unseen
    LOST (session expired)      depose; the node died with the session; contend anew on CONNECTED
    our node deleted            depose; create a new node
    close()                     no callback; delete our node, end the session
"""
from __future__ import annotations

import functools
import json
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import KazooException, NodeExistsError, NoNodeError
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.recipe.watchers import ChildrenWatch, DataWatch
from kazoo.security import CREATOR_ALL_ACL, READ_ACL_UNSAFE

from meseta import proto
from meseta.log import get_logger

__all__ = ["ZkUrl", "parse_zk_url", "make_client", "master_info_dict", "master_info_json",
           "master_info_from_json", "leader_node", "MasterContender", "MasterDetector",
           "detect_leader", "ZkError", "NoLeaderError", "ZkStore", "StoreError"]

log = get_logger("meseta.zk")

NODE_PREFIX = "json.info_"                 # Mesos >= 0.24 (group.cpp label "json.info")
DEFAULT_PORT = 2181
MASTER_CAPABILITIES = ("AGENT_UPDATE",)    # what the master advertises (master/http.py)
MAX_NODE_BYTES = 1024 * 1024 - 1024        # ZooKeeper's jute.maxbuffer is 1 MiB per request
ZK_ERRORS = (KazooException, KazooTimeoutError)

ElectedCallback = Callable[[], None]
DeposedCallback = Callable[[str], None]
ChangeCallback = Callable[[Optional[proto.MasterInfo]], None]


class ZkError(RuntimeError):
    """ZooKeeper could not answer what was asked; the text says why."""


class NoLeaderError(ZkError):
    """No master leads under the ZooKeeper path (none registered, or ZooKeeper unreachable)."""


class StoreError(ZkError):
    """A ZkStore operation failed or timed out; after a timeout the outcome is unknown."""


# ---------------------------------------------------------------------------------------------
# URLs


@dataclass(frozen=True)
class ZkUrl:
    hosts: str                                   # "h1:2181,h2:2181", as kazoo takes it
    path: str                                    # "/meseta": absolute, no trailing slash
    auth: Optional[tuple[str, str]] = field(default=None, repr=False)   # (user, password)

    def __str__(self) -> str:
        return f"zk://{self.hosts}{self.path}"   # never shows the credentials


def parse_zk_url(url: str) -> ZkUrl:
    """`zk://[user:pass@]h1:2181,h2/path` (or `zoo://`); ports default to 2181."""
    text = url.strip()
    scheme, sep, rest = text.partition("://")
    if not sep or scheme not in ("zk", "zoo"):
        raise ValueError(f"invalid ZooKeeper URL {url!r}: expected zk://host:port[,host:port]/path")
    auth = None
    if "@" in rest:                              # hosts and path have no '@'; a password may
        credentials, _, rest = rest.rpartition("@")
        user, colon, password = credentials.partition(":")
        if not colon or not user:
            raise ValueError(f"invalid ZooKeeper URL {_redact(url)!r}: credentials must be "
                             "user:password")
        auth = (user, password)
    hosts, slash, path = rest.partition("/")
    if not hosts:
        raise ValueError(f"invalid ZooKeeper URL {_redact(url)!r}: no hosts")
    path = "/" + path.rstrip("/")
    if not slash or path == "/":
        raise ValueError(f"invalid ZooKeeper URL {_redact(url)!r}: no path (e.g. .../meseta)")
    if any(part in ("", ".", "..") for part in path.split("/")[1:]):
        raise ValueError(f"invalid ZooKeeper URL {_redact(url)!r}: bad path {path!r}")
    return ZkUrl(",".join(_host_port(h, url) for h in hosts.split(",")), path, auth)


def _host_port(text: str, url: str) -> str:
    text = text.strip()
    if text.startswith("["):                     # [::1]:2181
        host, bracket, port = text[1:].partition("]")
        if not bracket or (port and not port.startswith(":")):
            raise ValueError(f"invalid ZooKeeper URL {_redact(url)!r}: bad host {text!r}")
        host, port = f"[{host}]", port[1:]
    else:
        host, _, port = text.partition(":")
    if not host or not host.strip("[]"):
        raise ValueError(f"invalid ZooKeeper URL {_redact(url)!r}: empty host in host list")
    port = port or str(DEFAULT_PORT)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"invalid ZooKeeper URL {_redact(url)!r}: bad port {port!r} for "
                         f"host {host!r} (1-65535)")
    return f"{host}:{int(port)}"


def _redact(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    return f"{scheme}{sep}***@{rest.rpartition('@')[2]}"


def make_client(url: ZkUrl, session_timeout: float = 10.0) -> KazooClient:
    """A kazoo client for `url`, not started. Reconnection is retried forever, at most
    `session_timeout / 4` (<= 1 s) apart, so a session survives a short ZooKeeper outage
    and a leader is elected again within a second of ZooKeeper's return."""
    retry = dict(max_tries=-1, delay=0.1, backoff=2, max_delay=min(1.0, session_timeout / 4))
    auth = dict(auth_data=[("digest", "%s:%s" % url.auth)],
                default_acl=READ_ACL_UNSAFE + CREATOR_ALL_ACL) if url.auth else {}
    return KazooClient(hosts=url.hosts, timeout=session_timeout, connection_retry=retry,
                       command_retry=retry, **auth)


def _as_url(url: str | ZkUrl) -> ZkUrl:
    return url if isinstance(url, ZkUrl) else parse_zk_url(url)


# ---------------------------------------------------------------------------------------------
# Node content and leader choice


def master_info_dict(info: proto.MasterInfo,
                     capabilities: Iterable[str] = MASTER_CAPABILITIES) -> dict[str, Any]:
    """MasterInfo as Mesos writes it, plus Meseta's native endpoints under `meseta`."""
    return {
        "id": info.id, "ip": _ip_as_int(info.ip), "port": info.port,
        "pid": f"master@{info.ip}:{info.port}", "hostname": info.hostname,
        "version": info.version,
        "address": {"hostname": info.hostname, "ip": info.ip, "port": info.port},
        "capabilities": [{"type": c} for c in capabilities],
        "meseta": {"router": info.router, "publisher": info.publisher,
                   "protocol_version": proto.PROTOCOL_VERSION},
    }


def master_info_json(info: proto.MasterInfo,
                     capabilities: Iterable[str] = MASTER_CAPABILITIES) -> bytes:
    """The `json.info_` node content: compact JSON, as Mesos's protobuf-JSON writer emits."""
    return json.dumps(master_info_dict(info, capabilities), separators=(",", ":")).encode()


def master_info_from_json(data: bytes) -> proto.MasterInfo:
    """Read a `json.info_` node, leniently: `address.ip/port` (what pymesos uses), else `pid`
    (`master@ip:port`, what mesoshttp uses), else the numeric `ip` and `port`."""
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"master node content is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ValueError("master node content is not a JSON object")
    address = obj.get("address") if isinstance(obj.get("address"), dict) else {}
    pid_ip, pid_port = _parse_pid(obj.get("pid"))
    ip = address.get("ip") or pid_ip or _int_as_ip(obj.get("ip"))
    port = address.get("port") or pid_port or obj.get("port")
    if not ip or not isinstance(port, int) or isinstance(port, bool):
        raise ValueError("master node content names no address (address.ip/port or pid)")
    native = obj.get("meseta") if isinstance(obj.get("meseta"), dict) else {}
    return proto.MasterInfo(
        id=str(obj.get("id", "")), ip=str(ip), port=port,
        hostname=str(obj.get("hostname") or address.get("hostname") or ip),
        version=str(obj.get("version") or proto.MESOS_VERSION),
        router=str(native.get("router", "")), publisher=str(native.get("publisher", "")))


def _ip_as_int(ip: str) -> int:
    """IPv4 `s_addr` (network order) read as a little-endian uint32, as Mesos encodes it."""
    try:
        packed = socket.inet_aton(ip) if ip.count(".") == 3 else b"\0\0\0\0"
    except OSError:
        packed = b"\0\0\0\0"
    return struct.unpack("<I", packed)[0]


def _int_as_ip(value: Any) -> str:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 2 ** 32:
        return ""
    return socket.inet_ntoa(struct.pack("<I", value))


def _parse_pid(pid: Any) -> tuple[str, Optional[int]]:
    if not isinstance(pid, str) or "@" not in pid:
        return "", None
    host, _, port = pid.partition("@")[2].rpartition(":")
    return (host, int(port)) if host and port.isdigit() else ("", None)


def leader_node(children: Iterable[str]) -> Optional[str]:
    """The leading child: the `json.info_` node with the smallest sequence number (numeric, as
    Mesos's detector; other children such as `log_replicas` or `registry` are not masters)."""
    best: Optional[tuple[int, str]] = None
    for name in children:
        seq = name[len(NODE_PREFIX):]
        if name.startswith(NODE_PREFIX) and seq.isdigit():
            best = min(best, (int(seq), name)) if best else (int(seq), name)
    return best[1] if best else None


# ---------------------------------------------------------------------------------------------
# Contending


class MasterContender:
    """One master's candidacy; see the table in the module docstring.

    Starts connecting at once and never blocks the caller: `on_elected()` and
    `on_deposed(reason)` arrive later on kazoo threads. `client` is the kazoo client (for the
    registry); `leading` and `node` say where the candidacy stands.
    """

    def __init__(self, url: str | ZkUrl, info_json: bytes, on_elected: ElectedCallback,
                 on_deposed: DeposedCallback, session_timeout: float = 10.0) -> None:
        self.url = _as_url(url)
        self.info_json = info_json
        self.session_timeout = session_timeout
        self.client = make_client(self.url, session_timeout)
        self._on_elected, self._on_deposed = on_elected, on_deposed
        self._lock = threading.RLock()           # state and callbacks; never held over ZK calls
        self._contend_lock = threading.Lock()    # one node creation at a time
        self._connected = False
        self._closed = False
        self._leading = False
        self._node: Optional[str] = None         # our json.info_ child, while we have one
        self._generation = 0                     # sessions lost so far: fences late creations
        self._children: list[str] = []
        self._children_watch: Optional[ChildrenWatch] = None
        self._leader_cache: tuple[str, proto.MasterInfo] | None = None
        self.client.add_listener(self._on_state)
        self.client.start_async()

    @property
    def leading(self) -> bool:
        return self._leading

    @property
    def node(self) -> Optional[str]:
        return self._node

    def leader_info(self) -> Optional[proto.MasterInfo]:
        """The current leader's MasterInfo (ours when we lead), None when there is none or we
        are disconnected. Blocks for at most one ZooKeeper read, so call it off kazoo threads."""
        with self._lock:
            connected, leader = self._connected, leader_node(self._children)
            cached = self._leader_cache
        if not connected or leader is None:
            return None
        if cached and cached[0] == leader:
            return cached[1]
        try:
            data, _ = self.client.get_async(self._child(leader)).get(timeout=self.session_timeout)
            info = master_info_from_json(data)
        except (*ZK_ERRORS, ValueError) as exc:
            log.warning("cannot read the leading master's node", node=leader, reason=repr(exc))
            return None
        with self._lock:
            self._leader_cache = (leader, info)
        return info

    def close(self) -> None:
        """Withdraw: delete our node and end the session. No callback follows. Do not call it
        from inside one of this contender's callbacks (it joins kazoo's threads)."""
        with self._lock:
            if self._closed:
                return
            self._closed, self._leading = True, False
            node, self._node = self._node, None
        self.client.remove_listener(self._on_state)
        if node and self.client.connected:
            try:
                self.client.delete_async(self._child(node)).get(timeout=self.session_timeout)
            except ZK_ERRORS as exc:             # the session's end removes it anyway
                log.debug("could not delete our node on close", node=node, reason=repr(exc))
        self.client.stop()
        self.client.close()

    # -- kazoo callbacks ----------------------------------------------------------------------

    def _on_state(self, state: str) -> None:
        """Connection thread: must not block, so ZooKeeper work is spawned."""
        with self._lock:
            if self._closed:
                return
            self._connected = state == KazooState.CONNECTED
            if state == KazooState.SUSPENDED:
                self._evaluate("ZooKeeper connection suspended: cannot know our session is alive")
            elif state == KazooState.LOST:
                self._generation += 1
                self._node = None
                self._evaluate("ZooKeeper session expired")
        if state == KazooState.CONNECTED:
            self.client.handler.spawn(self._contend)

    def _contend(self) -> None:
        with self._contend_lock:
            with self._lock:
                if self._closed or not self._connected:
                    return
                generation, node = self._generation, self._node
            try:
                if node is None:
                    node = self._own_node() or self._create_node()
                    with self._lock:
                        if generation != self._generation or self._closed:
                            return               # that session is gone; so is the node
                        self._node = node
                    log.info("contending for leadership", node=self._child(node))
                    DataWatch(self.client, self._child(node),
                              functools.partial(self._on_own_node, node))
                if self._children_watch is None:
                    self._children_watch = ChildrenWatch(self.client, self.url.path,
                                                         self._on_children)
            except ZK_ERRORS as exc:             # retried on the next CONNECTED
                log.warning("contending failed", path=self.url.path, reason=repr(exc))
                return
            with self._lock:
                self._evaluate("")

    def _own_node(self) -> Optional[str]:
        """A node our session already owns: a create whose reply the connection lost."""
        client_id = self.client.client_id
        if client_id is None:
            return None
        try:
            children = self.client.get_children(self.url.path)
        except NoNodeError:
            return None
        for name in children:
            if name.startswith(NODE_PREFIX):
                stat = self.client.exists(self._child(name))
                if stat is not None and stat.ephemeralOwner == client_id[0]:
                    return name
        return None

    def _create_node(self) -> str:
        path = self.client.create(self._child(NODE_PREFIX), self.info_json, ephemeral=True,
                                  sequence=True, makepath=True)
        return path.rsplit("/", 1)[1]

    def _on_children(self, children: list[str]) -> Optional[bool]:
        with self._lock:
            if self._closed:
                return False                     # stops the watch
            self._children = list(children)
            self._evaluate(f"another master leads: {leader_node(children)}")
        return None

    def _on_own_node(self, name: str, data: Optional[bytes], stat: Any) -> Optional[bool]:
        with self._lock:
            if self._closed or self._node != name:
                return False
            if stat is not None:
                return None
            self._node = None                    # deleted under us (an operator?)
            self._evaluate(f"our node {name} was deleted")
            connected = self._connected
        if connected:
            self.client.handler.spawn(self._contend)
        return False

    def _evaluate(self, reason: str) -> None:
        """Lock held. Lead iff connected and our node is the lowest; report only changes."""
        leading = (self._connected and not self._closed and self._node is not None
                   and leader_node(self._children) == self._node)
        if leading == self._leading:
            return
        self._leading = leading
        if leading:
            log.info("elected leading master", node=self._child(self._node))
            _safely(self._on_elected)
        else:
            log.warning("no longer the leading master", reason=reason)
            _safely(self._on_deposed, reason)

    def _child(self, name: str) -> str:
        return f"{self.url.path}/{name}"


def _safely(fn: Callable[..., None], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:                            # a caller's bug must not stop kazoo's threads
        log.exception("ZooKeeper callback failed", callback=getattr(fn, "__name__", repr(fn)))


# ---------------------------------------------------------------------------------------------
# Detecting


class MasterDetector:
    """Follows the leading master for agents, frameworks and standbys.

    `on_change(info)` runs on kazoo threads whenever the leader changes; None means no leader
    (none registered, or our session expired). A mere disconnection keeps the last leader, as
    Mesos's detector does: the master may well be alive, and the session decides.
    """

    def __init__(self, url: str | ZkUrl, on_change: ChangeCallback,
                 session_timeout: float = 10.0) -> None:
        self.url = _as_url(url)
        self.client = make_client(self.url, session_timeout)
        self._on_change = on_change
        self._lock = threading.RLock()
        self._refresh_lock = threading.Lock()    # one ChildrenWatch
        self._closed = False
        self._children: list[str] = []
        self._leader: Optional[str] = None       # node whose data we read
        self._token = 0                          # the DataWatch that still counts
        self._current: Optional[proto.MasterInfo] = None
        self._children_watch: Optional[ChildrenWatch] = None
        self.client.add_listener(self._on_state)
        self.client.start_async()

    def current(self) -> Optional[proto.MasterInfo]:
        return self._current

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self.client.remove_listener(self._on_state)
        self.client.stop()
        self.client.close()

    def _on_state(self, state: str) -> None:
        with self._lock:
            if self._closed:
                return
            if state == KazooState.LOST:
                self._leader = None              # read it again once reconnected
                self._emit(None)
        if state == KazooState.CONNECTED:
            self.client.handler.spawn(self._refresh)

    def _refresh(self) -> None:
        with self._refresh_lock:
            try:
                if self._children_watch is None:
                    self.client.ensure_path(self.url.path)
                    self._children_watch = ChildrenWatch(self.client, self.url.path,
                                                         self._on_children)
                    return
            except ZK_ERRORS as exc:             # retried on the next CONNECTED
                log.warning("watching masters failed", path=self.url.path, reason=repr(exc))
                return
        with self._lock:                         # unchanged children are not re-delivered
            children = self._children
        self._follow(children)

    def _on_children(self, children: list[str]) -> Optional[bool]:
        with self._lock:
            if self._closed:
                return False
            self._children = list(children)
        self._follow(children)
        return None

    def _follow(self, children: list[str]) -> None:
        with self._lock:
            leader = leader_node(children)
            if self._closed or leader == self._leader:
                return
            self._leader = leader
            self._token += 1
            token = self._token
            if leader is None:
                self._emit(None)
                return
        # Outside the lock: DataWatch reads the node right away.
        DataWatch(self.client, f"{self.url.path}/{leader}",
                  functools.partial(self._on_data, leader, token))

    def _on_data(self, name: str, token: int, data: Optional[bytes], stat: Any) -> Optional[bool]:
        with self._lock:
            if self._closed or token != self._token:
                return False
            if stat is None:                     # gone: the children watch names the next one
                return False
            try:
                info: Optional[proto.MasterInfo] = master_info_from_json(data or b"")
            except ValueError as exc:
                log.warning("leading master's node is unreadable", node=name, reason=str(exc))
                info = None
            self._emit(info)
        return None

    def _emit(self, info: Optional[proto.MasterInfo]) -> None:
        if info != self._current:
            self._current = info
            _safely(self._on_change, info)


def detect_leader(url: str | ZkUrl, timeout: float = 10.0) -> proto.MasterInfo:
    """The leading master's MasterInfo, waiting up to `timeout` for one to appear. Blocking and
    cheap: connect, list the children, read the lowest, disconnect. Raises NoLeaderError."""
    zk_url = _as_url(url)
    deadline = time.monotonic() + timeout
    client = make_client(zk_url, session_timeout=min(10.0, max(2.0, timeout)))
    try:
        client.start(timeout=timeout)
        while True:
            changed = threading.Event()              # set by a one-shot ZooKeeper watch
            remaining = max(0.0, deadline - time.monotonic())
            try:
                children = client.get_children_async(
                    zk_url.path, lambda _event: changed.set()).get(timeout=remaining)
            except NoNodeError:
                exists = client.exists_async(zk_url.path, lambda _event: changed.set())
                if exists.get(timeout=remaining) is not None:
                    continue                              # created meanwhile
                children = []
            leader = leader_node(children)
            if leader is not None:
                try:
                    data, _ = client.get_async(f"{zk_url.path}/{leader}").get(timeout=remaining)
                except NoNodeError:
                    continue                              # it stepped down meanwhile
                try:
                    return master_info_from_json(data)
                except ValueError as exc:
                    raise NoLeaderError(f"leading master's node {zk_url.path}/{leader} is "
                                        f"unreadable: {exc}") from None
            if not changed.wait(max(0.0, deadline - time.monotonic())):
                raise NoLeaderError(f"no master has registered under {zk_url} within "
                                    f"{timeout:g}s")
    except KazooTimeoutError:
        raise NoLeaderError(f"ZooKeeper at {zk_url.hosts} did not answer within "
                            f"{timeout:g}s") from None
    except KazooException as exc:
        raise NoLeaderError(f"could not read masters under {zk_url}: {exc!r}") from None
    finally:
        client.stop()
        client.close()


# ---------------------------------------------------------------------------------------------
# Store


class ZkStore:
    """A tiny key -> bytes store under `root` (keys are relative paths such as
    `agents/<agent_id>`). Every failure is a StoreError; a timeout leaves the outcome unknown,
    so a leader that cannot persist should step down rather than carry on.

        store = ZkStore(contender.client, "/meseta/registry")
        store.set("agents/a1", data); store.get("agents/a1"); store.children("agents")
    """

    def __init__(self, client: KazooClient, root: str, timeout: float = 10.0) -> None:
        self.client = client
        self.root = "/" + root.strip("/")
        self.timeout = timeout

    def ensure_path(self, key: str = "") -> None:
        path = self._path(key)
        self._wait("ensure_path", path, self.client.ensure_path_async(path))

    def create(self, key: str, value: bytes) -> None:
        """Create `key`; StoreError if it exists."""
        path = self._path(key, value)
        try:
            self._wait("create", path, self.client.create_async(path, value, makepath=True))
        except NodeExistsError:
            raise StoreError(f"ZooKeeper create {path}: it already exists") from None

    def set(self, key: str, value: bytes) -> None:
        """Create or replace `key`."""
        path = self._path(key, value)
        try:
            self._wait("set", path, self.client.set_async(path, value))
        except NoNodeError:
            try:
                self._wait("set", path, self.client.create_async(path, value, makepath=True))
            except NodeExistsError:              # created meanwhile: replace it
                self._wait("set", path, self.client.set_async(path, value))

    def get(self, key: str) -> Optional[bytes]:
        """The value, None if `key` does not exist."""
        path = self._path(key)
        try:
            data, _ = self._wait("get", path, self.client.get_async(path))
        except NoNodeError:
            return None
        return data

    def delete(self, key: str) -> None:
        """Delete `key` (and nothing else: StoreError if it has children); absent is fine."""
        path = self._path(key)
        try:
            self._wait("delete", path, self.client.delete_async(path))
        except NoNodeError:
            pass

    def children(self, key: str = "") -> list[str]:
        """Names under `key`, sorted; [] if it does not exist."""
        path = self._path(key)
        try:
            return sorted(self._wait("children", path, self.client.get_children_async(path)))
        except NoNodeError:
            return []

    def _path(self, key: str, value: Optional[bytes] = None) -> str:
        parts = [p for p in key.strip("/").split("/") if p] if key else []
        if any(p in (".", "..") for p in parts) or "//" in key.strip("/"):
            raise StoreError(f"invalid store key {key!r}")
        if value is not None and len(value) > MAX_NODE_BYTES:
            raise StoreError(f"value for {key!r} is {len(value)} bytes; ZooKeeper takes at most "
                             f"{MAX_NODE_BYTES}")
        return "/".join([self.root.rstrip("/"), *parts]) or "/"

    def _wait(self, op: str, path: str, result: Any) -> Any:
        try:
            return result.get(timeout=self.timeout)
        except (NoNodeError, NodeExistsError):
            raise                                # the callers give these their meaning
        except KazooTimeoutError:
            raise StoreError(f"ZooKeeper {op} {path} timed out after {self.timeout:g}s "
                             "(outcome unknown)") from None
        except KazooException as exc:
            raise StoreError(f"ZooKeeper {op} {path} failed: {type(exc).__name__} "
                             f"{exc}".rstrip()) from None
