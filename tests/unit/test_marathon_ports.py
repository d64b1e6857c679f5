"""meseta.frameworks.marathon.ports: host ports from offers, $PORT variables, service ports."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meseta.frameworks.marathon.ports import (
    LOCAL_PORT_MAX,
    LOCAL_PORT_MIN,
    PortDefinition,
    PortMapping,
    PortRangeExhausted,
    assign_service_ports,
    host_port_requests,
    match_ports,
    port_env,
)
from meseta.resources import EMPTY, Resources

R = Resources.parse
OFFER = R("cpus:4;mem:1024;ports:[31000-31002,31005-31010]")

# --------------------------------------------------------------------------- requests


@pytest.mark.parametrize("definitions, require_ports, mappings, expected", [
    ([], False, None, ()),
    ([PortDefinition(10001), PortDefinition(10002)], False, None, (0, 0)),
    ([PortDefinition(10001), PortDefinition(10002)], True, None, (10001, 10002)),
    ([PortDefinition(0)], True, None, (0,)),
    ([], False, [PortMapping(8080, 0), PortMapping(9090, 31005), PortMapping(53, None)],
     (0, 31005, None)),
    ([PortDefinition(10001)], True, [], ()),  # port mappings win: not host networking
])
def test_host_port_requests(definitions, require_ports, mappings, expected):
    assert host_port_requests(definitions, require_ports, mappings) == expected


# --------------------------------------------------------------------------- host ports


@pytest.mark.parametrize("requests, host_ports, taken", [
    ((), (), ""),
    ((0,), (31000,), "ports:[31000-31000]"),
    ((0, 0, 0, 0), (31000, 31001, 31002, 31005), "ports:[31000-31002,31005-31005]"),
    ((31001, 0, 0), (31001, 31000, 31002), "ports:[31000-31002]"),
    ((0, 31000), (31001, 31000), "ports:[31000-31001]"),
    ((31010,), (31010,), "ports:[31010-31010]"),
    ((None, 0, None), (None, 31000, None), "ports:[31000-31000]"),
    ((None,), (None,), ""),
])
def test_match_ports(requests, host_ports, taken):
    match = match_ports(OFFER, requests)
    assert match and match.reason == ""
    assert match.host_ports == host_ports
    assert match.resources == (R(taken) if taken else EMPTY)
    assert OFFER.contains(match.resources)


@pytest.mark.parametrize("offered, requests, reason", [
    (OFFER, (8080,), "ports: port 8080 not in the offer's [31000-31002,31005-31010]"),
    (OFFER, (8080, 31003, 31004),
     "ports: ports 8080, 31003, 31004 not in the offer's [31000-31002,31005-31010]"),
    (OFFER, (31000, 0, 31000), "ports: port 31000 is requested twice"),
    (OFFER, (0,) * 10, "ports: needs 10 ports, the offer has 9 free in [31000-31002,31005-31010]"),
    (OFFER, (31000,) + (0,) * 9,
     "ports: needs 9 more ports, the offer has 8 free in [31000-31002,31005-31010]"),
    (R("cpus:1"), (0,), "ports: needs 1 ports, the offer has 0 free in no ports"),
    (R("cpus:1"), (80,), "ports: port 80 not in the offer's no ports"),
])
def test_match_ports_failures(offered, requests, reason):
    match = match_ports(offered, requests)
    assert not match
    assert match.reason == reason and match.host_ports == () and match.resources == EMPTY


def test_random_ports_come_from_the_offer_and_are_reproducible():
    requests = (0, 31001, 0, 0)
    first = match_ports(OFFER, requests, random.Random(7))
    again = match_ports(OFFER, requests, random.Random(7))
    assert first.host_ports == again.host_ports
    assert first.host_ports[1] == 31001
    assert len(set(first.host_ports)) == 4 and OFFER.contains(first.resources)


@settings(max_examples=300, deadline=None)
@given(ranges=st.lists(st.tuples(st.integers(1, 200), st.integers(0, 20)), min_size=1, max_size=5),
       fixed=st.lists(st.integers(1, 230), max_size=4, unique=True), dynamic=st.integers(0, 30),
       seed=st.none() | st.integers(0, 1000))
def test_matched_ports_are_offered_distinct_and_honour_fixed_ones(ranges, fixed, dynamic, seed):
    offered = Resources(ranges={"ports": [(b, b + w) for b, w in ranges]})
    requests = tuple(fixed) + (0,) * dynamic
    match = match_ports(offered, requests, None if seed is None else random.Random(seed))
    ports = [p for b, e in offered.ports() for p in range(b, e + 1)]
    fits = set(fixed) <= set(ports) and len(ports) - len(fixed) >= dynamic
    assert bool(match) == fits
    if match:
        assert match.host_ports[:len(fixed)] == tuple(fixed)
        assert len(set(match.host_ports)) == len(requests)
        assert offered.contains(match.resources)
        taken = [p for b, e in match.resources.ports() for p in range(b, e + 1)]
        assert taken == sorted(match.host_ports)


# --------------------------------------------------------------------------- $PORT variables


@pytest.mark.parametrize("host_ports, names, prefix, env", [
    ((), (), "", {}),
    ((31000,), (), "", {"PORT0": "31000", "PORT": "31000", "PORTS": "31000"}),
    ((31000, 31007), ("http", "admin-api"), "", {
        "PORT0": "31000", "PORT1": "31007", "PORT": "31000", "PORTS": "31000,31007",
        "PORT_HTTP": "31000", "PORT_ADMIN_API": "31007"}),
    ((None, 31007), ("dns", None), "", {"PORT1": "31007", "PORT": "31007", "PORTS": "31007"}),
    ((31000,), ("web",), "MESETA_", {"MESETA_PORT0": "31000", "MESETA_PORT": "31000",
                                     "MESETA_PORTS": "31000", "MESETA_PORT_WEB": "31000"}),
])
def test_port_env(host_ports, names, prefix, env):
    assert port_env(host_ports, names, prefix) == env


# --------------------------------------------------------------------------- service ports


@pytest.mark.parametrize("target, original, expected", [
    # new app: lowest free ports of the range
    ({"/a": (0, 0)}, {}, {"/a": (10000, 10001)}),
    # explicit ports are kept, and are taken for everyone else
    ({"/a": (10000, 0)}, {}, {"/a": (10000, 10001)}),
    # other apps' ports, in the target and in the original group, are taken
    ({"/a": (0,), "/b": (10000, 10002)}, {"/gone": (10001,)},
     {"/a": (10003,), "/b": (10000, 10002)}),
    # re-posting 0s keeps the app's previous ports, in their order
    ({"/a": (0, 0)}, {"/a": (10007, 10003)}, {"/a": (10007, 10003)}),
    # ... except those the new definition lists itself
    ({"/a": (10003, 0)}, {"/a": (10007, 10003)}, {"/a": (10003, 10007)}),
    # ... and those outside the range
    ({"/a": (0, 0)}, {"/a": (8080, 10005)}, {"/a": (10005, 10000)}),
    # more ports than before: the extra one is new
    ({"/a": (0, 0, 0)}, {"/a": (10005,)}, {"/a": (10005, 10000, 10001)}),
    # a previous port another app now lists, or that an earlier app (by id) kept, is not reused
    ({"/a": (0,), "/b": (10004,)}, {"/a": (10004,)}, {"/a": (10000,), "/b": (10004,)}),
    ({"/a": (0,), "/b": (0,)}, {"/a": (10004,), "/b": (10004,)}, {"/a": (10004,), "/b": (10000,)}),
    # apps get ports in id order, whatever the dict order
    ({"/b": (0,), "/a": (0,)}, {}, {"/a": (10000,), "/b": (10001,)}),
    # unchanged apps pass through
    ({"/a": (10004,), "/b": ()}, {"/a": (10004,)}, {"/a": (10004,), "/b": ()}),
])
def test_assign_service_ports(target, original, expected):
    assert assign_service_ports(target, original) == expected


def test_service_port_range_excludes_its_upper_bound():
    assert assign_service_ports({"/a": (0, 0)}, low=19999, high=20001) == {"/a": (19999, 20000)}
    with pytest.raises(PortRangeExhausted) as error:
        assign_service_ports({"/a": (0, 0)}, {"/b": (10000,)}, low=10000, high=10002)
    assert str(error.value) == "All ports in the range [10000-10002) are already in use"


def test_default_range_is_marathons():
    assert (LOCAL_PORT_MIN, LOCAL_PORT_MAX) == (10000, 20000)
    full = {"/x": tuple(range(10000, 20000))}
    with pytest.raises(PortRangeExhausted, match=r"\[10000-20000\)"):
        assign_service_ports({**full, "/a": (0,)}, full)


def test_invalid_range():
    with pytest.raises(ValueError, match="invalid service port range"):
        assign_service_ports({}, low=20000, high=10000)


@settings(max_examples=300, deadline=None)
@given(target=st.dictionaries(st.sampled_from(["/a", "/b", "/c", "/d"]), st.lists(
           st.sampled_from([0, 0, 0, 10000, 10001, 10005, 31000]), max_size=4)),
       original=st.dictionaries(st.sampled_from(["/a", "/b", "/e"]),
                                st.lists(st.integers(9998, 10012), max_size=4, unique=True)))
def test_assigned_service_ports_never_collide(target, original):
    low, high = 10000, 10030
    result = assign_service_ports(target, original, low, high)
    assert result.keys() == target.keys()
    listed = {p for ports in target.values() for p in ports if p}
    taken = listed | {p for ports in original.values() for p in ports if p}
    given_out = []
    for app_id, ports in result.items():
        assert 0 not in ports
        for before, after in zip(target[app_id], ports):
            if before:
                assert after == before
            else:
                given_out.append(after)
                assert low <= after < high and after not in listed
                assert after not in taken or after in original.get(app_id, ()), "not its own"
    assert len(given_out) == len(set(given_out)), "a port handed out twice"
