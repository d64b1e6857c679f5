"""meseta.master.allocator: DRF offers, filters, suppression, reservations, min allocatable."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meseta.master.allocator import (
    DEFAULT_REFUSE_SECONDS,
    MAX_REFUSE_SECONDS,
    AgentView,
    Filter,
    Filters,
    FrameworkView,
    Offer,
    Snapshot,
    allocate,
    drop_agent,
    expire,
    refuse,
    revive,
)
from meseta.resources import EMPTY, Resources

R = Resources.parse

# --------------------------------------------------------------------------- builders


def make_agent(agent_id="a1", cpus=4.0, mem=1024.0, ports="", reserved=None, active=True):
    text = f"cpus:{cpus};mem:{mem}" + (f";ports:{ports}" if ports else "")
    return AgentView(agent_id, R(text), {role: R(r) for role, r in (reserved or {}).items()},
                     active)


def make_framework(framework_id="f1", roles=(), suppressed=(), active=True, allocated=None,
                   min_allocatable=None, allocations=0):
    return FrameworkView(framework_id, tuple(roles), frozenset(suppressed), active,
                         {role: R(r) for role, r in (allocated or {}).items()},
                         None if min_allocatable is None else [R(m) for m in min_allocatable],
                         allocations)


def make_snapshot(agents, frameworks, total="cpus:100;mem:100000", now=0.0, weights=None,
                  filters=(), min_allocatable=None, seed=None):
    extra = {} if min_allocatable is None else {"min_allocatable": [R(m) for m in min_allocatable]}
    return Snapshot(list(agents), list(frameworks), R(total), now, weights or {},
                    Filters(filters), seed=seed, **extra)


def summary(offers):
    """(framework, agent, role) for each offer, in the order they were made."""
    return [(o.framework_id, o.agent_id, o.role) for o in offers]


def agents(n, **kwargs):
    return [make_agent(f"a{i}", **kwargs) for i in range(1, n + 1)]


# --------------------------------------------------------------------------- DRF ordering


@pytest.mark.parametrize("frameworks, n_agents, expected", [
    # nothing held: ties broken by id, then shares alternate
    ([make_framework("f1"), make_framework("f2")], 4,
     [("f1", "a1", "*"), ("f2", "a2", "*"), ("f1", "a3", "*"), ("f2", "a4", "*")]),
    # the lower share goes first; its cpu share 10% beats f1's mem share 20%
    ([make_framework("f1", allocated={"*": "cpus:1;mem:20000"}),
      make_framework("f2", allocated={"*": "cpus:10"})], 1, [("f2", "a1", "*")]),
    # equal shares: fewer allocations first, then id
    ([make_framework("f1", allocations=3), make_framework("f2", allocations=1)], 1,
     [("f2", "a1", "*")]),
    # shares grow within the cycle: f2 (0%) takes two agents to reach f1's 8%, then the tie
    # goes to f1, which has had fewer allocations
    ([make_framework("f1", allocated={"*": "cpus:8"}), make_framework("f2")], 3,
     [("f2", "a1", "*"), ("f2", "a2", "*"), ("f1", "a3", "*")]),
])
def test_frameworks_in_drf_order(frameworks, n_agents, expected):
    assert summary(allocate(make_snapshot(agents(n_agents), frameworks))) == expected


@pytest.mark.parametrize("weights, expected_first", [
    ({}, "b"),                         # a holds 20%, b 10%: b goes first
    ({"a": 2.0}, "a"),                 # 20% / 2 == 10%: a tie, broken by name
    ({"a": 4.0}, "a"),                 # 20% / 4 = 5% < 10%
    ({"b": 0.25}, "a"),                # 10% / 0.25 = 40% > 20%
])
def test_roles_in_weighted_drf_order(weights, expected_first):
    frameworks = [make_framework("fa", roles=["a"], allocated={"a": "cpus:20"}),
                  make_framework("fb", roles=["b"], allocated={"b": "cpus:10"})]
    offers = allocate(make_snapshot(agents(1), frameworks, weights=weights))
    assert [o.role for o in offers] == [expected_first]


def test_role_share_sums_every_framework_in_the_role():
    frameworks = [make_framework("f1", roles=["a"], allocated={"a": "cpus:6"}, active=False),
                  make_framework("f2", roles=["a"]),
                  make_framework("f3", roles=["b"], allocated={"b": "cpus:5"})]
    offers = allocate(make_snapshot(agents(1), frameworks))
    assert summary(offers) == [("f3", "a1", "b")]   # a holds 6% (f1's), b 5%


def test_weights_must_be_positive():
    with pytest.raises(ValueError, match="weight"):
        allocate(make_snapshot(agents(1), [make_framework()], weights={"*": 0}))


def test_multi_role_framework_is_sorted_in_each_role():
    # As in Mesos, a framework's share within a role counts only what it holds in that role:
    # f1's offer in role a does not put it behind f2 in role b.
    frameworks = [make_framework("f1", roles=["a", "b"]), make_framework("f2", roles=["b"])]
    offers = allocate(make_snapshot(agents(4), frameworks))
    assert summary(offers) == [("f1", "a1", "a"), ("f1", "a2", "b"), ("f1", "a3", "a"),
                               ("f2", "a4", "b")]


def test_seeded_shuffle_is_deterministic_and_covers_every_agent():
    snapshot = make_snapshot(agents(20), [make_framework("f1"), make_framework("f2")], seed=7)
    first, second = allocate(snapshot), allocate(snapshot)
    assert summary(first) == summary(second)
    assert sorted(o.agent_id for o in first) == sorted(f"a{i}" for i in range(1, 21))
    assert [o.agent_id for o in first] != sorted(o.agent_id for o in first)


# --------------------------------------------------------------------------- offer shape


def test_one_offer_per_agent_with_all_of_it():
    agent = make_agent("a1", cpus=3.5, mem=777, ports="[31000-31010]")
    offers = allocate(make_snapshot([agent], [make_framework("f1"), make_framework("f2")]))
    assert offers == [Offer("f1", "a1", "*", R("cpus:3.5;mem:777;ports:[31000-31010]"), EMPTY)]
    assert offers[0].unreserved == offers[0].resources


def test_nothing_to_offer():
    assert allocate(make_snapshot([], [make_framework()])) == []
    assert allocate(make_snapshot(agents(2), [])) == []
    assert allocate(make_snapshot([AgentView("a1", EMPTY)], [make_framework()])) == []


# --------------------------------------------------------------------------- eligibility


@pytest.mark.parametrize("framework, agent, offered", [
    (make_framework(active=False), make_agent(), False),
    (make_framework(), make_agent(active=False), False),
    (make_framework(suppressed=["*"]), make_agent(), False),
    (make_framework(roles=["a", "b"], suppressed=["a"]), make_agent(), True),
    (make_framework(roles=["a"], suppressed=["b"]), make_agent(), True),
])
def test_inactive_and_suppressed_get_nothing(framework, agent, offered):
    offers = allocate(make_snapshot([agent], [framework]))
    assert bool(offers) is offered
    assert all(o.role not in framework.suppressed_roles for o in offers)


def test_suppressed_framework_leaves_the_agent_to_the_next():
    frameworks = [make_framework("f1", suppressed=["*"]), make_framework("f2")]
    assert summary(allocate(make_snapshot(agents(2), frameworks))) == [
        ("f2", "a1", "*"), ("f2", "a2", "*")]


# --------------------------------------------------------------------------- min allocatable


@pytest.mark.parametrize("cpus, mem, offered", [
    (0.01, 0, True),      # cpus alone is enough
    (0, 32, True),        # so is mem alone
    (0.009, 31, False),   # neither
    (0, 0, False),
])
def test_default_min_allocatable(cpus, mem, offered):
    agent = AgentView("a1", Resources(scalars={"cpus": cpus, "mem": mem, "disk": 100}))
    assert bool(allocate(make_snapshot([agent], [make_framework()]))) is offered


def test_snapshot_min_allocatable():
    snapshot = make_snapshot([make_agent(cpus=1, mem=64)], [make_framework()],
                             min_allocatable=["cpus:2", "mem:128"])
    assert allocate(snapshot) == []


def test_framework_min_allocatable_overrides():
    frameworks = [make_framework("f1", min_allocatable=["cpus:2;mem:2048"]),
                  make_framework("f2")]
    assert summary(allocate(make_snapshot([make_agent(cpus=4, mem=1024)], frameworks))) == [
        ("f2", "a1", "*")]
    tiny = AgentView("a1", R("cpus:0.001;disk:5"))
    frameworks = [make_framework("f1"), make_framework("f2", min_allocatable=["disk:1"])]
    assert summary(allocate(make_snapshot([tiny], frameworks))) == [("f2", "a1", "*")]


# --------------------------------------------------------------------------- reservations


def test_reserved_resources_go_only_to_their_role():
    agent = make_agent("a1", cpus=1, mem=64, reserved={"web": "cpus:2;mem:512"})
    frameworks = [make_framework("f1"), make_framework("f2", roles=["web"])]
    offers = allocate(make_snapshot([agent], frameworks))
    # "*" and "web" tie at share 0; "*" sorts first and takes the unreserved part;
    # web's reservation is still offered to web.
    assert offers == [
        Offer("f1", "a1", "*", R("cpus:1;mem:64"), EMPTY),
        Offer("f2", "a1", "web", R("cpus:2;mem:512"), R("cpus:2;mem:512")),
    ]


def test_role_gets_unreserved_plus_its_reservation_in_one_offer():
    agent = make_agent("a1", cpus=1, mem=64, reserved={"web": "cpus:2"})
    offers = allocate(make_snapshot([agent], [make_framework("f2", roles=["web"])]))
    assert offers == [Offer("f2", "a1", "web", R("cpus:3;mem:64"), R("cpus:2"))]
    assert offers[0].unreserved == R("cpus:1;mem:64")


def test_reservation_without_a_framework_in_its_role_is_not_offered():
    agent = make_agent("a1", cpus=0, mem=0, reserved={"db": "cpus:2;mem:512"})
    assert allocate(make_snapshot([agent], [make_framework("f1")])) == []


def test_reservations_of_several_roles_on_one_agent():
    agent = AgentView("a1", EMPTY, {"a": R("cpus:1"), "b": R("cpus:2"), "c": R("cpus:3")})
    frameworks = [make_framework("fa", roles=["a"], allocated={"a": "cpus:50"}),
                  make_framework("fb", roles=["b"]),
                  make_framework("fc", roles=["c"], suppressed=["c"])]
    assert summary(allocate(make_snapshot([agent], frameworks))) == [
        ("fb", "a1", "b"), ("fa", "a1", "a")]


def test_role_served_through_a_reservation_is_still_sorted_right_afterwards():
    first = AgentView("a1", EMPTY, {"b": R("cpus:10")})
    second = make_agent("a2", cpus=1, mem=64)
    frameworks = [make_framework("fa", roles=["a"], allocated={"a": "cpus:5"}),
                  make_framework("fb", roles=["b"])]
    # b starts below a, takes its 10 cpus on a1, and is then above a for a2
    assert summary(allocate(make_snapshot([first, second], frameworks))) == [
        ("fb", "a1", "b"), ("fa", "a2", "a")]


# --------------------------------------------------------------------------- filters in allocate


def make_filter(framework_id="f1", agent_id="a1", role="*", resources="cpus:4;mem:1024",
                expires_at=10.0):
    return Filter(framework_id, agent_id, role, R(resources), expires_at)


@pytest.mark.parametrize("refused, now, offered_to", [
    ("cpus:4;mem:1024", 0.0, "f2"),            # exactly what is there: filtered
    ("cpus:8;mem:2048", 0.0, "f2"),            # a superset: filtered
    ("cpus:2;mem:1024", 0.0, "f1"),            # more cpus appeared: offered again
    ("cpus:4;mem:1024;ports:[1-2]", 0.0, "f2"),
    ("cpus:4;mem:1024", 10.0, "f1"),           # expired at now
])
def test_filter_withholds_subsets_only(refused, now, offered_to):
    filters = [make_filter("f1", resources=refused, expires_at=10.0)]
    snapshot = make_snapshot([make_agent()], [make_framework("f1"), make_framework("f2")],
                             filters=filters, now=now)
    assert [o.framework_id for o in allocate(snapshot)] == [offered_to]


def test_filter_is_per_agent_and_role():
    filters = [make_filter("f1", agent_id="a1", role="*")]
    snapshot = make_snapshot(agents(2), [make_framework("f1", roles=["*", "x"])], filters=filters)
    assert summary(allocate(snapshot)) == [("f1", "a1", "x"), ("f1", "a2", "*")]


def test_filtered_by_everyone_means_no_offer():
    frameworks = [make_framework(f"f{i}") for i in range(5)]
    filters = [make_filter(f"f{i}") for i in range(5)]
    assert allocate(make_snapshot([make_agent()], frameworks, filters=filters)) == []
    # one of them expired: that one gets it
    filters[3] = make_filter("f3", expires_at=0.0)
    assert summary(allocate(make_snapshot([make_agent()], frameworks, filters=filters))) == [
        ("f3", "a1", "*")]


def test_filters_of_unknown_frameworks_do_not_hide_eligible_ones():
    filters = [make_filter("gone"), make_filter("f1")]
    frameworks = [make_framework("f1"), make_framework("f2")]
    assert summary(allocate(make_snapshot([make_agent()], frameworks, filters=filters))) == [
        ("f2", "a1", "*")]


# --------------------------------------------------------------------------- filter helpers


@pytest.mark.parametrize("refuse_seconds, interval, expires_at", [
    (None, 1.0, 100 + DEFAULT_REFUSE_SECONDS),
    (-1.0, 1.0, 100 + DEFAULT_REFUSE_SECONDS),
    (math.nan, 1.0, 100 + DEFAULT_REFUSE_SECONDS),
    (0.0, 1.0, None),                          # no filter at all
    (2.0, 1.0, 102.0),
    (0.5, 1.0, 101.0),                         # at least one allocation interval
    (1e12, 1.0, 100 + MAX_REFUSE_SECONDS),
    (math.inf, 1.0, 100 + MAX_REFUSE_SECONDS),
])
def test_refuse_durations(refuse_seconds, interval, expires_at):
    filters = refuse(Filters(), "f1", "a1", "*", R("cpus:1"), refuse_seconds, 100.0, interval)
    made = filters.get("f1", "a1", "*")
    assert (made and made.expires_at) == expires_at or (made is None and expires_at is None)
    assert len(filters) == (0 if expires_at is None else 1)


def test_refuse_does_not_change_its_argument_and_replaces_same_key():
    empty = Filters()
    one = refuse(empty, "f1", "a1", "*", R("cpus:1"), 5, 0.0, 1.0)
    two = refuse(one, "f1", "a1", "*", R("cpus:2"), 50, 0.0, 1.0)
    assert len(empty) == 0 and len(one) == 1 and len(two) == 1
    assert one.get("f1", "a1", "*").resources == R("cpus:1")
    assert two.get("f1", "a1", "*") == Filter("f1", "a1", "*", R("cpus:2"), 50.0)
    assert refuse(one, "f1", "a1", "*", EMPTY, 5, 0.0, 1.0) is one


def test_expire():
    filters = Filters([make_filter("f1", expires_at=5.0), make_filter("f2", expires_at=10.0),
                       make_filter("f3", agent_id="a2", expires_at=20.0)])
    assert expire(filters, 4.9) is filters
    assert sorted(f.framework_id for f in expire(filters, 5.0)) == ["f2", "f3"]
    assert sorted(f.framework_id for f in expire(filters, 10.0)) == ["f3"]
    assert len(expire(filters, 20.0)) == 0
    assert len(filters) == 3


@pytest.mark.parametrize("roles, left", [
    (None, {("f2", "*")}),
    ([], {("f2", "*")}),
    (["x"], {("f1", "*"), ("f2", "*")}),
    (["*"], {("f1", "x"), ("f2", "*")}),
    (["*", "x"], {("f2", "*")}),
])
def test_revive(roles, left):
    filters = Filters([make_filter("f1"), make_filter("f1", role="x"), make_filter("f2"),
                       make_filter("f1", agent_id="a2")])
    revived = revive(filters, "f1", roles)
    assert {(f.framework_id, f.role) for f in revived} == left
    assert revive(filters, "nobody") is filters


def test_drop_agent():
    filters = Filters([make_filter("f1", agent_id="a1"), make_filter("f1", agent_id="a2")])
    assert [f.agent_id for f in drop_agent(filters, "a1")] == ["a2"]
    assert drop_agent(filters, "a9") is filters


def test_revive_then_offered_again():
    snapshot = make_snapshot([make_agent()], [make_framework("f1")], filters=[make_filter("f1")])
    assert allocate(snapshot) == []
    snapshot.filters = revive(snapshot.filters, "f1")
    assert summary(allocate(snapshot)) == [("f1", "a1", "*")]


# --------------------------------------------------------------------------- properties

ROLES = ["*", "a", "b"]
MINIMUMS = [R("cpus:2"), R("mem:10"), R("cpus:0.001"), R("cpus:1;mem:1024")]


def minimums(snapshot, framework):
    own = framework.min_allocatable
    return snapshot.min_allocatable if own is None else own


@st.composite
def clusters(draw):
    """A snapshot plus each agent's total and used resources, consistent with each other."""
    n_agents = draw(st.integers(0, 6))
    totals, useds, views = {}, {}, []
    for i in range(n_agents):
        cpus, mem = draw(st.integers(0, 8)), draw(st.integers(0, 4096))
        lo = draw(st.integers(31000, 31050))
        total = Resources(scalars={"cpus": cpus, "mem": mem}, ranges={"ports": [(lo, lo + 20)]})
        used = Resources(scalars={"cpus": draw(st.integers(0, cpus)),
                                  "mem": draw(st.integers(0, mem))},
                         ranges={"ports": [(lo, lo + draw(st.integers(0, 20)))]})
        reserved = {role: Resources(scalars={"cpus": draw(st.integers(1, 3))})
                    for role in draw(st.lists(st.sampled_from(ROLES[1:]), unique=True))}
        agent_id = f"a{i}"
        totals[agent_id], useds[agent_id] = total, used
        views.append(AgentView(agent_id, total - used, reserved, draw(st.booleans())))
    frameworks = [
        FrameworkView(f"f{i}", tuple(draw(st.lists(st.sampled_from(ROLES), unique=True,
                                                   max_size=2))),
                      frozenset(draw(st.lists(st.sampled_from(ROLES), max_size=2))),
                      draw(st.booleans()),
                      {role: Resources(scalars={"cpus": draw(st.integers(0, 20))})
                       for role in draw(st.lists(st.sampled_from(ROLES), max_size=2))},
                      draw(st.none() | st.lists(st.sampled_from(MINIMUMS), min_size=1)))
        for i in range(draw(st.integers(0, 5)))]
    filters = [Filter(f"f{draw(st.integers(0, 5))}", f"a{draw(st.integers(0, 6))}",
                      draw(st.sampled_from(ROLES)),
                      Resources(scalars={"cpus": draw(st.integers(0, 12)),
                                         "mem": draw(st.integers(0, 5000))}),
                      draw(st.floats(0, 10)))
               for _ in range(draw(st.integers(0, 8)))]
    cluster_total = Resources(scalars={"cpus": 100, "mem": 50000})
    snapshot = Snapshot(views, frameworks, cluster_total, now=draw(st.floats(0, 10)),
                        weights={"a": draw(st.floats(0.1, 5))}, filters=Filters(filters),
                        seed=draw(st.none() | st.integers(0, 100)))
    return snapshot, totals, useds


@settings(max_examples=300, deadline=None)
@given(clusters())
def test_no_resource_is_offered_twice_and_offered_plus_used_fits(cluster):
    snapshot, totals, useds = cluster
    offers = allocate(snapshot)
    views = {a.agent_id: a for a in snapshot.agents}
    keys = [(o.framework_id, o.role, o.agent_id) for o in offers]
    assert len(keys) == len(set(keys))
    for agent_id, view in views.items():
        mine = [o for o in offers if o.agent_id == agent_id]
        unreserved = sum((o.unreserved for o in mine), EMPTY)
        assert view.available.contains(unreserved)
        assert totals[agent_id].contains(useds[agent_id] + unreserved)
        for role in {o.role for o in mine}:
            reserved = sum((o.reserved for o in mine if o.role == role), EMPTY)
            assert view.reserved.get(role, EMPTY).contains(reserved)


@settings(max_examples=300, deadline=None)
@given(clusters())
def test_offers_respect_eligibility_and_filters(cluster):
    snapshot, _, _ = cluster
    frameworks = {f.framework_id: f for f in snapshot.frameworks}
    views = {a.agent_id: a for a in snapshot.agents}
    for offer in allocate(snapshot):
        fw = frameworks[offer.framework_id]
        assert views[offer.agent_id].active and fw.active
        assert offer.role in (fw.roles or ("*",)) and offer.role not in fw.suppressed_roles
        assert any(offer.resources.contains(m) for m in minimums(snapshot, fw))
        live = snapshot.filters.get(offer.framework_id, offer.agent_id, offer.role)
        assert not (live and live.expires_at > snapshot.now
                    and live.resources.contains(offer.resources))


@settings(max_examples=300, deadline=None)
@given(clusters())
def test_unoffered_resources_had_no_taker(cluster):
    """Whatever stays on an agent could not have been offered to anyone eligible."""
    snapshot, _, _ = cluster
    offers = allocate(snapshot)
    for view in snapshot.agents:
        if not view.active:
            continue
        taken_roles = {o.role for o in offers if o.agent_id == view.agent_id}
        free_taken = any(o.unreserved for o in offers if o.agent_id == view.agent_id)
        for fw in snapshot.frameworks:
            for role in fw.roles or ("*",):
                if role in taken_roles or not fw.active or role in fw.suppressed_roles:
                    continue
                offerable = (EMPTY if free_taken else view.available) + \
                    view.reserved.get(role, EMPTY)
                live = snapshot.filters.get(fw.framework_id, view.agent_id, role)
                filtered = bool(live and live.expires_at > snapshot.now
                                and live.resources.contains(offerable))
                fits = any(offerable.contains(m) for m in minimums(snapshot, fw))
                assert filtered or not fits, (fw.framework_id, role, view.agent_id)


operations = st.lists(st.one_of(
    st.tuples(st.just("refuse"), st.sampled_from(["f1", "f2", "f3"]), st.sampled_from(["a1", "a2"]),
              st.sampled_from(["*", "x"]), st.integers(1, 4), st.integers(-1, 20),
              st.integers(0, 30)),
    st.tuples(st.just("expire"), st.integers(0, 40)),
    st.tuples(st.just("revive"), st.sampled_from(["f1", "f2"]),
              st.none() | st.lists(st.sampled_from(["*", "x"]), max_size=2)),
    st.tuples(st.just("drop_agent"), st.sampled_from(["a1", "a2"])),
), max_size=25)


@settings(max_examples=300, deadline=None)
@given(operations)
def test_filters_match_a_plain_dict_model(ops):
    filters, model = Filters(), {}
    for op, *args in ops:
        if op == "refuse":
            fw, agent, role, cpus, seconds, now = args
            filters = refuse(filters, fw, agent, role, R(f"cpus:{cpus}"), seconds, now, 1.0)
            if seconds != 0:
                duration = 5.0 if seconds < 0 else max(seconds, 1.0)
                model[fw, agent, role] = Filter(fw, agent, role, R(f"cpus:{cpus}"), now + duration)
        elif op == "expire":
            filters = expire(filters, args[0])
            model = {k: f for k, f in model.items() if f.expires_at > args[0]}
        elif op == "revive":
            fw, roles = args
            filters = revive(filters, fw, roles)
            model = {k: f for k, f in model.items() if k[0] != fw or (roles and k[2] not in roles)}
        else:
            filters = drop_agent(filters, args[0])
            model = {k: f for k, f in model.items() if k[1] != args[0]}
        assert sorted((f.framework_id, f.agent_id, f.role, f.resources.cpus, f.expires_at)
                      for f in filters) == sorted(
            (f.framework_id, f.agent_id, f.role, f.resources.cpus, f.expires_at)
            for f in model.values())
        assert len(filters) == len(model)
        assert filters._earliest <= min((f.expires_at for f in model.values()), default=math.inf)
        for roles in filters._agents.values():
            for rf in roles.values():
                assert rf.frameworks == set(rf.by_framework)
                assert rf.earliest == min(f.expires_at for f in rf.by_framework.values())
                assert all(f.resources.contains(rf.meet) for f in rf.by_framework.values())
