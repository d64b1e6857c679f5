"""meseta.agent.health: the policy (grace, threshold, what to report), the probes, and the
checker's schedule on a fake loop."""
from __future__ import annotations

import http.server
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from concurrent.futures import Executor, Future

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from meseta import proto
from meseta.agent.health import (HealthChecks, HealthState, Target, Verdict, check_problem,
                                 judge, probe)
from meseta.clock import FakeClock
from meseta.loop import Timer
from meseta.metrics import Registry

# --------------------------------------------------------------------------- builders


def make_check(type_="COMMAND", value="test -f ok", port=31000, **fields):
    kwargs = {"COMMAND": {"command": proto.CommandInfo(value)},
              "HTTP": {"http": proto.HTTPCheckInfo(port=port)},
              "TCP": {"tcp": proto.TCPCheckInfo(port=port)}}[type_]
    base = dict(delay_seconds=0.0, interval_seconds=1.0, timeout_seconds=2.0,
                consecutive_failures=3, grace_period_seconds=10.0)
    return proto.HealthCheck(type=type_, **{**base, **kwargs, **fields})


def run(check, results, start=0.0, step=1.0):
    """Feed results (True = passed) one per `step` seconds; returns the verdicts."""
    state, verdicts = HealthState(since=start), []
    for i, ok in enumerate(results):
        state, verdict = judge(state, check, ok, start + (i + 1) * step)
        verdicts.append(verdict)
    return verdicts


# --------------------------------------------------------------------------- the policy


def test_the_first_result_is_reported_then_only_changes():
    verdicts = run(make_check(grace_period_seconds=0), [True, True, False, False, True, True])
    assert [v.healthy for v in verdicts] == [True, None, False, None, True, None]
    assert not any(v.kill for v in verdicts)


def test_failures_in_the_grace_period_before_a_success_are_not_counted():
    check = make_check(grace_period_seconds=3, consecutive_failures=1)
    verdicts = run(check, [False, False, False, False])      # at t=1, 2, 3 (<= grace), 4
    assert verdicts[:3] == [Verdict()] * 3
    assert verdicts[3] == Verdict(healthy=False, kill=True, failures=1)


def test_a_success_ends_the_grace_period():
    check = make_check(grace_period_seconds=100, consecutive_failures=2)
    verdicts = run(check, [True, False, False])
    assert [(v.healthy, v.kill, v.failures) for v in verdicts] == [
        (True, False, 0), (False, False, 1), (None, True, 2)]


def test_a_success_resets_the_count():
    check = make_check(grace_period_seconds=0, consecutive_failures=3)
    verdicts = run(check, [False, False, True, False, False, True])
    assert not any(v.kill for v in verdicts)
    assert [v.failures for v in verdicts] == [1, 2, 0, 1, 2, 0]


def test_zero_consecutive_failures_kills_at_the_first_counted_failure_as_mesos():
    verdicts = run(make_check(grace_period_seconds=0, consecutive_failures=0), [False])
    assert verdicts == [Verdict(healthy=False, kill=True, failures=1)]


def test_an_adopted_task_keeps_its_grace_from_its_start():
    # Started 9 s before the agent came back, grace 10 s: one more second of grace.
    check = make_check(grace_period_seconds=10, consecutive_failures=1)
    state = HealthState(since=100.0 - 9)
    assert judge(state, check, False, 100.5)[1] == Verdict()
    assert judge(state, check, False, 101.5)[1].kill


@given(st.lists(st.booleans(), max_size=30), st.integers(0, 4), st.integers(0, 5))
def test_reports_alternate_and_kills_follow_enough_counted_failures(results, threshold, grace):
    check = make_check(grace_period_seconds=grace, consecutive_failures=threshold)
    reported, run_of_failures = [], 0
    for ok, verdict in zip(results, run(check, results)):
        if verdict.healthy is not None:
            assert not reported or reported[-1] != verdict.healthy   # only changes
            reported.append(verdict.healthy)
        run_of_failures = 0 if ok else run_of_failures + (verdict != Verdict())
        assert verdict.failures == (0 if ok else run_of_failures)
        assert verdict.kill == (not ok and run_of_failures >= threshold and run_of_failures > 0)


@pytest.mark.parametrize("check, problem", [
    (make_check(), None),
    (make_check("HTTP"), None),
    (make_check("TCP"), None),
    (make_check(value=""), "command health check without a command value"),
    (proto.HealthCheck("HTTP"), "HTTP health check without 'http'"),
    (proto.HealthCheck("TCP"), "TCP health check without 'tcp'"),
    (proto.HealthCheck("GRPC"), "unknown health check type 'GRPC'"),
    (make_check("TCP", port=0), "port 0 is not in 1-65535"),
    (make_check("HTTP", port=70000), "port 70000 is not in 1-65535"),
    (proto.HealthCheck("HTTP", http=proto.HTTPCheckInfo(80, scheme="ftp")),
     "unsupported HTTP scheme 'ftp'"),
    (proto.HealthCheck("HTTP", http=proto.HTTPCheckInfo(80, path="health")),
     "HTTP path 'health' must start with '/'"),
    (proto.HealthCheck("HTTP", http=proto.HTTPCheckInfo(80, statuses=[200, 42])),
     "HTTP statuses must lie in 100-599"),
    (make_check(interval_seconds=0), "interval and timeout must be positive"),
    (make_check(consecutive_failures=-1),
     "delay, grace period and consecutive failures must not be negative"),
])
def test_check_problems(check, problem):
    assert check_problem(check) == problem


def test_a_health_check_survives_the_wire_and_old_task_infos_still_decode():
    task = proto.TaskInfo("t", "t", "S0", proto.Resources.parse("cpus:1"),
                          health_check=proto.HealthCheck(
                              "HTTP", http=proto.HTTPCheckInfo(31000, "/ok", "https", [200, 204]),
                              delay_seconds=1.5, consecutive_failures=0))
    assert proto.unpack(proto.TaskInfo, proto.pack(task)) == task
    old = msgpack.unpackb(proto.pack(task))
    del old["health_check"]                      # as a peer from before the field sends it
    assert proto.unpack(proto.TaskInfo, msgpack.packb(old)).health_check is None


# --------------------------------------------------------------------------- probes


def test_command_probe_runs_in_the_sandbox_with_the_task_environment(tmp_path):
    check = make_check(value='test -f ok && test "$WHO" = task && test "$EXTRA" = check')
    check.command.environment = {"EXTRA": "check"}
    target = Target(str(tmp_path), {"PATH": os.environ["PATH"], "WHO": "task"})
    assert probe(check, target).ok is False
    (tmp_path / "ok").touch()
    result = probe(check, target)
    assert result.ok and result.detail == "command exited with status 0"


def test_command_probe_timeout_kills_its_process_group(tmp_path):
    pidfile = tmp_path / "pid"
    check = make_check(value=f"sleep 30 & echo $! > {pidfile}; wait", timeout_seconds=0.3)
    started = time.monotonic()
    result = probe(check, Target(str(tmp_path), {"PATH": os.environ["PATH"]}))
    assert not result.ok and "timed out after 0.3s" in result.detail
    assert time.monotonic() - started < 5
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(child)


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = int(self.path.strip("/") or 200)
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def web():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("path, statuses, ok", [
    ("/200", [], True), ("/302", [], True), ("/404", [], False), ("/500", [], False),
    ("/204", [200], False), ("/503", [503], True)])
def test_http_probe_reads_the_status(web, path, statuses, ok):
    check = proto.HealthCheck("HTTP", http=proto.HTTPCheckInfo(web.server_port, path,
                                                               statuses=statuses))
    result = probe(check, Target("/"))
    assert result.ok is ok
    assert result.detail == f"HTTP GET http://127.0.0.1:{web.server_port}{path} returned {path[1:]}"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl for a certificate")
def test_https_probe_does_not_verify_the_certificate(web, tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=elsewhere", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    web.socket = context.wrap_socket(web.socket, server_side=True)
    check = proto.HealthCheck("HTTP", http=proto.HTTPCheckInfo(web.server_port, "/200", "https"))
    assert probe(check, Target("/")).ok


def test_http_and_tcp_probes_fail_on_a_closed_port():
    with socket.socket() as sock:       # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for check in (make_check("HTTP", port=port), make_check("TCP", port=port)):
        result = probe(check, Target("/"))
        assert not result.ok and "failed" in result.detail


def test_tcp_probe_connects(web):
    assert probe(make_check("TCP", port=web.server_port), Target("/")).ok


# --------------------------------------------------------------------------- the schedule


class FakeLoop:
    """The two loop calls HealthChecks makes, timers run when the test advances the clock."""

    def __init__(self):
        self.clock = FakeClock()
        self.timers: list[Timer] = []
        self.inbox = []

    def call_later(self, delay, fn):
        timer = Timer(self.clock.monotonic() + delay, fn, None)
        self.timers.append(timer)
        return timer

    def call_soon_threadsafe(self, fn):
        self.inbox.append(fn)

    def advance(self, seconds):
        self.clock.advance(seconds)
        while True:
            now = self.clock.monotonic()
            due = [t for t in self.timers if not t.cancelled and t.deadline <= now]
            if not due and not self.inbox:
                return
            for timer in due:
                self.timers.remove(timer)
                timer.fn()
            while self.inbox:
                self.inbox.pop(0)()


class InlineExecutor(Executor):
    """Runs each probe as it is submitted, so results arrive in the loop's inbox at once."""

    def __init__(self):
        self.submitted = 0

    def submit(self, fn, *args, **kwargs):
        self.submitted += 1
        future = Future()
        future.set_result(fn(*args, **kwargs))
        return future


@pytest.fixture
def checks(tmp_path):
    loop, pool = FakeLoop(), InlineExecutor()
    registry = Registry("t")
    checks = HealthChecks(loop, registry, pool=pool)
    verdicts = []
    target = Target(str(tmp_path), {"PATH": os.environ["PATH"]})

    def start(check, running_for=0.0, key="c1"):
        checks.start(key, check, target, verdicts.append, running_for)

    yield loop, pool, checks, verdicts, start, registry
    checks.close()


def metric(registry, name):
    return registry.registry.get_sample_value(name) or 0.0


def test_first_check_after_the_delay_then_every_interval(checks, tmp_path):
    loop, pool, _, verdicts, start, registry = checks
    (tmp_path / "ok").touch()
    start(make_check(delay_seconds=5, interval_seconds=2))
    loop.advance(4.9)
    assert pool.submitted == 0
    loop.advance(0.1)
    assert pool.submitted == 1 and verdicts == [Verdict(healthy=True)]
    loop.advance(2)
    loop.advance(2)
    assert pool.submitted == 3 and verdicts == [Verdict(healthy=True)]   # no change, no report
    assert metric(registry, "t_health_checks_total") == 3
    assert metric(registry, "t_health_checks_failed_total") == 0


def test_unhealthy_then_killed_and_no_more_checks(checks, tmp_path):
    loop, pool, checks_, verdicts, start, registry = checks
    (tmp_path / "ok").touch()
    start(make_check(interval_seconds=1, grace_period_seconds=0, consecutive_failures=2))
    loop.advance(0)
    (tmp_path / "ok").unlink()
    loop.advance(1)
    loop.advance(1)
    assert verdicts == [Verdict(healthy=True), Verdict(healthy=False, failures=1),
                        Verdict(kill=True, failures=2)]
    assert len(checks_) == 0
    loop.advance(10)
    assert pool.submitted == 3
    assert metric(registry, "t_health_checks_failed_total") == 2


def test_an_adopted_task_is_checked_at_once_when_its_delay_has_passed(checks):
    loop, pool, _, verdicts, start, _ = checks
    start(make_check(delay_seconds=15, grace_period_seconds=10, consecutive_failures=1),
          running_for=60)
    loop.advance(0)
    assert pool.submitted == 1 and verdicts == [Verdict(healthy=False, kill=True, failures=1)]


class ParkedExecutor(InlineExecutor):
    """Keeps the probe in flight until the test answers it."""

    def submit(self, fn, *args, **kwargs):
        self.submitted += 1
        self.future = Future()
        return self.future


def test_stop_drops_a_probe_in_flight_and_the_timer():
    loop, pool, verdicts = FakeLoop(), ParkedExecutor(), []
    checks = HealthChecks(loop, Registry("t"), pool=pool)
    check = make_check(grace_period_seconds=0)
    checks.start("c1", check, Target("/"), verdicts.append)
    loop.advance(0)
    checks.stop("c1")
    pool.future.set_result(probe(check, Target("/")))     # a failure, answered too late
    loop.advance(5)
    assert verdicts == [] and pool.submitted == 1 and len(checks) == 0
