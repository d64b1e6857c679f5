"""meseta.resources: the resource model, its text/JSON/wire forms and Mesos attributes."""

import json

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meseta.resources import (
    EMPTY,
    MIN_ALLOCATABLE,
    Resources,
    attributes_summary,
    attributes_to_mesos,
    parse_attributes,
    parse_reserved,
    reserved_from_mesos,
)

R = Resources.parse


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("text, scalars, ranges, sets", [
    ("cpus:4;mem:2048;disk:1000", {"cpus": 4, "mem": 2048, "disk": 1000}, {}, {}),
    ("cpus:0.5", {"cpus": 0.5}, {}, {}),
    (" cpus : 2 ; mem:1 ;", {"cpus": 2, "mem": 1}, {}, {}),
    ("cpus(*):2", {"cpus": 2}, {}, {}),
    ("cpus:1;cpus:2", {"cpus": 3}, {}, {}),
    ("cpus:0.0001", {}, {}, {}),
    ("cpus:0;mem:0", {}, {}, {}),
    ("", {}, {}, {}),
    ("ports:[31000-32000,33000-33010]", {}, {"ports": ((31000, 32000), (33000, 33010))}, {}),
    ("ports:[3-4, 1-2]", {}, {"ports": ((1, 4),)}, {}),
    ("ports:[5-9,1-6]", {}, {"ports": ((1, 9),)}, {}),
    ("ports:[80]", {}, {"ports": ((80, 80),)}, {}),
    ("ports:[]", {}, {}, {}),
    ("bugs:{a,b,c}", {}, {}, {"bugs": {"a", "b", "c"}}),
    ("bugs:{ a , b }", {}, {}, {"bugs": {"a", "b"}}),
    ("gpus:1;nvidia.com/gpu:2", {"gpus": 1, "nvidia.com/gpu": 2}, {}, {}),
])
def test_parse_text(text, scalars, ranges, sets):
    parsed = R(text)
    assert parsed.scalars == scalars
    assert parsed.ranges == ranges
    assert parsed.sets == sets


@pytest.mark.parametrize("text, offending", [
    ("cpus:abc", "cpus:abc"),
    ("cpus:4;mem:-1", "mem:-1"),
    ("cpus:nan", "cpus:nan"),
    ("cpus:inf", "cpus:inf"),
    ("cpus", "cpus"),
    (":4", ":4"),
    ("a b:4", "a b:4"),
    ("ports:[5-3]", "ports:[5-3]"),
    ("ports:[1-x]", "ports:[1-x]"),
    ("ports:[1-2", "ports:[1-2"),
    ("bugs:{a,b", "bugs:{a,b"),
    ("cpus:4;cpus(web):2", "cpus(web):2"),
    ("cpus(web:2", "cpus(web:2"),
    ("cpus(-x):2", "cpus(-x):2"),
    ("[{\"name\":\"cpus\"", "invalid resources JSON"),
])
def test_parse_rejects_bad_input_naming_the_token(text, offending):
    with pytest.raises(ValueError) as error:
        R(text)
    assert offending in str(error.value)


def test_parse_rejects_a_name_used_with_two_types():
    with pytest.raises(ValueError, match="'cpus'"):
        R("cpus:1;cpus:[1-2]")


def test_parse_rejects_non_text():
    with pytest.raises(ValueError):
        Resources.parse(None)  # type: ignore[arg-type]


def test_parse_json_array():
    text = json.dumps([
        {"name": "cpus", "type": "SCALAR", "scalar": {"value": 4}, "role": "*"},
        {"name": "mem", "scalar": {"value": "2048"}},
        {"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 31000, "end": "31010"}]}},
        {"name": "bugs", "type": "SET", "set": {"item": ["a", "b"]}},
    ])
    assert R(text) == R("cpus:4;mem:2048;ports:[31000-31010];bugs:{a,b}")


def test_parse_json_rejects_reserved_role_naming_it():
    text = json.dumps([{"name": "cpus", "type": "SCALAR", "scalar": {"value": 4}, "role": "web"}])
    with pytest.raises(ValueError, match="web"):
        R(text)


@pytest.mark.parametrize("text, expected", [
    ("cpus:4;cpus(web):2;mem(web):512", {"*": "cpus:4", "web": "cpus:2;mem:512"}),
    ("cpus(web):2", {"web": "cpus:2"}),
    ("cpus(a/b):2;cpus(*):1", {"a/b": "cpus:2", "*": "cpus:1"}),
    ("bugs(debug_role):{a,b,c};ports:[1-2]", {"debug_role": "bugs:{a,b,c}", "*": "ports:[1-2]"}),
])
def test_parse_reserved(text, expected):
    assert parse_reserved(text) == {role: R(value) for role, value in expected.items()}


def test_parse_reserved_default_role_and_json():
    assert parse_reserved("cpus:1;mem(*):2", default_role="web") == {
        "web": R("cpus:1"), "*": R("mem:2")}
    items = [{"name": "cpus", "scalar": {"value": 1}, "reservations": [{"role": "a"}, {"role": "a/b"}]},
             {"name": "cpus", "scalar": {"value": 2}}]
    assert parse_reserved(json.dumps(items)) == {"a/b": R("cpus:1"), "*": R("cpus:2")}


# --------------------------------------------------------------------------- constructor


@pytest.mark.parametrize("kwargs, message", [
    ({"scalars": {"cpus": -1}}, "'cpus'"),
    ({"scalars": {"cpus": "x"}}, "'cpus'"),
    ({"scalars": {"cpus": True}}, "'cpus'"),
    ({"scalars": {"": 1}}, "resource name"),
    ({"ranges": {"ports": [(2, 1)]}}, "'ports'"),
    ({"ranges": {"ports": [(1,)]}}, "'ports'"),
    ({"ranges": {"ports": [(-1, 3)]}}, "'ports'"),
    ({"sets": {"bugs": "abc"}}, "'bugs'"),
    ({"sets": {"bugs": ["a,b"]}}, "'bugs'"),
    ({"scalars": {"x": 1}, "sets": {"x": ["a"]}}, "'x'"),
])
def test_constructor_validates(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Resources(**kwargs)


def test_constructor_normalises():
    r = Resources(scalars={"cpus": 0.1234, "mem": 0}, ranges={"ports": [(5, 6), (1, 4)], "x": []},
                  sets={"s": [], "t": ["b", "a"]})
    assert r.scalars == {"cpus": 0.123}
    assert r.ranges == {"ports": ((1, 6),)}
    assert r.sets == {"t": frozenset({"a", "b"})}


# --------------------------------------------------------------------------- accessors and arithmetic


def test_accessors():
    r = R("cpus:4;mem:2048;disk:10;gpus:1;foo:3;ports:[1-2]")
    assert (r.cpus, r.mem, r.disk, r.gpus, r.get("foo"), r.get("bar")) == (4, 2048, 10, 1, 3, 0)
    assert r.ports() == ((1, 2),)
    assert EMPTY.cpus == 0.0 and EMPTY.ports() == ()
    assert not EMPTY and EMPTY.is_empty() and r and not r.is_empty()


def test_scalars_keep_three_decimals():
    assert R("cpus:0.1") + R("cpus:0.2") == R("cpus:0.3")
    assert (R("cpus:0.3") - R("cpus:0.1")).cpus == 0.2
    assert R("cpus:1") - R("cpus:1") == EMPTY


@pytest.mark.parametrize("a, b, total", [
    ("cpus:1;ports:[1-5]", "cpus:2;mem:3;ports:[6-8]", "cpus:3;mem:3;ports:[1-8]"),
    ("ports:[1-5,10-12]", "ports:[3-11]", "ports:[1-12]"),
    ("bugs:{a}", "bugs:{b};other:{c}", "bugs:{a,b};other:{c}"),
    ("", "cpus:1", "cpus:1"),
])
def test_add(a, b, total):
    assert R(a) + R(b) == R(total)
    assert R(b) + R(a) == R(total)


@pytest.mark.parametrize("a, b, left", [
    ("cpus:3;mem:3;ports:[1-8]", "cpus:2;mem:3;ports:[6-8]", "cpus:1;ports:[1-5]"),
    ("ports:[1-12]", "ports:[3-4,7-7]", "ports:[1-2,5-6,8-12]"),
    ("ports:[1-5,10-12]", "ports:[1-5,10-12]", ""),
    ("bugs:{a,b}", "bugs:{a}", "bugs:{b}"),
    ("cpus:1", "", "cpus:1"),
])
def test_sub(a, b, left):
    assert R(a) - R(b) == R(left)


@pytest.mark.parametrize("a, b, short", [
    ("cpus:1", "cpus:2", "cpus"),
    ("cpus:1", "mem:1", "mem"),
    ("ports:[1-5]", "ports:[5-6]", "ports"),
    ("bugs:{a}", "bugs:{b}", "bugs"),
])
def test_sub_of_what_is_not_there_raises(a, b, short):
    with pytest.raises(ValueError, match=f"insufficient {short}"):
        R(a) - R(b)


@pytest.mark.parametrize("big, small, expected", [
    ("cpus:2;mem:10", "cpus:2", True),
    ("cpus:2;mem:10", "cpus:2.001", False),
    ("cpus:2", "mem:1", False),
    ("ports:[1-10,20-30]", "ports:[2-3,20-30]", True),
    ("ports:[1-10,20-30]", "ports:[10-20]", False),
    ("ports:[1-10]", "ports:[11-11]", False),
    ("cpus:1", "ports:[1-1]", False),
    ("bugs:{a,b}", "bugs:{a}", True),
    ("bugs:{a,b}", "bugs:{c}", False),
    ("", "", True),
    ("cpus:1", "", True),
])
def test_contains(big, small, expected):
    assert R(big).contains(R(small)) is expected


def test_meet():
    a = R("cpus:4;mem:10;ports:[1-10];bugs:{a,b};x:1")
    b = R("cpus:2;mem:20;ports:[5-15];bugs:{b,c};y:[1-2]")
    assert a.meet(b) == R("cpus:2;mem:10;ports:[5-10];bugs:{b}")


@pytest.mark.parametrize("ports, count, expected", [
    ("ports:[31000-31002,31005-31010]", 5, (31000, 31001, 31002, 31005, 31006)),
    ("ports:[31000-31002]", 3, (31000, 31001, 31002)),
    ("ports:[31000-31002]", 0, ()),
])
def test_allocate_ports(ports, count, expected):
    assert R(ports).allocate_ports(count) == expected


def test_allocate_ports_short():
    with pytest.raises(ValueError, match="only 3 available"):
        R("ports:[1-3]").allocate_ports(4)
    with pytest.raises(ValueError):
        R("ports:[1-3]").allocate_ports(-1)


# --------------------------------------------------------------------------- output forms


def test_str_and_summary():
    r = R("mem:2048;cpus:0.5;zz:1;ports:[31000-31000,31005-31010];bugs:{b,a}")
    assert str(r) == "cpus:0.5;mem:2048;zz:1;ports:[31000-31000,31005-31010];bugs:{a,b}"
    assert r.summary() == {"cpus": 0.5, "gpus": 0.0, "mem": 2048.0, "disk": 0.0, "zz": 1.0,
                           "ports": "[31000-31000, 31005-31010]", "bugs": "{a, b}"}
    assert "ports" not in EMPTY.summary()
    assert R(repr(r)[len("Resources.parse('"):-2]) == r


def test_to_wire_shape():
    assert R("cpus:1;ports:[1-2];s:{b,a}").to_wire() == {
        "scalars": {"cpus": 1.0}, "ranges": {"ports": [[1, 2]]}, "sets": {"s": ["a", "b"]}}
    assert EMPTY.to_wire() == {}


@pytest.mark.parametrize("wire", [
    None, [], {"bogus": {}}, {"scalars": []}, {"scalars": {"cpus": "x"}},
    {"ranges": {"ports": [[1]]}}, {"ranges": {"ports": [["a", 2]]}}, {"sets": {"s": "ab"}},
    {"sets": {"s": [1]}},
])
def test_from_wire_rejects_malformed(wire):
    with pytest.raises(ValueError):
        Resources.from_wire(wire)


def test_to_mesos_shape():
    assert R("cpus:1;ports:[1-2];s:{a}").to_mesos("web", allocation_role="web") == [
        {"name": "cpus", "type": "SCALAR", "scalar": {"value": 1.0}, "role": "web",
         "allocation_info": {"role": "web"}},
        {"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 1, "end": 2}]},
         "role": "web", "allocation_info": {"role": "web"}},
        {"name": "s", "type": "SET", "set": {"item": ["a"]}, "role": "web",
         "allocation_info": {"role": "web"}},
    ]
    assert "allocation_info" not in R("cpus:1").to_mesos()[0]


def test_from_mesos_is_lenient():
    single = {"name": "cpus", "type": "SCALAR", "scalar": {"value": "1.5"}, "unknown": 1}
    assert Resources.from_mesos(single) == R("cpus:1.5")
    assert Resources.from_mesos([single, dict(single, role="web")]) == R("cpus:3")
    assert Resources.from_mesos([]) == EMPTY


@pytest.mark.parametrize("items, message", [
    ([{"name": "cpus", "type": "SCALAR"}], "cpus"),
    ([{"name": "cpus", "type": "SCALAR", "scalar": {"value": -1}}], "cpus"),
    ([{"name": "cpus", "type": "TEXT", "text": {"value": "x"}}], "TEXT"),
    ([{"type": "SCALAR", "scalar": {"value": 1}}], "None"),
    ([{"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 1}]}}], "ports"),
    (["cpus"], "cpus"),
    ("cpus:1", "JSON array"),
])
def test_from_mesos_rejects(items, message):
    with pytest.raises(ValueError, match=message):
        Resources.from_mesos(items)


def test_reserved_from_mesos_splits_roles():
    items = R("cpus:1").to_mesos() + R("cpus:2;mem:3").to_mesos("web", "web")
    assert reserved_from_mesos(items) == {"*": R("cpus:1"), "web": R("cpus:2;mem:3")}


def test_min_allocatable_default():
    assert MIN_ALLOCATABLE == (R("cpus:0.01"), R("mem:32"))


# --------------------------------------------------------------------------- attributes


def test_parse_attributes():
    attrs = parse_attributes("rack:r1;zone:a;level:10;keys:[1000-1500,1600-1700];ratio:0.5;")
    assert attrs == {"rack": "r1", "zone": "a", "level": 10.0,
                     "keys": ((1000, 1500), (1600, 1700)), "ratio": 0.5}
    assert attributes_summary(attrs) == {"rack": "r1", "zone": "a", "level": 10.0,
                                         "keys": "[1000-1500, 1600-1700]", "ratio": 0.5}
    assert attributes_to_mesos(attrs)[:3] == [
        {"name": "rack", "type": "TEXT", "text": {"value": "r1"}},
        {"name": "zone", "type": "TEXT", "text": {"value": "a"}},
        {"name": "level", "type": "SCALAR", "scalar": {"value": 10.0}},
    ]
    assert attributes_to_mesos({"k": ((1, 2),)}) == [
        {"name": "k", "type": "RANGES", "ranges": {"range": [{"begin": 1, "end": 2}]}}]
    assert parse_attributes("") == {}
    assert parse_attributes("host:10.0.0.1") == {"host": "10.0.0.1"}  # not a number: text


@pytest.mark.parametrize("text, offending", [
    ("rack", "rack"),
    ("rack:", "rack:"),
    ("rack:r1;rack:r2", "rack:r2"),
    ("keys:[5-1]", "keys:[5-1]"),
    ("s:{a,b}", "s:{a,b}"),
    ("a b:1", "a b:1"),
    ("x:a b", "x:a b"),
])
def test_parse_attributes_rejects(text, offending):
    with pytest.raises(ValueError) as error:
        parse_attributes(text)
    assert offending in str(error.value)


# --------------------------------------------------------------------------- properties

names = st.sampled_from(["cpus", "mem", "disk", "gpus", "foo"])
scalar_values = st.integers(min_value=0, max_value=10**9).map(lambda n: n / 1000)
intervals = st.tuples(st.integers(0, 70000), st.integers(0, 200)).map(lambda p: (p[0], p[0] + p[1]))
resources = st.builds(
    Resources,
    scalars=st.dictionaries(names, scalar_values, max_size=5),
    ranges=st.dictionaries(st.sampled_from(["ports", "keys"]), st.lists(intervals, max_size=4),
                           max_size=2),
    sets=st.dictionaries(st.sampled_from(["bugs", "zones"]),
                         st.lists(st.sampled_from("abcdef"), max_size=4), max_size=2),
)


def without_shared_elements(a, b):
    """b minus the range and set elements it shares with a (scalars stay)."""
    shared = a.meet(b)
    return b - Resources(ranges=shared.ranges, sets=shared.sets)


@given(resources, resources)
def test_add_then_sub_is_identity(a, b):
    # Ranges and sets add as unions (a port cannot be there twice), so the identity holds for
    # range/set elements that are not in both; scalars always.
    b = without_shared_elements(a, b)
    assert a + b - b == a
    assert (a + b).contains(a) and (a + b).contains(b)
    assert a + b == b + a


@given(resources, resources)
def test_sub_defined_exactly_when_contained(a, b):
    if a.contains(b):
        assert (a - b) + b == a
    else:
        with pytest.raises(ValueError):
            a - b


@given(resources, resources)
def test_meet_is_contained_in_both(a, b):
    both = a.meet(b)
    assert a.contains(both) and b.contains(both)


@given(resources)
def test_text_round_trip(r):
    assert R(str(r)) == r


@given(resources)
def test_wire_round_trip_through_msgpack(r):
    assert Resources.from_wire(msgpack.unpackb(msgpack.packb(r.to_wire()))) == r


@given(resources)
def test_mesos_round_trip_through_json(r):
    assert Resources.from_mesos(json.loads(json.dumps(r.to_mesos()))) == r
    assert R(json.dumps(r.to_mesos())) == r


@settings(max_examples=200)
@given(st.text(alphabet="cpusmem:;[]{}(),-0123456789. *ab", max_size=30))
def test_parse_never_raises_anything_but_value_error(text):
    try:
        Resources.parse(text)
    except ValueError as error:
        assert str(error)
