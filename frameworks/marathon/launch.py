"""Offer matching and task building for Marathon: one offer, many launches, no IO.

    matcher = OfferMatcher(offer, now=clock.time(), rng=random.Random(seed))
    for app, placed in wanted:                    # placed: the app's active instances so far
        result = matcher.try_launch(app, placed)
        if isinstance(result, Launch):            # matcher.remaining has shrunk
            tasks.append(result.task)
        else:                                     # result.reasons feed /v2/queue
            note(app, result.reasons, result.message)

`try_launch` runs every check below and reports each one that fails, in REASONS order (Marathon
collects all reasons for `processedOffersSummary`), as `Rejection(reasons, message)`:

  1. role        the app's `role` (when set) is the offer's allocation role, and its
                 `acceptedResourceRoles` (None: any) include a role of the offered resources
                 -> UnfulfilledRole; without a usable role steps 4-5 are skipped
  2. engine      a Docker image needs an agent advertising a Docker engine (attribute `docker`
                 present and truthy, e.g. `--attributes docker:true`) -> NoDockerEngine
  3. volumes     persistent volumes need a reservation, which Meseta does not make yet
                 -> NoCorrespondingReservationFound (the app waits instead of losing data)
  4. resources   cpus, mem, disk, gpus of what is left -> Insufficient{Cpus,Memory,Disk,Gpus};
                 host ports (`ports.match_ports`) -> InsufficientPorts
  5. constraints `constraints.feasible` against `placed` -> UnfulfilledConstraint

AgentMaintenance and DeclinedScarceResources are in REASONS for the queue's summary, but nothing
produces them yet: offers carry no unavailability, and GPU agents are not reserved for GPU apps
(Marathon's `--gpu_scheduling_behavior unrestricted`).

A launch builds the Mesos task as Marathon's TaskBuilder does: task id from the instance id, name
`/product/web` -> `web.product`, `cmd` as a shell command or `args` as argv, `fetch` as the
command's uris (Marathon's keys), DiscoveryInfo with the host ports (Mesos-DNS reads it), and the
environment below. Resources come from the reserved part of the offer first, then unreserved.
An app's Mesos health check (COMMAND, MESOS_HTTP/HTTPS/TCP) becomes the task's `health_check`,
which the agent runs.

Task environment, later layers winning (Marathon's order, so an app's `env` may override any):
  1. MARATHON_APP_ID, _VERSION, _DOCKER_IMAGE, _RESOURCE_CPUS/MEM/DISK/GPUS, MARATHON_APP_LABELS
     and MARATHON_APP_LABEL_<NAME>
  2. PORT0..n, PORT, PORTS, PORT_<NAME>, PORT_<declared port> (all with `env_vars_prefix`), HOST
  3. the app's `env`, plain strings only (secret references are not resolved here)
The agent adds MESOS_TASK_ID, MESOS_SANDBOX and the other MESOS_* variables itself. It also sets
PORT* from the task's port ranges in ascending order; ours win, since random ports or
requirePorts need not ascend.
"""

from __future__ import annotations

import random
import re
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Mapping, Sequence

from meseta import proto
from meseta.frameworks.marathon.app import AppDefinition
from meseta.frameworks.marathon.constraints import Constraint, feasible, parse_constraints
from meseta.frameworks.marathon.instances import Instance, new_instance_id, task_id_for
from meseta.frameworks.marathon.pathid import PathId
from meseta.frameworks.marathon.ports import (
    PortDefinition,
    PortMapping,
    host_port_requests,
    match_ports,
    port_env,
)
from meseta.resources import EMPTY, Resources

__all__ = ["REASONS", "Rejection", "Launch", "OfferMatcher"]

REASONS = ("UnfulfilledRole", "UnfulfilledConstraint", "NoCorrespondingReservationFound",
           "AgentMaintenance", "InsufficientCpus", "InsufficientMemory", "InsufficientDisk",
           "InsufficientGpus", "InsufficientPorts", "DeclinedScarceResources",
           "NoDockerEngine")  # the last is Meseta's: a Docker app on an agent without Docker
_RANK = {reason: i for i, reason in enumerate(REASONS)}

# Scalar resource -> (reject reason, unit in messages).
_SCALARS = {"cpus": ("InsufficientCpus", " cpus"), "mem": ("InsufficientMemory", " MiB"),
            "disk": ("InsufficientDisk", " MiB"), "gpus": ("InsufficientGpus", " gpus")}

# Marathon's EnvironmentHelper: a label becomes MARATHON_APP_LABEL_<NAME> only when the variable
# stays under 512 characters (name < 512 - len(prefix), value < 512); its name is the key with
# every run of other characters turned into one '_', upper-cased.
_LABEL_PREFIX = "MARATHON_APP_LABEL_"
_MAX_ENV_LENGTH = 512
_LABEL_NAME = re.compile(r"[^a-zA-Z0-9_]+")
_FALSE = frozenset({"", "0", "false", "no", "off"})


@dataclass(frozen=True)
class Rejection:
    reasons: tuple[str, ...]   # every Marathon reject reason that applies, in REASONS order
    message: str               # "agent1: InsufficientMemory (app needs 512 MiB, offer has 100)"


@dataclass(frozen=True)
class Launch:
    task: proto.TaskInfo
    instance: Instance         # TASK_STAGING, goal Running
    consumed: Resources        # what the task takes from the offer: cpus, mem, disk, gpus, ports


# ---------------------------------------------------------------------------------------------
# What an app asks of every offer, derived once per app (per matcher)

@dataclass(frozen=True, slots=True)
class _Port:
    request: int | None        # host port asked of the offer: 0 any, n exactly n, None none
    declared: int              # service port (host networking) or container port; 0 = none
    name: str | None
    protocol: str              # "tcp", "udp" or "udp,tcp"
    labels: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class _Template:
    app: AppDefinition
    needs: Resources                          # the scalars
    accepted_roles: frozenset[str] | None
    constraints: tuple[Constraint, ...]
    ports: tuple[_Port, ...]
    requests: tuple[int | None, ...]
    docker_image: str | None
    needs_docker: bool
    name: str                                 # the Mesos task name
    app_env: dict[str, str]                   # layer 1 of the environment
    user_env: dict[str, str]                  # layer 3


def _template(app: AppDefinition) -> _Template:
    container = app.container or {}
    image = (container.get("docker") or {}).get("image")
    ports = _ports_of(app)
    return _Template(
        app=app,
        needs=Resources(scalars={"cpus": app.cpus, "mem": app.mem, "disk": app.disk,
                                 "gpus": app.gpus}),
        accepted_roles=(frozenset(app.accepted_resource_roles)
                        if app.accepted_resource_roles is not None else None),
        constraints=tuple(parse_constraints(app.constraints)),
        ports=ports,
        requests=tuple(p.request for p in ports),
        docker_image=image,
        needs_docker=container.get("type") == "DOCKER" or bool(image),
        name=app.id.to_hostname(),
        app_env=_app_environment(app, image),
        user_env={k: v for k, v in app.env.items() if isinstance(v, str)},
    )


def _ports_of(app: AppDefinition) -> tuple[_Port, ...]:
    if app.network_mode == "host":
        definitions = app.port_definitions
        requests = host_port_requests(
            [PortDefinition(d.get("port", 0), d.get("name"), d.get("protocol", "tcp"))
             for d in definitions], app.require_ports)
        declared = [d.get("port", 0) for d in definitions]
    else:
        definitions = (app.container or {}).get("portMappings", [])
        requests = host_port_requests(port_mappings=[
            PortMapping(m.get("containerPort", 0), m.get("hostPort"), m.get("servicePort", 0),
                        m.get("name"), m.get("protocol", "tcp")) for m in definitions])
        declared = [m.get("containerPort", 0) for m in definitions]
    return tuple(_Port(request, port, d.get("name"), d.get("protocol", "tcp"),
                       d.get("labels") or {})
                 for request, port, d in zip(requests, declared, definitions))


def _app_environment(app: AppDefinition, image: str | None) -> dict[str, str]:
    """The MARATHON_APP_* variables every task of `app` gets (the same on every agent)."""
    env = {"MARATHON_APP_ID": str(app.id)}
    if app.version:
        env["MARATHON_APP_VERSION"] = app.version
    if image:
        env["MARATHON_APP_DOCKER_IMAGE"] = image
    env.update({
        "MARATHON_APP_RESOURCE_CPUS": _java_double(app.cpus),
        "MARATHON_APP_RESOURCE_MEM": _java_double(app.mem),
        "MARATHON_APP_RESOURCE_DISK": _java_double(app.disk),
        "MARATHON_APP_RESOURCE_GPUS": str(app.gpus),   # an Int in Marathon
    })
    labels = {_LABEL_NAME.sub("_", key).upper(): value for key, value in app.labels.items()
              if len(key) < _MAX_ENV_LENGTH - len(_LABEL_PREFIX) and len(value) < _MAX_ENV_LENGTH}
    env["MARATHON_APP_LABELS"] = " ".join(labels)
    env.update({_LABEL_PREFIX + name: value for name, value in labels.items()})
    return env


def _java_double(value: float) -> str:
    """A Double as Scala prints it (Java's Double.toString): `1.0`, `0.5`, `128.0`, `1.0E7`."""
    value = float(value)
    if value == 0 or 1e-3 <= abs(value) < 1e7:
        return repr(value)
    number = Decimal(repr(value)).normalize()
    sign, digits, _ = number.as_tuple()
    mantissa = f"{digits[0]}." + ("".join(map(str, digits[1:])) or "0")
    return f"{'-' if sign else ''}{mantissa}E{number.adjusted()}"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def _has_docker_engine(attributes: Mapping[str, Any]) -> bool:
    value = attributes.get("docker")
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE
    return bool(value)   # a number other than 0, or non-empty ranges


# ---------------------------------------------------------------------------------------------
# The matcher

class OfferMatcher:
    """Matches one offer against many launches, keeping what is left of it in `remaining`.

    `reserved` is the part of `offer.resources` reserved for `offer.role`; the rest is
    unreserved ("*"). None means the split is unknown (proto.Offer does not carry it): then every
    offered resource counts as being of both roles for `acceptedResourceRoles`.

    Instance ids take their unique part from `rng` when given (reproducible), else from uuid4;
    host ports for `0` requests are random with `rng`, the lowest ones without.
    """

    def __init__(self, offer: proto.Offer, *, now: float, rng: random.Random | None = None,
                 env_vars_prefix: str = "", reserved: Resources | None = None) -> None:
        self.offer = offer
        self.remaining: Resources = offer.resources
        self._now = now
        self._rng = rng
        self._prefix = env_vars_prefix
        self._docker = _has_docker_engine(offer.attributes)
        self._launched = 0
        # Pools of the offer by the roles their resources may be used as; reserved ones first,
        # so a task uses the role's reservation before the shared pool.
        if reserved is None:
            self._pools = [(frozenset({"*", offer.role}), offer.resources)]
        else:
            self._pools = [(frozenset({offer.role}), reserved),
                           (frozenset({"*"}), offer.resources - reserved)]
        self._offered_roles = frozenset().union(*(roles for roles, pool in self._pools if pool))
        self._templates: dict[PathId, _Template] = {}

    def try_launch(self, app: AppDefinition, placed: Sequence[Instance], *,
                   instance_id: str | None = None) -> Launch | Rejection:
        """One instance of `app` on this offer, or every reason why not.

        `placed`: the app's active instances, including those launched on this matcher.
        """
        template = self._template(app)
        failures: list[tuple[str, str]] = []
        pool = self._pool(template, failures)
        if template.needs_docker and not self._docker:
            image = template.docker_image
            what = f"image {image}" if image else "a DOCKER container"
            failures.append(("NoDockerEngine", f"NoDockerEngine ({what} needs an agent with "
                                               "attribute docker:true)"))
        if app.is_resident:
            failures.append(("NoCorrespondingReservationFound",
                             "NoCorrespondingReservationFound (persistent volumes need a "
                             "reservation; Meseta does not make reservations yet)"))
        match = None
        if pool is not None:
            failures += self._scalar_failures(template.needs, pool)
            if template.requests:
                match = match_ports(pool, template.requests, self._rng)
                if not match:
                    failures.append(("InsufficientPorts",
                                     f"InsufficientPorts ({match.reason.removeprefix('ports: ')})"))
        if template.constraints:
            decision = feasible(self.offer, [(i.host, i.agent_attributes) for i in placed],
                                template.constraints)
            if not decision.ok:
                failures.append(("UnfulfilledConstraint", decision.reason))
        if failures:
            failures.sort(key=lambda failure: _RANK[failure[0]])
            return Rejection(tuple(reason for reason, _ in failures),
                             f"{self.offer.hostname}: " + "; ".join(text for _, text in failures))
        host_ports = match.host_ports if match is not None else ()
        consumed = template.needs + match.resources if match is not None else template.needs
        self._take(consumed, template)
        return self._launch(template, instance_id, host_ports, consumed)

    # -- checks ---------------------------------------------------------------------------------

    def _template(self, app: AppDefinition) -> _Template:
        template = self._templates.get(app.id)
        if template is None or template.app is not app:
            template = self._templates[app.id] = _template(app)
        return template

    def _pool(self, template: _Template, failures: list[tuple[str, str]]) -> Resources | None:
        """What is left of the offer in roles the app may use; None (and a failure) if none."""
        app, role = template.app, self.offer.role
        if app.role is not None and app.role != role:
            failures.append(("UnfulfilledRole", f"UnfulfilledRole (the offer is for role {role}, "
                                                f"the app runs as role {app.role})"))
            return None
        accepted = template.accepted_roles
        if accepted is None:
            return self.remaining
        if not accepted & self._offered_roles:
            offered = ", ".join(sorted(self._offered_roles)) or "none"
            failures.append(("UnfulfilledRole", f"UnfulfilledRole (offered roles {offered}, the "
                                                f"app accepts {', '.join(sorted(accepted))})"))
            return None
        usable = [pool for roles, pool in self._pools if roles & accepted]
        total = EMPTY
        for pool in usable:
            total = total + pool
        return total

    def _scalar_failures(self, needs: Resources, pool: Resources) -> list[tuple[str, str]]:
        left = " left" if self._launched else ""
        failures = []
        for name, wanted in needs.scalars.items():
            have = pool.get(name)
            if have < wanted:
                reason, unit = _SCALARS[name]
                failures.append((reason, f"{reason} (app needs {_num(wanted)}{unit}, offer has "
                                         f"{_num(have)}{left})"))
        return failures

    def _take(self, consumed: Resources, template: _Template) -> None:
        self.remaining = self.remaining - consumed
        self._launched += 1
        if len(self._pools) == 1:
            self._pools = [(self._pools[0][0], self.remaining)]
            return
        accepted, wanted, pools = template.accepted_roles, consumed, []
        for roles, pool in self._pools:
            if wanted and (accepted is None or roles & accepted):
                taken = wanted.meet(pool)
                pool, wanted = pool - taken, wanted - taken
            pools.append((roles, pool))
        self._pools = pools

    # -- the task -------------------------------------------------------------------------------

    def _launch(self, template: _Template, instance_id: str | None,
                host_ports: tuple[int | None, ...], consumed: Resources) -> Launch:
        app, offer = template.app, self.offer
        if instance_id is None:
            unique = None
            if self._rng is not None:
                unique = str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
            instance_id = new_instance_id(app.id, unique)
        # A container port without a host port is what the task is reached on (Marathon).
        effective = tuple(host if host is not None else (port.declared or None)
                          for host, port in zip(host_ports, template.ports))
        task = proto.TaskInfo(
            task_id=task_id_for(instance_id), name=template.name, agent_id=offer.agent_id,
            resources=consumed, command=self._command(template, effective),
            labels=dict(app.labels), discovery=_discovery(template, effective),
            kill_grace_seconds=(float(app.task_kill_grace_period_seconds)
                                if app.task_kill_grace_period_seconds is not None else None),
            health_check=_mesos_health_check(app, effective))
        instance = Instance.launched(
            app, instance_id=instance_id, agent_id=offer.agent_id, host=offer.hostname,
            host_ports=tuple(p for p in host_ports if p is not None), now=self._now,
            agent_attributes=offer.attributes, role=offer.role)
        return Launch(task, instance, consumed)

    def _command(self, template: _Template, effective: tuple[int | None, ...]) -> proto.CommandInfo:
        app = template.app
        env = dict(template.app_env)
        env.update(self._port_env(template, effective))
        env["HOST"] = self.offer.hostname
        env.update(template.user_env)
        if app.cmd is not None:
            value, shell, arguments = app.cmd, True, []
        elif app.args is not None:  # argv: the executable is args[0], as Mesos's executor runs it
            value, shell, arguments = app.args[0], False, list(app.args)
        else:                       # a Docker image's own entrypoint
            value, shell, arguments = "", False, []
        return proto.CommandInfo(value=value, shell=shell, arguments=arguments, environment=env,
                                 uris=[dict(f) for f in app.fetch], user=app.user)

    def _port_env(self, template: _Template, effective: tuple[int | None, ...]) -> dict[str, str]:
        if not effective:
            return {}
        env = {f"{self._prefix}PORT_{port.declared}": str(number)
               for port, number in zip(template.ports, effective)
               if port.declared and number is not None}
        env.update(port_env(effective, [p.name for p in template.ports], self._prefix))
        return env


# Marathon's protocols that Mesos runs on the agent -> Mesos HealthCheck type (and HTTP scheme).
_MESOS_CHECKS = {"COMMAND": ("COMMAND", ""), "MESOS_HTTP": ("HTTP", "http"),
                 "MESOS_HTTPS": ("HTTP", "https"), "MESOS_TCP": ("TCP", "")}


def _mesos_health_check(app: AppDefinition, effective: tuple[int | None, ...]
                        ) -> proto.HealthCheck | None:
    """The app's Mesos health check (validation allows at most one) as Marathon's
    MesosHealthCheck.toMesos builds it: `port`, else the task's port at `portIndex`; every
    interval passed through. `maxConsecutiveFailures` becomes `consecutive_failures` unchanged,
    so 0 kills the task at its first failure after the grace period: Mesos's meaning, not
    Marathon's "never kill" for its own checks. None without such a check, or when `portIndex`
    names no port of this task (no target to check)."""
    check = next((c for c in app.health_checks if c.get("protocol") in _MESOS_CHECKS), None)
    if check is None:
        return None
    kind, scheme = _MESOS_CHECKS[check["protocol"]]
    result = proto.HealthCheck(
        type=kind, delay_seconds=float(check.get("delaySeconds", 15)),
        interval_seconds=float(check.get("intervalSeconds", 60)),
        timeout_seconds=float(check.get("timeoutSeconds", 20)),
        consecutive_failures=int(check.get("maxConsecutiveFailures", 3)),
        grace_period_seconds=float(check.get("gracePeriodSeconds", 300)))
    if kind == "COMMAND":
        result.command = proto.CommandInfo(value=check["command"]["value"])
        return result
    port = check.get("port")
    if port is None:
        index = check.get("portIndex", 0)
        port = effective[index] if index < len(effective) else None
    if not port:
        return None
    protocol = check.get("ipProtocol", "IPv4")
    if kind == "HTTP":
        result.http = proto.HTTPCheckInfo(port=port, path=check.get("path", "/"), scheme=scheme,
                                          protocol=protocol)
    else:
        result.tcp = proto.TCPCheckInfo(port=port, protocol=protocol)
    return result


def _discovery(template: _Template, effective: tuple[int | None, ...]) -> dict[str, Any]:
    """Mesos DiscoveryInfo: one entry per port and protocol ("udp,tcp" makes two)."""
    entries = []
    for port, number in zip(template.ports, effective):
        if number is None:
            continue
        for protocol in port.protocol.split(","):
            entry: dict[str, Any] = {"number": number, "protocol": protocol}
            if port.name:
                entry["name"] = port.name
            if port.labels:
                entry["labels"] = {"labels": [{"key": k, "value": v}
                                              for k, v in port.labels.items()]}
            entries.append(entry)
    return {"visibility": "FRAMEWORK", "name": template.name, "ports": {"ports": entries}}
