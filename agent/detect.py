"""What an agent offers: its detected resources, overridden by `--resources` (reference §5).

Detection follows Mesos: cpus = logical cores; mem = total - 1 GiB (half when total < 2 GiB);
disk = size of the work_dir's filesystem - 5 GiB (half when < 10 GiB); ports = [31000-32000].
Memory and disk are in MB. A resource named in `--resources`, under any role, replaces the
detected one; the others keep their detected values:

    >>> agent_resources("/var/lib/meseta", "cpus:4;mem:2048").disk > 0
    True
"""
from __future__ import annotations

import os

import psutil

from meseta.resources import Resources, parse_reserved

GiB = 1024 ** 3
MiB = 1024 ** 2
DEFAULT_PORTS = ((31000, 32000),)


def memory_mb(total_bytes: int) -> int:
    """Mesos's rule: leave 1 GiB to the host, or half of a host smaller than 2 GiB."""
    usable = total_bytes - GiB if total_bytes >= 2 * GiB else total_bytes // 2
    return usable // MiB


def disk_mb(total_bytes: int) -> int:
    """Mesos's rule: leave 5 GiB to the host, or half of a filesystem smaller than 10 GiB."""
    usable = total_bytes - 5 * GiB if total_bytes >= 10 * GiB else total_bytes // 2
    return usable // MiB


def _existing(path: str) -> str:
    """The work_dir, or its nearest existing parent when it is not created yet."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def detect_resources(work_dir: str) -> Resources:
    return Resources(
        scalars={
            "cpus": psutil.cpu_count(logical=True) or 1,
            "mem": memory_mb(psutil.virtual_memory().total),
            "disk": disk_mb(psutil.disk_usage(_existing(work_dir)).total),
        },
        ranges={"ports": DEFAULT_PORTS},
    )


def agent_resources_by_role(work_dir: str, flag_text: str | None,
                            default_role: str = "*") -> dict[str, Resources]:
    """{role: Resources}: `--resources` (Mesos text or JSON) plus detected resources for the
    names it does not mention, under `default_role`. Raises ValueError on bad flag text."""
    given = parse_reserved(flag_text or "", default_role)
    named = {name for resources in given.values()
             for kind in (resources.scalars, resources.ranges, resources.sets) for name in kind}
    detected = detect_resources(work_dir)
    missing = Resources(
        scalars={n: v for n, v in detected.scalars.items() if n not in named},
        ranges={n: v for n, v in detected.ranges.items() if n not in named},
    )
    if missing:
        given[default_role] = given.get(default_role, Resources()) + missing
    return given


def agent_resources(work_dir: str, flag_text: str | None) -> Resources:
    """The agent's unreserved resources; a flag that reserves some for a role is a ValueError
    here (use agent_resources_by_role)."""
    by_role = agent_resources_by_role(work_dir, flag_text)
    reserved = sorted(role for role in by_role if role != "*")
    if reserved:
        raise ValueError(f"--resources reserves resources for roles {reserved}; "
                         f"use agent_resources_by_role")
    return by_role.get("*", Resources())
