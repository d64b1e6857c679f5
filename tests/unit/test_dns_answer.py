"""meseta.dns.answer against the replies of Mesos-DNS (expected-responses.json) and its rules."""

from __future__ import annotations

import ipaddress
import json
import random
from pathlib import Path

import dnslib
import pytest
from dnslib import QTYPE, RCODE, DNSRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from meseta.dns.answer import AnswerOptions, answer, in_domain, reply_limit, truncate
from meseta.dns import wire
from meseta.dns.records import RecordSet
from meseta.dns.wire import pack_reply

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "mesos-dns-fixtures"
EXPECTED = json.loads((FIXTURES / "expected-responses.json").read_text())["responses"]

# The resolver_test fakeDNS setup: RecurseOn=false, TTL 60, SOA names without trailing dots.
FAKE_DNS = AnswerOptions(ttl=60, recurse_on=False, soa_mname="ns1.mesos",
                         soa_rname="root.ns1.mesos", soa_serial=0)


def make_records(variant: str = "resolver_fakeDNS") -> RecordSet:
    data = json.loads((FIXTURES / "expected-records.json").read_text())
    tables: dict[str, dict] = {"A": {}, "AAAA": {}, "SRV": {}}
    for name, rtype, values in data["variants"][variant]["records"]:
        if rtype == "SRV":
            values = [(target, int(port)) for target, port in (v.rsplit(":", 1) for v in values)]
        tables[rtype][name] = tuple(values)
    return RecordSet(data["common"]["domain"], tables["A"], tables["AAAA"], tables["SRV"])


RECORDS = make_records()


def ask(name: str, qtype: str = "A", *, opts: AnswerOptions = FAKE_DNS, records=RECORDS,
        tcp: bool = False, edns: int | None = None, seed: int = 1) -> DNSRecord | None:
    query = DNSRecord.question(name, qtype)
    if edns is not None:
        query.add_ar(dnslib.EDNS0(udp_len=edns))
    reply = answer(DNSRecord.parse(query.pack()), records, opts, random.Random(seed), tcp=tcp)
    # Through the wire and back, so what we check is what a client would read.
    return None if reply is None else DNSRecord.parse(reply.pack())


def zone_line(rr) -> tuple[str, ...]:
    """An RR as tokens, names without trailing dots (the fixture's SOA names have none)."""
    text = f"{rr.rname} {rr.ttl} IN {QTYPE[rr.rtype]} {rr.rdata}"
    return tuple(token.rstrip(".").lower() for token in text.split())


def expected_lines(lines: list[str]) -> list[tuple[str, ...]]:
    return [tuple(token.rstrip(".").lower() for token in line.split()) for line in lines]


def extra_matches(got: list[tuple], want: list[tuple]) -> bool:
    """Mesos-DNS's Extra holds one A/AAAA per target picked by Go map order: for a target with
    several addresses any one of them is right, so compare (owner, type) and membership."""
    if sorted(line[:4] for line in got) != sorted(line[:4] for line in want):
        return False
    for owner, _, _, rtype, value in got:
        table = RECORDS.a if rtype == "a" else RECORDS.aaaa
        if value not in table[owner + "."]:
            return False
    return True


@pytest.mark.parametrize("case", EXPECTED, ids=[f"{c['Q']}{c['T']}" for c in EXPECTED])
def test_reply_matches_mesos_dns(case):
    reply = ask(case["Q"], case["T"])
    assert reply is not None
    assert RCODE[reply.header.rcode] == case["Rcode"]
    assert (bool(reply.header.aa), bool(reply.header.ra)) == (case["AA"], case["RA"])
    assert (reply.header.tc, reply.header.rd) == (0, 1)
    assert [str(q.qname) for q in reply.questions] == [case["Q"]]
    # Answers are shuffled by Mesos-DNS, so sections compare as multisets.
    assert sorted(map(zone_line, reply.rr)) == sorted(expected_lines(case["Answer"]))
    assert sorted(map(zone_line, reply.auth)) == sorted(expected_lines(case["Ns"]))
    assert extra_matches([zone_line(rr) for rr in reply.ar], expected_lines(case["Extra"]))


def test_all_26_replies_are_byte_for_byte_the_same_records_where_deterministic():
    exact = 0
    for case in EXPECTED:
        reply = ask(case["Q"], case["T"])
        same = (RCODE[reply.header.rcode] == case["Rcode"]
                and sorted(map(zone_line, reply.rr)) == sorted(expected_lines(case["Answer"]))
                and sorted(map(zone_line, reply.auth)) == sorted(expected_lines(case["Ns"]))
                and sorted(map(zone_line, reply.ar)) == sorted(expected_lines(case["Extra"])))
        exact += same
    # 25 match record for record; _slave._tcp's additional A is one of slave.mesos.'s three
    # addresses picked at random, as Go's map iteration picks it.
    assert exact >= 25


@pytest.mark.parametrize("name, qtype, rcode, answers, authority", [
    # name                        qtype   rcode       answers  authority
    ("chronos.marathon.mesos.", "A",    "NOERROR",  1, ()),
    ("chronos.marathon.mesos.", "AAAA", "NOERROR",  0, ("SOA",)),       # NODATA
    ("chronos.marathon.mesos.", "TXT",  "NOERROR",  0, ("SOA",)),       # NODATA
    ("chronos.marathon.mesos.", "PTR",  "NOERROR",  0, ("SOA",)),       # PTR unsupported
    ("ipv6-framework.mesos.",   "A",    "NOERROR",  0, ("SOA",)),       # has AAAA only
    ("_slave._tcp.mesos.",      "AAAA", "NOERROR",  0, ("SOA",)),       # has SRV only
    ("missing.mesos.",          "AAAA", "NXDOMAIN", 0, ("SOA",)),
    ("missing.mesos.",          "MX",   "NXDOMAIN", 0, ("SOA",)),
    ("missing.mesos.",          "SRV",  "NOERROR",  0, ()),
    ("missing.mesos.",          "SOA",  "NOERROR",  0, ("SOA",)),
    ("missing.mesos.",          "NS",   "NOERROR",  0, ("NS",)),
    ("missing.mesos.",          "ANY",  "NXDOMAIN", 0, ("NS", "SOA")),
    ("mesos.",                  "A",    "NXDOMAIN", 0, ("SOA",)),
    ("slave.mesos.",            "ANY",  "NOERROR",  4, ("NS", "SOA")),  # 3 A + 1 AAAA
    ("toy-store.ipv6-framework.mesos.", "ANY", "NOERROR", 3, ("NS", "SOA")),
    ("_slave._tcp.mesos.",      "ANY",  "NOERROR",  1, ("NS", "SOA")),
])
def test_rcode_and_sections(name, qtype, rcode, answers, authority):
    reply = ask(name, qtype)
    assert RCODE[reply.header.rcode] == rcode
    assert len(reply.rr) == answers
    assert sorted(QTYPE[rr.rtype] for rr in reply.auth) == list(authority)
    assert reply.header.aa == 1


def test_any_for_an_srv_name_carries_the_target_addresses_in_additional():
    reply = ask("_slave._tcp.mesos.", "ANY")
    assert {QTYPE[rr.rtype] for rr in reply.ar} == {"A", "AAAA"}


@pytest.mark.parametrize("name", ["LEADER.MESOS.", "Leader.Mesos.", "leader.mesos"])
def test_names_are_case_insensitive_and_the_question_is_echoed(name):
    reply = ask(name)
    assert [str(rr.rdata) for rr in reply.rr] == ["1.2.3.4"]
    assert str(reply.q.qname) == name.rstrip(".") + "."


@pytest.mark.parametrize("name", ["example.com.", "mesos.example.com.", "notmesos.", "."])
def test_names_outside_the_domain_are_not_ours(name):
    assert ask(name) is None


def test_in_domain():
    assert in_domain("a.b.mesos.", "mesos") and in_domain("mesos.", "mesos.")
    assert not in_domain("xmesos.", "mesos")


def test_ttl_recursion_and_soa_options_are_applied():
    opts = AnswerOptions(ttl=5, recurse_on=True, soa_mname="ns.example.", soa_serial=42,
                         soa_refresh=7, soa_retry=8, soa_expire=9, srv_weight=3)
    reply = ask("_leader._tcp.mesos.", "SRV", opts=opts)
    assert reply.header.ra == 1
    assert {rr.ttl for rr in reply.rr + reply.ar} == {5}
    assert reply.rr[0].rdata.weight == 3 and reply.rr[0].rdata.priority == 0
    soa = ask("mesos.", "SOA", opts=opts).auth[0]
    assert soa.ttl == 5 and str(soa.rdata.mname) == "ns.example."
    assert soa.rdata.times == (42, 7, 8, 9, 5)       # minimum = ttl, as Mesos-DNS does
    assert str(ask("mesos.", "NS", opts=opts).auth[0].rdata) == "ns.example."


def test_answers_are_shuffled():
    orders = {tuple(str(rr.rdata) for rr in ask("slave.mesos.", seed=seed).rr)
              for seed in range(30)}
    assert len(orders) > 1
    assert all(sorted(order) == ["1.2.3.10", "1.2.3.11", "1.2.3.12"] for order in orders)


def big_records(count: int) -> RecordSet:
    a = {f"t{i}.app.mesos.": (f"10.0.{i // 250}.{i % 250}",) for i in range(count)}
    a["app.mesos."] = tuple(sorted({ip for (ip,) in a.values()}))
    srv = {"_app._tcp.mesos.": tuple((f"t{i}.app.mesos.", 31000 + i) for i in range(count))}
    return RecordSet("mesos", a, {}, srv)


@pytest.mark.parametrize("qtype, tcp, edns, limit, truncated", [
    # qtype  tcp    edns   limit  truncated
    ("A",   False, None,  512,   True),
    ("A",   False, 4096,  4096,  True),
    ("A",   False, 100,   512,   True),      # EDNS sizes below 512 count as 512
    ("A",   True,  None,  65535, False),
    ("SRV", False, None,  512,   True),
    ("SRV", False, 1232,  1232,  True),
    ("SRV", True,  None,  65535, False),
])
def test_truncation_to_the_transport_limit(qtype, tcp, edns, limit, truncated):
    records = big_records(400)
    name = "app.mesos." if qtype == "A" else "_app._tcp.mesos."
    reply = ask(name, qtype, records=records, tcp=tcp, edns=edns)
    assert len(reply.pack()) <= limit
    assert reply.header.tc == int(truncated)
    if truncated:
        assert 0 < len(reply.rr) < 400 and all(rr.rtype != QTYPE.OPT for rr in reply.ar[:-1])
        # As many answers as fit: one more would not have.
        assert len(reply.pack()) > limit - 40
    else:
        assert len(reply.rr) == 400
    assert any(rr.rtype == QTYPE.OPT for rr in reply.ar) == (edns is not None)


def test_srv_truncation_drops_additional_first_and_sets_tc():
    records = big_records(14)       # answers fit in 512 bytes, answers + additional do not
    reply = ask("_app._tcp.mesos.", "SRV", records=records)
    assert reply.header.tc == 1
    assert len(reply.rr) == 14 and reply.ar == []
    unlimited = ask("_app._tcp.mesos.", "SRV", records=records, tcp=True)
    assert unlimited.header.tc == 0 and len(unlimited.ar) == 14


def test_truncate_bit_can_be_turned_off():
    reply = ask("app.mesos.", records=big_records(400),
                opts=AnswerOptions(set_truncate_bit=False))
    assert reply.header.tc == 0 and len(reply.pack()) <= 512


def test_replies_are_name_compressed():
    reply = ask("slave.mesos.")
    # 3 answers: each owner is a 2-byte pointer, not a 13-byte name.
    assert len(reply.pack()) == 12 + (13 + 4) + 3 * (2 + 10 + 4)


def test_reply_limit_and_truncate_leave_small_replies_alone():
    query = DNSRecord.question("leader.mesos.")
    assert reply_limit(query, tcp=False) == 512 and reply_limit(query, tcp=True) == 65535
    reply = answer(query, RECORDS, FAKE_DNS, random.Random(0))
    assert truncate(reply, 512).header.tc == 0


def test_a_query_with_two_questions_is_formerr():
    query = DNSRecord.question("leader.mesos.")
    query.add_question(dnslib.DNSQuestion("master.mesos."))
    assert answer(query, RECORDS, FAKE_DNS, random.Random(0)).header.rcode == RCODE.FORMERR


# --------------------------------------------------------------------------- wire.pack_reply

QTYPES = ("A", "AAAA", "SRV", "ANY", "SOA", "NS", "TXT", "MX")


def both(name: str, qtype: str, records: RecordSet, *, opts: AnswerOptions = FAKE_DNS,
         tcp: bool = False, edns: int | None = None, seed: int = 7) -> tuple[bytes, bytes]:
    """(dnslib's packing of answer(), pack_reply) for one query, with the same random draws."""
    query = DNSRecord.question(name, qtype)
    query.header.id = 4242
    if edns is not None:
        query.add_ar(dnslib.EDNS0(udp_len=edns))
    query = DNSRecord.parse(query.pack())
    reply = answer(query, records, opts, random.Random(seed), tcp=tcp)
    expected = None if reply is None else bytes(reply.pack())
    return expected, pack_reply(query, records, opts, random.Random(seed), tcp=tcp)


@pytest.mark.parametrize("case", EXPECTED, ids=[f"{c['Q']}{c['T']}" for c in EXPECTED])
def test_every_fixture_query_packs_the_same(case):
    expected, packed = both(case["Q"], case["T"], RECORDS)
    assert packed == expected


@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize("name", sorted(RECORDS.names())[:60] + ["missing.mesos.", "mesos.",
                                                                   "example.com.", "Leader.MESOS."])
def test_every_fixture_name_and_type_packs_the_same(name, qtype):
    for tcp, edns in ((False, None), (True, None), (False, 1232)):
        expected, packed = both(name, qtype, RECORDS, tcp=tcp, edns=edns)
        assert packed == expected, (name, qtype, tcp, edns)


@pytest.mark.parametrize("count", [1, 14, 30, 200])
@pytest.mark.parametrize("qtype, tcp, edns", [
    ("SRV", False, None), ("SRV", False, 1232), ("SRV", True, None),
    ("A", False, None), ("A", False, 4096), ("A", True, None)])
def test_big_answers_and_truncation_pack_the_same(count, qtype, tcp, edns):
    name = "app.mesos." if qtype == "A" else "_app._tcp.mesos."
    for opts in (FAKE_DNS, AnswerOptions(set_truncate_bit=False, ttl=0, srv_weight=5)):
        expected, packed = both(name, qtype, big_records(count), opts=opts, tcp=tcp, edns=edns)
        assert packed == expected


def test_pointers_never_point_past_16383():
    """dnslib masks a pointer to an offset past 14 bits (pointing into the wrong place); ours
    are left uncompressed there, and the reply reads back whole."""
    records = big_records(400)
    packed = pack_reply(DNSRecord.parse(DNSRecord.question("_app._tcp.mesos.", "SRV").pack()),
                        records, FAKE_DNS, random.Random(1), tcp=True)
    assert len(packed) > 16384
    reply = DNSRecord.parse(packed)
    assert sorted((str(rr.rdata.target), rr.rdata.port) for rr in reply.rr) == \
        sorted(records.srv["_app._tcp.mesos."])
    assert {str(rr.rname) for rr in reply.ar} == {target for target, _ in
                                                  records.srv["_app._tcp.mesos."]}
    assert all(str(rr.rdata) == records.a[str(rr.rname)][0] for rr in reply.ar)


LABEL = st.text("abcxyz019-_", min_size=1, max_size=12)
NAME = st.builds(lambda parts: ".".join(parts) + ".mesos.", st.lists(LABEL, min_size=1, max_size=3))
IPV4 = st.builds(lambda n: f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}",
                 st.integers(0, 2**24 - 1))
IPV6 = st.builds(lambda n: str(ipaddress.IPv6Address((0xFD << 120) + n)), st.integers(0, 2**64))


@st.composite
def record_sets(draw):
    names = draw(st.lists(NAME, min_size=1, max_size=8, unique=True))
    a = {n: tuple(draw(st.lists(IPV4, min_size=1, max_size=4, unique=True)))
         for n in names if draw(st.booleans())}
    aaaa = {n: tuple(draw(st.lists(IPV6, min_size=1, max_size=3, unique=True)))
            for n in names if draw(st.booleans())}
    srv = {"_" + n: tuple(draw(st.lists(st.tuples(st.sampled_from(names + [n.upper()]),
                                                  st.integers(0, 65535)),
                                        min_size=1, max_size=40, unique=True)))
           for n in names if draw(st.booleans())}
    return RecordSet("mesos", a, aaaa, srv)


@settings(max_examples=200, deadline=None)
@given(records=record_sets(), pick=st.integers(0, 1000), qtype=st.sampled_from(QTYPES),
       tcp=st.booleans(), edns=st.sampled_from([None, 512, 700, 1232]), seed=st.integers(0, 99),
       upper=st.booleans(), truncate_bit=st.booleans())
def test_random_record_sets_pack_the_same(records, pick, qtype, tcp, edns, seed, upper,
                                          truncate_bit):
    names = sorted(records.names()) + ["missing.mesos."]
    name = names[pick % len(names)]
    opts = AnswerOptions(ttl=pick % 120, srv_weight=pick % 3, set_truncate_bit=truncate_bit)
    expected, packed = both(name.upper() if upper else name, qtype, records, opts=opts, tcp=tcp,
                            edns=edns, seed=seed)
    assert packed == expected


def test_the_fast_path_is_taken_for_srv():
    """The point of the module: an SRV reply is written without dnslib's RR objects."""
    calls = []
    records = big_records(20)
    query = DNSRecord.parse(DNSRecord.question("_app._tcp.mesos.", "SRV").pack())
    original = wire.answer
    wire.answer = lambda *args, **kwargs: calls.append(args) or original(*args, **kwargs)
    try:
        assert pack_reply(query, records, FAKE_DNS, random.Random(0)) is not None
    finally:
        wire.answer = original
    assert calls == []
    assert QTYPE.SRV in {rr.rtype for rr in DNSRecord.parse(
        pack_reply(query, records, FAKE_DNS, random.Random(0))).rr}


@pytest.mark.parametrize("name, tcp", [("_app._tcp.mesos.", True), ("_APP._tcp.mesos.", True),
                                       ("app.mesos.", True), ("_app._tcp.mesos.", False)])
def test_another_order_holds_the_same_records(name, tcp):
    """Reshuffled pieces (lower-case question, untruncated) or a fresh answer otherwise: the
    same header, question and records; over UDP a truncated subset that still fits."""
    qtype = "A" if name == "app.mesos." else "SRV"
    query = DNSRecord.parse(DNSRecord.question(name, qtype).pack())
    reply = wire.packed_reply(query, big_records(30), FAKE_DNS, random.Random(3), tcp=tcp)
    first = DNSRecord.parse(reply.data)
    orders = set()
    for _ in range(10):
        other = DNSRecord.parse(reply.another())
        assert (other.header.tc, len(other.rr), other.q) == (first.header.tc, len(first.rr), first.q)
        assert sorted(map(zone_line, other.ar)) == sorted(map(zone_line, first.ar))
        orders.add(tuple(map(zone_line, other.rr)))
        if tcp:
            assert sorted(map(zone_line, other.rr)) == sorted(map(zone_line, first.rr))
        else:
            assert len(reply.another()) <= 512
    assert len(orders) > 1
