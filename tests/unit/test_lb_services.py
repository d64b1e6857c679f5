"""lb/services.py: Marathon apps -> the services marathon-lb would expose (its get_apps)."""
from __future__ import annotations

import pytest

from meseta.lb.services import Backend, ServiceOptions, discover, networking_mode

HOSTS = {"agent1": "1.1.1.1", "agent2": "2.2.2.2", "10.0.2.148": "10.0.2.148"}
HTTP_CHECK = {"protocol": "HTTP", "path": "/health", "portIndex": 0, "intervalSeconds": 2,
              "timeoutSeconds": 10, "maxConsecutiveFailures": 10, "gracePeriodSeconds": 10}


def task(task_id: str, host: str = "agent1", ports=(1024,), state: str = "TASK_RUNNING",
         **extra) -> dict:
    return {"id": task_id, "host": host, "ports": list(ports), "state": state, **extra}


def app(app_id: str = "/nginx", labels=None, ports=(10000,), tasks=None, **extra) -> dict:
    return {"id": app_id, "labels": {"HAPROXY_GROUP": "external", **(labels or {})},
            "portDefinitions": [{"port": p} for p in ports],
            "tasks": [task(f"{app_id[1:]}.1")] if tasks is None else tasks, **extra}


def found(apps, memory=None, **options):
    return discover(apps, ServiceOptions(**options), health_memory=memory or {},
                    resolve=HOSTS.get)


def backends(apps, **options) -> dict[tuple[str, int], list[tuple[str, int]]]:
    return {(s.app_id, s.service_port): [(b.ip, b.port) for b in s.backends]
            for s in found(apps, **options).services}


# --------------------------------------------------------------------------- networking


@pytest.mark.parametrize("definition, mode", [
    ({}, "host"),
    ({"ipAddress": {"networkName": "dcos"}}, "container"),
    ({"container": {"docker": {"network": "USER"}}}, "container"),
    ({"container": {"docker": {"network": "BRIDGE"}}}, "container/bridge"),
    ({"container": {"docker": {"network": "HOST"}}}, "host"),
    ({"networks": [{"mode": "container/bridge"}]}, "container/bridge"),
    ({"networks": [{"mode": "container", "name": "dcos"}]}, "container"),
    ({"networks": [{"mode": "host"}]}, "host"),
    ({"networks": [{"name": "dcos"}]}, "container"),
])
def test_networking_mode(definition, mode):
    assert networking_mode(definition) == mode


BRIDGE_15 = {   # trimmed from marathon-lb's tests/marathon15_apps.json (Marathon 1.5)
    "id": "/pywebserver", "labels": {"HAPROXY_GROUP": "external",
                                     "HAPROXY_0_VHOST": "pywebserver.example.com"},
    "container": {"type": "DOCKER", "docker": {"image": "python:3"},
                  "portMappings": [{"containerPort": 8080, "hostPort": 0, "servicePort": 10101,
                                    "protocol": "tcp", "name": "pyweb"}]},
    "networks": [{"mode": "container/bridge"}], "portDefinitions": [], "instances": 1,
    "tasks": [{"id": "pywebserver.8cad6a69-8ac4-11e7-8c2e-0242ac110002", "host": "10.0.2.148",
               "ipAddresses": [{"ipAddress": "172.17.0.2", "protocol": "IPv4"}],
               "ports": [1565], "state": "TASK_RUNNING", "appId": "/pywebserver"}]}


@pytest.mark.parametrize("definition, expected", [
    ("host portDefinitions", {("/nginx", 10000): [("1.1.1.1", 1024)]}),
    ("host legacy ports", {("/nginx", 10000): [("1.1.1.1", 1024)]}),
    ("bridge, Marathon 1.5", {("/pywebserver", 10101): [("10.0.2.148", 1565)]}),
    ("bridge, docker portMappings", {("/b", 10200): [("1.1.1.1", 31001)]}),
    ("ip-per-task with discovery ports", {("/c", 10300): [("9.0.0.7", 80)]}),
    ("ip-per-task, container portMappings", {("/d", 10400): [("9.0.0.8", 8080)]}),
    ("ip-per-task without service ports: auto-assigned", {("/e", 10050): [("9.0.0.9", 8080)]}),
])
def test_service_ports_and_addresses_per_networking_mode(definition, expected):
    apps = {
        "host portDefinitions": app(),
        "host legacy ports": {**{k: v for k, v in app().items() if k != "portDefinitions"},
                              "ports": [10000]},
        "bridge, Marathon 1.5": BRIDGE_15,
        "bridge, docker portMappings": app("/b", ports=(), tasks=[task("b.1", ports=[31001])],
                                           container={"docker": {"network": "BRIDGE",
                                                                 "portMappings": [
                                                                     {"containerPort": 80,
                                                                      "servicePort": 10200}]}}),
        "ip-per-task with discovery ports": app(
            "/c", ports=(10300,), ipAddress={"discovery": {"ports": [{"number": 80}]}},
            tasks=[task("c.1", ports=[], ipAddresses=[{"ipAddress": "9.0.0.7"}])]),
        "ip-per-task, container portMappings": app(
            "/d", ports=(), networks=[{"mode": "container", "name": "dcos"}],
            container={"portMappings": [{"containerPort": 8080, "servicePort": 10400}]},
            tasks=[task("d.1", ports=[], ipAddresses=[{"ipAddress": "9.0.0.8"}])]),
        "ip-per-task without service ports: auto-assigned": app(
            "/e", ports=(), networks=[{"mode": "container", "name": "dcos"}],
            container={"portMappings": [{"containerPort": 8080}]},
            tasks=[task("e.1", ports=[], ipAddresses=[{"ipAddress": "9.0.0.9"}])]),
    }[definition]
    assert backends([apps]) == expected


def ip_per_task(app_id: str, *container_ports: int) -> dict:
    return app(app_id, ports=(), networks=[{"mode": "container"}],
               container={"portMappings": [{"containerPort": p} for p in container_ports]},
               tasks=[task(f"{app_id[1:]}.1", ports=[], ipAddresses=[{"ipAddress": "9.0.0.1"}])])


def test_auto_assigned_ports_follow_app_ids_not_input_order_and_stop_at_the_range_end():
    apps = [ip_per_task("/z", 80), ip_per_task("/a", 80, 81), ip_per_task("/m", 80)]
    ports = lambda given: sorted(backends(given, min_serv_port_ip_per_task=10050,
                                          max_serv_port_ip_per_task=10052))
    assert ports(apps) == ports(apps[::-1]) == [
        ("/a", 10050), ("/a", 10051), ("/m", 10052)]      # /z: the range is used up


def test_host_app_without_service_ports_has_no_service():
    assert found([app(ports=())]).services == ()


def test_task_port_counts_that_differ_between_versions_pair_as_many_as_there_are():
    apps = [app(ports=(10000, 10001), tasks=[task("a.1", ports=[31000]),
                                             task("a.2", "agent2", ports=[31005, 31006, 31007])])]
    assert backends(apps) == {("/nginx", 10000): [("1.1.1.1", 31000), ("2.2.2.2", 31005)],
                              ("/nginx", 10001): [("2.2.2.2", 31006)]}


@pytest.mark.parametrize("change, kept", [
    ({}, True),
    ({"host": ""}, False),                                 # Marathon 0.7.6's host-less tasks
    ({"host": "unresolvable"}, False),
    ({"ports": []}, True),                                 # falls back to portDefinitions: 10000
    ({"state": "TASK_LOST"}, True),
    ({"state": "TASK_UNREACHABLE"}, True),
    *[({"state": s}, False) for s in (
        "TASK_STAGING", "TASK_STARTING", "TASK_KILLING", "TASK_FINISHED", "TASK_FAILED",
        "TASK_KILLED", "TASK_ERROR", "TASK_DROPPED", "TASK_GONE", "TASK_GONE_BY_OPERATOR",
        "TASK_UNKNOWN")],
])
def test_task_filter(change, kept):
    assert bool(found([app(tasks=[{**task("t.1"), **change}])]).services) == kept


def test_container_task_without_ip_is_left_out():
    apps = [app("/c", ipAddress={"discovery": {"ports": [{"number": 80}]}},
                tasks=[task("c.1", ports=[], ipAddresses=[])])]
    assert found(apps).services == ()


# --------------------------------------------------------------------------- health


def checked(*tasks_: dict, checks=(HTTP_CHECK,)) -> list[dict]:
    return [app(tasks=list(tasks_), healthChecks=list(checks))]


@pytest.mark.parametrize("results, memory, kept, verdict", [
    ([{"alive": True}], None, True, True),
    ([{"alive": False}], None, False, False),
    ([{"alive": False}, {"alive": True}], None, True, True),    # any check alive
    ([{"alive": False}], True, False, False),                  # a result beats the memory
    ([], True, True, True),                                    # Marathon failed over: remember
    ([], False, False, False),
    ([], None, False, None),                                   # never seen healthy: wait
    (None, True, True, True),                                  # no healthCheckResults key
])
def test_health_filter_and_memory(results, memory, kept, verdict):
    extra = {} if results is None else {"healthCheckResults": results}
    result = found(checked(task("t.1", **extra)), memory=None if memory is None else {"t.1": memory})
    assert bool(result.services) == kept
    assert result.health.get("t.1") == verdict


def test_health_is_ignored_without_health_checks_or_with_the_option_off():
    sick = task("t.1", healthCheckResults=[{"alive": False}])
    assert found([app(tasks=[sick])]).services
    assert found(checked(sick), health_check=False).services
    assert found(checked(sick), health_check=False).health == {}


@pytest.mark.parametrize("checks, mode, check_protocol", [
    ([HTTP_CHECK], "http", "HTTP"),
    ([{**HTTP_CHECK, "protocol": "MESOS_HTTP"}], "http", "MESOS_HTTP"),
    ([{**HTTP_CHECK, "protocol": "TCP"}], "tcp", "TCP"),
    ([{**HTTP_CHECK, "protocol": "HTTPS"}], "tcp", "HTTPS"),
    ([{"protocol": "COMMAND", "command": {"value": "true"}}], "tcp", None),  # no port index
    ([{**HTTP_CHECK, "portIndex": 1}], "tcp", None),                       # another port's
    ([{**HTTP_CHECK, "portIndex": 1}, {**HTTP_CHECK, "protocol": "TCP", "port": 8080}],
     "tcp", "TCP"),                                                         # first with `port`
])
def test_health_check_of_a_port_and_the_mode_it_implies(checks, mode, check_protocol):
    alive = task("t.1", healthCheckResults=[{"alive": True}])
    (service,) = found(checked(alive, checks=checks)).services
    assert service.mode == mode
    assert (service.health_check.protocol if service.health_check else None) == check_protocol


@pytest.mark.parametrize("labels, health, mode", [
    ({}, [], "tcp"),
    ({"HAPROXY_0_VHOST": "a.example.com"}, [], "http"),
    ({"HAPROXY_0_MODE": "tcp", "HAPROXY_0_VHOST": "a.example.com"}, [], "tcp"),
    ({}, [HTTP_CHECK], "http"),
    ({"HAPROXY_0_MODE": "TCP"}, [HTTP_CHECK], "tcp"),
    ({"HAPROXY_0_MODE": "http"}, [], "http"),
])
def test_mode_label_beats_http_check_beats_vhost(labels, health, mode):
    tasks = [task("t.1", healthCheckResults=[{"alive": True}])]
    (service,) = found([app(labels=labels, tasks=tasks, healthChecks=health)]).services
    assert service.mode == mode


def test_healthcheck_port_index_probes_the_same_rank_backend_of_another_port():
    checks = [{**HTTP_CHECK, "portIndex": 1}]
    tasks = [task("t.2", "agent2", ports=[2000, 2001], healthCheckResults=[{"alive": True}]),
             task("t.1", "agent1", ports=[1000, 1001], healthCheckResults=[{"alive": True}])]
    labels = {"HAPROXY_0_BACKEND_HEALTHCHECK_PORT_INDEX": "1"}
    services = found([app(labels=labels, ports=(9000, 9001), tasks=tasks,
                          healthChecks=checks)]).services
    assert [(b.port, b.check_port) for b in services[0].backends] == [(1000, 1001), (2000, 2001)]
    assert services[0].mode == "http" and services[0].health_check.port_index == 1
    assert [b.check_port for b in services[1].backends] == [None, None]   # its own check


def test_health_check_port_is_the_check_port_of_every_backend():
    checks = [{**HTTP_CHECK, "port": 8558}]
    (service,) = found(checked(task("t.1", healthCheckResults=[{"alive": True}]),
                               checks=checks)).services
    assert service.backends == (Backend("agent1", "1.1.1.1", 1024, False, 8558),)


# --------------------------------------------------------------------------- groups, strict mode


@pytest.mark.parametrize("labels, groups, exposed", [
    ({}, ("external",), [10000, 10001]),
    ({}, ("internal",), []),
    ({}, ("*",), [10000, 10001]),
    ({"HAPROXY_GROUP": "internal,external"}, ("external",), [10000, 10001]),
    ({"HAPROXY_GROUP": "internal", "HAPROXY_1_GROUP": "external"}, ("external",), [10001]),
    ({"HAPROXY_0_GROUP": "internal"}, ("external",), [10001]),
    ({"HAPROXY_0_GROUP": "internal"}, ("internal",), [10000]),
    ({"HAPROXY_GROUP": ""}, ("external",), []),                      # ungrouped: only for *
    ({"HAPROXY_GROUP": ""}, ("*",), [10000, 10001]),
])
def test_groups(labels, groups, exposed):
    apps = [app(labels=labels, ports=(10000, 10001), tasks=[task("t.1", ports=[1, 2])])]
    assert [s.service_port for s in found(apps, groups=groups).services] == exposed


@pytest.mark.parametrize("labels, strict, exposed", [
    ({}, False, [10000, 10001]),
    ({}, True, []),
    ({"HAPROXY_1_ENABLED": "true"}, True, [10001]),
    ({"HAPROXY_0_ENABLED": "false"}, False, [10001]),
    ({"HAPROXY_0_ENABLED": "yes", "HAPROXY_1_ENABLED": "no"}, True, [10000]),
])
def test_strict_mode_exposes_only_enabled_ports(labels, strict, exposed):
    apps = [app(labels=labels, ports=(10000, 10001), tasks=[task("t.1", ports=[1, 2])])]
    assert [s.service_port for s in found(apps, strict_mode=strict).services] == exposed


def test_the_load_balancer_own_app_is_not_exposed():
    apps = [app("/marathon-lb"), app("/nginx")]
    assert [s.app_id for s in found(apps).services] == ["/nginx"]


# --------------------------------------------------------------------------- labels


def test_labels_become_service_fields():
    labels = {"HAPROXY_0_VHOST": "A.example.com, b.example.com", "HAPROXY_0_PATH": "-i /api",
              "HAPROXY_0_AUTH": "realm:user:$6$hash", "HAPROXY_0_STICKY": "true",
              "HAPROXY_0_REDIRECT_TO_HTTPS": "t", "HAPROXY_0_USE_HSTS": "y",
              "HAPROXY_0_SSL_CERT": "/etc/ssl/a.pem", "HAPROXY_0_BIND_OPTIONS": "ciphers X",
              "HAPROXY_0_BIND_ADDR": "10.0.0.1", "HAPROXY_0_PORT": "8080",
              "HAPROXY_0_BALANCE": "leastconn", "HAPROXY_0_BACKEND_WEIGHT": "5",
              "HAPROXY_0_HTTP_BACKEND_PROXYPASS_PATH": "/p",
              "HAPROXY_0_HTTP_BACKEND_REVPROXY_PATH": "/r", "HAPROXY_0_HTTP_BACKEND_REDIR": "/x",
              "HAPROXY_0_BACKEND_NETWORK_ALLOWED_ACL": "10.0.0.0/8 127.0.0.1",
              "HAPROXY_0_BACKEND_HEAD": "\nbackend {backend}\n", "HAPROXY_0_SOMETHING": "kept",
              "HAPROXY_1_VHOST": "other.example.com"}
    (s,) = found([app(labels=labels)]).services
    assert (s.vhosts, s.path, s.auth.realm, s.auth.user, s.auth.password) == (
        ("a.example.com", "b.example.com"), "-i /api", "realm", "user", "$6$hash")
    assert (s.sticky, s.redirect_to_https, s.use_hsts, s.ssl_cert, s.bind_options) == (
        True, True, True, "/etc/ssl/a.pem", "ciphers X")
    assert (s.bind_addr, s.service_port, s.backend, s.balance, s.backend_weight) == (
        "10.0.0.1", 8080, "nginx_8080", "leastconn", 5)
    assert (s.proxy_path, s.revproxy_path, s.redirect_path, s.network_allowed) == (
        "/p", "/r", "/x", ("10.0.0.0/8", "127.0.0.1"))
    assert s.templates == {"BACKEND_HEAD": "\nbackend {backend}\n", "SOMETHING": "kept"}


@pytest.mark.parametrize("label, value, says", [
    ("HAPROXY_0_PORT", "eighty", "HAPROXY_0_PORT: 'eighty' is not an integer"),
    ("HAPROXY_0_PORT", "70000", "not a port number"),
    ("HAPROXY_0_MODE", "udp", "HAPROXY_0_MODE: 'udp': the mode is http or tcp"),
    ("HAPROXY_0_BALANCE", "roundrobin\n  server evil 6.6.6.6:1", "control character"),
    ("HAPROXY_0_BALANCE", "round;robin", "not a balance algorithm"),
    ("HAPROXY_0_VHOST", "a.example.com\nbackend x", "control character"),
    ("HAPROXY_0_VHOST", "a.example.com }", "one word"),
    ("HAPROXY_0_VHOST", " , ", "no virtual host"),
    ("HAPROXY_0_AUTH", "realm:user", "realm:user:encrypted-password"),
    ("HAPROXY_0_AUTH", 'my realm:user:pw', "one word"),
    ("HAPROXY_0_BACKEND_WEIGHT", "heavy", "not an integer"),
    ("HAPROXY_0_BACKEND_HEALTHCHECK_PORT_INDEX", "first", "not an integer"),
    ("HAPROXY_0_BACKEND_NETWORK_ALLOWED_ACL", "10.0.0.0/8 intranet", "'intranet' is not an"),
    ("HAPROXY_0_BIND_ADDR", "10.0.0.1 10.0.0.2", "one word"),
    ("HAPROXY_0_HTTP_BACKEND_PROXYPASS_PATH", "/p", "needs HAPROXY_0_VHOST"),
    ("HAPROXY_1_PORT", "x", "HAPROXY_1_PORT"),                  # another port: still the whole app
])
def test_a_bad_label_leaves_the_whole_app_out_with_a_reason(label, value, says):
    apps = [app("/bad", labels={label: value}, ports=(10000, 10001),
                tasks=[task("bad.1", ports=[1, 2])]), app("/good", ports=(10002,))]
    result = found(apps)
    assert [s.app_id for s in result.services] == ["/good"]
    assert says in result.skipped["/bad"]


def test_bad_labels_of_another_lb_group_are_not_reported():
    apps = [app("/theirs", labels={"HAPROXY_GROUP": "internal", "HAPROXY_0_PORT": "x"})]
    assert found(apps).skipped == {}
    assert "HAPROXY_0_PORT" in found(apps, groups=("*",)).skipped["/theirs"]


def test_unreadable_app_json_is_skipped_not_raised():
    apps = [app("/odd", tasks=[{"id": "odd.1", "host": "agent1", "ports": ["x"]}]), app("/ok")]
    result = found(apps)
    assert [s.app_id for s in result.services] == ["/ok"]
    assert "unreadable app" in result.skipped["/odd"]


# --------------------------------------------------------------------------- blue/green


def colour(name: str, started: str, tasks: list[dict], target: int = 3, **extra) -> dict:
    labels = {"HAPROXY_DEPLOYMENT_GROUP": "nginx", "HAPROXY_DEPLOYMENT_ALT_PORT": "10001",
              "HAPROXY_DEPLOYMENT_STARTED_AT": started, "HAPROXY_0_PORT": "10000",
              "HAPROXY_DEPLOYMENT_TARGET_INSTANCES": str(target)}
    return app(f"/nginx-{name}", labels=labels, ports=(10000 if name == "blue" else 10001,),
               tasks=tasks, instances=len(tasks), healthChecks=[HTTP_CHECK], **extra)


def healthy(task_id: str, port: int) -> dict:
    return task(task_id, ports=[port], healthCheckResults=[{"alive": True}])


def test_blue_green_apps_merge_and_the_oldest_old_tasks_drain_as_new_ones_become_healthy():
    blue = colour("blue", "2016-02-01T15:51:38.184623Z",
                  [healthy(f"nginx-blue.{i}", 1020 + i) for i in range(3)])
    green = colour("green", "2016-02-01T16:10:05Z",
                   [healthy("nginx-green.1", 1030), task("nginx-green.2", ports=[1031])])
    result = found([green, blue])
    (service,) = result.services
    assert (service.app_id, service.service_port) == ("/nginx", 10000)
    assert [(b.port, b.draining) for b in service.backends] == [
        (1020, True), (1021, False), (1022, False), (1030, False)]


def test_blue_green_without_target_instances_leaves_the_group_out():
    blue = colour("blue", "2016-02-01T15:51:38Z", [healthy("nginx-blue.1", 1020)])
    green = colour("green", "2016-02-01T16:10:05Z", [healthy("nginx-green.1", 1030)])
    del green["labels"]["HAPROXY_DEPLOYMENT_TARGET_INSTANCES"]
    result = found([blue, green])
    assert result.services == ()
    assert set(result.skipped) == {"/nginx-blue", "/nginx-green"}


def test_a_single_app_of_a_deployment_group_is_renamed_after_it():
    (service,) = found([colour("blue", "", [healthy("nginx-blue.1", 1020)])]).services
    assert service.backend == "nginx_10000" and not service.backends[0].draining
