"""The command containerizer: runs a task's command in its sandbox, as Mesos's command executor.

    spec = LaunchSpec(container_id, sandbox, value="echo hi", environment={...}, mem_mb=64, cpus=1)
    container = launch(spec, isolator)     # sandbox + stdout/stderr files + process, or LaunchError
    poller.register(container, zmq.POLLIN)  # its pidfd turns readable when the command exits
    ...
    info = container.reap()                 # None while it runs; ExitInfo once, then the same
    state, reason, message = terminal_state(info, killed_by_request, limitation)

Every command runs in its own session and process group, so it outlives an agent restart and a
kill reaches whatever it started: `signal()` goes to the whole group. The agent sends SIGTERM,
then SIGKILL after the grace period on its own timer; nothing here sleeps or blocks.

The command is the child of a waiter, a POSIX shell that is the group's leader (the container's
pid) and writes the command's exit status to `<sandbox>/.meseta-exit-status` (printf, then mv)
before it exits with that status. Only a parent learns how a process ended, and the agent may
be down when a task ends: the waiter is the parent that stays. It survives the SIGTERM of a
kill (a trap, which its child does not inherit) long enough to record the status; SIGKILL ends
it with the rest of the group, and the agent, if it is there, sees that. A shell reports a
command killed by signal N as 128+N, so a status above 128 reads as that signal (`exit_info`).
One gap: a SIGTERM that arrives while the waiter forks its command (within a millisecond or so
of the launch) can be lost by both; the SIGKILL at the end of the grace period still ends them.

When the waiter exits, `reap()` SIGKILLs what is left in its group before collecting its
status (Mesos destroys the container at that point too). The leader is still a zombie then, so
its pid cannot have been reused as a group id: the kill reaches only the task's processes.

A restarted agent takes its tasks back with `adopt()` (pid + start time, to refuse a reused
pid). They are no longer its children; their status comes from the waiter's record, which
`recorded_exit()` also reads for a task that ended while the agent was down.
"""
from __future__ import annotations

import os
import pwd
import select
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import NamedTuple

from meseta import proto
from meseta.agent.isolation import Isolator, Limitation

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class LaunchError(Exception):
    """The task could not be started; the message says why (it becomes the TASK_FAILED text)."""


@dataclass
class LaunchSpec:
    container_id: str
    sandbox: str                       # created here, parents too
    value: str                         # the shell command, or the executable when shell is False
    shell: bool = True
    # argv when shell is False. The waiter runs it by path (POSIX sh has no `exec -a`), so the
    # command's argv[0] is its path; arguments[0] only names the executable when value does not.
    arguments: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)   # on top of the base environment
    user: str | None = None            # honoured when the agent runs as root
    mem_mb: float | None = None        # limits handed to the isolator
    cpus: float | None = None


@dataclass(frozen=True)
class ExitInfo:
    code: int | None                   # the waiter's exit status (a shell's $?); None if killed
    signal: int | None                 # the signal that ended the command, if one did
    message: str                       # Mesos's text: "Command exited with status 3"


EXIT_UNKNOWN = ExitInfo(None, None, "Command exited while the agent was away; status unknown")
EXIT_STATUS_FILE = ".meseta-exit-status"

# The waiter: `sh -c WAITER meseta-wait STATUS_PATH ARGV...`. Its own stderr goes to /dev/null
# (a shell prints "Terminated" when its foreground child is killed), the command's is the
# task's: a subshell sets it and execs ARGV, with the default action for every signal the
# waiter traps. Nothing is spliced into the script, so no quoting can go wrong.
_WAITER = ('exec 3>&2 2>/dev/null; trap : TERM INT QUIT HUP; f=$1; shift; '
           '(exec 2>&3 3>&- "$@"); s=$?; '
           'printf "%d\\n" "$s" > "$f.tmp" && command -p mv -f "$f.tmp" "$f"; exit "$s"')
_WAITER_NAME = "meseta-wait"


def exit_info(status: int) -> ExitInfo:
    """The waiter's exit status as Mesos's command executor reports it (WSTRINGIFY). Negative:
    the waiter itself was killed by that signal (a Popen returncode). 129..192: the shell's way
    to say its command was killed by signal status-128."""
    if status < 0:
        code, number = None, -status
    elif 128 < status <= 128 + signal.SIGRTMAX:
        code, number = status, status - 128
    else:
        return ExitInfo(status, None, f"Command exited with status {status}")
    name = signal.strsignal(number) or f"Unknown signal {number}"
    return ExitInfo(code, number, f"Command terminated with signal {name}")


def recorded_exit(sandbox: str) -> ExitInfo | None:
    """How the command in `sandbox` ended, as its waiter recorded it; None without a record."""
    try:
        with open(os.path.join(sandbox, EXIT_STATUS_FILE)) as handle:
            return exit_info(int(handle.read().strip()))
    except (OSError, ValueError):
        return None


class TerminalStatus(NamedTuple):
    state: str
    reason: str | None
    message: str


def terminal_state(info: ExitInfo, killed_by_request: bool,
                   limitation: Limitation | None = None) -> TerminalStatus:
    """The final task status, in Mesos's order: a container limitation wins; then a command
    that exited 0 FINISHED (even after a kill, as Mesos's executor checks WSUCCEEDED first);
    then a requested kill is KILLED; anything else FAILED."""
    if limitation is not None:
        return TerminalStatus(proto.TASK_FAILED, limitation.reason, limitation.message)
    if info.code == 0:
        return TerminalStatus(proto.TASK_FINISHED, None, info.message)
    if killed_by_request:
        return TerminalStatus(proto.TASK_KILLED, None, info.message)
    if info is EXIT_UNKNOWN:
        return TerminalStatus(proto.TASK_FAILED, proto.REASON_EXECUTOR_TERMINATED, info.message)
    return TerminalStatus(proto.TASK_FAILED, None, info.message)


class Container:
    """A running task command. `fileno()` is a pidfd, readable once the command has exited."""

    def __init__(self, container_id: str, pid: int, start_time: float, sandbox: str,
                 popen: subprocess.Popen | None = None) -> None:
        self.container_id = container_id
        self.pid = pid
        self.pgid = pid                # start_new_session: the leader's pid names group & session
        self.start_time = start_time   # seconds after boot, checked by adopt()
        self.sandbox = sandbox
        self._popen = popen            # None when adopted: not our child
        self._pidfd = os.pidfd_open(pid)
        self._exit: ExitInfo | None = None

    def fileno(self) -> int:
        if self._pidfd < 0:
            raise ValueError(f"container {self.container_id}: pidfd closed")
        return self._pidfd

    @property
    def reaped(self) -> bool:
        return self._exit is not None

    def reap(self) -> ExitInfo | None:
        """Non-blocking. None while the command runs; once it has exited, kills what is left of
        its group, collects its status and closes the pidfd (unregister it from pollers)."""
        if self._exit is not None:
            return self._exit
        if not self._has_exited():
            return None
        # A child leader is still a zombie here, so its pid cannot name another group yet.
        # (An adopted one is reaped by init; its pid is free only from then on, for moments.)
        self._killpg(signal.SIGKILL)
        if self._popen is not None:
            returncode = self._popen.poll()
            if returncode is None:
                return None
            self._exit = exit_info(returncode)
        else:   # not our child: the waiter's record, unless a SIGKILL took the waiter too
            self._exit = recorded_exit(self.sandbox) or EXIT_UNKNOWN
        self.close()
        return self._exit

    def signal(self, sig: int) -> None:
        """Send `sig` to the command's whole process group; a no-op once reaped."""
        if self._exit is None:
            self._killpg(sig)

    def close(self) -> None:
        """Stop watching the process without reaping it (agent shutdown: tasks keep running)."""
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1

    def __del__(self) -> None:
        if getattr(self, "_pidfd", -1) >= 0:
            self.close()

    def _has_exited(self) -> bool:
        if self._popen is not None:   # WNOWAIT: look, leave the zombie for Popen to collect
            return os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        if self._pidfd < 0:
            return False
        return bool(select.select([self._pidfd], [], [], 0)[0])

    def _killpg(self, sig: int) -> None:
        try:
            os.killpg(self.pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def __repr__(self) -> str:
        return f"Container({self.container_id!r}, pid={self.pid})"


# --------------------------------------------------------------------------- launching


def task_environment(spec: LaunchSpec) -> dict[str, str]:
    """A minimal base environment with the caller's variables on top."""
    env = {
        "PATH": os.environ.get("PATH", DEFAULT_PATH),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "HOME": spec.sandbox,
        "MESOS_SANDBOX": spec.sandbox,
        "MESOS_DIRECTORY": spec.sandbox,
    }
    env.update(spec.environment)
    return env


def launch(spec: LaunchSpec, isolator: Isolator) -> Container:
    """Create the sandbox and start the command under `isolator`; raises LaunchError."""
    env = task_environment(spec)
    account = _account(spec.user)
    command = _command(spec, env["PATH"])
    _make_sandbox(spec.sandbox, account)
    try:
        prefix = isolator.prepare(spec.container_id, spec.mem_mb, spec.cpus,
                                  uid=account.pw_uid if account else None)
    except OSError as error:
        isolator.cleanup(spec.container_id)
        raise LaunchError(f"Failed to isolate container: {error}") from None
    status_path = os.path.join(spec.sandbox, EXIT_STATUS_FILE)
    # The isolator's wrapper (if any) execs the waiter in place; the waiter forks the command.
    argv = prefix + ["/bin/sh", "-c", _WAITER, _WAITER_NAME, status_path, *command]
    try:
        popen = _spawn(argv, spec.sandbox, env, account)
    except OSError as error:
        isolator.cleanup(spec.container_id)
        raise LaunchError(f"Failed to launch command: {error}") from None
    start_time = process_start_time(popen.pid) or 0.0   # 0: gone already; reap() says how
    return Container(spec.container_id, popen.pid, start_time, spec.sandbox, popen)


def adopt(container_id: str, pid: int, start_time: float, sandbox: str) -> Container | None:
    """The container of a task that survived an agent restart, or None if it is gone (its pid
    is free, or taken by a process started at another time)."""
    try:
        container = Container(container_id, pid, start_time, sandbox)
    except ProcessLookupError:
        return None
    if process_start_time(pid) != start_time:   # asked once the pidfd holds on to the process
        container.close()
        return None
    return container


def process_start_time(pid: int) -> float | None:
    """When `pid` started, in seconds after boot (/proc/<pid>/stat, field 22): unlike a wall
    clock time it never moves, so it tells a reused pid from the same process across restarts."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[19]) / _CLOCK_TICKS


def running_for(start_time: float) -> float:
    """Seconds since a process started at `start_time` (seconds after boot)."""
    return time.clock_gettime(time.CLOCK_BOOTTIME) - start_time


def _command(spec: LaunchSpec, path: str) -> list[str]:
    """The command's argv, its executable by path. The executable is resolved now, so a missing
    one is a LaunchError rather than an exit status 127."""
    if spec.shell:
        return ["/bin/sh", "-c", spec.value]
    if not spec.value:
        raise LaunchError("Failed to launch command: the command value is empty")
    if "/" in spec.value:
        found = os.path.isfile(spec.value) and os.access(spec.value, os.X_OK)
        executable = spec.value if found else None
    else:
        executable = shutil.which(spec.value, path=path)
    if executable is None:
        raise LaunchError(f"Failed to launch command: {spec.value!r} not found or not executable")
    return [executable, *spec.arguments[1:]]


def _account(user: str | None) -> pwd.struct_passwd | None:
    """The account to run as: only when the agent is root and the task names another user."""
    if not user or os.geteuid() != 0:
        return None
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        raise LaunchError(f"Failed to launch command: unknown user {user!r}") from None
    return None if account.pw_uid == os.geteuid() else account


def _make_sandbox(sandbox: str, account: pwd.struct_passwd | None) -> None:
    try:
        os.makedirs(sandbox, exist_ok=True)
        for name in ("stdout", "stderr"):
            with open(os.path.join(sandbox, name), "ab"):
                pass
        if account is not None:
            for path in (sandbox, os.path.join(sandbox, "stdout"), os.path.join(sandbox, "stderr")):
                os.chown(path, account.pw_uid, account.pw_gid)
    except OSError as error:
        raise LaunchError(f"Failed to create sandbox {sandbox}: {error}") from None


def _spawn(argv: list[str], sandbox: str, env: dict[str, str],
           account: pwd.struct_passwd | None) -> subprocess.Popen:
    # No preexec_fn: it would turn vfork into fork, and launches are a hot path.
    switch = {}
    if account is not None:
        switch = {"user": account.pw_uid, "group": account.pw_gid,
                  "extra_groups": os.getgrouplist(account.pw_name, account.pw_gid)}
    with open(os.path.join(sandbox, "stdout"), "ab") as out, \
            open(os.path.join(sandbox, "stderr"), "ab") as err:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err, cwd=sandbox, env=env, close_fds=True,
                                start_new_session=True, **switch)
