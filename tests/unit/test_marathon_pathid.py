"""meseta.frameworks.marathon.pathid: Marathon's path ids, task ids and DNS names."""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meseta.frameworks.marathon.pathid import (
    ROOT,
    SEGMENT_PATTERN,
    PathId,
    PathIdError,
    dns_label,
    id_errors,
    parse_task_id,
    resolve,
    task_id,
)

P = PathId.parse
UUID = "5e2f4a1c-0b1d-11ee-9c2a-0242ac120002"
RESERVED = "must not end with any of the following reserved keywords: restart, tasks, versions, ., .."
REGEX = f"must fully match regular expression '{SEGMENT_PATTERN}'"
EMPTY = "Path must contain at least one path element"


# --------------------------------------------------------------------------- parsing and resolution

@pytest.mark.parametrize("text, segments, absolute, shown", [
    ("/product/web", ("product", "web"), True, "/product/web"),
    ("product/web", ("product", "web"), False, "product/web"),
    ("//product//web/", ("product", "web"), True, "/product/web"),
    ("/", (), True, "/"),
    ("", (), False, ""),
    ("../db", ("..", "db"), False, "../db"),
])
def test_parse_splits_without_validating(text, segments, absolute, shown):
    path = P(text)
    assert (path.segments, path.absolute, str(path)) == (segments, absolute, shown)


@pytest.mark.parametrize("text, base, expected", [
    ("web", "/", "/web"),
    ("web", "/product", "/product/web"),
    ("/web", "/product", "/web"),
    ("../db", "/product/web", "/product/db"),
    ("./web", "/product", "/product/web"),
    ("a/./b/../c", "/", "/a/c"),
    ("../../../x", "/a", "/x"),          # `..` stops at the root, as Marathon's canonicalPath
    ("/a/b/..", "/", "/a"),
])
def test_canonical_resolves_against_the_enclosing_group(text, base, expected):
    assert P(text).canonical(P(base)) == P(expected)


def test_canonical_needs_an_absolute_base():
    with pytest.raises(PathIdError, match="absolute"):
        P("a").canonical(P("relative"))


@pytest.mark.parametrize("text", [
    "/web", "web", "/product/web-1", "/a.b/c", "/0", "/a-b.c-d/e", "../db", "/x/./y",
    "/" + "a" * 63, "/restarts", "/tasks/app",
])
def test_valid_ids(text):
    assert id_errors(text) == []


@pytest.mark.parametrize("text, errors", [
    ("/Web", [REGEX]),
    ("/-web", [REGEX]),
    ("/web-", [REGEX]),
    ("/we_b", [REGEX]),
    ("/a..b", [REGEX]),
    ("/a b", [REGEX]),
    ("/product/tasks", [RESERVED]),
    ("/product/restart", [RESERVED]),
    ("/versions", [RESERVED]),
    ("/a/..", [RESERVED]),
    ("/a/.", [RESERVED]),
    ("", [EMPTY]),
    ("/", [EMPTY]),
    ("/" + "a" * 64, ["'aaaaaaaaaaaaaaaaaaaa...' is longer than 63 characters (a DNS label)"]),
    ("/Bad/TASKS", [REGEX]),
    ("/Bad/tasks", [REGEX, RESERVED]),
    (42, ["expected string, got int"]),
])
def test_invalid_ids_with_marathons_messages(text, errors):
    assert id_errors(text) == errors


def test_resolve_validates_and_canonicalises():
    assert resolve("web", P("/product")) == P("/product/web")
    assert resolve("/product/web") == P("/product/web")
    with pytest.raises(PathIdError) as raised:
        resolve("/Product/tasks")
    assert raised.value.errors == [REGEX, RESERVED]


def test_resolve_refuses_ids_that_resolve_to_the_root():
    with pytest.raises(PathIdError) as raised:
        resolve("../web/..", P("/"))
    assert RESERVED in raised.value.errors
    with pytest.raises(PathIdError) as raised:
        resolve("..", P("/a"))
    assert raised.value.errors == [RESERVED]


# --------------------------------------------------------------------------- navigation

def test_navigation():
    web = P("/product/frontend/web")
    assert web.parent == P("/product/frontend")
    assert web.name == "web"
    assert web.ancestors() == [ROOT, P("/product"), P("/product/frontend")]
    assert web.is_child_of(P("/product/frontend")) and not web.is_child_of(P("/product"))
    assert web.is_descendant_of(P("/product")) and web.is_descendant_of(ROOT)
    assert not web.is_descendant_of(web) and not P("/productx").is_descendant_of(P("/product"))
    assert ROOT.parent == ROOT and ROOT.is_root and ROOT.name == ""
    assert P("/product").child("web") == P("/product/web")
    assert sorted([P("/b"), P("/a/z"), P("/a")]) == [P("/a"), P("/a/z"), P("/b")]


@pytest.mark.parametrize("app_id, hostname, safe", [
    ("/product/web", "web.product", "product_web"),
    ("/web", "web", "web"),
    ("/a.b/c", "c.a.b", "a.b_c"),
    ("/x/y/z", "z.y.x", "x_y_z"),
])
def test_mesos_task_name_and_safe_path(app_id, hostname, safe):
    assert P(app_id).to_hostname() == hostname
    assert P(app_id).safe_path() == safe
    assert PathId.from_safe_path(safe) == P(app_id)


# --------------------------------------------------------------------------- task ids

def test_task_id_is_the_safe_path_and_a_uuid():
    assert task_id(P("/product/web"), UUID) == f"product_web.{UUID}"
    generated = task_id(P("/product/web"))
    assert re.fullmatch(r"product_web\.[0-9a-f-]{36}", generated)
    assert generated != task_id(P("/product/web"))
    with pytest.raises(PathIdError):
        task_id(ROOT, UUID)


@pytest.mark.parametrize("text, app_id, uuid, incarnation", [
    (f"product_web.{UUID}", "/product/web", UUID, None),
    (f"my-group_my-app.{UUID}", "/my-group/my-app", UUID, None),
    (f"a.b_c.{UUID}", "/a.b/c", UUID, None),
    (f"web_{UUID}", "/web", UUID, None),
    (f"product_web.instance-{UUID}._app", "/product/web", UUID, None),
    (f"product_web.instance-{UUID}._app.3", "/product/web", UUID, 3),
    (f"product_web.marathon-{UUID}", "/product/web", UUID, None),
])
def test_parse_task_id_reads_every_marathon_format(text, app_id, uuid, incarnation):
    parts = parse_task_id(text)
    assert (parts.app_id, parts.uuid, parts.incarnation) == (P(app_id), uuid, incarnation)


@pytest.mark.parametrize("text", ["", "nodot", ".uuid", "_uuid", None])
def test_parse_task_id_rejects_non_task_ids(text):
    with pytest.raises(PathIdError, match="Invalid task id"):
        parse_task_id(text)


# --------------------------------------------------------------------------- DNS names

@pytest.mark.parametrize("app_id, label", [
    ("/product/web", "web-product"),
    ("/web", "web"),
    ("/a.b/c", "c-a-b"),
    ("/" + "/".join(["group"] * 12) + "/web", ("web-" + "group-" * 12)[:63].rstrip("-")),
    # trailing `-` at the cut is trimmed and the label filled up from the rest
    ("/" + "b" * 5 + "/" + "a" * 57, "a" * 57 + "-bbbbb"),
    ("/" + "b" * 10 + "/" + "a" * 62, "a" * 62 + "b"),
])
def test_dns_label_follows_mesos_dns(app_id, label):
    assert dns_label(P(app_id)) == label


# --------------------------------------------------------------------------- properties

_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
_segment = st.lists(_label, min_size=1, max_size=3).map(".".join).filter(
    lambda s: s not in ("restart", "tasks", "versions"))
app_ids = st.lists(_segment, min_size=1, max_size=6).map(lambda s: PathId(tuple(s)))


@given(app_ids)
def test_valid_ids_round_trip_through_text(app_id):
    assert id_errors(str(app_id)) == []
    assert resolve(str(app_id)) == app_id
    assert resolve(str(app_id)[1:], ROOT) == app_id


@given(app_ids, st.uuids())
def test_task_ids_name_their_app(app_id, uuid):
    parts = parse_task_id(task_id(app_id, uuid))
    assert (parts.app_id, parts.uuid) == (app_id, str(uuid))


@given(app_ids)
def test_dns_labels_are_rfc1123(app_id):
    assert re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", dns_label(app_id))
