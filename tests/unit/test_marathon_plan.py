"""meseta.frameworks.marathon.plan: deployment plans from two root groups, conflicts, rollback."""

import dataclasses
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meseta.frameworks.marathon.app import restarted
from meseta.frameworks.marathon.group import (
    Group,
    empty_root,
    find_app,
    find_group,
    put_app,
    stamp_versions,
    transitive_apps,
    transitive_groups,
)
from meseta.frameworks.marathon.pathid import PathId
from meseta.frameworks.marathon.plan import (
    ACTION_RESTART,
    ACTION_SCALE,
    ACTION_START,
    ACTION_STOP,
    Action,
    DeploymentPlan,
    Step,
    compute_plan,
    conflicting,
    revert,
)

P = PathId.parse
T0, T1, T2 = 1_700_000_000.0, 1_700_000_060.0, 1_700_000_120.0
SHORT = {ACTION_STOP: "Stop", ACTION_START: "Start", ACTION_SCALE: "Scale", ACTION_RESTART: "Restart"}


# --------------------------------------------------------------------------- builders

def tree(apps, group_deps=None):
    """A root from `{"/g/app": {fields}}` and `{"/g": [dependencies]}`, via Group.from_json."""
    group_deps = group_deps or {}
    group_ids = {g for a in apps for g in P(a).ancestors()} | {P(g) for g in group_deps}
    group_ids |= {a for g in list(group_ids) for a in g.ancestors()}

    def body(group_id):
        out = {"id": str(group_id),
               "apps": [{"id": a, "cmd": "sleep 1", **fields}
                        for a, fields in apps.items() if P(a).parent == group_id],
               "groups": [body(g) for g in sorted(group_ids) if g.is_child_of(group_id)]}
        if str(group_id) in group_deps:
            out["dependencies"] = group_deps[str(group_id)]
        return out
    return Group.from_json(body(P("/")))


def deployed(apps, group_deps=None):
    """A stored root, stamped the way the service stamps the first deployment."""
    return stamp_versions(empty_root(), tree(apps, group_deps), T0)


def change(original, target):
    """`target` (a spec dict, or a function of the original root) stamped against `original`."""
    changed = target(original) if callable(target) else tree(*target)
    return stamp_versions(original, changed, T1)


def describe(plan):
    """Steps as readable strings: `Scale /a 3`, `Scale /a 1 kill=x,y`, `Stop /a`."""
    def word(a):
        text = f"{SHORT[a.action]} {a.app_id}" + ("" if a.scale_to is None else f" {a.scale_to}")
        return text + (f" kill={','.join(a.sentenced)}" if a.sentenced else "")
    return [[word(a) for a in step.actions] for step in plan.steps]


def restart_app(app_id):
    return lambda root: put_app(root, restarted(find_app(root, P(app_id)), T1))


A, B = {"/a": {}}, {"/b": {}}
CHAIN = {"/db": {}, "/api": {"dependencies": ["/db"]}, "/web": {"dependencies": ["/api"]}}


# --------------------------------------------------------------------------- compute_plan

PLANS = [
    # (name, original apps, target (apps, group deps) or function, kwargs, expected steps)
    ("empty to empty", {}, ({},), {}, []),
    ("unchanged", {"/a": {"instances": 2}}, ({"/a": {"instances": 2}},), {}, []),
    ("new app: start at 0, then scale", {}, ({"/a": {"instances": 3}},), {},
     [["Start /a 0"], ["Scale /a 3"]]),
    ("new app with 0 instances", {}, ({"/a": {"instances": 0}},), {},
     [["Start /a 0"], ["Scale /a 0"]]),
    ("removed app", {**A, **B}, (B,), {}, [["Stop /a"]]),
    ("all removed in one step", {**A, **B, "/g/c": {}}, ({},), {},
     [["Stop /a", "Stop /b", "Stop /g/c"]]),
    ("scale up", {"/a": {"instances": 1}}, ({"/a": {"instances": 4}},), {}, [["Scale /a 4"]]),
    ("scale down", {"/a": {"instances": 4}}, ({"/a": {"instances": 1}},), {}, [["Scale /a 1"]]),
    ("scale to 0", {"/a": {"instances": 2}}, ({"/a": {"instances": 0}},), {}, [["Scale /a 0"]]),
    ("config change to 0 instances scales down", {"/a": {"instances": 2}},
     ({"/a": {"instances": 0, "cmd": "sleep 2"}},), {}, [["Scale /a 0"]]),
    ("cmd change", {"/a": {"instances": 2}}, ({"/a": {"instances": 2, "cmd": "sleep 2"}},), {},
     [["Restart /a 2"]]),
    ("env change", A, ({"/a": {"env": {"X": "1"}}},), {}, [["Restart /a 1"]]),
    ("labels change", A, ({"/a": {"labels": {"team": "x"}}},), {}, [["Restart /a 1"]]),
    ("cpus change", A, ({"/a": {"cpus": 0.5}},), {}, [["Restart /a 1"]]),
    ("config and scale change restart at the new count", A,
     ({"/a": {"instances": 3, "mem": 64}},), {}, [["Restart /a 3"]]),
    ("restart marker (app.restarted)", {"/a": {"instances": 2}}, restart_app("/a"), {},
     [["Restart /a 2"]]),
    ("explicit restart", {"/a": {"instances": 2}}, ({"/a": {"instances": 2}},),
     {"restart": [P("/a")]}, [["Restart /a 2"]]),
    ("explicit restart of a new app only starts it", {}, (A,), {"restart": [P("/a")]},
     [["Start /a 0"], ["Scale /a 1"]]),
    ("sentenced instances", {"/a": {"instances": 3}}, ({"/a": {"instances": 1}},),
     {"to_kill": {P("/a"): ["a.1", "a.2"]}}, [["Scale /a 1 kill=a.1,a.2"]]),
    ("sentenced without an instance change", {"/a": {"instances": 3}}, ({"/a": {"instances": 3}},),
     {"to_kill": {P("/a"): ["a.1"]}}, [["Scale /a 3 kill=a.1"]]),
    ("sentenced to 0", {"/a": {"instances": 1}}, ({"/a": {"instances": 0}},),
     {"to_kill": {P("/a"): ["a.1"]}}, [["Scale /a 0 kill=a.1"]]),
    ("empty sentence is no change", A, (A,), {"to_kill": {P("/a"): []}}, []),
    ("sentence for a removed app is ignored", {**A, **B}, (B,), {"to_kill": {P("/a"): ["a.1"]}},
     [["Stop /a"]]),
    ("chain: db, api, web in 3 consecutive steps", {}, (CHAIN,), {},
     [["Start /api 0", "Start /db 0", "Start /web 0"], ["Scale /db 1"], ["Scale /api 1"],
      ["Scale /web 1"]]),
    ("independent apps in one step", {}, ({"/a": {}, "/b": {}, "/g/c": {}, "/g/h/d": {}},), {},
     [["Start /a 0", "Start /b 0", "Start /g/c 0", "Start /g/h/d 0"],
      ["Scale /a 1", "Scale /b 1", "Scale /g/c 1", "Scale /g/h/d 1"]]),
    ("unchanged dependencies still order the layers",
     CHAIN, ({**CHAIN, "/db": {"instances": 2}, "/web": {"dependencies": ["/api"], "cmd": "new"}},),
     {},
     [["Scale /db 2"], ["Restart /web 1"]]),
    ("only affected apps appear", CHAIN, ({**CHAIN, "/web": {"dependencies": ["/api"], "instances": 2}},),
     {}, [["Scale /web 2"]]),
    ("group dependencies", {},
     ({"/db/pg": {}, "/db/redis": {}, "/svc/api": {}, "/svc/worker": {}, "/ui/web": {}},
      {"/svc": ["/db"], "/ui": ["/svc"]}), {},
     [["Start /db/pg 0", "Start /db/redis 0", "Start /svc/api 0", "Start /svc/worker 0",
       "Start /ui/web 0"],
      ["Scale /db/pg 1", "Scale /db/redis 1"], ["Scale /svc/api 1", "Scale /svc/worker 1"],
      ["Scale /ui/web 1"]]),
    ("mixed stop, start, restart and scale", {"/old": {}, "/db": {}, "/api": {"dependencies": ["/db"]}},
     ({"/db": {"instances": 2}, "/api": {"dependencies": ["/db"], "cmd": "v2"},
       "/new": {"dependencies": ["/api"], "instances": 2}},), {},
     [["Stop /old"], ["Start /new 0"], ["Scale /db 2"], ["Restart /api 1"], ["Scale /new 2"]]),
]


@pytest.mark.parametrize("original_apps, target, kwargs, expected",
                         [case[1:] for case in PLANS], ids=[case[0] for case in PLANS])
def test_plan_steps(original_apps, target, kwargs, expected):
    original = deployed(original_apps)
    plan = compute_plan(original, change(original, target), **kwargs)
    assert describe(plan) == expected
    assert plan.is_empty == (expected == [])


def test_plan_carries_roots_id_and_target_version():
    original = deployed(A)
    target = change(original, ({"/a": {"instances": 2}},))
    plan = compute_plan(original, target, plan_id="p-1")
    assert (plan.id, plan.original, plan.target, plan.version) == ("p-1", original, target, target.version)
    assert target.version == "2023-11-14T22:14:20.000Z"
    assert uuid.UUID(compute_plan(original, target).id).version == 4


@pytest.mark.parametrize("original_version, target_version, expected", [
    ("2023-11-14T22:13:20.000Z", "2023-11-14T22:14:20.000Z", "2023-11-14T22:14:20.000Z"),
    ("2023-11-14T22:13:20.000Z", None, "2023-11-14T22:13:20.000Z"),
    (None, None, ""),
])
def test_plan_version_falls_back(original_version, target_version, expected):
    plan = compute_plan(Group(P("/"), version=original_version), Group(P("/"), version=target_version))
    assert plan.version == expected


@pytest.mark.parametrize("original_apps, target, expected", [
    ({**A, **B}, ({"/b": {"instances": 2}, "/c": {}},), {"/a", "/b", "/c"}),
    (CHAIN, ({**CHAIN, "/db": {"instances": 3}},), {"/db"}),
    (A, (A,), set()),
])
def test_affected_app_ids(original_apps, target, expected):
    original = deployed(original_apps)
    plan = compute_plan(original, change(original, target))
    assert plan.affected_app_ids == frozenset(map(P, expected))


# --------------------------------------------------------------------------- JSON and records

def sample_plan():
    original = deployed({"/old": {}, "/a": {"instances": 3}})
    target = change(original, ({"/a": {"instances": 1}, "/new": {}},))
    return compute_plan(original, target, plan_id="p-1", to_kill={P("/a"): ["a.1", "a.2"]})


def test_json_shapes_are_exact():
    plan = sample_plan()
    steps = [{"actions": [{"action": "StopApplication", "app": "/old"}]},
             {"actions": [{"action": "StartApplication", "app": "/new"}]},
             {"actions": [{"action": "ScaleApplication", "app": "/a"},
                          {"action": "ScaleApplication", "app": "/new"}]}]
    assert plan.to_json() == {"id": "p-1", "steps": steps, "version": plan.version}
    assert plan.dry_run_json() == {"steps": steps}
    current = [{"action": "ScaleApplication", "app": "/a", "readinessCheckResults": []}]
    assert plan.to_info_json(3, current) == {
        "id": "p-1", "version": plan.version, "affectedApps": ["/a", "/new", "/old"],
        "affectedPods": [], "steps": steps, "currentActions": current, "currentStep": 3,
        "totalSteps": 3}


@pytest.mark.parametrize("action", [
    Action(ACTION_STOP, P("/a")),
    Action(ACTION_START, P("/a"), 0),
    Action(ACTION_RESTART, P("/g/a"), 2),
    Action(ACTION_SCALE, P("/a"), 1, ("a.1",)),
])
def test_action_json_has_only_marathons_keys(action):
    assert action.to_json() == {"action": action.action, "app": str(action.app_id)}
    assert Step((action,)).to_json() == {"actions": [action.to_json()]}


def test_unknown_action_is_refused():
    with pytest.raises(ValueError, match="StartPod"):
        Action("StartPod", P("/a"))


def test_record_references_roots_by_version_and_round_trips():
    plan = sample_plan()
    record = plan.to_record()
    assert record == {
        "id": "p-1", "version": plan.version,
        "original_version": plan.original.version, "target_version": plan.target.version,
        "steps": [
            {"actions": [{"action": "StopApplication", "app": "/old", "scale_to": None, "sentenced": []}]},
            {"actions": [{"action": "StartApplication", "app": "/new", "scale_to": 0, "sentenced": []}]},
            {"actions": [{"action": "ScaleApplication", "app": "/a", "scale_to": 1,
                          "sentenced": ["a.1", "a.2"]},
                         {"action": "ScaleApplication", "app": "/new", "scale_to": 1, "sentenced": []}]},
        ]}
    store = {plan.original.version: plan.original, plan.target.version: plan.target}
    assert DeploymentPlan.from_record(record, store.__getitem__) == plan


def test_record_of_a_plan_from_the_unstamped_empty_root():
    target = deployed(A)
    plan = compute_plan(empty_root(), target)
    assert plan.to_record()["original_version"] is None
    assert DeploymentPlan.from_record(plan.to_record(), {target.version: target}.__getitem__) == plan


# --------------------------------------------------------------------------- conflicts

def plan_touching(plan_id, *app_ids):
    steps = (Step(tuple(Action(ACTION_SCALE, P(a), 1) for a in app_ids)),) if app_ids else ()
    return DeploymentPlan(plan_id, empty_root(), empty_root(), steps, "")


@pytest.mark.parametrize("mine, running, expected", [
    (("/a",), [], []),
    (("/a",), [("p1", "/b")], []),
    (("/a", "/b"), [("p1", "/b"), ("p2", "/c"), ("p3", "/a", "/c")], ["p1", "p3"]),
    (("/g/a",), [("p1", "/g"), ("p2", "/g/a/x")], []),  # app ids, not prefixes
    ((), [("p1", "/a")], []),
    (("/a",), [("new", "/a")], []),  # a plan does not conflict with itself
])
def test_conflicting(mine, running, expected):
    plan = plan_touching("new", *mine)
    others = [plan_touching(p[0], *p[1:]) for p in running]
    assert [p.id for p in conflicting(plan, others)] == expected


# --------------------------------------------------------------------------- revert

def apps_of(root):
    return {str(a.id): a for a in transitive_apps(root)}


def shape(root):
    """Groups and apps, without versions (the caller stamps the reverted root)."""
    return ({str(g.id): (g.dependencies, g.enforce_role) for g in transitive_groups(root)},
            {str(a.id): dataclasses.replace(a, version=None, version_info=None)
             for a in transitive_apps(root)})


REVERTS = [
    # (name, original apps, target apps, expected apps after reverting the target)
    ("new app removed", A, {**A, "/b": {}}, {"/a"}),
    ("removed app back", {**A, **B}, A, {"/a", "/b"}),
    ("config back", {"/a": {"cmd": "v1"}}, {"/a": {"cmd": "v2"}}, {"/a"}),
    ("scale back", {"/a": {"instances": 1}}, {"/a": {"instances": 5}}, {"/a"}),
    ("new group removed when empty", A, {**A, "/g/h/c": {}}, {"/a"}),
    ("removed group back", {**A, "/g/h/c": {}}, A, {"/a", "/g/h/c"}),
]


@pytest.mark.parametrize("original_apps, target_apps, expected",
                         [case[1:] for case in REVERTS], ids=[case[0] for case in REVERTS])
def test_revert_of_the_target_is_the_original(original_apps, target_apps, expected):
    original = deployed(original_apps)
    target = change(original, (target_apps,))
    reverted = revert(compute_plan(original, target), target)
    assert set(apps_of(reverted)) == expected
    assert shape(reverted) == shape(original)


@pytest.mark.parametrize("concurrent", [
    {"/c": {}},                 # another deployment added an app
    {"/g/c": {}},               # ... into a group the plan created
])
def test_revert_keeps_an_unrelated_concurrent_change(concurrent):
    original = deployed({"/a": {"cmd": "v1"}, "/b": {}})
    target = change(original, ({"/a": {"cmd": "v2"}, "/b": {}, "/g/new": {}},))
    plan = compute_plan(original, target)
    current = stamp_versions(target, tree({"/a": {"cmd": "v2"}, "/b": {}, "/g/new": {}, **concurrent}), T2)
    reverted = revert(plan, current)
    assert set(apps_of(reverted)) == {"/a", "/b", *concurrent}
    assert apps_of(reverted)["/a"] == apps_of(original)["/a"]
    assert apps_of(reverted)["/b"] is apps_of(current)["/b"]
    assert (find_group(reverted, P("/g")) is not None) == ("/g/c" in concurrent)


def test_revert_keeps_a_concurrent_removal_of_an_untouched_app():
    original = deployed({**A, **B})
    target = change(original, ({"/a": {"instances": 2}, **B},))
    current = stamp_versions(target, tree({"/a": {"instances": 2}}), T2)
    assert set(apps_of(revert(compute_plan(original, target), current))) == {"/a"}


def test_revert_restores_group_dependencies():
    original = deployed({"/db/pg": {}, "/svc/api": {}}, {"/svc": ["/db"]})
    target = change(original, ({"/db/pg": {}, "/svc/api": {}},))
    assert find_group(target, P("/svc")).dependencies == ()
    reverted = revert(compute_plan(original, target), target)
    assert find_group(reverted, P("/svc")).dependencies == (P("/db"),)


def test_revert_then_plan_restarts_the_old_version():
    original = deployed({"/a": {"cmd": "v1", "instances": 2}})
    target = change(original, ({"/a": {"cmd": "v2", "instances": 2}},))
    rollback = stamp_versions(target, revert(compute_plan(original, target), target), T2)
    assert describe(compute_plan(target, rollback)) == [["Restart /a 2"]]
    assert find_app(rollback, P("/a")).cmd == "v1"


# --------------------------------------------------------------------------- properties

APP_IDS = ["/a", "/b", "/g/c", "/g/d", "/g/h/e", "/k/f"]


@st.composite
def roots(draw):
    """Random roots over a fixed id universe; an app depends only on apps listed before it,
    so the graph is acyclic, and only on apps present."""
    chosen = draw(st.lists(st.sampled_from(APP_IDS), unique=True, max_size=len(APP_IDS)))
    chosen.sort(key=APP_IDS.index)
    apps = {}
    for index, app_id in enumerate(chosen):
        apps[app_id] = {"instances": draw(st.integers(0, 3)),
                        "cmd": draw(st.sampled_from(["v1", "v2"])),
                        "dependencies": draw(st.lists(st.sampled_from(chosen[:index]), unique=True))
                        if index else []}
    return apps


@settings(max_examples=60, deadline=None)
@given(roots(), roots())
def test_plan_properties(original_apps, target_apps):
    original = deployed(original_apps)
    target = change(original, (target_apps,))
    plan = compute_plan(original, target)
    assert compute_plan(target, target).is_empty
    # Exactly the apps whose definition differs are affected; no step is empty; an app is
    # deployed (scaled or restarted) at most once.
    differs = {a for a in original_apps.keys() | target_apps.keys()
               if find_app(original, P(a)) != find_app(target, P(a))}
    assert {str(a) for a in plan.affected_app_ids} == differs
    assert all(step.actions for step in plan.steps)
    deploy_steps = {}
    for index, step in enumerate(plan.steps):
        for action in step.actions:
            if action.action in (ACTION_SCALE, ACTION_RESTART):
                assert action.app_id not in deploy_steps
                deploy_steps[action.app_id] = index
    # Dependencies deploy in an earlier step than their dependants.
    for app_id, index in deploy_steps.items():
        for dependency in find_app(target, app_id).dependencies:
            assert deploy_steps.get(dependency, -1) < index
    # Reverting the target gives the original back.
    assert shape(revert(plan, target)) == shape(original)
