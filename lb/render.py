"""Marathon apps -> haproxy.cfg text, as marathon-lb renders it (its `config()`), pure.

    rendered = render_result(apps, RenderConfig(groups=("external",)), health_memory=memory)
    rendered.text          # the whole haproxy.cfg
    rendered.skipped       # {"/bad": "HAPROXY_0_PORT: 'eighty' is not an integer"}
    rendered.health        # task id -> alive: the caller keeps it as `health_memory` for next time

`services.discover` decides what is exposed (apps, ports, labels, tasks, health); this module
writes it out in marathon-lb's order and shapes (reference marathon-lb.md §6):
HEAD (global, defaults, listen stats), userlists, `frontend marathon_http_in` (vhost ACLs, higher
HAPROXY_{n}_BACKEND_WEIGHT first), `frontend marathon_http_appid_in` (X-Marathon-App-Id),
`frontend marathon_https_in` (SNI), then a frontend per service and a backend per service, by
(app id, service port). Names as marathon-lb's: backend `web_api_10000`, server
`<host>_<ip>_<port>` (or `<ip>_<port>`), server id from sha256 of the name (stable across
reloads, so `load-server-state-from-file` finds each server again).

An app is rendered whole or not at all: a bad label (services.py), a per-app template that does
not format, or a port or backend name another app already holds leaves it out with a reason in
`skipped`. What only HAProxy can judge (an unknown balance algorithm, a bad bind option) is for
`haproxy -c` and the daemon's exclusion search.

Deliberate differences from marathon-lb, for running as an ordinary process next to the daemon:
- no `daemon` (HAProxy runs master-worker under the daemon) and no `lua-load` lines: the lb
  daemon itself serves /_haproxy_getconfig, /_haproxy_getpids, /_haproxy_getvhostmap,
  /_haproxy_getappmap and /_mlb_signal/*, and `listen stats` proxies those paths to it (backend
  `meseta_lb_api`) when `api_address` is set;
- no `log /dev/log` lines (no syslog socket needed; `log global` stays in defaults);
- the stats socket path, server state file and every bind address come from `RenderConfig`;
  the stats socket adds `mode 600 level admin` (the daemon drives it);
- with no `ssl_certs` there is no `marathon_https_in` frontend at all (marathon-lb bound :443
  with /etc/ssl/cert.pem, which HAProxy refuses to load when the file is missing);
- http backends retry a request that meets a dead instance on another server
  (BACKEND_HTTP_RETRY_OPTIONS): a load balancer following a scale-down must not fail requests;
- HAProxy 2.x forms for marathon-lb's removed `reqirep`/`rspirep` (PROXYPASS, REVPROXY);
- not rendered: `--haproxy-map` map files, `--group-https-by-vhost`.

Speed (timeit, best of 150): 1,000 apps x 3 tasks — one service port each, an HTTP health
check, a vhost on every other app — render in 66 ms (discover 32 ms, text 34 ms), on a shared
2-core machine under load where `sum(range(10**6))` takes 16 ms, about twice a typical laptop's.
"""
from __future__ import annotations

import functools
import hashlib
import ipaddress
import re
import socket
from dataclasses import dataclass, field
from itertools import groupby
from types import MappingProxyType
from typing import Any, Callable, Mapping, Optional, Sequence

from meseta.lb.services import (HTTP_CHECKS, TCP_CHECKS, Backend, Service, ServiceOptions,
                                discover)
from meseta.lb.templates import DEFAULT_OPTIONS, TEMPLATES

__all__ = ["RenderConfig", "Rendered", "render", "render_result", "default_resolve", "server_id",
           "server_name"]

MAX_SERVER_ID = 32767
_UNSAFE = re.compile(r"[^a-zA-Z0-9\-]")
_ASCII_UNSAFE = str.maketrans({chr(c): "_" for c in range(128) if _UNSAFE.match(chr(c))})
_WILDCARDS = frozenset({"*", "", "0.0.0.0", "::", "[::]"})
_API_PATHS = ("/_haproxy_getconfig", "/_haproxy_getpids", "/_haproxy_getvhostmap",
              "/_haproxy_getappmap")
_TEMPLATE_ERRORS = (KeyError, ValueError, IndexError, AttributeError)
_NO_MEMORY: Mapping[str, bool] = MappingProxyType({})


@dataclass(frozen=True)
class RenderConfig:
    """What one LB renders and where it binds; marathon-lb's flags of the same meaning.

    `ssl_certs` empty means no `marathon_https_in` frontend at all (and nothing logged about it).
    `templates` overrides templates by their marathon-lb names (`HAPROXY_HEAD`, ...;
    `HAPROXY_GLOBAL_DEFAULT_OPTIONS` too); bad ones raise ValueError here, at startup."""
    groups: tuple[str, ...] = ("external",)
    strict_mode: bool = False
    health_check: bool = True
    bind_http_https: bool = True
    bind_addr: str = "*"
    http_port: int = 80
    https_port: int = 443
    appid_port: int = 9091
    stats_port: int = 9090
    ssl_certs: tuple[str, ...] = ()
    stats_socket: str = "/var/run/haproxy/socket"
    server_state_file: str = ""
    api_address: str = ""
    templates: Mapping[str, str] = field(default_factory=dict)
    global_default_options: str = DEFAULT_OPTIONS
    min_serv_port_ip_per_task: int = 10050
    max_serv_port_ip_per_task: int = 10100
    framework_name: str = "marathon-lb"

    def __post_init__(self) -> None:
        for name in ("http_port", "https_port", "appid_port", "stats_port"):
            if not 0 < getattr(self, name) < 65536:
                raise ValueError(f"{name}: {getattr(self, name)} is not a port number")
        words = [(name, getattr(self, name)) for name in
                 ("bind_addr", "stats_socket", "server_state_file", "api_address")]
        for name, value in words + [("ssl_certs", cert or " ") for cert in self.ssl_certs]:
            if any(c.isspace() for c in value):
                raise ValueError(f"{name}: {value!r} is not one word")
        if self.min_serv_port_ip_per_task > self.max_serv_port_ip_per_task:
            raise ValueError("min_serv_port_ip_per_task is above max_serv_port_ip_per_task")
        unknown = [n for n in self.templates
                   if n != "HAPROXY_GLOBAL_DEFAULT_OPTIONS" and n[len("HAPROXY_"):] not in TEMPLATES]
        if unknown:
            raise ValueError(f"unknown templates: {', '.join(sorted(unknown))}")
        try:
            head = _head(self)
            _frame(self, _Templates(self))               # every global template formats
        except _TEMPLATE_ERRORS as error:
            raise ValueError(f"a global template does not format: {error!r}") from None
        _check_head(head)

    def service_options(self) -> ServiceOptions:
        return ServiceOptions(self.groups, self.strict_mode, self.health_check,
                              self.framework_name, self.min_serv_port_ip_per_task,
                              self.max_serv_port_ip_per_task)


@dataclass(frozen=True)
class Rendered:
    text: str
    services: tuple[Service, ...]
    skipped: Mapping[str, str]
    health: Mapping[str, bool]


@functools.lru_cache(maxsize=4096)
def _lookup(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return socket.gethostbyname(host)          # a failure raises, and is not cached


def default_resolve(host: str) -> Optional[str]:
    """An agent host name -> its IPv4 address (memoised), itself when it is an IP, None when it
    does not resolve. The one piece of IO here; tests pass their own."""
    try:
        return _lookup(host)
    except (OSError, UnicodeError, ValueError):
        return None


def render(apps: Sequence[Mapping[str, Any]], config: RenderConfig, **kw: Any) -> str:
    return render_result(apps, config, **kw).text


def render_result(apps: Sequence[Mapping[str, Any]], config: RenderConfig, *,
                  health_memory: Mapping[str, bool] = _NO_MEMORY,
                  resolve: Callable[[str], Optional[str]] = default_resolve) -> Rendered:
    """The whole haproxy.cfg for these apps (Marathon's `GET /v2/apps?embed=apps.tasks`)."""
    found = discover(apps, config.service_options(), health_memory=health_memory,
                     resolve=resolve)
    templates = _Templates(config)
    claims = _Claims(config)
    skipped = dict(found.skipped)
    accepted: list[tuple[Service, _Fragment]] = []
    for app_id, group in groupby(found.services, key=lambda s: s.app_id):
        services = list(group)
        try:
            fragments = _app_fragments(services, config, templates)
            claims.take(services, config)
        except _TEMPLATE_ERRORS as error:
            skipped[app_id] = _reason(error)
            continue
        accepted.extend(zip(services, fragments))
    text = _frame(config, templates, [f for _, f in accepted])
    return Rendered(text, tuple(s for s, _ in accepted), skipped, found.health)


def _reason(error: Exception) -> str:
    if isinstance(error, _Conflict):
        return str(error)
    return f"a template of this app does not format: {error!r}"


# --------------------------------------------------------------------------- templates


class _Templates:
    """Template texts for this render: app label > RenderConfig.templates > marathon-lb's."""

    def __init__(self, config: RenderConfig) -> None:
        self.base = {name: config.templates.get("HAPROXY_" + name, t.text)
                     for name, t in TEMPLATES.items()}

    def text(self, name: str, service: Optional[Service] = None) -> str:
        if service is not None and name in service.templates and TEMPLATES[name].per_service:
            return service.templates[name]
        return self.base[name]


def _head(config: RenderConfig) -> str:
    options = config.templates.get("HAPROXY_GLOBAL_DEFAULT_OPTIONS", config.global_default_options)
    api_routes = ""
    if config.api_address:
        api_routes = (f"  acl meseta_lb_api path {' '.join(_API_PATHS)}\n"
                      "  acl meseta_lb_api path_beg /_mlb_signal/\n"
                      "  use_backend meseta_lb_api if meseta_lb_api\n")
    state = config.server_state_file
    return config.templates.get("HAPROXY_HEAD", TEMPLATES["HEAD"].text).format(
        statsSocket=f"  stats socket {config.stats_socket} mode 600 level admin "
                    "expose-fd listeners\n",
        serverStateFile=f"  server-state-file {state}\n" if state else "",
        loadServerState="  load-server-state-from-file global\n" if state else "",
        defaultOptions="".join(f"  option            {o.strip()}\n"
                               for o in options.split(",") if o.strip()),
        statsBind=f"{config.bind_addr}:{config.stats_port}",
        apiRoutes=api_routes)


def _check_head(head: str) -> None:
    """marathon-lb's guard for custom heads: HAProxy must stay in the foreground and hand its
    listening sockets to the next process, or reloads drop connections."""
    if "daemon" in head.split() or "expose-fd listeners" not in head:
        raise ValueError("HAPROXY_HEAD must not contain `daemon` and must have "
                         "`stats socket <path> expose-fd listeners`")


# --------------------------------------------------------------------------- the whole text


@dataclass(frozen=True)
class _Fragment:
    """What one service adds to each part of the config."""
    weight: int
    userlist: str
    http_acls: str
    https_acls: str
    appid_acl: str
    frontend: str
    backend: str


def _https_certs(config: RenderConfig) -> str:
    return " ".join(f"crt {cert}" for cert in config.ssl_certs)


def _frame(config: RenderConfig, templates: _Templates,
           fragments: Sequence[_Fragment] = ()) -> str:
    """The config around the services, in marathon-lb's order."""
    shared = {"bindAddr": config.bind_addr, "httpPort": config.http_port,
              "httpsPort": config.https_port, "appidPort": config.appid_port,
              "sslCerts": _https_certs(config)}
    parts = [_head(config)]
    if config.api_address:
        parts.append(f"\nbackend meseta_lb_api\n  mode http\n"
                     f"  server meseta_lb_api {config.api_address}\n")
    parts.extend(f.userlist for f in fragments)
    by_weight = sorted(fragments, key=lambda f: -f.weight)       # stable: ties keep app order
    if config.bind_http_https:
        parts.append(templates.text("HTTP_FRONTEND_HEAD").format_map(shared))
        parts.extend(f.http_acls for f in by_weight)
    parts.append(templates.text("HTTP_FRONTEND_APPID_HEAD").format_map(shared))
    parts.extend(f.appid_acl for f in fragments)
    if config.bind_http_https and config.ssl_certs:
        parts.append(templates.text("HTTPS_FRONTEND_HEAD").format_map(shared))
        parts.extend(f.https_acls for f in by_weight)
    parts.extend(f.frontend for f in fragments)
    parts.extend(f.backend for f in fragments)
    return "".join(parts)


class _Conflict(ValueError):
    pass


class _Claims:
    """Ports and backend names already taken: an app that wants one is left out (two frontends
    on one port would both bind it, SO_REUSEPORT, and split its traffic)."""

    def __init__(self, config: RenderConfig) -> None:
        shared = [config.appid_port, config.stats_port]
        if config.bind_http_https:
            shared.append(config.http_port)
            if config.ssl_certs:
                shared.append(config.https_port)
        self.ports: dict[int, list[tuple[str, str]]] = {
            port: [(config.bind_addr, "the LB itself")] for port in shared}
        self.backends: dict[str, str] = {}

    def take(self, services: Sequence[Service], config: RenderConfig) -> None:
        wanted = [(s.bind_addr or config.bind_addr, s.service_port, s) for s in services]
        for index, (addr, port, service) in enumerate(wanted):
            holders = self.ports.get(port, []) + [(a, s.app_id) for a, p, s in wanted[:index]
                                                 if p == port]
            for held_addr, holder in holders:
                if addr == held_addr or addr in _WILDCARDS or held_addr in _WILDCARDS:
                    raise _Conflict(f"port {port} is already bound by {holder}")
            if service.backend in self.backends:
                raise _Conflict(f"backend {service.backend} already belongs to "
                                f"{self.backends[service.backend]}")
        for addr, port, service in wanted:
            self.ports.setdefault(port, []).append((addr, service.app_id))
            self.backends[service.backend] = service.app_id


# --------------------------------------------------------------------------- one app


def _app_fragments(services: Sequence[Service], config: RenderConfig,
                   templates: _Templates) -> list[_Fragment]:
    fragments = []
    appid_done = False                     # one X-Marathon-App-Id route per app: its first http port
    for service in services:
        ctx = _context(service, config)
        t = _Format(templates, service, ctx)
        http_acls = https_acls = appid_acl = ""
        if config.bind_http_https and service.vhosts:
            http_acls, https_acls = _vhost_acls(service, t)
        if service.mode == "http" and not appid_done:
            appid_acl, appid_done = t("HTTP_FRONTEND_APPID_ACL"), True
        fragments.append(_Fragment(
            weight=service.backend_weight,
            userlist=t("USERLIST_HEAD") if service.auth else "",
            http_acls=http_acls, https_acls=https_acls, appid_acl=appid_acl,
            frontend=t("FRONTEND_HEAD") + t("FRONTEND_BACKEND_GLUE"),
            backend=_backend(service, t) + "".join(
                _servers(service, dict(ctx), templates, _check_kind(service)))))
    return fragments


@dataclass(frozen=True)
class _Format:
    """`t("BACKEND_HEAD")`: a template of this service, formatted with its context."""
    templates: _Templates
    service: Service
    ctx: Mapping[str, Any]

    def __call__(self, name: str, **extra: Any) -> str:
        return self.templates.text(name, self.service).format_map(
            {**self.ctx, **extra} if extra else self.ctx)


def _context(service: Service, config: RenderConfig) -> dict[str, Any]:
    """The fields every per-service template may use (marathon-lb's names)."""
    check = service.health_check
    hostname = service.vhosts[0] if service.vhosts else ""
    ctx = {
        "backend": service.backend, "appId": service.app_id, "servicePort": service.service_port,
        "mode": service.mode, "balance": service.balance,
        "bindAddr": service.bind_addr or config.bind_addr,
        "sslCert": f" ssl crt {service.ssl_cert}" if service.ssl_cert else "",
        "bindOptions": f" {service.bind_options}" if service.bind_options else "",
        "hostname": hostname, "hostnames": " ".join(service.vhosts), "path": service.path,
        "cleanedUpHostname": _clean(hostname) + "_" + service.app_id[1:].replace("/", "_"),
        "cleanedUpAppId": _clean(service.app_id),
        "realm": service.auth.realm if service.auth else "",
        "user": service.auth.user if service.auth else "",
        "passwd": service.auth.password if service.auth else "",
        "proxypath": service.proxy_path, "rootpath": service.revproxy_path,
        "redirpath": service.redirect_path,
    }
    if check is not None:
        ctx.update(healthCheckProtocol=check.protocol, healthCheckPath=check.path,
                   healthCheckPortIndex=check.port_index, healthCheckPort=check.port or "",
                   healthCheckTimeoutSeconds=check.timeout_seconds,
                   healthCheckIntervalSeconds=check.interval_seconds,
                   healthCheckGracePeriodSeconds=check.grace_period_seconds,
                   healthCheckMaxConsecutiveFailures=check.max_consecutive_failures,
                   healthCheckFalls=check.max_consecutive_failures + 1)
    return ctx


def _vhost_acls(service: Service, t: _Format) -> tuple[str, str]:
    """(marathon_http_in lines, marathon_https_in lines): marathon-lb's generateHttpVhostAcl."""
    auth, path, redirect = service.auth is not None, bool(service.path), service.redirect_to_https
    if path:
        https_route = ("HTTPS_FRONTEND_ACL_WITH_AUTH_AND_PATH" if auth
                       else "HTTPS_FRONTEND_ACL_WITH_PATH")
    else:
        https_route = "HTTPS_FRONTEND_ACL_WITH_AUTH" if auth else "HTTPS_FRONTEND_ACL"
    https = t("HTTPS_FRONTEND_ACL_ONLY_WITH_PATH") if path else ""
    if len(service.vhosts) == 1:
        if redirect:
            http = t("HTTP_FRONTEND_ACL_ONLY") + (
                t("HTTP_FRONTEND_ACL_ONLY_WITH_PATH") +
                t("BACKEND_REDIRECT_HTTP_TO_HTTPS_WITH_PATH") if path
                else t("BACKEND_REDIRECT_HTTP_TO_HTTPS"))
        elif path:
            http = t("HTTP_FRONTEND_ACL_WITH_AUTH_AND_PATH" if auth else "HTTP_FRONTEND_ACL_WITH_PATH")
        else:
            http = t("HTTP_FRONTEND_ACL_WITH_AUTH" if auth else "HTTP_FRONTEND_ACL")
        return http, https + t(https_route)
    # several vhosts: one ACL name (from the first) matched by each host, then one route
    http = ""
    if path:
        http = t("HTTP_FRONTEND_ACL_ONLY_WITH_PATH_AND_AUTH" if auth
                 else "HTTP_FRONTEND_ACL_ONLY_WITH_PATH")
    for vhost in service.vhosts:
        http += t("HTTP_FRONTEND_ACL_ONLY", hostname=vhost)
        https += t(https_route, hostname=vhost)
    if redirect:
        route = ("BACKEND_REDIRECT_HTTP_TO_HTTPS_WITH_PATH" if path
                 else "BACKEND_REDIRECT_HTTP_TO_HTTPS")
    elif path:
        route = ("HTTP_FRONTEND_ROUTING_ONLY_WITH_PATH_AND_AUTH" if auth
                 else "HTTP_FRONTEND_ROUTING_ONLY_WITH_PATH")
    else:
        route = "HTTP_FRONTEND_ROUTING_ONLY_WITH_AUTH" if auth else "HTTP_FRONTEND_ROUTING_ONLY"
    return http + t(route), https


def _backend(service: Service, t: _Format) -> str:
    """The backend section up to its servers."""
    parts = [t("BACKEND_HEAD")]
    if service.mode == "http":
        if service.use_hsts:
            parts.append(t("BACKEND_HSTS_OPTIONS"))
        parts += [t("BACKEND_HTTP_OPTIONS"), t("BACKEND_HTTP_RETRY_OPTIONS")]
        if service.proxy_path:
            parts.append(t("HTTP_BACKEND_PROXYPASS_GLUE"))
        if service.revproxy_path:
            parts.append(t("HTTP_BACKEND_REVPROXY_GLUE"))
        if service.redirect_path:
            parts.append(t("HTTP_BACKEND_REDIR"))
    if service.network_allowed:
        kind = "HTTP" if service.mode == "http" else "TCP"
        parts += [t(f"{kind}_BACKEND_NETWORK_ALLOWED_ACL", network_allowed=network)
                  for network in service.network_allowed]
        parts.append(t(f"{kind}_BACKEND_ACL_ALLOW_DENY"))
    if service.sticky:
        parts.append(t("BACKEND_STICKY_OPTIONS"))
    kind = _check_kind(service)
    if kind:
        parts.append(t(f"BACKEND_{kind}_HEALTHCHECK_OPTIONS"))
    return "".join(parts)


def _check_kind(service: Service) -> str:
    """HTTP or TCP when HAProxy should repeat the app's Marathon health check, else ""."""
    protocol = service.health_check.protocol if service.health_check else ""
    return "HTTP" if protocol in HTTP_CHECKS else "TCP" if protocol in TCP_CHECKS else ""


def _servers(service: Service, fields: dict[str, Any], templates: _Templates, kind: str
             ) -> list[str]:
    """The server lines; `fields` (a copy of the service's context) is reused line to line,
    and the check options are formatted once per check port: most of a render is here."""
    line = templates.text("BACKEND_SERVER_OPTIONS", service)
    check_text = templates.text(f"BACKEND_SERVER_{kind}_HEALTHCHECK_OPTIONS", service) if kind else ""
    checks: dict[Optional[int], str] = {}
    taken: set[int] = set()
    lines = []
    for backend in service.backends:
        if kind and backend.check_port not in checks:
            port = backend.check_port
            fields["healthCheckPortOptions"] = f" port {port}" if port else ""
            folded = " ".join(check_text.format_map(fields).split())
            checks[port] = f" {folded}" if folded else ""
        name = server_name(backend)
        cookie = ""
        if service.sticky:
            cookie = f" check cookie {hashlib.sha1(name.encode()).hexdigest()[:10]}"
        fields.update(serverName=name, serverId=server_id(name, taken), host=backend.host,
                      host_ipv4=backend.ip, port=backend.port, cookieOptions=cookie,
                      healthCheckOptions=checks.get(backend.check_port, ""),
                      otherOptions=" disabled" if backend.draining else "")
        lines.append(line.format_map(fields))
    return lines


def server_name(backend: Backend) -> str:
    """`<host>_<ip>_<port>`, or `<ip>_<port>` when the host is the IP, with every character but
    letters, digits and `-` as `_`: `agent1_1_1_1_1_1024`, `10_0_2_148_1565`."""
    name = (f"{backend.ip}_{backend.port}" if backend.host == backend.ip
            else f"{backend.host}_{backend.ip}_{backend.port}")
    return _clean(name)


def _clean(text: str) -> str:
    """marathon-lb's `re.sub(r'[^a-zA-Z0-9\\-]', '_', text)`, by table when the text is ASCII."""
    return text.translate(_ASCII_UNSAFE) if text.isascii() else _UNSAFE.sub("_", text)


def server_id(name: str, taken: set[int]) -> int:
    """A server id in 1..32766 from sha256 of its name — the same for the same name in every
    render, so HAProxy's saved server state follows the server across reloads. On a collision
    (or 0) the hash is appended to the name and hashed again. Adds the id to `taken`."""
    if not name:
        raise ValueError("a server id needs a server name")
    text = name
    while True:
        digest = hashlib.sha256(text.encode()).hexdigest()
        candidate = int(digest, 16) % MAX_SERVER_ID
        if candidate and candidate not in taken:
            taken.add(candidate)
            return candidate
        text += digest
