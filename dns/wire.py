"""Replies packed straight to wire bytes: what `answer(...).pack()` gives, without dnslib objects.

`answer()` builds a dnslib `RR` per record and dnslib packs them one attribute at a time; for a
name with hundreds of SRV targets that is milliseconds per reply, paid again after every record
set swap. `pack_reply` writes the common replies (A, AAAA and SRV queries that have answers)
directly, in dnslib's byte layout: the same sections in the same order, the same name
compression (every suffix of a compressed name remembered at its offset, SRV targets
uncompressed), the same random draws from `rng` in the same order (one address per additional
target, then the shuffle), and the same truncation (additional records dropped, then answers
cut from the end). Every other reply (SOA, NS, ANY, NXDOMAIN/NODATA, errors) goes through
`answer()` and dnslib. `tests/unit/test_dns_answer.py` checks the two paths byte for byte.

One deliberate difference: a compression pointer has 14 bits, so a name written past offset
16383 is not remembered as a pointer target (dnslib would mask the offset and point into the
wrong place; TCP replies with a few hundred targets reach that far).

    reply = pack_reply(DNSRecord.parse(packet), records, AnswerOptions(), random.Random())
"""
from __future__ import annotations

import random
import socket
import struct
from typing import TYPE_CHECKING, Callable, Optional

from dnslib import QTYPE, DNSBuffer, DNSLabel, DNSRecord, EDNS0

from meseta.dns.answer import EDNS_SIZE, AnswerOptions, answer, in_domain, reply_limit

if TYPE_CHECKING:
    from meseta.dns.records import RecordSet

Labels = tuple[bytes, ...]

_HEADER = struct.Struct("!HHHHHH")
_COUNT = struct.Struct("!H")
_RR_HEAD = struct.Struct("!HHIH")          # type, class, ttl, rdlength (after the owner name)
_SRV_HEAD = struct.Struct("!HHH")          # priority, weight, port
_QUESTION_TAIL = struct.Struct("!HH")
_CLASS_IN = 1
_MAX_POINTER = 0x3FFF
_MAX_NAME = 253
_FAST_TYPES = frozenset({QTYPE.A, QTYPE.AAAA, QTYPE.SRV})


def _packed_opt() -> bytes:
    buffer = DNSBuffer()
    EDNS0(udp_len=EDNS_SIZE).pack(buffer)
    return bytes(buffer.data)


_OPT = _packed_opt()        # our OPT record: a root owner never compresses, so it is constant


class PackedReply:
    """A packed reply (`data`), and `another()` order of its answers for the server's cache.

    When every answer was written as a pointer to the question plus uncompressed data (the
    question name is in lower case, nothing was truncated), the answers are byte strings that
    do not depend on where they sit: another order is the same pieces reshuffled. Otherwise
    `another()` answers afresh (a truncated reply then lets a different subset through)."""

    def __init__(self, data: bytes, again: Callable[[], bytes], rng: random.Random,
                 pieces: Optional[tuple[bytes, list[bytes], bytes]] = None) -> None:
        self.data = data
        self.answers = _COUNT.unpack_from(data, 6)[0]
        self.rcode = data[3] & 0x0F
        self._again, self._rng, self._pieces = again, rng, pieces

    def another(self) -> bytes:
        if self._pieces is None:
            return self._again()
        head, answers, tail = self._pieces
        order = list(answers)
        self._rng.shuffle(order)
        return head + b"".join(order) + tail


def pack_reply(query: DNSRecord, records: RecordSet, opts: AnswerOptions, rng: random.Random,
               *, tcp: bool = False) -> Optional[bytes]:
    """`answer(query, records, opts, rng, tcp=tcp)` as packed bytes; None when not ours."""
    reply = packed_reply(query, records, opts, rng, tcp=tcp)
    return None if reply is None else reply.data


def packed_reply(query: DNSRecord, records: RecordSet, opts: AnswerOptions, rng: random.Random,
                 *, tcp: bool = False) -> Optional[PackedReply]:
    """As `pack_reply`, with the means to make further shuffled orders of the reply."""
    def again() -> bytes:
        return pack_reply(query, records, opts, rng, tcp=tcp) or b""

    if len(query.questions) == 1 and query.q.qtype in _FAST_TYPES:
        name = str(query.q.qname).lower()
        if in_domain(name, records.domain):
            packed = _pack_fast(query, name, records, opts, rng, tcp)
            if packed is not None:
                data, pieces = packed
                return PackedReply(data, again, rng, pieces)
    reply = answer(query, records, opts, rng, tcp=tcp)
    return None if reply is None else PackedReply(bytes(reply.pack()), again, rng)


def _pack_fast(query: DNSRecord, name: str, records: RecordSet, opts: AnswerOptions,
               rng: random.Random, tcp: bool):
    """(reply bytes, its pieces if reorderable), or None to leave it to dnslib (no answers, or
    a name or value this writer does not handle exactly as dnslib). Nothing is drawn from
    `rng` before deciding."""
    qtype = query.q.qtype
    qname, owner = query.q.qname.label, DNSLabel(name).label
    if len(query.q.qname) > _MAX_NAME or len(b".".join(owner)) > _MAX_NAME:
        return None                              # dnslib raises on these: let it
    if qtype == QTYPE.SRV:
        found = _srv_sections(name, records, opts, rng)
    else:
        found = _address_answers(name, qtype, records, rng)
    if found is None:
        return None
    answers, additional = found
    writer = _Writer()
    writer.name(qname)
    writer.out += _QUESTION_TAIL.pack(qtype, query.q.qclass)
    question_end = len(writer.out)
    ends = [question_end]
    for rtype, rdata in answers:
        writer.record(owner, rtype, opts.ttl, rdata)
        ends.append(len(writer.out))
    for labels, rtype, rdata in additional:
        writer.record(labels, rtype, opts.ttl, rdata)
    edns = any(rr.rtype == QTYPE.OPT for rr in query.ar)
    opt = _OPT if edns else b""
    limit = reply_limit(query, tcp=tcp)
    out, tc = writer.out, 0
    ancount, arcount = len(answers), len(additional) + edns
    if len(out) + len(opt) > limit:
        # dnslib's truncate: no additional records, then the longest prefix of answers that fits.
        tc = int(opts.set_truncate_bit)
        ancount = sum(1 for end in ends[1:] if end + len(opt) <= limit)
        del out[ends[ancount]:]
        arcount = int(edns)
    header = query.header
    bitmap = (0x8000 | header.opcode << 11 | 0x0400 | tc << 9 | header.rd << 8
              | int(opts.recurse_on) << 7)
    out[:12] = _HEADER.pack(header.id, bitmap, 1, ancount, 0, arcount)
    out += opt
    data = bytes(out)
    if owner != qname or ancount < len(answers):
        return data, None
    pieces = [data[ends[i]:ends[i + 1]] for i in range(ancount)]
    return data, (data[:question_end], pieces, data[ends[ancount]:])


def _address_answers(name: str, qtype: int, records: RecordSet, rng: random.Random):
    table = records.a if qtype == QTYPE.A else records.aaaa
    addresses = table.get(name)
    if not addresses:
        return None
    pack = _ipv4 if qtype == QTYPE.A else _ipv6
    answers = [(qtype, pack(address)) for address in addresses]
    if None in (rdata for _, rdata in answers):
        return None
    rng.shuffle(answers)
    return answers, ()


def _srv_sections(name: str, records: RecordSet, opts: AnswerOptions, rng: random.Random):
    """(answers, additional) as `answer()` makes them for an SRV query: one answer per value,
    and per distinct target (lower-cased) one A and one AAAA picked at random."""
    values = records.srv.get(name)
    if not values:
        return None
    labels_of: dict[str, Optional[Labels]] = {}
    answers, targets = [], {}
    for target, port in values:
        labels = labels_of.get(target) or labels_of.setdefault(target, _labels(target))
        if labels is None or not 0 <= port <= 0xFFFF:
            return None
        answers.append((QTYPE.SRV, _SRV_HEAD.pack(0, opts.srv_weight, port) + _plain(labels)))
        targets[target.lower()] = None
    extra = []                  # (owner labels, type, every address packed), in draw order
    for target in targets:
        owner = labels_of.get(target) or _labels(target)
        for rtype, table, pack in ((QTYPE.A, records.a, _ipv4), (QTYPE.AAAA, records.aaaa, _ipv6)):
            if addresses := table.get(target):
                packed = tuple(map(pack, addresses))
                if owner is None or None in packed:
                    return None
                extra.append((owner, rtype, packed))
    additional = [(owner, rtype, rng.choice(packed)) for owner, rtype, packed in extra]
    rng.shuffle(answers)
    return answers, additional


class _Writer:
    """A reply under construction with dnslib's name compression: every suffix of a name
    written in compressible form is remembered at its offset; a known suffix becomes a pointer."""

    def __init__(self) -> None:
        self.out = bytearray(12)                 # the header is written last
        self._names: dict[Labels, int] = {}

    def name(self, labels: Labels) -> None:
        out, names = self.out, self._names
        for index in range(len(labels)):
            suffix = labels[index:]
            pointer = names.get(suffix)
            if pointer is not None:
                out += (0xC000 | pointer).to_bytes(2, "big")
                return
            if len(out) <= _MAX_POINTER:
                names[suffix] = len(out)
            label = labels[index]
            out.append(len(label))
            out += label
        out.append(0)

    def record(self, owner: Labels, rtype: int, ttl: int, rdata: bytes) -> None:
        self.name(owner)
        self.out += _RR_HEAD.pack(rtype, _CLASS_IN, ttl, len(rdata))
        self.out += rdata


def _labels(name: str) -> Optional[Labels]:
    """The labels dnslib makes of `name`, for plain ASCII names; None for anything else."""
    if not name.isascii() or "\\" in name or name.startswith(".") or ".." in name or not name:
        return None
    labels = tuple(name.encode().rstrip(b".").split(b"."))
    if max(map(len, labels)) > 63 or len(name.rstrip(".")) > _MAX_NAME:
        return None
    return labels


def _plain(labels: Labels) -> bytes:
    """A name without compression (SRV targets, as dnslib and RFC 2782 write them)."""
    return b"".join(bytes((len(label),)) + label for label in labels) + b"\0"


def _ipv4(address: str) -> Optional[bytes]:
    try:
        return socket.inet_pton(socket.AF_INET, address)
    except (OSError, ValueError):
        return None


def _ipv6(address: str) -> Optional[bytes]:
    if "." in address:                           # dnslib does not parse dotted-quad tails
        return None
    try:
        return socket.inet_pton(socket.AF_INET6, address)
    except (OSError, ValueError):
        return None
