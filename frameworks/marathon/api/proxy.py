"""The leader proxy: a standby serves nothing itself and forwards to the leader (reference
marathon.md §7), in this order:

1. `/health`, `/metrics`, `/metrics/prometheus`, `/flags`, `/version`: answered here (each
   process reports its own health, metrics and configuration; Marathon 1.10 proxies them too).
2. This instance leads: serve the request.
3. No leader known (or the service names this very instance without leading): asked again
   every 250 ms for up to 10 tries, as Marathon does (an election may be under way, or this
   process has just started and not yet read the election), then 503
   `{"message": "Could not determine the current leader"}`.
4. The request already passed through this instance (our `host:port` in `X-Marathon-Via`):
   502, a proxy loop.
5. `/v2/events`: 307 to the leader, so the event stream is not buffered through a proxy.
6. Anything else: forwarded with http.client (connect 5 s, read 10 s) with its method,
   path and query, headers and body, plus `X-Marathon-Via` and `X-Forwarded-For`; the
   leader's answer goes back as it is, with `X-Marathon-Via`. 502 when the leader cannot be
   reached.

    install(app, service, address="10.0.0.2:8080")
"""

from __future__ import annotations

import http.client
import time
from typing import Any
from urllib.parse import quote

from flask import Flask, Response, request

from meseta.frameworks.marathon.errors import ApiError, no_leader
from meseta.http import json_response

__all__ = ["install", "forward", "VIA", "LOCAL_PATHS", "CONNECT_TIMEOUT", "READ_TIMEOUT"]

VIA = "X-Marathon-Via"
FORWARDED_FOR = "X-Forwarded-For"
LOCAL_PATHS = frozenset({"/health", "/metrics", "/metrics/prometheus", "/flags", "/version"})
EVENTS_PATH = "/v2/events"
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0
LEADER_TRIES = 10
LEADER_RETRY_SECONDS = 0.25
# Hop-by-hop headers (RFC 7230 §6.1) and those http.client and the server set themselves.
_NOT_FORWARDED = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                            "te", "trailer", "transfer-encoding", "upgrade", "host",
                            "content-length"})


def _own_address(address: str | None) -> str:
    return address or request.host


def _vias(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def install(app: Flask, service: Any, address: str | None = None) -> None:
    """Put the proxy in front of every route of `app`. `address` is this instance's
    `host:port` as the others know it (default: the Host the request was sent to)."""

    @app.before_request
    def to_leader() -> Response | None:
        if request.path in LOCAL_PATHS or service.is_leader():
            return None
        own = _own_address(address)
        leader = _current_leader(service, own)
        if leader is None:
            return None                          # elected while we waited: serve it here
        if own in _vias(request.headers.get(VIA, "")):
            raise ApiError(502, "Detected proxying loop.")
        if request.path == EVENTS_PATH:
            return Response("", 307, {"Location": f"http://{leader}{_target()}"})
        return forward(leader, own)


def _current_leader(service: Any, own: str) -> str | None:
    """The leader's address; None when this instance became the leader meanwhile."""
    for attempt in range(LEADER_TRIES):
        if service.is_leader():
            return None
        leader = service.leader()
        if leader is not None and leader != own:
            return leader
        if attempt + 1 < LEADER_TRIES:
            time.sleep(LEADER_RETRY_SECONDS)
    raise no_leader()


def _target() -> str:
    """Path (re-quoted: werkzeug decoded it) and raw query of the request."""
    path = quote(request.path, safe="/:@!$&'()*+,;=-._~")
    query = request.query_string.decode("latin-1")
    return f"{path}?{query}" if query else path


def forward(leader: str, own: str) -> Response:
    """The leader's answer to the current request."""
    host, _, port = leader.rpartition(":") if ":" in leader else (leader, "", "80")
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED}
    headers["Host"] = leader
    headers[VIA] = ", ".join([*_vias(request.headers.get(VIA, "")), own])
    forwarded = [request.headers.get(FORWARDED_FOR), request.remote_addr]
    headers[FORWARDED_FOR] = ", ".join(f for f in forwarded if f)
    body = request.get_data()
    connection = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=CONNECT_TIMEOUT)
    try:
        connection.connect()
        assert connection.sock is not None
        connection.sock.settimeout(READ_TIMEOUT)
        connection.request(request.method, _target(), body=body or None, headers=headers)
        answer = connection.getresponse()
        data = answer.read()
    except (OSError, http.client.HTTPException) as exc:
        return json_response({"message": f"Could not reach the leader at {leader}: {exc}"}, 502)
    finally:
        connection.close()
    response = Response(data, answer.status)
    response.headers.clear()
    for name, value in answer.getheaders():
        if name.lower() not in _NOT_FORWARDED:
            response.headers.add(name, value)
    response.headers[VIA] = own
    return response
