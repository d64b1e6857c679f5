"""lb/daemon.py without processes: which configs need `haproxy -c`, and how the apps HAProxy
rejects are found and left out (a stand-in for haproxy that rejects a marker)."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from meseta.config import load_config
from meseta.lb.daemon import LB_FLAGS, LbDaemon, server_skeleton
from meseta.lb.haproxy import CheckResult, ReloadResult
from meseta.lb.render import RenderConfig, render


def app(app_id: str, port: int, tasks: int, **labels: str) -> dict:
    return {"id": app_id, "labels": {"HAPROXY_GROUP": "external", **labels},
            "portDefinitions": [{"port": port}], "healthChecks": [],
            "tasks": [{"id": f"{app_id[1:]}.{n}", "host": "10.0.0.1", "ports": [31000 + port % 1000 * 10 + n],
                       "state": "TASK_RUNNING", "healthCheckResults": []} for n in range(tasks)]}


CONFIG = RenderConfig(bind_http_https=False, bind_addr="127.0.0.1")


def skeleton(*apps: dict) -> str | None:
    return server_skeleton(render(list(apps), CONFIG))


def test_only_a_changed_server_set_keeps_the_skeleton():
    assert skeleton(app("/web", 10000, 3)) == skeleton(app("/web", 10000, 5))
    assert skeleton(app("/web", 10000, 3), app("/api", 10001, 1)) == \
        skeleton(app("/web", 10000, 1), app("/api", 10001, 4))


def test_a_new_service_an_empty_backend_or_another_option_changes_it():
    assert skeleton(app("/web", 10000, 3)) != skeleton(app("/web", 10000, 3), app("/api", 10001, 1))
    assert skeleton(app("/web", 10000, 3)) != skeleton(app("/web", 10000, 0))
    assert skeleton(app("/web", 10000, 3)) != skeleton(app("/web", 10000, 3, HAPROXY_0_BALANCE="leastconn"))
    assert skeleton(app("/web", 10000, 3)) != skeleton(app("/web", 10001, 3))


def test_sticky_cookies_are_part_of_the_shape_not_of_the_skeleton():
    sticky = {"HAPROXY_0_STICKY": "true", "HAPROXY_0_MODE": "http"}
    assert skeleton(app("/web", 10000, 2, **sticky)) == skeleton(app("/web", 10000, 4, **sticky))


def test_a_server_named_twice_in_a_backend_must_be_checked():
    text = "backend b\n  server x 1.1.1.1:1 id 1\n  server x 1.1.1.1:1 id 2\n"
    assert server_skeleton(text) is None
    assert server_skeleton("backend a\n  server x 1.1.1.1:1 id 1\nbackend b\n  server x 1.1.1.1:1 id 2\n")


@dataclass
class FakeHaproxy:
    """Rejects any config that contains a marker, as `haproxy -c` rejects a bad option."""
    marker: str = "no-such-bind-option"
    last_config: str = ""
    checks: int = 0
    applied: int = 0
    unchecked_applies: int = 0

    def check(self, text: str) -> CheckResult:
        self.checks += 1
        bad = self.marker in text
        return CheckResult(not bad, f"[ALERT] (1) : unknown keyword '{self.marker}'" if bad else "")

    def apply(self, text: str, *, force: bool = False, check: bool = True) -> ReloadResult:
        if check and not self.check(text).ok:
            return ReloadResult(False, 0.0, (), f"[ALERT] (1) : unknown keyword '{self.marker}'")
        self.unchecked_applies += 0 if check else 1
        self.applied += 1
        self.last_config = text
        return ReloadResult(True, 0.01, (1,))


@pytest.fixture
def daemon(tmp_path):
    config = load_config(LB_FLAGS, ["--haproxy=/bin/false", f"--work_dir={tmp_path}"], {})
    daemon = LbDaemon(config)
    daemon.haproxy = FakeHaproxy()
    daemon.render_config = CONFIG
    return daemon


def test_the_apps_haproxy_rejects_are_left_out_and_the_rest_applied(daemon):
    apps = [app(f"/app{n}", 10000 + n, 1) for n in range(40)]
    apps[7]["labels"]["HAPROXY_0_BIND_OPTIONS"] = "no-such-bind-option"
    apps[31]["labels"]["HAPROXY_0_BIND_OPTIONS"] = "no-such-bind-option"
    daemon._apply_apps(apps)
    assert set(daemon.excluded) == {"/app7", "/app31"}
    assert "no-such-bind-option" in daemon.excluded["/app7"][1]
    live = daemon.haproxy.last_config
    assert "frontend app8_10008" in live and "app7_" not in live and "app31_" not in live
    assert daemon.haproxy.checks < 40           # halving, not one check per app


def test_an_excluded_app_stays_out_without_a_new_search_until_its_definition_changes(daemon):
    apps = [app(f"/app{n}", 10000 + n, 1) for n in range(8)]
    apps[3]["labels"]["HAPROXY_0_BIND_OPTIONS"] = "no-such-bind-option"
    daemon._apply_apps(apps)
    checks = daemon.haproxy.checks
    apps[0] = app("/app0", 10000, 2)                              # a new task elsewhere
    daemon._apply_apps(apps)
    assert daemon.haproxy.checks == checks                        # no search, not even a check
    assert "/app3" in daemon.excluded
    apps[3] = app("/app3", 10003, 1)                              # fixed
    daemon._apply_apps(apps)
    assert "/app3" not in daemon.excluded and "frontend app3_10003" in daemon.haproxy.last_config


def test_server_only_changes_skip_the_check(daemon):
    daemon._apply_apps([app("/web", 10000, 3)])
    daemon._apply_apps([app("/web", 10000, 4)])
    daemon._apply_apps([app("/web", 10000, 2)])
    assert daemon.haproxy.unchecked_applies == 2
    daemon._apply_apps([app("/web", 10000, 2), app("/api", 10001, 1)])
    assert daemon.haproxy.unchecked_applies == 2


def test_a_bad_global_template_keeps_the_running_config(daemon):
    daemon.haproxy.marker = "listen stats"                        # everything is rejected
    daemon._apply_apps([app("/web", 10000, 1)])
    assert daemon.haproxy.applied == 0 and daemon.excluded == {}


def test_health_memory_is_bounded(daemon, tmp_path):
    daemon.config.lru_cache_capacity = 2
    checked = app("/web", 10000, 3)
    checked["healthChecks"] = [{"protocol": "TCP", "portIndex": 0}]
    for task in checked["tasks"]:
        task["healthCheckResults"] = [{"alive": True}]
    daemon._apply_apps([checked])
    assert len(daemon.health) == 2
