"""The pure parts of meseta.lb.haproxy: `show proc`, HAProxy's output lines, the server state
path, the config archive and finding the binary."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from meseta.lb.haproxy import (Haproxy, HaproxyError, ProcTable, alerts, archive,
                               parse_show_proc, relevel, server_state_path)

HEADER = "#<PID>          <type>          <reloads>       <uptime>        <version>      \n"


def test_show_proc_after_a_reload_with_an_old_worker_left():
    text = (HEADER +
            "12401           master          4 [failed: 1]   0d00h00m09s     2.6.12-1+deb12u4\n"
            "# workers\n"
            "14368           worker          0               0d00h00m01s     2.6.12-1+deb12u4\n"
            "# old workers\n"
            "14243           worker          1               0d00h00m01s     2.6.12-1+deb12u4\n"
            "14100           worker          2               0d00h00m03s     2.6.12-1+deb12u4\n"
            "# programs\n"
            "14400           dataplane       0               0d00h00m09s     -\n\n")
    assert parse_show_proc(text) == ProcTable(master=12401, reloads=4, failed=1, workers=(14368,),
                                              old_workers=(14243, 14100))


def test_show_proc_right_after_start():
    text = (HEADER +
            "23497           master          0 [failed: 0]   0d00h10m11s     2.6.12-1+deb12u4\n"
            "# workers\n"
            "23500           worker          0               0d00h10m11s     2.6.12-1+deb12u4\n"
            "# programs\n\n")
    assert parse_show_proc(text) == ProcTable(23497, 0, 0, (23500,), ())


@pytest.mark.parametrize("text", ["", "Unknown command.\n", HEADER + "# workers\n"])
def test_show_proc_without_a_master_is_an_error(text):
    with pytest.raises(ValueError):
        parse_show_proc(text)


def test_alerts_keep_only_the_alert_lines():
    output = ("[NOTICE]   (1) : haproxy version is 2.6.12\n"
              "[ALERT]    (1) : config : parsing [x.cfg:2] : unknown keyword 'bogus'\n"
              "[WARNING]  (1) : something else\n"
              "[ALERT]    (1) : config : Fatal errors found in configuration.\n")
    assert alerts(output) == ("[ALERT]    (1) : config : parsing [x.cfg:2] : unknown keyword 'bogus'\n"
                              "[ALERT]    (1) : config : Fatal errors found in configuration.")
    assert alerts("  no alert here \n\n") == "no alert here"


@pytest.mark.parametrize("line, expected", [
    ("[ALERT]    (7) : Binding [h.cfg:10] for frontend f: cannot bind socket",
     ("error", "Binding [h.cfg:10] for frontend f: cannot bind socket", 7)),
    ("[NOTICE]   (7) : New worker (9) forked", ("info", "New worker (9) forked", 7)),
    ("[WARNING]  (9) : Proxy web_10000 stopped (cumulated conns: FE: 3, BE: 0).",
     ("debug", "Proxy web_10000 stopped (cumulated conns: FE: 3, BE: 0).", 9)),
    ("[WARNING]  (7) : Former worker (9) exited with code 0 (Exit)",
     ("info", "Former worker (9) exited with code 0 (Exit)", 7)),
    ("[WARNING]  (7) : Former worker (9) exited with code 139 (Segmentation fault)",
     ("warning", "Former worker (9) exited with code 139 (Segmentation fault)", 7)),
    ("127.0.0.1:1234 [01/Jan] web web/alpha 0/0/0/1/1 200", ("info",
     "127.0.0.1:1234 [01/Jan] web web/alpha 0/0/0/1/1 200", None)),
])
def test_output_lines_are_relogged_at_a_fitting_level(line, expected):
    assert relevel(line) == expected


def test_server_state_path(tmp_path):
    head = "global\n  maxconn 100\n  server-state-file {}\n{}defaults\n  mode http\n"
    assert server_state_path(head.format("/var/state/global", ""), tmp_path) == \
        Path("/var/state/global")
    assert server_state_path(head.format("global", ""), tmp_path) == tmp_path / "global"
    assert server_state_path(head.format("global", "  server-state-base /var/state\n"),
                             tmp_path) == Path("/var/state/global")
    assert server_state_path("global\n  maxconn 100\n# server-state-file x\n", tmp_path) is None
    # only the global section counts
    assert server_state_path("defaults\n  server-state-file x\n", tmp_path) is None


def test_archive_rotates_and_keeps_at_most_versions(tmp_path):
    config = tmp_path / "haproxy.cfg"
    for text in ("one", "two", "three", "four"):
        archive(config, text, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["haproxy.cfg.1", "haproxy.cfg.2",
                                                          "haproxy.cfg.3"]
    assert [(tmp_path / f"haproxy.cfg.{i}").read_text() for i in (1, 2, 3)] == \
        ["four", "three", "two"]
    archive(tmp_path / "other.cfg", "x", 0)
    assert not (tmp_path / "other.cfg.1").exists()


def _executable(path):
    path.write_text("#!/bin/sh\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_find_binary_on_path_or_by_path(tmp_path, monkeypatch):
    binary = _executable(tmp_path / "haproxy-test")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert Haproxy.find_binary("haproxy-test") == binary
    assert Haproxy.find_binary(binary) == binary
    assert Haproxy.find_binary(str(tmp_path / "missing")) is None
    assert Haproxy.find_binary("no-such-haproxy") is None


def test_find_binary_looks_in_sbin_off_path(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    found = Haproxy.find_binary("haproxy")
    assert found is None or os.path.dirname(found) in ("/usr/sbin", "/usr/local/sbin")


def test_a_work_dir_too_deep_for_a_unix_socket_is_refused(tmp_path):
    with pytest.raises(HaproxyError, match="unix socket"):
        Haproxy(tmp_path / ("d" * 120))
    assert not (tmp_path / ("d" * 120)).exists()


def test_nothing_runs_before_apply(tmp_path):
    haproxy = Haproxy(tmp_path, "haproxy")
    assert not haproxy.running() and haproxy.pids() == [] and haproxy.worker_pids() == []
    assert haproxy.last_config == "" and haproxy.reloads == 0
    assert haproxy.config_path == tmp_path / "haproxy.cfg"
    assert haproxy.master_socket == tmp_path / "master.sock"
    haproxy.stop()
    with pytest.raises(HaproxyError, match="apply"):
        haproxy.start()
