"""`GET /v2/events`: the event stream as Server-Sent Events (reference marathon.md §1.7).

    curl -H 'Accept: text/event-stream' 'http://m1:8080/v2/events?event_type=status_update_event'

- `Accept` must admit `text/event-stream` (that type, `text/*`, `*/*`, or no header at all, as
  JAX-RS negotiates for Marathon 1.10's `@Produces`); anything else is 406 Not Acceptable.
  (Marathon before 1.6 served events from Jetty's EventSourceServlet, which answered 405.)
- `event_type` (repeatable) keeps only those types; none means all. `plan-format` is accepted
  and ignored: deployment events are always light, as in Marathon 1.8+ (see `events.py`).
- The answer is `text/event-stream`, frames `event: <type>\\ndata: <json>\\n\\n`. The first one is
  this client's own `event_stream_attached` (when its filter lets that type through); when no
  event came for `EVENT_STREAM_HEARTBEAT` seconds (app config, default 15) a comment line
  `:` goes out, so proxies and clients see the stream alive and a dead client is noticed at
  the latest then.
- The stream ends when the client leaves (the server closes the body: unsubscribe), when it
  falls `--event_stream_max_outstanding_messages` behind, or when this instance stops leading.
  A standby never gets here: the leader proxy redirects `/v2/events` (307).

`api_posted` builds the `api_post_event`s of `/v2/apps` writes (POST, PUT, PATCH).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from flask import Blueprint, Response, current_app, request

from meseta.frameworks.marathon import events
from meseta.frameworks.marathon.errors import ApiError
from meseta.frameworks.marathon.eventbus import EventBus, StreamClosed, Subscription
from meseta.frameworks.marathon.group import Group, find_app
from meseta.frameworks.marathon.pathid import PathId
from meseta.frameworks.marathon.api.common import service

__all__ = ["blueprint", "HEARTBEAT_CONFIG", "DEFAULT_HEARTBEAT_SECONDS", "EventStream",
           "api_posted"]

blueprint = Blueprint("events", __name__)

EVENT_STREAM = "text/event-stream"
HEARTBEAT_CONFIG = "EVENT_STREAM_HEARTBEAT"
DEFAULT_HEARTBEAT_SECONDS = 15.0
HEARTBEAT = b":\n\n"


class EventStream:
    """The body of one SSE answer. The first chunk goes out at once (the headers leave with
    it); then whatever was queued, or a heartbeat after `heartbeat` quiet seconds. `close()`
    (called by the server when the response is done, also after a failed write) unsubscribes,
    even if the body was never iterated."""

    def __init__(self, bus: EventBus, sub: Subscription, heartbeat: float) -> None:
        self.bus, self.sub, self.heartbeat = bus, sub, heartbeat
        self._wait = 0.0

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> bytes:
        try:
            chunk = self.sub.take(self._wait)
        except StreamClosed:
            self.close()
            raise StopIteration from None
        self._wait = self.heartbeat
        return chunk or HEARTBEAT

    def close(self) -> None:
        self.bus.unsubscribe(self.sub)


def _accepts_event_stream() -> bool:
    accept = request.accept_mimetypes
    return not accept or accept[EVENT_STREAM] > 0


@blueprint.get("/v2/events")
def stream() -> Response:
    if not _accepts_event_stream():
        raise ApiError(406, f"HTTP 406 Not Acceptable: /v2/events produces {EVENT_STREAM}")
    types = [t for t in request.args.getlist("event_type") if t]
    bus: EventBus = service().events
    heartbeat = float(current_app.config.get(HEARTBEAT_CONFIG, DEFAULT_HEARTBEAT_SECONDS))
    sub = bus.subscribe(types, request.remote_addr or "")
    return Response(EventStream(bus, sub, heartbeat), mimetype=EVENT_STREAM)


def api_posted(app_ids: Iterable[PathId]) -> Callable[[Group, float], list[dict[str, Any]]]:
    """For `service.deploy(..., announce=)`: an `api_post_event` per app of a `/v2/apps`
    write, carrying the definition as the accepted root holds it (version stamped). What it
    needs of the request is read now; it runs later on the service's thread."""
    client_ip, uri, ids = request.remote_addr or "", request.path, tuple(app_ids)

    def announce(root: Group, now: float) -> list[dict[str, Any]]:
        apps = (find_app(root, app_id) for app_id in ids)
        return [events.api_post(client_ip, uri, app.json_view(), now)
                for app in apps if app is not None]
    return announce
