"""`meseta up` as a user runs it: one command, URLs printed, a framework runs, Ctrl-C stops
everything (tasks included)."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys

import psutil

from meseta.testing.marathon import MarathonApi
from meseta.testing.processes import child_env, free_port, get_json, wait_http

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_meseta_up_runs_frameworks_and_marathon_and_stops_cleanly_on_ctrl_c(tmp_path):
    port = free_port()
    while any(c.laddr.port in (port + 1, port + 2, port + 48, port + 3030,
                                 port + 4039, port + 4040, port + 4041)
              for c in psutil.net_connections("tcp")):
        port = free_port()
    up = subprocess.Popen([sys.executable, "-m", "meseta.cli", "up", "--agents", "2",
                           "--port", str(port), "--work_dir", str(tmp_path)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=child_env({"MESETA_NATIVE_PORT": "0"}))
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc=up)
        banner = ""
        while "Ctrl-C" not in banner:
            banner += up.stdout.readline()
        assert f"http://127.0.0.1:{port}" in banner
        assert re.search(r"agent 1\s+http://127\.0\.0\.1:\d+", banner)
        marathon = MarathonApi(f"http://127.0.0.1:{port + 3030}")
        assert f"marathon {marathon.url}" in banner
        if shutil.which("haproxy") or os.path.exists("/usr/sbin/haproxy"):
            assert f"api http://127.0.0.1:{port + 4039}/health" in banner
            wait_http(f"http://127.0.0.1:{port + 4039}/health")    # 200 once Marathon's apps are in
            assert get_json(f"http://127.0.0.1:{port + 4039}/health")["haproxy"]["running"]
        else:
            assert "lb       not started: haproxy is not installed" in banner
        slaves = []
        while len(slaves) < 2:
            slaves = get_json(f"http://127.0.0.1:{port}/master/slaves")["slaves"]
        result = subprocess.run(
            [sys.executable, os.path.join(ROOT, "examples", "batch_framework.py"),
             "--master", f"127.0.0.1:{port}", "--tasks", "2", "--cmd", "echo up"],
            capture_output=True, text=True, timeout=60, env=child_env())
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.count("TASK_FINISHED") == 2
        long_running = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "examples", "batch_framework.py"),
             "--master", f"127.0.0.1:{port}", "--tasks", "1", "--cmd", "sleep 600"],
            stdout=subprocess.PIPE, text=True, env=child_env())
        assert "TASK_RUNNING" in "".join(iter_until(long_running.stdout, "TASK_RUNNING"))
        status, _, body = marathon.call("POST", "/v2/apps", {
            "id": "/sleeper", "cmd": "sleep 601", "cpus": 0.1, "mem": 16, "instances": 2})
        assert status == 201, body
        marathon.wait_deployed()
        assert len(marathon.tasks("/sleeper")) == 2
        sleepers = [p for p in psutil.process_iter(["cmdline", "cwd"])
                    if (p.info["cwd"] or "").startswith(str(tmp_path))
                    and (p.info["cmdline"] or [])[-1:] in (["600"], ["601"], ["sleep 600"],
                                                           ["sleep 601"])]
        assert len(sleepers) >= 3, "the tasks' processes were not found"
        up.send_signal(signal.SIGINT)
        assert up.wait(30) == 0
        assert "stopping" in up.stdout.read()
        gone, alive = psutil.wait_procs(sleepers, timeout=10)
        assert not alive, "tasks outlived meseta up"
        long_running.kill()
    finally:
        if up.poll() is None:
            up.kill()


def iter_until(stream, needle):
    for line in stream:
        yield line
        if needle in line:
            return
