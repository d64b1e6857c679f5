"""How many cluster-name queries per second does meseta.dns answer, next to dnsmasq?

A synthetic cluster of `--tasks` tasks (one A name per task, an app name with all of their
addresses spread over apps of 4, and an SRV name per app). meseta.dns.server serves it from this
process; dnsmasq serves the same A records from a hosts file (--no-resolv --no-hosts
--addn-hosts), both on 127.0.0.1 high ports. dnsperf (Debian package `dnsperf`) sends the same
query file to each, one after the other. dnsmasq has no SRV from hosts files, so the side by side
uses A queries; meseta's A+SRV mix is reported on its own, as is its first pass over the names
(cold reply cache: every query is answered through dnslib).

Usage: bench/dns.py [--quick] [--seconds N] [--tasks N] [--clients N]
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from meseta.dns.answer import AnswerOptions
from meseta.dns.records import RecordSet
from meseta.dns.server import DnsServer


def make_records(tasks: int) -> RecordSet:
    a: dict[str, tuple[str, ...]] = {}
    srv: dict[str, tuple[tuple[str, int], ...]] = {}
    for app in range(tasks // 4):
        members = [f"app{app}-{i}.marathon.mesos." for i in range(4)]
        ips = [f"10.{app // 250}.{app % 250}.{i + 1}" for i in range(4)]
        a.update((name, (ip,)) for name, ip in zip(members, ips))
        a[f"app{app}.marathon.mesos."] = tuple(ips)
        srv[f"_app{app}._tcp.marathon.mesos."] = tuple((member, 31000 + i)
                                                       for i, member in enumerate(members))
    return RecordSet(domain="mesos", a=a, aaaa={}, srv=srv)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dnsperf(port: int, queries: Path, seconds: float | None, clients: int) -> dict:
    """dnsperf for `seconds`, or (None) one pass through the query file."""
    limit = ["-n", "1"] if seconds is None else ["-l", str(seconds)]
    out = subprocess.run(["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(queries),
                          *limit, "-c", str(clients), "-q", "200", "-t", "2"],
                         capture_output=True, text=True, check=True).stdout

    def number(label: str) -> float:
        return float(re.search(label + r":\s+([\d.]+)", out).group(1))

    return {"qps": round(number("Queries per second")),
            "lost_pct": round(100 * number("Queries lost") / max(number("Queries sent"), 1), 2),
            "avg_latency_ms": round(1000 * number("Average Latency \\(s\\)"), 3)}


def run_dnsmasq(records: RecordSet, work: Path, port: int) -> subprocess.Popen:
    hosts = work / "hosts"
    hosts.write_text("".join(f"{ip} {name.rstrip('.')}\n"
                             for name, ips in records.a.items() for ip in ips))
    hosts.chmod(0o644)
    work.chmod(0o755)
    process = subprocess.Popen(
        ["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", f"--addn-hosts={hosts}",
         "--listen-address=127.0.0.1", "--bind-interfaces", f"--port={port}",
         "--cache-size=10000", "--pid-file=", "--user=nobody", "--log-facility=-"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    if process.poll() is not None:
        raise RuntimeError(f"dnsmasq exited with {process.returncode}")
    return process


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--tasks", type=int, default=4000)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args(argv)
    seconds = 3 if args.quick else args.seconds
    for tool in ("dnsperf", "dnsmasq"):
        if shutil.which(tool) is None:
            print(f"{tool} missing: apt-get install -y dnsperf dnsmasq", file=sys.stderr)
            return 1
    records = make_records(args.tasks)
    result: dict = {"name": "dns", "tasks": args.tasks, "seconds": seconds,
                    "clients": args.clients}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        a_queries, mixed_queries = work / "a.txt", work / "mixed.txt"
        a_queries.write_text("".join(f"{name.rstrip('.')} A\n" for name in records.a))
        mixed_queries.write_text(a_queries.read_text() + "".join(
            f"{name.rstrip('.')} SRV\n" for name in records.srv))
        with DnsServer("127.0.0.1", 0, lambda: records, AnswerOptions(), forward=False) as server:
            # The first pass fills the reply cache of this record set; the timed runs after it
            # are the steady state of a record set that lives for a refresh period or longer.
            result["meseta_first_pass"] = dnsperf(server.port, mixed_queries, None, args.clients)
            result["meseta_a"] = dnsperf(server.port, a_queries, seconds, args.clients)
            result["meseta_a_srv"] = dnsperf(server.port, mixed_queries, seconds, args.clients)
        port = free_port()
        dnsmasq = run_dnsmasq(records, work, port)
        try:
            result["dnsmasq_a"] = dnsperf(port, a_queries, seconds, args.clients)
        finally:
            dnsmasq.terminate()
            dnsmasq.wait(timeout=10)
    result["ratio_meseta_to_dnsmasq"] = round(
        result["meseta_a"]["qps"] / max(result["dnsmasq_a"]["qps"], 1), 3)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
