"""meseta.frameworks.marathon.group: the root group tree, its transformations and dependency order."""

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meseta.frameworks.marathon.app import AppDefinition, VersionInfo
from meseta.frameworks.marathon.group import (
    SAME_ID,
    Group,
    UnknownId,
    dependency_order,
    empty_root,
    find,
    find_app,
    find_group,
    put_app,
    put_group,
    remove_app,
    remove_group,
    scale_group,
    stamp_versions,
    transitive_apps,
    transitive_groups,
    validate_root,
)
from meseta.frameworks.marathon.pathid import ROOT, PathId
from meseta.frameworks.marathon.schema import ValidationError

P = PathId.parse
NOW = 1_700_000_000.0
STAMP = "2023-11-14T22:13:20.000Z"
MARATHON_PYTHON_GROUP_KEYS = {"apps", "dependencies", "groups", "id", "pods", "version", "enforceRole"}


def make_app(app_id, instances=1, dependencies=(), **fields):
    return AppDefinition(P(app_id), cmd="sleep 1", instances=instances,
                         dependencies=tuple(P(d) for d in dependencies), **fields)


def tree(*apps, groups=None):
    """A root holding `apps` (intermediate groups made on the way) and group dependencies."""
    root = empty_root()
    for app in apps:
        root = put_app(root, app)
    for group_id, dependencies in (groups or {}).items():
        group = find_group(root, P(group_id)) or Group(P(group_id))
        root = put_group(root, dataclasses.replace(group, dependencies=tuple(P(d) for d in dependencies)))
    return root


PRODUCT = {
    "id": "/product",
    "groups": [
        {"id": "database", "apps": [{"id": "mongo", "cmd": "m"}, {"id": "mysql", "cmd": "m"}]},
        {"id": "/product/service", "dependencies": ["../database"],
         "apps": [{"id": "rails", "cmd": "r"}, {"id": "play", "cmd": "p", "dependencies": ["rails"]}]},
        {"id": "frontend", "apps": [{"id": "web", "cmd": "w", "dependencies": ["/product/service"]}]},
    ],
}


def problems(obj, **kwargs):
    with pytest.raises(ValidationError) as raised:
        Group.from_json(obj, **kwargs)
    return raised.value.details


# --------------------------------------------------------------------------- building from JSON

def test_nested_ids_resolve_against_their_enclosing_group():
    group = Group.from_json(PRODUCT)
    assert group.id == P("/product")
    assert sorted(map(str, group.groups)) == ["/product/database", "/product/frontend", "/product/service"]
    root = put_group(empty_root(), group)
    service = find_group(root, P("/product/service"))
    assert service.dependencies == (P("/product/database"),)
    assert find_app(root, P("/product/service/play")).dependencies == (P("/product/service/rails"),)
    assert [str(a.id) for a in transitive_apps(root)] == [
        "/product/database/mongo", "/product/database/mysql", "/product/frontend/web",
        "/product/service/play", "/product/service/rails"]


@pytest.mark.parametrize("body, base, expected", [
    ({"apps": []}, P("/product"), P("/product")),       # no id: the group named by the URL
    ({"id": "sub"}, P("/product"), P("/product/sub")),
    ({"id": "/"}, P("/product"), ROOT),
    ({"id": "/x/y"}, ROOT, P("/x/y")),
    ({}, ROOT, ROOT),
])
def test_the_top_level_id(body, base, expected):
    assert Group.from_json(body, base=base).id == expected


@pytest.mark.parametrize("body, path, message", [
    ({"id": "/g", "apps": [{"id": "/app", "cmd": "x"}]}, "/apps(0)/id",
     "identifier /app is not child of /g. Hint: use relative paths."),
    ({"id": "/g", "apps": [{"id": "a/b", "cmd": "x"}]}, "/apps(0)/id",
     "identifier /g/a/b is not child of /g. Hint: use relative paths."),
    ({"id": "/g", "groups": [{"id": "/h"}]}, "/groups(0)/id",
     "identifier /h is not child of /g. Hint: use relative paths."),
    ({"id": "/g", "groups": [{}]}, "/groups(0)/id", "is required"),
    ({"id": "/g", "apps": [{"id": "a", "cmd": "x"}, {"id": "a", "cmd": "y"}]}, "/apps(1)/id",
     f"{SAME_ID} /g/a is used more than once"),
    ({"id": "/g", "apps": [{"id": "a", "cmd": "x"}], "groups": [{"id": "a"}]}, "/groups(0)/id",
     f"{SAME_ID} /g/a is used more than once"),
    ({"id": "/g", "apps": [{"id": "a", "cpus": 0, "cmd": "x"}]}, "/apps(0)/cpus", "is less than 0.001"),
    ({"id": "/g", "groups": [{"id": "h", "apps": [{"id": "a", "cmd": "x", "mem": "1"}]}]},
     "/groups(0)/apps(0)/mem", "expected number, got string"),
    ({"id": "/g", "groups": [{"id": "h", "apps": [{"id": "Bad", "cmd": "x"}]}]},
     "/groups(0)/apps(0)/id", "must fully match regular expression"),
    ({"id": "/G"}, "/id", "must fully match regular expression"),
    ({"id": "/g/tasks"}, "/id", "must not end with any of the following reserved keywords"),
    ({"id": "/g", "dependencies": ["/Bad"]}, "/dependencies(0)", "must fully match regular expression"),
    ({"id": "/g", "pods": [{"id": "p"}]}, "/pods", "pods are not supported"),
    ({"id": "/g", "groups": [{"id": "h", "enforceRole": True}]}, "/groups(0)/enforceRole",
     "can only be set for top-level groups"),
    ({"id": "/g", "scaleBy": 2}, "/scaleBy", "unknown field"),
    ({"id": "/g", "apps": {}}, "/apps", "expected array, got object"),
    ({"id": "/g", "version": "soon"}, "/version", "must fully match regular expression"),
    ([], "/", "expected object, got array"),
])
def test_bad_group_bodies_are_rejected_at_their_path(body, path, message):
    found = problems(body)
    assert any(message in m for m in found.get(path, [])), found


def test_every_problem_in_a_group_body_is_reported_at_once():
    found = problems({"id": "/g", "apps": [{"id": "a", "cpus": 0, "cmd": "x"}, {"id": "/x", "cmd": "x"}],
                      "groups": [{"id": "h", "apps": [{"id": "b", "mem": -1, "cmd": "x"}]}]})
    assert set(found) == {"/apps(0)/cpus", "/apps(1)/id", "/groups(0)/apps(0)/mem"}


def test_enforce_role_is_written_for_top_level_groups_only():
    root = Group.from_json({"id": "/", "groups": [{"id": "team", "enforceRole": True, "groups": [{"id": "sub"}]}]})
    team = root.to_json()["groups"][0]
    assert team["enforceRole"] is True
    assert "enforceRole" not in team["groups"][0] and "enforceRole" not in root.to_json()


# --------------------------------------------------------------------------- writing

def test_group_info_shape_and_embeds():
    root = put_group(empty_root(), Group.from_json(PRODUCT))
    full = root.to_json()
    assert list(full) == ["id", "apps", "groups", "pods", "dependencies"]
    assert full["apps"] == [] and full["pods"] == []
    product = full["groups"][0]
    assert set(product) <= MARATHON_PYTHON_GROUP_KEYS
    assert [g["id"] for g in product["groups"]] == ["/product/database", "/product/frontend", "/product/service"]
    assert product["groups"][2]["dependencies"] == ["/product/database"]
    assert product["groups"][0]["apps"][0]["id"] == "/product/database/mongo"
    assert root.to_json(embed=()) == {"id": "/", "dependencies": []}
    only_groups = root.to_json(embed={"group.groups"})
    assert "apps" not in only_groups["groups"][0]["groups"][0]
    counted = root.to_json(app_json=lambda app: {"id": str(app.id), "tasksRunning": 0})
    assert counted["groups"][0]["groups"][0]["apps"][0] == {"id": "/product/database/mongo", "tasksRunning": 0}


def test_an_empty_root():
    assert empty_root().to_json() == {"id": "/", "apps": [], "groups": [], "pods": [], "dependencies": []}


# --------------------------------------------------------------------------- queries and transformations

def test_find():
    root = tree(make_app("/a/b/c"))
    assert find(root, ROOT) is root
    assert find(root, P("/a/b")).id == P("/a/b")
    assert find(root, P("/a/b/c")).id == P("/a/b/c")
    assert find(root, P("/a/x")) is None and find(root, P("/a/b/c/d")) is None
    assert find_app(root, P("/a/b")) is None and find_group(root, P("/a/b/c")) is None
    assert [str(g.id) for g in transitive_groups(root)] == ["/", "/a", "/a/b"]


def test_put_app_creates_the_groups_on_its_path_and_leaves_the_old_root_alone():
    root = empty_root()
    new = put_app(root, make_app("/x/y/web"))
    assert root == empty_root()
    assert find_group(new, P("/x/y")).apps[P("/x/y/web")].cmd == "sleep 1"
    replaced = put_app(new, make_app("/x/y/web", instances=3))
    assert find_app(replaced, P("/x/y/web")).instances == 3
    assert find_app(new, P("/x/y/web")).instances == 1
    # untouched subtrees are shared, not copied
    other = put_app(replaced, make_app("/z"))
    assert find_group(other, P("/x")) is find_group(replaced, P("/x"))


def test_children_are_read_only():
    root = tree(make_app("/a"))
    with pytest.raises(TypeError):
        root.apps[P("/b")] = make_app("/b")


@pytest.mark.parametrize("start, change", [
    (tree(make_app("/a/b")), lambda r: put_app(r, make_app("/a"))),          # an app where a group is
    (tree(make_app("/a")), lambda r: put_app(r, make_app("/a/b"))),          # a group where an app is
    (tree(make_app("/a")), lambda r: put_group(r, Group(P("/a")))),
    (tree(make_app("/a")), lambda r: put_group(r, Group(P("/a/b")))),
])
def test_apps_and_groups_share_one_namespace(start, change):
    with pytest.raises(ValidationError, match=SAME_ID):
        change(start)


def test_remove():
    root = tree(make_app("/g/a"), make_app("/g/b"), make_app("/h/c"))
    assert [str(a.id) for a in transitive_apps(remove_app(root, P("/g/a")))] == ["/g/b", "/h/c"]
    assert find_group(remove_app(root, P("/h/c")), P("/h")) == Group(P("/h"))  # the group stays
    assert [str(a.id) for a in transitive_apps(remove_group(root, P("/g")))] == ["/h/c"]
    assert remove_group(root, ROOT) == empty_root()
    with pytest.raises(UnknownId) as raised:
        remove_app(root, P("/g"))
    assert raised.value.message == "App '/g' does not exist"
    with pytest.raises(UnknownId, match="Group '/g/a' does not exist"):
        remove_group(root, P("/g/a"))


def test_put_group_replaces_the_subtree_or_the_root():
    root = tree(make_app("/g/a"), make_app("/g/sub/b"))
    replaced = put_group(root, Group(P("/g"), apps={P("/g/c"): make_app("/g/c")}))
    assert [str(a.id) for a in transitive_apps(replaced)] == ["/g/c"]
    assert put_group(root, empty_root()) == empty_root()


@pytest.mark.parametrize("instances, factor, expected", [
    (3, 2, 6),
    (3, 1.5, 5),      # ceil(4.5)
    (10, 0.3, 3),     # exact decimal product, not 3.0000000000000004 -> 4
    (3, 0.7, 3),      # ceil(2.1)
    (5, 0, 0),
    (0, 10, 0),
    (1, 1.0000001, 2),
])
def test_scale_group(instances, factor, expected):
    root = tree(make_app("/g/a", instances), make_app("/g/sub/b", instances), make_app("/other", instances))
    scaled = scale_group(root, P("/g"), factor)
    assert [a.instances for a in transitive_apps(scaled)] == [expected, expected, instances]


@pytest.mark.parametrize("factor, message", [
    (True, "expected number, got boolean"),
    ("2", "expected number, got string"),
    (-1, "must be a finite number of at least 0"),
    (float("nan"), "must be a finite number of at least 0"),
    (float("inf"), "must be a finite number of at least 0"),
    (1e12, "would give /g/a"),
])
def test_scale_group_rejects_bad_factors(factor, message):
    with pytest.raises(ValidationError) as raised:
        scale_group(tree(make_app("/g/a", 3)), P("/g"), factor)
    assert any(message in m for m in raised.value.details["/scaleBy"])


def test_scale_group_needs_the_group():
    with pytest.raises(UnknownId, match="Group '/nope' does not exist"):
        scale_group(empty_root(), P("/nope"), 2)


# --------------------------------------------------------------------------- whole-tree rules

@pytest.mark.parametrize("root", [
    tree(make_app("/db"), make_app("/web", dependencies=["/db"])),
    tree(make_app("/g/db"), make_app("/web", dependencies=["/g"])),
    tree(make_app("/db/a"), make_app("/svc/b"), groups={"/svc": ["/db"]}),
    put_group(empty_root(), Group.from_json(PRODUCT)),
])
def test_valid_roots(root):
    validate_root(root)


@pytest.mark.parametrize("root, message", [
    (tree(make_app("/web", dependencies=["/db"])), "app /web depends on /db, which does not exist"),
    (tree(make_app("/g/a"), groups={"/g": ["/nowhere"]}), "group /g depends on /nowhere, which does not exist"),
    (tree(make_app("/a", dependencies=["/b"]), make_app("/b", dependencies=["/a"])),
     "Dependency graph has cyclic dependencies: /a -> /b -> /a"),
    (tree(make_app("/a", dependencies=["/a"])), "Dependency graph has cyclic dependencies: /a -> /a"),
    (tree(make_app("/a", dependencies=["/b"]), make_app("/b", dependencies=["/c"]),
          make_app("/c", dependencies=["/a"])),
     "Dependency graph has cyclic dependencies: /a -> /b -> /c -> /a"),
    (tree(make_app("/g/a"), make_app("/h/b"), groups={"/g": ["/h"], "/h": ["/g"]}),
     "Dependency graph has cyclic dependencies: /g/a -> /h/b -> /g/a"),
    (tree(make_app("/g/a"), make_app("/g/b"), groups={"/g": ["/g/b"]}),   # /g/b is in /g: it waits for itself
     "Dependency graph has cyclic dependencies: /g/b -> /g/b"),
    (Group(ROOT, groups={P("/g"): Group(P("/g"), groups={P("/g/h"): Group(P("/g/h"), enforce_role=True)})}),
     "enforceRole can only be set for top-level groups, not /g/h"),
    (Group(ROOT, apps={P("/g/a"): make_app("/g/a")}), "identifier /g/a is not child of /"),
])
def test_invalid_roots(root, message):
    with pytest.raises(ValidationError) as raised:
        validate_root(root)
    assert message in raised.value.details["/"]


def test_a_deep_dependency_chain_does_not_recurse():
    apps = [make_app(f"/a{i}", dependencies=[f"/a{i + 1}"] if i < 2999 else []) for i in range(3000)]
    root = Group(ROOT, apps={a.id: a for a in apps})
    validate_root(root)
    layers = dependency_order(root)
    assert len(layers) == 3000 and layers[0] == [P("/a2999")] and layers[-1] == [P("/a0")]


# --------------------------------------------------------------------------- dependency order

@pytest.mark.parametrize("root, only, layers", [
    (empty_root(), None, []),
    (tree(make_app("/a"), make_app("/b")), None, [["/a", "/b"]]),
    (tree(make_app("/db"), make_app("/api", dependencies=["/db"]), make_app("/web", dependencies=["/api"]),
          make_app("/worker", dependencies=["/db"])), None, [["/db"], ["/api", "/worker"], ["/web"]]),
    # the longest path decides: /web depends on /db directly and through /api
    (tree(make_app("/db"), make_app("/api", dependencies=["/db"]), make_app("/web", dependencies=["/db", "/api"])),
     None, [["/db"], ["/api"], ["/web"]]),
    # a dependency on a group is one on each of its apps
    (tree(make_app("/data/pg"), make_app("/data/redis", dependencies=["/data/pg"]),
          make_app("/web", dependencies=["/data"])),
     None, [["/data/pg"], ["/data/redis"], ["/web"]]),
    # a group's dependencies hold for every app below it
    (tree(make_app("/db/a"), make_app("/svc/x"), make_app("/svc/deep/y"), groups={"/svc": ["/db"]}),
     None, [["/db/a"], ["/svc/deep/y", "/svc/x"]]),
    (put_group(empty_root(), Group.from_json(PRODUCT)), None,
     [["/product/database/mongo", "/product/database/mysql"], ["/product/service/rails"],
      ["/product/service/play"], ["/product/frontend/web"]]),
    # only the affected apps, in layers computed over the whole tree
    (tree(make_app("/db"), make_app("/api", dependencies=["/db"]), make_app("/web", dependencies=["/api"])),
     {P("/db"), P("/web")}, [["/db"], ["/web"]]),
])
def test_dependency_order(root, only, layers):
    assert dependency_order(root, only) == [[P(a) for a in layer] for layer in layers]


def test_dependency_order_refuses_cycles():
    with pytest.raises(ValidationError, match="cyclic"):
        dependency_order(tree(make_app("/a", dependencies=["/b"]), make_app("/b", dependencies=["/a"])))


# --------------------------------------------------------------------------- versions

def test_stamp_versions_dates_what_changed():
    original = stamp_versions(empty_root(), tree(make_app("/g/a"), make_app("/h/b")), NOW)
    assert original.version == STAMP
    assert find_app(original, P("/g/a")).version_info == VersionInfo(STAMP, STAMP)
    later = NOW + 60
    target = put_app(original, dataclasses.replace(find_app(original, P("/g/a")), instances=3))
    stamped = stamp_versions(original, target, later)
    a = find_app(stamped, P("/g/a"))
    assert a.version_info == VersionInfo("2023-11-14T22:14:20.000Z", STAMP)      # scale only
    assert find_group(stamped, P("/g")).version == "2023-11-14T22:14:20.000Z"
    assert find_group(stamped, P("/h")) is find_group(original, P("/h"))           # untouched
    assert stamp_versions(original, original, later) == original                   # no change, no new version


def test_stamp_versions_keeps_a_version_the_caller_set():
    from meseta.frameworks.marathon.app import restarted
    original = stamp_versions(empty_root(), tree(make_app("/a")), NOW)
    again = restarted(find_app(original, P("/a")), NOW + 1)
    stamped = stamp_versions(original, put_app(original, again), NOW + 2)
    assert find_app(stamped, P("/a")) == again


def test_stamp_versions_ignores_a_stale_version_sent_back():
    original = stamp_versions(empty_root(), tree(make_app("/a")), NOW)
    echoed = dataclasses.replace(find_app(original, P("/a")), cmd="new", version="2015-01-01T00:00:00.000Z")
    stamped = find_app(stamp_versions(original, put_app(original, echoed), NOW + 1), P("/a"))
    assert stamped.version == "2023-11-14T22:13:21.000Z"
    assert stamped.version_info == VersionInfo(stamped.version, stamped.version)


# --------------------------------------------------------------------------- properties

_names = st.sampled_from(["a", "b", "c", "db", "web"])


@st.composite
def roots(draw):
    """Random trees of up to 12 apps with acyclic dependencies (each app may depend on earlier ones)."""
    paths = draw(st.lists(st.lists(_names, min_size=1, max_size=3).map(tuple), max_size=12, unique=True))
    # keep a set of paths where no path is a prefix of another (apps are leaves)
    leaves = [p for p in paths if not any(q != p and q[:len(p)] == p for q in paths)]
    root, seen = empty_root(), []
    for path in leaves:
        dependencies = draw(st.lists(st.sampled_from(seen), max_size=2, unique=True)) if seen else []
        root = put_app(root, make_app("/" + "/".join(path), draw(st.integers(0, 5)), dependencies))
        seen.append("/" + "/".join(path))
    return stamp_versions(empty_root(), root, NOW)


@settings(max_examples=100)
@given(roots())
def test_a_root_survives_its_json(root):
    validate_root(root)
    assert Group.from_json(root.to_json()) == root


@settings(max_examples=100)
@given(roots(), st.data())
def test_putting_then_removing_an_app_gives_the_original_root(root, data):
    group = data.draw(st.sampled_from(transitive_groups(root)))
    app_id = group.id.child("fresh")  # a name the trees never use
    assert remove_app(put_app(root, make_app(str(app_id))), app_id) == root


@settings(max_examples=100)
@given(roots())
def test_dependencies_always_come_in_earlier_layers(root):
    layers = dependency_order(root)
    layer_of = {app_id: i for i, layer in enumerate(layers) for app_id in layer}
    assert sorted(layer_of) == [a.id for a in transitive_apps(root)]
    for app in transitive_apps(root):
        assert all(layer_of[d] < layer_of[app.id] for d in app.dependencies)


@settings(max_examples=50)
@given(roots())
def test_scaling_by_one_changes_nothing(root):
    assert scale_group(root, ROOT, 1) == root
