"""meseta.dns.server on real sockets (127.0.0.1), queried with dig and with dnslib clients.

Out-of-domain queries go to an `Upstream` this test runs, never to the network.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import dnslib
import pytest
from dnslib import QTYPE, RCODE, RR, DNSRecord

from meseta.dns.answer import AnswerOptions
from meseta.dns.records import RecordSet
from meseta.dns.server import DnsServer, ServerLimits

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "mesos-dns-fixtures"
OPTS = AnswerOptions(recurse_on=False)


def make_records() -> RecordSet:
    data = json.loads((FIXTURES / "expected-records.json").read_text())
    tables: dict[str, dict] = {"A": {}, "AAAA": {}, "SRV": {}}
    for name, rtype, values in data["variants"]["resolver_fakeDNS"]["records"]:
        if rtype == "SRV":
            values = [(target, int(port)) for target, port in (v.rsplit(":", 1) for v in values)]
        tables[rtype][name] = tuple(values)
    return RecordSet("mesos", tables["A"], tables["AAAA"], tables["SRV"])


RECORDS = make_records()


class Upstream:
    """A tiny resolver on UDP and TCP: every A query gets 93.184.216.34; notes the transport."""

    ADDRESS = "93.184.216.34"

    def __init__(self, silent: bool = False):
        self.silent = silent            # receive, never answer (a dead resolver)
        self.seen: list[tuple[str, str]] = []
        while True:     # a free UDP port whose TCP twin is free too
            self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.udp.bind(("127.0.0.1", 0))
            self.port = self.udp.getsockname()[1]
            self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                self.tcp.bind(("127.0.0.1", self.port))
                break
            except OSError:
                self.udp.close()
                self.tcp.close()
        self.tcp.listen(16)
        for loop in (self._serve_udp, self._serve_tcp):
            threading.Thread(target=loop, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _reply(self, packet: bytes, transport: str) -> bytes:
        query = DNSRecord.parse(packet)
        self.seen.append((str(query.q.qname), transport))
        reply = query.reply()
        reply.add_answer(RR(query.q.qname, QTYPE.A, ttl=300, rdata=dnslib.A(self.ADDRESS)))
        return bytes(reply.pack())

    def _serve_udp(self) -> None:
        while True:
            try:
                packet, source = self.udp.recvfrom(65535)
            except OSError:
                return
            if not self.silent:
                self.udp.sendto(self._reply(packet, "udp"), source)

    def _serve_tcp(self) -> None:
        while True:
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                return
            with conn:
                length = struct.unpack("!H", conn.recv(2))[0]
                packet = conn.recv(length)
                if not self.silent:
                    reply = self._reply(packet, "tcp")
                    conn.sendall(struct.pack("!H", len(reply)) + reply)

    def close(self) -> None:
        self.udp.close()
        self.tcp.close()


@pytest.fixture
def upstream():
    server = Upstream()
    yield server
    server.close()


@pytest.fixture
def serve():
    """serve(**kwargs) -> a started DnsServer on 127.0.0.1:<free port>; stopped afterwards."""
    started = []

    def start(get_records=lambda: RECORDS, **kwargs) -> DnsServer:
        kwargs.setdefault("forward", False)
        server = DnsServer("127.0.0.1", 0, get_records, OPTS, **kwargs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def dig(server: DnsServer, *args: str) -> str:
    done = subprocess.run(["dig", "@127.0.0.1", "-p", str(server.port), "+time=2", "+tries=1",
                           *args], capture_output=True, text=True, timeout=20)
    return done.stdout


def ask_udp(server: DnsServer, name: str, qtype: str = "A", *, source: str = "127.0.0.1",
            timeout: float = 2.0) -> DNSRecord:
    query = DNSRecord.question(name, qtype)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(timeout)
        sock.sendto(query.pack(), ("127.0.0.1", server.port))
        reply = DNSRecord.parse(sock.recv(65535))
    assert reply.header.id == query.header.id
    return reply


def ask_tcp(server: DnsServer, name: str, qtype: str = "A") -> DNSRecord:
    query = DNSRecord.question(name, qtype)
    return DNSRecord.parse(query.send("127.0.0.1", server.port, tcp=True, timeout=5))


@pytest.mark.parametrize("transport", ["+notcp", "+tcp"])
def test_dig_srv_with_additional_addresses(serve, transport):
    server = serve()
    out = dig(server, transport, "_liquor-store._tcp.marathon.mesos", "SRV")
    assert "status: NOERROR" in out and "flags: qr aa rd;" in out
    srv = sorted(line.split()[-2:] for line in out.splitlines()
                 if line.split()[3:4] == ["SRV"] and not line.startswith(";"))
    assert srv == [["443", "liquor-store-4dfjd-0.marathon.mesos."],
                   ["443", "liquor-store-zasmd-1.marathon.mesos."],
                   ["80", "liquor-store-4dfjd-0.marathon.mesos."],
                   ["80", "liquor-store-zasmd-1.marathon.mesos."]]
    extra = out.split("ADDITIONAL SECTION:")[1]
    assert "10.3.0.1" in extra and "10.3.0.2" in extra


@pytest.mark.parametrize("transport", ["+notcp", "+tcp"])
def test_dig_a(serve, transport):
    server = serve()
    assert sorted(dig(server, transport, "+short", "slave.mesos", "A").split()) == \
        ["1.2.3.10", "1.2.3.11", "1.2.3.12"]
    out = dig(server, transport, "missing.mesos", "A")
    assert "status: NXDOMAIN" in out and "SOA\tns1.mesos. root.ns1.mesos. " in out


def test_a_large_udp_reply_is_truncated_and_dig_retries_over_tcp(serve):
    count = 200
    a = {f"t{i}.big.mesos.": (f"10.1.{i // 250}.{i % 250}",) for i in range(count)}
    srv = {"_big._tcp.mesos.": tuple((f"t{i}.big.mesos.", 31000 + i) for i in range(count))}
    server = serve(lambda: RecordSet("mesos", a, {}, srv))
    truncated = dig(server, "+ignore", "+noedns", "_big._tcp.mesos", "SRV")
    assert "flags: qr aa tc rd;" in truncated
    full = dig(server, "+noedns", "_big._tcp.mesos", "SRV")     # dig falls back to TCP
    assert f"ANSWER: {count}," in full


@pytest.mark.parametrize("ask, transport", [(ask_udp, "udp"), (ask_tcp, "tcp")])
def test_other_names_are_forwarded_over_the_clients_protocol(serve, upstream, ask, transport):
    server = serve(resolvers=[upstream.address], forward=True)
    reply = ask(server, "www.example.com.")
    assert [str(rr.rdata) for rr in reply.rr] == [Upstream.ADDRESS]
    assert upstream.seen == [("www.example.com.", transport)]
    assert server.counters["forwarded"] == 1


def test_forwarding_tries_the_resolvers_in_order(serve, upstream):
    dead = Upstream(silent=True)
    try:
        server = serve(resolvers=[dead.address, upstream.address], forward=True,
                       limits=ServerLimits(timeout=0.3))
        assert str(ask_udp(server, "example.org.").rr[0].rdata) == Upstream.ADDRESS
    finally:
        dead.close()


def test_servfail_when_no_resolver_answers(serve):
    dead = Upstream(silent=True)
    try:
        server = serve(resolvers=[dead.address], forward=True, limits=ServerLimits(timeout=0.3))
        assert ask_udp(server, "example.org.").header.rcode == RCODE.SERVFAIL
        assert ask_tcp(server, "example.org.").header.rcode == RCODE.SERVFAIL
    finally:
        dead.close()


@pytest.mark.parametrize("ask", [ask_udp, ask_tcp])
def test_refused_when_forwarding_is_off(serve, upstream, ask):
    server = serve(resolvers=[upstream.address], forward=False)
    reply = ask(server, "www.example.com.")
    assert reply.header.rcode == RCODE.REFUSED and (reply.header.aa, reply.header.ra) == (0, 0)
    assert upstream.seen == [] and server.counters["refused"] == 1
    assert "status: REFUSED" in dig(server, "example.com")


def test_a_new_record_set_is_served_at_once(serve):
    current = [RECORDS]
    server = serve(lambda: current[0])
    assert str(ask_udp(server, "leader.mesos.").rr[0].rdata) == "1.2.3.4"
    current[0] = RecordSet("mesos", {**RECORDS.a, "leader.mesos.": ("1.2.3.99",)},
                           RECORDS.aaaa, RECORDS.srv)
    assert str(ask_udp(server, "leader.mesos.").rr[0].rdata) == "1.2.3.99"


def test_servfail_until_the_first_record_set(serve):
    server = serve(lambda: None)
    assert ask_udp(server, "leader.mesos.").header.rcode == RCODE.SERVFAIL


@pytest.mark.parametrize("garbage", [
    b"\x01",                                            # shorter than a header
    b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example",   # question cut short
    b"\x12\x34\x81\x80" + b"\x00" * 8,                  # a reply, not a query
    bytes(range(256)) * 4,
])
def test_a_malformed_udp_packet_is_dropped_or_formerr_and_the_next_query_answered(serve,
                                                                                  garbage):
    server = serve()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        sock.sendto(garbage, ("127.0.0.1", server.port))
        try:
            reply = sock.recv(65535)
            assert reply[:2] == garbage[:2] and reply[3] & 0x0F == RCODE.FORMERR
        except TimeoutError:
            pass                                        # dropped
    assert str(ask_udp(server, "leader.mesos.").rr[0].rdata) == "1.2.3.4"
    assert server.counters["malformed"] == 1


@pytest.mark.parametrize("prefix", [b"\xff\xff", b"\x00\x05"])
def test_a_bad_tcp_length_closes_the_connection_and_the_server_goes_on(serve, prefix):
    server = serve()
    with socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock:
        sock.sendall(prefix + b"\x00" * 64)
        try:
            assert sock.recv(10) == b""                 # closed without reading 65535 bytes
        except ConnectionResetError:
            pass                                        # closed with our bytes unread: RST
    assert str(ask_tcp(server, "leader.mesos.").rr[0].rdata) == "1.2.3.4"
    assert server.counters["malformed"] == 1


def test_several_queries_on_one_tcp_connection(serve):
    server = serve()
    with socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock:
        for name in ("leader.mesos.", "master0.mesos."):
            packet = DNSRecord.question(name).pack()
            sock.sendall(struct.pack("!H", len(packet)) + packet)
            length = struct.unpack("!H", sock.recv(2))[0]
            reply = DNSRecord.parse(sock.recv(length))
            assert str(reply.q.qname) == name and len(reply.rr) == 1


# Runs in its own process, so the flood does not compete with the server for this one's GIL.
FLOODER = """
import socket, sys, time
port, source, packet = int(sys.argv[1]), sys.argv[2], bytes.fromhex(sys.argv[3])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((source, 0))
sock.setblocking(False)
end = time.monotonic() + float(sys.argv[4])
while time.monotonic() < end:
    try:
        sock.sendto(packet, ("127.0.0.1", port))
    except BlockingIOError:
        pass
"""


def answered_during_flood(server: DnsServer, packet: bytes, source: str) -> int:
    """How many of 50 queries from 127.0.0.1 are answered (3 tries of 0.5 s each, as a stub
    resolver would) while `source` floods the server with `packet` from another process.

    The flood outruns the server, so whichever UDP socket the kernel hashes the flooder onto
    overflows; a query lost is one whose three source ports all hashed onto that socket."""
    flooder = subprocess.Popen([sys.executable, "-c", FLOODER, str(server.port), source,
                                bytes(packet).hex(), "60"])
    try:
        time.sleep(0.3)         # let the flood build up
        answered = 0
        for _ in range(50):
            for _ in range(3):
                try:
                    answered += ask_udp(server, "leader.mesos.", timeout=0.5).header.rcode == 0
                    break
                except TimeoutError:
                    pass
        assert flooder.poll() is None, "the flood ended before the queries did"
        return answered
    finally:
        flooder.kill()
        flooder.wait()


def test_a_flood_from_one_source_is_rate_limited_while_others_are_answered(serve):
    server = serve(limits=ServerLimits(per_source_qps=500, per_source_burst=100))
    packet = DNSRecord.question("slave.mesos.").pack()
    assert answered_during_flood(server, packet, "127.0.0.2") >= 48
    assert server.counters["dropped"] > 0


def test_a_flood_of_forwarded_queries_to_a_dead_resolver_does_not_starve_cluster_names(serve):
    dead = Upstream(silent=True)
    try:
        server = serve(resolvers=[dead.address], forward=True,
                       limits=ServerLimits(timeout=1.0, forward_workers=4, forward_queue=16))
        packet = DNSRecord.question("www.example.com.").pack()
        assert answered_during_flood(server, packet, "127.0.0.2") >= 48
        assert server.counters["dropped"] > 0
    finally:
        dead.close()


def test_stop_frees_the_port(serve):
    server = serve()
    port = server.port
    server.stop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", port))
