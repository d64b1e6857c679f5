"""The DNS server: UDP and TCP sockets around meseta.dns.answer.

    server = DnsServer("127.0.0.1", 0, lambda: current_records, AnswerOptions(),
                       resolvers=["10.0.0.2"], forward=True)
    server.start(); print(server.port); ...; server.stop()

Data flow for one query (same on UDP and TCP):

    packet -> cache key (question bytes, RD, EDNS size, transport)
        hit  -> one of the packed reply variants, the query's 2-byte id patched in
        miss -> dnslib parse -> wire.pack_reply (answer(), packed) -> cache; later hits
                add up to `shuffle_variants` more shuffled orders, one per hit
             -> None (not our domain) -> forward to the resolvers over the client's protocol,
                                         or REFUSED when forwarding is off

The cache belongs to one RecordSet object: `get_records()` is called per query, and a different
object (the follower swapped in a new set) starts an empty cache. Keeping several shuffled
variants per name keeps Mesos-DNS's crude load balancing without packing per query.

Threads: one UDP loop (answers from the cache inline; forwards on a bounded pool, so a flood of
forwarded or slow queries cannot starve cluster names), one TCP accept loop and a bounded number of
connection threads. An optional per-source-IP token bucket drops floods before any parsing.
"""

from __future__ import annotations

import logging
import math
import random
import socket
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Sequence

from dnslib import RCODE, DNSError, DNSRecord

from meseta.dns.answer import AnswerOptions, error_reply, reply_limit, truncate
from meseta.dns.wire import packed_reply

log = logging.getLogger(__name__)

COUNTERS = ("queries", "answered", "nxdomain", "forwarded", "refused", "servfail",
            "malformed", "dropped")

# Kinds of cached replies, and the counter each one bumps.
ANSWERED, NXDOMAIN, REFUSED, FORWARD = "answered", "nxdomain", "refused", "forwarded"

_HEADER = struct.Struct("!HBBHHHH")
_LENGTH = struct.Struct("!H")


@dataclass(frozen=True)
class ServerLimits:
    """Timeouts and bounds; the defaults suit a cluster resolver."""

    timeout: float = 5.0             # upstream connect/read (Mesos-DNS `timeout`)
    per_source_qps: float = 0.0      # token bucket per source IP; 0 = no limit
    per_source_burst: int = 2000
    forward_workers: int = 16        # concurrent upstream queries from UDP clients
    forward_queue: int = 512         # forwarded UDP queries waiting or running; beyond: dropped
    tcp_clients: int = 128           # open TCP connections; beyond: closed at once
    tcp_idle: float = 10.0           # seconds a TCP connection may sit idle
    max_tcp_query: int = 4096        # a length prefix above this closes the connection
    cache_entries: int = 100_000     # cached (question, transport) keys before a reset
    udp_sockets: int = 4             # SO_REUSEPORT sockets, a thread each (see DnsServer)
    shuffle_variants: int = 8        # packed orders kept per multi-answer name


class Counters:
    """Thread-safe counters for /metrics."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(COUNTERS, 0)

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._values[name] += amount

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)


class SourceLimiter:
    """A token bucket per source IP (rate `qps`, depth `burst`); `clock` is injectable."""

    MAX_SOURCES = 65536

    def __init__(self, qps: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self._qps, self._burst, self._clock = qps, burst, clock
        self._buckets: dict[str, list[float]] = {}

    def allow(self, source: str) -> bool:
        now = self._clock()
        bucket = self._buckets.get(source)
        if bucket is None:
            if len(self._buckets) >= self.MAX_SOURCES:
                self._buckets.clear()
            bucket = self._buckets[source] = [float(self._burst), now]
        tokens = min(self._burst, bucket[0] + (now - bucket[1]) * self._qps)
        bucket[1] = now
        if tokens < 1:
            bucket[0] = tokens
            return False
        bucket[0] = tokens - 1
        return True


def cache_key(packet: bytes, tcp: bool) -> tuple | None:
    """(transport, RD, question bytes, EDNS size) for a plain one-question query, else None.

    Everything a cached reply depends on except the id. Question bytes are kept exactly, since
    the reply echoes the client's spelling. EDNS options (cookies) are not echoed, so ignored.
    """
    if len(packet) < 17:
        return None
    _, flags, _, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(packet)
    if flags & 0xF8 or qdcount != 1 or ancount or nscount or arcount > 1:
        return None                                  # a reply, another opcode, or odd counts
    end = 12
    while (length := packet[end]) != 0:
        if length > 63:
            return None                              # compression pointer in a query
        end += length + 1
        if end >= len(packet):
            return None
    end += 5
    edns = None
    if arcount:
        # The OPT record: root name, type 41, class = the client's UDP size.
        if len(packet) < end + 11 or packet[end] != 0 or packet[end + 1:end + 3] != b"\x00\x29":
            return None
        edns = 0 if tcp else _LENGTH.unpack_from(packet, end + 3)[0]
    elif len(packet) != end:
        return None
    return tcp, flags & 0x01, packet[12:end], edns


def parse_resolver(text: str) -> tuple[str, int]:
    """"host", "host:port", "[v6]:port" or a bare IPv6 address -> (host, port)."""
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
        return host.rstrip("]"), int(port or 53)
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, int(port)
    return text, 53


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _recv_exactly(sock: socket.socket, count: int) -> bytes | None:
    chunks, missing = [], count
    while missing:
        chunk = sock.recv(missing)
        if not chunk:
            return None
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)


class DnsServer:
    """Serves `get_records()` on UDP and TCP `host:port`; see the module docstring."""

    def __init__(self, host: str, port: int, get_records: Callable[[], object],
                 opts: AnswerOptions, resolvers: Sequence[str] = (), forward: bool = True,
                 limits: ServerLimits = ServerLimits()):
        self.host = host
        self.port = port
        self._get_records = get_records
        self._opts = opts
        self._resolvers = [parse_resolver(r) for r in resolvers]
        self._forward = forward and bool(self._resolvers)
        self._limits = limits
        self._limiter = (SourceLimiter(limits.per_source_qps, limits.per_source_burst)
                         if limits.per_source_qps > 0 else None)
        self._rng = random.Random()
        self._cache: tuple[object, dict] = (None, {})
        self._counters = Counters()
        self._stopping = threading.Event()
        self._forward_slots = threading.BoundedSemaphore(limits.forward_queue)
        self._tcp_slots = threading.BoundedSemaphore(limits.tcp_clients)
        self._pool: ThreadPoolExecutor | None = None
        self._udp: list[socket.socket] = []
        self._tcp: socket.socket | None = None
        self._threads: list[threading.Thread] = []

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> DnsServer:
        self._bind()
        self._pool = ThreadPoolExecutor(self._limits.forward_workers, "dns-forward")
        loops = [(self._serve_udp, (sock,), "dns-udp") for sock in self._udp]
        for target, args, name in [*loops, (self._serve_tcp, (), "dns-tcp")]:
            thread = threading.Thread(target=target, args=args, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("DNS on %s:%d (udp, tcp)", self.host, self.port)
        return self

    def stop(self) -> None:
        if self._stopping.is_set() or self._tcp is None:
            return
        self._stopping.set()
        # close() does not wake a blocked recvfrom/accept; on Linux shutdown() does, even for
        # unconnected UDP sockets (which also report ENOTCONN).
        for sock in [*self._udp, self._tcp]:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in self._threads:
            thread.join(timeout=5)
        for sock in [*self._udp, self._tcp]:
            sock.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> DnsServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def counters(self) -> dict[str, int]:
        return self._counters.snapshot()

    def _bind(self) -> None:
        """UDP and TCP on one port. Several UDP sockets share it (SO_REUSEPORT): the kernel
        spreads clients over them by source address and port, so a flooding client fills its
        own socket's queue and not the one other clients are answered from."""
        family = _family(self.host)
        for _ in range(20):     # port 0: the free UDP port may be taken for TCP; try another
            first = self._udp_socket(family, self.port)
            port = first.getsockname()[1]
            tcp = socket.socket(family, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                tcp.bind((self.host, port))
            except OSError:
                first.close()
                tcp.close()
                if self.port:
                    raise
                continue
            tcp.listen(128)
            others = [self._udp_socket(family, port)
                      for _ in range(self._limits.udp_sockets - 1)]
            self._udp, self._tcp, self.port = [first, *others], tcp, port
            return
        raise OSError("no free port for both UDP and TCP")

    def _udp_socket(self, family: int, port: int) -> socket.socket:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind((self.host, port))
        return sock

    # -- UDP -------------------------------------------------------------------------------

    def _serve_udp(self, sock: socket.socket) -> None:
        limiter, count = self._limiter, self._counters.add
        while not self._stopping.is_set():
            try:
                packet, source = sock.recvfrom(65535)
            except OSError:
                continue
            if self._stopping.is_set():
                break
            count("queries")
            if limiter is not None and not limiter.allow(source[0]):
                count("dropped")
                continue
            try:
                reply = self._reply(packet, tcp=False)
                if reply == FORWARD:
                    self._forward_udp(sock, packet, source)
                elif reply is not None:
                    sock.sendto(reply, source)
            except Exception:       # one bad query must not end the loop
                log.exception("UDP query from %s", source)
                count("servfail")

    def _forward_udp(self, sock: socket.socket, packet: bytes, source) -> None:
        if not self._forward_slots.acquire(blocking=False):
            self._counters.add("dropped")
            return
        self._pool.submit(self._relay_udp, sock, packet, source)

    def _relay_udp(self, sock: socket.socket, packet: bytes, source) -> None:
        try:
            reply = self._ask_upstream(packet, tcp=False)
            sock.sendto(reply, source)
        except OSError:
            pass
        finally:
            self._forward_slots.release()

    # -- TCP -------------------------------------------------------------------------------

    def _serve_tcp(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, source = self._tcp.accept()
            except OSError:
                continue
            if self._stopping.is_set():
                conn.close()
                break
            if not self._tcp_slots.acquire(blocking=False):
                self._counters.add("dropped")
                conn.close()
                continue
            threading.Thread(target=self._serve_connection, args=(conn, source),
                             name="dns-tcp-conn", daemon=True).start()

    def _serve_connection(self, conn: socket.socket, source) -> None:
        limits = self._limits
        try:
            conn.settimeout(limits.tcp_idle)
            while not self._stopping.is_set():
                prefix = _recv_exactly(conn, 2)
                if prefix is None:
                    return
                (length,) = _LENGTH.unpack(prefix)
                self._counters.add("queries")
                if length < 12 or length > limits.max_tcp_query:
                    self._counters.add("malformed")
                    return                  # a length we will not read: close
                packet = _recv_exactly(conn, length)
                if packet is None:
                    return
                reply = self._reply(packet, tcp=True)
                if reply == FORWARD:
                    reply = self._ask_upstream(packet, tcp=True)
                if reply is None:
                    return                  # undecodable: close, as nothing else is safe
                conn.sendall(_LENGTH.pack(len(reply)) + reply)
        except OSError:
            pass
        except Exception:
            log.exception("TCP query from %s", source)
        finally:
            conn.close()
            self._tcp_slots.release()

    # -- replies ---------------------------------------------------------------------------

    def _reply(self, packet: bytes, *, tcp: bool):
        """Packed reply bytes, FORWARD, or None (drop). Counts what it decides."""
        records = self._get_records()
        cached_for, cache = self._cache
        if records is not cached_for:
            cache = {}
            self._cache = (records, cache)
        key = cache_key(packet, tcp)
        entry = cache.get(key) if key is not None else None
        if entry is None:
            entry = self._build(packet, records, tcp)
            if entry is None:
                return None
            if key is not None and records is not None:
                if len(cache) >= self._limits.cache_entries:
                    cache.clear()
                cache[key] = entry
        kind, variants = entry[0], entry[1]
        if len(entry) > 2 and len(variants) < entry[3]:
            variants.append(entry[2]())       # one more shuffled order, built on a later hit
        self._counters.add(kind)
        if kind == FORWARD:
            return FORWARD
        if kind == NXDOMAIN:
            self._counters.add(ANSWERED)
        variant = variants[self._rng.randrange(len(variants))] if len(variants) > 1 \
            else variants[0]
        return packet[:2] + variant[2:]

    def _build(self, packet: bytes, records, tcp: bool) -> tuple | None:
        """The cache entry of a query it does not know, or None to drop it:
        `(kind, packed variants)`, or `(kind, [first], another, how many)` for a reply whose
        answers get shuffled."""
        try:
            query = DNSRecord.parse(packet)
        except (DNSError, ValueError, IndexError, struct.error):
            if len(packet) < 12 or packet[2] & 0x80:
                self._counters.add("malformed")
                return None
            # Header only: id and RD from the packet, no question we could trust.
            return "malformed", (packet[:2] + bytes([0x80 | packet[2] & 0x79, RCODE.FORMERR])
                                 + b"\0" * 8,)
        if query.header.qr:
            self._counters.add("malformed")
            return None
        if query.header.opcode != 0:
            return "malformed", (bytes(error_reply(query, RCODE.NOTIMP).pack()),)
        if records is None:                 # no complete record set yet: serve nothing
            return "servfail", (bytes(error_reply(query, RCODE.SERVFAIL).pack()),)
        reply = packed_reply(query, records, self._opts, self._rng, tcp=tcp)
        if reply is None:
            if self._forward:
                return FORWARD, ()
            return REFUSED, (bytes(error_reply(query, RCODE.REFUSED).pack()),)
        kind = NXDOMAIN if reply.rcode == RCODE.NXDOMAIN else ANSWERED
        want = min(self._limits.shuffle_variants, math.factorial(min(reply.answers, 8)))
        if want <= 1:
            return kind, [reply.data]
        return kind, [reply.data], reply.another, want

    def _ask_upstream(self, packet: bytes, *, tcp: bool) -> bytes:
        """The first resolver's reply over the client's protocol; SERVFAIL if none answers."""
        for host, port in self._resolvers:
            try:
                reply = (self._upstream_tcp if tcp else self._upstream_udp)(packet, host, port)
            except OSError as error:
                log.debug("resolver %s:%d: %s", host, port, error)
                continue
            if reply is not None:
                return self._fit(packet, reply, tcp)
        self._counters.add("servfail")
        try:
            return bytes(error_reply(DNSRecord.parse(packet), RCODE.SERVFAIL).pack())
        except DNSError:
            return packet[:2] + bytes([0x80 | packet[2] & 0x79, RCODE.SERVFAIL]) + b"\0" * 8

    def _upstream_udp(self, packet: bytes, host: str, port: int) -> bytes | None:
        with socket.socket(_family(host), socket.SOCK_DGRAM) as sock:
            sock.settimeout(self._limits.timeout)
            sock.connect((host, port))      # only the resolver's datagrams get through
            sock.send(packet)
            deadline = time.monotonic() + self._limits.timeout
            while time.monotonic() < deadline:
                reply = sock.recv(65535)
                if reply[:2] == packet[:2]:
                    return reply
        return None

    def _upstream_tcp(self, packet: bytes, host: str, port: int) -> bytes | None:
        with socket.create_connection((host, port), timeout=self._limits.timeout) as sock:
            sock.sendall(_LENGTH.pack(len(packet)) + packet)
            prefix = _recv_exactly(sock, 2)
            return None if prefix is None else _recv_exactly(sock, _LENGTH.unpack(prefix)[0])

    def _fit(self, packet: bytes, reply: bytes, tcp: bool) -> bytes:
        """The relayed reply, truncated if it exceeds what the client can take (rare)."""
        try:
            query = DNSRecord.parse(packet)
            limit = reply_limit(query, tcp=tcp)
            if len(reply) <= limit:
                return reply
            cut = truncate(DNSRecord.parse(reply), limit, self._opts.set_truncate_bit)
            return bytes(cut.pack())
        except DNSError:
            return reply            # not ours to judge: relay as received
