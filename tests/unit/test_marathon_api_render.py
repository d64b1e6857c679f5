"""meseta.frameworks.marathon.api: label selectors, embeds, counts and task statistics, the
metrics JSON, and the leader proxy between two apps served on loopback ports."""

from __future__ import annotations

import http.client
import json

import pytest

from meseta import proto
from meseta.frameworks.marathon.api import create_app
from meseta.frameworks.marathon.api.misc import _quantile
from meseta.frameworks.marathon.api.render import (app_embeds, app_info, counts, group_embeds,
                                                   queue_json, task_stats)
from meseta.frameworks.marathon.api.selectors import LabelSelector, app_filter, parse_label_selectors
from meseta.frameworks.marathon.app import AppDefinition, VersionInfo
from meseta.frameworks.marathon.errors import ApiError
from meseta.frameworks.marathon.group import DEFAULT_EMBED, empty_root, put_app
from meseta.frameworks.marathon.instances import Instance
from meseta.frameworks.marathon.pathid import PathId
from meseta.frameworks.marathon.snapshot import (CurrentAction, DeploymentView, OfferSummary,
                                                 QueueEntry, Snapshot)
from meseta.http import HttpServer
from meseta.testing import marathon_fake as fake

P = PathId.parse

# ---------------------------------------------------------------------------------------------
# Label selectors

SELECTORS = [
    ("", []),
    ("env", [LabelSelector("env")]),
    ("env==prod", [LabelSelector("env", "==", ("prod",))]),
    (" env != prod ", [LabelSelector("env", "!=", ("prod",))]),
    ("env in (a, b),tier", [LabelSelector("env", "in", ("a", "b")), LabelSelector("tier")]),
    ("env notin(a)", [LabelSelector("env", "notin", ("a",))]),
    (r"my\ key==a\,b", [LabelSelector("my key", "==", ("a,b",))]),
    ("index", [LabelSelector("index")]),
    ("a.b-c_d==1.0", [LabelSelector("a.b-c_d", "==", ("1.0",))]),
]


@pytest.mark.parametrize("text, expected", SELECTORS)
def test_label_selectors_parse(text, expected):
    assert parse_label_selectors(text) == expected


@pytest.mark.parametrize("text", ["env in (a", "env==", "==a", "env,", "env in ()", "env=prod", "a b"])
def test_label_selectors_that_do_not_parse_are_422(text):
    with pytest.raises(ApiError) as error:
        parse_label_selectors(text)
    assert error.value.status == 422 and error.value.body["message"].startswith(
        f"Can not parse label selector {text}. Reason:")


LABELS = {"env": "prod", "tier": "front"}
MATCHES = [("env", True), ("missing", False), ("env==prod", True), ("env==dev", False),
           ("env!=dev", True), ("missing!=dev", False), ("env in (dev,prod)", True),
           ("env notin (dev,prod)", False), ("missing notin (x)", False),
           ("env==prod,tier==back", False), ("env==prod,tier", True)]


@pytest.mark.parametrize("text, matches", MATCHES)
def test_label_selectors_match_as_marathon(text, matches):
    app = AppDefinition(P("/a"), cmd="x", labels=LABELS)
    assert app_filter(label=text)(app) is matches


def test_cmd_and_id_filters_are_case_insensitive_substrings():
    app = AppDefinition(P("/product/Web"), cmd="Python -m http.server")
    assert app_filter(cmd="python", app_id="PRODUCT/web")(app)
    assert not app_filter(cmd="ruby")(app)
    assert not app_filter(cmd="x")(AppDefinition(P("/a"), args=("x",)))


# ---------------------------------------------------------------------------------------------
# Embeds, counts, task statistics, readiness, queue

EMBEDS = [
    ([], "apps.", frozenset()),
    (["apps.counts"], "apps.", {"counts"}),
    (["apps.tasks"], "apps.", {"tasks", "deployments"}),
    (["apps.failures"], "apps.", {"lastTaskFailure", "tasks", "counts", "deployments"}),
    (["apps.nonsense", "group.apps.counts", "app.counts"], "apps.", frozenset()),
    (["group.apps.readiness", "group.apps.taskStats"], "group.apps.", {"readiness", "taskStats"}),
]


@pytest.mark.parametrize("values, prefix, expected", EMBEDS)
def test_app_embeds(values, prefix, expected):
    assert app_embeds(values, prefix) == expected


def test_group_embeds_default_and_chosen():
    assert group_embeds([]) == (DEFAULT_EMBED, frozenset())
    assert group_embeds(["group.apps", "group.apps.tasks"]) == (
        {"group.apps"}, {"tasks", "deployments"})


def instance(app, n, state, version=None, started=None):
    return Instance(instance_id=f"a.instance-{n}", task_id=f"a.instance-{n}._app.1", app_id=app.id,
                    version=version or app.version, config_version="", agent_id="S1", host="h",
                    state=state, started_at=started)


APP = AppDefinition(P("/a"), cmd="x", instances=4, version="2020-01-01T00:00:03.000Z",
                    version_info=VersionInfo("2020-01-01T00:00:03.000Z", "2020-01-01T00:00:02.000Z"))


def test_counts_follow_marathon_rules():
    instances = [instance(APP, 0, proto.TASK_STAGING), instance(APP, 1, proto.TASK_STARTING),
                 instance(APP, 2, proto.TASK_RUNNING), instance(APP, 3, proto.TASK_RUNNING),
                 instance(APP, 4, proto.TASK_RUNNING)]
    health = {"a.instance-2": ({"alive": True}, {"alive": True}),
              "a.instance-3": ({"alive": True}, {"alive": False})}
    assert counts(instances, Snapshot(health=health)) == {
        "tasksStaged": 1, "tasksRunning": 3, "tasksHealthy": 1, "tasksUnhealthy": 1}


def test_task_stats_by_version_with_life_times():
    old = instance(APP, 0, proto.TASK_RUNNING, version="2020-01-01T00:00:01.000Z", started=100.0)
    scaled = instance(APP, 1, proto.TASK_RUNNING, version="2020-01-01T00:00:03.000Z", started=160.0)
    staged = instance(APP, 2, proto.TASK_STAGING, version="2020-01-01T00:00:02.000Z")
    stats = task_stats(APP, [old, scaled, staged], Snapshot(now=200.0))
    assert list(stats) == ["startedAfterLastScaling", "withLatestConfig", "withOutdatedConfig",
                           "totalSummary"]
    assert stats["startedAfterLastScaling"]["stats"] == {
        "counts": {"staged": 0, "running": 1, "healthy": 0, "unhealthy": 0},
        "lifeTime": {"averageSeconds": 40.0, "medianSeconds": 40.0}}
    assert stats["withLatestConfig"]["stats"]["counts"]["staged"] == 1
    assert "lifeTime" not in task_stats(APP, [staged], Snapshot())["withLatestConfig"]["stats"]
    assert stats["withOutdatedConfig"]["stats"]["lifeTime"] == {"averageSeconds": 100.0,
                                                                 "medianSeconds": 100.0}
    assert stats["totalSummary"]["stats"]["lifeTime"] == {"averageSeconds": 70.0, "medianSeconds": 70.0}
    assert task_stats(APP, [], Snapshot()) == {}


def test_terminal_instances_are_neither_counted_nor_listed_and_readiness_comes_from_deployments():
    results = ({"taskId": "a.instance-0._app.1", "name": "ready", "ready": False, "lastResponse": None},)
    view = DeploymentView(plan=None, current_step=1,
                          current_actions=(CurrentAction("RestartApplication", APP.id, results),))
    snapshot = Snapshot(root=put_app(empty_root(), APP), deployments=(view,), instances={APP.id: (
        instance(APP, 0, proto.TASK_RUNNING), instance(APP, 1, proto.TASK_FAILED))})
    info = app_info(APP, snapshot, {"counts", "tasks", "readiness"})
    assert info["tasksRunning"] == 1 and len(info["tasks"]) == 1
    assert info["readinessCheckResults"] == list(results)


def test_queue_lists_unknown_reasons_after_marathons():
    entry = QueueEntry(APP.id, 2, 0.0, offers=OfferSummary(
        processed_offers_count=4, reject_summary_launch_attempt={"InsufficientCpus": 1, "MesetaOnly": 3}))
    body = queue_json(Snapshot(root=put_app(empty_root(), APP), queue={APP.id: entry}))
    summary = body["queue"][0]["processedOffersSummary"]["rejectSummaryLaunchAttempt"]
    assert summary[-1] == {"reason": "MesetaOnly", "declined": 3, "processed": 3}
    assert body["queue"][0]["delay"] == {"timeLeftSeconds": 0, "overdue": True}
    orphan = queue_json(Snapshot(queue={P("/gone"): QueueEntry(P("/gone"), 1, 0.0)}))
    assert orphan == {"queue": []}


@pytest.mark.parametrize("q, expected", [(0.25, 0.5), (0.5, 1.0), (0.75, 1.5), (0.99, 1.98), (1.0, 2.0)])
def test_histogram_quantiles_interpolate_within_buckets(q, expected):
    buckets = [(1.0, 2.0), (2.0, 4.0), (float("inf"), 4.0)]   # 2 up to 1 s, 2 between 1 and 2 s
    assert _quantile(buckets, 4.0, q) == pytest.approx(expected)


def test_histogram_quantile_in_the_open_bucket_is_its_lower_bound():
    assert _quantile([(1.0, 2.0), (float("inf"), 4.0)], 4.0, 0.9) == 1.0


# ---------------------------------------------------------------------------------------------
# The leader proxy, between two apps on loopback ports

class Served:
    """A fake service's app on a real port; `seen` records what reached it."""

    def __init__(self, leading: bool) -> None:
        self.service = fake.world()
        self.service.leading = leading
        self.seen: list[dict] = []
        self.app = None
        self.server = HttpServer(self._wsgi, "127.0.0.1", 0, threads=4, name="marathon-test")
        self.server.start()
        self.address = f"127.0.0.1:{self.server.port}"
        self.app = create_app(self.service, address=self.address)

    def _wsgi(self, environ, start_response):
        self.seen.append({"path": environ["PATH_INFO"], "via": environ.get("HTTP_X_MARATHON_VIA"),
                          "forwarded": environ.get("HTTP_X_FORWARDED_FOR")})
        return self.app(environ, start_response)


@pytest.fixture
def pair():
    leader, standby = Served(True), Served(False)
    leader.service.leader_address = standby.service.leader_address = leader.address
    yield leader, standby
    leader.server.stop()
    standby.server.stop()


def fetch(served, method, path, body=None, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", served.server.port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_a_standby_forwards_to_the_leader_and_passes_the_answer_back(pair):
    leader, standby = pair
    status, headers, body = fetch(standby, "GET", "/v2/apps?label=env%3D%3Dprod")
    assert status == 200 and [a["id"] for a in json.loads(body)["apps"]] == ["/web"]
    assert headers["X-Marathon-Via"] == standby.address
    assert headers["X-Marathon-Leader"] == f"http://{leader.address}"
    assert leader.seen[-1] == {"path": "/v2/apps", "via": standby.address, "forwarded": "127.0.0.1"}
    status, headers, body = fetch(standby, "POST", "/v2/apps", json.dumps({"id": "/made", "cmd": "c"}),
                                  {"Content-Type": "application/json"})
    assert status == 201 and headers["Location"] == "/v2/apps/made"
    assert headers["Marathon-Deployment-Id"] == json.loads(body)["deployments"][0]["id"]
    assert fake.app_of(leader.service, "/made") and not fake.app_of(standby.service, "/made")


def test_health_and_metrics_are_answered_locally_and_events_redirect(pair):
    leader, standby = pair
    for path in ("/health", "/metrics", "/metrics/prometheus"):
        assert fetch(standby, "GET", path)[0] == 200
    assert leader.seen == []
    status, headers, _ = fetch(standby, "GET", "/v2/events?event_type=status_update_event")
    assert status == 307
    assert headers["Location"] == f"http://{leader.address}/v2/events?event_type=status_update_event"


def test_no_leader_loops_and_an_unreachable_leader(pair):
    leader, standby = pair
    status, _, body = fetch(standby, "GET", "/v2/apps",
                            headers={"X-Marathon-Via": f"x:1, {standby.address}"})
    assert (status, json.loads(body)) == (502, {"message": "Detected proxying loop."})
    # two standbys naming each other: the request comes back to the first one, which refuses it
    leader.service.leading, leader.service.leader_address = False, standby.address
    standby.service.leader_address = leader.address
    status, _, body = fetch(standby, "GET", "/v2/apps")
    assert (status, json.loads(body)["message"]) == (502, "Detected proxying loop.")
    assert leader.seen[-1]["via"] == standby.address
    for unknown in (None, standby.address):     # none, or itself while not leading
        standby.service.leader_address = unknown
        status, _, body = fetch(standby, "GET", "/v2/apps")
        assert (status, json.loads(body)) == (503, {"message": "Could not determine the current leader"})
    leader.server.stop()
    standby.service.leader_address = leader.address
    status, _, body = fetch(standby, "DELETE", "/v2/apps/web")
    assert status == 502
    assert json.loads(body)["message"].startswith(f"Could not reach the leader at {leader.address}")
