"""Validation of Marathon's app and group JSON, and the 422 error shape.

Validation happens in two passes, both collecting every problem as `(path, message)`:

1. Structure, on the body as sent: `structure_problems` (JSON Schema, Draft 2020-12, for keys,
   types and ranges, plus a walk for what JSON Schema cannot see in Python values: NaN,
   Infinity and 1e309, which Python's `json` parses to inf, are numbers to jsonschema) and
   `raw_problems` (cmd vs args, a deprecated field contradicting its replacement, constraints).
2. `app_problems`, across fields of the normalised app (ports vs networking, health-check port
   indices, secrets, resident apps...); it runs only once the structure is valid. Tree-wide
   rules (dependencies, cycles) are in `group.py`.

Paths follow Marathon (play-json): `/container/portMappings(0)/hostPort`, `/apps(1)/id`.
Messages are Marathon's texts where the reference lists them ("is greater than 1"), otherwise
short sentences that say what to fix ("expected number, got string").
"""

from __future__ import annotations

import json
import math
from typing import Any, Iterable, Iterator

from jsonschema import Draft202012Validator

from meseta.frameworks.marathon.constraints import validate_constraints
from meseta.frameworks.marathon.pathid import id_errors

__all__ = [
    "ValidationError",
    "Problems",
    "join_path",
    "json_type",
    "prefixed",
    "structure_problems",
    "strip_nulls",
    "raw_problems",
    "app_problems",
    "health_check_defaults",
    "APP_VALIDATOR",
    "GROUP_VALIDATOR",
    "TIMESTAMP_PATTERN",
]

Problems = list[tuple[str, str]]


class ValidationError(ValueError):
    """Marathon's 422: `{"message": "Object is not valid", "details": [{"path", "errors"}]}`."""

    def __init__(self, problems: Iterable[tuple[str, str]]) -> None:
        details: dict[str, list[str]] = {}
        for path, message in problems:
            messages = details.setdefault(path, [])
            if message not in messages:
                messages.append(message)
        self.details = details
        super().__init__("Object is not valid: " + "; ".join(
            f"{path}: {', '.join(messages)}" for path, messages in details.items()))

    @property
    def problems(self) -> Problems:
        return [(path, m) for path, messages in self.details.items() for m in messages]

    def to_json(self) -> dict[str, Any]:
        return {"message": "Object is not valid",
                "details": [{"path": p, "errors": list(m)} for p, m in self.details.items()]}


def join_path(base: str, *parts: str | int) -> str:
    """`join_path("/apps", 0, "id")` -> `/apps(0)/id`; `join_path("/", "env", "A")` -> `/env/A`."""
    path = "" if base == "/" else base
    for part in parts:
        path += f"({part})" if isinstance(part, int) else f"/{part}"
    return path or "/"


def prefixed(prefix: str, problems: Problems) -> Problems:
    """Problems of a nested document, re-rooted under `prefix` (e.g. `/apps(0)`)."""
    if prefix == "/":
        return list(problems)
    return [(prefix if path == "/" else prefix + path, message) for path, message in problems]


# ---------------------------------------------------------------------------------------------
# Pass 1: schema + non-finite numbers

def structure_problems(doc: Any, validator: Draft202012Validator) -> Problems:
    problems = list(_non_finite(doc, "/"))
    bad = {path for path, _ in problems}
    for error in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
        for path, message in _describe(error):
            if path not in bad:
                problems.append((path, message))
    return problems


def _non_finite(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, float) and not math.isfinite(value):
        yield path, "must be a finite number"
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _non_finite(item, join_path(path, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _non_finite(item, join_path(path, index))


_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
               dict: "object", type(None): "null"}


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type: `object`, `array`, `boolean`..."""
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _fmt(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value if isinstance(value, str) else json.dumps(value)


def _describe(error: Any) -> Iterator[tuple[str, str]]:
    path = join_path("/", *error.absolute_path)
    keyword, expected, instance = error.validator, error.validator_value, error.instance
    if keyword == "required":
        for name in expected:
            if name not in instance:
                yield join_path(path, name), "is required"
    elif keyword == "additionalProperties":
        known = error.schema.get("properties", {})
        for name in instance:
            if name not in known:
                yield join_path(path, name), "unknown field"
    else:
        yield path, _message(keyword, expected, instance)


def _message(keyword: str, expected: Any, instance: Any) -> str:
    if keyword == "type":
        wanted = " or ".join(expected) if isinstance(expected, list) else expected
        return f"expected {wanted}, got {json_type(instance)}"
    simple = {
        "minimum": "is less than {}", "maximum": "is greater than {}",
        "exclusiveMinimum": "must be greater than {}", "exclusiveMaximum": "must be less than {}",
        "maxLength": "must be at most {} characters long",
        "pattern": "must fully match regular expression '{}'",
        "minItems": "must have at least {} element(s)", "maxItems": "must have at most {} element(s)",
    }
    if keyword in simple:
        return simple[keyword].format(_fmt(expected))
    if keyword == "minLength":
        return "must not be empty" if expected == 1 else f"must be at least {expected} characters long"
    if keyword == "enum":
        return "must be one of " + ", ".join(_fmt(v) for v in expected)
    if keyword == "const":
        return f"must be {json.dumps(expected)}"
    if keyword == "uniqueItems":
        return "elements must be unique"
    return f"is not valid ({keyword})"


# ---------------------------------------------------------------------------------------------
# The schemas. Nested objects that marathon-python turns into models (port definitions, port
# mappings, container, networks) are closed: unknown keys there would break that client when we
# echo them. Objects that Marathon extends often (docker, volumes, health checks) stay open.

INT32_MAX = 2**31 - 1
TIMESTAMP_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})$"


def _int(minimum: int = 0, maximum: int = INT32_MAX) -> dict[str, Any]:
    return {"type": "integer", "minimum": minimum, "maximum": maximum}


def _number(minimum: float = 0, maximum: float | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "number", "minimum": minimum}
    if maximum is not None:
        schema["maximum"] = maximum
    return schema


def _closed(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required),
            "additionalProperties": False}


def _open(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required)}


def _array(items: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "array", "items": items, **extra}


_STR = {"type": "string"}
_BOOL = {"type": "boolean"}
_NON_EMPTY = {"type": "string", "minLength": 1}
_URI = {"type": "string", "minLength": 1, "maxLength": 1024}
_STR_MAP = {"type": "object", "additionalProperties": _STR}
_PORT = _int(0, 65535)
_PROTOCOL = {"enum": ["tcp", "udp", "udp,tcp"]}
_PORT_NAME = {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63}
_TIMESTAMP = {"type": "string", "pattern": TIMESTAMP_PATTERN}
_NETWORK_MODES = ["host", "container/bridge", "container"]
HEALTH_PROTOCOLS = ["HTTP", "HTTPS", "TCP", "COMMAND", "MESOS_HTTP", "MESOS_HTTPS", "MESOS_TCP"]

_PORT_MAPPING = _closed({
    "containerPort": _PORT, "hostPort": _PORT, "servicePort": _PORT, "protocol": _PROTOCOL,
    "name": _PORT_NAME, "labels": _STR_MAP, "networkNames": _array(_STR)})

_CONTAINER = _closed({
    "type": {"enum": ["DOCKER", "MESOS"]},
    "docker": _open({
        "image": _NON_EMPTY,
        "network": {"enum": ["BRIDGE", "HOST", "NONE", "USER"]},
        "portMappings": _array(_PORT_MAPPING),
        "privileged": _BOOL,
        "parameters": _array(_closed({"key": _NON_EMPTY, "value": _STR}, ("key", "value"))),
        "forcePullImage": _BOOL}),
    "volumes": _array(_open({"containerPath": _NON_EMPTY, "hostPath": _STR,
                             "mode": {"enum": ["RO", "RW"]}})),
    "portMappings": _array(_PORT_MAPPING),
    "linuxInfo": {"type": "object"}})

_HEALTH_CHECK = _open({
    "protocol": {"enum": HEALTH_PROTOCOLS},
    "path": _STR, "port": _PORT, "portIndex": _int(0, 65535),
    "command": _open({"value": _NON_EMPTY}, ("value",)),
    "gracePeriodSeconds": _int(), "intervalSeconds": _int(1), "timeoutSeconds": _int(1),
    "maxConsecutiveFailures": _int(), "delaySeconds": _int(), "ignoreHttp1xx": _BOOL,
    "ipProtocol": {"enum": ["IPv4", "IPv6"]}})

_READINESS_CHECK = _open({
    "name": _NON_EMPTY, "protocol": {"enum": ["HTTP", "HTTPS"]}, "path": _STR,
    "portName": _NON_EMPTY, "intervalSeconds": _int(1), "timeoutSeconds": _int(1),
    "httpStatusCodesForReady": _array(_int(100, 999), minItems=1),
    "preserveLastResponse": _BOOL})

_UNLIMITED_OR_NUMBER = {"type": ["number", "string"], "minimum": 0, "if": {"type": "string"},
                        "then": {"const": "unlimited"}}

# Keys of AppInfo that clients echo back from a GET; accepted and ignored.
APP_INFO_KEYS = ("tasksStaged", "tasksRunning", "tasksHealthy", "tasksUnhealthy", "deployments",
                 "tasks", "lastTaskFailure", "taskStats", "tasksStats", "readinessCheckResults",
                 "storeUrls", "taskRateLimit")

APP_SCHEMA: dict[str, Any] = _closed({
    "id": _STR,
    "cmd": _NON_EMPTY,
    "args": _array(_STR),
    "user": _NON_EMPTY,
    "env": {"type": "object", "additionalProperties": {
        "type": ["string", "object"], "properties": {"secret": _NON_EMPTY},
        "required": ["secret"], "additionalProperties": False}},
    "instances": _int(),
    "cpus": _number(0.001),
    "mem": _number(),
    "disk": _number(),
    "gpus": _int(),
    "executor": {"type": "string", "maxLength": 1024,
                 "pattern": r"^(//cmd)$|^(/?[^/]+(/[^/]+)*)$|^$"},
    "constraints": _array(_array(_STR, minItems=2, maxItems=3)),
    "acceptedResourceRoles": _array(_NON_EMPTY, uniqueItems=True),
    "role": _NON_EMPTY,
    "portDefinitions": _array(_closed({"port": _PORT, "protocol": _PROTOCOL, "name": _PORT_NAME,
                                       "labels": _STR_MAP})),
    "ports": _array(_PORT),
    "requirePorts": _BOOL,
    "networks": _array(_closed({"mode": {"enum": _NETWORK_MODES}, "name": _NON_EMPTY,
                                "labels": _STR_MAP})),
    "ipAddress": _open({"networkName": _NON_EMPTY, "labels": _STR_MAP, "groups": _array(_STR),
                        "discovery": _open({"ports": _array(_closed(
                            {"number": _PORT, "name": _PORT_NAME, "protocol": _PROTOCOL,
                             "labels": _STR_MAP}, ("number",)))})}),
    "container": _CONTAINER,
    "healthChecks": _array(_HEALTH_CHECK),
    "readinessChecks": _array(_READINESS_CHECK, maxItems=1),
    "check": {"type": "object"},
    "dependencies": _array(_STR),
    "upgradeStrategy": _closed({"minimumHealthCapacity": _number(0, 1),
                                "maximumOverCapacity": _number(0, 1)}),
    "backoffSeconds": _int(),
    "backoffFactor": _number(1),
    "maxLaunchDelaySeconds": _int(),
    "taskKillGracePeriodSeconds": _int(),
    "killSelection": {"enum": ["YOUNGEST_FIRST", "OLDEST_FIRST"]},
    "unreachableStrategy": {
        "type": ["string", "object"], "if": {"type": "string"}, "then": {"const": "disabled"},
        "else": _closed({"inactiveAfterSeconds": _int(), "expungeAfterSeconds": _int()})},
    "fetch": _array(_open({"uri": _URI, "extract": _BOOL, "executable": _BOOL, "cache": _BOOL,
                           "destPath": _NON_EMPTY}, ("uri",))),
    "uris": _array(_URI),
    "labels": _STR_MAP,
    "secrets": {"type": "object", "additionalProperties": _closed({"source": _NON_EMPTY},
                                                                  ("source",))},
    "residency": {"type": "object"},
    "tty": _BOOL,
    "resourceLimits": _closed({"cpus": _UNLIMITED_OR_NUMBER, "mem": _UNLIMITED_OR_NUMBER}),
    "executorResources": _closed({"cpus": _number(), "mem": _number(), "disk": _number()}),
    "version": _TIMESTAMP,
    "versionInfo": _open({"lastScalingAt": _TIMESTAMP, "lastConfigChangeAt": _TIMESTAMP}),
    **{key: {} for key in APP_INFO_KEYS},
}, ("id",))

# Apps inside a group body are checked by APP_SCHEMA when each is parsed.
GROUP_SCHEMA: dict[str, Any] = _closed({
    "id": _STR,
    "apps": _array({"type": "object"}),
    "groups": _array({"type": "object"}),
    "pods": _array({"type": "object"}),
    "dependencies": _array(_STR),
    "version": _TIMESTAMP,
    "enforceRole": _BOOL,
})

APP_VALIDATOR = Draft202012Validator(APP_SCHEMA)
GROUP_VALIDATOR = Draft202012Validator(GROUP_SCHEMA)


# ---------------------------------------------------------------------------------------------
# Input clean-up and nested defaults

# Maps whose values are the user's data: a null there is an error, not "not given".
_FREE_MAPS = frozenset({"env", "labels", "secrets"})


def strip_nulls(value: Any) -> Any:
    """Drop `"key": null` members at every depth: old clients send them for "not given"."""
    if isinstance(value, dict):
        return {k: (v if k in _FREE_MAPS else strip_nulls(v)) for k, v in value.items()
                if v is not None}
    if isinstance(value, list):
        return [strip_nulls(v) for v in value]
    return value


_HTTP_CHECKS = ("HTTP", "HTTPS", "MESOS_HTTP", "MESOS_HTTPS")
_MESOS_CHECKS = ("COMMAND", "MESOS_HTTP", "MESOS_HTTPS", "MESOS_TCP")
_HEALTH_DEFAULTS = {"gracePeriodSeconds": 300, "intervalSeconds": 60, "timeoutSeconds": 20,
                    "maxConsecutiveFailures": 3, "delaySeconds": 15}
READINESS_DEFAULTS = {"name": "readinessCheck", "protocol": "HTTP", "path": "/",
                      "portName": "http-api", "intervalSeconds": 30, "timeoutSeconds": 10,
                      "httpStatusCodesForReady": [200], "preserveLastResponse": False}


def health_check_defaults(check: dict[str, Any]) -> dict[str, Any]:
    """A health check with Marathon's defaults (reference §5.1); unknown keys are kept."""
    protocol = check.get("protocol", "HTTP")
    out: dict[str, Any] = {"protocol": protocol}
    if protocol in _HTTP_CHECKS:
        out["path"] = check.get("path", "/")
    if "port" in check:
        out["port"] = check["port"]
    if "portIndex" in check or ("port" not in check and protocol != "COMMAND"):
        out["portIndex"] = check.get("portIndex", 0)
    if "command" in check:
        out["command"] = check["command"]
    out.update({k: check.get(k, v) for k, v in _HEALTH_DEFAULTS.items()})
    if protocol in _HTTP_CHECKS:
        out["ignoreHttp1xx"] = check.get("ignoreHttp1xx", False)
    if protocol in ("MESOS_HTTP", "MESOS_HTTPS"):
        out["ipProtocol"] = check.get("ipProtocol", "IPv4")
    out.update({k: v for k, v in check.items() if k not in out})
    return out


# ---------------------------------------------------------------------------------------------
# Rules on the raw app body. The structure may be invalid here, so every rule checks types.

NO_COMMAND = "AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'."


def raw_problems(doc: dict[str, Any]) -> Problems:
    problems: Problems = []
    cmd, args = doc.get("cmd"), doc.get("args")
    has_args = isinstance(args, list) and bool(args)
    if cmd is not None and has_args:
        problems.append(("/", "AppDefinition must not contain both 'cmd' and 'args'"))
    elif cmd is None and not has_args and doc.get("container") is None:
        problems.append(("/", NO_COMMAND))

    # A deprecated field next to its replacement is fine only when both say the same
    # (clients echo old GET bodies that carried both).
    ports, definitions = doc.get("ports"), doc.get("portDefinitions")
    if isinstance(ports, list) and isinstance(definitions, list) and ports != [
            d.get("port", 0) if isinstance(d, dict) else d for d in definitions]:
        problems.append(("/ports", "cannot specify both ports and port definitions"))
    uris, fetch = doc.get("uris"), doc.get("fetch")
    if isinstance(uris, list) and isinstance(fetch, list) and uris != [
            f.get("uri") if isinstance(f, dict) else f for f in fetch]:
        problems.append(("/uris", "cannot specify both uris and fetch fields"))

    container = doc.get("container") if isinstance(doc.get("container"), dict) else {}
    docker = container.get("docker") if isinstance(container.get("docker"), dict) else {}
    network = docker.get("network")
    if network is not None and "networks" in doc:
        problems.append(("/networks", "must not specify both container.docker.network and networks"))
    if network == "NONE":
        problems.append(("/container/docker/network", "NONE is not supported; use networks"))
    if "ipAddress" in doc and "networks" in doc:
        problems.append(("/ipAddress", "must not specify both ipAddress and networks"))
    if "ipAddress" in doc and network not in (None, "USER"):
        problems.append(("/ipAddress", "ipAddress requires container.docker.network USER"))
    old, new = docker.get("portMappings"), container.get("portMappings")
    if old and new and old != new:
        problems.append(("/container/docker/portMappings",
                         "must not specify both container.docker.portMappings and container.portMappings"))

    for index, dependency in enumerate(doc.get("dependencies") or []):
        if isinstance(dependency, str):
            problems += [(join_path("/dependencies", index), m) for m in id_errors(dependency)]
    if isinstance(doc.get("constraints"), list):
        # One validator for constraints, the one placement uses (safe regexes included).
        problems += validate_constraints(doc["constraints"], "/constraints")
    return problems


def app_problems(d: dict[str, Any]) -> Problems:
    return [*_network_problems(d), *_container_problems(d), *_health_problems(d),
            *_strategy_problems(d), *_secret_problems(d)]


def _ports(d: dict[str, Any]) -> tuple[bool, list[dict[str, Any]], list[dict[str, Any]]]:
    host = d["networks"][0]["mode"] == "host"
    return host, d["portDefinitions"], (d["container"] or {}).get("portMappings", [])


def _network_problems(d: dict[str, Any]) -> Problems:
    problems: Problems = []
    modes = [n["mode"] for n in d["networks"]]
    if len(modes) > 1 and ("host" in modes or "container/bridge" in modes):
        problems.append(("/networks", "host and bridge networking cannot be combined with other networks"))
    host, definitions, mappings = _ports(d)
    if host and mappings:
        problems.append(("/container/portMappings", "portMappings are not allowed with host-networking"))
    if not host and definitions:
        problems.append(("/portDefinitions", "portDefinitions are only allowed with host-networking"))
    numbers = [p["port"] for p in definitions if p["port"] != 0]
    if len(numbers) != len(set(numbers)):
        problems.append(("/portDefinitions", "ports must be unique"))
    for path, items in (("/portDefinitions", definitions), ("/container/portMappings", mappings)):
        names = [item["name"] for item in items if "name" in item]
        if len(names) != len(set(names)):
            problems.append((path, "Port names must be unique."))
    return problems


def _container_problems(d: dict[str, Any]) -> Problems:
    problems: Problems = []
    container = d["container"] or {}
    docker = container.get("docker")
    if container.get("type") == "DOCKER" and docker is None:
        problems.append(("/container/docker", "is required for DOCKER containers"))
    if docker is not None and "image" not in docker:
        problems.append(("/container/docker/image", "is required"))
    if d.get("gpus", 0) > 0 and container.get("type") == "DOCKER":
        problems.append(("/gpus", "GPU resources only work with the Mesos containerizer"))
    return problems


# ---------------------------------------------------------------------------------------------
# Rules across fields, on the normalised app (every default present, deprecated forms gone).

_PORT_INDEX = "Health check port indices must address an element of the ports array or container port mappings."


def _health_problems(d: dict[str, Any]) -> Problems:
    problems: Problems = []
    host, definitions, mappings = _ports(d)
    port_count = len(definitions) if host else len(mappings)
    for index, check in enumerate(d["healthChecks"]):
        path = join_path("/healthChecks", index)
        if "port" in check and "portIndex" in check:
            problems.append((path, "HealthCheck must specify either a port or a portIndex"))
        elif "portIndex" in check and check["portIndex"] >= port_count:
            problems.append((join_path(path, "portIndex"), _PORT_INDEX))
        if check["protocol"] == "COMMAND" and "command" not in check:
            problems.append((join_path(path, "command"), "is required for COMMAND health checks"))
    if sum(c["protocol"] in _MESOS_CHECKS for c in d["healthChecks"]) > 1:
        problems.append(("/healthChecks", "AppDefinition can contain at most one Mesos health check"))
    names = {p.get("name") for p in (definitions if host else mappings)} - {None}
    for index, check in enumerate(d["readinessChecks"]):
        path = join_path("/readinessChecks", index)
        if check["timeoutSeconds"] >= check["intervalSeconds"]:
            problems.append((join_path(path, "timeoutSeconds"), "must be less than intervalSeconds"))
        if check["portName"] not in names:
            problems.append((join_path(path, "portName"),
                             f"no port named '{check['portName']}' in this app's ports"))
    return problems


def _strategy_problems(d: dict[str, Any]) -> Problems:
    problems: Problems = []
    unreachable, upgrade = d["unreachableStrategy"], d["upgradeStrategy"]
    if isinstance(unreachable, dict) and unreachable["inactiveAfterSeconds"] > unreachable["expungeAfterSeconds"]:
        problems.append(("/unreachableStrategy",
                         "inactiveAfterSeconds must be less or equal to expungeAfterSeconds"))
    if any("persistent" in v for v in (d["container"] or {}).get("volumes", ())):
        if unreachable != "disabled":
            problems.append(("/unreachableStrategy", "unreachableStrategy must be disabled for resident tasks"))
        if upgrade["maximumOverCapacity"] != 0:
            problems.append(("/upgradeStrategy/maximumOverCapacity", "must be 0 for resident tasks"))
    if d.get("labels", {}).get("MARATHON_SINGLE_INSTANCE_APP") == "true":
        if d.get("instances", 1) > 1:
            problems.append(("/instances", "is greater than 1 (single instance app)"))
        if upgrade["minimumHealthCapacity"] != 0 or upgrade["maximumOverCapacity"] != 0:
            problems.append(("/upgradeStrategy", "must be (0, 0) for single instance apps"))
    return problems


def _secret_problems(d: dict[str, Any]) -> Problems:
    secrets = d.get("secrets", {})
    return [(join_path("/env", name), f"references an undefined secret named '{value['secret']}'")
            for name, value in d.get("env", {}).items()
            if isinstance(value, dict) and value["secret"] not in secrets]
