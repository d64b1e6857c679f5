"""lb/render.py: Marathon apps -> haproxy.cfg, as marathon-lb writes it.

The expected texts are marathon-lb's own test cases (tests/test_marathon_lb.py) as far as they
are remembered, with Meseta's deliberate differences: the HEAD below, and the retry lines of every
http backend (RETRY)."""
from __future__ import annotations

import hashlib
import random
import shutil
import subprocess

import pytest

from meseta.lb.render import RenderConfig, render, render_result, server_id

HOSTS = {"agent1": "1.1.1.1", "agent2": "2.2.2.2", "1.1.1.1": "1.1.1.1"}
CONFIG = RenderConfig(ssl_certs=("/etc/ssl/cert.pem",))
CIPHERS = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
           "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
           "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
           "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384")
HEAD = f"""\
global
  spread-checks 5
  max-spread-checks 15000
  maxconn 50000
  no strict-limits
  tune.ssl.default-dh-param 2048
  ssl-default-bind-ciphers {CIPHERS}
  ssl-default-bind-options ssl-min-ver TLSv1.2 no-tls-tickets
  ssl-default-server-ciphers {CIPHERS}
  ssl-default-server-options ssl-min-ver TLSv1.2 no-tls-tickets
  stats socket /var/run/haproxy/socket mode 600 level admin expose-fd listeners
defaults
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
  option            redispatch
  option            http-server-close
  option            dontlognull
listen stats
  bind *:9090
  balance
  mode http
  stats enable
  monitor-uri /_haproxy_health_check
  http-request use-service prometheus-exporter if {{ path /metrics }}
"""
HTTP_IN = "\nfrontend marathon_http_in\n  bind *:80\n  mode http\n"
APPID_IN = "\nfrontend marathon_http_appid_in\n  bind *:9091\n  mode http\n"
HTTPS_IN = "\nfrontend marathon_https_in\n  bind *:443 ssl crt /etc/ssl/cert.pem\n  mode http\n"
HTTP_OPTIONS = """\
  option forwardfor
  http-request set-header X-Forwarded-Port %[dst_port]
  http-request add-header X-Forwarded-Proto https if { ssl_fc }
  option redispatch
  retry-on conn-failure empty-response response-timeout
  http-request disable-l7-retry if !{ method GET HEAD OPTIONS PUT DELETE TRACE }
"""
HTTPCHK = "  option  httpchk GET /\n  timeout check 10s\n"
SERVER = "  server agent1_1_1_1_1_1024 1.1.1.1:1024 id 28363"
HEALTH = [{"path": "/", "protocol": "HTTP", "portIndex": 0, "gracePeriodSeconds": 10,
           "intervalSeconds": 2, "timeoutSeconds": 10, "maxConsecutiveFailures": 10}]


def task(task_id: str = "nginx.1", host: str = "agent1", port: int = 1024, **extra) -> dict:
    return {"id": task_id, "host": host, "ports": [port], "state": "TASK_RUNNING",
            "healthCheckResults": [{"alive": True}], **extra}


def app(app_id: str = "/nginx", port: int = 10000, health=(), tasks=None, **labels) -> dict:
    return {"id": app_id, "portDefinitions": [{"port": port}], "healthChecks": list(health),
            "labels": {"HAPROXY_GROUP": "external", **labels},
            "tasks": [task(f"{app_id[1:]}.1")] if tasks is None else tasks}


def cfg(apps, config=CONFIG, **kw) -> str:
    return render(apps, config, resolve=HOSTS.get, **kw)


def section(text: str, head: str) -> str:
    """One section of a config: from its head line to the next blank line."""
    start = text.index(f"\n{head}\n") + 1
    end = text.find("\n\n", start)
    return text[start:] if end < 0 else text[start:end + 1]


def nginx(mode: str = "http", extra: str = "", servers: str = SERVER + "\n") -> str:
    """The per-service frontend and backend of marathon-lb's test app /nginx:10000."""
    return (f"\nfrontend nginx_10000\n  bind *:10000\n  mode {mode}\n  use_backend nginx_10000\n"
            f"\nbackend nginx_10000\n  balance roundrobin\n  mode {mode}\n{extra}{servers}")


# --------------------------------------------------------------------------- whole configs


WHOLE = {
    "no apps": ([], CONFIG, HEAD + HTTP_IN + APPID_IN + HTTPS_IN),
    "no ssl certs: no https frontend": ([], RenderConfig(), HEAD + HTTP_IN + APPID_IN),
    "several ssl certs": ([], RenderConfig(ssl_certs=("/etc/ssl/site1.co", "/etc/ssl/site2.co")),
                          HEAD + HTTP_IN + APPID_IN +
                          "\nfrontend marathon_https_in\n  bind *:443 ssl crt /etc/ssl/site1.co "
                          "crt /etc/ssl/site2.co\n  mode http\n"),
    "dont-bind-http-https": ([], RenderConfig(bind_http_https=False, ssl_certs=("/c.pem",)),
                             HEAD + APPID_IN),
    "simple app with an HTTP health check": (
        [app(health=HEALTH)], CONFIG,
        HEAD + HTTP_IN + APPID_IN +
        "  acl app__nginx hdr(x-marathon-app-id) -i /nginx\n"
        "  use_backend nginx_10000 if app__nginx\n" + HTTPS_IN +
        nginx(extra=HTTP_OPTIONS + HTTPCHK, servers=SERVER + " check inter 2s fall 11\n")),
    "COMMAND health check: tcp, no check": (
        [app(health=[{"protocol": "COMMAND", "command": {"value": "curl localhost:$PORT0"},
                      "gracePeriodSeconds": 10, "intervalSeconds": 2, "timeoutSeconds": 10,
                      "maxConsecutiveFailures": 10}])], CONFIG,
        HEAD + HTTP_IN + APPID_IN + HTTPS_IN + nginx("tcp")),
    "TCP health check": (
        [app(health=[{**HEALTH[0], "protocol": "TCP"}])], CONFIG,
        HEAD + HTTP_IN + APPID_IN + HTTPS_IN +
        nginx("tcp", servers=SERVER + " check inter 2s fall 11\n")),
    "vhost": (
        [app(health=HEALTH, HAPROXY_0_VHOST="test.example.com")], CONFIG,
        HEAD + HTTP_IN +
        "  acl host_test_example_com_nginx hdr(host) -i test.example.com\n"
        "  use_backend nginx_10000 if host_test_example_com_nginx\n" + APPID_IN +
        "  acl app__nginx hdr(x-marathon-app-id) -i /nginx\n"
        "  use_backend nginx_10000 if app__nginx\n" + HTTPS_IN +
        "  use_backend nginx_10000 if { ssl_fc_sni test.example.com }\n" +
        nginx(extra=HTTP_OPTIONS + HTTPCHK, servers=SERVER + " check inter 2s fall 11\n")),
}


@pytest.mark.parametrize("case", WHOLE)
def test_whole_config(case):
    apps, config, expected = WHOLE[case]
    assert cfg(apps, config) == expected


# --------------------------------------------------------------------------- vhost frontends


VHOST_CASES = {   # labels -> (marathon_http_in lines, marathon_https_in lines)
    "multiple vhosts": (
        {"HAPROXY_0_VHOST": "test.example.com,test"},
        "  acl host_test_example_com_nginx hdr(host) -i test.example.com\n"
        "  acl host_test_example_com_nginx hdr(host) -i test\n"
        "  use_backend nginx_10000 if host_test_example_com_nginx\n",
        "  use_backend nginx_10000 if { ssl_fc_sni test.example.com }\n"
        "  use_backend nginx_10000 if { ssl_fc_sni test }\n"),
    "vhost, upper case": (
        {"HAPROXY_0_VHOST": "Test.Example.COM"},
        "  acl host_test_example_com_nginx hdr(host) -i test.example.com\n"
        "  use_backend nginx_10000 if host_test_example_com_nginx\n",
        "  use_backend nginx_10000 if { ssl_fc_sni test.example.com }\n"),
    "redirect to https": (
        {"HAPROXY_0_VHOST": "test.example.com", "HAPROXY_0_REDIRECT_TO_HTTPS": "true"},
        "  acl host_test_example_com_nginx hdr(host) -i test.example.com\n"
        "  redirect scheme https code 301 if !{ ssl_fc } host_test_example_com_nginx\n",
        "  use_backend nginx_10000 if { ssl_fc_sni test.example.com }\n"),
    "multiple vhosts, redirect": (
        {"HAPROXY_0_VHOST": "test.example.com,test", "HAPROXY_0_REDIRECT_TO_HTTPS": "true"},
        "  acl host_test_example_com_nginx hdr(host) -i test.example.com\n"
        "  acl host_test_example_com_nginx hdr(host) -i test\n"
        "  redirect scheme https code 301 if !{ ssl_fc } host_test_example_com_nginx\n",
        "  use_backend nginx_10000 if { ssl_fc_sni test.example.com }\n"
        "  use_backend nginx_10000 if { ssl_fc_sni test }\n"),
    "auth": (
        {"HAPROXY_0_VHOST": "test.example.com", "HAPROXY_0_AUTH": "realm:testuser:password"},
        "  acl host_test_example_com_nginx hdr(host) -i test.example.com\n"
        "  acl auth_test_example_com_nginx http_auth(user_nginx_10000)\n"
        '  http-request auth realm "realm" if host_test_example_com_nginx '
        "!auth_test_example_com_nginx\n"
        "  use_backend nginx_10000 if host_test_example_com_nginx\n",
        "  acl auth_test_example_com_nginx http_auth(user_nginx_10000)\n"
        '  http-request auth realm "realm" if { ssl_fc_sni test.example.com } '
        "!auth_test_example_com_nginx\n"
        "  use_backend nginx_10000 if { ssl_fc_sni test.example.com }\n"),
    "path": (
        {"HAPROXY_0_VHOST": "test.example.com", "HAPROXY_0_PATH": "/some/path"},
        "  acl host_test_example_com_nginx hdr(host) -i test.example.com\n"
        "  acl path_nginx_10000 path_beg /some/path\n"
        "  use_backend nginx_10000 if host_test_example_com_nginx path_nginx_10000\n",
        "  acl path_nginx_10000 path_beg /some/path\n"
        "  use_backend nginx_10000 if { ssl_fc_sni test.example.com } path_nginx_10000\n"),
    "path and auth": (
        {"HAPROXY_0_VHOST": "test.example.com", "HAPROXY_0_PATH": "/some/path",
         "HAPROXY_0_AUTH": "realm:testuser:password"},
        "  acl host_test_example_com_nginx hdr(host) -i test.example.com\n"
        "  acl auth_test_example_com_nginx http_auth(user_nginx_10000)\n"
        "  acl path_nginx_10000 path_beg /some/path\n"
        '  http-request auth realm "realm" if host_test_example_com_nginx path_nginx_10000 '
        "!auth_test_example_com_nginx\n"
        "  use_backend nginx_10000 if host_test_example_com_nginx path_nginx_10000\n",
        "  acl path_nginx_10000 path_beg /some/path\n"
        "  acl auth_test_example_com_nginx http_auth(user_nginx_10000)\n"
        '  http-request auth realm "realm" if { ssl_fc_sni test.example.com } path_nginx_10000 '
        "!auth_test_example_com_nginx\n"
        "  use_backend nginx_10000 if { ssl_fc_sni test.example.com } path_nginx_10000\n"),
    "path and redirect": (
        {"HAPROXY_0_VHOST": "test.example.com", "HAPROXY_0_PATH": "/some/path",
         "HAPROXY_0_REDIRECT_TO_HTTPS": "true"},
        "  acl host_test_example_com_nginx hdr(host) -i test.example.com\n"
        "  acl path_nginx_10000 path_beg /some/path\n"
        "  redirect scheme https code 301 if !{ ssl_fc } host_test_example_com_nginx "
        "path_nginx_10000\n",
        "  acl path_nginx_10000 path_beg /some/path\n"
        "  use_backend nginx_10000 if { ssl_fc_sni test.example.com } path_nginx_10000\n"),
    "multiple vhosts, path": (
        {"HAPROXY_0_VHOST": "test.example.com,test", "HAPROXY_0_PATH": "/some/path"},
        "  acl path_nginx_10000 path_beg /some/path\n"
        "  acl host_test_example_com_nginx hdr(host) -i test.example.com\n"
        "  acl host_test_example_com_nginx hdr(host) -i test\n"
        "  use_backend nginx_10000 if host_test_example_com_nginx path_nginx_10000\n",
        "  acl path_nginx_10000 path_beg /some/path\n"
        "  use_backend nginx_10000 if { ssl_fc_sni test.example.com } path_nginx_10000\n"
        "  use_backend nginx_10000 if { ssl_fc_sni test } path_nginx_10000\n"),
    "multiple vhosts, auth": (
        {"HAPROXY_0_VHOST": "test.example.com,test", "HAPROXY_0_AUTH": "realm:testuser:pw"},
        "  acl host_test_example_com_nginx hdr(host) -i test.example.com\n"
        "  acl host_test_example_com_nginx hdr(host) -i test\n"
        "  acl auth_test_example_com_nginx http_auth(user_nginx_10000)\n"
        '  http-request auth realm "realm" if host_test_example_com_nginx '
        "!auth_test_example_com_nginx\n"
        "  use_backend nginx_10000 if host_test_example_com_nginx\n",
        ("  acl auth_test_example_com_nginx http_auth(user_nginx_10000)\n"
         '  http-request auth realm "realm" if { ssl_fc_sni test.example.com } '
         "!auth_test_example_com_nginx\n"
         "  use_backend nginx_10000 if { ssl_fc_sni test.example.com }\n") +
        ("  acl auth_test_example_com_nginx http_auth(user_nginx_10000)\n"
         '  http-request auth realm "realm" if { ssl_fc_sni test } '
         "!auth_test_example_com_nginx\n"
         "  use_backend nginx_10000 if { ssl_fc_sni test }\n")),
}


@pytest.mark.parametrize("case", VHOST_CASES)
def test_vhost_frontend_acls(case):
    labels, http_lines, https_lines = VHOST_CASES[case]
    text = cfg([app(**labels)])
    assert section(text, "frontend marathon_http_in") == HTTP_IN[1:] + http_lines
    assert section(text, "frontend marathon_https_in") == HTTPS_IN[1:] + https_lines


def test_auth_adds_a_userlist_before_the_frontends():
    text = cfg([app(HAPROXY_0_VHOST="test.example.com", HAPROXY_0_AUTH="realm:testuser:$6$x")])
    assert text.startswith(HEAD + "\nuserlist user_nginx_10000\n  user testuser password $6$x\n"
                           + HTTP_IN)


@pytest.mark.parametrize("weights, order", [
    ({}, ["api_10001", "bar_10002", "root_10000"]),            # a PATH weighs 1, others 0
    ({"/bar": "2"}, ["bar_10002", "api_10001", "root_10000"]),
    ({"/api": "0"}, ["api_10001", "bar_10002", "root_10000"]),  # ties: by app id
    ({"/root": "-1", "/api": "-2"}, ["bar_10002", "root_10000", "api_10001"]),
])
def test_vhost_routes_are_ordered_by_backend_weight_then_app(weights, order):
    weight = lambda app_id: {"HAPROXY_0_BACKEND_WEIGHT": weights[app_id]} \
        if app_id in weights else {}  # noqa: E731
    apps = [app("/root", 10000, HAPROXY_0_VHOST="example.com", **weight("/root")),
            app("/api", 10001, HAPROXY_0_VHOST="example.com", HAPROXY_0_PATH="/api",
                **weight("/api")),
            app("/bar", 10002, HAPROXY_0_VHOST="bar.example.com", **weight("/bar"))]
    for head in ("frontend marathon_http_in", "frontend marathon_https_in"):
        routes = [line.split()[1] for line in section(cfg(apps), head).splitlines()
                  if line.startswith("  use_backend")]
        assert routes == order


def test_without_bind_http_https_vhosts_still_get_their_own_frontend_and_appid_route():
    text = cfg([app(HAPROXY_0_VHOST="test.example.com")],
               RenderConfig(bind_http_https=False, ssl_certs=("/c.pem",)))
    assert "marathon_http_in" not in text and "marathon_https_in" not in text
    assert "acl app__nginx hdr(x-marathon-app-id) -i /nginx" in text
    assert "\nfrontend nginx_10000\n" in text


# --------------------------------------------------------------------------- backends


BACKEND_CASES = {   # labels -> the lines after `mode`, before the servers (http mode)
    "HSTS": ({"HAPROXY_0_USE_HSTS": "true"},
             "  http-response set-header Strict-Transport-Security max-age=15768000\n"
             + HTTP_OPTIONS),
    "proxypass": ({"HAPROXY_0_HTTP_BACKEND_PROXYPASS_PATH": "/proxy/path"},
                  HTTP_OPTIONS + "  http-request set-header Host test.example.com\n"
                  "  http-request replace-path '^/proxy/path/?(.*)$' '/\\1'\n"),
    "revproxy": ({"HAPROXY_0_HTTP_BACKEND_REVPROXY_PATH": "/proxy/path"},
                 HTTP_OPTIONS + "  acl hdr_location res.hdr(Location) -m found\n"
                 "  http-response replace-header Location "
                 "'^(https?://test.example.com(:[0-9]+)?)?(/.*)$' '/proxy/path\\3' "
                 "if hdr_location\n"),
    "redirect path": ({"HAPROXY_0_HTTP_BACKEND_REDIR": "/rewrite/path"},
                      HTTP_OPTIONS + "  acl is_root path -i /\n"
                      "  acl is_domain hdr(host) -i test.example.com\n"
                      "  redirect code 301 location /rewrite/path if is_domain is_root\n"),
    "network allowed": ({"HAPROXY_0_BACKEND_NETWORK_ALLOWED_ACL": "127.0.0.1/8 10.1.55.0/24"},
                        HTTP_OPTIONS + "  acl network_allowed src 127.0.0.1/8\n"
                        "  acl network_allowed src 10.1.55.0/24\n"
                        "  http-request allow if network_allowed\n  http-request deny\n"),
    "sticky": ({"HAPROXY_0_STICKY": "true"},
               HTTP_OPTIONS + "  cookie mesosphere_server_id insert indirect nocache\n"),
    "http options template": ({"HAPROXY_0_BACKEND_HTTP_OPTIONS": "  option forwardfor\n"},
                              "  option forwardfor\n" + HTTP_OPTIONS.split("\n", 3)[3]),
    "no retry": ({"HAPROXY_0_BACKEND_HTTP_RETRY_OPTIONS": ""}, HTTP_OPTIONS.rsplit("\n", 4)[0]
                 + "\n"),
}


@pytest.mark.parametrize("case", BACKEND_CASES)
def test_backend_options(case):
    labels, lines = BACKEND_CASES[case]
    text = cfg([app(HAPROXY_0_VHOST="test.example.com", **labels)])
    backend = section(text, "backend nginx_10000")
    assert backend == ("backend nginx_10000\n  balance roundrobin\n  mode http\n" + lines +
                       backend[backend.index("  server "):])


def test_sticky_servers_carry_a_cookie_from_the_server_name():
    cookie = hashlib.sha1(b"agent1_1_1_1_1_1024").hexdigest()[:10]
    text = cfg([app(health=HEALTH, HAPROXY_0_STICKY="true")])
    assert f"{SERVER} check cookie {cookie} check inter 2s fall 11\n" in text


def test_tcp_backend_with_network_acl_and_leastconn():
    text = cfg([app(HAPROXY_0_BACKEND_NETWORK_ALLOWED_ACL="10.0.0.0/8",
                    HAPROXY_0_BALANCE="leastconn")])
    assert section(text, "backend nginx_10000") == (
        "backend nginx_10000\n  balance leastconn\n  mode tcp\n"
        "  acl network_allowed src 10.0.0.0/8\n"
        "  tcp-request content accept if network_allowed\n  tcp-request content reject\n"
        + SERVER + "\n")


def test_frontend_labels_bind_addr_port_ssl_cert_bind_options():
    text = cfg([app(HAPROXY_0_BIND_ADDR="127.0.0.1", HAPROXY_0_PORT="18080",
                    HAPROXY_0_SSL_CERT="/etc/ssl/nginx.pem",
                    HAPROXY_0_BIND_OPTIONS="ciphers AES128+EECDH:AES128+EDH force-tlsv12")])
    assert section(text, "frontend nginx_18080") == (
        "frontend nginx_18080\n  bind 127.0.0.1:18080 ssl crt /etc/ssl/nginx.pem ciphers "
        "AES128+EECDH:AES128+EDH force-tlsv12\n  mode tcp\n  use_backend nginx_18080\n")
    assert "\nbackend nginx_18080\n" in text


@pytest.mark.parametrize("check, server", [
    ({"port": 8558}, " check inter 2s fall 11 port 8558"),
    ({"intervalSeconds": 30, "maxConsecutiveFailures": 0}, " check inter 30s fall 1"),
    ({"protocol": "MESOS_HTTP"}, " check inter 2s fall 11"),
    ({"protocol": "HTTPS"}, ""),                         # Marathon checks it; HAProxy cannot
])
def test_server_check_options(check, server):
    text = cfg([app(health=[{**HEALTH[0], **check}])])
    assert f"{SERVER}{server}\n" in text


def test_healthcheck_port_index_probes_the_other_port_of_the_same_task():
    two = {**app(health=[{**HEALTH[0], "portIndex": 1}],
                 tasks=[{**task(), "ports": [1024, 1025]}],
                 HAPROXY_0_BACKEND_HEALTHCHECK_PORT_INDEX="1"),
           "portDefinitions": [{"port": 10000}, {"port": 10001}]}
    text = cfg([two])
    assert f"{SERVER} check inter 2s fall 11 port 1025\n" in section(text, "backend nginx_10000")
    assert section(text, "backend nginx_10001").endswith(
        f"  server agent1_1_1_1_1_1025 1.1.1.1:1025 id {server_id('agent1_1_1_1_1_1025', set())}"
        " check inter 2s fall 11\n")


def test_servers_are_sorted_by_host_and_port_with_stable_ids():
    tasks = [task("n.3", "agent2", 31000), task("n.1", "agent1", 31001), task("n.2", "agent1", 1)]
    backend = section(cfg([app(tasks=tasks)]), "backend nginx_10000")
    names = [line.split()[1] for line in backend.splitlines() if line.startswith("  server")]
    assert names == ["agent1_1_1_1_1_1", "agent1_1_1_1_1_31001", "agent2_2_2_2_2_31000"]


def test_template_overrides_by_label_and_by_config():
    config = RenderConfig(ssl_certs=(), templates={
        "HAPROXY_HTTP_FRONTEND_HEAD": "\nfrontend marathon_http_in\n  bind {bindAddr}:{httpPort}\n"
                                      "  mode http\n  option httplog\n",
        "HAPROXY_BACKEND_HEAD": "\nbackend {backend}\n  balance {balance}\n  mode {mode}\n"
                                "  timeout server 1m\n",
        "HAPROXY_GLOBAL_DEFAULT_OPTIONS": "redispatch,httpclose,forwardfor"})
    text = cfg([app("/a", 10000), app("/b", 10001, HAPROXY_0_BACKEND_HEAD="\nbackend {backend}\n"
                                      "  balance source\n  mode tcp\n")], config)
    assert "  option            redispatch\n  option            httpclose\n" \
           "  option            forwardfor\nlisten stats\n" in text
    assert "\nfrontend marathon_http_in\n  bind *:80\n  mode http\n  option httplog\n" in text
    assert "backend a_10000\n  balance roundrobin\n  mode tcp\n  timeout server 1m\n" in text
    assert "backend b_10001\n  balance source\n  mode tcp\n  server" in text


def test_stats_routes_to_the_lb_api_and_the_server_state_file():
    config = RenderConfig(bind_addr="127.0.0.1", stats_port=19090, api_address="127.0.0.1:18123",
                          stats_socket="/run/lb/haproxy.sock", server_state_file="/run/lb/state")
    text = cfg([], config)
    assert "  stats socket /run/lb/haproxy.sock mode 600 level admin expose-fd listeners\n" \
           "  server-state-file /run/lb/state\ndefaults\n  load-server-state-from-file global\n" \
           in text
    assert section(text, "listen stats").endswith(
        "  bind 127.0.0.1:19090\n  balance\n  mode http\n  stats enable\n"
        "  monitor-uri /_haproxy_health_check\n"
        "  http-request use-service prometheus-exporter if { path /metrics }\n"
        "  acl meseta_lb_api path /_haproxy_getconfig /_haproxy_getpids /_haproxy_getvhostmap "
        "/_haproxy_getappmap\n  acl meseta_lb_api path_beg /_mlb_signal/\n"
        "  use_backend meseta_lb_api if meseta_lb_api\n")
    assert "\nbackend meseta_lb_api\n  mode http\n  server meseta_lb_api 127.0.0.1:18123\n" in text


def test_bridge_app_from_marathon_1_5():
    bridge = {"id": "/pywebserver", "labels": {"HAPROXY_GROUP": "external",
                                               "HAPROXY_0_VHOST": "pywebserver.example.com"},
              "container": {"type": "DOCKER", "docker": {"image": "python:3"},
                            "portMappings": [{"containerPort": 8080, "hostPort": 0,
                                              "servicePort": 10101, "protocol": "tcp"}]},
              "networks": [{"mode": "container/bridge"}], "portDefinitions": [],
              "tasks": [{"id": "pywebserver.8cad6a69", "host": "10.0.2.148", "ports": [1565],
                         "ipAddresses": [{"ipAddress": "172.17.0.3", "protocol": "IPv4"}],
                         "state": "TASK_RUNNING"}]}
    text = render([bridge], CONFIG, resolve=lambda host: host)
    assert section(text, "backend pywebserver_10101") == (
        "backend pywebserver_10101\n  balance roundrobin\n  mode http\n" + HTTP_OPTIONS +
        f"  server 10_0_2_148_1565 10.0.2.148:1565 id {server_id('10_0_2_148_1565', set())}\n")


def test_blue_green_draining_servers_are_disabled():
    labels = lambda colour, started: {  # noqa: E731
        "HAPROXY_DEPLOYMENT_GROUP": "nginx", "HAPROXY_DEPLOYMENT_ALT_PORT": "10001",
        "HAPROXY_DEPLOYMENT_COLOUR": colour, "HAPROXY_DEPLOYMENT_STARTED_AT": started,
        "HAPROXY_DEPLOYMENT_TARGET_INSTANCES": "3", "HAPROXY_0_PORT": "10000"}
    blue = {**app("/nginx-blue", 10000, tasks=[task(f"nginx-blue.{i}", port=1020 + i)
                                               for i in range(3)],
                  **labels("blue", "2016-02-01T15:51:38Z")), "instances": 3}
    green = {**app("/nginx-green", 10001, tasks=[task("nginx-green.1", port=1030)],
                   **labels("green", "2016-02-01T16:10:05Z")), "instances": 1}
    servers = [line for line in section(cfg([blue, green]), "backend nginx_10000").splitlines()
               if line.startswith("  server")]
    assert [line.endswith(" disabled") for line in servers] == [True, False, False, False]


# --------------------------------------------------------------------------- what is left out


@pytest.mark.parametrize("bad, says", [
    ({"HAPROXY_0_PORT": "eighty"}, "HAPROXY_0_PORT"),
    ({"HAPROXY_0_MODE": "udp"}, "HAPROXY_0_MODE"),
    ({"HAPROXY_0_BALANCE": "roundrobin\n  server x 6.6.6.6:1"}, "HAPROXY_0_BALANCE"),
    ({"HAPROXY_0_BACKEND_HEAD": "\nbackend {backend}\n  balance {algorithm}\n"}, "algorithm"),
    ({"HAPROXY_0_FRONTEND_HEAD": "\nfrontend {backend\n"}, "does not format"),
    ({"HAPROXY_0_PORT": "10000"}, "port 10000 is already bound by /good"),
    ({"HAPROXY_0_PORT": "9090"}, "port 9090 is already bound by the LB itself"),
    ({"HAPROXY_1_PORT": "10005"}, "port 10005 is already bound by /x-bad"),   # its own two ports
])
def test_an_app_with_a_bad_label_is_left_out_whole_and_the_rest_renders(bad, says):
    bad_app = {**app("/x-bad", 10005, tasks=[{**task("bad.1"), "ports": [1, 2]}], **bad),
               "portDefinitions": [{"port": 10005}, {"port": 10006}]}
    result = render_result([app("/good"), bad_app], CONFIG, resolve=HOSTS.get)
    assert says in result.skipped["/x-bad"]
    assert "bad_" not in result.text and "/x-bad" not in result.text
    assert [s.app_id for s in result.services] == ["/good"]
    assert result.text == cfg([app("/good")])


def test_two_apps_with_one_backend_name_keep_the_first():
    apps = [app("/a/b", HAPROXY_0_BIND_ADDR="127.0.0.1"),
            app("/a_b", HAPROXY_0_BIND_ADDR="127.0.0.2")]                 # no port conflict
    result = render_result(apps, CONFIG, resolve=HOSTS.get)
    assert [s.app_id for s in result.services] == ["/a/b"]
    assert "backend a_b_10000 already belongs to /a/b" in result.skipped["/a_b"]


@pytest.mark.parametrize("change", [
    {"templates": {"HAPROXY_HEAD": "global\n  daemon\n  stats socket /s expose-fd listeners\n"}},
    {"templates": {"HAPROXY_HEAD": "global\n  stats socket /s\n"}},
    {"templates": {"HAPROXY_NO_SUCH_TEMPLATE": ""}},
    {"templates": {"HAPROXY_HTTP_FRONTEND_HEAD": "\nfrontend x\n  bind {unknown}\n"}},
    {"stats_port": 0},
    {"stats_socket": "/run/a b"},
    {"ssl_certs": ("/etc/ssl/a b.pem",)},
    {"min_serv_port_ip_per_task": 20000},
])
def test_bad_render_config_is_refused_at_startup(change):
    with pytest.raises(ValueError):
        RenderConfig(**change)


# --------------------------------------------------------------------------- ids, determinism


def test_server_id_is_marathon_lb_s():
    assert server_id("agent1_1_1_1_1_1024", set()) == 28363


def test_server_ids_are_stable_unique_and_in_range():
    names = [f"agent{i}_10_0_{i % 250}_{i % 7}_{31000 + i}" for i in range(3000)]
    taken: set[int] = set()
    ids = [server_id(name, taken) for name in names]
    assert len(set(ids)) == len(ids) and all(1 <= i <= 32767 for i in ids)
    again: set[int] = set()
    assert [server_id(name, again) for name in names] == ids


def test_server_id_collision_takes_the_next_hash():
    first = server_id("agent1_1_1_1_1_1024", set())
    assert server_id("agent1_1_1_1_1_1024", {first}) not in (first, 0)
    with pytest.raises(ValueError):
        server_id("", set())


def test_render_does_not_depend_on_the_order_of_apps_or_tasks():
    apps = [app(f"/app{i}", 10000 + i, tasks=[task(f"app{i}.{j}", f"agent{1 + j % 2}", 31000 + j)
                                              for j in range(3)]) for i in range(20)]
    shuffled = [{**a, "tasks": random.Random(i).sample(a["tasks"], 3)}
                for i, a in enumerate(random.Random(1).sample(apps, len(apps)))]
    assert cfg(apps) == cfg(shuffled)


def test_health_memory_keeps_a_backend_through_a_marathon_failover():
    unknown = app(health=HEALTH, tasks=[{**task(), "healthCheckResults": []}])
    assert "  server " not in cfg([unknown])
    result = render_result([unknown], CONFIG, health_memory={"nginx.1": True}, resolve=HOSTS.get)
    assert SERVER in result.text and result.health == {"nginx.1": True}


# --------------------------------------------------------------------------- haproxy -c


HAPROXY = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin")
needs_haproxy = pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed")


def haproxy_check(text: str, directory) -> subprocess.CompletedProcess:
    path = directory / "haproxy.cfg"
    path.write_text(text)
    return subprocess.run([HAPROXY, "-c", "-f", str(path)], capture_output=True, text=True,
                          timeout=30)


@pytest.fixture
def certificate(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    pem = tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=test.example.com", "-keyout", str(pem), "-out", str(pem)],
                   check=True, capture_output=True, timeout=60)
    return str(pem)


def rich_apps(cert: str) -> list[dict]:
    """Every label on 127.0.0.1 high ports: host and bridge networking, every health check."""
    ports = lambda *p: [{"port": n} for n in p]  # noqa: E731
    hc = HEALTH[0]
    return [
        {**app("/web", 21000, health=[hc], tasks=[task("web.1", port=31000),
                                                  task("web.2", "agent2", 31001)],
               HAPROXY_0_VHOST="web.example.com,www.example.com", HAPROXY_0_PATH="-i /api /v2",
               HAPROXY_0_AUTH="realm:admin:$5$salt$Jw0Hm3ZJcmd9hPpWnW5RdvBXW9l8Q5hZAaG2s8g2Uw4",
               HAPROXY_0_STICKY="true", HAPROXY_0_REDIRECT_TO_HTTPS="true",
               HAPROXY_0_USE_HSTS="true", HAPROXY_0_BACKEND_WEIGHT="3",
               HAPROXY_0_HTTP_BACKEND_PROXYPASS_PATH="/api",
               HAPROXY_0_HTTP_BACKEND_REVPROXY_PATH="/root",
               HAPROXY_0_HTTP_BACKEND_REDIR="/home",
               HAPROXY_0_BACKEND_NETWORK_ALLOWED_ACL="127.0.0.0/8 10.0.0.0/8",
               HAPROXY_1_VHOST="admin.example.com", HAPROXY_1_SSL_CERT=cert,
               HAPROXY_1_BIND_OPTIONS="ssl-min-ver TLSv1.2", HAPROXY_1_BALANCE="leastconn",
               HAPROXY_1_BACKEND_HEALTHCHECK_PORT_INDEX="0"),
         "portDefinitions": ports(21000, 21001),
         "tasks": [{**task("web.1"), "ports": [31000, 31100]},
                   {**task("web.2", "agent2"), "ports": [31001, 31101]}]},
        app("/db", 21002, health=[{**hc, "protocol": "TCP", "port": 5432}],
            HAPROXY_0_MODE="tcp", HAPROXY_0_BALANCE="source", HAPROXY_0_BIND_ADDR="127.0.0.1",
            HAPROXY_0_BACKEND_NETWORK_ALLOWED_ACL="127.0.0.1",
            HAPROXY_0_FRONTEND_HEAD="\nfrontend {backend}\n  bind {bindAddr}:{servicePort}\n"
                                    "  mode {mode}\n  timeout client 1h\n"),
        app("/jobs/worker", 21003, health=[{"protocol": "COMMAND", "command": {"value": "true"}}],
            HAPROXY_0_PORT="21004", HAPROXY_0_BACKEND_HEAD="\nbackend {backend}\n  balance "
            "{balance}\n  mode {mode}\n  timeout server 5m\n"),
        {"id": "/pywebserver", "labels": {"HAPROXY_GROUP": "external",
                                          "HAPROXY_0_VHOST": "py.example.com"},
         "container": {"docker": {"image": "python:3"}, "portMappings": [
             {"containerPort": 8080, "servicePort": 21005}]},
         "networks": [{"mode": "container/bridge"}], "portDefinitions": [],
         "healthChecks": [{**hc, "protocol": "MESOS_HTTP"}],
         "tasks": [{**task("py.1", "1.1.1.1", 31500)}]},
    ]


def rich_config(tmp_path, cert: str) -> RenderConfig:
    return RenderConfig(bind_addr="127.0.0.1", http_port=20080, https_port=20443,
                        appid_port=20091, stats_port=20090, ssl_certs=(cert,),
                        stats_socket=str(tmp_path / "haproxy.sock"),
                        server_state_file=str(tmp_path / "state"), api_address="127.0.0.1:20123")


@needs_haproxy
def test_haproxy_accepts_a_config_with_every_label(tmp_path, certificate):
    result = render_result(rich_apps(certificate), rich_config(tmp_path, certificate),
                           resolve=HOSTS.get)
    assert result.skipped == {}
    assert len(result.services) == 5
    check = haproxy_check(result.text, tmp_path)
    assert check.returncode == 0, check.stderr + result.text


@needs_haproxy
@pytest.mark.parametrize("label, value", [
    ("HAPROXY_0_BALANCE", "no-such-algo"),            # well-formed, but no such algorithm
    ("HAPROXY_0_BIND_OPTIONS", "no-such-bind-option"),  # unknown bind keyword
    ("HAPROXY_0_PATH", "-x /api"),                    # `path_beg -x`: unknown ACL flag
    ("HAPROXY_0_BACKEND_HTTP_OPTIONS", "  option no-such-option\n"),   # template: any text
])
def test_haproxy_refuses_what_the_renderer_cannot_judge(tmp_path, certificate, label, value):
    """The daemon's search for the app that breaks the config has these to work on."""
    apps = rich_apps(certificate)
    apps[0] = {**apps[0], "labels": {**apps[0]["labels"], label: value}}
    result = render_result(apps, rich_config(tmp_path, certificate), resolve=HOSTS.get)
    assert result.skipped == {}
    assert haproxy_check(result.text, tmp_path).returncode != 0
