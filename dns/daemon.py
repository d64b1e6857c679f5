"""`meseta dns`: the Mesos-DNS daemon — follower, DNS server and HTTP API in one process.

    meseta dns --config config.json --port 8053 --masters 127.0.0.1:5050

    StateFollower --.records--> DnsServer (UDP+TCP `listener:port`)
                           \\-> HTTP API (`HTTPListener:httpport`: /v1/..., /health, /metrics)

Flags are config.json keys in any of Mesos-DNS's spellings (`--refreshSeconds`, `--httpport`,
`--http_port`); flags override the file. Lists are comma-separated (`--masters a:5050,b:5050`),
objects are JSON (`--zoneResolvers '{"consul": ["10.0.0.1"]}'`).

As Mesos-DNS, DNS answers start only after the first complete record set: until then the DNS
socket is not open (resolvers fall through to the next nameserver instead of caching NXDOMAIN),
and /health answers 503.
"""
from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, fields
from typing import Any, Optional, Sequence

from meseta import __version__
from meseta.dns import config as dns_config
from meseta.dns.answer import AnswerOptions
from meseta.dns.follower import FollowOptions, StateFollower
from meseta.dns.incremental import RecordBook
from meseta.http import HttpServer
from meseta.log import get_logger
from meseta.metrics import Registry

log = get_logger("meseta.dns")

VERSION = f"meseta-{__version__}"
MESOS_DNS_URL = "https://github.com/mesosphere/mesos-dns"
DAEMON_FLAGS = ("config", "log_level", "log_format", "first_build_timeout")


@dataclass(frozen=True)
class DaemonOptions:
    """What is not in config.json: how to run, and the ports tests pick (0 = a free port)."""
    log_level: str = "info"
    log_format: str = "auto"
    dns_port: Optional[int] = None           # None: config.port
    http_port: Optional[int] = None          # None: config.http_port
    first_build_timeout: float = 0.0         # > 0: start() waits that long for the first records


class DnsDaemon:
    def __init__(self, config: dns_config.DnsConfig, options: DaemonOptions = DaemonOptions()
                 ) -> None:
        from meseta.dns import records as dns_records
        self.config = config
        self.options = options
        lookup = dns_records.system_lookup()     # memoised host lookups, this daemon's own
        self.follower = StateFollower(
            FollowOptions(masters=tuple(config.masters), zk=config.zk,
                          refresh_seconds=float(config.refresh_seconds),
                          state_timeout=float(config.state_timeout_seconds)),
            lambda state, leader: RecordBook(state, config, leader, lookup),
            dns_records.EMPTY)
        self.metrics = Registry("meseta_dns")
        self.metrics.registry.register(_DnsCollector(self))
        self.server: Any = None
        self.http: Optional[HttpServer] = None
        self._serving = threading.Event()
        self._stopping = threading.Event()
        self._starter: Optional[threading.Thread] = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        from meseta.dns.http import create_app

        cfg = self.config
        if cfg.http_on:
            port = cfg.http_port if self.options.http_port is None else self.options.http_port
            self.http = HttpServer(create_app(self), cfg.http_listener, port, 8, "dns-http")
            self.http.start()
        self.follower.start()
        log.info("mesos-dns starting", version=VERSION, masters=",".join(cfg.masters),
                 zk=cfg.zk or None, domain=cfg.domain, http=self.http_url or None,
                 refresh_seconds=cfg.refresh_seconds, pid=os.getpid())
        if cfg.dns_on:
            # The DNS socket opens after the first build (Mesos-DNS's Ready()).
            if self.options.first_build_timeout > 0:
                self.follower.ready.wait(self.options.first_build_timeout)
            if self.follower.ready.is_set():
                self._start_dns()
            else:
                self._starter = threading.Thread(target=self._start_dns_when_ready,
                                                 name="dns-starter", daemon=True)
                self._starter.start()

    def stop(self) -> None:
        log.info("mesos-dns stopping")
        self._stopping.set()
        if self._starter is not None:
            self._starter.join(5)
        if self.server is not None:
            self.server.stop()
        if self.http is not None:
            self.http.stop()
        self.follower.stop()

    def _start_dns_when_ready(self) -> None:
        while not self._stopping.is_set():
            if self.follower.ready.wait(0.2):
                self._start_dns()
                return

    def _start_dns(self) -> None:
        from meseta.dns.server import DnsServer

        cfg = self.config
        port = cfg.port if self.options.dns_port is None else self.options.dns_port
        self.server = DnsServer(cfg.listener, port, self.get_records, self.answer_options(),
                                resolvers=cfg.resolvers, forward=cfg.external_on)
        try:
            self.server.start()
        except OSError as exc:
            log.error("cannot open the DNS port", listener=cfg.listener, port=port, reason=str(exc))
            raise
        self._serving.set()
        log.info("serving DNS", address=f"{cfg.listener}:{self.server.port}", domain=cfg.domain)

    def wait_serving(self, timeout: float) -> bool:
        return self._serving.wait(timeout)

    # -- reads (any thread) ---------------------------------------------------------------------

    def get_records(self) -> Any:
        return self.follower.records             # one attribute read: lock-free

    def answer_options(self) -> AnswerOptions:
        cfg = self.config
        return AnswerOptions(ttl=cfg.ttl, recurse_on=cfg.recurse_on, soa_mname=cfg.soa_mname,
                             soa_rname=cfg.soa_rname, soa_serial=int(time.time()),
                             soa_refresh=cfg.soa_refresh, soa_retry=cfg.soa_retry,
                             soa_expire=cfg.soa_expire, srv_weight=cfg.srv_record_default_weight,
                             set_truncate_bit=cfg.set_truncate_bit)

    @property
    def dns_port(self) -> int:
        return self.server.port if self.server is not None else 0

    @property
    def http_url(self) -> str:
        if self.http is None:
            return ""
        host = self.config.http_listener
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{self.http.port}"

    @property
    def dns_address(self) -> str:
        host = self.config.listener
        return f"{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{self.dns_port}"


class _DnsCollector:
    """/metrics, read fresh at every scrape from the follower's and the server's counters."""

    def __init__(self, daemon: DnsDaemon) -> None:
        self._daemon = daemon

    def describe(self) -> list:
        return []

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        daemon = self._daemon
        stats = daemon.follower.stats
        counters = daemon.server.counters if daemon.server is not None else {}
        queries = CounterMetricFamily("meseta_dns_queries", "DNS queries received")
        queries.add_metric([], counters.get("queries", 0))
        yield queries
        answers = CounterMetricFamily("meseta_dns_answers", "DNS replies by outcome", labels=["rcode"])
        for outcome in ("answered", "nxdomain", "forwarded", "refused", "servfail",
                        "malformed", "dropped"):
            answers.add_metric([outcome], counters.get(outcome, 0))
        yield answers
        records = daemon.get_records()
        count = GaugeMetricFamily("meseta_dns_records", "Records served, by type", labels=["type"])
        for rtype in ("a", "aaaa", "srv"):
            table = getattr(records, rtype, {})
            count.add_metric([rtype.upper()], sum(len(v) for v in table.values()))
        yield count
        age = GaugeMetricFamily("meseta_dns_last_refresh_age_seconds",
                                "Seconds since the record set was last rebuilt (-1: never)")
        age.add_metric([], time.time() - stats.last_refresh if stats.last_refresh else -1)
        yield age
        for name, doc, value in (
                ("events_followed", "Event-bus events received from the master", stats.events),
                ("resyncs", "Snapshots of /master/state taken by the bus follower", stats.resyncs),
                ("state_fetches", "GET /master/state requests", stats.fetches),
                ("state_fetch_errors", "Failed leader lookups or state fetches", stats.fetch_errors),
                ("rebuilds", "Record sets built", stats.rebuilds),
                ("local_updates", "Task changes applied without a fetch", stats.local_updates)):
            family = CounterMetricFamily(f"meseta_dns_{name}", doc)
            family.add_metric([], value)
            yield family
        build = GaugeMetricFamily("meseta_dns_last_build_seconds", "Time to build the last record set")
        build.add_metric([], stats.last_build_seconds)
        yield build


# ----------------------------------------------------------------------------- command line


_FIELD_TYPES = {f.name: f.default if not callable(f.default_factory) else f.default_factory()  # type: ignore[misc]
                for f in fields(dns_config.DnsConfig)}
_FLAG_NAMES = {**{go.lower(): name for go, name in dns_config.GO_NAMES.items()},
               **{name.replace("_", ""): name for name in dns_config.GO_NAMES.values()}}


def parse_args(argv: Sequence[str]) -> tuple[str, dict[str, Any], dict[str, str]]:
    """argv -> (config path, config overrides by DnsConfig field, daemon flags).

    `--name value`, `--name=value` and `-name=value` (Go's flag package) all work; a bare
    boolean flag means true."""
    path, overrides, daemon_flags = "", {}, {}
    args = list(argv)
    while args:
        arg = args.pop(0)
        if not arg.startswith("-"):
            raise dns_config.ConfigError(f"unexpected argument {arg!r}: flags look like --name=value")
        name, eq, value = arg.lstrip("-").partition("=")
        folded = name.lower().replace("_", "").replace("-", "")
        if folded in {flag.replace("_", "") for flag in DAEMON_FLAGS}:
            if not eq:
                value = _take_value(args, name)
            flag = next(f for f in DAEMON_FLAGS if f.replace("_", "") == folded)
            if flag == "config":
                path = value
            else:
                daemon_flags[flag] = value
            continue
        field_name = _FLAG_NAMES.get(folded)
        if field_name is None:
            raise dns_config.ConfigError(f"unknown flag -{name}: flags are config.json keys "
                                         "(e.g. --port, --masters, --refreshSeconds) or --config")
        default = _FIELD_TYPES[field_name]
        if not eq:
            value = "true" if isinstance(default, bool) and (not args or args[0].startswith("-")) \
                else _take_value(args, name)
        overrides[field_name] = _parse_value(field_name, default, value)
    return path, overrides, daemon_flags


def _take_value(args: list[str], name: str) -> str:
    if not args:
        raise dns_config.ConfigError(f"flag -{name} needs a value")
    return args.pop(0)


def _parse_value(name: str, default: Any, text: str) -> Any:
    try:
        if isinstance(default, bool):
            lowered = text.strip().lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                raise ValueError("use true or false")
            return lowered in ("true", "1", "yes", "on")
        if isinstance(default, int):
            return int(text)
        if isinstance(default, tuple):
            if text.strip().startswith("["):
                return tuple(json.loads(text))
            return tuple(part.strip() for part in text.split(",") if part.strip())
        if isinstance(default, dict):
            return json.loads(text)
    except ValueError as exc:
        raise dns_config.ConfigError(f"invalid value {text!r} for {name}: {exc}") from None
    return text


def load(argv: Sequence[str]) -> tuple[dns_config.DnsConfig, DaemonOptions]:
    path, overrides, flags = parse_args(argv)
    config = dns_config.load_config(path or None, overrides)
    options = DaemonOptions(log_level=flags.get("log_level", "info"),
                            log_format=flags.get("log_format", "auto"),
                            first_build_timeout=float(flags.get("first_build_timeout", 0) or 0))
    return config, options
