"""Answers to DNS queries from a RecordSet, the way Mesos-DNS's resolver gives them.

Pure: a parsed query and the current record set in, a reply out (or None when the name is not
in our domain, so the caller forwards it). No sockets, no clock; the shuffle takes its `rng`.

Rules (reference/mesos-dns.md §5), in the order `answer` applies them:

1. A name outside `<domain>.` is not ours: None.
2. The reply echoes the question, copies id, opcode and RD; AA=1, RA=`recurse_on`; every RR gets
   `ttl`. Owner names are the lower-cased query name (Mesos-DNS lower-cases before looking up).
3. Per qtype:       answer section              authority     additional
     A / AAAA       the name's addresses        -             -
     SRV            0 <weight> port target      -             one A and one AAAA per target
     SOA / NS       -                           SOA / NS      -
     ANY            SRV + A + AAAA              SOA, NS       as SRV
   Answers are shuffled (Mesos-DNS's crude load balancing).
4. An empty answer: SRV, SOA and NS stay NOERROR as they are. Other types get SOA in authority
   and NXDOMAIN, or NOERROR (NODATA) when the name has any A, AAAA or SRV record.
5. Truncation (`truncate`): 512 bytes over UDP, or the client's EDNS0 size; 65535 over TCP.
   When too big, drop the additional section, then answers from the end until it fits; TC set
   unless `set_truncate_bit` is off. dnslib packs with name compression, as miekg/dns does.

Bug-compatible choices: the SOA's minimum is `ttl` (SOAMinttl is ignored), SOA/NS answers go in
the authority section with the query name as owner, and PTR/MX/TXT for an existing name are NODATA.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dnslib
from dnslib import QTYPE, RCODE, RR, DNSHeader, DNSRecord

if TYPE_CHECKING:
    from meseta.dns.records import RecordSet

UDP_MIN_SIZE = 512          # RFC 1035 limit for UDP without EDNS0
TCP_MAX_SIZE = 65535
EDNS_SIZE = 4096            # what we advertise back in our OPT record


@dataclass(frozen=True)
class AnswerOptions:
    """The config keys that shape replies (Mesos-DNS names in comments)."""

    ttl: int = 60                           # ttl
    recurse_on: bool = True                 # recurseon: RA bit on in-domain replies
    soa_mname: str = "ns1.mesos."           # SOAMname, also the NS target
    soa_rname: str = "root.ns1.mesos."      # SOARname
    soa_serial: int = 0                     # Mesos-DNS: unix time of the last reload
    soa_refresh: int = 60                   # SOARefresh
    soa_retry: int = 600                    # SOARetry
    soa_expire: int = 86400                 # SOAExpire
    srv_weight: int = 1                     # srvRecordDefaultWeight
    set_truncate_bit: bool = True           # SetTruncateBit


def in_domain(qname: str, domain: str) -> bool:
    """True when the lower-cased fqdn `qname` is `domain` or below it."""
    zone = domain.lower().rstrip(".") + "."
    return qname == zone or qname.endswith("." + zone)


def answer(query: DNSRecord, records: RecordSet, opts: AnswerOptions, rng: random.Random,
           *, tcp: bool = False) -> DNSRecord | None:
    """The reply to `query` from `records`, truncated for its transport; None if not ours."""
    if len(query.questions) != 1:
        return error_reply(query, RCODE.FORMERR)
    question = query.q
    name = str(question.qname).lower()
    if not in_domain(name, records.domain):
        return None
    reply = _reply_header(query, opts)
    qtype = question.qtype
    if qtype in (QTYPE.SRV, QTYPE.ANY):
        _add_srv(reply, name, records, opts, rng)
    if qtype in (QTYPE.A, QTYPE.ANY):
        _add_addresses(reply, name, QTYPE.A, records.a, opts)
    if qtype in (QTYPE.AAAA, QTYPE.ANY):
        _add_addresses(reply, name, QTYPE.AAAA, records.aaaa, opts)
    if qtype in (QTYPE.SOA, QTYPE.ANY):
        reply.add_auth(soa_rr(name, opts))
    if qtype in (QTYPE.NS, QTYPE.ANY):
        reply.add_auth(RR(name, QTYPE.NS, ttl=opts.ttl, rdata=dnslib.NS(opts.soa_mname)))
    if reply.rr:
        rng.shuffle(reply.rr)
    elif qtype not in (QTYPE.SRV, QTYPE.SOA, QTYPE.NS):
        _add_empty(reply, name, records, opts)
    _echo_edns(query, reply)
    return truncate(reply, reply_limit(query, tcp=tcp), opts.set_truncate_bit)


def soa_rr(name: str, opts: AnswerOptions) -> RR:
    times = (opts.soa_serial, opts.soa_refresh, opts.soa_retry, opts.soa_expire, opts.ttl)
    return RR(name, QTYPE.SOA, ttl=opts.ttl,
              rdata=dnslib.SOA(opts.soa_mname, opts.soa_rname, times))


def error_reply(query: DNSRecord, rcode: int) -> DNSRecord:
    """A bare reply with `rcode` (REFUSED, SERVFAIL, FORMERR, NOTIMP): RD copied, AA and RA off."""
    header = DNSHeader(id=query.header.id, qr=1, opcode=query.header.opcode,
                       rd=query.header.rd, rcode=rcode)
    return DNSRecord(header, questions=list(query.questions))


def reply_limit(query: DNSRecord, *, tcp: bool) -> int:
    """The largest reply the client takes: 65535 over TCP, else its EDNS0 size (at least 512)."""
    if tcp:
        return TCP_MAX_SIZE
    for rr in query.ar:
        if rr.rtype == QTYPE.OPT:
            return min(max(UDP_MIN_SIZE, rr.rclass), TCP_MAX_SIZE)
    return UDP_MIN_SIZE


def truncate(reply: DNSRecord, limit: int, set_tc: bool = True) -> DNSRecord:
    """`reply` cut to `limit` packed bytes: additional records first, then answers from the end.

    The OPT record stays (it is not data). Mutates and returns `reply`.
    """
    if len(reply.pack()) <= limit:
        return reply
    if set_tc:
        reply.header.tc = 1
    reply.ar = [rr for rr in reply.ar if rr.rtype == QTYPE.OPT]
    answers = reply.rr
    low, high = 0, len(answers)     # invariant: answers[:low] fits; answers[:high + 1] does not
    reply.rr = answers
    if len(reply.pack()) <= limit:
        return reply
    high -= 1
    while low < high:
        middle = (low + high + 1) // 2
        reply.rr = answers[:middle]
        if len(reply.pack()) <= limit:
            low = middle
        else:
            high = middle - 1
    reply.rr = answers[:low]
    return reply


def _reply_header(query: DNSRecord, opts: AnswerOptions) -> DNSRecord:
    header = DNSHeader(id=query.header.id, qr=1, opcode=query.header.opcode, aa=1,
                       rd=query.header.rd, ra=int(opts.recurse_on))
    return DNSRecord(header, q=query.q)


def _add_addresses(reply: DNSRecord, name: str, rtype: int, table, opts: AnswerOptions) -> None:
    rdata = dnslib.A if rtype == QTYPE.A else dnslib.AAAA
    for address in table.get(name, ()):
        reply.add_answer(RR(name, rtype, ttl=opts.ttl, rdata=rdata(address)))


def _add_srv(reply: DNSRecord, name: str, records: RecordSet, opts: AnswerOptions,
             rng: random.Random) -> None:
    """SRV answers, and for each distinct target one A and one AAAA in additional.

    Mesos-DNS takes whichever address Go's map yields first, so a random one here.
    """
    targets: dict[str, None] = {}
    for target, port in records.srv.get(name, ()):
        srv = dnslib.SRV(priority=0, weight=opts.srv_weight, port=port, target=target)
        reply.add_answer(RR(name, QTYPE.SRV, ttl=opts.ttl, rdata=srv))
        targets[target.lower()] = None
    for target in targets:
        if addresses := records.a.get(target):
            reply.add_ar(RR(target, QTYPE.A, ttl=opts.ttl, rdata=dnslib.A(rng.choice(addresses))))
        if addresses := records.aaaa.get(target):
            reply.add_ar(RR(target, QTYPE.AAAA, ttl=opts.ttl,
                            rdata=dnslib.AAAA(rng.choice(addresses))))


def _add_empty(reply: DNSRecord, name: str, records: RecordSet, opts: AnswerOptions) -> None:
    exists = name in records.a or name in records.aaaa or name in records.srv
    if not exists:
        reply.header.rcode = RCODE.NXDOMAIN
    if not any(rr.rtype == QTYPE.SOA for rr in reply.auth):     # ANY already has one
        reply.add_auth(soa_rr(name, opts))


def _echo_edns(query: DNSRecord, reply: DNSRecord) -> None:
    """RFC 6891: answer an EDNS0 query with an OPT record of our own (no options echoed)."""
    if any(rr.rtype == QTYPE.OPT for rr in query.ar):
        reply.add_ar(dnslib.EDNS0(udp_len=EDNS_SIZE))
