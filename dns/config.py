"""Mesos-DNS's configuration (reference mesos-dns.md §6): every `config.json` key, its default,
and the checks `SetConfig` makes.

Keys are matched case-insensitively, as Go's JSON decoder matches struct fields, so `httpport`,
`HttpPort` and `HTTPPORT` are one key; snake_case spellings of the field names (`http_port`)
are accepted too. Unknown keys are an error (Go silently ignores them, which hides typos).

    config = load_config("/etc/mesos-dns/config.json", {"port": 8053})
    config.domain, config.soa_mname         # "mesos", "ns1.mesos."
"""
from __future__ import annotations

import difflib
import ipaddress
import json
import os
import re
from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping, Optional, Union

IP_SOURCES = ("host", "mesos", "docker", "netinfo")
AUTH_MECHANISMS = ("", "basic", "iam")
RESOLV_CONF = "/etc/resolv.conf"
_DOMAIN = re.compile(r"^[a-zA-Z0-9-]+(\.[a-zA-Z0-9-]+)*$")


class ConfigError(ValueError):
    """A config.json that Mesos-DNS would refuse (or that we refuse to guess about)."""


@dataclass(frozen=True)
class DnsConfig:
    """The options of Mesos-DNS's `records.Config`, normalised as `SetConfig` leaves them.

    Constructing one directly normalises and checks every field; only the "zk or masters is
    required" rule is left to `load_config` (generating records needs neither).
    """
    zk: str = ""
    masters: tuple[str, ...] = ()
    zk_detection_timeout: int = 30
    refresh_seconds: int = 60
    state_timeout_seconds: int = 300
    ttl: int = 60
    domain: str = "mesos"
    port: int = 53
    listener: str = "0.0.0.0"
    http_listener: str = "0.0.0.0"
    http_port: int = 8123
    dns_on: bool = True
    http_on: bool = True
    external_on: bool = True
    resolvers: tuple[str, ...] = ("8.8.8.8",)
    zone_resolvers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    timeout: int = 5
    recurse_on: bool = True
    soa_mname: str = "ns1.mesos"
    soa_rname: str = "root.ns1.mesos"
    soa_refresh: int = 60
    soa_retry: int = 600
    soa_expire: int = 86400
    soa_minttl: int = 60                # parsed but unused: served SOAs use `ttl` (§5)
    srv_record_default_weight: int = 1
    ip_sources: tuple[str, ...] = ("netinfo", "mesos", "host")
    enforce_rfc952: bool = False
    set_truncate_bit: bool = True
    enumeration_on: bool = True
    mesos_https_on: bool = False
    ca_cert_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    mesos_authentication: str = ""
    mesos_credentials: Mapping[str, str] = field(default_factory=dict)
    iam_config_file: str = ""
    file: str = ""                      # where the config was read from, as Go's `File`

    def __post_init__(self) -> None:
        for name, value in _normalised(self).items():
            object.__setattr__(self, name, value)
        _validate(self)

    def to_json(self) -> dict[str, Any]:
        """The `/v1/config` body: Go's field names (§7). The credentials' secret is withheld."""
        out = {go_name: getattr(self, name) for go_name, name in GO_NAMES.items()}
        out.update({key: list(out[key]) for key in ("Masters", "Resolvers", "IPSources")})
        out["ZoneResolvers"] = {zone: list(rs) for zone, rs in self.zone_resolvers.items()}
        out["MesosCredentials"] = {"principal": self.mesos_credentials.get("principal", ""),
                                   "secret": ""}
        return out


# Go field name (the JSON key of `records.Config`) -> DnsConfig field. Lower-cased, these are
# the keys config.json may use in any case.
GO_NAMES: dict[str, str] = {
    "Zk": "zk", "Masters": "masters", "ZkDetectionTimeout": "zk_detection_timeout",
    "RefreshSeconds": "refresh_seconds", "StateTimeoutSeconds": "state_timeout_seconds",
    "TTL": "ttl", "Domain": "domain", "Port": "port", "Listener": "listener",
    "HTTPListener": "http_listener", "HttpPort": "http_port", "DnsOn": "dns_on",
    "HttpOn": "http_on", "ExternalOn": "external_on", "Resolvers": "resolvers",
    "ZoneResolvers": "zone_resolvers", "Timeout": "timeout", "RecurseOn": "recurse_on",
    "SOAMname": "soa_mname", "SOARname": "soa_rname", "SOARefresh": "soa_refresh",
    "SOARetry": "soa_retry", "SOAExpire": "soa_expire", "SOAMinttl": "soa_minttl",
    "SRVRecordDefaultWeight": "srv_record_default_weight", "IPSources": "ip_sources",
    "EnforceRFC952": "enforce_rfc952", "SetTruncateBit": "set_truncate_bit",
    "EnumerationOn": "enumeration_on", "MesosHTTPSOn": "mesos_https_on",
    "CACertFile": "ca_cert_file", "CertFile": "cert_file", "KeyFile": "key_file",
    "MesosAuthentication": "mesos_authentication", "MesosCredentials": "mesos_credentials",
    "IAMConfigFile": "iam_config_file", "File": "file",
}
_KEYS = {go.lower(): name for go, name in GO_NAMES.items()}
_KEYS.update({name.replace("_", ""): name for name in GO_NAMES.values()})


def _fold(key: str) -> str:
    return key.lower().replace("_", "")


# --------------------------------------------------------------------------- loading


def load_config(source: Union[str, os.PathLike, Mapping[str, Any], None] = None,
                overrides: Optional[Mapping[str, Any]] = None, *,
                resolv_conf: str = RESOLV_CONF) -> DnsConfig:
    """A checked DnsConfig from a config.json path (or an already-decoded dict) plus overrides.

    As Mesos-DNS: `zk` or `masters` is required, and empty `resolvers` with `externalon` means
    the non-loopback nameservers of `resolv_conf`.
    """
    path = ""
    if source is None:
        raw: Mapping[str, Any] = {}
    elif isinstance(source, Mapping):
        raw = source
    else:
        path = os.fspath(source)
        raw = _read_json(path)
    values = {"file": path} if path else {}
    values.update(_fields_of(raw, "config.json" if path else "config"))
    values.update(_fields_of(overrides or {}, "overrides"))
    config = DnsConfig(**values)
    if not config.zk and not config.masters:
        raise ConfigError("one of 'zk' or 'masters' is required")
    if config.external_on and not config.resolvers:
        config = replace(config, resolvers=_system_resolvers(resolv_conf))
    return config


def _read_json(path: str) -> Mapping[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            raw = json.load(handle)
    except OSError as error:
        raise ConfigError(f"cannot read config {path!r}: {error.strerror}") from None
    except ValueError as error:
        raise ConfigError(f"config {path!r} is not valid JSON: {error}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config {path!r} must be a JSON object")
    return raw


def _fields_of(raw: Mapping[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for key, value in raw.items():
        name = _KEYS.get(_fold(str(key)))
        if name is None:
            close = difflib.get_close_matches(_fold(str(key)), list(_KEYS), n=1)
            hint = f" (did you mean {_go_name(_KEYS[close[0]])!r}?)" if close else ""
            raise ConfigError(f"{where}: unknown key {key!r}{hint}")
        if name in spelled:
            raise ConfigError(f"{where}: {key!r} and {spelled[name]!r} are the same key")
        spelled[name] = str(key)
        out[name] = value
    return out


def _go_name(name: str) -> str:
    return next(go for go, field_name in GO_NAMES.items() if field_name == name)


def _system_resolvers(resolv_conf: str) -> tuple[str, ...]:
    """Non-loopback `nameserver` lines of resolv.conf (Mesos-DNS's fallback upstreams)."""
    try:
        with open(resolv_conf, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return ()
    found = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                if ipaddress.ip_address(parts[1].split("%")[0]).is_loopback:
                    continue
            except ValueError:
                continue
            found.append(parts[1])
    return tuple(found)


# --------------------------------------------------------------------------- checks


_INTS = {"zk_detection_timeout", "refresh_seconds", "state_timeout_seconds", "ttl", "port",
         "http_port", "timeout", "soa_refresh", "soa_retry", "soa_expire", "soa_minttl",
         "srv_record_default_weight"}
_BOOLS = {"dns_on", "http_on", "external_on", "recurse_on", "enforce_rfc952",
          "set_truncate_bit", "enumeration_on", "mesos_https_on"}
_LISTS = {"masters", "resolvers", "ip_sources"}


def _normalised(config: DnsConfig) -> dict[str, Any]:
    """Type checks and `SetConfig`'s rewriting: lists to tuples, the domain lower-cased, the
    SOA names made absolute (`@` in the Rname becomes `.`)."""
    out: dict[str, Any] = {}
    for f in fields(config):
        value, go = getattr(config, f.name), _go_name(f.name)
        if f.name in _INTS:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{go} must be an integer, not {value!r}")
        elif f.name in _BOOLS:
            if not isinstance(value, bool):
                raise ConfigError(f"{go} must be true or false, not {value!r}")
        elif f.name in _LISTS:
            out[f.name] = _strings(value, go)
        elif f.name == "zone_resolvers":
            if not isinstance(value, Mapping):
                raise ConfigError(f"ZoneResolvers must be an object, not {value!r}")
            out[f.name] = {str(zone): _strings(rs, f"ZoneResolvers[{zone!r}]")
                           for zone, rs in value.items()}
        elif f.name == "mesos_credentials":
            if not isinstance(value, Mapping):
                raise ConfigError(f"MesosCredentials must be an object, not {value!r}")
            out[f.name] = {str(k).lower(): str(v) for k, v in value.items()}
        elif not isinstance(value, str):
            raise ConfigError(f"{go} must be a string, not {value!r}")
    out["domain"] = config.domain.lower()
    out["soa_mname"] = config.soa_mname.rstrip(".") + "."
    out["soa_rname"] = config.soa_rname.replace("@", ".").rstrip(".") + "."
    return out


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)) \
            or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{what} must be a list of strings, not {value!r}")
    return tuple(value)


def _validate(config: DnsConfig) -> None:
    if not _DOMAIN.match(config.domain):
        raise ConfigError(f"Domain {config.domain!r} is not a valid DNS domain")
    for go in ("Port", "HttpPort"):
        port = getattr(config, GO_NAMES[go])
        if not 0 < port < 65536:
            raise ConfigError(f"{go} must be between 1 and 65535, not {port}")
    for go in ("RefreshSeconds", "Timeout", "StateTimeoutSeconds"):
        if getattr(config, GO_NAMES[go]) <= 0:
            raise ConfigError(f"{go} must be positive")
    for go in ("TTL", "ZkDetectionTimeout", "SRVRecordDefaultWeight"):
        if getattr(config, GO_NAMES[go]) < 0:
            raise ConfigError(f"{go} must not be negative")
    if not (config.dns_on or config.http_on):
        raise ConfigError("at least one of DnsOn and HttpOn must be true")
    _check_ip_sources(config.ip_sources)
    _check_masters(config.masters)
    for resolver in config.resolvers:
        _check_resolver(resolver, "Resolvers")
    _check_zones(config)
    for go in ("Listener", "HTTPListener"):
        _check_ip(getattr(config, GO_NAMES[go]), go)
    if config.zk and not config.zk.startswith("zk://"):
        raise ConfigError(f"Zk must look like zk://host:2181/mesos, not {config.zk!r}")
    if config.mesos_authentication not in AUTH_MECHANISMS:
        raise ConfigError(f"MesosAuthentication must be one of {AUTH_MECHANISMS}, "
                          f"not {config.mesos_authentication!r}")


def _check_ip_sources(sources: tuple[str, ...]) -> None:
    if not sources:
        raise ConfigError("IPSources must not be empty")
    for source in sources:
        if source not in IP_SOURCES:
            raise ConfigError(f"IPSources: unknown source {source!r} "
                              f"(allowed: {', '.join(IP_SOURCES)})")
    if len(set(sources)) != len(sources):
        raise ConfigError(f"IPSources must not repeat a source: {list(sources)}")


def _check_masters(masters: tuple[str, ...]) -> None:
    seen: set[str] = set()
    for master in masters:
        host, port = _split_host_port(master, "Masters")
        try:
            host = str(ipaddress.ip_address(host))      # as Go, IPv6 spellings are one master
        except ValueError:
            pass
        if (host, port) in seen:
            raise ConfigError(f"Masters: duplicate master {master!r}")
        seen.add((host, port))


def _split_host_port(text: str, what: str) -> tuple[str, str]:
    """Go's net.SplitHostPort: `host:port` or `[v6]:port`."""
    match = re.fullmatch(r"\[([^\[\]]+)\]:(\d+)|([^:\[\]]+):(\d+)", text)
    if not match:
        raise ConfigError(f"{what}: {text!r} is not host:port")
    host = match.group(1) or match.group(3)
    return host, match.group(2) or match.group(4)


def _check_ip(text: str, what: str) -> None:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise ConfigError(f"{what}: {text!r} is not an IP address") from None


def _check_resolver(text: str, what: str) -> None:
    """An upstream is `ip` or `ip:port` (`[v6]:port`)."""
    try:
        ipaddress.ip_address(text)
        return
    except ValueError:
        pass
    host, _ = _split_host_port(text, what)
    _check_ip(host, what)


def _check_zones(config: DnsConfig) -> None:
    domain = config.domain
    for zone, resolvers in config.zone_resolvers.items():
        name = zone.lower().strip(".")
        if not name or not _DOMAIN.match(name):
            raise ConfigError(f"ZoneResolvers: {zone!r} is not a valid zone")
        if name == domain or name.endswith("." + domain) or domain.endswith("." + name):
            raise ConfigError(f"ZoneResolvers: zone {zone!r} overlaps the Mesos domain "
                              f"{domain!r}")
        if not resolvers:
            raise ConfigError(f"ZoneResolvers: zone {zone!r} has no resolvers")
        for resolver in resolvers:
            _check_resolver(resolver, f"ZoneResolvers[{zone!r}]")
