"""meseta.frameworks.marathon.launch: matching offers, building Marathon's tasks."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meseta import proto
from meseta.frameworks.marathon.app import AppDefinition
from meseta.frameworks.marathon.instances import GOAL_RUNNING, instance_id_of
from meseta.frameworks.marathon.launch import REASONS, Launch, OfferMatcher, Rejection, _java_double
from meseta.resources import Resources

R = Resources.parse
NOW = 1_700_000_000.0
VERSION = "2023-11-14T22:13:20.000Z"
OFFERED = "cpus:4;mem:1024;disk:1000;ports:[31000-31009]"

# --------------------------------------------------------------------------- builders


def make_app(**fields):
    body = {"id": "/product/web", "cmd": "sleep 100", "version": VERSION, **fields}
    return AppDefinition.from_json(body)


def make_offer(hostname="agent1", resources=OFFERED, role="*", **attributes):
    return proto.Offer(id="o1", framework_id="fw", agent_id=f"id-{hostname}", hostname=hostname,
                       role=role, resources=R(resources), attributes=attributes)


def matcher(offer=None, **kwargs):
    return OfferMatcher(offer or make_offer(), now=NOW, **kwargs)


def launch(app, offer=None, placed=(), **kwargs):
    result = matcher(offer, **kwargs).try_launch(app, list(placed))
    assert isinstance(result, Launch), result
    return result


def reject(app, offer=None, placed=(), **kwargs):
    result = matcher(offer, **kwargs).try_launch(app, list(placed))
    assert isinstance(result, Rejection), result
    return result


def docker(image="nginx", **extra):
    return {"type": "DOCKER", "docker": {"image": image, **extra}}


def bridge(*mappings):
    return {"networks": [{"mode": "container/bridge"}],
            "container": {"type": "MESOS", "portMappings": list(mappings)}}


# --------------------------------------------------------------------------- a launch


def test_an_app_that_fits_becomes_a_staging_instance_and_a_task():
    offer = make_offer()
    m = matcher(offer)
    result = m.try_launch(make_app(), [], instance_id="product_web.instance-abc")

    assert isinstance(result, Launch)
    assert result.consumed == R("cpus:1;mem:128;ports:[31000-31000]")
    assert m.remaining == offer.resources - result.consumed
    task, inst = result.task, result.instance
    assert task.task_id == "product_web.instance-abc._app.1"
    assert task.name == "web.product"
    assert task.agent_id == "id-agent1"
    assert task.resources == result.consumed
    assert (inst.instance_id, inst.task_id) == ("product_web.instance-abc", task.task_id)
    assert (inst.state, inst.goal) == (proto.TASK_STAGING, GOAL_RUNNING)
    assert (inst.agent_id, inst.host, inst.host_ports) == ("id-agent1", "agent1", (31000,))
    assert (inst.staged_at, inst.version, inst.role) == (NOW, VERSION, "*")


def test_task_and_instance_ids_follow_marathon():
    result = launch(make_app(id="/a/b/c"))
    assert result.task.name == "c.b.a"
    assert result.task.task_id.startswith("a_b_c.instance-")
    assert result.task.task_id.endswith("._app.1")
    assert instance_id_of(result.task.task_id) == result.instance.instance_id


def test_ids_and_random_ports_come_from_the_rng():
    def once():
        result = launch(make_app(portDefinitions=[{"port": 0}, {"port": 0}]),
                        rng=random.Random(7))
        return result.instance.instance_id, result.instance.host_ports

    assert once() == once()
    assert launch(make_app()).instance.instance_id != launch(make_app()).instance.instance_id


# --------------------------------------------------------------------------- rejections


@pytest.mark.parametrize("fields, offered, reasons, message", [
    ({"cpus": 8}, OFFERED, ("InsufficientCpus",),
     "agent1: InsufficientCpus (app needs 8 cpus, offer has 4)"),
    ({"mem": 2048}, OFFERED, ("InsufficientMemory",),
     "agent1: InsufficientMemory (app needs 2048 MiB, offer has 1024)"),
    ({"disk": 1500.5}, OFFERED, ("InsufficientDisk",),
     "agent1: InsufficientDisk (app needs 1500.5 MiB, offer has 1000)"),
    ({"gpus": 1, "container": {"type": "MESOS"}}, OFFERED, ("InsufficientGpus",),
     "agent1: InsufficientGpus (app needs 1 gpus, offer has 0)"),
    ({}, "cpus:4;mem:1024", ("InsufficientPorts",),
     "agent1: InsufficientPorts (needs 1 ports, the offer has 0 free in no ports)"),
    ({"portDefinitions": [{"port": 8080}], "requirePorts": True}, OFFERED, ("InsufficientPorts",),
     "agent1: InsufficientPorts (port 8080 not in the offer's [31000-31009])"),
    ({"cpus": 0.5, "mem": 2048, "disk": 2000, "constraints": [["hostname", "LIKE", "db.*"]]},
     "cpus:0.25;mem:1024;disk:100",
     ("UnfulfilledConstraint", "InsufficientCpus", "InsufficientMemory", "InsufficientDisk",
      "InsufficientPorts"),
     "agent1: UNIQUE hostname: agent1 already runs an instance; "
     "InsufficientCpus (app needs 0.5 cpus, offer has 0.25); "
     "InsufficientMemory (app needs 2048 MiB, offer has 1024); "
     "InsufficientDisk (app needs 2000 MiB, offer has 100); "
     "InsufficientPorts (needs 1 ports, the offer has 0 free in no ports)"),
])
def test_every_reason_that_applies_is_reported(fields, offered, reasons, message):
    placed = ()
    if "constraints" in fields:  # the last row: a UNIQUE violation too, and the LIKE passes
        fields = {**fields, "constraints": [["hostname", "UNIQUE"]]}
        placed = [launch(make_app(), make_offer()).instance]
    result = reject(make_app(**fields), make_offer(resources=offered), placed)
    assert result.reasons == reasons
    assert result.message == message
    assert set(result.reasons) <= set(REASONS)


def test_the_offer_is_used_up_launch_by_launch():
    app = make_app(cpus=1.5, mem=300)
    m = matcher()
    first = m.try_launch(app, [])
    second = m.try_launch(app, [first.instance])
    third = m.try_launch(app, [first.instance, second.instance])

    assert isinstance(first, Launch) and isinstance(second, Launch)
    assert first.instance.host_ports == (31000,) and second.instance.host_ports == (31001,)
    assert m.remaining == R("cpus:1;mem:424;disk:1000;ports:[31002-31009]")
    assert isinstance(third, Rejection)
    assert third.reasons == ("InsufficientCpus",)
    assert third.message == "agent1: InsufficientCpus (app needs 1.5 cpus, offer has 1 left)"
    assert m.remaining == R("cpus:1;mem:424;disk:1000;ports:[31002-31009]")  # unchanged


# --------------------------------------------------------------------------- roles


@pytest.mark.parametrize("offer_role, reserved, fields, reasons", [
    ("*", None, {}, ()),
    ("*", None, {"acceptedResourceRoles": ["*"]}, ()),
    ("*", None, {"acceptedResourceRoles": ["slave_public"]}, ("UnfulfilledRole",)),
    ("*", None, {"role": "*"}, ()),
    ("*", None, {"role": "web"}, ("UnfulfilledRole",)),
    ("web", None, {"role": "web", "acceptedResourceRoles": ["web"]}, ()),
    ("web", None, {"acceptedResourceRoles": ["*"]}, ()),     # split unknown: may be either
    ("web", None, {"acceptedResourceRoles": ["other"]}, ("UnfulfilledRole",)),
    ("web", "cpus:4;mem:1024", {"acceptedResourceRoles": ["web"]}, ("InsufficientPorts",)),
    ("web", "cpus:4;mem:1024;ports:[31000-31000]", {"acceptedResourceRoles": ["web"]}, ()),
    ("web", "cpus:4;mem:1024", {"acceptedResourceRoles": ["*"]},
     ("InsufficientCpus", "InsufficientMemory")),            # the unreserved part is too small
    ("web", OFFERED, {"acceptedResourceRoles": ["*"]}, ("UnfulfilledRole",)),  # all reserved
])
def test_roles(offer_role, reserved, fields, reasons):
    offer = make_offer(role=offer_role)
    result = matcher(offer, reserved=R(reserved) if reserved else None).try_launch(
        make_app(**fields), [])
    assert (result.reasons if isinstance(result, Rejection) else ()) == reasons, result


def test_role_rejection_names_both_sides():
    result = reject(make_app(acceptedResourceRoles=["slave_public"]), make_offer())
    assert result.reasons == ("UnfulfilledRole",)
    assert result.message == ("agent1: UnfulfilledRole (offered roles *, the app accepts "
                              "slave_public)")
    result = reject(make_app(role="web"), make_offer())
    assert result.message == ("agent1: UnfulfilledRole (the offer is for role *, the app runs as "
                              "role web)")


def test_reserved_resources_are_used_first():
    offer = make_offer(role="web", resources="cpus:4;mem:1024;ports:[31000-31009]")
    m = matcher(offer, reserved=R("cpus:1;mem:64"))
    m.try_launch(make_app(cpus=1.5, mem=100, acceptedResourceRoles=["*", "web"]), [])
    # the reservation is gone; only unreserved resources remain for a '*'-only or 'web'-only app
    assert isinstance(m.try_launch(make_app(cpus=0.1, mem=10, acceptedResourceRoles=["web"]), []),
                      Rejection)
    assert isinstance(m.try_launch(make_app(cpus=0.1, mem=10, acceptedResourceRoles=["*"]), []),
                      Launch)


# --------------------------------------------------------------------------- ports


def port_vars(task):
    return {k: v for k, v in task.command.environment.items() if k.startswith("PORT")}


def test_require_ports_takes_the_service_ports_as_host_ports():
    app = make_app(portDefinitions=[{"port": 31005}, {"port": 31002}], requirePorts=True)
    result = launch(app)
    assert result.instance.host_ports == (31005, 31002)
    assert result.consumed.ports() == ((31002, 31002), (31005, 31005))
    assert port_vars(result.task) == {"PORT0": "31005", "PORT1": "31002", "PORT": "31005",
                                      "PORTS": "31005,31002", "PORT_31005": "31005",
                                      "PORT_31002": "31002"}


def test_named_ports_get_port_name_variables():
    app = make_app(portDefinitions=[{"port": 10000, "name": "http"},
                                    {"port": 0, "name": "admin-ui"}])
    assert port_vars(launch(app).task) == {
        "PORT0": "31000", "PORT1": "31001", "PORT": "31000", "PORTS": "31000,31001",
        "PORT_10000": "31000", "PORT_HTTP": "31000", "PORT_ADMIN_UI": "31001"}


def test_no_ports_no_port_variables():
    result = launch(make_app(portDefinitions=[]))
    assert port_vars(result.task) == {}
    assert result.consumed == R("cpus:1;mem:128")
    assert result.task.discovery["ports"] == {"ports": []}


def test_bridge_mappings_take_host_ports_from_the_offer():
    app = make_app(**bridge({"containerPort": 8080, "hostPort": 0, "name": "http"},
                            {"containerPort": 9090, "hostPort": 31007}))
    result = launch(app)
    assert result.instance.host_ports == (31000, 31007)
    assert result.consumed.ports() == ((31000, 31000), (31007, 31007))
    assert port_vars(result.task) == {
        "PORT0": "31000", "PORT1": "31007", "PORT": "31000", "PORTS": "31000,31007",
        "PORT_8080": "31000", "PORT_9090": "31007", "PORT_HTTP": "31000"}


def test_container_networking_without_host_ports_takes_no_ports():
    app = make_app(networks=[{"mode": "container", "name": "overlay"}],
                   container={"type": "MESOS", "portMappings": [{"containerPort": 8080,
                                                                 "name": "http"}]})
    result = launch(app, make_offer(resources="cpus:4;mem:1024"))
    assert result.instance.host_ports == ()
    assert result.consumed == R("cpus:1;mem:128")
    assert port_vars(result.task) == {"PORT0": "8080", "PORT": "8080", "PORTS": "8080",
                                      "PORT_8080": "8080", "PORT_HTTP": "8080"}


def test_discovery_lists_host_ports_per_protocol():
    app = make_app(portDefinitions=[
        {"port": 0, "name": "http", "labels": {"VIP_0": "/web:80"}},
        {"port": 0, "protocol": "udp,tcp"}])
    assert launch(app).task.discovery == {
        "visibility": "FRAMEWORK", "name": "web.product", "ports": {"ports": [
            {"number": 31000, "protocol": "tcp", "name": "http",
             "labels": {"labels": [{"key": "VIP_0", "value": "/web:80"}]}},
            {"number": 31001, "protocol": "udp"},
            {"number": 31001, "protocol": "tcp"}]}}


# --------------------------------------------------------------------------- constraints


def test_unique_hostname_counts_placed_and_same_matcher_launches():
    app = make_app(constraints=[["hostname", "UNIQUE"]])
    elsewhere = launch(app, make_offer("agent2")).instance
    m = matcher(make_offer("agent1"))
    first = m.try_launch(app, [elsewhere])
    assert isinstance(first, Launch)
    second = m.try_launch(app, [elsewhere, first.instance])
    assert second == Rejection(("UnfulfilledConstraint",),
                               "agent1: UNIQUE hostname: agent1 already runs an instance")
    # placed on agent1 by another matcher: rejected on a fresh offer of agent1 too
    assert isinstance(matcher(make_offer("agent1")).try_launch(app, [first.instance]), Rejection)


def test_constraints_read_instance_attributes():
    app = make_app(constraints=[["rack", "MAX_PER", "1"]])
    placed = [launch(app, make_offer("agent2", rack="r1")).instance]
    assert isinstance(matcher(make_offer("agent1", rack="r1")).try_launch(app, placed), Rejection)
    assert isinstance(matcher(make_offer("agent1", rack="r2")).try_launch(app, placed), Launch)


# --------------------------------------------------------------------------- Docker and volumes


@pytest.mark.parametrize("fields, attributes, ok", [
    ({"container": docker()}, {}, False),
    ({"container": docker()}, {"docker": "true"}, True),
    ({"container": docker()}, {"docker": 1.0}, True),
    ({"container": docker()}, {"docker": "false"}, False),
    ({"container": docker()}, {"docker": 0.0}, False),
    ({"container": {"type": "MESOS", "docker": {"image": "nginx"}}}, {}, False),
    ({"container": {"type": "MESOS"}}, {}, True),
    ({}, {}, True),
])
def test_docker_apps_need_an_agent_with_a_docker_engine(fields, attributes, ok):
    result = matcher(make_offer(**attributes)).try_launch(make_app(**fields), [])
    assert isinstance(result, Launch) == ok
    if not ok:
        assert result == Rejection(("NoDockerEngine",), "agent1: NoDockerEngine (image nginx "
                                   "needs an agent with attribute docker:true)")


def test_resident_apps_wait_for_a_reservation():
    app = make_app(container={"type": "MESOS", "volumes": [
        {"containerPath": "data", "mode": "RW", "persistent": {"size": 10}}]},
        unreachableStrategy="disabled", upgradeStrategy={"minimumHealthCapacity": 0.5,
                                                         "maximumOverCapacity": 0})
    assert reject(app).reasons == ("NoCorrespondingReservationFound",)


# --------------------------------------------------------------------------- the command


def test_environment_is_exactly_marathons():
    app = make_app(cpus=0.5, mem=64, disk=10, container=docker(), env={
        "FOO": "bar", "DB_PASSWORD": {"secret": "db"}},
        secrets={"db": {"source": "db/password"}},
        labels={"HAPROXY_GROUP": "external", "owner.team-x": "web", "long": "x" * 512})
    result = launch(app, make_offer(docker="true"))
    assert result.task.command.environment == {
        "MARATHON_APP_ID": "/product/web",
        "MARATHON_APP_VERSION": VERSION,
        "MARATHON_APP_DOCKER_IMAGE": "nginx",
        "MARATHON_APP_RESOURCE_CPUS": "0.5",
        "MARATHON_APP_RESOURCE_MEM": "64.0",
        "MARATHON_APP_RESOURCE_DISK": "10.0",
        "MARATHON_APP_RESOURCE_GPUS": "0",
        "MARATHON_APP_LABELS": "HAPROXY_GROUP OWNER_TEAM_X",
        "MARATHON_APP_LABEL_HAPROXY_GROUP": "external",
        "MARATHON_APP_LABEL_OWNER_TEAM_X": "web",
        "PORT0": "31000", "PORT": "31000", "PORTS": "31000", "PORT_DEFAULT": "31000",
        "HOST": "agent1",
        "FOO": "bar",
    }


def test_env_vars_prefix_applies_to_port_variables_only():
    env = launch(make_app(portDefinitions=[{"port": 10000, "name": "http"}]),
                 env_vars_prefix="MY_").task.command.environment
    assert {k: v for k, v in env.items() if "PORT" in k} == {
        "MY_PORT0": "31000", "MY_PORT": "31000", "MY_PORTS": "31000", "MY_PORT_10000": "31000",
        "MY_PORT_HTTP": "31000"}
    assert env["HOST"] == "agent1" and "MARATHON_APP_ID" in env


def test_the_apps_env_wins_over_marathons_variables():
    env = launch(make_app(env={"PORT": "8080", "HOST": "0.0.0.0"})).task.command.environment
    assert (env["PORT"], env["PORT0"], env["HOST"]) == ("8080", "31000", "0.0.0.0")


@pytest.mark.parametrize("fields, value, shell, arguments", [
    ({"cmd": "python3 -m http.server $PORT0"}, "python3 -m http.server $PORT0", True, []),
    ({"cmd": None, "args": ["/bin/echo", "a b", "c"]}, "/bin/echo", False,
     ["/bin/echo", "a b", "c"]),
])
def test_cmd_is_a_shell_command_and_args_an_argv(fields, value, shell, arguments):
    command = launch(make_app(**fields)).task.command
    assert (command.value, command.shell, command.arguments) == (value, shell, arguments)


def test_user_fetch_labels_and_kill_grace_reach_the_task():
    app = make_app(user="nobody", taskKillGracePeriodSeconds=30, labels={"a": "b"},
                   fetch=[{"uri": "http://x/app.tgz", "destPath": "bin"}])
    task = launch(app).task
    assert task.command.user == "nobody"
    assert task.command.uris == [{"uri": "http://x/app.tgz", "extract": True,
                                  "executable": False, "cache": False, "destPath": "bin"}]
    assert task.labels == {"a": "b"}
    assert task.kill_grace_seconds == 30.0
    assert launch(make_app()).task.kill_grace_seconds is None


# --------------------------------------------------------------------------- Mesos health checks


def test_a_mesos_http_check_targets_the_tasks_port_at_its_index():
    app = make_app(portDefinitions=[{"port": 0}, {"port": 0}], healthChecks=[
        {"protocol": "HTTP", "path": "/marathon-side"},
        {"protocol": "MESOS_HTTP", "path": "/health", "portIndex": 1, "gracePeriodSeconds": 5,
         "intervalSeconds": 2, "timeoutSeconds": 1, "maxConsecutiveFailures": 4,
         "delaySeconds": 0}])
    check = launch(app).task.health_check
    assert check == proto.HealthCheck(
        type="HTTP", http=proto.HTTPCheckInfo(port=31001, path="/health", scheme="http"),
        delay_seconds=0.0, interval_seconds=2.0, timeout_seconds=1.0, consecutive_failures=4,
        grace_period_seconds=5.0)


def test_marathons_defaults_reach_mesos():
    check = launch(make_app(healthChecks=[{"protocol": "MESOS_TCP"}])).task.health_check
    assert check == proto.HealthCheck(
        type="TCP", tcp=proto.TCPCheckInfo(port=31000), delay_seconds=15.0,
        interval_seconds=60.0, timeout_seconds=20.0, consecutive_failures=3,
        grace_period_seconds=300.0)


@pytest.mark.parametrize("check, expected", [
    ({"protocol": "MESOS_HTTPS", "port": 8443, "ipProtocol": "IPv6"},
     {"http": proto.HTTPCheckInfo(port=8443, path="/", scheme="https", protocol="IPv6")}),
    ({"protocol": "COMMAND", "command": {"value": "test -f ok"}},
     {"command": proto.CommandInfo(value="test -f ok")}),
    # Mesos's meaning of 0, passed through: killed at the first failure after the grace period.
    ({"protocol": "MESOS_TCP", "maxConsecutiveFailures": 0},
     {"tcp": proto.TCPCheckInfo(port=31000), "consecutive_failures": 0}),
])
def test_mesos_check_kinds(check, expected):
    result = launch(make_app(healthChecks=[check])).task.health_check
    fields = {"command": result.command, "http": result.http, "tcp": result.tcp,
              "consecutive_failures": result.consecutive_failures}
    assert {k: fields[k] for k in expected} == expected
    assert [k for k in ("command", "http", "tcp") if fields[k] is not None] == \
        [k for k in expected if k != "consecutive_failures"]


def test_bridge_networking_checks_the_host_port():
    app = make_app(**bridge({"containerPort": 8080, "hostPort": 0}),
                   healthChecks=[{"protocol": "MESOS_HTTP"}])
    task = launch(app).task
    assert task.health_check.http.port == task.resources.ports()[0][0]


def test_marathon_side_checks_are_not_sent_to_mesos():
    app = make_app(healthChecks=[{"protocol": "HTTP"}, {"protocol": "TCP"}])
    assert launch(app).task.health_check is None
    assert launch(make_app()).task.health_check is None


def test_health_checks_survive_the_wire():
    task = launch(make_app(healthChecks=[{"protocol": "MESOS_HTTP"}])).task
    message = proto.RunTask(proto.FrameworkInfo(user="root", name="marathon", id="fw"), task)
    assert proto.decode(proto.encode(message)).task.health_check == task.health_check


def test_tasks_survive_the_wire():
    task = launch(make_app(portDefinitions=[{"port": 0, "name": "http"}])).task
    message = proto.RunTask(proto.FrameworkInfo(user="root", name="marathon", id="fw"), task)
    assert proto.decode(proto.encode(message)).task == task


@pytest.mark.parametrize("value, text", [
    (1, "1.0"), (0.5, "0.5"), (128, "128.0"), (0, "0.0"), (0.001, "0.001"),
    (1234567.5, "1234567.5"), (1e7, "1.0E7"), (12345678.0, "1.2345678E7"), (0.0001, "1.0E-4"),
])
def test_resource_values_print_as_scala_doubles(value, text):
    assert _java_double(value) == text


# --------------------------------------------------------------------------- invariants


@settings(max_examples=60, deadline=None)
@given(apps=st.lists(st.tuples(st.integers(1, 40), st.integers(0, 300), st.integers(0, 3)),
                     min_size=1, max_size=6),
       seed=st.integers(0, 2**32 - 1))
def test_launches_never_take_more_than_the_offer(apps, seed):
    """consumed launches + remaining == the offer, whatever launches and fails."""
    offer = make_offer()
    m = matcher(offer, rng=random.Random(seed))
    total = Resources()
    for tenth_cpus, mem, port_count in apps * 3:
        app = make_app(cpus=tenth_cpus / 10, mem=mem, portDefinitions=[{"port": 0}] * port_count)
        result = m.try_launch(app, [])
        if isinstance(result, Launch):
            assert offer.resources.contains(result.consumed)
            assert len(set(result.instance.host_ports)) == port_count
            total = total + result.consumed
    assert total + m.remaining == offer.resources
