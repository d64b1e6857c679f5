"""Test helper: `meseta lb` as a child process on free loopback ports.

    lb = start_lb(marathon.url, str(tmp_path / "lb"), str(tmp_path / "lb.log"))
    lb.url, lb.stats_port
"""
from __future__ import annotations

from meseta.testing.processes import Daemon, free_port

__all__ = ["start_lb"]


def start_lb(marathon_url: str, work_dir: str, log_path: str, timeout: float = 30.0) -> Daemon:
    """Ready (its /health says 200) when it returns; `.stats_port` is HAProxy's stats port."""
    http_port, stats_port = free_port(), free_port()
    daemon = Daemon("lb", [f"--marathon={marathon_url}", "--group=external",
                           f"--work_dir={work_dir}", f"--http_port={http_port}",
                           f"--stats_port={stats_port}", f"--appid_port={free_port()}",
                           "--bind_addr=127.0.0.1", "--dont_bind_http_https"],
                    log_path, http_port)
    daemon.stats_port = stats_port      # type: ignore[attr-defined]
    try:
        daemon.wait_ready(timeout)
    except BaseException:
        daemon.stop()
        raise
    return daemon
