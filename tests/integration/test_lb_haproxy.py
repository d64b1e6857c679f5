"""meseta.lb.haproxy with the real haproxy binary on 127.0.0.1: a config goes live only after
`haproxy -c`; a reload that fails anyway keeps the old worker; 50 reloads under a second
process's request loop refuse no connection; stop ends every HAProxy process; a dead master is
started again."""
from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from itertools import combinations
from pathlib import Path

import psutil
import pytest

from meseta.lb.haproxy import Haproxy
from meseta.testing import wait_until
from meseta.testing.processes import child_env, free_port

BINARY = Haproxy.find_binary()
pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(BINARY is None, reason="haproxy is not installed "
                                 "(Debian's haproxy package; make test installs it)")]


# -- in-test backends and configs -----------------------------------------------------------------

class _Named(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = self.server.name.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def backends():
    """Three HTTP servers in threads, each answering its own name: {name: port}."""
    servers = {}
    for name in ("alpha", "beta", "gamma"):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Named)
        server.daemon_threads = True
        server.name = name
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers[name] = server
    yield {name: server.server_address[1] for name, server in servers.items()}
    for server in servers.values():
        server.shutdown()
        server.server_close()


@pytest.fixture
def haproxy(tmp_path):
    lb = Haproxy(tmp_path / "lb", BINARY)
    try:
        yield lb
    finally:
        pids = lb.pids()
        lb.stop()
        assert not lb.running() and lb.pids() == []
        for pid in pids:
            assert _gone(pid), f"haproxy process {pid} outlived stop()"


def make_config(port: int, servers: dict[str, int], *, balance: str = "roundrobin",
                global_lines: str = "", bind_extra: str = "") -> str:
    text = (f"global\n{global_lines}"
            "defaults\n  mode http\n  timeout connect 3s\n  timeout client 30s\n"
            "  timeout server 30s\n"
            f"frontend web\n  bind 127.0.0.1:{port}\n{bind_extra}  default_backend web\n"
            f"backend web\n  balance {balance}\n")
    return text + "".join(f"  server {name} 127.0.0.1:{p}\n" for name, p in servers.items())


def get(port: int, host: str = "127.0.0.1") -> str:
    with urllib.request.urlopen(f"http://{host}:{port}/", timeout=5) as response:
        return response.read().decode()


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# -- the tests ------------------------------------------------------------------------------------

def test_apply_starts_haproxy_and_requests_reach_every_backend(haproxy, backends):
    port = free_port()
    text = make_config(port, backends)
    result = haproxy.apply(text)
    assert result.ok, result.reason
    assert haproxy.running() and haproxy.last_config == text
    assert haproxy.config_path.read_text() == text

    assert {get(port) for _ in range(12)} == set(backends)
    master, *workers = haproxy.pids()
    assert workers == haproxy.worker_pids() == list(result.pids)
    assert [child.pid for child in psutil.Process(master).children()] == workers
    assert haproxy.apply(text).seconds == 0 and haproxy.reloads == 0     # unchanged: no reload


def test_invalid_config_changes_nothing(haproxy, backends):
    port = free_port()
    good = make_config(port, backends)
    assert haproxy.apply(good).ok
    workers = haproxy.worker_pids()

    bad = make_config(port, backends, global_lines="  no-such-keyword 1\n")
    result = haproxy.apply(bad)
    assert not result.ok
    assert (haproxy.work_dir / "haproxy.cfg.rejected").read_text() == bad
    assert "[ALERT]" in result.reason and "unknown keyword 'no-such-keyword'" in result.reason
    assert not haproxy.check("global\n  no-such-keyword 1\n").ok
    assert haproxy.last_config == good and haproxy.config_path.read_text() == good
    assert haproxy.worker_pids() == workers and haproxy.reloads == 0
    assert get(port) in backends


def test_reload_that_fails_after_the_check_keeps_the_old_worker(haproxy, backends):
    """`haproxy -c` binds nothing, so a port another process holds fails only at the reload."""
    port = free_port()
    good = make_config(port, backends)
    assert haproxy.apply(good).ok
    workers = haproxy.worker_pids()
    with socket.socket() as busy:                  # no SO_REUSEPORT, so HAProxy cannot share it
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        bad = make_config(port, backends, bind_extra=f"  bind 127.0.0.1:{busy.getsockname()[1]}\n")
        assert haproxy.check(bad).ok

        result = haproxy.apply(bad)
    assert not result.ok
    assert "cannot bind socket" in result.reason, result.reason
    assert haproxy.last_config == good and haproxy.config_path.read_text() == good
    assert haproxy.worker_pids() == workers and haproxy.running()
    assert get(port) in backends
    assert haproxy.apply(make_config(port, backends, balance="leastconn")).ok   # and on it goes


@pytest.mark.parametrize("stats_socket", [False, True], ids=["master-worker", "expose-fd"])
def test_fifty_reloads_under_load_refuse_no_connection(haproxy, backends, tmp_path, stats_socket):
    port = free_port()
    global_lines = (f"  stats socket {haproxy.work_dir}/stats.sock mode 600 level admin "
                    "expose-fd listeners\n" if stats_socket else "")
    server_sets = [dict(subset) for size in (1, 2, 3)
                   for subset in combinations(backends.items(), size)]
    assert haproxy.apply(make_config(port, backends, global_lines=global_lines)).ok

    stop_file, out = tmp_path / "stop", tmp_path / "load.json"
    load = subprocess.Popen(
        [sys.executable, "-m", "meseta.testing.http_load", f"http://127.0.0.1:{port}/",
         "--stop-file", str(stop_file), "--out", str(out), "--seconds", "60", "--concurrency", "4"],
        env=child_env())
    try:
        seconds = []
        for index in range(50):
            # every reload changes the server set (consecutive sets differ) and now and then
            # the balance algorithm; the frontend port stays
            text = make_config(port, server_sets[index % len(server_sets)],
                               balance=("roundrobin", "leastconn")[index // len(server_sets) % 2],
                               global_lines=global_lines)
            result = haproxy.apply(text)
            assert result.ok, result.reason
            seconds.append(result.seconds)
    finally:
        stop_file.touch()
        load.wait(30)
    counts = json.loads(out.read_text())
    print(f"\nrequests during 50 reloads: {counts}; reload seconds median "
          f"{sorted(seconds)[25]:.3f}, max {max(seconds):.3f}")
    assert haproxy.reloads == 50
    assert counts["failed"] == 0, counts["errors"]
    assert counts["ok"] > 50, counts
    # old workers finish their connections and go
    wait_until(lambda: len(haproxy.pids()) == 2, "old workers to exit", timeout=20)


def test_stop_ends_every_process_and_start_works_again(haproxy, backends):
    port = free_port()
    text = make_config(port, backends)
    assert haproxy.apply(text).ok
    pids = haproxy.pids()

    haproxy.stop()
    assert not haproxy.running() and haproxy.pids() == [] and haproxy.worker_pids() == []
    assert all(_gone(pid) for pid in pids)
    haproxy.stop()                                 # idempotent
    with pytest.raises(OSError):
        get(port)

    haproxy.start()
    assert haproxy.running() and haproxy.last_config == text
    assert get(port) in backends
    assert not set(haproxy.pids()) & set(pids)


def test_a_dead_master_is_started_again_by_apply(haproxy, backends):
    port = free_port()
    assert haproxy.apply(make_config(port, backends)).ok
    master, *workers = haproxy.pids()
    os.kill(master, signal.SIGKILL)
    wait_until(lambda: not haproxy.running(), "the master to die")
    wait_until(lambda: all(_gone(pid) for pid in workers), "its workers to exit with it")

    result = haproxy.apply(make_config(port, backends, balance="leastconn"))
    assert result.ok, result.reason
    assert haproxy.pids()[0] != master
    assert get(port) in backends


def test_archive_keeps_the_previous_configs(tmp_path, backends):
    haproxy = Haproxy(tmp_path / "lb", BINARY, archive_versions=2)
    port = free_port()
    texts = [make_config(port, backends, balance=b) for b in ("roundrobin", "leastconn", "first")]
    try:
        for text in texts:
            assert haproxy.apply(text).ok
    finally:
        haproxy.stop()
    cfg = haproxy.config_path
    assert [p.name for p in sorted(cfg.parent.glob("haproxy.cfg*"))] == \
        ["haproxy.cfg", "haproxy.cfg.1", "haproxy.cfg.2"]
    assert (cfg.read_text(), Path(f"{cfg}.1").read_text(), Path(f"{cfg}.2").read_text()) == \
        (texts[2], texts[1], texts[0])


def test_server_state_is_saved_for_the_next_worker(haproxy, backends):
    port = free_port()
    state = haproxy.work_dir / "server-state"
    text = make_config(port, backends, global_lines=f"  server-state-file {state}\n")
    assert haproxy.apply(text).ok
    assert not state.exists()                      # nothing to save before the first worker
    assert haproxy.apply(text.replace("roundrobin", "leastconn")).ok
    lines = state.read_text().splitlines()
    assert lines[0] == "1" and sum(" web " in line for line in lines) == len(backends)


def test_a_thousand_frontends(haproxy, backends):
    """1,000 frontend + backend pairs (1,000 TCP listeners handed over on reload), one port on
    1,000 loopback addresses. Prints the reload time; bench/ is where timing is judged."""
    port = free_port()
    server = next(iter(backends.values()))
    addresses = [f"127.1.{index // 250}.{index % 250 + 1}" for index in range(1000)]

    def config(balance: str) -> str:
        head = ("global\n  maxconn 2000\ndefaults\n  mode http\n  timeout connect 3s\n"
                "  timeout client 30s\n  timeout server 30s\n")
        return head + "".join(
            f"frontend app{i}\n  bind {address}:{port}\n  default_backend app{i}\n"
            f"backend app{i}\n  balance {balance}\n  server s{i} 127.0.0.1:{server}\n"
            for i, address in enumerate(addresses))

    started = time.monotonic()
    check = haproxy.check(config("roundrobin"))
    check_seconds = time.monotonic() - started
    assert check.ok, check.output
    start = haproxy.apply(config("roundrobin"))
    assert start.ok, start.reason
    reload = haproxy.apply(config("leastconn"))
    assert reload.ok, reload.reason
    print(f"\n1,000 frontends: check {check_seconds:.3f}s, start {start.seconds:.3f}s, "
          f"reload {reload.seconds:.3f}s")
    assert get(port, addresses[0]) and get(port, addresses[-1])
