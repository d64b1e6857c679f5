"""`/v2/events` of a real `meseta marathon` on the embedded cluster, read the way marathon-lb and
marathon-python read it: a plain SSE client over http.client (lines), a slow client that never
reads, marathon-python's `event_stream()`, and a ZeroMQ SUB on the bus's PUB.

The event fields checked are reference marathon.md §6's, exactly."""
from __future__ import annotations

import ast
import collections
import collections.abc
import inspect
import re
import http.client
import json
import socket
import threading
import time
import urllib.request
from urllib.parse import urlsplit

import msgpack
import pytest
import zmq
from marathon import MarathonClient
from marathon.models import MarathonApp
from marathon.models.events import EventFactory, MarathonDeploymentSuccess, MarathonEvent

from meseta.embedded import Cluster, ClusterSpec
from meseta.frameworks.marathon import eventbus as marathon_eventbus
from meseta.frameworks.marathon import events as marathon_events
from meseta.testing import wait_until

# marathon-python 0.13 still says `collections.Iterable`, gone since Python 3.10.
collections.Iterable = collections.abc.Iterable  # type: ignore[attr-defined]

pytestmark = pytest.mark.timeout(120)

RESOURCES = "cpus:4;mem:2048;disk:4096;ports:[31000-31999]"
BURST = 20
FIELDS = {   # reference §6, plus eventType and timestamp
    "event_stream_attached": {"remoteAddress"},
    "event_stream_detached": {"remoteAddress"},
    "api_post_event": {"clientIp", "uri", "appDefinition"},
    "group_change_success": {"groupId", "version"},
    "deployment_info": {"plan", "currentStep"},
    "deployment_step_success": {"plan", "currentStep"},
    "status_update_event": {"slaveId", "taskId", "taskStatus", "message", "appId", "host",
                            "ipAddresses", "ports", "version"},
    "instance_changed_event": {"instanceId", "condition", "runSpecId", "agentId", "host",
                               "runSpecVersion"},
    "deployment_success": {"id", "plan"},
}


def start_cluster(tmp_path_factory, *flags: str) -> Cluster:
    return Cluster(ClusterSpec(agents=1, port=0, marathon=True, resources=RESOURCES,
                               work_dir=str(tmp_path_factory.mktemp("cluster")),
                               marathon_flags=flags)).start()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = start_cluster(tmp_path_factory)
    try:
        yield cluster
    finally:
        cluster.stop()


def request(base: str, method: str, path: str, body=None, timeout=10.0):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.status, json.loads(resp.read() or b"null")


def sleeper(app_id: str, **fields) -> dict:
    return {"id": app_id, "cmd": "sleep 3600", "cpus": 0.1, "mem": 16, "instances": 1, **fields}


class SseClient:
    """Reads `/v2/events` line by line on a thread: `events` holds (type, data) in order."""

    def __init__(self, base: str, query: str = "", headers: dict | None = None) -> None:
        url = urlsplit(base)
        self.conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        self.conn.request("GET", "/v2/events" + query,
                          headers=headers or {"Accept": "text/event-stream"})
        self.response = self.conn.getresponse()
        self.events: list[tuple[str, dict]] = []
        self.ended = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        if self.response.status == 200:
            self._thread.start()

    def _read(self) -> None:
        kind = None
        try:
            while True:
                line = self.response.readline()
                if not line:
                    break
                line = line.rstrip(b"\r\n").decode()
                if line.startswith("event: "):                 # `:` heartbeats are skipped
                    kind = line[len("event: "):]
                elif line.startswith("data: "):
                    data = json.loads(line[len("data: "):])
                    assert data["eventType"] == kind
                    self.events.append((kind, data))
        except (OSError, ValueError, AttributeError, http.client.HTTPException):
            pass        # hung up (http.client drops its file on close: AttributeError)
        finally:
            self.ended = True

    def types(self) -> list[str]:
        return [kind for kind, _ in list(self.events)]

    def wait_for(self, predicate, what: str, timeout: float = 30.0) -> dict:
        found: list[dict] = []

        def seen() -> bool:
            found[:] = [data for kind, data in list(self.events) if predicate(kind, data)]
            return bool(found)
        wait_until(seen, what, timeout)
        return found[0]

    def close(self) -> None:
        """Hang up: shutting the socket down wakes the reader, which holds the file's lock."""
        if self.conn.sock is not None:
            try:
                self.conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(5) if self._thread.is_alive() else None
        self.conn.close()


def done(app_id: str):
    return lambda kind, data: kind == "deployment_success" and any(
        a["app"] == app_id for s in data["plan"]["steps"] for a in s["actions"])


def check_fields(kind: str, data: dict) -> None:
    assert set(data) == FIELDS[kind] | {"eventType", "timestamp"}, (kind, sorted(data))
    assert data["timestamp"].endswith("Z")


# ---------------------------------------------------------------------------------------------

def test_app_creation_events_in_order_with_marathons_fields(cluster):
    base = cluster.marathon.url
    client = SseClient(base)
    try:
        client.wait_for(lambda kind, _: kind == "event_stream_attached", "attached")
        assert client.response.getheader("Content-Type").startswith("text/event-stream")
        assert client.events[0][0] == "event_stream_attached"   # the client's own, first
        status, _ = request(base, "POST", "/v2/apps", sleeper("/ordered"))
        assert status == 201
        client.wait_for(done("/ordered"), "deployment_success")
        events = list(client.events)
    finally:
        client.close()

    def first(kind, match=lambda d: True) -> int:
        return next(i for i, (k, d) in enumerate(events) if k == kind and match(d))
    order = [first("api_post_event", lambda d: d["appDefinition"]["id"] == "/ordered"),
             first("group_change_success"),
             first("deployment_info"),
             first("status_update_event",
                   lambda d: d["appId"] == "/ordered" and d["taskStatus"] == "TASK_RUNNING"),
             first("deployment_success")]
    assert order == sorted(order), [events[i][0] for i in order]
    for kind, data in events:
        if kind in FIELDS:
            check_fields(kind, data)
    posted = events[order[0]][1]
    assert posted["uri"] == "/v2/apps" and posted["clientIp"] == "127.0.0.1"
    assert posted["appDefinition"]["cmd"] == "sleep 3600" and posted["appDefinition"]["version"]
    running = events[order[3]][1]
    assert running["ports"] and running["ipAddresses"][0]["protocol"] == "IPv4"
    assert running["taskId"].startswith("ordered.")
    info = events[order[2]][1]
    # light, but with the root's id and version as original/target (marathon-python needs them)
    assert set(info["plan"]) == {"id", "original", "target", "steps", "version"}
    assert info["plan"]["target"] == {"id": "/", "version": info["plan"]["version"]}
    assert info["currentStep"] in info["plan"]["steps"]
    assert events[order[4]][1]["id"] == info["plan"]["id"]


def test_event_type_filter(cluster):
    base = cluster.marathon.url
    client = SseClient(base, "?event_type=status_update_event&event_type=deployment_success"
                             "&plan-format=light")
    try:
        assert client.response.status == 200
        request(base, "POST", "/v2/apps", sleeper("/filtered"))
        client.wait_for(done("/filtered"), "deployment_success")
        kinds = set(client.types())
    finally:
        client.close()
    assert kinds == {"status_update_event", "deployment_success"}


def test_not_acceptable_without_event_stream_in_accept(cluster):
    client = SseClient(cluster.marathon.url, headers={"Accept": "application/json"})
    try:
        assert client.response.status == 406
        assert json.loads(client.response.read())["message"].startswith("HTTP 406")
    finally:
        client.close()


def test_twenty_open_streams_leave_the_api_answering_and_go_away_cleanly(cluster):
    base = cluster.marathon.url
    bus = cluster.marathon.service.events
    before = set(bus.subscriptions)
    clients = [SseClient(base) for _ in range(20)]
    try:
        wait_until(lambda: all(c.events for c in clients), "20 streams attached")
        status, body = request(base, "GET", "/v2/apps", timeout=5)
        assert status == 200 and "apps" in body
        ours = set(bus.subscriptions) - before
        assert len(ours) == 20
    finally:
        for client in clients:
            client.close()
    # the server notices a client is gone when a write fails: make it write
    request(base, "POST", "/v2/apps", sleeper("/nudge", instances=0))
    request(base, "DELETE", "/v2/apps/nudge")
    wait_until(lambda: not ours & set(bus.subscriptions), "closed streams unsubscribed")


def test_zeromq_followers_get_the_events_with_epoch_and_sequence(cluster):
    base = cluster.marathon.url
    _, info = request(base, "GET", "/v2/info")
    assert info["event_subscriber"]["type"] == "zeromq"
    [endpoint] = info["event_subscriber"]["http_endpoints"]
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"event_stream_")
    sub.connect(endpoint)
    try:
        # a SUB only hears what is published after it has joined: attach until it hears one
        frames = []
        deadline = time.monotonic() + 20
        while not frames and time.monotonic() < deadline:
            SseClient(base).close()
            if sub.poll(100):
                frames.append(sub.recv_multipart())
        assert frames, "no event on the PUB"
        while sub.poll(500):
            frames.append(sub.recv_multipart())
    finally:
        sub.close()
    bodies = [msgpack.unpackb(body, raw=False) for _, body in frames]
    assert {topic for topic, _ in frames} <= {b"event_stream_attached", b"event_stream_detached"}
    assert bodies[0]["kind"] == bodies[0]["payload"]["eventType"]
    assert len({b["epoch"] for b in bodies}) == 1
    assert all(b["seq"] > a["seq"] for a, b in zip(bodies, bodies[1:]))


def test_marathon_python_event_stream_parses_an_app_creation(cluster):
    base = cluster.marathon.url
    client = MarathonClient(base)
    received: list[MarathonEvent] = []
    failures: list[BaseException] = []

    def listen() -> None:
        try:
            for event in client.event_stream():
                received.append(event)
                if isinstance(event, MarathonDeploymentSuccess):
                    return
        except BaseException as exc:      # handed to the test thread
            failures.append(exc)

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    wait_until(lambda: received or failures, "the stream to attach")
    client.create_app("python-events", MarathonApp(cmd="sleep 3600", cpus=0.1, mem=16))
    thread.join(60)
    assert not failures, failures
    kinds = [EventFactory.class_to_event[type(e)] for e in received]
    assert kinds[0] == "event_stream_attached"
    assert {"api_post_event", "group_change_success", "deployment_info", "status_update_event",
            "deployment_success"} <= set(kinds)
    update = next(e for e in received if EventFactory.class_to_event[type(e)]
                  == "status_update_event" and e.task_status == "TASK_RUNNING")
    assert update.app_id == "/python-events" and update.ip_addresses[0].protocol == "IPv4"


def test_marathon_python_knows_every_event_type_we_send_but_the_scheduler_ones():
    """marathon-python raises on an unknown eventType. It lacks Marathon's own
    scheduler_(re)registered/disconnected events (sent when the master (re)registers Marathon,
    not during app changes): a gap of that client, as with real Marathon. Every other type
    named in events.py and eventbus.py must be one it knows."""
    sent = set()
    for module in (marathon_events, marathon_eventbus):
        tree = ast.parse(inspect.getsource(module))
        sent |= {node.value for node in ast.walk(tree)
                 if isinstance(node, ast.Constant) and isinstance(node.value, str)
                 and re.fullmatch(r"[a-z_]+_event|group_change_[a-z]+|deployment_[a-z_]+|"
                                  r"event_stream_[a-z]+", node.value)
                 and not hasattr(module, node.value)}          # builders' names in __all__
    scheduler = {"scheduler_registered_event", "scheduler_reregistered_event",
                 "scheduler_disconnected_event"}
    assert scheduler <= sent and {"status_update_event", "event_stream_detached"} <= sent
    assert sent - scheduler <= set(EventFactory.event_to_class)
    assert not scheduler & set(EventFactory.event_to_class)


# ---------------------------------------------------------------------------------------------
# A slow client, on a Marathon that lets a client fall only 64 events behind

@pytest.fixture(scope="module")
def small_buffers(tmp_path_factory):
    cluster = start_cluster(tmp_path_factory, "--event_stream_max_outstanding_messages=64")
    try:
        yield cluster
    finally:
        cluster.stop()


def open_slow_client(base: str) -> socket.socket:
    """A client with a tiny receive buffer that sends the request and never reads."""
    url = urlsplit(base)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    sock.connect((url.hostname, url.port))
    sock.sendall(b"GET /v2/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
    return sock


def test_a_slow_client_is_disconnected_and_the_others_keep_receiving(small_buffers):
    base = small_buffers.marathon.url
    bus = small_buffers.marathon.service.events
    fast = SseClient(base)
    try:
        fast.wait_for(lambda kind, _: kind == "event_stream_attached", "fast attached")
        [fast_sub] = bus.subscriptions
        slow = open_slow_client(base)
        wait_until(lambda: len(bus.subscriptions) == 2, "slow client attached")
        [slow_sub] = [s for s in bus.subscriptions if s is not fast_sub]
        # bursts of api_post_events (1.5 kB each) until the slow client's socket buffers are
        # full and 64 more events wait for it. A burst is published at once, so it must stay
        # below the limit: a client cannot drain faster than one loop pass publishes.
        batch = 0
        while not slow_sub.overflowed and batch < 500:
            request(base, "PUT", "/v2/apps", [
                {"id": f"/burst/b{batch}/a{i}", "cmd": "sleep 3600", "instances": 0,
                 "labels": {"padding": "x" * 1024}} for i in range(BURST)])
            batch += 1
        assert slow_sub.overflowed and slow_sub.closed
        assert bus.subscriptions == (fast_sub,)
        # the fast client heard the slow one leave, and keeps hearing what comes after
        fast.wait_for(lambda kind, _: kind == "event_stream_detached", "detached")
        request(base, "POST", "/v2/apps", sleeper("/after", instances=0))
        fast.wait_for(lambda kind, d: kind == "api_post_event"
                      and d["appDefinition"]["id"] == "/after", "an event after the drop")
        assert not fast_sub.overflowed and not fast.ended
        posted = [d["appDefinition"]["id"] for k, d in fast.events if k == "api_post_event"]
        assert len(posted) == BURST * batch + 1              # it missed none
        # the slow client's stream ends once it drains what was already on its way
        slow.settimeout(30)
        received = b""
        while not received.endswith(b"0\r\n\r\n"):
            chunk = slow.recv(65536)
            if not chunk:
                break
            received += chunk
        slow.close()
    finally:
        fast.close()
