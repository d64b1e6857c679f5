"""meseta.frameworks.marathon.app: parsing, normalising, validating, writing and versioning apps."""

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meseta.frameworks.marathon.app import (
    AppDefinition,
    UpgradeStrategy,
    VersionInfo,
    format_timestamp,
    is_scaling_only_change,
    is_upgrade,
    merge,
    next_version,
    parse_timestamp,
    restarted,
)
from meseta.frameworks.marathon.pathid import PathId
from meseta.frameworks.marathon.schema import ValidationError

P = PathId.parse
NOW = 1_700_000_000.0  # 2023-11-14T22:13:20.000Z

# Marathon 1.10's writer order (reference §2.2), then the keys it writes only when set.
ORDER = ["id", "acceptedResourceRoles", "args", "backoffFactor", "backoffSeconds", "cmd",
         "constraints", "container", "cpus", "dependencies", "disk", "env", "executor", "fetch",
         "gpus", "healthChecks", "check", "instances", "labels", "maxLaunchDelaySeconds", "mem",
         "networks", "portDefinitions", "readinessChecks", "requirePorts", "secrets",
         "taskKillGracePeriodSeconds", "upgradeStrategy", "user", "version", "versionInfo",
         "unreachableStrategy", "killSelection", "tty", "role", "residency", "resourceLimits",
         "executorResources"]
# marathon-python's MarathonApp builds itself with cls(**keys): any other key raises TypeError.
MARATHON_PYTHON_APP_KEYS = set(
    "acceptedResourceRoles args backoffFactor backoffSeconds cmd constraints container cpus "
    "dependencies deployments disk env executor healthChecks id role instances killSelection "
    "labels lastTaskFailure maxLaunchDelaySeconds mem ports requirePorts storeUrls taskRateLimit "
    "tasks tasksRunning tasksStaged tasksHealthy taskKillGracePeriodSeconds tasksUnhealthy "
    "upgradeStrategy unreachableStrategy uris user version versionInfo ipAddress fetch taskStats "
    "readinessChecks readinessCheckResults secrets portDefinitions residency gpus networks".split())


def parse(**fields):
    return AppDefinition.from_json({"id": "/app", "cmd": "sleep 1", **fields})


def problems(obj, **kwargs):
    with pytest.raises(ValidationError) as raised:
        AppDefinition.from_json(obj, **kwargs)
    body = raised.value.to_json()
    assert body["message"] == "Object is not valid"
    return {d["path"]: d["errors"] for d in body["details"]}


def docker(network=None, **extra):
    spec = {"image": "nginx", **extra}
    if network:
        spec["network"] = network
    return {"type": "DOCKER", "docker": spec}


# --------------------------------------------------------------------------- defaults and output

def test_minimal_app_gets_marathons_defaults():
    app = AppDefinition.from_json({"id": "web", "cmd": "sleep 1"}, base_group=P("/product"))
    assert app.to_json() == {
        "id": "/product/web", "backoffFactor": 1.15, "backoffSeconds": 1, "cmd": "sleep 1",
        "constraints": [], "cpus": 1, "dependencies": [], "disk": 0, "env": {}, "executor": "",
        "fetch": [], "gpus": 0, "healthChecks": [], "instances": 1, "labels": {},
        "maxLaunchDelaySeconds": 300, "mem": 128, "networks": [{"mode": "host"}],
        "portDefinitions": [{"port": 0, "protocol": "tcp", "name": "default"}],
        "readinessChecks": [], "requirePorts": False, "secrets": {},
        "upgradeStrategy": {"maximumOverCapacity": 1, "minimumHealthCapacity": 1},
        "unreachableStrategy": {"inactiveAfterSeconds": 0, "expungeAfterSeconds": 0},
        "killSelection": "YOUNGEST_FIRST"}
    assert app == AppDefinition(P("/product/web"), cmd="sleep 1")


def test_every_field_written_in_marathons_order():
    app = parse(args=None, user="nobody", acceptedResourceRoles=["*"], role="web", check={"tcp": {}},
                taskKillGracePeriodSeconds=5, tty=True, residency={"taskLostBehavior": "WAIT_FOREVER"},
                resourceLimits={"cpus": "unlimited", "mem": 512}, executorResources={"cpus": 0.1},
                version="2015-09-25T15:13:48.343Z",
                versionInfo={"lastScalingAt": "2015-09-25T15:13:48.343Z",
                             "lastConfigChangeAt": "2015-09-25T15:13:48.343Z"},
                container={"type": "MESOS"})
    keys = list(app.to_json())
    assert keys == [k for k in ORDER if k in keys]
    assert set(ORDER) - set(keys) == {"args"}


def test_output_of_a_typical_app_is_readable_by_marathon_python():
    app = parse(container=docker("BRIDGE", portMappings=[{"containerPort": 80, "name": "http"}]),
                healthChecks=[{"protocol": "HTTP"}], labels={"HAPROXY_GROUP": "external"},
                version="2015-09-25T15:13:48.343Z",
                versionInfo={"lastScalingAt": "2015-09-25T15:13:48.343Z",
                             "lastConfigChangeAt": "2015-09-25T15:13:48.343Z"})
    out = app.to_json()
    assert set(out) <= MARATHON_PYTHON_APP_KEYS
    assert "portDefinitions" not in out  # host networking only
    assert set(out["container"]) == {"type", "docker", "volumes", "portMappings"}
    assert out["container"]["portMappings"] == [
        {"containerPort": 80, "hostPort": 0, "servicePort": 0, "protocol": "tcp", "name": "http"}]


@pytest.mark.parametrize("protocol, expected", [
    ("HTTP", {"protocol": "HTTP", "path": "/", "portIndex": 0, "gracePeriodSeconds": 300,
              "intervalSeconds": 60, "timeoutSeconds": 20, "maxConsecutiveFailures": 3,
              "delaySeconds": 15, "ignoreHttp1xx": False}),
    ("TCP", {"protocol": "TCP", "portIndex": 0, "gracePeriodSeconds": 300, "intervalSeconds": 60,
             "timeoutSeconds": 20, "maxConsecutiveFailures": 3, "delaySeconds": 15}),
    ("MESOS_HTTP", {"protocol": "MESOS_HTTP", "path": "/", "portIndex": 0, "gracePeriodSeconds": 300,
                    "intervalSeconds": 60, "timeoutSeconds": 20, "maxConsecutiveFailures": 3,
                    "delaySeconds": 15, "ignoreHttp1xx": False, "ipProtocol": "IPv4"}),
])
def test_health_check_defaults(protocol, expected):
    assert parse(healthChecks=[{"protocol": protocol}]).health_checks == [expected]


def test_command_health_check_has_no_port():
    check = parse(healthChecks=[{"protocol": "COMMAND", "command": {"value": "true"}}]).health_checks[0]
    assert "portIndex" not in check and check["command"] == {"value": "true"}


def test_readiness_check_defaults():
    app = parse(portDefinitions=[{"port": 0, "name": "http-api"}], readinessChecks=[{}])
    assert app.readiness_checks == [{
        "name": "readinessCheck", "protocol": "HTTP", "path": "/", "portName": "http-api",
        "intervalSeconds": 30, "timeoutSeconds": 10, "httpStatusCodesForReady": [200],
        "preserveLastResponse": False}]


def test_resident_apps_default_to_their_own_strategies():
    app = parse(container={"type": "MESOS", "volumes": [
        {"containerPath": "data", "mode": "RW", "persistent": {"size": 10}}]})
    assert app.is_resident
    assert app.upgrade_strategy == UpgradeStrategy(0.5, 0.0)
    assert app.unreachable_strategy == "disabled"


def test_partial_strategies_are_filled_from_the_defaults():
    app = parse(upgradeStrategy={"minimumHealthCapacity": 0.5}, unreachableStrategy={"expungeAfterSeconds": 60})
    assert app.upgrade_strategy == UpgradeStrategy(0.5, 1.0)
    assert app.unreachable_strategy == {"inactiveAfterSeconds": 0, "expungeAfterSeconds": 60}


def test_relative_ids_and_dependencies_resolve_against_the_enclosing_group():
    app = AppDefinition.from_json({"id": "../web", "cmd": "x", "dependencies": ["db", "../cache", "/q"]},
                                  base_group=P("/product/v2"))
    assert app.id == P("/product/web")
    assert app.dependencies == (P("/product/db"), P("/cache"), P("/q"))


# --------------------------------------------------------------------------- deprecated forms

@pytest.mark.parametrize("given, attribute, expected", [
    ({"ports": [80, 0]}, "port_definitions",
     [{"port": 80, "protocol": "tcp"}, {"port": 0, "protocol": "tcp"}]),
    ({"ports": []}, "port_definitions", []),
    ({"ports": [80], "portDefinitions": [{"port": 80, "protocol": "tcp", "labels": {}}]},
     "port_definitions", [{"port": 80, "protocol": "tcp", "labels": {}}]),
    ({"uris": ["http://x/a.tgz", "http://x/run.sh", "http://x/B.ZIP"]}, "fetch", [
        {"uri": "http://x/a.tgz", "extract": True, "executable": False, "cache": False},
        {"uri": "http://x/run.sh", "extract": False, "executable": False, "cache": False},
        {"uri": "http://x/B.ZIP", "extract": True, "executable": False, "cache": False}]),
    ({"fetch": [{"uri": "http://x/run.sh", "executable": True}]}, "fetch",
     [{"uri": "http://x/run.sh", "extract": True, "executable": True, "cache": False}]),
    ({"args": [], "cmd": "x"}, "args", None),
    ({"acceptedResourceRoles": []}, "accepted_resource_roles", None),
    ({"ports": None, "uris": None, "ipAddress": None, "storeUrls": None, "residency": None},
     "port_definitions", [{"port": 0, "protocol": "tcp", "name": "default"}]),
    ({"container": docker("HOST")}, "networks", [{"mode": "host"}]),
    ({"container": docker("BRIDGE")}, "networks", [{"mode": "container/bridge"}]),
    ({"container": docker("USER")}, "networks", [{"mode": "container"}]),
    ({"container": docker("USER"), "ipAddress": {"networkName": "dcos"}}, "networks",
     [{"mode": "container", "name": "dcos"}]),
    ({"ipAddress": {"networkName": "dcos", "discovery": {"ports": [{"number": 80, "name": "http"}]}}},
     "container", {"type": "MESOS", "volumes": [],
                   "portMappings": [{"containerPort": 80, "servicePort": 0, "protocol": "tcp", "name": "http"}]}),
    ({"networks": [{"name": "dcos"}]}, "networks", [{"mode": "container", "name": "dcos"}]),
])
def test_deprecated_and_shorthand_forms_are_normalised(given, attribute, expected):
    assert getattr(parse(**given), attribute) == expected


def test_docker_port_mappings_move_to_the_container():
    app = parse(container=docker("BRIDGE", portMappings=[{"containerPort": 80, "servicePort": 10000}]))
    assert app.network_mode == "container/bridge"
    assert app.container == {
        "type": "DOCKER",
        "docker": {"image": "nginx", "parameters": [], "privileged": False, "forcePullImage": False},
        "volumes": [],
        "portMappings": [{"containerPort": 80, "hostPort": 0, "servicePort": 10000, "protocol": "tcp"}]}
    assert app.port_definitions == []


def test_container_networking_has_no_host_port_unless_given():
    app = parse(networks=[{"mode": "container", "name": "n"}],
                container={"type": "MESOS", "portMappings": [{"containerPort": 80},
                                                             {"containerPort": 81, "hostPort": 0}]})
    assert [("hostPort" in m) for m in app.container["portMappings"]] == [False, True]


def test_an_old_get_body_echoed_back_is_accepted():
    """Marathon <= 1.4 wrote a bridge app's service ports into `ports` and `portDefinitions`,
    nulls for unset fields, and AppInfo counters; clients PUT such bodies back."""
    body = {"id": "/old", "cmd": None, "args": None, "user": None, "ports": [10000],
            "portDefinitions": [{"port": 10000, "protocol": "tcp", "labels": {}}],
            "uris": [], "fetch": [], "storeUrls": [], "ipAddress": None, "residency": None,
            "container": {"type": "DOCKER", "volumes": [], "docker": {
                "image": "nginx", "network": "BRIDGE", "privileged": False, "parameters": [],
                "forcePullImage": False,
                "portMappings": [{"containerPort": 80, "hostPort": 0, "servicePort": 10000, "protocol": "tcp"}]}},
            "tasksStaged": 0, "tasksRunning": 1, "tasksHealthy": 0, "tasksUnhealthy": 0,
            "deployments": [], "tasks": [], "lastTaskFailure": None}
    app = AppDefinition.from_json(body)
    assert app.port_definitions == [] and app.container["portMappings"][0]["servicePort"] == 10000
    assert "tasksRunning" not in app.to_json()


def test_a_docker_image_alone_needs_no_command():
    assert parse(cmd=None, container=docker()).cmd is None
    assert AppDefinition.from_json({"id": "/d", "container": docker()}).container["type"] == "DOCKER"
    implied = AppDefinition.from_json({"id": "/d", "container": {"docker": {"image": "x"}}})
    assert implied.container["type"] == "DOCKER"


# --------------------------------------------------------------------------- bad input (reliability.md B1, B2)

@pytest.mark.parametrize("fields, path, message", [
    ({"id": "/Web"}, "/id", "must fully match regular expression"),
    ({"id": "/-web"}, "/id", "must fully match regular expression"),
    ({"id": "/product/tasks"}, "/id", "must not end with any of the following reserved keywords"),
    ({"id": "/" + "a" * 64}, "/id", "is longer than 63 characters"),
    ({"id": "/"}, "/id", "Path must contain at least one path element"),
    ({"id": 7}, "/id", "expected string, got integer"),
    ({"cpus": 0}, "/cpus", "is less than 0.001"),
    ({"cpus": 0.0009}, "/cpus", "is less than 0.001"),
    ({"mem": -1}, "/mem", "is less than 0"),
    ({"disk": -0.5}, "/disk", "is less than 0"),
    ({"instances": -1}, "/instances", "is less than 0"),
    ({"instances": 2**31}, "/instances", "is greater than 2147483647"),
    ({"gpus": -1}, "/gpus", "is less than 0"),
    ({"backoffFactor": 0.5}, "/backoffFactor", "is less than 1"),
    ({"backoffSeconds": -1}, "/backoffSeconds", "is less than 0"),
    ({"maxLaunchDelaySeconds": -1}, "/maxLaunchDelaySeconds", "is less than 0"),
    ({"upgradeStrategy": {"minimumHealthCapacity": 1.5}}, "/upgradeStrategy/minimumHealthCapacity",
     "is greater than 1"),
    ({"upgradeStrategy": {"maximumOverCapacity": -0.1}}, "/upgradeStrategy/maximumOverCapacity", "is less than 0"),
    ({"args": ["x"]}, "/", "AppDefinition must not contain both 'cmd' and 'args'"),
    ({"cmd": None}, "/", "AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'."),
    ({"cmd": ""}, "/cmd", "must not be empty"),
    ({"cpus": float("nan")}, "/cpus", "must be a finite number"),
    ({"mem": float("inf")}, "/mem", "must be a finite number"),
    ({"disk": json.loads("1e309")}, "/disk", "must be a finite number"),
    ({"upgradeStrategy": {"minimumHealthCapacity": float("-inf")}}, "/upgradeStrategy/minimumHealthCapacity",
     "must be a finite number"),
    ({"instances": True}, "/instances", "expected integer, got boolean"),
    ({"cpus": False}, "/cpus", "expected number, got boolean"),
    ({"mem": "128"}, "/mem", "expected number, got string"),
    ({"instances": "3"}, "/instances", "expected integer, got string"),
    ({"instances": 1.5}, "/instances", "expected integer, got number"),
    ({"requirePorts": "yes"}, "/requirePorts", "expected boolean, got string"),
    ({"env": {"A": 1}}, "/env/A", "expected string or object, got integer"),
    ({"env": {"A": None}}, "/env/A", "expected string or object, got null"),
    ({"labels": {"A": 1}}, "/labels/A", "expected string, got integer"),
    ({"instnces": 3}, "/instnces", "unknown field"),
    ({"portDefinitions": [{"port": 70000}]}, "/portDefinitions(0)/port", "is greater than 65535"),
    ({"portDefinitions": [{"port": 1, "protocl": "tcp"}]}, "/portDefinitions(0)/protocl", "unknown field"),
    ({"portDefinitions": [{"port": 1, "name": "Bad_Name"}]}, "/portDefinitions(0)/name", "must fully match"),
    ({"killSelection": "RANDOM"}, "/killSelection", "must be one of YOUNGEST_FIRST, OLDEST_FIRST"),
    ({"unreachableStrategy": "enabled"}, "/unreachableStrategy", 'must be "disabled"'),
    ({"readinessChecks": [{}, {}]}, "/readinessChecks", "must have at most 1 element(s)"),
    ({"version": "yesterday"}, "/version", "must fully match regular expression"),
    ({"executor": "a//b"}, "/executor", "must fully match regular expression"),
    ({"secrets": {"s": {}}}, "/secrets/s/source", "is required"),
    ({"dependencies": ["/Bad"]}, "/dependencies(0)", "must fully match regular expression"),
    ({"container": {"type": "DOCKER", "docker": {"image": "x"}, "portMapings": []}}, "/container/portMapings",
     "unknown field"),
])
def test_bad_input_is_rejected_at_its_path(fields, path, message):
    found = problems({"id": "/app", "cmd": "sleep 1", **fields})
    assert path in found, found
    assert any(message in m for m in found[path]), found[path]


def test_every_problem_is_reported_at_once():
    found = problems({"id": "/Web", "cmd": "x", "args": ["y"], "cpus": 0, "mem": -1, "instances": -1,
                      "backoffFactor": 0.5, "upgradeStrategy": {"maximumOverCapacity": 1.5},
                      "disk": float("nan"), "gpus": True, "constraints": [["host", "SOMETIMES"]]})
    assert set(found) == {"/id", "/", "/cpus", "/mem", "/instances", "/backoffFactor",
                          "/upgradeStrategy/maximumOverCapacity", "/disk", "/gpus", "/constraints(0)"}


def test_a_body_that_is_not_an_object():
    assert problems([1, 2]) == {"/": ["expected object, got array"]}
    assert problems({"cmd": "x"}) == {"/id": ["is required"]}


@pytest.mark.parametrize("fields, path, message", [
    ({"ports": [80], "portDefinitions": [{"port": 81}]}, "/ports",
     "cannot specify both ports and port definitions"),
    ({"uris": ["a"], "fetch": [{"uri": "b"}]}, "/uris", "cannot specify both uris and fetch fields"),
    ({"container": docker("BRIDGE"), "networks": [{"mode": "container/bridge"}]}, "/networks",
     "must not specify both container.docker.network and networks"),
    ({"ipAddress": {}, "networks": [{"mode": "container", "name": "n"}]}, "/ipAddress",
     "must not specify both ipAddress and networks"),
    ({"ipAddress": {}, "container": docker("BRIDGE")}, "/ipAddress",
     "ipAddress requires container.docker.network USER"),
    ({"container": docker("NONE")}, "/container/docker/network", "NONE is not supported"),
    ({"container": {**docker("BRIDGE", portMappings=[{"containerPort": 1}]),
                    "portMappings": [{"containerPort": 2}]}},
     "/container/docker/portMappings",
     "must not specify both container.docker.portMappings and container.portMappings"),
])
def test_a_deprecated_field_that_contradicts_its_replacement(fields, path, message):
    found = problems({"id": "/app", "cmd": "x", **fields})
    assert any(message in m for m in found.get(path, [])), found


@pytest.mark.parametrize("constraint, message", [
    (["hostname", "UNIQUE"], None),
    (["rack", "CLUSTER"], None),
    (["rack", "CLUSTER", "r1"], None),
    (["rack", "GROUP_BY"], None),
    (["rack", "GROUP_BY", "3"], None),
    (["rack", "LIKE", "r[0-9]+"], None),
    (["rack", "UNLIKE", "r1"], None),
    (["rack", "MAX_PER", "2"], None),
    (["rack", "IS", "r1.a/b_c-d"], None),
    (["hostname", "SOMETIMES"],
     "operator must be one of the following UNIQUE, CLUSTER, GROUP_BY, LIKE, MAX_PER, UNLIKE or IS"),
    (["hostname", "UNIQUE", "x"], "UNIQUE does not accept a value"),
    (["rack", "GROUP_BY", "two"], "GROUP BY must define an integer value or else no value at all"),
    (["rack", "MAX_PER"], "MAX_PER requires an integer value"),
    (["rack", "MAX_PER", "1.5"], "MAX_PER requires an integer value"),
    (["rack", "LIKE"], "LIKE and UNLIKE require a non-empty, regular expression value"),
    (["rack", "LIKE", "("], "is not a valid regular expression"),
    (["rack", "LIKE", "a" * 5000], "longer than 512 characters"),
    (["rack", "IS", "a b"], "IS only supports Mesos text and scalar values"),
    (["", "UNIQUE"], "missing field for constraint declaration"),
])
def test_constraints(constraint, message):
    body = {"id": "/app", "cmd": "x", "constraints": [constraint]}
    if message is None:
        assert AppDefinition.from_json(body).constraints == (tuple(constraint),)
    else:
        assert any(message in m for m in problems(body)["/constraints(0)"])


@pytest.mark.parametrize("constraints, path, message", [
    ("hostname:UNIQUE", "/constraints", "expected array, got string"),
    (["hostname"], "/constraints(0)", "expected array, got string"),
    ([["hostname"]], "/constraints(0)", "must have at least 2 element(s)"),
    ([["a", "LIKE", "x", "y"]], "/constraints(0)", "must have at most 3 element(s)"),
    ([["a", "MAX_PER", 2]], "/constraints(0)(2)", "expected string, got integer"),
])
def test_constraint_shapes(constraints, path, message):
    assert message in problems({"id": "/app", "cmd": "x", "constraints": constraints})[path]


@pytest.mark.parametrize("fields, path, message", [
    ({"container": docker(portMappings=[{"containerPort": 80}])}, "/container/portMappings",
     "portMappings are not allowed with host-networking"),
    ({"networks": [{"mode": "container/bridge"}], "portDefinitions": [{"port": 80}]}, "/portDefinitions",
     "portDefinitions are only allowed with host-networking"),
    ({"networks": [{"mode": "host"}, {"mode": "container", "name": "n"}]}, "/networks",
     "host and bridge networking cannot be combined with other networks"),
    ({"portDefinitions": [{"port": 80}, {"port": 80}]}, "/portDefinitions", "ports must be unique"),
    ({"portDefinitions": [{"port": 0, "name": "a"}, {"port": 0, "name": "a"}]}, "/portDefinitions",
     "Port names must be unique."),
    ({"container": {"type": "DOCKER"}}, "/container/docker", "is required for DOCKER containers"),
    ({"container": {"type": "MESOS", "docker": {}}}, "/container/docker/image", "is required"),
    ({"gpus": 1, "container": docker()}, "/gpus", "GPU resources only work with the Mesos containerizer"),
    ({"healthChecks": [{"port": 80, "portIndex": 0}]}, "/healthChecks(0)",
     "HealthCheck must specify either a port or a portIndex"),
    ({"healthChecks": [{"portIndex": 1}]}, "/healthChecks(0)/portIndex",
     "Health check port indices must address an element of the ports array or container port mappings."),
    ({"portDefinitions": [], "healthChecks": [{"protocol": "TCP"}]}, "/healthChecks(0)/portIndex",
     "Health check port indices must address an element of the ports array or container port mappings."),
    ({"healthChecks": [{"protocol": "COMMAND"}]}, "/healthChecks(0)/command",
     "is required for COMMAND health checks"),
    ({"healthChecks": [{"protocol": "MESOS_TCP"}, {"protocol": "MESOS_HTTP"}]}, "/healthChecks",
     "AppDefinition can contain at most one Mesos health check"),
    ({"portDefinitions": [{"port": 0, "name": "http-api"}], "readinessChecks": [{"timeoutSeconds": 30}]},
     "/readinessChecks(0)/timeoutSeconds", "must be less than intervalSeconds"),
    ({"readinessChecks": [{"portName": "web"}]}, "/readinessChecks(0)/portName", "no port named 'web'"),
    ({"unreachableStrategy": {"inactiveAfterSeconds": 10}}, "/unreachableStrategy",
     "inactiveAfterSeconds must be less or equal to expungeAfterSeconds"),
    ({"container": {"type": "MESOS", "volumes": [{"containerPath": "d", "persistent": {"size": 1}}]},
      "unreachableStrategy": {}}, "/unreachableStrategy",
     "unreachableStrategy must be disabled for resident tasks"),
    ({"container": {"type": "MESOS", "volumes": [{"containerPath": "d", "persistent": {"size": 1}}]},
      "upgradeStrategy": {"maximumOverCapacity": 0.5}}, "/upgradeStrategy/maximumOverCapacity",
     "must be 0 for resident tasks"),
    ({"env": {"DB": {"secret": "pw"}}}, "/env/DB", "references an undefined secret named 'pw'"),
    ({"labels": {"MARATHON_SINGLE_INSTANCE_APP": "true"}, "instances": 2}, "/instances",
     "is greater than 1 (single instance app)"),
])
def test_rules_across_fields(fields, path, message):
    found = problems({"id": "/app", "cmd": "x", **fields})
    assert any(message in m for m in found.get(path, [])), found


def test_secrets_referenced_from_env_are_accepted():
    app = parse(env={"DB": {"secret": "pw"}, "MODE": "prod"}, secrets={"pw": {"source": "/db/pw"}})
    assert app.env == {"DB": {"secret": "pw"}, "MODE": "prod"}


# --------------------------------------------------------------------------- partial updates

BASE = AppDefinition.from_json({"id": "/web", "cmd": "serve", "instances": 2, "labels": {"a": "b"},
                                "ports": [8080], "version": "2015-01-01T00:00:00.000Z",
                                "versionInfo": {"lastScalingAt": "2015-01-01T00:00:00.000Z",
                                                "lastConfigChangeAt": "2015-01-01T00:00:00.000Z"}})


@pytest.mark.parametrize("patch, changed", [
    ({}, {}),
    ({"instances": 5}, {"instances": 5}),
    ({"labels": {"c": "d"}}, {"labels": {"c": "d"}}),            # whole values, no deep merge
    ({"id": "/other", "version": "2020-01-01T00:00:00.000Z"}, {}),  # ignored
    ({"args": ["serve", "--fast"]}, {"cmd": None, "args": ("serve", "--fast")}),
    ({"ports": [9090]}, {"port_definitions": [{"port": 9090, "protocol": "tcp"}]}),
    ({"portDefinitions": []}, {"port_definitions": []}),
    ({"cmd": None}, {}),  # null means "not given"
    ({"networks": [{"mode": "container/bridge"}], "container": docker(portMappings=[{"containerPort": 80}])},
     {"networks": [{"mode": "container/bridge"}], "port_definitions": [],
      "container": {"type": "DOCKER", "docker": {"image": "nginx", "parameters": [], "privileged": False,
                                                 "forcePullImage": False},
                    "volumes": [], "portMappings": [{"containerPort": 80, "hostPort": 0, "servicePort": 0,
                                                     "protocol": "tcp"}]}}),
])
def test_merge_replaces_the_given_fields(patch, changed):
    merged = merge(BASE, patch)
    assert merged == dataclasses.replace(BASE, **changed)
    assert AppDefinition.from_json(patch, base=BASE) == merged


def test_merge_back_to_host_networking_drops_inherited_port_mappings():
    bridged = merge(BASE, {"networks": [{"mode": "container/bridge"}],
                           "container": docker(portMappings=[{"containerPort": 80}])})
    hosted = merge(bridged, {"networks": [{"mode": "host"}]})
    assert hosted.container["portMappings"] == []
    assert hosted.port_definitions == [{"port": 0, "protocol": "tcp", "name": "default"}]


def test_merge_reports_problems_at_the_patch_paths():
    with pytest.raises(ValidationError) as raised:
        merge(BASE, {"instances": -1, "cmd": "x", "args": ["y"]})
    assert set(raised.value.details) == {"/instances", "/"}
    with pytest.raises(ValidationError):
        merge(BASE, ["instances"])


# --------------------------------------------------------------------------- versions

STAMP = "2023-11-14T22:13:20.000Z"
OLD = "2015-01-01T00:00:00.000Z"


def test_timestamps():
    assert format_timestamp(NOW) == STAMP
    assert format_timestamp(1443194028.343) == "2015-09-25T15:13:48.343Z"
    assert parse_timestamp("2015-09-25T15:13:48.343Z") == 1443194028.343
    assert parse_timestamp("2015-09-25T17:13:48.343123+02:00") == 1443194028.343
    assert parse_timestamp("2015-09-25T15:13:48Z") == 1443194028
    with pytest.raises(ValueError):
        parse_timestamp("yesterday")


def test_versions_are_written_in_marathons_form():
    app = parse(version="2015-09-25T17:13:48+02:00")
    assert app.version == "2015-09-25T15:13:48.000Z" and app.version_info is None


@pytest.mark.parametrize("change, scaling_only, upgrade", [
    ({"instances": 3}, True, False),
    ({"labels": {"x": "y"}}, False, True),
    ({"health_checks": [{"protocol": "TCP"}]}, False, True),
    ({"cpus": 2.0, "instances": 3}, False, True),
    ({"max_launch_delay_seconds": 10}, False, True),
    ({"version": STAMP}, False, False),
    ({}, False, False),
])
def test_what_counts_as_a_config_change(change, scaling_only, upgrade):
    new = dataclasses.replace(BASE, **change)
    assert is_scaling_only_change(BASE, new) is scaling_only
    assert is_upgrade(BASE, new) is upgrade


@pytest.mark.parametrize("old, change, version, info", [
    (None, {}, STAMP, VersionInfo(STAMP, STAMP)),
    (BASE, {"instances": 5}, STAMP, VersionInfo(STAMP, OLD)),
    (BASE, {"cmd": "other"}, STAMP, VersionInfo(STAMP, STAMP)),
    (BASE, {"cmd": "other", "instances": 5}, STAMP, VersionInfo(STAMP, STAMP)),
    (BASE, {}, OLD, VersionInfo(OLD, OLD)),  # nothing changed: nothing new to store
])
def test_next_version(old, change, version, info):
    new = dataclasses.replace(BASE, version=None, version_info=None, **change)
    stamped = next_version(old, new, NOW)
    assert (stamped.version, stamped.version_info) == (version, info)
    assert dataclasses.replace(stamped, version=None, version_info=None) == new


def test_a_new_version_always_sorts_after_the_old_one():
    first = next_version(None, BASE, NOW)
    second = next_version(first, dataclasses.replace(first, instances=9), NOW)  # same millisecond
    third = next_version(second, dataclasses.replace(second, cmd="z"), NOW - 60)  # clock stepped back
    assert first.version < second.version < third.version
    assert second.version == "2023-11-14T22:13:20.001Z"


def test_restart_moves_the_config_change_but_not_the_scaling():
    scaled = next_version(BASE, dataclasses.replace(BASE, instances=4), NOW)
    again = restarted(scaled, NOW + 1)
    assert again.version == "2023-11-14T22:13:21.000Z"
    assert again.version_info == VersionInfo(STAMP, "2023-11-14T22:13:21.000Z")
    assert not is_upgrade(scaled, again)


# --------------------------------------------------------------------------- properties

_names = st.from_regex(r"[a-z]([a-z0-9-]{0,6}[a-z0-9])?", fullmatch=True)
_numbers = st.floats(min_value=0, max_value=1e6, allow_nan=False).map(lambda f: round(f, 3))
_text = st.text(alphabet="abc XYZ-_/.:=019", max_size=12)
_port_definition = st.fixed_dictionaries({"port": st.integers(0, 65535)}, optional={
    "protocol": st.sampled_from(["tcp", "udp", "udp,tcp"]), "labels": st.dictionaries(_names, _text, max_size=2)})
_health_check = st.fixed_dictionaries({"protocol": st.sampled_from(["HTTP", "HTTPS", "TCP"])}, optional={
    "path": st.just("/health"), "gracePeriodSeconds": st.integers(0, 600),
    "intervalSeconds": st.integers(1, 600), "maxConsecutiveFailures": st.integers(0, 10)})
_timestamp = st.integers(0, 4_000_000_000_000).map(lambda ms: format_timestamp(ms / 1000))

app_bodies = st.fixed_dictionaries({
    "id": st.lists(_names, min_size=1, max_size=3).map(lambda s: "/" + "/".join(s)),
    "cmd": _text.filter(bool),
}, optional={
    "instances": st.integers(0, 1000),
    "cpus": _numbers.filter(lambda f: f >= 0.001),
    "mem": _numbers,
    "disk": _numbers,
    "env": st.dictionaries(st.text(max_size=8), _text, max_size=3),
    "labels": st.dictionaries(st.text(max_size=8), _text, max_size=3),
    "constraints": st.lists(st.sampled_from([["hostname", "UNIQUE"], ["rack", "GROUP_BY", "2"],
                                             ["rack", "LIKE", "r.*"], ["zone", "MAX_PER", "1"]]), max_size=3),
    "portDefinitions": st.lists(_port_definition, max_size=3).filter(
        lambda ps: len({p["port"] for p in ps if p["port"]}) == len([p for p in ps if p["port"]])),
    "uris": st.lists(st.sampled_from(["http://x/a.tgz", "http://x/b.sh"]), max_size=2),
    "upgradeStrategy": st.fixed_dictionaries({}, optional={
        "minimumHealthCapacity": st.floats(0, 1), "maximumOverCapacity": st.floats(0, 1)}),
    "backoffFactor": st.floats(1, 10),
    "killSelection": st.sampled_from(["YOUNGEST_FIRST", "OLDEST_FIRST"]),
    "user": _text.filter(bool),
    "acceptedResourceRoles": st.lists(_names, min_size=1, max_size=2, unique=True),
    "taskKillGracePeriodSeconds": st.integers(0, 600),
    "version": _timestamp,
})


def _with_valid_health_checks(body, checks):
    ports = body.get("portDefinitions", [{}])
    return {**body, "healthChecks": [c for c in checks if ports]}


@settings(max_examples=150)
@given(app_bodies, st.lists(_health_check, max_size=2))
def test_to_json_round_trips(body, checks):
    app = AppDefinition.from_json(_with_valid_health_checks(body, checks))
    out = app.to_json()
    assert AppDefinition.from_json(out) == app
    assert AppDefinition.from_json(json.loads(json.dumps(out))) == app
    assert list(out) == [k for k in ORDER if k in out]
    assert set(out) <= MARATHON_PYTHON_APP_KEYS


@settings(max_examples=100)
@given(app_bodies)
def test_merging_an_app_with_itself_or_nothing_changes_nothing(body):
    app = AppDefinition.from_json(body)
    assert merge(app, {}) == app
    assert merge(app, app.to_json()) == app
