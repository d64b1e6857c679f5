"""meseta.frameworks.marathon.constraints: parsing, validation, placement, scale-down choice."""

import re
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meseta.frameworks.marathon.constraints import (
    BAD_OPERATOR,
    GROUP_BY_VALUE,
    IS_VALUE,
    MAX_PER_VALUE,
    MAX_REGEX_LENGTH,
    REGEX_REQUIRED,
    UNIQUE_VALUE,
    WRONG_SIZE,
    Constraint,
    ConstraintError,
    KillCandidate,
    Operator,
    Placed,
    SafeRegex,
    UnsafeRegex,
    feasible,
    field_value,
    format_attribute,
    parse_constraint,
    parse_constraints,
    select_for_kill,
    validate_constraints,
)
from meseta.proto import Offer
from meseta.resources import Resources

# --------------------------------------------------------------------------- builders


def make_offer(hostname="agent1", **attributes):
    return Offer(id="o1", framework_id="fw", agent_id=f"id-{hostname}", hostname=hostname,
                 role="*", resources=Resources.parse("cpus:4;mem:1024"), attributes=attributes)


def placed(*specs):
    """placed("agent1", ("agent2", {"rack": "r1"})) -> [Placed, ...]"""
    return [Placed(s) if isinstance(s, str) else Placed(*s) for s in specs]


def decide(constraints, offer, instances=()):
    return feasible(offer, instances, parse_constraints(constraints))


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("raw, expected", [
    (["hostname", "UNIQUE"], Constraint("hostname", Operator.UNIQUE)),
    (["@hostname", "unique"], Constraint("@hostname", Operator.UNIQUE)),
    (["rack", "CLUSTER", "r1"], Constraint("rack", Operator.CLUSTER, "r1")),
    (["rack", "CLUSTER"], Constraint("rack", Operator.CLUSTER)),
    (["rack", "GROUP_BY"], Constraint("rack", Operator.GROUP_BY)),
    (["rack", "GROUP_BY", "3"], Constraint("rack", Operator.GROUP_BY, "3")),
    (["rack", "LIKE", "r[12]"], Constraint("rack", Operator.LIKE, "r[12]")),
    (["rack", "Unlike", "r1"], Constraint("rack", Operator.UNLIKE, "r1")),
    (["hostname", "MAX_PER", "2"], Constraint("hostname", Operator.MAX_PER, "2")),
    (["level", "IS", "1.5"], Constraint("level", Operator.IS, "1.5")),
    (("rack", "IS", "us-east/1a_b"), Constraint("rack", Operator.IS, "us-east/1a_b")),
])
def test_parse(raw, expected):
    constraint = parse_constraint(raw)
    assert constraint == expected
    assert parse_constraint(constraint.to_json()) == constraint


def test_parsed_regex_is_compiled_once():
    constraint = parse_constraint(["rack", "LIKE", "r[0-9]+"])
    assert constraint.regex.fullmatch("r12") and not constraint.regex.fullmatch("r12a")


@pytest.mark.parametrize("raw, message", [
    (["hostname", "UNIQUE", "x"], UNIQUE_VALUE),
    (["hostname", "UNIQUE", ""], UNIQUE_VALUE),
    (["rack", "GROUP_BY", "many"], GROUP_BY_VALUE),
    (["rack", "GROUP_BY", "1.5"], GROUP_BY_VALUE),
    (["rack", "MAX_PER"], MAX_PER_VALUE),
    (["rack", "MAX_PER", "two"], MAX_PER_VALUE),
    (["rack", "MAX_PER", "99999999999"], MAX_PER_VALUE),
    (["rack", "LIKE"], REGEX_REQUIRED),
    (["rack", "UNLIKE", ""], REGEX_REQUIRED),
    (["rack", "IS"], IS_VALUE),
    (["rack", "IS", "[1-2]"], IS_VALUE),
    (["rack", "IS", "a b"], IS_VALUE),
    (["rack", "EQUALS", "r1"], BAD_OPERATOR),
    (["rack"], WRONG_SIZE),
    (["rack", "LIKE", "a", "b"], WRONG_SIZE),
    ([], WRONG_SIZE),
    (["", "UNIQUE"], "missing field for constraint declaration"),
])
def test_invalid_constraint(raw, message):
    assert validate_constraints([["hostname", "UNIQUE"], raw]) == [("/constraints(1)", message)]


def test_invalid_regex_carries_pythons_reason():
    [(path, message)] = validate_constraints([["rack", "LIKE", "r[1"]])
    assert path == "/constraints(0)"
    assert message.startswith("'r[1' is not a valid regular expression (r[1)\n")
    assert "unterminated character set" in message


def test_every_violation_is_reported_with_its_path():
    raw = [["a", "UNIQUE", "x"], "hostname:UNIQUE", ["a", 3, "b"], ["a", "LIKE", "("]]
    violations = validate_constraints(raw, path="/apps(0)/constraints")
    assert [path for path, _ in violations] == [
        "/apps(0)/constraints(0)", "/apps(0)/constraints(1)", "/apps(0)/constraints(2)(1)",
        "/apps(0)/constraints(3)"]
    assert violations[1][1] == "error.expected.jsarray"
    assert violations[2][1] == "error.expected.jsstring"
    with pytest.raises(ConstraintError) as error:
        parse_constraints(raw)
    assert len(error.value.violations) == 4


@pytest.mark.parametrize("raw", [None, []])
def test_no_constraints(raw):
    assert parse_constraints(raw) == [] and validate_constraints(raw) == []


def test_constraints_must_be_an_array():
    assert validate_constraints({"hostname": "UNIQUE"}) == [
        ("/constraints", "error.expected.jsarray")]


# --------------------------------------------------------------------------- safe regexes


@pytest.mark.parametrize("pattern, feature", [
    (r"(a)\1", "backreferences"),
    (r"(?=a)a", "lookarounds"),
    (r"(?<!a)b", "lookarounds"),
    (r"(?>a+)b", "atomic groups"),
    (r"a++b", "possessive quantifiers"),
    (r"(a)?(?(1)b|c)", "conditional groups"),
])
def test_backtracking_features_are_refused(pattern, feature):
    with pytest.raises(UnsafeRegex, match=feature):
        SafeRegex(pattern)
    [(_, message)] = validate_constraints([["rack", "LIKE", pattern]])
    assert "is not allowed as a regular expression" in message and feature in message


@pytest.mark.parametrize("pattern", ["(x{100}){100}", "a{2000}", "(a|b){0,1500}",
                                     "a" * (MAX_REGEX_LENGTH + 1)])
def test_oversized_patterns_are_refused(pattern):
    with pytest.raises(UnsafeRegex):
        SafeRegex(pattern)


@pytest.mark.parametrize("pattern", [r"(a+)+$", r"(a|a)*b", r"(a*)*b", r"(.*a){12}", r"(\w+\s?)+$"])
def test_catastrophic_patterns_run_in_linear_time(pattern):
    # Each of these takes Python's backtracking `re` minutes to hours on this input.
    assert SafeRegex(pattern).fullmatch("a" * 5000 + "!") is False


@pytest.mark.parametrize("pattern, text, matches", [
    ("r1", "r1", True),
    ("r1", "r12", False),          # full match, as Java's String.matches
    ("r1|r2", "r2", True),
    ("^r[0-9]$", "r7", True),
    ("(?i)AGENT-\\d+", "agent-12", True),
    ("a.c", "a\nc", False),
    ("(?s)a.c", "a\nc", True),
    ("\\bweb\\b.*", "web-1", True),
    ("x\\B.*", "x", False),
    ("[^ab]+", "cd", True),
    ("[^ab]+", "ca", False),
    ("10\\.0\\.[0-9]{1,3}\\.[0-9]{1,3}", "10.0.1.250", True),
    ("", "", True),
    (".*", "anything at all", True),
])
def test_safe_regex_table(pattern, text, matches):
    assert SafeRegex(pattern).fullmatch(text) is matches
    assert (re.fullmatch(pattern, text) is not None) is matches


_ATOMS = st.sampled_from(["a", "b", ".", "[ab]", "[^a]", "\\d", "\\w", "\\s", "[a-c1]", "\\.",
                          "(?i:A)", "(?:)"])
_ANCHORS = st.sampled_from(["^", "$", "\\b", "\\B", "\\A", "\\Z"])
_QUANTIFIERS = st.sampled_from(["", "", "*", "+", "?", "*?", "+?", "??", "{2}", "{1,3}", "{,2}",
                                "{2,}"])


def _patterns():
    def extend(children):
        group = st.builds(lambda p, q: f"({p}){q}", children, _QUANTIFIERS)
        concat = st.builds(lambda p, q: p + q, children, children)
        branch = st.builds(lambda p, q: f"{p}|{q}", children, children)
        return group | concat | branch
    leaf = st.builds(lambda a, q: a + q, _ATOMS, _QUANTIFIERS) | _ANCHORS
    return st.recursive(leaf, extend, max_leaves=8)


@settings(max_examples=600, deadline=None)
@given(pattern=_patterns(), texts=st.lists(st.text(alphabet="ab1 \nAc", max_size=8), max_size=6))
def test_safe_regex_agrees_with_python(pattern, texts):
    regex = SafeRegex(pattern)
    for text in texts:
        assert regex.fullmatch(text) == (re.fullmatch(pattern, text) is not None), (pattern, text)


# --------------------------------------------------------------------------- field values


@pytest.mark.parametrize("value, text", [
    ("r1", "r1"),
    (10.0, "10"),
    (1.5, "1.5"),
    (2.0004, "2"),
    (2.0006, "2.001"),
    (1000.0, "1000"),
    (0.1 + 0.2, "0.3"),
    (-0.0001, "0"),
    (((5, 9), (1, 2)), "[1-2,5-9]"),
    (frozenset({"b", "a"}), "{a,b}"),
])
def test_format_attribute(value, text):
    assert format_attribute(value) == text


def test_field_values():
    attrs = {"rack": "r1", "region": "eu", "zone": "eu-1a"}
    assert field_value("hostname", "agent1", attrs) == "agent1"
    assert field_value("@hostname", "agent1", attrs) == "agent1"
    assert field_value("@region", "agent1", attrs) == "eu"
    assert field_value("@zone", "agent1", attrs) == "eu-1a"
    assert field_value("rack", "agent1", attrs) == "r1"
    assert field_value("gpu", "agent1", attrs) is None


# --------------------------------------------------------------------------- placement


UNIQUE_HOST = [["hostname", "UNIQUE"]]


@pytest.mark.parametrize("constraints, offer, instances, reason", [
    # UNIQUE
    (UNIQUE_HOST, make_offer("agent2"), placed("agent1"), ""),
    (UNIQUE_HOST, make_offer("agent2"), placed("agent1", "agent2"),
     "UNIQUE hostname: agent2 already runs an instance"),
    ([["rack", "UNIQUE"]], make_offer("a3", rack="r1"), placed(("a1", {"rack": "r1"})),
     "UNIQUE rack: rack=r1 already runs an instance"),
    ([["rack", "UNIQUE"]], make_offer("a3", rack="r2"), placed(("a1", {"rack": "r1"}), "a2"), ""),
    # CLUSTER
    ([["rack", "CLUSTER", "r1"]], make_offer("a1", rack="r1"), [], ""),
    ([["rack", "CLUSTER", "r1"]], make_offer("a2", rack="r2"), [],
     "CLUSTER rack: rack=r2 on a2 is not r1"),
    ([["hostname", "CLUSTER", "a1"]], make_offer("a2"), [], "CLUSTER hostname: a2 is not a1"),
    ([["rack", "CLUSTER"]], make_offer("a2", rack="r2"), [], ""),
    ([["rack", "CLUSTER"]], make_offer("a2", rack="r2"), placed(("a1", {"rack": "r2"})), ""),
    ([["rack", "CLUSTER"]], make_offer("a2", rack="r2"), placed(("a1", {"rack": "r1"})),
     "CLUSTER rack: the app runs on rack=r1, not rack=r2 on a2"),
    ([["rack", "CLUSTER"]], make_offer("a2", rack="r2"), placed("a1"),
     "CLUSTER rack: the app runs on agents without rack, not rack=r2 on a2"),
    ([["hostname", "CLUSTER"]], make_offer("a2"), placed("a1"),
     "CLUSTER hostname: the app runs on a1, not a2"),
    ([["level", "CLUSTER", "2.0"]], make_offer("a1", level=2.0), [], ""),
    # LIKE / UNLIKE: full matches
    ([["rack", "LIKE", "r[12]"]], make_offer("a1", rack="r2"), [], ""),
    ([["rack", "LIKE", "r[12]"]], make_offer("a1", rack="r23"), [],
     "LIKE rack: rack=r23 on a1 does not match 'r[12]'"),
    ([["hostname", "LIKE", "web-.*"]], make_offer("db-1"), [],
     "LIKE hostname: db-1 does not match 'web-.*'"),
    ([["rack", "UNLIKE", "r1"]], make_offer("a1", rack="r1"), [],
     "UNLIKE rack: rack=r1 on a1 matches 'r1'"),
    ([["rack", "UNLIKE", "r1"]], make_offer("a1", rack="r11"), [], ""),
    ([["level", "LIKE", "1\\.5"]], make_offer("a1", level=1.5), [], ""),
    ([["ports", "LIKE", "\\[1-2,5-9\\]"]], make_offer("a1", ports=((5, 9), (1, 2))), [], ""),
    # MAX_PER
    ([["rack", "MAX_PER", "2"]], make_offer("a3", rack="r1"), placed(("a1", {"rack": "r1"})), ""),
    ([["rack", "MAX_PER", "2"]], make_offer("a3", rack="r1"),
     placed(("a1", {"rack": "r1"}), ("a2", {"rack": "r1"})),
     "MAX_PER rack: rack=r1 already has 2 instances (at most 2)"),
    ([["hostname", "MAX_PER", "1"]], make_offer("a1"), placed("a1"),
     "MAX_PER hostname: a1 already has 1 instance (at most 1)"),
    # IS: text equality, scalars to the nearest thousandth
    ([["rack", "IS", "r1"]], make_offer("a1", rack="r1"), [], ""),
    ([["rack", "IS", "r1"]], make_offer("a1", rack="r2"), [], "IS rack: rack=r2 on a1 is not r1"),
    ([["level", "IS", "10"]], make_offer("a1", level=10.0), [], ""),
    ([["level", "IS", "10.0001"]], make_offer("a1", level=10.0), [], ""),
    ([["level", "IS", "10.01"]], make_offer("a1", level=10.0), [],
     "IS level: level=10 on a1 is not 10.01"),
    ([["level", "IS", "ten"]], make_offer("a1", level=10.0), [],
     "IS level: level=10 on a1 is not ten"),
    ([["hostname", "IS", "a1"]], make_offer("a1"), [], ""),
    # fault domain fields read the agent's region/zone attributes
    ([["@zone", "GROUP_BY"]], make_offer("a2", zone="z1"), placed(("a1", {"zone": "z1"})), ""),
    ([["@region", "IS", "eu"]], make_offer("a1", region="us"), [],
     "IS @region: @region=us on a1 is not eu"),
])
def test_placement(constraints, offer, instances, reason):
    assert decide(constraints, offer, instances) == (not reason, reason)


@pytest.mark.parametrize("operator, value", [
    ("UNIQUE", None), ("CLUSTER", "r1"), ("CLUSTER", None), ("GROUP_BY", None), ("LIKE", ".*"),
    ("MAX_PER", "3"), ("IS", "r1"),
])
def test_missing_attribute_fails_every_operator_but_unlike(operator, value):
    constraint = ["rack", operator] + ([value] if value else [])
    assert decide([constraint], make_offer("a1")) == (
        False, f"{operator} rack: a1 has no attribute rack")


def test_missing_attribute_passes_unlike():
    assert decide([["rack", "UNLIKE", ".*"]], make_offer("a1")) == (True, "")


def test_missing_zone_names_the_attribute():
    assert decide([["@zone", "UNIQUE"]], make_offer("a1")) == (
        False, "UNIQUE @zone: a1 has no attribute zone")


def test_first_failing_constraint_gives_the_reason():
    constraints = [["rack", "LIKE", "r.*"], ["hostname", "UNIQUE"], ["rack", "IS", "r9"]]
    offer = make_offer("a1", rack="r1")
    assert decide(constraints, offer, placed("a1"))[1] == (
        "UNIQUE hostname: a1 already runs an instance")
    assert decide(constraints, offer)[1] == "IS rack: rack=r1 on a1 is not r9"


def test_instances_not_yet_on_an_agent_are_ignored():
    assert decide(UNIQUE_HOST, make_offer("a1"), [("", {}), Placed("a2")]) == (True, "")


def test_plain_tuples_and_placed_are_the_same():
    offer = make_offer("a1", rack="r1")
    constraints = [["rack", "MAX_PER", "1"]]
    assert decide(constraints, offer, [("a2", {"rack": "r1"})]) == \
        decide(constraints, offer, placed(("a2", {"rack": "r1"})))


# GROUP_BY (Marathon's rule): a value no instance uses is always accepted; a used one only while
# it is among the least used, and only once at least `count` values are in use.

R1, R2, R3 = ({"rack": r} for r in ("r1", "r2", "r3"))


@pytest.mark.parametrize("value, instances, reason", [
    ("r1", [], ""),
    ("r2", [R1], ""),
    ("r1", [R1, R2], ""),
    ("r1", [R1, R1, R2], "GROUP_BY rack: rack=r1 already has 2 instances, rack=r2 has 1"),
    ("r3", [R1, R1, R2], ""),
])
def test_group_by_without_count(value, instances, reason):
    offer = make_offer("ax", rack=value)
    got = decide([["rack", "GROUP_BY"]], offer, [(f"a{i}", a) for i, a in enumerate(instances)])
    assert got == (not reason, reason)


@pytest.mark.parametrize("value, instances, reason", [
    ("r1", [R1], "GROUP_BY rack: rack=r1 already has 1 instance; waiting for an offer with "
                 "another rack (1 of 3 values in use)"),
    ("r2", [R1], ""),
    ("r1", [R1, R2], "GROUP_BY rack: rack=r1 already has 1 instance; waiting for an offer with "
                     "another rack (2 of 3 values in use)"),
    ("r1", [R1, R2, R3], ""),
])
def test_group_by_with_count(value, instances, reason):
    offer = make_offer("ax", rack=value)
    instances = [(f"a{i}", attrs) for i, attrs in enumerate(instances)]
    got = decide([["rack", "GROUP_BY", "3"]], offer, instances)
    assert got == (not reason, reason)


@settings(max_examples=200, deadline=None)
@given(racks=st.integers(1, 5), launches=st.integers(0, 30),
       order=st.randoms(use_true_random=False))
def test_group_by_keeps_racks_even_whatever_offers_come(racks, launches, order):
    constraints = parse_constraints([["rack", "GROUP_BY", str(racks)]])
    offers = [make_offer(f"a{r}", rack=f"r{r}") for r in range(racks)]
    instances = []
    for _ in range(launches):
        order.shuffle(offers)  # offers arrive in any order; the scheduler takes the first that fits
        offer = next(o for o in offers if feasible(o, instances, constraints).ok)
        instances.append((offer.hostname, offer.attributes))
    counts = Counter(attrs["rack"] for _, attrs in instances)
    assert max(counts.values(), default=0) - min(counts.values(), default=0) <= 1
    assert len(counts) == min(racks, launches)


# --------------------------------------------------------------------------- scale-down


def make_instance(instance_id, hostname="a1", since=0.0, state="TASK_RUNNING", healthy=None,
                  **attrs):
    return KillCandidate(instance_id, hostname, attrs, since, state, healthy)


def ids(instances):
    return [i.instance_id for i in instances]


def test_youngest_first_is_the_default():
    instances = [make_instance("old", since=1), make_instance("new", since=3),
                 make_instance("mid", since=2)]
    assert ids(select_for_kill(instances, [], 2)) == ["new", "mid"]
    assert ids(select_for_kill(instances, [], 2, "OLDEST_FIRST")) == ["old", "mid"]


def test_broken_instances_die_first():
    instances = [
        make_instance("running", since=9),
        make_instance("starting", since=1, state="TASK_STARTING"),
        make_instance("staging", since=1, state="TASK_STAGING"),
        make_instance("unhealthy", since=1, healthy=False),
        make_instance("unreachable", since=1, state="TASK_UNREACHABLE"),
        make_instance("healthy", since=10, healthy=True),
    ]
    assert ids(select_for_kill(instances, [], 6)) == [
        "unreachable", "unhealthy", "staging", "starting", "healthy", "running"]


def test_sentenced_instances_go_first_even_beyond_count():
    instances = [make_instance(f"i{n}", since=n) for n in range(5)]
    assert ids(select_for_kill(instances, [], 1, sentenced={"i0", "i1"})) == ["i0", "i1"]
    assert ids(select_for_kill(instances, [], 3, sentenced={"i0"})) == ["i0", "i4", "i3"]


def test_count_is_capped_by_the_instances():
    instances = [make_instance("i1"), make_instance("i2")]
    assert sorted(ids(select_for_kill(instances, [], 5))) == ["i1", "i2"]
    assert select_for_kill(instances, [], 0) == [] and select_for_kill(instances, [], -1) == []


def test_unknown_kill_selection():
    with pytest.raises(ValueError, match="killSelection"):
        select_for_kill([], [], 1, "RANDOM")


def test_group_by_kills_from_the_largest_group_first():
    # r1 holds the three youngest, yet the balance decides: r1 has 4, r2 has 2.
    instances = [make_instance(f"r1-{n}", f"a{n}", since=10 + n, rack="r1") for n in range(4)]
    instances += [make_instance(f"r2-{n}", f"b{n}", since=n, rack="r2") for n in range(2)]
    constraints = parse_constraints([["rack", "GROUP_BY"]])
    assert ids(select_for_kill(instances, constraints, 2)) == ["r1-3", "r1-2"]
    assert ids(select_for_kill(instances, constraints, 4)) == ["r1-3", "r1-2", "r1-1", "r2-1"]


def test_group_by_balances_every_constraint_in_order():
    constraints = parse_constraints([["rack", "GROUP_BY"], ["hostname", "GROUP_BY"]])
    instances = [
        make_instance("x1", "a1", since=1, rack="r1"),
        make_instance("x2", "a1", since=2, rack="r1"),
        make_instance("x3", "a2", since=3, rack="r1"),
        make_instance("x4", "a3", since=4, rack="r2"),
    ]
    # rack r1 is largest; within it host a1 is largest; then age picks x2.
    assert ids(select_for_kill(instances, constraints, 1)) == ["x2"]


@settings(max_examples=200, deadline=None)
@given(sizes=st.lists(st.integers(1, 6), min_size=1, max_size=5), data=st.data())
def test_group_by_survivors_stay_spread(sizes, data):
    instances = [make_instance(f"r{r}-{n}", f"h{r}-{n}", since=data.draw(st.floats(0, 100)),
                               rack=f"r{r}")
                 for r, size in enumerate(sizes) for n in range(size)]
    count = data.draw(st.integers(0, len(instances)))
    constraints = parse_constraints([["rack", "GROUP_BY"]])
    killed = set(ids(select_for_kill(instances, constraints, count)))
    assert len(killed) == count
    before = Counter(i.attributes["rack"] for i in instances)
    after = Counter({rack: 0 for rack in before})
    after.update(i.attributes["rack"] for i in instances if i.instance_id not in killed)
    # every kill came from a largest group: the spread never widens, and shrinks while uneven
    spread_before = max(before.values()) - min(before.values())
    assert max(after.values()) - min(after.values()) <= max(1, spread_before)
    largest_after = max(after.values())
    assert all(after[rack] == n or after[rack] >= largest_after - 1 for rack, n in before.items())
