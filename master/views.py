"""The master's read-only JSON views, in exactly Mesos's shapes (reference: mesos.md §0, §3).

Pure functions from the `core.Master` records to JSON-able dicts; `http.py` runs them on the
loop thread (a consistent snapshot) and serialises them. These are Mesos's hand-written
writers, NOT protobuf JSON: ids are flat strings, resources are summarised objects
(`Resources.summary()`), task and status `labels` are plain arrays of `{key, value}`.

    state(master, flags)   /master/state        top level -> slaves[], frameworks[] -> tasks[]
    state_summary(master)  /state-summary       the same agent elements + task counts
    tasks(master, ...)     /master/tasks        active, unreachable and completed tasks
    frameworks(master)     /master/frameworks   the same framework elements as /state
    slaves(master)         /master/slaves       agent elements + *_full protobuf-JSON arrays
    metrics_snapshot(m)    /metrics/snapshot    flat {"master/elected": 1.0, ...}

Mesos-DNS decodes /master/state strictly (reference §3 "Mesos-DNS contract"): `leader` must be
a `name@ip:port` pid, every `pid` present must parse, so a framework's `pid` is omitted (ours
are not libprocess frameworks; `""` or `null` would fail the whole decode).
"""
from __future__ import annotations

import os
import time
from collections import Counter
from typing import Any, Iterable, Iterator, Optional

import psutil

from meseta import proto
from meseta.master.model import Agent, Framework, StatusRecord, Task
from meseta.resources import Resources, attributes_summary

MASTER_CAPABILITIES = ("AGENT_UPDATE",)       # as advertised in MasterInfo (http.py)
AGENT_CAPABILITIES = ("MULTI_ROLE",)          # our agents hold tasks of any number of roles
BUILD_USER = "meseta"
BUILD_TIME = float(int(time.time()))          # no compile step: the time this code was loaded

# The per-state counts /state-summary adds to every agent and framework (Mesos's list).
SUMMARY_STATES = (proto.TASK_STAGING, proto.TASK_STARTING, proto.TASK_RUNNING,
                  proto.TASK_KILLING, proto.TASK_FINISHED, proto.TASK_KILLED, proto.TASK_FAILED,
                  proto.TASK_LOST, proto.TASK_ERROR, proto.TASK_UNREACHABLE)

# /metrics/snapshot: task states Mesos reports as gauges of current tasks; the terminal ones are
# counters of transitions (they must never go down when completed tasks are evicted).
GAUGE_TASK_STATES = (proto.TASK_STAGING, proto.TASK_STARTING, proto.TASK_RUNNING,
                     proto.TASK_KILLING, proto.TASK_UNREACHABLE)
COUNTER_TASK_STATES = (proto.TASK_FINISHED, proto.TASK_FAILED, proto.TASK_KILLED,
                       proto.TASK_LOST, proto.TASK_ERROR, proto.TASK_DROPPED, proto.TASK_GONE,
                       proto.TASK_GONE_BY_OPERATOR)
MASTER_COUNTERS = ("slave_registrations", "slave_reregistrations", "slave_removals",
                   "valid_status_updates", "invalid_status_updates",
                   "valid_status_update_acknowledgements",
                   "invalid_status_update_acknowledgements", "dropped_messages")
SCALARS = ("cpus", "mem", "disk", "gpus")


# --------------------------------------------------------------------------- shared pieces


def master_pid(info: proto.MasterInfo) -> str:
    return f"master@{info.ip}:{info.port}"


def build_info() -> dict[str, Any]:
    """The build fields of /master/state (and of /version)."""
    return {"build_date": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(BUILD_TIME)),
            "build_time": BUILD_TIME, "build_user": BUILD_USER}


def _labels(labels: dict[str, str]) -> list[dict[str, str]]:
    """Mesos's state writers render `Labels` as a plain array, not `{"labels": [...]}`."""
    return [{"key": key, "value": value} for key, value in labels.items()]


def _total(parts: Iterable[Resources]) -> Resources:
    total = Resources()
    for part in parts:
        total = total + part
    return total


def _framework_tasks(framework: Framework) -> Iterator[Task]:
    """Every task the master still remembers for a framework: active, unreachable, completed."""
    yield from framework.tasks.values()
    yield from framework.unreachable_tasks.values()
    yield from framework.completed_tasks


def _all_frameworks(master: Any) -> Iterator[Framework]:
    yield from master.frameworks.values()
    yield from master.completed_frameworks


# --------------------------------------------------------------------------- tasks


def status_json(status: StatusRecord) -> dict[str, Any]:
    """One `statuses[]` element: only state, timestamp, labels?, container_status?, healthy?."""
    out: dict[str, Any] = {"state": status.state, "timestamp": status.timestamp}
    if status.labels:
        out["labels"] = _labels(status.labels)
    if status.container_ip:
        protocol = "IPv6" if ":" in status.container_ip else "IPv4"
        out["container_status"] = {"network_infos": [{"ip_addresses": [
            {"protocol": protocol, "ip_address": status.container_ip}]}]}
    if status.healthy is not None:
        out["healthy"] = status.healthy
    return out


def task_json(task: Task) -> dict[str, Any]:
    """A task element as /master/state, /master/tasks and Mesos-DNS know it."""
    info = task.info
    out: dict[str, Any] = {
        "id": task.id, "name": info.name, "framework_id": task.framework_id,
        "executor_id": "",                      # every Meseta task is a command task
        "slave_id": task.agent_id, "state": task.state,
        "resources": info.resources.summary(), "role": task.role,
        "statuses": [status_json(status) for status in task.statuses],
    }
    user = info.command.user or task.user
    if user:
        out["user"] = user
    if info.labels:
        out["labels"] = _labels(info.labels)
    if info.discovery:
        out["discovery"] = info.discovery       # given by the framework in protobuf-JSON shape
    return out


def _latest_timestamp(task: Task) -> float:
    # Mesos's TaskComparator: a task without statuses sorts before every other.
    return task.statuses[-1].timestamp if task.statuses else float("-inf")


def tasks(master: Any, limit: int = 100, offset: int = 0, order: str = "des",
          framework_id: Optional[str] = None, task_id: Optional[str] = None) -> dict[str, Any]:
    """/master/tasks: every remembered task, by latest status timestamp (newest first by default)."""
    found = [task for framework in _all_frameworks(master)
             if framework_id is None or framework.id == framework_id
             for task in _framework_tasks(framework)
             if task_id is None or task.id == task_id]
    found.sort(key=_latest_timestamp, reverse=order != "asc")
    offset, limit = max(offset, 0), max(limit, 0)
    return {"tasks": [task_json(task) for task in found[offset:offset + limit]]}


# --------------------------------------------------------------------------- agents


def _agent_info_json(agent: Agent) -> dict[str, Any]:
    """Mesos's json(SlaveInfo), which every agent element starts with."""
    return {"id": agent.id, "hostname": agent.hostname, "port": agent.info.port,
            "attributes": attributes_summary(agent.info.attributes)}


def recovered_slaves(master: Any) -> list[dict[str, Any]]:
    """Agents admitted in an earlier term that have not re-registered yet (SlaveInfo summaries)."""
    return [{"id": agent_id, "hostname": info.hostname, "port": info.port,
             "attributes": attributes_summary(info.attributes)}
            for agent_id, (info, _) in sorted(master.recovered_agents.items())]


def _agent_reservations(agent: Agent) -> tuple[dict[str, Resources], Resources]:
    """(reserved by role, unreserved). The model keeps agents' resources unreserved for now."""
    return {}, agent.total


def agent_json(agent: Agent) -> dict[str, Any]:
    """A `slaves[]` element of /master/state (and /state-summary, /master/slaves)."""
    reserved, unreserved = _agent_reservations(agent)
    out = _agent_info_json(agent)
    out["pid"] = agent.pid
    out["registered_time"] = agent.registered_time
    if agent.reregistered_time is not None:
        out["reregistered_time"] = agent.reregistered_time
    out.update({
        "resources": agent.total.summary(),
        "used_resources": agent.used.summary(),
        "offered_resources": agent.offered.summary(),
        "reserved_resources": {role: res.summary() for role, res in reserved.items()},
        "unreserved_resources": unreserved.summary(),
        "active": agent.active,
        "deactivated": False,                   # operator deactivation/draining: not supported
        "version": agent.version,
        "capabilities": list(AGENT_CAPABILITIES),
    })
    return out


def _allocations_by_agent(master: Any) -> tuple[dict[str, dict[str, Resources]],
                                                 dict[str, dict[str, Resources]]]:
    """(used, offered): agent id -> allocation role -> resources, for the *_full arrays."""
    used: dict[str, dict[str, Resources]] = {}
    offered: dict[str, dict[str, Resources]] = {}
    for framework in master.frameworks.values():
        for task in framework.tasks.values():
            if not task.released:
                _add(used.setdefault(task.agent_id, {}), task.role, task.resources)
        for record in framework.offers.values():
            offer = record.offer
            _add(offered.setdefault(offer.agent_id, {}), offer.role, offer.resources)
    return used, offered


def _add(by_role: dict[str, Resources], role: str, res: Resources) -> None:
    # Within one agent ranges are disjoint, so the full sum (ports included) is right here.
    by_role[role] = by_role.get(role, Resources()) + res


def _allocated_full(by_role: dict[str, Resources]) -> list[dict[str, Any]]:
    return [item for role, res in sorted(by_role.items()) for item in res.to_mesos("*", role)]


def slaves(master: Any, slave_id: Optional[str] = None) -> dict[str, Any]:
    """/master/slaves: agent elements plus their resources as protobuf-JSON arrays."""
    used, offered = _allocations_by_agent(master)
    out = []
    for agent in master.agents.values():
        if slave_id is not None and agent.id != slave_id:
            continue
        element = agent_json(agent)
        reserved, unreserved = _agent_reservations(agent)
        element["reserved_resources_full"] = {role: res.to_mesos(role)
                                              for role, res in reserved.items()}
        element["unreserved_resources_full"] = unreserved.to_mesos("*")
        element["used_resources_full"] = _allocated_full(used.get(agent.id, {}))
        element["offered_resources_full"] = _allocated_full(offered.get(agent.id, {}))
        out.append(element)
    return {"slaves": out, "recovered_slaves": recovered_slaves(master)}


# --------------------------------------------------------------------------- frameworks


def _framework_summary_json(framework: Framework) -> dict[str, Any]:
    """The fields /state-summary shows; the full element starts with the same ones."""
    info = framework.info
    return {
        "id": framework.id, "name": info.name,
        # no "pid": ours are not libprocess frameworks, and Mesos-DNS rejects "" and null
        "used_resources": framework.total_used().summary(),
        "offered_resources": framework.total_offered().summary(),
        "capabilities": list(info.capabilities),
        "hostname": info.hostname, "webui_url": info.webui_url,
        "active": framework.active, "connected": framework.connected,
        "recovered": framework.recovered,
    }


def offer_json(offer: proto.Offer) -> dict[str, Any]:
    return {"id": offer.id, "framework_id": offer.framework_id,
            "allocation_info": {"role": offer.role}, "slave_id": offer.agent_id,
            "resources": offer.resources.summary()}


def framework_json(framework: Framework) -> dict[str, Any]:
    """A `frameworks[]` / `completed_frameworks[]` element of /master/state."""
    info = framework.info
    out = _framework_summary_json(framework)
    out.update({"user": info.user, "failover_timeout": info.failover_timeout,
                "checkpoint": info.checkpoint, "registered_time": framework.registered_time,
                "unregistered_time": framework.unregistered_time})
    if info.principal is not None:
        out["principal"] = info.principal
    if framework.reregistered_time is not None:
        out["reregistered_time"] = framework.reregistered_time
    out["resources"] = (framework.total_used() + framework.total_offered()).summary()
    if proto.MULTI_ROLE in info.capabilities:
        out["roles"] = list(info.roles)
    else:
        out["role"] = framework.roles[0]
    out.update({
        "tasks": [task_json(task) for task in framework.tasks.values()],
        "unreachable_tasks": [task_json(task) for task in framework.unreachable_tasks.values()],
        "completed_tasks": [task_json(task) for task in framework.completed_tasks],
        "offers": [offer_json(record.offer) for record in framework.offers.values()],
        "executors": [],                        # command tasks only: no custom executors
    })
    if info.labels:
        out["labels"] = _labels(info.labels)
    return out


def frameworks(master: Any, framework_id: Optional[str] = None) -> dict[str, Any]:
    """/master/frameworks."""
    def wanted(framework: Framework) -> bool:
        return framework_id is None or framework.id == framework_id
    return {"frameworks": [framework_json(f) for f in master.frameworks.values() if wanted(f)],
            "completed_frameworks": [framework_json(f) for f in master.completed_frameworks
                                     if wanted(f)],
            "unregistered_frameworks": []}


# --------------------------------------------------------------------------- /master/state


def state(master: Any, flags: dict[str, Any], extra: Optional[dict[str, Any]] = None
          ) -> dict[str, Any]:
    """/master/state. `extra` is merged at the top level (the `meseta` key: event-bus position)."""
    info = master.info
    pid = master_pid(info)
    out: dict[str, Any] = {"version": info.version, **build_info(),
                           "start_time": master.start_time}
    if master.elected_time is not None:
        out["elected_time"] = master.elected_time
    agents = list(master.agents.values())
    out.update({
        "id": info.id, "pid": pid, "hostname": info.hostname,
        "capabilities": list(MASTER_CAPABILITIES),
        "activated_slaves": sum(1 for agent in agents if agent.active),
        "deactivated_slaves": sum(1 for agent in agents if not agent.active),
        "unreachable_slaves": len(master.unreachable_agents),
        # Served by the leader only (standbys redirect), so the leader is this master.
        "leader": pid,
        "leader_info": {"id": info.id, "pid": pid, "port": info.port,
                        "hostname": info.hostname},
        "flags": {name: "" if value is None else str(value) for name, value in flags.items()},
        "slaves": [agent_json(agent) for agent in agents],
        "recovered_slaves": recovered_slaves(master),
        "frameworks": [framework_json(f) for f in master.frameworks.values()],
        "completed_frameworks": [framework_json(f) for f in master.completed_frameworks],
        "orphan_tasks": [],
        "unregistered_frameworks": [],
    })
    out.update(extra or {})
    return out


# --------------------------------------------------------------------------- /state-summary


def _state_counts(counts: Counter) -> dict[str, int]:
    return {state_name: counts[state_name] for state_name in SUMMARY_STATES}


def state_summary(master: Any) -> dict[str, Any]:
    """/state-summary: agents and frameworks with per-state task counts and their links."""
    by_agent: dict[str, Counter] = {}
    by_framework: dict[str, Counter] = {}
    agents_of: dict[str, set[str]] = {}
    frameworks_of: dict[str, set[str]] = {}
    for framework in master.frameworks.values():
        by_framework[framework.id] = Counter()
        agents_of[framework.id] = set()
        for task in _framework_tasks(framework):
            by_framework[framework.id][task.state] += 1
            by_agent.setdefault(task.agent_id, Counter())[task.state] += 1
            agents_of[framework.id].add(task.agent_id)
            frameworks_of.setdefault(task.agent_id, set()).add(framework.id)
    agent_elements = []
    for agent in master.agents.values():
        element = agent_json(agent)
        element.update(_state_counts(by_agent.get(agent.id, Counter())))
        element["framework_ids"] = sorted(frameworks_of.get(agent.id, ()))
        agent_elements.append(element)
    framework_elements = []
    for framework in master.frameworks.values():
        element = _framework_summary_json(framework)
        element.update(_state_counts(by_framework[framework.id]))
        element["slave_ids"] = sorted(agents_of[framework.id])
        framework_elements.append(element)
    return {"hostname": master.info.hostname, "slaves": agent_elements,
            "frameworks": framework_elements}


# --------------------------------------------------------------------------- /metrics/snapshot


def _ratio(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


def _resource_metrics(master: Any) -> dict[str, float]:
    agents = list(master.agents.values())
    total = _total(agent.total for agent in agents)
    used = _total(agent.used for agent in agents)
    offered = _total(agent.offered for agent in agents)
    out: dict[str, float] = {}
    for name in SCALARS:
        out[f"master/{name}_total"] = total.get(name)
        out[f"master/{name}_used"] = used.get(name)
        out[f"master/{name}_percent"] = _ratio(used.get(name), total.get(name))
    for name in ("cpus", "mem", "disk"):
        prefix = f"allocator/mesos/resources/{name}"
        out[f"{prefix}/total"] = total.get(name)
        out[f"{prefix}/offered_or_allocated"] = used.get(name) + offered.get(name)
    return out


def _peer_metrics(master: Any) -> dict[str, float]:
    agents = list(master.agents.values())
    frameworks_ = list(master.frameworks.values())
    connected = sum(1 for agent in agents if agent.peer is not None)
    active = sum(1 for agent in agents if agent.active)
    fw_connected = sum(1 for fw in frameworks_ if fw.connected)
    fw_active = sum(1 for fw in frameworks_ if fw.active)
    return {
        "master/slaves_active": float(active),
        "master/slaves_inactive": float(len(agents) - active),
        "master/slaves_connected": float(connected),
        "master/slaves_disconnected": float(len(agents) - connected),
        "master/slaves_unreachable": float(len(master.unreachable_agents)),
        "master/frameworks_active": float(fw_active),
        "master/frameworks_inactive": float(len(frameworks_) - fw_active),
        "master/frameworks_connected": float(fw_connected),
        "master/frameworks_disconnected": float(len(frameworks_) - fw_connected),
        "master/outstanding_offers": float(sum(len(fw.offers) for fw in frameworks_)),
    }


def _task_metric(state_name: str) -> str:
    return "tasks_" + state_name[len("TASK_"):].lower()      # also the core's counter key


def _task_metrics(master: Any) -> dict[str, float]:
    current = Counter(task.state for framework in master.frameworks.values()
                      for task in (*framework.tasks.values(), *framework.unreachable_tasks.values()))
    out = {f"master/{_task_metric(name)}": float(current[name]) for name in GAUGE_TASK_STATES}
    out.update({f"master/{_task_metric(name)}": float(master.counters[_task_metric(name)])
                for name in COUNTER_TASK_STATES})
    return out


def _counter_metrics(master: Any) -> dict[str, float]:
    counters = master.counters
    out = {f"master/{name}": float(counters[name]) for name in MASTER_COUNTERS}
    out.update({f"master/{name}": float(count) for name, count in counters.items()
                if name.startswith("messages_")})
    out["allocator/mesos/allocation_runs"] = float(counters["allocation_runs"])
    return out


def _system_metrics() -> dict[str, float]:
    memory = psutil.virtual_memory()
    load_1, load_5, load_15 = os.getloadavg()
    return {"system/cpus_total": float(psutil.cpu_count() or 0),
            "system/mem_total_bytes": float(memory.total),
            "system/mem_free_bytes": float(memory.free),
            "system/load_1min": load_1, "system/load_5min": load_5, "system/load_15min": load_15}


def metrics_snapshot(master: Any) -> dict[str, float]:
    """/metrics/snapshot: Mesos's flat keys, every value a float."""
    out = {"master/elected": 1.0 if master.elected_time is not None else 0.0,
           "master/uptime_secs": master.clock.time() - master.start_time}
    for part in (_resource_metrics(master), _peer_metrics(master), _task_metrics(master),
                 _counter_metrics(master), _system_metrics()):
        out.update(part)
    return out
