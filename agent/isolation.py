"""Memory (and cpu share) isolation for task containers: cgroups v2, cgroups v1, or posix.

`make_isolator("auto")` picks the strongest mechanism this host allows and logs its choice:

    cgroups v2   a writable unified hierarchy with the memory controller; memory.max, cpu.weight
    cgroups v1   a writable `memory` hierarchy; memory.limit_in_bytes, cpu.shares if `cpu` is too
    posix        no kernel enforcement; `check()` sums the RSS of the task's process group

Cgroups are nested under the agent's own cgroup (read from /proc/self/cgroup), one directory per
agent and one per container: `<root>/memory/<own path>/<agent_name>/<container_id>`. Give each
agent on a host its own `agent_name`: `orphans()` treats every container directory under it as
the agent's own.

Call order, per container (the daemon's loop thread; nothing here blocks or sleeps):

    prefix = isolator.prepare(cid, mem_mb, cpus)   # before the spawn; argv goes after the prefix
    isolator.check(container)                      # every second or so while it runs
    isolator.limitation_after_exit(container)      # once it has exited
    isolator.cleanup(cid)                          # until it returns True

Under cgroups the kernel enforces the limit: v1 OOM-kills the biggest process with SIGKILL (a
shell wrapping it may live on), v2 kills the whole group. Either way the OOM counter tells
`check()`/`limitation_after_exit()` that the container hit its limit. Under posix, `check()`
is the only enforcement: the caller kills the container when it reports a limitation. Both
remember the limitation they reported, so `limitation_after_exit()` returns it again.
"""
from __future__ import annotations

import errno
import os
import signal
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Collection

import psutil

from meseta import proto
from meseta.log import get_logger

if TYPE_CHECKING:
    from meseta.agent.containerizer import Container

log = get_logger("meseta.agent.isolation")

MIN_MEMORY_MB = 32          # Mesos's MIN_MEMORY: smaller limits are raised to this
CPU_SHARES_PER_CPU = 1024   # Mesos's cgroups/cpu isolator
MIN_CPU_SHARES = 2
MB = 1024 * 1024

# Mesos's --isolation spellings, and ours.
_MODES = {
    "auto": "auto",
    "cgroups": "cgroups", "cgroups/mem": "cgroups", "cgroups/cpu": "cgroups",
    "posix": "posix", "posix/mem": "posix", "posix/cpu": "posix",
}

# The argv prefix of an isolated task. `sh -c SCRIPT NAME PATH... -- ARGV...`: the shell writes its
# own pid into each cgroup.procs PATH, then execs ARGV in place, so the task is in its cgroups
# before it runs a single instruction of its own. Paths and argv stay separate arguments; nothing
# is spliced into the script, so no quoting can go wrong. A failed write exits 125 without exec.
_ENTER_SCRIPT = 'for f; do shift; [ "$f" = -- ] && exec "$@"; echo $$ > "$f" || exit 125; done; exit 125'
_ENTER_NAME = "meseta-enter"


class IsolatorError(Exception):
    """The requested isolation cannot be set up on this host."""


@dataclass(frozen=True)
class Limitation:
    """A container went over one of its limits; it becomes the task's terminal reason."""

    reason: str
    message: str


@dataclass(frozen=True)
class Limits:
    mem_mb: float | None
    cpus: float | None

    @property
    def mem_bytes(self) -> int | None:
        if self.mem_mb is None:
            return None
        return int(max(self.mem_mb, MIN_MEMORY_MB) * MB)


def format_bytes(count: int) -> str:
    """Bytes as stout prints them: the largest unit that loses nothing (64MB, 1536KB, 100B)."""
    for unit in ("B", "KB", "MB", "GB"):
        if count == 0 or count % 1024:
            return f"{count}{unit}"
        count //= 1024
    return f"{count}TB"


def memory_limitation(limit_bytes: int | None, used_bytes: int | None) -> Limitation:
    """Mesos's memory limitation message (cgroups/mem isolator)."""
    message = "Memory limit exceeded:"
    if limit_bytes is not None:
        message += f" Requested: {format_bytes(limit_bytes)}"
    if used_bytes is not None:
        message += f" Maximum Used: {format_bytes(used_bytes)}"
    return Limitation(proto.REASON_CONTAINER_LIMITATION_MEMORY, message)


# --------------------------------------------------------------------------- process groups


def pgid_index() -> dict[int, list[int]]:
    """Every live pid by process group: one /proc listing and one getpgid call per pid."""
    index: dict[int, list[int]] = {}
    for pid in psutil.pids():
        try:
            index.setdefault(os.getpgid(pid), []).append(pid)
        except OSError:
            continue
    return index


def process_usage(pids: list[int]) -> dict[str, float]:
    """RSS and cpu times summed over processes, in Mesos's /monitor/statistics names."""
    rss = user = system = 0.0
    for pid in pids:
        try:
            process = psutil.Process(pid)
            with process.oneshot():
                rss += process.memory_info().rss
                times = process.cpu_times()
        except psutil.Error:
            continue
        user += times.user
        system += times.system
    return {"mem_rss_bytes": int(rss), "cpus_user_time_secs": round(user, 3),
            "cpus_system_time_secs": round(system, 3)}


def _limit_stats(limits: Limits | None) -> dict[str, float]:
    stats: dict[str, float] = {}
    if limits is not None and limits.mem_bytes is not None:
        stats["mem_limit_bytes"] = limits.mem_bytes
    if limits is not None and limits.cpus is not None:
        stats["cpus_limit"] = limits.cpus
    return stats


# --------------------------------------------------------------------------- the interface


class Isolator:
    """Common bookkeeping; subclasses decide how limits are enforced and observed."""

    name = "none"

    def __init__(self) -> None:
        self._limits: dict[str, Limits] = {}
        self._reported: dict[str, Limitation] = {}

    def prepare(self, container_id: str, mem_mb: float | None, cpus: float | None,
                uid: int | None = None) -> list[str]:
        """Set up isolation for a container about to start; returns the argv prefix to run it
        through. `uid`: the user the task will run as, when that is not the agent's."""
        self._limits[container_id] = Limits(mem_mb, cpus)
        return []

    def recover(self, container_id: str, mem_mb: float | None, cpus: float | None) -> None:
        """Take a container that outlived an agent restart back under watch."""
        self._limits[container_id] = Limits(mem_mb, cpus)

    def check(self, container: Container) -> Limitation | None:
        """Has the running container gone over a limit? The caller kills it if so."""
        return self._reported.get(container.container_id)

    def limitation_after_exit(self, container: Container) -> Limitation | None:
        """The limitation that ended the container, if one did."""
        return self._reported.get(container.container_id)

    def usage(self, container: Container) -> dict[str, float]:
        stats = process_usage(self._members(container))
        stats.update(_limit_stats(self._limits.get(container.container_id)))
        return stats

    def cleanup(self, container_id: str) -> bool:
        """Release the container's isolation. False: processes are still dying, call again."""
        self._limits.pop(container_id, None)
        self._reported.pop(container_id, None)
        return True

    def orphans(self, known: Collection[str]) -> list[str]:
        """Ids of containers this agent isolated once and does not know any more (to clean up)."""
        return []

    def close(self) -> None:
        """Agent shutdown: remove the agent's own cgroups if no container is left in them."""

    def _members(self, container: Container) -> list[int]:
        raise NotImplementedError

    def _report(self, container_id: str, limitation: Limitation | None) -> Limitation | None:
        if limitation is not None:
            self._reported.setdefault(container_id, limitation)
        return self._reported.get(container_id)


class PosixIsolator(Isolator):
    """Monitoring only: the memory limit holds only as far as `check()` is called and obeyed.

    A container is its process group. Finding a group's members means looking at every pid, so
    one look serves every check made within INDEX_TTL seconds (a round over all containers)."""

    name = "posix"
    INDEX_TTL = 0.1

    def __init__(self) -> None:
        super().__init__()
        self._index: dict[int, list[int]] = {}
        self._indexed_at = -1.0

    def check(self, container: Container) -> Limitation | None:
        limits = self._limits.get(container.container_id)
        if container.container_id in self._reported or limits is None or limits.mem_bytes is None:
            return super().check(container)
        rss = process_usage(self._members(container))["mem_rss_bytes"]
        if rss > limits.mem_bytes:
            return self._report(container.container_id, memory_limitation(limits.mem_bytes, rss))
        return None

    def _members(self, container: Container) -> list[int]:
        now = time.monotonic()
        if now - self._indexed_at > self.INDEX_TTL:
            self._index, self._indexed_at = pgid_index(), now
        return self._index.get(container.pgid, [])


# --------------------------------------------------------------------------- cgroups


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _keyed(text: str | None) -> dict[str, int]:
    """`key value` lines (memory.stat, memory.events, memory.oom_control) as a dict."""
    out = {}
    for line in (text or "").splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


def _int(text: str | None) -> int | None:
    text = (text or "").strip()
    return int(text) if text.isdigit() else None


def _procs(directory: str) -> list[int]:
    return [int(p) for p in (_read(os.path.join(directory, "cgroup.procs")) or "").split()]


def _remove_cgroups(directories: list[str], evict: bool) -> bool:
    """SIGKILL what is in a container's cgroups and remove them; False while they cannot go.

    A SIGKILLed process takes a moment to leave, and rmdir fails until it has. With `evict`
    (v1 allows processes in inner cgroups) live processes first move up to the agent's cgroups
    in every hierarchy, and only then die, so the directories can go at once; the kernel does
    not move a process that is already exiting, so those still make us wait."""
    present = [d for d in directories if os.path.isdir(d)]
    pids = sorted({pid for d in present for pid in _procs(d)})
    try:
        for directory in present if pids and evict else []:
            parent_procs = os.path.join(os.path.dirname(directory), "cgroup.procs")
            for pid in pids:
                try:
                    _write(parent_procs, str(pid))
                except ProcessLookupError:
                    pass
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for directory in present:
            try:
                os.rmdir(directory)
            except FileNotFoundError:
                pass
    except OSError as error:
        if error.errno != errno.EBUSY:
            log.warning("cannot remove cgroup", error=str(error))
        return False
    return True


def own_cgroups(proc_cgroup: str = "/proc/self/cgroup") -> dict[str, str]:
    """This process's cgroup per controller ("" is the unified v2 hierarchy)."""
    out = {}
    for line in (_read(proc_cgroup) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(",") if parts[1] else [""]:
                out[controller] = parts[2]
    return out


class CgroupIsolator(Isolator):
    """One directory per container under each hierarchy's agent directory."""

    EVICT = False   # may dying processes move up to the agent's cgroup? (v1 yes, v2 no)

    def __init__(self, hierarchies: dict[str, str]) -> None:
        super().__init__()
        self.hierarchies = hierarchies   # {"memory": "<mount>/<own path>/<agent_name>", ...}
        self._pending: set[str] = set()  # cleanups to retry

    def _dir(self, controller: str, container_id: str) -> str:
        return os.path.join(self.hierarchies[controller], container_id)

    def _dirs(self, container_id: str) -> list[str]:
        return [self._dir(c, container_id) for c in self.hierarchies]

    def prepare(self, container_id: str, mem_mb: float | None, cpus: float | None,
                uid: int | None = None) -> list[str]:
        self._sweep()
        super().prepare(container_id, mem_mb, cpus, uid)
        limits = self._limits[container_id]
        procs = []
        for directory in self._dirs(container_id):
            os.makedirs(directory, exist_ok=True)
            procs.append(os.path.join(directory, "cgroup.procs"))
            if uid is not None:
                os.chown(procs[-1], uid, -1)   # the task's shell moves itself in
        self._configure(container_id, limits)
        return ["/bin/sh", "-c", _ENTER_SCRIPT, _ENTER_NAME, *procs, "--"]

    def check(self, container: Container) -> Limitation | None:
        return self._report(container.container_id, self._oom_limitation(container.container_id))

    def limitation_after_exit(self, container: Container) -> Limitation | None:
        return self.check(container)

    def cleanup(self, container_id: str) -> bool:
        """Also retries every cleanup that could not finish before (as does `prepare()`), so
        a caller that never calls again leaks a cgroup only until the next launch or exit."""
        self._pending.add(container_id)
        self._sweep()
        return container_id not in self._pending

    def close(self) -> None:
        self._sweep()
        for directory in self.hierarchies.values():
            try:
                os.rmdir(directory)
            except OSError:
                pass   # containers outlive this agent, or are still dying: a restart reuses it

    def _sweep(self) -> None:
        for container_id in sorted(self._pending):
            if _remove_cgroups(self._dirs(container_id), self.EVICT):
                self._pending.discard(container_id)
                super().cleanup(container_id)

    def _members(self, container: Container) -> list[int]:
        return _procs(self._dirs(container.container_id)[0])

    def orphans(self, known: Collection[str]) -> list[str]:
        found: set[str] = set()
        for hierarchy in self.hierarchies.values():
            try:
                found.update(e.name for e in os.scandir(hierarchy) if e.is_dir())
            except FileNotFoundError:
                continue
        return sorted(found - set(known))

    def _set_optional(self, path: str, value: str) -> None:
        try:
            _write(path, value)
        except OSError as error:
            log.warning("cannot set cgroup control", path=path, error=str(error))

    # subclass hooks
    def _configure(self, container_id: str, limits: Limits) -> None:
        raise NotImplementedError

    def _oom_limitation(self, container_id: str) -> Limitation | None:
        raise NotImplementedError


class CgroupsV1Isolator(CgroupIsolator):
    name = "cgroups/v1"
    EVICT = True

    def _configure(self, container_id: str, limits: Limits) -> None:
        memory = self._dir("memory", container_id)
        if limits.mem_bytes is not None:
            _write(os.path.join(memory, "memory.limit_in_bytes"), str(limits.mem_bytes))
        if limits.cpus is not None and "cpu" in self.hierarchies:
            shares = max(int(CPU_SHARES_PER_CPU * limits.cpus), MIN_CPU_SHARES)
            self._set_optional(os.path.join(self._dir("cpu", container_id), "cpu.shares"),
                               str(shares))

    def _oom_limitation(self, container_id: str) -> Limitation | None:
        memory = self._dir("memory", container_id)
        oom = _keyed(_read(os.path.join(memory, "memory.oom_control")))
        limit = _int(_read(os.path.join(memory, "memory.limit_in_bytes")))
        peak = _int(_read(os.path.join(memory, "memory.max_usage_in_bytes")))
        if "oom_kill" in oom:        # Linux >= 4.13 counts OOM kills
            hit = oom["oom_kill"] > 0
        else:                        # older: the usage touched the limit and could not shrink
            failed = _int(_read(os.path.join(memory, "memory.failcnt"))) or 0
            hit = bool(oom.get("under_oom")) or (failed > 0 and limit is not None
                                                 and peak is not None and peak >= limit)
        return memory_limitation(limit, peak) if hit else None

    def usage(self, container: Container) -> dict[str, float]:
        stats = super().usage(container)
        memory = self._dir("memory", container.container_id)
        stat = _keyed(_read(os.path.join(memory, "memory.stat")))
        if "total_rss" in stat:
            stats["mem_rss_bytes"] = stat["total_rss"]
            stats["mem_cache_bytes"] = stat.get("total_cache", 0)
        for name, control in (("mem_total_bytes", "memory.usage_in_bytes"),
                              ("mem_max_bytes", "memory.max_usage_in_bytes")):
            value = _int(_read(os.path.join(memory, control)))
            if value is not None:
                stats[name] = value
        return stats


class CgroupsV2Isolator(CgroupIsolator):
    name = "cgroups/v2"

    def _configure(self, container_id: str, limits: Limits) -> None:
        directory = self._dir("", container_id)
        if limits.mem_bytes is not None:
            _write(os.path.join(directory, "memory.max"), str(limits.mem_bytes))
        if os.path.exists(os.path.join(directory, "memory.oom.group")):
            _write(os.path.join(directory, "memory.oom.group"), "1")   # kill the whole task
        weight_path = os.path.join(directory, "cpu.weight")
        if limits.cpus is not None and os.path.exists(weight_path):
            self._set_optional(weight_path, str(cpu_weight(limits.cpus)))

    def _oom_limitation(self, container_id: str) -> Limitation | None:
        directory = self._dir("", container_id)
        events = _keyed(_read(os.path.join(directory, "memory.events")))
        if events.get("oom_kill", 0) == 0 and events.get("oom_group_kill", 0) == 0:
            return None
        limit = _int(_read(os.path.join(directory, "memory.max")))
        peak = _int(_read(os.path.join(directory, "memory.peak")))   # Linux >= 5.19
        return memory_limitation(limit, peak if peak is not None else limit)

    def usage(self, container: Container) -> dict[str, float]:
        stats = super().usage(container)
        directory = self._dir("", container.container_id)
        stat = _keyed(_read(os.path.join(directory, "memory.stat")))
        if "anon" in stat:
            stats["mem_rss_bytes"] = stat["anon"]
            stats["mem_cache_bytes"] = stat.get("file", 0)
        for name, control in (("mem_total_bytes", "memory.current"),
                              ("mem_max_bytes", "memory.peak")):
            value = _int(_read(os.path.join(directory, control)))
            if value is not None:
                stats[name] = value
        return stats

    def cleanup(self, container_id: str) -> bool:
        kill = os.path.join(self._dir("", container_id), "cgroup.kill")   # Linux >= 5.14
        if os.path.exists(kill):
            self._set_optional(kill, "1")
        return super().cleanup(container_id)


def cpu_weight(cpus: float) -> int:
    """cpu.shares mapped onto cgroup v2's cpu.weight [1, 10000] (the runc/Kubernetes formula)."""
    shares = max(int(CPU_SHARES_PER_CPU * cpus), MIN_CPU_SHARES)
    return min(1 + ((shares - 2) * 9999) // 262142, 10000)


# --------------------------------------------------------------------------- choosing one


def _v2_hierarchy(root: str, own: dict[str, str], agent_name: str) -> dict[str, str]:
    """Set up `<unified>/<own>/<agent_name>` with memory (and cpu) delegated; raise if we can't."""
    unified = root if os.path.exists(os.path.join(root, "cgroup.controllers")) \
        else os.path.join(root, "unified")
    if "" not in own:
        raise IsolatorError("this process is in no cgroup v2 hierarchy")
    parent = os.path.join(unified, own[""].lstrip("/"))
    available = (_read(os.path.join(parent, "cgroup.controllers")) or "").split()
    if "memory" not in available:
        raise IsolatorError(f"the memory controller is not available in {parent}")
    wanted = [c for c in ("memory", "cpu") if c in available]
    agent_dir = os.path.join(parent, agent_name)
    try:
        # Enabling a controller fails (EBUSY) in a non-root cgroup that holds processes: the
        # agent must then run in a leaf of a delegated subtree (systemd Delegate=yes).
        for directory in (parent, agent_dir):
            os.makedirs(directory, exist_ok=True)
            _write(os.path.join(directory, "cgroup.subtree_control"),
                   " ".join("+" + c for c in wanted))
    except OSError as error:
        try:
            os.rmdir(agent_dir)
        except OSError:
            pass
        raise IsolatorError(f"cannot delegate {wanted} below {parent}: {error}") from None
    return {"": agent_dir}


def _v1_hierarchies(root: str, own: dict[str, str], agent_name: str) -> dict[str, str]:
    """Set up `<root>/<controller>/<own>/<agent_name>` for memory (required) and cpu (optional)."""
    out = {}
    for controller in ("memory", "cpu"):
        mount = os.path.join(root, controller)
        if controller not in own or not os.path.isdir(mount):
            continue
        directory = os.path.join(mount, own[controller].lstrip("/"), agent_name)
        try:
            os.makedirs(directory, exist_ok=True)
            if not os.access(os.path.join(directory, "cgroup.procs"), os.W_OK):
                raise PermissionError(errno.EACCES, "cgroup.procs is not writable", directory)
        except OSError as error:
            if controller == "memory":
                raise IsolatorError(f"cgroup v1 memory hierarchy not writable: {error}") from None
            log.warning("cpu shares not isolated", error=str(error))
            continue
        out[controller] = directory
    if "memory" not in out:
        raise IsolatorError(f"no cgroup v1 memory hierarchy under {root}")
    return out


def make_isolator(mode: str = "auto", root: str = "/sys/fs/cgroup", agent_name: str = "meseta",
                  proc_cgroup: str = "/proc/self/cgroup") -> Isolator:
    """The isolator for `mode` ("auto", "cgroups", "posix", or Mesos's --isolation spellings
    such as "cgroups/cpu,cgroups/mem"). Asking for cgroups where there are none raises
    IsolatorError; "auto" falls back to posix monitoring instead."""
    kinds = {_MODES.get(m.strip()) for m in mode.split(",") if m.strip()}
    if None in kinds or len(kinds) != 1:
        raise ValueError(f"unknown isolation {mode!r}: use auto, cgroups or posix "
                         f"(or Mesos's cgroups/mem, posix/mem)")
    kind = kinds.pop()
    if kind == "posix":
        return _chosen(PosixIsolator(), "requested")
    own = own_cgroups(proc_cgroup)
    reasons = []
    for cls, setup in ((CgroupsV2Isolator, _v2_hierarchy), (CgroupsV1Isolator, _v1_hierarchies)):
        try:
            return _chosen(cls(setup(root, own, agent_name)), "writable")
        except IsolatorError as error:
            reasons.append(f"{cls.name}: {error}")
    if kind == "cgroups":
        raise IsolatorError("cgroup isolation unavailable: " + "; ".join(reasons))
    return _chosen(PosixIsolator(), "; ".join(reasons))


def _chosen(isolator: Isolator, why: str) -> Isolator:
    hierarchies = getattr(isolator, "hierarchies", {})
    log.info("isolation chosen", isolator=isolator.name, why=why,
             **{f"cgroup_{c or 'unified'}": d for c, d in hierarchies.items()})
    return isolator
