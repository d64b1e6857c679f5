"""Marathon apps -> the services marathon-lb would expose (its `get_apps`), pure, no IO.

    found = discover(apps, ServiceOptions(groups=("external",)), resolve=lambda host: "10.0.0.1")
    found.services      # (Service("/nginx", 10000, backends=(Backend(...), ...)), ...)
    found.skipped       # {"/bad": "HAPROXY_0_PORT: 'eighty' is not a port number"}
    found.health        # {"nginx.abc": True, ...}: per task, the verdict used this time

A service is one service port of one app (reference marathon-lb.md §4); its backends are the
running — and, when the app has health checks, healthy — tasks. Steps, in marathon-lb's order:
1. blue/green apps of one `HAPROXY_DEPLOYMENT_GROUP` are merged into one app named after the
   group; the older app's oldest tasks are marked draining as the newer one becomes healthy;
2. service ports per networking mode, auto-assigned for IP-per-task apps that have none;
3. the `HAPROXY_{n}_*` labels of each port index, checked (a bad value leaves the app out whole);
4. tasks filtered by state, host and health, then addressed (host IP or the task's own IP);
5. services of this LB's groups, enabled (strict mode), with at least one backend.

Deliberate differences from marathon-lb: a task is healthy when *any* of its health check results
is alive (marathon-lb required all); an empty `healthCheckResults` is "unknown" (the caller's
memory decides) where marathon-lb counted it alive; apps are taken in id order, so the ports
auto-assigned to IP-per-task apps do not depend on the order Marathon (or an event fold) lists
them; a service port 0 counts as none; label values that would inject config (a newline, a
non-number port) are refused here rather than by `haproxy -c`.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from operator import itemgetter
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

__all__ = ["Auth", "Backend", "Discovery", "HealthCheck", "LabelError", "Service",
           "ServiceOptions", "discover", "backend_name"]

# marathon-lb's EXCLUDED_TASK_STATES: everything but RUNNING and (optimistically) LOST/UNREACHABLE.
EXCLUDED_TASK_STATES = frozenset({
    "TASK_STAGING", "TASK_STARTING", "TASK_KILLING", "TASK_FINISHED", "TASK_FAILED",
    "TASK_KILLED", "TASK_ERROR", "TASK_DROPPED", "TASK_GONE", "TASK_GONE_BY_OPERATOR",
    "TASK_UNKNOWN",
})
# Health checks HAProxy can repeat itself (HTTPS is left to Marathon: HAProxy would speak plain
# HTTP to a TLS port); an HTTP one also makes the service `mode http`.
HTTP_CHECKS = frozenset({"HTTP", "MESOS_HTTP"})
TCP_CHECKS = frozenset({"TCP", "MESOS_TCP"})
TRUE_WORDS = frozenset({"true", "t", "yes", "y"})        # marathon-lb's string_to_bool

_PORT_LABEL = re.compile(r"^HAPROXY_(\d+)_(.+)$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_WORD = re.compile(r'^[^\s{}"\'#\\]+$')                  # one config word, no quoting games
_BALANCE = re.compile(r"^[A-Za-z0-9_.,:()\- ]+$")
_APP_ID = re.compile(r"^(/[A-Za-z0-9_.\-]+)+$")
_IP = re.compile(r"^[0-9A-Fa-f:.]+$")
# What odd app JSON raises (LabelError is a ValueError): the app is skipped, never the render.
_UNREADABLE = (ValueError, TypeError, KeyError, AttributeError, IndexError)
_HOST_PORT = itemgetter(0, 2)                           # servers sort by (host, port)


class LabelError(ValueError):
    """A label value the renderer refuses; the message names the label and says what is wrong."""


# --------------------------------------------------------------------------- the result


@dataclass(frozen=True)
class Backend:
    host: str                        # the agent host the task runs on, as Marathon reports it
    ip: str                          # where HAProxy connects: host IP, or the task's own IP
    port: int
    draining: bool = False           # blue/green: an old task being drained (server `disabled`)
    check_port: Optional[int] = None  # the server check's `port`, when not the traffic port


@dataclass(frozen=True)
class HealthCheck:
    """The Marathon health check a service follows, with Marathon's defaults filled in."""
    protocol: str
    path: str = "/"
    port: Optional[int] = None
    port_index: Optional[int] = None
    interval_seconds: int = 60
    timeout_seconds: int = 20
    grace_period_seconds: int = 300
    max_consecutive_failures: int = 3


@dataclass(frozen=True)
class Auth:
    realm: str
    user: str
    password: str                    # as HAProxy's `user ... password` takes it (crypt hash)


@dataclass(frozen=True)
class Service:
    """One service port of one app, with every label applied (field = label, see `_LABELS`)."""
    app_id: str
    service_port: int                # after HAPROXY_{n}_PORT
    port_index: int = 0
    backends: tuple[Backend, ...] = ()   # sorted by (host, port), as the server lines are
    mode: str = "tcp"
    health_check: Optional[HealthCheck] = None
    groups: frozenset[str] = frozenset()
    enabled: bool = True
    vhosts: tuple[str, ...] = ()
    path: str = ""
    auth: Optional[Auth] = None
    sticky: bool = False
    redirect_to_https: bool = False
    use_hsts: bool = False
    ssl_cert: str = ""
    bind_addr: str = ""              # "" = the renderer's default bind address
    bind_options: str = ""
    balance: str = "roundrobin"
    backend_weight: int = 0
    network_allowed: tuple[str, ...] = ()
    proxy_path: str = ""
    revproxy_path: str = ""
    redirect_path: str = ""
    healthcheck_port_index: Optional[int] = None
    templates: Mapping[str, str] = field(default_factory=dict)   # HAPROXY_{n}_<NAME> by NAME

    @property
    def backend(self) -> str:
        return backend_name(self.app_id, self.service_port)


def backend_name(app_id: str, service_port: int) -> str:
    """marathon-lb's backend (and per-service frontend) name: `/web/api`, 10000 -> `web_api_10000`."""
    return f"{app_id[1:].replace('/', '_')}_{service_port}"


@dataclass(frozen=True)
class Discovery:
    services: tuple[Service, ...]                # to render, sorted by (app id, service port)
    skipped: Mapping[str, str]                   # app id -> why it was left out
    health: Mapping[str, bool]                   # task id -> alive, as judged this time


@dataclass(frozen=True)
class ServiceOptions:
    groups: tuple[str, ...] = ("external",)
    strict_mode: bool = False
    health_check: bool = True
    framework_name: str = "marathon-lb"
    min_serv_port_ip_per_task: int = 10050
    max_serv_port_ip_per_task: int = 10100


# --------------------------------------------------------------------------- the steps


def discover(apps: Sequence[Mapping[str, Any]], options: ServiceOptions, *,
             health_memory: Mapping[str, bool], resolve: Callable[[str], Optional[str]]
             ) -> Discovery:
    """Every service this LB exposes, what was left out and why, and the health verdicts."""
    skipped: dict[str, str] = {}
    health: dict[str, bool] = {}
    assigner = _PortAssigner(options.min_serv_port_ip_per_task, options.max_serv_port_ip_per_task)
    found: list[Service] = []
    for view in sorted(_merge_deployment_groups(apps, skipped), key=lambda v: v.app_id):
        if view.app_id[1:] == options.framework_name:
            continue
        try:
            found.extend(_app_services(view, options, assigner, health_memory, resolve, health))
        except _UNREADABLE as error:
            if _relevant(view.app, options.groups):
                reason = str(error) if isinstance(error, LabelError) else f"unreadable app: {error!r}"
                skipped.update((source, reason) for source in view.sources)
    found.sort(key=lambda s: (s.app_id, s.service_port))
    return Discovery(tuple(found), skipped, health)


@dataclass(frozen=True)
class _View:
    """An app as the renderer sees it: blue/green apps merged under the group's id."""
    app: Mapping[str, Any]
    app_id: str
    tasks: tuple[Mapping[str, Any], ...]
    sources: tuple[str, ...]                     # the Marathon app ids it stands for
    draining: frozenset[str] = frozenset()       # task ids


def _app_services(view: _View, options: ServiceOptions, assigner: "_PortAssigner",
                  memory: Mapping[str, bool], resolve: Callable[[str], Optional[str]],
                  health: dict[str, bool]) -> list[Service]:
    app = view.app
    if not _APP_ID.match(view.app_id):
        raise LabelError(f"app id {view.app_id!r} cannot be rendered")
    mode = networking_mode(app)
    ports = assigner.service_ports(app, view.app_id, view.tasks, mode)
    labels = _port_labels(app.get("labels") or {})
    app_groups = _split(str((app.get("labels") or {}).get("HAPROXY_GROUP", "")))
    specs = [_spec(view.app_id, port, index, app, labels.get(index, {}), app_groups, options)
             for index, port in enumerate(ports)]
    rows: list[list[tuple[str, str, int, bool]]] = [[] for _ in specs]
    for task in _running_tasks(view, options.health_check, memory, health):
        address = _task_address(app, task, mode, resolve)
        if address is None:
            continue
        ip, task_ports = address
        draining = task.get("id") in view.draining
        # versions of an app may differ in port count: pair as many as there are
        for found, task_port in zip(rows, task_ports):
            found.append((str(task["host"]), ip, task_port, draining))
    services = _services(specs, rows)
    return [s for s in services if s.enabled and _in_groups(s.groups, options.groups)]


def _services(specs: list[dict[str, Any]], rows: list[list[tuple[str, str, int, bool]]]
              ) -> list[Service]:
    """The services that have backends, each backend with the port its check probes
    (marathon-lb's get_backend_port: HAPROXY_{n}_BACKEND_HEALTHCHECK_PORT_INDEX = k probes the
    same-rank backend of the app's k-th service by service port; an index out of range probes
    the server's own port)."""
    for found in rows:
        found.sort(key=_HOST_PORT)
    kept = [(spec, found) for spec, found in zip(specs, rows) if found]
    siblings = sorted(kept, key=lambda pair: pair[0]["service_port"])
    services = []
    for spec, found in kept:
        check, index = spec["health_check"], spec.get("healthcheck_port_index")
        if check is not None and index is not None:
            ranked = siblings[index][1] if 0 <= index < len(siblings) else found
            ports = [ranked[i][2] if i < len(ranked) else None for i in range(len(found))]
        else:
            ports = [check.port if check else None] * len(found)
        backends = tuple(Backend(*row, port) for row, port in zip(found, ports))
        services.append(Service(backends=backends, **spec))
    return services


# --------------------------------------------------------------------------- labels


def _port_labels(labels: Mapping[str, Any]) -> dict[int, dict[str, str]]:
    """`HAPROXY_{n}_<NAME>` labels by port index n, then NAME."""
    by_index: dict[int, dict[str, str]] = {}
    for key, value in labels.items():
        matched = _PORT_LABEL.match(key) if key.startswith("HAPROXY_") else None
        if matched:
            if not isinstance(value, str):
                raise LabelError(f"{key}: label values are strings, not {type(value).__name__}")
            by_index.setdefault(int(matched.group(1)), {})[matched.group(2)] = value
    return by_index


def _spec(app_id: str, port: int, index: int, app: Mapping[str, Any],
          labels: Mapping[str, str], app_groups: frozenset[str],
          options: ServiceOptions) -> dict[str, Any]:
    """The fields of one service but its backends, from its labels and health check."""
    fields: dict[str, Any] = {"app_id": app_id, "service_port": port, "port_index": index,
                              "enabled": not options.strict_mode, "groups": app_groups}
    templates: dict[str, str] = {}
    for name, value in labels.items():
        parse = _LABELS.get(name)
        if parse is None:
            templates[name] = value               # a template override (or a label we ignore)
            continue
        if _CONTROL.search(value):
            raise LabelError(f"HAPROXY_{index}_{name}: a control character (newline?) in {value!r}")
        try:
            fields.update(parse(value))
        except LabelError as error:
            raise LabelError(f"HAPROXY_{index}_{name}: {error}") from None
    check = health_check(app, index)
    if check is None and fields.get("healthcheck_port_index") is not None:
        check = health_check(app, fields["healthcheck_port_index"])
    http_check = check is not None and check.protocol in HTTP_CHECKS
    fields.setdefault("mode", "http" if http_check or fields.get("vhosts") else "tcp")
    if fields.get("path"):                # a path route must come before its host's catch-all
        fields.setdefault("backend_weight", 1)
    _needs_vhost(fields, index)
    fields.update(health_check=check, templates=templates)
    return fields


def _needs_vhost(fields: Mapping[str, Any], index: int) -> None:
    """The proxy/redirect rewrites name the vhost; marathon-lb rendered `None` without one."""
    for name, label in (("proxy_path", "HTTP_BACKEND_PROXYPASS_PATH"),
                        ("revproxy_path", "HTTP_BACKEND_REVPROXY_PATH"),
                        ("redirect_path", "HTTP_BACKEND_REDIR")):
        if fields.get(name) and not fields.get("vhosts"):
            raise LabelError(f"HAPROXY_{index}_{label} needs HAPROXY_{index}_VHOST")


def _split(text: str) -> frozenset[str]:
    return frozenset(part.strip() for part in text.split(",") if part.strip())


def _word(value: str) -> str:
    if not _WORD.match(value):
        raise LabelError(f"{value!r} must be one word without quotes, braces, # or backslash")
    return value


def _words(value: str) -> str:
    return " ".join(_word(part) for part in value.split())


def _integer(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise LabelError(f"{value!r} is not an integer") from None


def _port_number(value: str) -> int:
    port = _integer(value)
    if not 0 < port < 65536:
        raise LabelError(f"{value!r} is not a port number (1-65535)")
    return port


def _mode(value: str) -> str:
    if value.strip().lower() not in ("http", "tcp"):
        raise LabelError(f"{value!r}: the mode is http or tcp")
    return value.strip().lower()


def _balance(value: str) -> str:
    if not _BALANCE.match(value.strip()):
        raise LabelError(f"{value!r} is not a balance algorithm")
    return value.strip()


def _vhosts(value: str) -> tuple[str, ...]:
    hosts = tuple(_word(host.strip().lower()) for host in value.split(",") if host.strip())
    if not hosts:
        raise LabelError("no virtual host given")
    return hosts


def _auth(value: str) -> Auth:
    parts = value.split(":")
    if len(parts) != 3 or not all(parts):
        raise LabelError("the form is realm:user:encrypted-password")
    return Auth(*(_word(part) for part in parts))


def _networks(value: str) -> tuple[str, ...]:
    for network in value.split():
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise LabelError(f"{network!r} is not an address or CIDR network") from None
    return tuple(value.split())


def _bool(value: str) -> bool:
    return value.strip().lower() in TRUE_WORDS


# Label NAME (of HAPROXY_{n}_NAME) -> Service fields. Any other NAME is kept as a template override.
_LABELS: Mapping[str, Callable[[str], Mapping[str, Any]]] = {
    "VHOST": lambda v: {"vhosts": _vhosts(v)},
    "GROUP": lambda v: {"groups": _split(v)} if _split(v) else {},
    "PATH": lambda v: {"path": _words(v)},
    "STICKY": lambda v: {"sticky": _bool(v)},
    "REDIRECT_TO_HTTPS": lambda v: {"redirect_to_https": _bool(v)},
    "USE_HSTS": lambda v: {"use_hsts": _bool(v)},
    "SSL_CERT": lambda v: {"ssl_cert": _word(v.strip())},
    "BIND_OPTIONS": lambda v: {"bind_options": v.strip()},
    "BIND_ADDR": lambda v: {"bind_addr": _word(v.strip())},
    "PORT": lambda v: {"service_port": _port_number(v)},
    "MODE": lambda v: {"mode": _mode(v)},
    "BALANCE": lambda v: {"balance": _balance(v)},
    "AUTH": lambda v: {"auth": _auth(v)},
    "BACKEND_WEIGHT": lambda v: {"backend_weight": _integer(v)},
    "HTTP_BACKEND_PROXYPASS_PATH": lambda v: {"proxy_path": _word(v.strip())},
    "HTTP_BACKEND_REVPROXY_PATH": lambda v: {"revproxy_path": _word(v.strip())},
    "HTTP_BACKEND_REDIR": lambda v: {"redirect_path": _word(v.strip())},
    "ENABLED": lambda v: {"enabled": _bool(v)},
    "BACKEND_NETWORK_ALLOWED_ACL": lambda v: {"network_allowed": _networks(v)},
    "BACKEND_HEALTHCHECK_PORT_INDEX": lambda v: {"healthcheck_port_index": _integer(v)},
}


def _in_groups(service_groups: frozenset[str], wanted: Iterable[str]) -> bool:
    """marathon-lb's has_group: `*` takes every app, even one without groups."""
    wanted = frozenset(wanted)
    return "*" in wanted or bool(service_groups & wanted)


def _relevant(app: Mapping[str, Any], wanted: Sequence[str]) -> bool:
    """Whether any port of an app (that could not be read) belongs to this LB: only those are
    reported as skipped, so an LB does not complain about apps of other groups."""
    labels = app.get("labels") if isinstance(app.get("labels"), Mapping) else {}
    groups = {str(v) for k, v in labels.items() if k == "HAPROXY_GROUP" or
              (_PORT_LABEL.match(k) and k.endswith("_GROUP"))}
    return "*" in wanted or any(_split(g) & frozenset(wanted) for g in groups)


# --------------------------------------------------------------------------- health checks


def health_check(app: Mapping[str, Any], port_index: int) -> Optional[HealthCheck]:
    """marathon-lb's get_health_check: the first check that names a `port` or has this index."""
    for check in app.get("healthChecks") or ():
        if check.get("port") or check.get("portIndex") == port_index:
            return _health_check(check)
    return None


def _health_check(check: Mapping[str, Any]) -> HealthCheck:
    def number(key: str, default: int) -> int:
        value = check.get(key)
        return default if value is None else int(value)

    port, path = check.get("port"), str(check.get("path") or "/")
    if not _WORD.match(path):
        raise LabelError(f"health check path {path!r} cannot be rendered")
    return HealthCheck(protocol=str(check.get("protocol", "HTTP")).upper(), path=path,
                       port=int(port) if port else None,
                       port_index=check.get("portIndex"),
                       interval_seconds=number("intervalSeconds", 60),
                       timeout_seconds=number("timeoutSeconds", 20),
                       grace_period_seconds=number("gracePeriodSeconds", 300),
                       max_consecutive_failures=number("maxConsecutiveFailures", 3))


def _running_tasks(view: _View, use_health: bool, memory: Mapping[str, bool],
                   health: dict[str, bool]) -> Iterable[Mapping[str, Any]]:
    """Tasks with a host, in a routable state and — for apps with health checks — alive.

    A task without results (Marathon just failed over, or the task only just started) keeps the
    verdict the caller remembers; without one it is left out until its first result."""
    checked = use_health and bool(view.app.get("healthChecks"))
    for task in view.tasks:
        if not task.get("host") or task.get("state") in EXCLUDED_TASK_STATES:
            continue
        if checked:
            task_id = task["id"]
            results = task.get("healthCheckResults") or ()
            alive = (any(bool(r.get("alive")) for r in results) if results
                     else memory.get(task_id))
            if alive is None:
                continue
            health[task_id] = alive
            if not alive:
                continue
        yield task


# --------------------------------------------------------------------------- ports and addresses


def networking_mode(app: Mapping[str, Any]) -> str:
    """`host`, `container` (IP per task) or `container/bridge`, as marathon-lb's utils decide."""
    mode = "container" if app.get("ipAddress") else "host"
    docker_network = ((app.get("container") or {}).get("docker") or {}).get("network", "")
    if docker_network == "USER":
        mode = "container"
    elif docker_network == "BRIDGE":
        mode = "container/bridge"
    for network in app.get("networks") or ():     # modes cannot be mixed: the last one is it
        mode = network.get("mode", "container")
    return mode


def port_mappings(app: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    container = app.get("container") or {}
    return list((container.get("docker") or {}).get("portMappings") or
                container.get("portMappings") or ())


def _definition_ports(app: Mapping[str, Any]) -> list[int]:
    if "portDefinitions" in app:
        return [d["port"] for d in app.get("portDefinitions") or () if d.get("port")]
    return [port for port in app.get("ports") or () if port]


def _task_ports(app: Mapping[str, Any], task: Mapping[str, Any], mode: str) -> list[int]:
    """Where each service port of a task listens (marathon-lb's get_app_task_ports)."""
    if mode in ("host", "container/bridge"):
        ports = list(task.get("ports") or ()) or _definition_ports(app)
        if ports or mode == "host":
            return ports
    else:
        discovery = ((app.get("ipAddress") or {}).get("discovery") or {}).get("ports") or ()
        ports = [int(p["number"]) for p in discovery if "number" in p]
        if ports:
            return ports
    return [m["containerPort"] for m in port_mappings(app) if "containerPort" in m]


def _task_address(app: Mapping[str, Any], task: Mapping[str, Any], mode: str,
                  resolve: Callable[[str], Optional[str]]) -> Optional[tuple[str, list[int]]]:
    if mode == "container":
        addresses = task.get("ipAddresses") or ()
        ip = addresses[0].get("ipAddress") if addresses else None
    else:
        ip = resolve(str(task["host"]))
    ports = [_port(p) for p in _task_ports(app, task, mode)]
    if not ip or not _IP.match(ip) or not ports:
        return None
    return ip, ports


def _port(value: Any) -> int:
    port = int(value)
    if not 0 < port < 65536:
        raise ValueError(f"task port {value!r}")
    return port


class _PortAssigner:
    """marathon-lb's ServicePortAssigner, fresh for each render: IP-per-task apps without service
    ports (Marathon #3636) get ports from a range, by app id and task port, deterministically
    for a given app set."""

    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high
        self.next = low
        self.assigned: dict[tuple[str, int], Optional[int]] = {}

    def service_ports(self, app: Mapping[str, Any], app_id: str,
                      tasks: Sequence[Mapping[str, Any]], mode: str) -> list[int]:
        if mode in ("container", "container/bridge"):
            ports = [m["servicePort"] for m in port_mappings(app) if m.get("servicePort")]
            if ports:
                return ports
        ports = _definition_ports(app)
        if not ports and mode == "container" and tasks and self.low and self.high:
            ports = [self._assign(app_id, p) for p in _task_ports(app, tasks[0], mode)]
            ports = [p for p in ports if p is not None]
        return [_port(p) for p in ports]

    def _assign(self, app_id: str, task_port: int) -> Optional[int]:
        key = (app_id, task_port)
        if key not in self.assigned:
            self.assigned[key] = self._next_free()
        return self.assigned[key]

    def _next_free(self) -> Optional[int]:
        taken = set(self.assigned.values())
        for _ in range(self.high - self.low + 1):
            port = self.next
            self.next = self.low if port >= self.high else port + 1
            if port not in taken:
                return port
        return None                                # the range is exhausted


# --------------------------------------------------------------------------- blue/green


def _merge_deployment_groups(apps: Sequence[Mapping[str, Any]], skipped: dict[str, str]
                             ) -> list[_View]:
    """Apps of one HAPROXY_DEPLOYMENT_GROUP become one view named `/<group>` (reference §4.1)."""
    plain: list[_View] = []
    groups: dict[str, _View] = {}
    for app in apps:
        if not isinstance(app, Mapping) or not isinstance(app.get("id"), str):
            continue
        view = _View(app, app["id"], tuple(app.get("tasks") or ()), (app["id"],))
        group = (app.get("labels") or {}).get("HAPROXY_DEPLOYMENT_GROUP")
        if not group:
            plain.append(view)
            continue
        group_id = group if group.startswith("/") else "/" + group
        view = _View(app, group_id, view.tasks, view.sources)
        try:
            groups[group_id] = _merge(groups[group_id], view) if group_id in groups else view
        except _UNREADABLE as error:
            for source in (*groups.pop(group_id).sources, *view.sources):
                skipped[source] = f"blue/green group {group_id}: {error}"
    return plain + list(groups.values())


def _merge(previous: _View, current: _View) -> _View:
    """marathon-lb's merge: the app started earlier is "old"; as many of its oldest tasks drain
    as the new app has healthy ones, never dropping below the target instance count."""
    old, new = ((previous, current) if _started(previous) < _started(current)
                else (current, previous))
    if _integer_label(new, "HAPROXY_DEPLOYMENT_NEW_INSTANCES", 0) != 0 and \
            _scaled(old) > _scaled(new):
        old, new = new, old
    target = _integer_label(new, "HAPROXY_DEPLOYMENT_TARGET_INSTANCES", None)
    old_tasks = sorted(old.tasks, key=lambda task: task["id"])
    healthy_new = _healthy_count(new)
    drainable = max(0, healthy_new + int(old.app.get("instances", len(old_tasks))) - target)
    drained = {task["id"] for task in old_tasks[:min(len(old_tasks), healthy_new, drainable)]}
    return _View(old.app, old.app_id, (*old_tasks, *new.tasks), old.sources + new.sources,
                 old.draining | new.draining | drained)


def _healthy_count(view: _View) -> int:
    if not view.app.get("healthChecks"):
        return int(view.app.get("instances", len(view.tasks)))
    return sum(1 for task in view.tasks
               if task.get("healthCheckResults") and
               all(r.get("alive") for r in task["healthCheckResults"]))


def _integer_label(view: _View, name: str, default: Optional[int]) -> int:
    value = (view.app.get("labels") or {}).get(name)
    if value is None:
        if default is None:
            raise LabelError(f"{name} is missing on {view.sources[-1]}")
        return default
    try:
        return int(value)
    except ValueError:
        raise LabelError(f"{name}: {value!r} is not an integer") from None


def _started(view: _View) -> datetime:
    return _timestamp((view.app.get("labels") or {}).get("HAPROXY_DEPLOYMENT_STARTED_AT"))


def _scaled(view: _View) -> datetime:
    return _timestamp((view.app.get("versionInfo") or {}).get("lastScalingAt"))


def _timestamp(text: Any) -> datetime:
    """ISO 8601 as UTC; missing or unreadable sorts first, as marathon-lb's datetime.min did."""
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=timezone.utc)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
