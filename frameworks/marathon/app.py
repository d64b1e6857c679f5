"""Marathon's app definition: parse, normalise, validate, serialise, version, merge.

    app = AppDefinition.from_json({"id": "web", "cmd": "sleep 1"}, base_group=PathId.parse("/product"))
    app.to_json()          -> {"id": "/product/web", ..., "cmd": "sleep 1", ..., "mem": 128, ...}
    merge(app, {"instances": 3})                       PATCH / PUT ?partialUpdate=true
    next_version(old, new, now=clock.time())           new with version/versionInfo stamped

`from_json` runs, in order (reference marathon.md §2):
1. nulls dropped (old clients send `"ports": null`), then structure: JSON Schema + non-finite
   numbers + the id + rules on the raw form (cmd vs args, a deprecated field next to its
   replacement with a different value, constraint operators). All problems are reported at once.
2. normalisation: `ports` -> `portDefinitions`, `uris` -> `fetch`, `container.docker.portMappings`
   -> `container.portMappings`, `container.docker.network` / `ipAddress` -> `networks`; Marathon's
   defaults for every missing field, including nested ones (health checks, port mappings...).
3. rules across fields on the normalised form (ports vs networking, health-check port indices,
   secrets, resident apps...), again all reported at once.
Failures raise `ValidationError` (the 422 body). `to_json` writes only keys Marathon 1.10 writes,
in its order, so marathon-python (which rejects unknown keys) can read every app.

Nested structures (container, health checks, ...) are kept as normalised JSON values: read them,
never mutate them — an `AppDefinition` is a value shared between root-group versions.
"""

from __future__ import annotations

import calendar
import copy
import dataclasses
import re
import time
from dataclasses import dataclass, field
from typing import Any

from meseta.frameworks.marathon.restart import RESIDENT_UPGRADE_STRATEGY, UpgradeStrategy
from meseta.frameworks.marathon.pathid import ROOT, PathId, PathIdError, resolve
from meseta.frameworks.marathon.schema import (
    APP_VALIDATOR,
    READINESS_DEFAULTS,
    ValidationError,
    app_problems,
    json_type,
    health_check_defaults,
    raw_problems,
    strip_nulls,
    structure_problems,
)

__all__ = [
    "AppDefinition",
    "UpgradeStrategy",
    "VersionInfo",
    "merge",
    "is_upgrade",
    "is_scaling_only_change",
    "next_version",
    "restarted",
    "format_timestamp",
    "parse_timestamp",
    "canonical_timestamp",
]


@dataclass(frozen=True)
class VersionInfo:
    last_scaling_at: str
    last_config_change_at: str

    def to_json(self) -> dict[str, str]:
        return {"lastScalingAt": self.last_scaling_at, "lastConfigChangeAt": self.last_config_change_at}


def _default_port_definitions() -> list[dict[str, Any]]:
    return [{"port": 0, "protocol": "tcp", "name": "default"}]


def _default_unreachable() -> dict[str, int]:
    return {"inactiveAfterSeconds": 0, "expungeAfterSeconds": 0}


@dataclass(frozen=True)
class AppDefinition:
    """Every field of reference §2.2 with Marathon 1.10's defaults (None = not set)."""

    id: PathId
    cmd: str | None = None
    args: tuple[str, ...] | None = None
    user: str | None = None
    env: dict[str, Any] = field(default_factory=dict)  # name -> str | {"secret": name}
    instances: int = 1
    cpus: float = 1.0
    mem: float = 128.0
    disk: float = 0.0
    gpus: int = 0
    executor: str = ""
    constraints: tuple[tuple[str, ...], ...] = ()
    accepted_resource_roles: tuple[str, ...] | None = None
    role: str | None = None  # None: the framework's default role, filled in by the service
    port_definitions: list[dict[str, Any]] = field(default_factory=_default_port_definitions)
    require_ports: bool = False
    networks: list[dict[str, Any]] = field(default_factory=lambda: [{"mode": "host"}])
    container: dict[str, Any] | None = None
    health_checks: list[dict[str, Any]] = field(default_factory=list)
    readiness_checks: list[dict[str, Any]] = field(default_factory=list)
    check: dict[str, Any] | None = None
    dependencies: tuple[PathId, ...] = ()
    upgrade_strategy: UpgradeStrategy = UpgradeStrategy()
    backoff_seconds: int = 1
    backoff_factor: float = 1.15
    max_launch_delay_seconds: int = 300
    task_kill_grace_period_seconds: int | None = None
    kill_selection: str = "YOUNGEST_FIRST"
    unreachable_strategy: dict[str, int] | str = field(default_factory=_default_unreachable)
    fetch: list[dict[str, Any]] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)
    residency: dict[str, Any] | None = None
    tty: bool | None = None
    resource_limits: dict[str, Any] | None = None
    executor_resources: dict[str, Any] | None = None
    version: str | None = None
    version_info: VersionInfo | None = None

    @property
    def network_mode(self) -> str:
        """`host`, `container/bridge` or `container` (the first network decides, as in Marathon)."""
        return self.networks[0]["mode"] if self.networks else "host"

    @property
    def is_resident(self) -> bool:
        """Apps with persistent volumes keep their tasks on one agent (reference §2.2, §4.3)."""
        return any("persistent" in v for v in (self.container or {}).get("volumes", ()))

    @classmethod
    def from_json(cls, obj: Any, base: AppDefinition | None = None,
                  base_group: PathId = ROOT) -> AppDefinition:
        """Parse an app body. With `base`, a partial update of it (see `merge`); otherwise a new
        definition whose relative `id` is resolved against `base_group`."""
        if base is not None:
            return merge(base, obj)
        return _parse(obj, base_group)

    def json_view(self) -> dict[str, Any]:
        """`to_json()` for writing out: built once per definition (apps are values, and the API
        writes the same thousand apps on every GET), handed out as a shallow copy whose
        nested values are shared — add keys to it, never change what is inside."""
        cached = self.__dict__.get("_json")
        if cached is None:
            cached = self.to_json()
            object.__setattr__(self, "_json", cached)
        return dict(cached)

    def to_json(self) -> dict[str, Any]:
        """The app as Marathon 1.10 writes it (no AppInfo counters; the service adds those)."""
        host = self.network_mode == "host"
        values: dict[str, Any] = {
            "id": str(self.id),
            "acceptedResourceRoles": _list(self.accepted_resource_roles),
            "args": _list(self.args),
            "backoffFactor": _num(self.backoff_factor),
            "backoffSeconds": self.backoff_seconds,
            "cmd": self.cmd,
            "constraints": [list(c) for c in self.constraints],
            "container": _container_json(self.container, host),
            "cpus": _num(self.cpus),
            "dependencies": [str(d) for d in self.dependencies],
            "disk": _num(self.disk),
            "env": copy.deepcopy(self.env),
            "executor": self.executor,
            "fetch": copy.deepcopy(self.fetch),
            "gpus": self.gpus,
            "healthChecks": copy.deepcopy(self.health_checks),
            "check": copy.deepcopy(self.check),
            "instances": self.instances,
            "labels": dict(self.labels),
            "maxLaunchDelaySeconds": self.max_launch_delay_seconds,
            "mem": _num(self.mem),
            "networks": copy.deepcopy(self.networks),
            "portDefinitions": copy.deepcopy(self.port_definitions) if host else None,
            "readinessChecks": copy.deepcopy(self.readiness_checks),
            "requirePorts": self.require_ports,
            "secrets": copy.deepcopy(self.secrets),
            "taskKillGracePeriodSeconds": self.task_kill_grace_period_seconds,
            "upgradeStrategy": self.upgrade_strategy.to_json(),
            "user": self.user,
            "version": self.version,
            "versionInfo": self.version_info.to_json() if self.version_info else None,
            "unreachableStrategy": copy.deepcopy(self.unreachable_strategy),
            "killSelection": self.kill_selection,
            "tty": self.tty,
            "role": self.role,
            "residency": copy.deepcopy(self.residency),
            "resourceLimits": copy.deepcopy(self.resource_limits),
            "executorResources": copy.deepcopy(self.executor_resources),
        }
        return {key: value for key, value in values.items() if value is not None}


def _num(value: float) -> int | float:
    """Marathon writes whole doubles without a fraction (`"mem": 128`)."""
    return int(value) if float(value).is_integer() else value


def _list(values: tuple[str, ...] | None) -> list[str] | None:
    return None if values is None else list(values)


def _container_json(container: dict[str, Any] | None, host: bool) -> dict[str, Any] | None:
    if container is None:
        return None
    out = copy.deepcopy(container)
    if host:  # port mappings are written only for non-host networking
        out.pop("portMappings", None)
    return out


# ---------------------------------------------------------------------------------------------
# Parsing

def _parse(obj: Any, base_group: PathId) -> AppDefinition:
    if not isinstance(obj, dict):
        raise ValidationError([("/", f"expected object, got {json_type(obj)}")])
    doc = strip_nulls(obj)
    problems = []
    app_id = None
    if isinstance(doc.get("id"), str):
        try:
            app_id = resolve(doc["id"], base_group)
        except PathIdError as error:
            problems += [("/id", message) for message in error.errors]
    problems += structure_problems(doc, APP_VALIDATOR) + raw_problems(doc)
    if problems:
        raise ValidationError(problems)
    assert app_id is not None
    canonical = _normalise(doc, app_id)
    problems = app_problems(canonical)
    if problems:
        raise ValidationError(problems)
    return _build(canonical, app_id)


def _normalise(doc: dict[str, Any], app_id: PathId) -> dict[str, Any]:
    """Deprecated forms to current ones and every default filled in; JSON in, JSON out."""
    d = copy.deepcopy(doc)
    container = d.get("container")
    docker = (container or {}).get("docker") or {}
    ip_address = d.pop("ipAddress", None)
    networks = d.get("networks") or _legacy_networks(docker.get("network"), ip_address)
    networks = [{"mode": n.get("mode", "container"), **n} for n in networks]
    host = networks[0]["mode"] == "host"
    bridge = networks[0]["mode"] == "container/bridge"

    discovery = ((ip_address or {}).get("discovery") or {}).get("ports") or []
    if discovery and not (container or {}).get("portMappings") and not docker.get("portMappings"):
        container = container or {"type": "MESOS"}
        container["portMappings"] = [{"containerPort": p["number"], **{
            k: p[k] for k in ("name", "protocol", "labels") if k in p}} for p in discovery]
    if container is not None:
        container = _normalise_container(container, bridge)

    if "portDefinitions" in d:
        port_definitions = d["portDefinitions"]
    elif "ports" in d:
        port_definitions = [{"port": p} for p in d["ports"]]
    else:
        port_definitions = _default_port_definitions() if host else []
    if not host and [p.get("port", 0) for p in port_definitions] == [
            m["servicePort"] for m in (container or {}).get("portMappings", [])]:
        port_definitions = []  # Marathon <= 1.4 echoed a bridge app's service ports here
    port_definitions = [{"port": p.get("port", 0), "protocol": p.get("protocol", "tcp"),
                         **{k: p[k] for k in ("name", "labels") if k in p}} for p in port_definitions]

    if "fetch" in d:
        fetch = [_fetch(f["uri"], f.get("extract", True), f) for f in d["fetch"]]
    else:
        fetch = [_fetch(uri, _is_archive(uri), {}) for uri in d.get("uris", [])]

    resident = any("persistent" in v for v in (container or {}).get("volumes", ()))
    upgrade = RESIDENT_UPGRADE_STRATEGY if resident else UpgradeStrategy()
    given = d.get("upgradeStrategy", {})
    unreachable = d.get("unreachableStrategy", "disabled" if resident else {})
    if isinstance(unreachable, dict):
        unreachable = {**_default_unreachable(), **unreachable}

    d.update({
        "networks": networks,
        "container": container,
        "portDefinitions": port_definitions,
        "fetch": fetch,
        "healthChecks": [health_check_defaults(h) for h in d.get("healthChecks", [])],
        "readinessChecks": [{**READINESS_DEFAULTS, **r} for r in d.get("readinessChecks", [])],
        "upgradeStrategy": {
            "minimumHealthCapacity": given.get("minimumHealthCapacity", upgrade.minimum_health_capacity),
            "maximumOverCapacity": given.get("maximumOverCapacity", upgrade.maximum_over_capacity)},
        "unreachableStrategy": unreachable,
        "args": d.get("args") or None,
        "acceptedResourceRoles": d.get("acceptedResourceRoles") or None,
        "dependencies": [str(resolve(dep, app_id.parent)) for dep in d.get("dependencies", [])],
    })
    return d


def _legacy_networks(docker_network: str | None, ip_address: dict | None) -> list[dict[str, Any]]:
    if docker_network == "BRIDGE":
        return [{"mode": "container/bridge"}]
    if docker_network == "USER" or ip_address is not None:
        network: dict[str, Any] = {"mode": "container"}
        for source, target in (("networkName", "name"), ("labels", "labels")):
            if (ip_address or {}).get(source):
                network[target] = ip_address[source]  # type: ignore[index]
        return [network]
    return [{"mode": "host"}]


def _normalise_container(container: dict[str, Any], bridge: bool) -> dict[str, Any]:
    docker = container.get("docker")
    out: dict[str, Any] = {"type": container.get("type") or ("DOCKER" if docker else "MESOS")}
    mappings = container.get("portMappings") or (docker or {}).get("portMappings") or []
    if docker is not None:
        rest = {k: v for k, v in docker.items() if k not in ("image", "network", "portMappings")}
        out["docker"] = {**({"image": docker["image"]} if "image" in docker else {}),
                         "parameters": [], "privileged": False, "forcePullImage": False, **rest}
    out["volumes"] = container.get("volumes", [])
    out["portMappings"] = [_port_mapping(m, bridge) for m in mappings]
    if "linuxInfo" in container:
        out["linuxInfo"] = container["linuxInfo"]
    return out


def _port_mapping(mapping: dict[str, Any], bridge: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"containerPort": mapping.get("containerPort", 0)}
    if "hostPort" in mapping or bridge:  # container networking without hostPort: no host port
        out["hostPort"] = mapping.get("hostPort", 0)
    out["servicePort"] = mapping.get("servicePort", 0)
    out["protocol"] = mapping.get("protocol", "tcp")
    out.update({k: mapping[k] for k in ("name", "labels", "networkNames") if k in mapping})
    return out


_ARCHIVES = (".tgz", ".tar.gz", ".tbz2", ".tar.bz2", ".txz", ".tar.xz", ".zip")


def _is_archive(uri: str) -> bool:
    """Marathon extracts a converted `uris` entry only when it looks like an archive."""
    return uri.lower().endswith(_ARCHIVES)


def _fetch(uri: str, extract: bool, given: dict[str, Any]) -> dict[str, Any]:
    return {"uri": uri, "extract": extract, "executable": given.get("executable", False),
            "cache": given.get("cache", False),
            **{k: v for k, v in given.items() if k not in ("uri", "extract", "executable", "cache")}}


def _build(d: dict[str, Any], app_id: PathId) -> AppDefinition:
    upgrade, info = d["upgradeStrategy"], d.get("versionInfo")
    version = d.get("version")
    return AppDefinition(
        id=app_id,
        cmd=d.get("cmd"),
        args=tuple(d["args"]) if d["args"] is not None else None,
        user=d.get("user"),
        env=d.get("env", {}),
        instances=int(d.get("instances", 1)),
        cpus=float(d.get("cpus", 1.0)),
        mem=float(d.get("mem", 128.0)),
        disk=float(d.get("disk", 0.0)),
        gpus=int(d.get("gpus", 0)),
        executor=d.get("executor", ""),
        constraints=tuple(tuple(c) for c in d.get("constraints", ())),
        accepted_resource_roles=(tuple(d["acceptedResourceRoles"])
                                 if d["acceptedResourceRoles"] is not None else None),
        role=d.get("role"),
        port_definitions=d["portDefinitions"],
        require_ports=d.get("requirePorts", False),
        networks=d["networks"],
        container=d["container"],
        health_checks=d["healthChecks"],
        readiness_checks=d["readinessChecks"],
        check=d.get("check"),
        dependencies=tuple(PathId.parse(dep) for dep in d["dependencies"]),
        upgrade_strategy=UpgradeStrategy(float(upgrade["minimumHealthCapacity"]),
                                         float(upgrade["maximumOverCapacity"])),
        backoff_seconds=int(d.get("backoffSeconds", 1)),
        backoff_factor=float(d.get("backoffFactor", 1.15)),
        max_launch_delay_seconds=int(d.get("maxLaunchDelaySeconds", 300)),
        task_kill_grace_period_seconds=(int(d["taskKillGracePeriodSeconds"])
                                        if "taskKillGracePeriodSeconds" in d else None),
        kill_selection=d.get("killSelection", "YOUNGEST_FIRST"),
        unreachable_strategy=d["unreachableStrategy"],
        fetch=d["fetch"],
        labels=d.get("labels", {}),
        secrets=d.get("secrets", {}),
        residency=d.get("residency"),
        tty=d.get("tty"),
        resource_limits=d.get("resourceLimits"),
        executor_resources=d.get("executorResources"),
        version=canonical_timestamp(version) if version else None,
        version_info=VersionInfo(canonical_timestamp(info["lastScalingAt"]),
                                 canonical_timestamp(info["lastConfigChangeAt"]))
        if info and "lastScalingAt" in info and "lastConfigChangeAt" in info else None,
    )


# ---------------------------------------------------------------------------------------------
# Partial updates

# Fields that describe one thing: giving one of them in an update replaces all of them.
_COUPLED = (("cmd", "args"), ("ports", "portDefinitions"), ("uris", "fetch"))


def merge(base: AppDefinition, patch: Any) -> AppDefinition:
    """`PATCH /v2/apps/{id}` and `PUT ?partialUpdate=true`: the fields given replace the base's
    (whole values, no deep merge); `id`, `version` and `versionInfo` in the patch are ignored.
    Replacing one form of a field drops its sibling (`cmd` drops `args`, `ports` drops
    `portDefinitions`...), and a change of networking drops inherited ports of the other kind."""
    if not isinstance(patch, dict):
        raise ValidationError([("/", f"expected object, got {json_type(patch)}")])
    patch = {k: v for k, v in strip_nulls(patch).items()
             if k not in ("id", "version", "versionInfo")}
    doc = base.to_json()
    for keys in _COUPLED:
        if any(k in patch for k in keys):
            for k in keys:
                doc.pop(k, None)
    container = patch.get("container")
    docker = container.get("docker") if isinstance(container, dict) else None
    if "networks" in patch or "ipAddress" in patch or (isinstance(docker, dict) and "network" in docker):
        doc.pop("networks", None)
        if "ports" not in patch and "portDefinitions" not in patch:
            doc.pop("portDefinitions", None)
        if "container" not in patch and "container" in doc:
            doc["container"].pop("portMappings", None)
    doc.update(patch)
    app = _parse(doc, ROOT)
    return dataclasses.replace(app, version=base.version, version_info=base.version_info)


# ---------------------------------------------------------------------------------------------
# Versions (reference §2.9)

# Not configuration: a change of these alone does not restart tasks.
_NOT_CONFIG = frozenset({"id", "instances", "version", "version_info"})
_CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(AppDefinition) if f.name not in _NOT_CONFIG)


def is_upgrade(old: AppDefinition, new: AppDefinition) -> bool:
    """True when any configuration differs: the deployment restarts the app's tasks."""
    if old is new:       # the apps a change left alone: a root of 1,000 apps compares fast
        return False
    return any(getattr(old, name) != getattr(new, name) for name in _CONFIG_FIELDS)


def is_scaling_only_change(old: AppDefinition, new: AppDefinition) -> bool:
    return old.instances != new.instances and not is_upgrade(old, new)


def next_version(old: AppDefinition | None, new: AppDefinition, now: float) -> AppDefinition:
    """`new` stamped with its version and versionInfo, given the stored `old` (None: new app).

    New app or config change: version = lastScalingAt = lastConfigChangeAt = now. Scale only:
    version = lastScalingAt = now, lastConfigChangeAt kept. No change at all: old's stamps kept,
    so nothing new is stored or deployed. A version always sorts after the one it replaces,
    even when the clock reads the same millisecond twice.
    """
    if old is new:
        return new       # unchanged and still shared with the original root
    if old is not None and old.instances == new.instances and not is_upgrade(old, new):
        return dataclasses.replace(new, version=old.version, version_info=old.version_info)
    stamp = _after(now, old.version if old else None)
    if old is None or is_upgrade(old, new):
        info = VersionInfo(stamp, stamp)
    else:
        changed = old.version_info.last_config_change_at if old.version_info else old.version
        info = VersionInfo(stamp, changed or stamp)
    return dataclasses.replace(new, version=stamp, version_info=info)


def restarted(app: AppDefinition, now: float) -> AppDefinition:
    """`POST /v2/apps/{id}/restart`: version = lastConfigChangeAt = now, lastScalingAt kept.
    A moved lastConfigChangeAt is what tells the planner to replace every task."""
    stamp = _after(now, app.version)
    scaled = app.version_info.last_scaling_at if app.version_info else (app.version or stamp)
    return dataclasses.replace(app, version=stamp, version_info=VersionInfo(scaled, stamp))


_TIMESTAMP = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
                        r"(Z|([+-])(\d{2}):?(\d{2}))")


def format_timestamp(seconds: float) -> str:
    """Marathon's timestamp form, UTC with milliseconds: `2015-09-25T15:13:48.343Z`."""
    return _format_millis(round(seconds * 1000))


def parse_timestamp(text: str) -> float:
    """Seconds since the epoch of an ISO-8601 timestamp (Z or an offset; sub-ms digits dropped)."""
    return _millis(text) / 1000


def _millis(text: str) -> int:
    match = _TIMESTAMP.fullmatch(text)
    if not match:
        raise ValueError(f"not an ISO-8601 timestamp: {text!r}")
    y, mo, d, h, mi, s, frac, _zone, sign, oh, om = match.groups()
    seconds = calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), int(s)))
    if sign:
        seconds -= (1 if sign == "+" else -1) * (int(oh) * 3600 + int(om) * 60)
    return seconds * 1000 + int((frac or "0").ljust(3, "0")[:3])


def _format_millis(millis: int) -> str:
    seconds, ms = divmod(millis, 1000)
    year, month, day, hour, minute, second = time.gmtime(seconds)[:6]
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}.{ms:03d}Z"


def canonical_timestamp(text: str) -> str:
    """Any accepted timestamp in Marathon's form (`...T15:13:48.343Z`); ValueError otherwise."""
    return _format_millis(_millis(text))


def _after(now: float, previous: str | None) -> str:
    millis = round(now * 1000)
    if previous is not None:
        millis = max(millis, _millis(previous) + 1)
    return _format_millis(millis)
