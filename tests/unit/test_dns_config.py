"""Mesos-DNS's config.json (reference mesos-dns.md §6): case-insensitive keys, defaults, checks."""
from __future__ import annotations

import json

import pytest

from meseta.dns.config import ConfigError, DnsConfig, load_config

MASTERS = {"masters": ["10.0.0.1:5050"]}


def test_defaults_are_mesos_dns_defaults():
    config = load_config(MASTERS)
    assert (config.domain, config.ttl, config.refresh_seconds, config.port, config.http_port) == (
        "mesos", 60, 60, 53, 8123)
    assert (config.listener, config.http_listener, config.resolvers) == (
        "0.0.0.0", "0.0.0.0", ("8.8.8.8",))
    assert config.ip_sources == ("netinfo", "mesos", "host")
    assert (config.soa_mname, config.soa_rname) == ("ns1.mesos.", "root.ns1.mesos.")
    assert (config.soa_refresh, config.soa_retry, config.soa_expire, config.soa_minttl) == (
        60, 600, 86400, 60)
    assert (config.timeout, config.state_timeout_seconds, config.zk_detection_timeout) == (
        5, 300, 30)
    assert config.srv_record_default_weight == 1 and config.zone_resolvers == {}
    assert config.enforce_rfc952 is False
    assert all((config.recurse_on, config.external_on, config.dns_on, config.http_on,
                config.set_truncate_bit, config.enumeration_on))
    assert not config.mesos_https_on and config.mesos_authentication == ""
    assert DnsConfig().masters == () and DnsConfig().zk == ""


def test_keys_are_case_insensitive_as_go_decodes_them(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({
        "zk": "zk://10.0.0.1:2181/mesos", "MASTERS": ["10.0.0.1:5050"], "refreshSeconds": 5,
        "TTL": 30, "Domain": "Cluster.Example", "PORT": 8053, "httpport": 8124,
        "httpon": False, "DNSON": True, "externalon": False, "recurseon": False,
        "soamname": "ns2.cluster.example", "SOARNAME": "admin@cluster.example",
        "ipsources": ["host"], "enforcerfc952": True, "ZoneResolvers": {"corp": ["10.9.9.9"]}}))
    config = load_config(path)
    assert config.zk == "zk://10.0.0.1:2181/mesos" and config.masters == ("10.0.0.1:5050",)
    assert (config.refresh_seconds, config.ttl, config.port, config.http_port) == (5, 30, 8053,
                                                                                   8124)
    assert config.domain == "cluster.example"                   # lower-cased
    assert (config.http_on, config.dns_on, config.external_on, config.recurse_on) == (
        False, True, False, False)
    assert config.soa_mname == "ns2.cluster.example."           # made absolute
    assert config.soa_rname == "admin.cluster.example."         # '@' becomes '.'
    assert config.ip_sources == ("host",) and config.enforce_rfc952
    assert config.zone_resolvers == {"corp": ("10.9.9.9",)}
    assert config.file == str(path)


def test_overrides_win_and_may_use_field_names():
    config = load_config({"masters": ["10.0.0.1:5050"], "port": 53}, {"Port": 8053,
                                                                      "http_port": 9000})
    assert (config.port, config.http_port) == (8053, 9000)


def test_to_json_uses_go_field_names_and_withholds_the_secret():
    config = load_config({**MASTERS, "mesosAuthentication": "basic",
                          "mesosCredentials": {"principal": "dns", "secret": "s3cret"}})
    body = config.to_json()
    assert body["HttpPort"] == 8123 and body["DnsOn"] is True and body["IPSources"] == [
        "netinfo", "mesos", "host"]
    assert body["MesosCredentials"] == {"principal": "dns", "secret": ""}
    json.dumps(body)


def test_empty_resolvers_fall_back_to_resolv_conf(tmp_path):
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("search example\nnameserver 127.0.0.53\nnameserver 10.0.0.2\n"
                      "nameserver 2001:db8::53\n")
    config = load_config({**MASTERS, "resolvers": []}, resolv_conf=str(resolv))
    assert config.resolvers == ("10.0.0.2", "2001:db8::53")
    quiet = load_config({**MASTERS, "resolvers": [], "externalon": False},
                        resolv_conf=str(resolv))
    assert quiet.resolvers == ()


@pytest.mark.parametrize("raw, message", [
    ({}, "one of 'zk' or 'masters' is required"),
    ({**MASTERS, "htpport": 1}, "unknown key 'htpport' (did you mean 'HttpPort'?)"),
    ({**MASTERS, "ttl": 1, "TTL": 2}, "are the same key"),
    ({**MASTERS, "ttl": "60"}, "TTL must be an integer"),
    ({**MASTERS, "ttl": True}, "TTL must be an integer"),
    ({**MASTERS, "httpon": "yes"}, "HttpOn must be true or false"),
    ({**MASTERS, "domain": "bad_domain"}, "not a valid DNS domain"),
    ({**MASTERS, "port": 70000}, "Port must be between 1 and 65535"),
    ({**MASTERS, "refreshSeconds": 0}, "RefreshSeconds must be positive"),
    ({**MASTERS, "dnson": False, "httpon": False}, "at least one of DnsOn and HttpOn"),
    ({**MASTERS, "IPSources": []}, "IPSources must not be empty"),
    ({**MASTERS, "IPSources": ["rkt"]}, "unknown source 'rkt'"),
    ({**MASTERS, "IPSources": ["host", "host"]}, "must not repeat"),
    ({"masters": ["10.0.0.1"]}, "'10.0.0.1' is not host:port"),
    ({"masters": ["10.0.0.1:5050", "10.0.0.1:5050"]}, "duplicate master"),
    ({"masters": ["[2001:db8::1]:5050", "[2001:db8:0::1]:5050"]}, "duplicate master"),
    ({"masters": "10.0.0.1:5050"}, "Masters must be a list of strings"),
    ({**MASTERS, "resolvers": ["dns.example"]}, "Resolvers"),
    ({**MASTERS, "listener": "localhost"}, "Listener: 'localhost' is not an IP address"),
    ({**MASTERS, "zoneResolvers": {"mesos": ["10.0.0.2"]}}, "overlaps the Mesos domain"),
    ({**MASTERS, "zoneResolvers": {"a.mesos": ["10.0.0.2"]}}, "overlaps the Mesos domain"),
    ({**MASTERS, "zoneResolvers": {"corp": []}}, "has no resolvers"),
    ({"zk": "10.0.0.1:2181"}, "Zk must look like zk://"),
    ({**MASTERS, "mesosAuthentication": "kerberos"}, "MesosAuthentication must be one of"),
])
def test_invalid_configs_say_why(raw, message):
    with pytest.raises(ConfigError) as error:
        load_config(raw)
    assert message in str(error.value)


def test_unreadable_or_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(bad)
    bad.write_text("[]")
    with pytest.raises(ConfigError, match="must be a JSON object"):
        load_config(bad)


def test_resolvers_may_carry_a_port():
    config = load_config({**MASTERS, "resolvers": ["10.0.0.2:5353", "[2001:db8::53]:53",
                                                   "2001:db8::54"]})
    assert config.resolvers == ("10.0.0.2:5353", "[2001:db8::53]:53", "2001:db8::54")
