"""meseta.frameworks.marathon.eventbus and the /v2/events blueprint: fan-out, filters, a slow
client dropped alone, one serialisation per event, close_all, the PUB; the SSE answer over the
fake service (meseta.testing.marathon_fake); api_post_event from /v2/apps writes.
No sockets or sleeps: `take(0)` and a heartbeat of 0 seconds never wait."""

from __future__ import annotations

import json

import pytest

from meseta.clock import FakeClock
from meseta.frameworks.marathon import eventbus
from meseta.frameworks.marathon.api import create_app
from meseta.frameworks.marathon.api.events import HEARTBEAT, HEARTBEAT_CONFIG
from meseta.frameworks.marathon.eventbus import EventBus, StreamClosed
from meseta.testing import marathon_fake as fake

SSE = {"Accept": "text/event-stream"}


def event(event_type: str, **fields) -> dict:
    return {**fields, "eventType": event_type, "timestamp": "2023-11-14T22:13:20.000Z"}


def parse(chunk: bytes) -> list[tuple[str, dict]]:
    """(type, data) of every frame in `chunk`; heartbeats left out."""
    frames = []
    for block in chunk.decode().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        if lines:
            data = json.loads(lines["data"])
            assert data["eventType"] == lines["event"]
            frames.append((lines["event"], data))
    return frames


def types(chunk: bytes) -> list[str]:
    return [t for t, _ in parse(chunk)]


class FakePublisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []
        self.epoch, self.endpoint = 1, "tcp://10.0.0.2:5070"

    def publish(self, kind: str, payload: dict) -> None:
        self.sent.append((kind, payload))

    def new_epoch(self) -> None:
        self.epoch += 1


def make_bus(capacity: int = 8, publisher=None) -> EventBus:
    return EventBus(capacity, publisher, FakeClock())


# ---------------------------------------------------------------------------------------------
# The bus

def test_every_client_gets_every_event_in_order_starting_with_its_own_attached():
    bus = make_bus()
    first = bus.subscribe(None, "10.0.0.7")
    second = bus.subscribe(None, "10.0.0.8")
    bus.publish(event("group_change_success", groupId="/", version="v1"))
    bus.publish(event("deployment_info", plan={}, currentStep={}))
    assert parse(first.take(0)) == [
        ("event_stream_attached", {"remoteAddress": "10.0.0.7", "eventType": "event_stream_attached",
                                   "timestamp": "2023-11-14T22:13:20.000Z"}),
        ("event_stream_attached", parse(second.take(0))[0][1]),
        ("group_change_success", event("group_change_success", groupId="/", version="v1")),
        ("deployment_info", event("deployment_info", plan={}, currentStep={}))]
    assert first.take(0) == b""                                    # nothing more queued


def test_second_client_sees_only_what_came_after_it_attached():
    bus = make_bus()
    first = bus.subscribe(None, "a")
    bus.publish(event("app_terminated_event", appId="/x"))
    second = bus.subscribe(None, "b")
    bus.publish(event("app_terminated_event", appId="/y"))
    assert types(first.take(0)) == ["event_stream_attached", "app_terminated_event",
                                    "event_stream_attached", "app_terminated_event"]
    assert types(second.take(0)) == ["event_stream_attached", "app_terminated_event"]


@pytest.mark.parametrize("wanted, published, received", [
    (None, ["status_update_event", "api_post_event"],
     ["event_stream_attached", "status_update_event", "api_post_event"]),
    ([], ["status_update_event"], ["event_stream_attached", "status_update_event"]),
    (["status_update_event"], ["api_post_event", "status_update_event", "deployment_info"],
     ["status_update_event"]),                          # its own attached is filtered out too
    (["api_post_event", "event_stream_attached"], ["api_post_event", "status_update_event"],
     ["event_stream_attached", "api_post_event"]),
])
def test_event_type_filter(wanted, published, received):
    bus = make_bus()
    sub = bus.subscribe(wanted, "a")
    for event_type in published:
        bus.publish(event(event_type))
    assert types(sub.take(0)) == received


def test_an_event_is_serialised_once_for_all_clients(monkeypatch):
    calls = []
    real = eventbus.sse_frame
    monkeypatch.setattr(eventbus, "sse_frame", lambda e: calls.append(e["eventType"]) or real(e))
    bus = make_bus()
    subs = [bus.subscribe(None, f"10.0.0.{i}") for i in range(5)]
    calls.clear()
    bus.publish(event("status_update_event", taskId="t1"))
    assert calls == ["status_update_event"]
    assert all(sub.take(0).endswith(real(event("status_update_event", taskId="t1")))
               for sub in subs)
    for sub in subs:
        bus.unsubscribe(sub)
    filtered = bus.subscribe(["deployment_info"], "b")
    calls.clear()
    bus.publish(event("status_update_event", taskId="t2"))  # nobody wants it: never serialised
    assert calls == [] and filtered.take(0) == b""


def test_a_full_queue_disconnects_only_that_client():
    bus = make_bus(capacity=3)
    slow = bus.subscribe(None, "10.0.0.9")                     # its attached: 1 of 3
    fast = bus.subscribe(None, "10.0.0.1")                     # 2 of 3 for slow
    received = types(fast.take(0))
    for n in range(10):
        bus.publish(event("status_update_event", taskId=f"t{n}"))
        received += types(fast.take(0))
    assert slow.closed and slow.overflowed
    assert bus.subscriptions == (fast,)
    with pytest.raises(StreamClosed):
        slow.take(0)
    # the fast client missed nothing, and heard that the slow one was dropped (on the 2nd event)
    assert received == (["event_stream_attached", "status_update_event", "status_update_event",
                         "event_stream_detached"] + ["status_update_event"] * 8)
    assert not fast.closed and not fast.overflowed


def test_a_client_that_keeps_up_is_never_dropped():
    bus = make_bus(capacity=2)
    sub = bus.subscribe(None, "a")
    for n in range(100):
        bus.publish(event("status_update_event", taskId=f"t{n}"))
        assert sub.take(0)
    assert not sub.overflowed and bus.subscriptions == (sub,)


def test_unsubscribe_publishes_detached_once():
    publisher = FakePublisher()
    bus = make_bus(publisher=publisher)
    watcher = bus.subscribe(None, "w")
    leaving = bus.subscribe(None, "10.0.0.5")
    bus.unsubscribe(leaving)
    bus.unsubscribe(leaving)
    assert leaving.closed and not leaving.overflowed
    assert parse(watcher.take(0))[-1] == ("event_stream_detached", {
        "remoteAddress": "10.0.0.5", "eventType": "event_stream_detached",
        "timestamp": "2023-11-14T22:13:20.000Z"})
    assert [kind for kind, _ in publisher.sent] == [
        "event_stream_attached", "event_stream_attached", "event_stream_detached"]


def test_close_all_ends_every_stream_and_starts_a_new_epoch():
    publisher = FakePublisher()
    bus = make_bus(publisher=publisher)
    subs = [bus.subscribe(None, f"c{i}") for i in range(3)]
    bus.publish(event("status_update_event"))
    bus.close_all()
    assert bus.subscriptions == () and publisher.epoch == 2
    for sub in subs:
        assert sub.closed and not sub.overflowed
        with pytest.raises(StreamClosed):
            sub.take(0)
    bus.unsubscribe(subs[0])                                   # the stream's own close: nothing
    assert publisher.sent[-1][0] == "status_update_event"


def test_the_pub_gets_every_event_with_its_type_as_topic():
    publisher = FakePublisher()
    bus = make_bus(publisher=publisher)
    bus.publish(event("status_update_event", taskId="t"))       # no SSE client: still published
    assert publisher.sent == [("status_update_event", event("status_update_event", taskId="t"))]
    assert bus.subscriber_info() == {"type": "zeromq", "http_endpoints": ["tcp://10.0.0.2:5070"]}
    assert make_bus().subscriber_info() is None


def test_capacity_must_hold_a_message():
    with pytest.raises(ValueError):
        EventBus(0)


# ---------------------------------------------------------------------------------------------
# GET /v2/events over the fake service

@pytest.fixture
def svc():
    svc = fake.world()
    svc.events = make_bus()
    return svc


def open_stream(svc, url="/v2/events", headers=SSE, heartbeat=0.0):
    app = create_app(svc)
    app.config[HEARTBEAT_CONFIG] = heartbeat
    return app.test_client().get(url, headers=headers, buffered=False)


@pytest.mark.parametrize("headers, status", [
    (SSE, 200),
    ({"Accept": "text/event-stream, application/json;q=0.5"}, 200),
    ({"Accept": "text/*"}, 200),
    ({"Accept": "*/*"}, 200),
    ({}, 200),                                   # no Accept: anything goes, as in JAX-RS
    ({"Accept": "application/json"}, 406),
    ({"Accept": "text/html"}, 406),
])
def test_accept_header(svc, headers, status):
    response = open_stream(svc, headers=headers)
    assert response.status_code == status
    if status == 200:
        assert response.mimetype == "text/event-stream"
        assert response.headers["Cache-Control"].startswith("no-cache")
    else:
        assert response.get_json() == {"message": "HTTP 406 Not Acceptable: /v2/events produces "
                                                  "text/event-stream"}
        assert svc.events.subscriptions == ()
    response.close()


def test_stream_sends_attached_then_events_then_heartbeats_and_unsubscribes_on_close(svc):
    response = open_stream(svc)
    body = iter(response.response)
    [(kind, data)] = parse(next(body))
    assert kind == "event_stream_attached" and data["remoteAddress"] == "127.0.0.1"
    assert next(body) == HEARTBEAT                              # quiet: a comment line
    svc.events.publish(event("status_update_event", taskId="t1"))
    svc.events.publish(event("status_update_event", taskId="t2"))
    assert [d["taskId"] for _, d in parse(next(body))] == ["t1", "t2"]
    watcher = svc.events.subscribe(None, "w")
    response.close()                                            # the client went away
    assert svc.events.subscriptions == (watcher,)
    assert types(watcher.take(0)) == ["event_stream_attached", "event_stream_detached"]


def test_stream_ends_when_the_bus_closes_it(svc):
    response = open_stream(svc)
    body = iter(response.response)
    next(body)
    svc.events.close_all()
    assert list(body) == []


def test_filter_and_plan_format(svc):
    response = open_stream(
        svc, "/v2/events?plan-format=light&event_type=status_update_event&event_type=api_post_event")
    body = iter(response.response)
    assert next(body) == HEARTBEAT             # own attached filtered out: headers go anyway
    [sub] = svc.events.subscriptions
    assert sub.event_types == {"status_update_event", "api_post_event"}
    svc.events.publish(event("deployment_info"))
    svc.events.publish(event("api_post_event"))
    assert types(next(body)) == ["api_post_event"]
    response.close()


def test_the_request_never_iterated_still_unsubscribes(svc):
    open_stream(svc).close()
    assert svc.events.subscriptions == ()


# ---------------------------------------------------------------------------------------------
# api_post_event

@pytest.mark.parametrize("method, url, body, posted", [
    ("POST", "/v2/apps", {"id": "/new", "cmd": "sleep 1"}, ["/new"]),
    ("PUT", "/v2/apps/web", {"cmd": "sleep 2"}, ["/web"]),
    ("PUT", "/v2/apps/fresh", {"cmd": "sleep 2"}, ["/fresh"]),
    ("PATCH", "/v2/apps/web", {"instances": 5}, ["/web"]),
    ("PUT", "/v2/apps", [{"id": "/web", "instances": 1}, {"id": "/other", "cmd": "x"}],
     ["/web", "/other"]),
    ("PATCH", "/v2/apps", [{"id": "/web", "instances": 2}], ["/web"]),
])
def test_app_writes_announce_api_post_events(method, url, body, posted):
    svc = fake.world()
    response = fake.call(svc, method, url, body)
    assert response.status_code in (200, 201), response.get_data(as_text=True)
    assert [e["appDefinition"]["id"] for e in svc.announced] == posted
    for e in svc.announced:
        assert set(e) == {"clientIp", "uri", "appDefinition", "eventType", "timestamp"}
        assert e["eventType"] == "api_post_event" and e["clientIp"] == "127.0.0.1"
        assert e["uri"] == url
        app = fake.app_of(svc, e["appDefinition"]["id"])
        assert e["appDefinition"] == app.to_json() and e["appDefinition"]["version"] == app.version


@pytest.mark.parametrize("method, url, body, status", [
    ("POST", "/v2/apps", {"id": "/web", "cmd": "again"}, 409),     # exists
    ("POST", "/v2/apps", {"id": "/bad id"}, 422),
    ("PATCH", "/v2/apps/nope", {"instances": 1}, 404),
    ("PUT", "/v2/apps/web", {"cmd": "x"}, 409),                     # locked by a deployment
])
def test_failed_writes_announce_nothing(method, url, body, status):
    svc = fake.world()
    fake.call(svc, "PUT", "/v2/apps/web", {"instances": 7})        # a deployment of /web runs
    svc.announced.clear()
    response = fake.call(svc, method, url, body)
    assert response.status_code == status, response.get_data(as_text=True)
    assert svc.announced == []
