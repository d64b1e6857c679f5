"""An app's ports: host ports taken from an offer, service ports assigned across the cluster.

Reference marathon.md §2.3. Three kinds of port:
- host port: taken from the offer's `ports` ranges, told to the task as $PORT0..n, $PORT,
  $PORTS and $PORT_<NAME> (`match_ports`, `port_env`);
- container port: inside a bridged container; nothing to allocate here;
- service port: a cluster-wide well-known number for load balancers; `0` in an app definition
  is replaced by a free port of [local_port_min, local_port_max) (`assign_service_ports`).

Host ports requested by an app, one entry per port definition or port mapping:
    None  no host port (a container-network mapping without hostPort)
    0     any port of the offer
    n     exactly port n (requirePorts in host networking, or a fixed hostPort)

    >>> offer = Resources.parse("ports:[31000-31010]")
    >>> match_ports(offer, host_port_requests([PortDefinition(8080), PortDefinition(0)])).host_ports
    (31000, 31001)
"""

from __future__ import annotations

import bisect
import itertools
import random
import re
from dataclasses import dataclass, field
from typing import Iterator, Mapping, Sequence

from meseta.resources import EMPTY, Resources

__all__ = [
    "LOCAL_PORT_MIN", "LOCAL_PORT_MAX", "PortDefinition", "PortMapping", "PortMatch",
    "PortRangeExhausted", "host_port_requests", "match_ports", "port_env", "assign_service_ports",
]

LOCAL_PORT_MIN = 10000  # Marathon's --local_port_min
LOCAL_PORT_MAX = 20000  # Marathon's --local_port_max (exclusive, as Marathon's Range)

Ranges = tuple[tuple[int, int], ...]
HostPortRequest = int | None


@dataclass(frozen=True, slots=True)
class PortDefinition:
    """`portDefinitions[]` (host networking): `port` is the service port."""
    port: int = 0
    name: str | None = None
    protocol: str = "tcp"


@dataclass(frozen=True, slots=True)
class PortMapping:
    """`container.portMappings[]` (bridge or container networking)."""
    container_port: int = 0
    host_port: int | None = 0
    service_port: int = 0
    name: str | None = None
    protocol: str = "tcp"


def host_port_requests(port_definitions: Sequence[PortDefinition] = (),
                       require_ports: bool = False,
                       port_mappings: Sequence[PortMapping] | None = None
                       ) -> tuple[HostPortRequest, ...]:
    """The host ports an app asks of an offer, one per definition (host) or mapping (bridge)."""
    if port_mappings is not None:
        return tuple(m.host_port for m in port_mappings)
    return tuple(d.port if require_ports else 0 for d in port_definitions)


# --------------------------------------------------------------------------- host ports

@dataclass(frozen=True, slots=True)
class PortMatch:
    """The host ports picked from an offer, aligned with the requests; or why there are none."""
    host_ports: tuple[int | None, ...] = ()
    resources: Resources = field(default_factory=lambda: EMPTY)  # `ports` to take from the offer
    reason: str = ""

    def __bool__(self) -> bool:
        return not self.reason


def match_ports(offered: Resources, requests: Sequence[HostPortRequest],
                rng: random.Random | None = None) -> PortMatch:
    """Pick host ports from the offer's `ports` for the app's requests.

    Fixed ports first (each must be offered, none twice), then every `0` from what is left:
    the lowest ports, or random ones when `rng` is given (as Marathon does, so a port a task
    just freed is not handed straight to the next one).
    """
    ranges = offered.ports()
    fixed = [p for p in requests if p]
    reason = _check_fixed(ranges, fixed)
    if reason:
        return PortMatch(reason=reason)
    free = _subtract(ranges, sorted(set(fixed)))
    dynamic = sum(1 for p in requests if p == 0)
    available = sum(end - begin + 1 for begin, end in free)
    if dynamic > available:
        more = "more " if fixed else ""
        return PortMatch(reason=f"ports: needs {dynamic} {more}ports, the offer has {available} "
                                f"free in {_show(ranges)}")
    picked = iter(_pick(free, dynamic, rng))
    host_ports = tuple(next(picked) if p == 0 else p for p in requests)
    taken = [(p, p) for p in host_ports if p is not None]
    return PortMatch(host_ports, Resources(ranges={"ports": taken}) if taken else EMPTY)


def _check_fixed(ranges: Ranges, fixed: list[int]) -> str:
    repeated = sorted({p for p in fixed if fixed.count(p) > 1})
    if repeated:
        return f"ports: port {repeated[0]} is requested twice"
    missing = [p for p in fixed if not _contains(ranges, p)]
    if missing:
        listed = ", ".join(map(str, missing))
        plural = "s" if len(missing) > 1 else ""
        return f"ports: port{plural} {listed} not in the offer's {_show(ranges)}"
    return ""


def _show(ranges: Ranges) -> str:
    return "[" + ",".join(f"{b}-{e}" for b, e in ranges) + "]" if ranges else "no ports"


def _contains(ranges: Ranges, port: int) -> bool:
    i = bisect.bisect_right(ranges, (port, float("inf"))) - 1
    return i >= 0 and ranges[i][0] <= port <= ranges[i][1]


def _subtract(ranges: Ranges, ports: list[int]) -> Ranges:
    """Sorted ranges minus sorted ports."""
    out = []
    for begin, end in ranges:
        for port in ports:
            if begin <= port <= end:
                if port > begin:
                    out.append((begin, port - 1))
                begin = port + 1
        if begin <= end:
            out.append((begin, end))
    return tuple(out)


def _pick(free: Ranges, count: int, rng: random.Random | None) -> list[int]:
    """`count` ports of the ranges: the lowest, or a uniform random sample."""
    sizes = [end - begin + 1 for begin, end in free]
    starts = [0, *itertools.accumulate(sizes)]  # index of each range's first port
    indices = range(count) if rng is None else rng.sample(range(starts[-1]), count)
    ports = []
    for index in indices:
        i = bisect.bisect_right(starts, index) - 1
        ports.append(free[i][0] + index - starts[i])
    return ports


def port_env(host_ports: Sequence[int | None], names: Sequence[str | None] = (),
             prefix: str = "") -> dict[str, str]:
    """$PORT0..n (by request index), $PORT, $PORTS and $PORT_<NAME>, with --env_vars_prefix."""
    env: dict[str, str] = {}
    assigned = [p for p in host_ports if p is not None]
    for index, port in enumerate(host_ports):
        if port is not None:
            env[f"{prefix}PORT{index}"] = str(port)
    for name, port in zip(names, host_ports):
        if name and port is not None:
            env[f"{prefix}PORT_{re.sub(r'[^A-Za-z0-9_]', '_', name).upper()}"] = str(port)
    if assigned:
        env[f"{prefix}PORT"] = str(assigned[0])
        env[f"{prefix}PORTS"] = ",".join(map(str, assigned))
    return env


# --------------------------------------------------------------------------- service ports

class PortRangeExhausted(ValueError):
    def __init__(self, low: int, high: int) -> None:
        super().__init__(f"All ports in the range [{low}-{high}) are already in use")
        self.low, self.high = low, high


def assign_service_ports(target: Mapping[str, Sequence[int]],
                         original: Mapping[str, Sequence[int]] | None = None,
                         low: int = LOCAL_PORT_MIN, high: int = LOCAL_PORT_MAX
                         ) -> dict[str, tuple[int, ...]]:
    """Replace every service port 0 of the target root group's apps (Marathon's
    AssignDynamicServiceLogic).

    `target` and `original` map app id -> service ports (`portDefinitions[].port`, or
    `portMappings[].servicePort`) in the target and original root groups. Each 0 becomes, in
    order: one of the app's own previous ports in [low, high) that no app of the target lists
    and no app got in this call (so re-posting 0s keeps the ports), else the lowest port in
    [low, high) that no app of either group uses. Explicit ports are kept and not checked for
    uniqueness (Marathon leaves that to the user). Apps are handled in id order, so the answer
    does not depend on dict order. Raises PortRangeExhausted when the range runs out.
    """
    if not 0 <= low < high:
        raise ValueError(f"invalid service port range [{low}-{high})")
    original = original or {}
    listed = {p for ports in target.values() for p in ports if p}
    taken = listed | {p for ports in original.values() for p in ports if p}
    free = _free_ports(low, high, taken)
    handed_out: set[int] = set()
    assigned = {}
    for app_id in sorted(target):
        reuse = iter([p for p in original.get(app_id, ())
                      if low <= p < high and p not in listed and p not in handed_out])
        ports = tuple(p or next(reuse, None) or next(free) for p in target[app_id])
        handed_out.update(ports)
        assigned[app_id] = ports
    return assigned


def _free_ports(low: int, high: int, taken: set[int]) -> Iterator[int]:
    """Unused ports, lowest first; never the same twice. Raises when the range is used up."""
    for port in range(low, high):
        if port not in taken:
            yield port
    raise PortRangeExhausted(low, high)
