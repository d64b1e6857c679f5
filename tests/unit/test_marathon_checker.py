"""meseta.frameworks.marathon.checker against real little servers on 127.0.0.1: HTTP answers
of every kind, a slow one, HTTPS with a self-signed certificate, a TCP listener, a closed port.
Intervals are fractions of a second; the tests poll with deadlines."""
from __future__ import annotations

import dataclasses
import queue
import shutil
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from meseta import proto
from meseta.frameworks.marathon.app import AppDefinition
from meseta.frameworks.marathon.checker import HealthChecker, check_address, probe_health
from meseta.frameworks.marathon.instances import Instance

ANSWERS = {"/ok": 200, "/moved": 302, "/fail": 503, "/info": 102, "/ready": 200,
           "/warming": 503, "/empty": 204}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.hits[self.path] = self.server.hits.get(self.path, 0) + 1
        if self.path == "/slow":
            time.sleep(0.6)
        status = ANSWERS.get(self.path, 200)
        body = f"answer to {self.path}".encode()
        self.send_response(status)
        if status >= 200 and status not in (204, 304):
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if status >= 200 and status not in (204, 304):
            self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def _serve(server):
    server.hits = {}
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    return server


@pytest.fixture
def http_server():
    server = _serve(ThreadingHTTPServer(("127.0.0.1", 0), _Handler))
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def https_server(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=not-this-host", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    _serve(server)
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def tcp_listener():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def closed_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def make_app(checks=(), readiness=(), ports=("http",), **extra) -> AppDefinition:
    app = AppDefinition.from_json({"id": "/web", "cmd": "serve",
                                   "portDefinitions": [{"port": 0, "name": n} for n in ports],
                                   **extra})
    return dataclasses.replace(app, health_checks=[dict(c) for c in checks],
                               readiness_checks=[dict(r) for r in readiness])


def make_instance(app, port, n=1, host="127.0.0.1", ip=None) -> Instance:
    ports = port if isinstance(port, tuple) else (port,)
    inst = Instance.launched(app, instance_id=f"web.instance-{n}", agent_id="S1", host=host,
                             host_ports=ports, now=0.0, ip_address=ip)
    return inst.updated(state=proto.TASK_RUNNING, now=1.0)


def http_check(path, **extra):
    return {"protocol": "HTTP", "path": path, "portIndex": 0, "intervalSeconds": 0.1,
            "timeoutSeconds": 0.5, "maxConsecutiveFailures": 3, "gracePeriodSeconds": 0, **extra}


class Recorder:
    def __init__(self):
        self.health: queue.Queue = queue.Queue()
        self.ready: queue.Queue = queue.Queue()

    def on_health(self, instance_id, index, ok, cause, checked_at):
        self.health.put((instance_id, index, ok, cause, checked_at))

    def on_ready(self, instance_id, response):
        self.ready.put((instance_id, response))


@pytest.fixture
def checker():
    recorder = Recorder()
    checker = HealthChecker(recorder.on_health, recorder.on_ready, first_check=0.05)
    checker.recorder = recorder
    yield checker
    checker.stop()


def wait_for(q: queue.Queue, count=1, timeout=5.0):
    out, deadline = [], time.monotonic() + timeout
    while len(out) < count:
        out.append(q.get(timeout=max(0.01, deadline - time.monotonic())))
    return out


# -- where a check goes: pure --------------------------------------------------------------------

@pytest.mark.parametrize("app_extra, check, host_ports, ip, expected", [
    ({}, {"portIndex": 0}, (31000, 31001), None, ("agent", 31000)),
    ({"portDefinitions": [{"port": 0}, {"port": 0}]}, {"portIndex": 1}, (31000, 31001), None,
     ("agent", 31001)),
    ({}, {"port": 8080}, (31000,), None, ("agent", 8080)),
    ({}, {"portIndex": 3}, (31000,), None, None),
    ({"portDefinitions": [{"port": 0, "name": "a"}, {"port": 0, "name": "http-api"}]},
     {"portName": "http-api"}, (31000, 31001), None, ("agent", 31001)),
    ({}, {"portName": "nope"}, (31000,), None, None),
    ({"networks": [{"mode": "container/bridge"}],
      "container": {"type": "DOCKER", "docker": {"image": "x"},
                    "portMappings": [{"containerPort": 80, "hostPort": 0},
                                     {"containerPort": 81, "hostPort": 0}]}},
     {"portIndex": 1}, (31000, 31001), None, ("agent", 31001)),
    ({"networks": [{"mode": "container", "name": "overlay"}],
      "container": {"type": "DOCKER", "docker": {"image": "x"},
                    "portMappings": [{"containerPort": 80, "hostPort": 0},
                                     {"containerPort": 8080}]}},
     {"portIndex": 1}, (31000,), "10.1.2.3", ("10.1.2.3", 8080)),
    ({"networks": [{"mode": "container", "name": "overlay"}],
      "container": {"type": "DOCKER", "docker": {"image": "x"},
                    "portMappings": [{"containerPort": 8080}]}},
     {"portIndex": 0}, (), None, None),                    # no task IP known yet
])
def test_check_address(app_extra, check, host_ports, ip, expected):
    app = AppDefinition.from_json({"id": "/web", "cmd": "x", **app_extra})
    inst = Instance.launched(app, instance_id="web.instance-1", agent_id="S1", host="agent",
                             host_ports=host_ports, now=0.0, ip_address=ip)
    assert check_address(inst, app, check) == expected


# -- one probe ------------------------------------------------------------------------------------

@pytest.mark.parametrize("path, extra, ok, cause", [
    ("/ok", {}, True, ""),
    ("/moved", {}, True, ""),                            # 3xx is healthy
    ("/fail", {}, False, "HTTP request returned status code: 503"),
    ("/info", {}, False, "HTTP request returned status code: 102"),
    ("/info", {"ignoreHttp1xx": True}, None, "HTTP request returned status code: 102"),
    ("/slow", {"timeoutSeconds": 0.3}, False, "timed out after 0.3s"),
])
def test_http_probe(http_server, path, extra, ok, cause):
    check = http_check(path, **extra)
    assert probe_health(check, ("127.0.0.1", http_server.server_address[1])) == (ok, cause)


def test_https_probe_does_not_verify_the_certificate(https_server):
    address = ("127.0.0.1", https_server.server_address[1])
    assert probe_health(http_check("/ok", protocol="HTTPS"), address) == (True, "")
    assert probe_health(http_check("/fail", protocol="HTTPS"), address)[0] is False


def test_tcp_probe(tcp_listener, closed_port):
    check = {"protocol": "TCP", "timeoutSeconds": 0.5}
    assert probe_health(check, ("127.0.0.1", tcp_listener)) == (True, "")
    ok, cause = probe_health(check, ("127.0.0.1", closed_port))
    assert ok is False and "refused" in cause.lower()


def test_http_probe_of_a_closed_port(closed_port):
    ok, cause = probe_health(http_check("/ok"), ("127.0.0.1", closed_port))
    assert ok is False and "refused" in cause.lower()


# -- the checker: timers, callbacks ----------------------------------------------------------------

def test_checks_every_interval_and_reports_each_check(checker, http_server, tcp_listener):
    app = make_app([http_check("/ok"), {"protocol": "COMMAND", "command": {"value": "true"}},
                    {"protocol": "TCP", "port": tcp_listener, "intervalSeconds": 0.1,
                     "timeoutSeconds": 0.5}, http_check("/fail")])
    inst = make_instance(app, http_server.server_address[1])
    started = time.time()
    checker.watch(inst, app)
    results = wait_for(checker.recorder.health, 12)
    by_index = {}
    for iid, index, ok, cause, checked_at in results:
        assert iid == inst.instance_id and checked_at >= started
        by_index.setdefault(index, set()).add(ok)
    assert by_index == {0: {True}, 2: {True}, 3: {False}}     # COMMAND is the agent's
    assert http_server.hits["/ok"] >= 2                         # again after the interval


def test_first_check_comes_soon_even_with_a_long_interval(http_server):
    recorder = Recorder()
    checker = HealthChecker(recorder.on_health, recorder.on_ready)   # the default 1 s
    try:
        app = make_app([http_check("/ok", intervalSeconds=60)])
        t = time.monotonic()
        checker.watch(make_instance(app, http_server.server_address[1]), app)
        wait_for(recorder.health, 1, timeout=4)
        assert time.monotonic() - t < 2.5
    finally:
        checker.stop()


def test_unwatch_stops_the_checks(checker, http_server):
    app = make_app([http_check("/ok")])
    inst = make_instance(app, http_server.server_address[1])
    checker.watch(inst, app)
    wait_for(checker.recorder.health, 2)
    checker.unwatch(inst.instance_id)
    assert checker.watched() == set()
    time.sleep(0.15)                  # a check under way when unwatched is not reported
    while not checker.recorder.health.empty():
        checker.recorder.health.get()
    hits = http_server.hits["/ok"]
    time.sleep(0.4)                   # four intervals
    assert checker.recorder.health.empty() and http_server.hits["/ok"] == hits


def test_a_slow_check_skips_ticks_instead_of_piling_up(checker, http_server):
    app = make_app([http_check("/slow", timeoutSeconds=2.0, intervalSeconds=0.1)])
    checker.watch(make_instance(app, http_server.server_address[1]), app)
    (result,) = wait_for(checker.recorder.health, 1)
    assert result[2] is True and http_server.hits["/slow"] == 1
    assert checker.stats()["marathon/checker/skipped"] >= 3


def test_an_instance_without_the_port_fails_its_check(checker):
    app = make_app([http_check("/ok", portIndex=2)])
    checker.watch(make_instance(app, 31000), app)
    ((_, _, ok, cause, _),) = wait_for(checker.recorder.health, 1)
    assert ok is False and "no address" in cause


def test_readiness_until_ready(checker, http_server):
    ready_check = {"name": "readinessCheck", "protocol": "HTTP", "path": "/warming",
                   "portName": "http", "intervalSeconds": 0.1, "timeoutSeconds": 0.5,
                   "httpStatusCodesForReady": [200], "preserveLastResponse": True}
    app = make_app(readiness=[ready_check])
    inst = make_instance(app, http_server.server_address[1])
    checker.watch(inst, app)
    (iid, response), _ = wait_for(checker.recorder.ready, 2)
    assert iid == inst.instance_id
    assert response == {"status": 503, "contentType": "text/plain; charset=utf-8",
                        "body": "answer to /warming"}
    app = make_app(readiness=[{**ready_check, "path": "/ready"}])
    checker.watch(inst, app)           # watched again: its checks start over
    ((_, response),) = wait_for(checker.recorder.ready, 1)
    while response["status"] != 200:
        ((_, response),) = wait_for(checker.recorder.ready, 1)
    hits = http_server.hits["/ready"]
    time.sleep(0.4)
    assert http_server.hits["/ready"] == hits                  # ready: no more checks
    assert checker.watched() == {inst.instance_id}


def test_readiness_without_an_answer(checker, closed_port):
    check = {"protocol": "HTTP", "path": "/", "portName": "http", "intervalSeconds": 0.1,
             "timeoutSeconds": 0.5, "httpStatusCodesForReady": [200]}
    app = make_app(readiness=[check])
    checker.watch(make_instance(app, closed_port), app)
    ((_, response),) = wait_for(checker.recorder.ready, 1)
    assert response == {"status": None, "contentType": None, "body": None}


def test_many_instances_share_the_pool(http_server):
    recorder = Recorder()
    checker = HealthChecker(recorder.on_health, recorder.on_ready, workers=4, first_check=0.05)
    try:
        app = make_app([http_check("/ok", intervalSeconds=0.2)])
        for n in range(40):
            checker.watch(make_instance(app, http_server.server_address[1], n=n), app)
        results = wait_for(recorder.health, 80)
        assert {r[0] for r in results} == {f"web.instance-{n}" for n in range(40)}
        assert all(r[2] is True for r in results)
    finally:
        checker.stop()


def test_stop_ends_the_threads(http_server):
    recorder = Recorder()
    checker = HealthChecker(recorder.on_health, recorder.on_ready, first_check=0.05)
    app = make_app([http_check("/ok")])
    checker.watch(make_instance(app, http_server.server_address[1]), app)
    wait_for(recorder.health, 1)
    checker.stop()
    assert not checker._thread.is_alive()
    checker.watch(make_instance(app, http_server.server_address[1], n=2), app)   # ignored
    assert checker.watched() == set()
