"""Mesos-DNS's record generation as a pure function: master state -> RecordSet.

Follows upstream `records/generator.go` `InsertState` rule for rule and in its order (reference
mesos-dns.md §4): frameworks, slaves, the listener (SOA mname), masters, tasks. Records are sets
(a duplicate name/value pair is dropped), names are absolute and end in `.`, SRV values are
`(target, port)`. The order of insertion is kept: it is the order of `/v1/enumerate`.

    rs = records(state, DnsConfig(masters=("10.0.0.1:5050",)))
    rs.a["web-product.marathon.mesos."]                  # ("10.0.0.5",)
    rs.srv["_web-product._tcp.marathon.mesos."]
        # (("web-product-ab1cd-s1.marathon.slave.mesos.", 31000),)

Where upstream touches the host (resolving a framework's or agent's host name, listing the
interfaces for listener 0.0.0.0) the generator asks a `Lookup`; the default answers only for IP
literals, so it stays pure and fast. Deliberate differences, all for names upstream cannot serve:
an unresolvable agent host gives no A value (upstream stores the sanitised name as an "A", #509);
an empty task or framework label gives no records instead of names with empty labels.
"""
from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence

from meseta.dns.config import DnsConfig
from meseta.dns.labels import LabelFunc, domain_frag, label_func

A, AAAA, SRV = "A", "AAAA", "SRV"
TASK_RUNNING = "TASK_RUNNING"
DOCKER_IP_LABEL = "Docker.NetworkSettings.IPAddress"
MESOS_IP_LABEL = "MesosContainerizer.NetworkSettings.IPAddress"
PROTOCOLS = ("tcp", "udp")              # a port with no protocol is published as both
_ZBASE32 = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567",
                           b"ybndrfg8ejkmcpqxot1uwisza345h769")


# --------------------------------------------------------------------------- the result


@dataclass(frozen=True)
class EnumTask:
    name: str                           # the task's own name, unsanitised
    id: str
    records: tuple[tuple[str, str, str], ...]   # (name, "ip" or "target:port", rtype)


@dataclass(frozen=True)
class EnumFramework:
    name: str
    tasks: tuple[EnumTask, ...]


@dataclass(frozen=True)
class RecordSet:
    """Every record of one generation. Names are absolute (trailing dot) and lower-case, except
    upstream's legacy records under a raw DiscoveryInfo name, which are kept as given."""
    domain: str                                         # e.g. "mesos" (no dots at the ends)
    a: Mapping[str, tuple[str, ...]]                    # fqdn -> IPv4 addresses
    aaaa: Mapping[str, tuple[str, ...]]                 # fqdn -> IPv6 addresses
    srv: Mapping[str, tuple[tuple[str, int], ...]]      # fqdn -> (target fqdn, port)
    frameworks: tuple[EnumFramework, ...] = ()          # task records by framework, for enumerate

    def names(self) -> set[str]:
        """Every fqdn that has any record."""
        return set(self.a) | set(self.aaaa) | set(self.srv)

    def to_enumerate(self) -> dict[str, Any]:
        """The `/v1/enumerate` body (reference §7): every framework, its task records only."""
        return {"frameworks": [
            {"tasks": [{"name": task.name, "id": task.id,
                        "records": [{"name": name, "host": host, "rtype": rtype}
                                    for name, host, rtype in task.records]}
                       for task in framework.tasks],
             "name": framework.name}
            for framework in self.frameworks]}

    def to_axfr_records(self) -> dict[str, dict[str, list[str]]]:
        """The `Records` member of `/v1/axfr`: SRV values as `target:port`."""
        return {"SRVs": {name: [f"{target}:{port}" for target, port in values]
                         for name, values in self.srv.items()},
                "As": {name: list(values) for name, values in self.a.items()},
                "AAAAs": {name: list(values) for name, values in self.aaaa.items()}}

    def hosts(self, name: str) -> list[dict[str, str]]:
        """`/v1/hosts/{host}`: its A then AAAA values; `[{"host": "", "ip": ""}]` if none."""
        fqdn = query_name(name)
        found = [{"host": fqdn, "ip": ip}
                 for ip in (*self.a.get(fqdn, ()), *self.aaaa.get(fqdn, ()))]
        return found or [{"host": "", "ip": ""}]

    def services(self, name: str) -> list[dict[str, str]]:
        """`/v1/services/{service}`: per SRV target its first A (`""` if it has none), plus an
        entry with its first AAAA if it has one; one all-empty entry if there is no SRV."""
        found = []
        for target, port in self.srv.get(query_name(name), ()):
            entry = {"service": name, "host": target, "ip": "", "port": str(port)}
            found.append({**entry, "ip": next(iter(self.a.get(target, ())), "")})
            if target in self.aaaa:
                found.append({**entry, "ip": self.aaaa[target][0]})
        return found or [{"service": "", "host": "", "ip": "", "port": ""}]


EMPTY = RecordSet("mesos", {}, {}, {})


def query_name(name: str) -> str:
    """A name as Mesos-DNS looks it up: `.*` removed, lower-cased, absolute."""
    fqdn = name.replace(".*", "").lower()
    return fqdn if fqdn.endswith(".") else fqdn + "."


# --------------------------------------------------------------------------- host lookups


def literal_ips(host: str) -> tuple[str, ...]:
    """Resolve nothing: an IP literal is its own address, a host name has none."""
    return (host,) if _parse_ip(host) else ()


def no_interfaces() -> tuple[str, ...]:
    return ()


@dataclass(frozen=True)
class Lookup:
    """What generation asks of the host: a name's addresses, and the non-loopback interface
    addresses (the listener record when `listener` is 0.0.0.0)."""
    resolve: Callable[[str], Sequence[str]] = literal_ips
    interfaces: Callable[[], Sequence[str]] = no_interfaces


LITERAL = Lookup()


def system_lookup() -> Lookup:
    """The OS resolver (memoised for the life of the returned Lookup) and psutil's interfaces,
    as upstream uses. Build one per daemon: a name that does not resolve is asked only once."""
    import psutil

    known: dict[str, tuple[str, ...]] = {}

    def resolve(host: str) -> tuple[str, ...]:
        if host not in known:
            try:
                infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
            except (OSError, UnicodeError):
                infos = []
            known[host] = tuple(dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos))
        return known[host]

    def interfaces() -> tuple[str, ...]:
        found = []
        for addresses in psutil.net_if_addrs().values():
            for address in addresses:
                if address.family not in (socket.AF_INET, socket.AF_INET6):
                    continue
                ip = _parse_ip(address.address.split("%")[0])
                if ip and not ipaddress.ip_address(ip[0]).is_loopback:
                    found.append(ip[0])
        return tuple(dict.fromkeys(found))

    return Lookup(resolve, interfaces)


# --------------------------------------------------------------------------- generation


def records(state: Mapping[str, Any], config: DnsConfig, leader: Optional[str] = None,
            lookup: Lookup = LITERAL) -> RecordSet:
    """Every record Mesos-DNS makes from a `/master/state` body. `leader` (a `name@ip:port`
    pid) overrides the state's `leader`, as the detected leader does upstream."""
    gen = _Generator(config, lookup)
    gen.framework_records(state.get("frameworks") or ())
    slave_ips = gen.slave_records(state.get("slaves") or ())
    gen.listener_record()
    gen.master_records(state.get("leader", "") if leader is None else leader)
    enumerated = tuple(gen.task_records(state.get("frameworks") or (), slave_ips))
    return gen.result(enumerated)


class _Generator:
    """One generation's record sets (insertion-ordered) and the context every rule needs."""

    def __init__(self, config: DnsConfig, lookup: Lookup) -> None:
        self.config = config
        self.lookup = lookup
        self.spec: LabelFunc = label_func(config.enforce_rfc952)
        self.tail = f".{config.domain}."
        self.rrs: dict[str, dict[str, dict[str, None]]] = {A: {}, AAAA: {}, SRV: {}}
        self._ips: dict[str, tuple[tuple[str, str], ...]] = {}
        self._frags: dict[str, str] = {}

    def add(self, name: str, value: str, kind: str) -> bool:
        """Insert one record; False if the set already had it."""
        values = self.rrs[kind].setdefault(name, {})
        if value in values:
            return False
        values[value] = None
        return True

    def result(self, frameworks: tuple[EnumFramework, ...]) -> RecordSet:
        a, aaaa, srv = (self.rrs[kind] for kind in (A, AAAA, SRV))
        return RecordSet(
            self.config.domain,
            {name: tuple(values) for name, values in a.items()},
            {name: tuple(values) for name, values in aaaa.items()},
            {name: tuple(_split_target(value) for value in values)
             for name, values in srv.items()},
            frameworks)

    def ips(self, host: str) -> tuple[tuple[str, str], ...]:
        """(ip, A|AAAA) of a host, resolved once per generation."""
        if host not in self._ips:
            parsed = (_parse_ip(ip) for ip in self.lookup.resolve(host)) if host else ()
            self._ips[host] = tuple(dict.fromkeys(ip for ip in parsed if ip))
        return self._ips[host]

    def fragment(self, framework_name: str) -> str:
        if framework_name not in self._frags:
            self._frags[framework_name] = domain_frag(framework_name, self.spec)
        return self._frags[framework_name]

    # -- 1. frameworks: A `<fw>.<d>.`, SRV `_framework._tcp.<fw>.<d>.` when the pid has a port

    def framework_records(self, frameworks: Iterable[Mapping[str, Any]]) -> None:
        for framework in frameworks:
            fname = self.fragment(framework.get("name") or "")
            pid = _split_pid(framework.get("pid") or "")
            host, port = pid if pid else (framework.get("hostname") or "", "")
            if not fname:
                continue
            fqdn = fname + self.tail
            for ip, kind in self.ips(host):
                self.add(fqdn, ip, kind)
                if port:
                    self.add("_framework._tcp." + fqdn, f"{fqdn}:{port}", SRV)

    # -- 2. slaves: A `slave.<d>.`, SRV `_slave._tcp.<d>.`; returns slave id -> its IPs

    def slave_records(self, slaves: Iterable[Mapping[str, Any]]
                      ) -> dict[str, tuple[tuple[str, str], ...]]:
        slave_ips: dict[str, tuple[tuple[str, str], ...]] = {}
        fqdn = "slave" + self.tail
        for slave in slaves:
            pid = _split_pid(slave.get("pid") or "")
            if pid is None:
                continue
            host, port = pid
            ips = self.ips(host)
            for ip, kind in ips:
                self.add(fqdn, ip, kind)
                self.add("_slave._tcp" + self.tail, f"{fqdn}:{port}", SRV)
            slave_ips[slave.get("id", "")] = ips
        return slave_ips

    # -- 3. the name server's own name (SOAMname) at the listener address

    def listener_record(self) -> None:
        ns, listener = self.config.soa_mname, self.config.listener
        if not ns:
            return
        addresses = self.lookup.interfaces() if listener == "0.0.0.0" else (listener,)
        for ip, kind in filter(None, map(_parse_ip, addresses)):
            self.add(ns, ip, kind)

    # -- 4. masters: leader, master, masterN, _leader._tcp/_udp

    def master_records(self, leader: str) -> None:
        parts = leader.split("@")
        address = parts[1] if len(parts) >= 2 else ""
        hostport = _split_host_port(address)
        if hostport is None:
            return
        host, port = hostport
        leader_ips = self.ips(host)
        for ip, kind in leader_ips:
            self.add("leader" + self.tail, ip, kind)
            self.add("master" + self.tail, ip, kind)
        for proto in PROTOCOLS:
            self.add(f"_leader._{proto}{self.tail}", f"leader{self.tail}:{port}", SRV)
        # masterN follow the configured list; the leader takes the next index if absent from it.
        index, leader_listed = 0, False
        for master in self.config.masters:
            master_hostport = _split_host_port(master)
            if master_hostport is None:
                continue
            ips = self.ips(master_hostport[0])
            if master != address:
                added = [self.add("master" + self.tail, ip, kind) for ip, kind in ips]
                if not any(added):
                    continue                            # a duplicate master
            elif leader_listed:
                continue                                # the leader listed twice
            for ip, kind in ips:
                self.add(f"master{index}{self.tail}", ip, kind)
            index += 1
            leader_listed = leader_listed or master == address
        if not leader_listed:
            for ip, kind in leader_ips:
                self.add(f"master{index}{self.tail}", ip, kind)

    # -- 5. tasks: RUNNING tasks on known slaves

    def task_records(self, frameworks: Iterable[Mapping[str, Any]],
                     slave_ips: Mapping[str, tuple[tuple[str, str], ...]]
                     ) -> Iterator[EnumFramework]:
        for framework in frameworks:
            fname = self.fragment(framework.get("name") or "")
            tasks = []
            for task in framework.get("tasks") or ():
                if task.get("state") != TASK_RUNNING or task.get("slave_id") not in slave_ips:
                    continue
                out: list[tuple[str, str, str]] = []
                if fname:
                    self.task_record(task, fname, slave_ips[task["slave_id"]], out)
                tasks.append(EnumTask(task.get("name", ""), task.get("id", ""), tuple(out)))
            yield EnumFramework(framework.get("name", ""), tuple(tasks))

    def task_record(self, task: Mapping[str, Any], fname: str,
                    slave_ips: tuple[tuple[str, str], ...], out: list) -> None:
        task_ips = self.task_ips(task, slave_ips)
        suffix = f"-{hash_string(task.get('id', ''))}-{slave_id_tail(task['slave_id'])}.{fname}"
        discovery = task.get("discovery") or {}
        di_name = discovery.get("name") or ""
        ports = parse_ports((task.get("resources") or {}).get("ports") or "")
        # With DiscoveryInfo everything is made twice: under the raw name (upstream's legacy
        # records) and under the sanitised one.
        names = (di_name, self.spec(di_name)) if di_name else (self.spec(task.get("name", "")),)
        for name in names:
            if name:
                context = _TaskContext(name, name + suffix, fname, task_ips, slave_ips)
                self.context_records(context, ports, discovery if di_name else None, out)

    def context_records(self, ctx: _TaskContext, ports: Sequence[int],
                        discovery: Optional[Mapping[str, Any]], out: list) -> None:
        tail, fname = self.tail, ctx.fname
        arec = f"{ctx.name}.{fname}"
        for ip, kind in ctx.task_ips:
            self.add_task(arec + tail, ip, kind, out)
            self.add_task(ctx.canonical + tail, ip, kind, out)
        for ip, kind in ctx.slave_ips:
            self.add_task(f"{arec}.slave{tail}", ip, kind, out)
            self.add_task(f"{ctx.canonical}.slave{tail}", ip, kind, out)
        # Agent ports: under `<fw>.slave`, and also under `<fw>` when there is no DiscoveryInfo.
        slave_target = f"{ctx.canonical}.slave{tail}"
        subdomains = (".slave",) if discovery is not None else (".slave", "")
        for port in ports:
            for subdomain in subdomains:
                for proto in PROTOCOLS:
                    self.add_task(f"_{ctx.name}._{proto}.{fname}{subdomain}{tail}",
                                  f"{slave_target}:{port}", SRV, out)
        if discovery is None:
            return
        # DiscoveryInfo ports: under `<fw>`, targeting the task's own name, named ports twice.
        for port in ((discovery.get("ports") or {}).get("ports") or ()):
            protocol = port.get("protocol") or ""
            protos = (self.spec(protocol),) if protocol else PROTOCOLS
            names = [f"_{ctx.name}._{proto}.{fname}" for proto in protos]
            if port.get("name"):
                names += [f"_{self.spec(port['name'])}.{name}" for name in names]
            target = f"{ctx.canonical}{tail}:{port.get('number', 0)}"
            for name in names:
                self.add_task(name + tail, target, SRV, out)

    def add_task(self, name: str, value: str, kind: str, out: list) -> None:
        """A task record; enumerated under the task only if it was new to the whole set."""
        if self.add(name, value, kind):
            out.append((name, value, kind))

    def task_ips(self, task: Mapping[str, Any], slave_ips: tuple[tuple[str, str], ...]
                 ) -> tuple[tuple[str, str], ...]:
        """The IPs of the first source in `IPSources` that yields any (§4)."""
        status = _latest_running(task.get("statuses") or ())
        for source in self.config.ip_sources:
            if source == "host":
                found = slave_ips
            elif status is None:
                continue
            else:
                texts = (_netinfo_ips(status) if source == "netinfo" else
                         _label_values(status, DOCKER_IP_LABEL if source == "docker"
                                       else MESOS_IP_LABEL))
                found = tuple(ip for ip in map(_parse_ip, texts) if ip)
            if found:
                return found
        return ()


@dataclass(frozen=True)
class _TaskContext:
    name: str                           # the task's label (or DiscoveryInfo name)
    canonical: str                      # <name>-<hash>-<slave tail>.<fw>
    fname: str
    task_ips: tuple[tuple[str, str], ...]
    slave_ips: tuple[tuple[str, str], ...]


# --------------------------------------------------------------------------- parsing helpers


def hash_string(text: str) -> str:
    """The first 5 chars of zbase32(sha1(text)), the id part of canonical task names."""
    digest = hashlib.sha1(text.encode()).digest()
    return base64.b32encode(digest[:5]).translate(_ZBASE32)[:5].decode()


def slave_id_tail(slave_id: str) -> str:
    return slave_id.rsplit("-", 1)[-1].lower()


def parse_ports(text: str) -> tuple[int, ...]:
    """`"[31354-31354, 31355-31355]"` -> (31354, 31355). Single ports (`"[80]"`) are allowed."""
    inside = text.split("[", 1)[1].split("]", 1)[0] if "[" in text else text
    ports: list[int] = []
    for item in inside.split(","):
        bounds = item.strip().split("-")
        if len(bounds) in (1, 2) and all(bound.strip().isdigit() for bound in bounds):
            ports.extend(range(int(bounds[0]), int(bounds[-1]) + 1))
    return tuple(ports)


def _parse_ip(text: str) -> Optional[tuple[str, str]]:
    """(canonical text, A|AAAA) as Go's net.ParseIP sees it (IPv4-mapped IPv6 is IPv4)."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if ip.version == 6:
        if ip.scope_id is not None:                     # `fe80::1%eth0` is no ParseIP address
            return None
        ip = ip.ipv4_mapped or ip
    return str(ip), A if ip.version == 4 else AAAA


_PID = re.compile(r"[^@]*@(.+)")


def _split_pid(pid: str) -> Optional[tuple[str, str]]:
    """`scheduler(1)@1.2.3.4:5050` -> ("1.2.3.4", "5050")."""
    match = _PID.fullmatch(pid)
    return _split_host_port(match.group(1)) if match else None


_HOST_PORT = re.compile(r"\[([^\[\]]*)\]:(\d+)|([^:\[\]]*):(\d+)")


def _split_host_port(text: str) -> Optional[tuple[str, str]]:
    match = _HOST_PORT.fullmatch(text)
    if not match:
        return None
    host = match.group(1) if match.group(1) is not None else match.group(3)
    return (host, match.group(2) or match.group(4)) if host else None


def _split_target(value: str) -> tuple[str, int]:
    target, _, port = value.rpartition(":")
    return target, int(port)


def _latest_running(statuses: Iterable[Mapping[str, Any]]) -> Optional[Mapping[str, Any]]:
    """The TASK_RUNNING status with the newest timestamp (the first of equals)."""
    latest, newest = None, -1.0
    for status in statuses:
        timestamp = status.get("timestamp") or 0.0
        if status.get("state") == TASK_RUNNING and timestamp > newest:
            latest, newest = status, timestamp
    return latest


def _netinfo_ips(status: Mapping[str, Any]) -> list[str]:
    found = []
    for info in (status.get("container_status") or {}).get("network_infos") or ():
        addresses = info.get("ip_addresses") or ()
        if addresses:
            found.extend(address.get("ip_address") or "" for address in addresses)
        else:
            found.append(info.get("ip_address") or "")     # the Mesos 0.25 shape
    return found


def _label_values(status: Mapping[str, Any], key: str) -> list[str]:
    labels = status.get("labels") or ()
    if isinstance(labels, Mapping):                     # protobuf-JSON `{"labels": [...]}`
        labels = labels.get("labels") or ()
    return [label.get("value") or "" for label in labels if label.get("key") == key]
