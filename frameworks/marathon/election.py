"""Which Marathon leads: `StandaloneElection` (this one, always) or `ZkElection` (ZooKeeper,
kazoo's Election recipe under `<zkpath>/leader`, each participant named `host:port`).

    election = ZkElection("zk://h1:2181/marathon", participant_id="10.0.0.5:8080")
    election.start(on_elected=lambda: loop.call_soon_threadsafe(service.lead),
                   on_deposed=lambda why: loop.call_soon_threadsafe(service.step_down, why))
    election.leader()      -> "10.0.0.4:8080": any participant can ask; None if none is known
    election.abdicate()    DELETE /v2/leader: step down, then contend again behind the others
    election.stop()        leave the election; nothing is called back after it returns

Callbacks come on kazoo's threads (or the caller's, for abdicate) and should only hand the news
to the owner's loop. They arrive in order and alternate: elected, deposed, elected, ...

A term of a ZkElection (no zombie leader: it leads only while its session is surely alive and
its lock node is the lowest):

    event                                effect
    the recipe grants the lock           lead iff connected, in the session that made the node,
                                         and the node still exists -> on_elected
    SUSPENDED                            on_deposed at once: our session may be expiring unseen
    LOST (session expired)               on_deposed; the node died with the session
    our node deleted (an operator)       on_deposed
    abdicate()                           on_deposed
    stop()                               no callback
    after any of these                   the recipe deletes the node (if still there) and the
                                         election contends again with a new one, behind the
                                         participants already waiting

The kazoo Election (a Lock) orders participants by sequential ephemeral nodes; `leader()` reads
the first contender's identifier, cached and refreshed by a ChildrenWatch so that asking costs
no round trip.
"""

from __future__ import annotations

import functools
import threading
from typing import Any, Callable, Optional, Protocol

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import KazooException
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.protocol.states import EventType
from kazoo.recipe.election import Election as KazooElection
from kazoo.recipe.watchers import ChildrenWatch
from kazoo.retry import KazooRetry

from meseta.log import get_logger
from meseta.zk import ZkUrl, make_client, parse_zk_url

__all__ = ["Election", "StandaloneElection", "ZkElection"]

log = get_logger("meseta.marathon.election")

ZK_ERRORS = (KazooException, KazooTimeoutError)
RETRY_PAUSE = 0.5                    # seconds before contending again after an error
ABDICATED = "abdicated (DELETE /v2/leader)"

ElectedCallback = Callable[[], None]
DeposedCallback = Callable[[str], None]


class Election(Protocol):
    def start(self, on_elected: ElectedCallback, on_deposed: DeposedCallback) -> None: ...
    def leader(self) -> str | None: ...
    @property
    def is_leader(self) -> bool: ...
    def abdicate(self) -> None: ...
    def stop(self) -> None: ...


def _safely(fn: Callable[..., None], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:                # the owner's bug must not stop kazoo's threads
        log.exception("election callback failed", callback=getattr(fn, "__name__", repr(fn)))


class StandaloneElection:
    """The only participant: elected on start, and again right after abdicating."""

    def __init__(self, participant_id: str = "standalone") -> None:
        self.participant_id = participant_id
        self._lock = threading.RLock()
        self._leading = False
        self._stopped = False
        self._on_elected: ElectedCallback = lambda: None
        self._on_deposed: DeposedCallback = lambda reason: None

    @property
    def is_leader(self) -> bool:
        return self._leading

    def start(self, on_elected: ElectedCallback, on_deposed: DeposedCallback) -> None:
        with self._lock:
            self._on_elected, self._on_deposed = on_elected, on_deposed
            self._elect()

    def leader(self) -> str | None:
        return self.participant_id if self._leading else None

    def abdicate(self) -> None:
        with self._lock:
            if self._leading and not self._stopped:
                self._leading = False
                _safely(self._on_deposed, ABDICATED)
                self._elect()

    def stop(self) -> None:
        with self._lock:
            self._stopped, self._leading = True, False

    def _elect(self) -> None:
        if not self._stopped:
            self._leading = True
            _safely(self._on_elected)


class ZkElection:
    """See the module docstring. Given a URL it opens its own session (`session_timeout`) and
    contends under `<url path>/leader`; given a started client (to share one session with the
    store) it needs `path`, Marathon's ZooKeeper path such as `/marathon`."""

    def __init__(self, zk_url_or_client: KazooClient | ZkUrl | str, participant_id: str,
                 session_timeout: float = 10.0, path: str | None = None,
                 stop_timeout: float = 5.0) -> None:
        if isinstance(zk_url_or_client, KazooClient):
            if path is None:
                raise ValueError("ZkElection needs a path (e.g. '/marathon') with a client")
            self.client, self._owns_client = zk_url_or_client, False
        else:
            url = (zk_url_or_client if isinstance(zk_url_or_client, ZkUrl)
                   else parse_zk_url(zk_url_or_client))
            path = path or url.path
            self.client, self._owns_client = make_client(url, session_timeout), True
        self.path = "/" + path.strip("/") + "/leader"
        self.participant_id = participant_id
        self.stop_timeout = stop_timeout
        self._lock = threading.RLock()       # state and callbacks; never held over ZK calls
        self._refresh_lock = threading.Lock()
        self._started = self._stopped = False
        self._connected = False
        self._session = 0                    # sessions lost so far: fences a stale grant
        self._leading = False
        self._term = threading.Event()       # set when the current term ends
        self._node: str | None = None        # our lock node while we lead
        self._election: KazooElection | None = None
        self._leader: str | None = None      # the first contender, as last read
        self._observer = KazooElection(self.client, self.path)   # only reads contenders
        self._watch: ChildrenWatch | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._on_elected: ElectedCallback = lambda: None
        self._on_deposed: DeposedCallback = lambda reason: None

    @property
    def is_leader(self) -> bool:
        return self._leading

    def start(self, on_elected: ElectedCallback, on_deposed: DeposedCallback) -> None:
        with self._lock:
            if self._started:
                raise RuntimeError("this election has already been started")
            self._started = True
            self._on_elected, self._on_deposed = on_elected, on_deposed
            # Under the lock: a state change racing with this waits, then overrides it.
            self.client.add_listener(self._on_state)
            self._connected = self.client.state == KazooState.CONNECTED
        if self._owns_client:
            self.client.start_async()
        self._thread = threading.Thread(target=self._contend, daemon=True,
                                        name=f"marathon-election {self.participant_id}")
        self._thread.start()

    def leader(self) -> str | None:
        with self._lock:
            if self._leading:
                return self.participant_id
            if self._stopped:
                return None
            # Our own id here is a node about to go (we just stepped down): no leader yet.
            return None if self._leader == self.participant_id else self._leader

    def abdicate(self) -> None:
        with self._lock:
            self._depose(ABDICATED)

    def stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            self._leading = False
            self._term.set()
            election = self._election
        self._stopping.set()
        self.client.remove_listener(self._on_state)
        if election is not None:
            election.cancel()                # a waiting participant gives up its node
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.stop_timeout)   # it deletes our node on the way out
            if thread.is_alive():
                log.warning("left the election without deleting our node; it goes with the "
                            "session", participant=self.participant_id)
        if self._owns_client:
            self.client.stop()
            self.client.close()

    # -- the contending thread ----------------------------------------------------------------

    def _contend(self) -> None:
        """Contend term after term until stopped; `run` blocks while waiting and while leading."""
        while True:
            with self._lock:
                if self._stopped:
                    return
                election = self._election = KazooElection(self.client, self.path,
                                                          self.participant_id)
            # The recipe retries with backoff up to 60 s between attempts; after a ZooKeeper
            # outage that would leave us out of the running long after it is back.
            election.lock._retry = KazooRetry(max_tries=None, max_delay=1.0,
                                              sleep_func=self.client.handler.sleep_func)
            try:
                self._watch_leader()
                election.run(self._lead, election)
            except ZK_ERRORS as exc:
                if self._stopping.is_set():
                    return
                log.warning("contending for leadership failed; trying again", reason=repr(exc))
                self._stopping.wait(RETRY_PAUSE)

    def _lead(self, election: KazooElection) -> None:
        """Holding the lock: lead until the term ends, unless the grant is stale already."""
        node = election.lock.node
        with self._lock:
            if self._stopped or not self._connected or node is None:
                return
            session = self._session
        try:
            stat = self.client.exists(f"{self.path}/{node}",
                                      watch=functools.partial(self._on_node_event, node))
        except ZK_ERRORS:
            return
        client_id = self.client.client_id
        with self._lock:
            if (self._stopped or not self._connected or session != self._session or stat is None
                    or client_id is None or stat.ephemeralOwner != client_id[0]):
                return                       # the session that won is gone: contend anew
            self._term = term = threading.Event()
            self._node, self._leading = node, True
            log.info("elected leader", participant=self.participant_id, node=node)
            _safely(self._on_elected)
        term.wait()

    def _depose(self, reason: str) -> None:
        """Lock held. End the term, if there is one, and say so unless stopped."""
        if not self._leading:
            return
        self._leading, self._node = False, None
        self._term.set()
        log.warning("no longer the leader", participant=self.participant_id, reason=reason)
        if not self._stopped:
            _safely(self._on_deposed, reason)

    # -- kazoo's threads ----------------------------------------------------------------------

    def _on_state(self, state: str) -> None:
        """On the connection thread: must not block, so ZooKeeper work is spawned."""
        with self._lock:
            if self._stopped:
                return
            self._connected = state == KazooState.CONNECTED
            if state == KazooState.SUSPENDED:
                self._depose("ZooKeeper connection suspended: cannot know our session is alive")
            elif state == KazooState.LOST:
                self._session += 1
                self._leader = None
                self._depose("ZooKeeper session expired")
        if state == KazooState.CONNECTED:
            self.client.handler.spawn(self._refresh_leader)

    def _on_node_event(self, node: str, event: Any) -> None:
        if event.type == EventType.DELETED:
            with self._lock:
                if self._node == node:
                    self._depose(f"our election node {node} was deleted")

    def _watch_leader(self) -> None:
        if self._watch is None:
            self.client.ensure_path(self.path)
            self._watch = ChildrenWatch(self.client, self.path, self._on_children)

    def _on_children(self, children: list[str]) -> Optional[bool]:
        if self._stopping.is_set():
            return False                     # ends the watch
        self.client.handler.spawn(self._refresh_leader)
        return None

    def _refresh_leader(self) -> None:
        """Read the first contender. One at a time, so the last read is the newest."""
        with self._refresh_lock:
            try:
                contenders = self._observer.contenders()
            except ZK_ERRORS as exc:         # read again on the next change or reconnection
                log.debug("reading the election's contenders failed", reason=repr(exc))
                return
            with self._lock:
                self._leader = contenders[0] if contenders else None
