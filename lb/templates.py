"""marathon-lb's HAProxy templates (its `config.py`), as data.

Each template is a `str.format` text: `{backend}`-style fields are filled by the renderer, literal
braces are doubled (`{{ ssl_fc }}`), as in marathon-lb. A template is overridden for the whole LB
by `RenderConfig.templates["HAPROXY_<NAME>"]` (marathon-lb's environment variables), and — when
`per_service` — for one service port by the app label `HAPROXY_{n}_<NAME>`.

Fields every per-service template may use: backend, appId, servicePort, mode, balance, bindAddr,
hostname (first vhost), path, realm, user, passwd, cleanedUpHostname, cleanedUpAppId; the
server and health check templates add their own (see their entries).

HEAD differs from marathon-lb's on purpose (the renderer's docstring says why): no `log /dev/log`
lines, no `lua-load` lines, the stats socket path, server state file and bind addresses come from
the render config, `stats socket` has `mode 600 level admin`, and TLS defaults follow Mozilla's
current "intermediate" profile instead of 2016's. BACKEND_HTTP_RETRY_OPTIONS is Meseta's own.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

__all__ = ["Template", "TEMPLATES", "DEFAULT_OPTIONS"]

DEFAULT_OPTIONS = "redispatch,http-server-close,dontlognull"   # HAPROXY_GLOBAL_DEFAULT_OPTIONS

_CIPHERS = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
            "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
            "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
            "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384")


@dataclass(frozen=True)
class Template:
    name: str
    text: str
    per_service: bool = True


# {statsSocket}, {serverStateFile}, {loadServerState}, {defaultOptions}, {statsBind} and {apiRoutes}
# are lines (or "") the renderer prepares, so a custom HEAD may leave any of them out.
_HEAD = f"""\
global
  spread-checks 5
  max-spread-checks 15000
  maxconn 50000
  no strict-limits
  tune.ssl.default-dh-param 2048
  ssl-default-bind-ciphers {_CIPHERS}
  ssl-default-bind-options ssl-min-ver TLSv1.2 no-tls-tickets
  ssl-default-server-ciphers {_CIPHERS}
  ssl-default-server-options ssl-min-ver TLSv1.2 no-tls-tickets
{{statsSocket}}{{serverStateFile}}\
defaults
{{loadServerState}}\
  log               global
  retries                   3
  backlog               10000
  maxconn               10000
  timeout connect          3s
  timeout client          30s
  timeout server          30s
  timeout tunnel        3600s
  timeout http-keep-alive  1s
  timeout http-request    15s
  timeout queue           30s
  timeout tarpit          60s
{{defaultOptions}}\
listen stats
  bind {{statsBind}}
  balance
  mode http
  stats enable
  monitor-uri /_haproxy_health_check
  http-request use-service prometheus-exporter if {{{{ path /metrics }}}}
{{apiRoutes}}"""

_HOST_ACL = "  acl host_{cleanedUpHostname} hdr(host) -i {hostname}\n"
_AUTH_ACL = "  acl auth_{cleanedUpHostname} http_auth(user_{backend})\n"
_PATH_ACL = "  acl path_{backend} path_beg {path}\n"
_AUTH_HOST = ('  http-request auth realm "{realm}" if host_{cleanedUpHostname} '
              '!auth_{cleanedUpHostname}\n')
_AUTH_HOST_PATH = ('  http-request auth realm "{realm}" if host_{cleanedUpHostname} '
                   'path_{backend} !auth_{cleanedUpHostname}\n')
_USE_HOST = "  use_backend {backend} if host_{cleanedUpHostname}\n"
_USE_HOST_PATH = "  use_backend {backend} if host_{cleanedUpHostname} path_{backend}\n"
_SNI = "{{ ssl_fc_sni {hostname} }}"

_ALL = (
    Template("HEAD", _HEAD, per_service=False),
    Template("HTTP_FRONTEND_HEAD",
             "\nfrontend marathon_http_in\n  bind {bindAddr}:{httpPort}\n  mode http\n", False),
    Template("HTTP_FRONTEND_APPID_HEAD",
             "\nfrontend marathon_http_appid_in\n  bind {bindAddr}:{appidPort}\n  mode http\n", False),
    Template("HTTPS_FRONTEND_HEAD",
             "\nfrontend marathon_https_in\n  bind {bindAddr}:{httpsPort} ssl {sslCerts}\n"
             "  mode http\n", False),
    Template("USERLIST_HEAD", "\nuserlist user_{backend}\n  user {user} password {passwd}\n"),
    Template("FRONTEND_HEAD",
             "\nfrontend {backend}\n  bind {bindAddr}:{servicePort}{sslCert}{bindOptions}\n"
             "  mode {mode}\n"),
    Template("FRONTEND_BACKEND_GLUE", "  use_backend {backend}\n"),
    Template("BACKEND_HEAD", "\nbackend {backend}\n  balance {balance}\n  mode {mode}\n"),
    Template("BACKEND_HSTS_OPTIONS",
             "  http-response set-header Strict-Transport-Security max-age=15768000\n"),
    Template("BACKEND_HTTP_OPTIONS",
             "  option forwardfor\n"
             "  http-request set-header X-Forwarded-Port %[dst_port]\n"
             "  http-request add-header X-Forwarded-Proto https if {{ ssl_fc }}\n"),
    # Meseta's addition: a request that meets an instance which just died (scale-down, kill) is
    # retried on another server — a new connection, or an idempotent request that got nothing.
    Template("BACKEND_HTTP_RETRY_OPTIONS",
             "  option redispatch\n"
             "  retry-on conn-failure empty-response response-timeout\n"
             "  http-request disable-l7-retry if !{{ method GET HEAD OPTIONS PUT DELETE TRACE }}\n"),
    # marathon-lb's reqirep/rspirep forms were removed in HAProxy 2.1; these are their equivalents.
    Template("HTTP_BACKEND_PROXYPASS_GLUE",
             "  http-request set-header Host {hostname}\n"
             "  http-request replace-path '^{proxypath}/?(.*)$' '/\\1'\n"),
    Template("HTTP_BACKEND_REVPROXY_GLUE",
             "  acl hdr_location res.hdr(Location) -m found\n"
             "  http-response replace-header Location '^(https?://{hostname}(:[0-9]+)?)?(/.*)$' "
             "'{rootpath}\\3' if hdr_location\n"),
    Template("HTTP_BACKEND_REDIR",
             "  acl is_root path -i /\n"
             "  acl is_domain hdr(host) -i {hostnames}\n"
             "  redirect code 301 location {redirpath} if is_domain is_root\n"),
    Template("HTTP_BACKEND_NETWORK_ALLOWED_ACL", "  acl network_allowed src {network_allowed}\n"),
    Template("HTTP_BACKEND_ACL_ALLOW_DENY",
             "  http-request allow if network_allowed\n  http-request deny\n"),
    Template("TCP_BACKEND_NETWORK_ALLOWED_ACL", "  acl network_allowed src {network_allowed}\n"),
    Template("TCP_BACKEND_ACL_ALLOW_DENY",
             "  tcp-request content accept if network_allowed\n  tcp-request content reject\n"),
    Template("BACKEND_STICKY_OPTIONS", "  cookie mesosphere_server_id insert indirect nocache\n"),
    Template("BACKEND_HTTP_HEALTHCHECK_OPTIONS",
             "  option  httpchk GET {healthCheckPath}\n"
             "  timeout check {healthCheckTimeoutSeconds}s\n"),
    Template("BACKEND_TCP_HEALTHCHECK_OPTIONS", ""),
    # Server lines: also {serverName}, {serverId}, {host}, {host_ipv4}, {port}, {cookieOptions},
    # {healthCheckOptions} (the server check template folded onto one line), {otherOptions}.
    Template("BACKEND_SERVER_OPTIONS",
             "  server {serverName} {host_ipv4}:{port} id {serverId}"
             "{cookieOptions}{healthCheckOptions}{otherOptions}\n"),
    Template("BACKEND_SERVER_HTTP_HEALTHCHECK_OPTIONS",
             "  check inter {healthCheckIntervalSeconds}s fall {healthCheckFalls}"
             "{healthCheckPortOptions}\n"),
    Template("BACKEND_SERVER_TCP_HEALTHCHECK_OPTIONS",
             "  check inter {healthCheckIntervalSeconds}s fall {healthCheckFalls}"
             "{healthCheckPortOptions}\n"),
    Template("BACKEND_REDIRECT_HTTP_TO_HTTPS",
             "  redirect scheme https code 301 if !{{ ssl_fc }} host_{cleanedUpHostname}\n"),
    Template("BACKEND_REDIRECT_HTTP_TO_HTTPS_WITH_PATH",
             "  redirect scheme https code 301 if !{{ ssl_fc }} host_{cleanedUpHostname} "
             "path_{backend}\n"),
    Template("HTTP_FRONTEND_ACL", _HOST_ACL + _USE_HOST),
    Template("HTTP_FRONTEND_ACL_ONLY", _HOST_ACL),
    Template("HTTP_FRONTEND_ROUTING_ONLY", _USE_HOST),
    Template("HTTP_FRONTEND_ACL_WITH_AUTH", _HOST_ACL + _AUTH_ACL + _AUTH_HOST + _USE_HOST),
    Template("HTTP_FRONTEND_ROUTING_ONLY_WITH_AUTH", _AUTH_ACL + _AUTH_HOST + _USE_HOST),
    Template("HTTP_FRONTEND_ACL_WITH_PATH", _HOST_ACL + _PATH_ACL + _USE_HOST_PATH),
    Template("HTTP_FRONTEND_ACL_WITH_AUTH_AND_PATH",
             _HOST_ACL + _AUTH_ACL + _PATH_ACL + _AUTH_HOST_PATH + _USE_HOST_PATH),
    Template("HTTP_FRONTEND_ACL_ONLY_WITH_PATH", _PATH_ACL),
    Template("HTTP_FRONTEND_ACL_ONLY_WITH_PATH_AND_AUTH", _PATH_ACL + _AUTH_ACL),
    Template("HTTP_FRONTEND_ROUTING_ONLY_WITH_PATH", _USE_HOST_PATH),
    Template("HTTP_FRONTEND_ROUTING_ONLY_WITH_PATH_AND_AUTH", _AUTH_HOST_PATH + _USE_HOST_PATH),
    Template("HTTP_FRONTEND_APPID_ACL",
             "  acl app_{cleanedUpAppId} hdr(x-marathon-app-id) -i {appId}\n"
             "  use_backend {backend} if app_{cleanedUpAppId}\n"),
    Template("HTTPS_FRONTEND_ACL", f"  use_backend {{backend}} if {_SNI}\n"),
    Template("HTTPS_FRONTEND_ACL_WITH_AUTH",
             _AUTH_ACL + f'  http-request auth realm "{{realm}}" if {_SNI} !auth_{{cleanedUpHostname}}\n'
             f"  use_backend {{backend}} if {_SNI}\n"),
    Template("HTTPS_FRONTEND_ACL_WITH_PATH", f"  use_backend {{backend}} if {_SNI} path_{{backend}}\n"),
    Template("HTTPS_FRONTEND_ACL_WITH_AUTH_AND_PATH",
             _AUTH_ACL + f'  http-request auth realm "{{realm}}" if {_SNI} path_{{backend}} '
             "!auth_{cleanedUpHostname}\n"
             f"  use_backend {{backend}} if {_SNI} path_{{backend}}\n"),
    Template("HTTPS_FRONTEND_ACL_ONLY_WITH_PATH", _PATH_ACL),
)

TEMPLATES: Mapping[str, Template] = {t.name: t for t in _ALL}
