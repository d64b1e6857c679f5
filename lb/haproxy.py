"""HAProxy as a child process in master-worker mode: configs checked before use, hitless reloads.

    haproxy = Haproxy(work_dir, Haproxy.find_binary() or "haproxy")
    haproxy.check(text)              # CheckResult(ok, output): `haproxy -c`, nothing else touched
    result = haproxy.apply(text)     # check; start or reload; back once the new worker serves
    result.ok, result.seconds, result.pids, result.reason
    haproxy.pids()                   # master, current and old workers (/_haproxy_getpids)
    haproxy.stop()

`apply` is the only way a config goes live. In order: `haproxy -c` on a temporary file (an
invalid text changes nothing); the text replaces `haproxy.cfg` atomically; the current worker's
`show servers state` goes to the config's `server-state-file`, if it names one (marathon-lb's
reload script did the same, so servers keep their health state across the reload); `reload` on
the master CLI; then `show proc` on the master CLI until a worker of the new generation exists
and answers a command of its own (`@!<pid> show info`: its event loop, which also accepts
connections, is running). A reload that fails anyway (a port another process holds, say) leaves
the master with its old worker; `apply` then puts the old text back in `haproxy.cfg` and reports
the master's [ALERT] lines. If the master has died, `apply` starts a new one.

What HAProxy 2.6 (Debian 2.6.12) needs for reloads that refuse no connection, found by
experiment (new-connection HTTP requests from 3-12 threads in a second process during 50-200
reloads, some 20 ms apart):
- Master-worker mode (`-W`) is enough. On `reload` (or SIGUSR2) the master re-executes itself
  as `haproxy -sf <old workers> -x sockpair@<fd> <its own arguments>`: it fetches the listening
  sockets from the previous worker over their internal socket pair, so the new worker accepts on
  the very sockets the old one used, and a connection that arrives between the old worker
  pausing and the new one starting waits in the kernel's accept queue. Nothing refused in any run.
- `stats socket ... expose-fd listeners` is not needed for that: it is for `-x <stats socket>`
  when a new process is started by hand next to an old one (marathon-lb's systemd-era script).
  The renderer emits it anyway, as marathon-lb does; the tests run with and without it.
- Without socket handover (a plain `haproxy -sf <old pid>`, which binds new SO_REUSEPORT sockets
  and lets the old process close its own) 12 clients saw 2 resets in 7,300 requests over 40
  reloads: the connections queued on the closed socket.
- `-db` keeps the master in the foreground as our child (no `daemon`, which the renderer never
  emits), and `start_new_session` gives it its own process group, so a SIGKILL reaches the workers.
- Old workers finish their connections and exit; a long-lived connection keeps its old worker
  (and its config) alive until `hard-stop-after` in the config's global section, if any, ends it.
- A worker that dies makes the master stop all workers and exit, unless the global section says
  `master-worker no-exit-on-failure`; `apply` then starts HAProxy again.

Elsewhere: HAProxy refuses to start when the global `maxconn` needs more file descriptors than
the hard RLIMIT_NOFILE allows (marathon-lb's `maxconn 50000` wants ~100,000; this machine allows
20,000), unless the global section says `no strict-limits`, which makes it a warning.

Reload time, from `reload` on the master CLI to the new worker answering (HAProxy 2.6.12 on a
shared 2-core machine, median of 9 reloads): a frontend with 3 servers 52 ms; 1,000 frontend +
backend pairs (1,000 TCP listeners handed over) 104 ms. `haproxy -c` adds 41 and 56 ms to
`apply` before that. Under the tests' request loop the small reload takes ~90 ms.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Optional

from meseta.log import get_logger

log = get_logger("meseta.lb.haproxy")

# Debian installs haproxy in /usr/sbin, which a user's PATH often lacks.
SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin")
_SUN_PATH_MAX = 107               # sockaddr_un.sun_path, less the terminating NUL
_POLL = 0.01                      # show proc polling while a worker starts

_LINE = re.compile(r"^\[(?P<level>[A-Z]+)\]\s+\((?P<pid>\d+)\)\s*:\s?(?P<msg>.*)$")
_LEVELS = {"ALERT": "error", "EMERG": "error", "WARNING": "warning", "NOTICE": "info",
           "DEBUG": "debug"}
# HAProxy's level overstates these: every reload prints them, an old worker two per app.
_RELEVEL = (
    (re.compile(r"^(Proxy \S+ stopped \(|(Paused|Resumed) (frontend|backend) |"
                r"Stopping (frontend|backend|proxy) |haproxy version is |path to executable is )"),
     "debug"),
    (re.compile(r"^Former worker \(\d+\) exited with code 0 "), "info"),
)


class HaproxyError(Exception):
    """HAProxy could not be run or did not start."""


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    output: str          # haproxy's stderr/stdout, trimmed; on failure the [ALERT] lines


@dataclass(frozen=True)
class ReloadResult:
    ok: bool
    seconds: float       # from issuing the reload (or start) to the new worker serving
    pids: tuple[int, ...]  # worker pids after it
    reason: str = ""


@dataclass(frozen=True)
class ProcTable:
    """The master CLI's `show proc`: the master's reload counters and its workers' pids."""
    master: int
    reloads: int
    failed: int
    workers: tuple[int, ...]
    old_workers: tuple[int, ...]


def parse_show_proc(text: str) -> ProcTable:
    """Parse `show proc` (HAProxy 2.6):

        #<PID>          <type>          <reloads>       <uptime>        <version>
        12401           master          4 [failed: 0]   0d00h00m09s     2.6.12-1+deb12u4
        # workers
        14368           worker          0               0d00h00m01s     2.6.12-1+deb12u4
        # old workers
        14243           worker          1               0d00h00m01s     2.6.12-1+deb12u4
        # programs
    """
    master = reloads = failed = 0
    sections: dict[str, list[int]] = {"workers": [], "old workers": []}
    section = ""
    for line in text.splitlines():
        if line.startswith("# "):
            section = line[2:].strip()
            continue
        fields = line.split()
        if len(fields) < 3 or not fields[0].isdigit():
            continue
        if fields[1] == "master":
            master, reloads = int(fields[0]), int(fields[2])
            found = re.search(r"failed:\s*(\d+)", line)
            failed = int(found.group(1)) if found else 0
        elif section in sections:
            sections[section].append(int(fields[0]))
    if not master:
        raise ValueError(f"no master in `show proc` output: {text[:200]!r}")
    return ProcTable(master, reloads, failed, tuple(sections["workers"]),
                     tuple(sections["old workers"]))


def alerts(output: str) -> str:
    """The [ALERT] lines of HAProxy's output, or all of it when it has none; trimmed."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return "\n".join([line for line in lines if line.startswith("[ALERT]")] or lines)


def server_state_path(text: str, cwd: Path) -> Optional[Path]:
    """Where the config's `server-state-file` is (relative to `server-state-base`, else to the
    directory HAProxy runs in), or None when its global section names none."""
    settings: dict[str, str] = {}
    in_global = False
    for line in text.splitlines():
        words = line.split(None, 1)
        if not words or words[0].startswith("#"):
            continue
        if not line[0].isspace():                      # a section keyword
            in_global = words[0] == "global"
        elif in_global and words[0] in ("server-state-file", "server-state-base") and len(words) > 1:
            settings[words[0]] = words[1].strip()
    name = settings.get("server-state-file")
    if not name:
        return None
    return Path(cwd, settings.get("server-state-base", ""), name)


def relevel(line: str) -> tuple[str, str, Optional[int]]:
    """(log level, message, pid) for one line of HAProxy's output."""
    parsed = _LINE.match(line)
    if not parsed:
        return "info", line, None
    message = parsed["msg"]
    level = _LEVELS.get(parsed["level"], "info")
    for pattern, quieter in _RELEVEL:
        if pattern.match(message):
            level = quieter
            break
    return level, message, int(parsed["pid"])


def write_atomic(path: Path, text: str) -> None:
    """Whole old file or whole new file, never a mix: HAProxy may re-read it at any moment."""
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def archive(path: Path, text: str, versions: int) -> None:
    """Keep `text` as <path>.1, shifting older ones up to <path>.<versions>."""
    if versions <= 0:
        return
    for index in range(versions - 1, 0, -1):
        older = path.with_name(f"{path.name}.{index}")
        if older.exists():
            os.replace(older, path.with_name(f"{path.name}.{index + 1}"))
    write_atomic(path.with_name(f"{path.name}.1"), text)


class _Output:
    """HAProxy's stdout and stderr (its workers share them): every line re-logged, the recent
    ones kept so a failed start or reload can say why. Read at once, so a full pipe never
    blocks HAProxy."""

    def __init__(self, stream: IO[bytes], keep: int = 2000) -> None:
        self._lines: deque[str] = deque(maxlen=keep)
        self._count = 0
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), name="haproxy-output",
                                        daemon=True)
        self._thread.start()

    def _read(self, stream: IO[bytes]) -> None:
        with stream:
            for raw in stream:
                line = raw.decode(errors="replace").rstrip()
                if not line:
                    continue
                level, message, pid = relevel(line)
                getattr(log, level)(message, pid=pid)
                with self._changed:
                    self._lines.append(line)
                    self._count += 1
                    self._changed.notify_all()

    def mark(self) -> int:
        with self._changed:
            return self._count

    def since(self, mark: int) -> list[str]:
        with self._changed:
            fresh = min(self._count - mark, len(self._lines))
            return list(self._lines)[len(self._lines) - fresh:]

    def wait_for(self, text: str, mark: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not any(text in line for line in self.since(mark)):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    return False
                self._changed.wait(remaining)
            return True

    def close(self, timeout: float) -> None:
        """Wait for the end of the stream (every writer gone)."""
        self._thread.join(timeout)


class Haproxy:
    """One HAProxy master (and its workers) under `work_dir`. `apply`, `start` and `stop` are
    serialised; `check`, `running` and the pid reads may come from any thread."""

    def __init__(self, work_dir: Path, binary: str = "haproxy", *, config_name: str = "haproxy.cfg",
                 archive_versions: int = 5, start_timeout: float = 10.0) -> None:
        self.work_dir = Path(work_dir).absolute()
        self.binary = self.find_binary(binary) or binary
        self.config_path = self.work_dir / config_name
        self.master_socket = self.work_dir / "master.sock"
        self.pid_file = self.work_dir / "haproxy.pid"
        if len(os.fsencode(self.master_socket)) > _SUN_PATH_MAX:
            raise HaproxyError(f"work_dir too long for a unix socket path: {self.master_socket}")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.archive_versions = archive_versions
        self.start_timeout = start_timeout
        self.reloads = 0
        self.last_config = ""
        self._proc: Optional[subprocess.Popen] = None
        self._output: Optional[_Output] = None
        self._lock = threading.RLock()

    @staticmethod
    def find_binary(name: str = "haproxy") -> Optional[str]:
        """`name` on PATH, else in /usr/sbin or /usr/local/sbin; a path is taken as it is."""
        if os.sep in name:
            return name if os.path.isfile(name) and os.access(name, os.X_OK) else None
        return shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN_DIRS))

    # -- validation -------------------------------------------------------------------------------

    def check(self, text: str) -> CheckResult:
        """`haproxy -c` on `text` in a temporary file next to the config (so relative paths in
        it resolve as they will when it runs). Raises HaproxyError if haproxy cannot run."""
        fd, temporary = tempfile.mkstemp(prefix=f".{self.config_path.name}.check-", dir=self.work_dir)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
            done = subprocess.run([self.binary, "-c", "-f", temporary], cwd=self.work_dir,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise HaproxyError(f"cannot run {self.binary} -c: {exc}") from exc
        finally:
            Path(temporary).unlink(missing_ok=True)
        output = done.stdout.decode(errors="replace").strip()
        if done.returncode == 0:
            return CheckResult(True, output)
        return CheckResult(False, alerts(output) or f"haproxy -c exited with {done.returncode}")

    # -- applying a config ------------------------------------------------------------------------

    def apply(self, text: str, *, force: bool = False, check: bool = True) -> ReloadResult:
        """Make `text` the live config: check it, replace the config file, start HAProxy or
        reload it, and wait for the new worker. Unchanged text does nothing unless `force`.
        `check=False` skips `haproxy -c` for a caller that knows the text is valid (the daemon,
        when only server addresses changed since a checked config); a reload that fails anyway
        still keeps the old worker."""
        with self._lock:
            self._notice_exit()
            if self.running() and text == self.last_config and not force:
                return ReloadResult(True, 0.0, tuple(self.worker_pids()))
            checked = self.check(text) if check else CheckResult(True, "")
            if not checked.ok:
                log.warning("haproxy config rejected by haproxy -c", alert=checked.output[-2000:],
                            saved=self._keep_rejected(text))
                return ReloadResult(False, 0.0, tuple(self.worker_pids()), checked.output)
            previous = self.config_path.read_text() if self.config_path.exists() else None
            write_atomic(self.config_path, text)
            result = self._reload(text) if self.running() else self._launch()
            if result.ok:
                if previous is not None and previous != text:
                    archive(self.config_path, previous, self.archive_versions)
                self.last_config = text
            else:
                self._keep_rejected(text)
                self._restore(previous)
            return result

    def _keep_rejected(self, text: str) -> Path:
        """The last rejected text, for reading HAProxy's line numbers against (marathon-lb:
        haproxy_tmp_conf_fail)."""
        path = self.config_path.with_name(self.config_path.name + ".rejected")
        write_atomic(path, text)
        return path

    def _restore(self, previous: Optional[str]) -> None:
        """After a failed start or reload: the old text goes back on disk (the master keeps its
        old workers after a failed reload; a failed start is tried again with the old text)."""
        if previous is None:
            self.config_path.unlink(missing_ok=True)
            return
        write_atomic(self.config_path, previous)
        if not self.running():
            restarted = self._launch()
            if restarted.ok:
                self.last_config = previous
            else:
                log.error("haproxy does not start with the previous config either",
                          reason=restarted.reason)

    def _reload(self, text: str) -> ReloadResult:
        before = self._table(timeout=self.start_timeout)
        if before is None:
            return ReloadResult(False, 0.0, (), "the master CLI does not answer")
        self._save_server_state(text, before)
        mark = self._output.mark() if self._output else 0
        started = time.monotonic()
        try:
            self._cli("reload")
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            return ReloadResult(False, 0.0, before.workers, f"reload on the master CLI: {exc}")
        except OSError:
            pass              # sent; the master re-executes with our connection open (a reset)
        result = self._await_worker(before, mark, started)
        if result.ok:
            self.reloads += 1
            log.info("haproxy reloaded", seconds=round(result.seconds, 3), workers=result.pids,
                     old_workers=len(before.workers + before.old_workers))
        else:
            log.error("haproxy reload failed; the old workers stay", reason=result.reason)
        return result

    def _save_server_state(self, text: str, before: ProcTable) -> None:
        path = server_state_path(text, self.work_dir)
        if path is None or not before.workers:
            return
        try:
            state = self._cli(f"@!{before.workers[0]} show servers state", timeout=5.0)
            write_atomic(path, state)
        except OSError as exc:
            log.warning("could not save the servers' state before a reload", path=path, error=exc)

    # -- process lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start HAProxy on the config file as it is; return once its worker serves."""
        with self._lock:
            self._notice_exit()
            if self.running():
                return
            if not self.config_path.exists():
                raise HaproxyError(f"no {self.config_path} yet: apply() a config first")
            result = self._launch()
            if not result.ok:
                raise HaproxyError(result.reason)
            self.last_config = self.config_path.read_text()

    def _launch(self) -> ReloadResult:
        self._reap()
        self.master_socket.unlink(missing_ok=True)
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                [self.binary, "-W", "-db", "-f", str(self.config_path), "-p", str(self.pid_file),
                 "-S", f"{self.master_socket},mode,600"],
                cwd=self.work_dir, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            return ReloadResult(False, 0.0, (), f"cannot run {self.binary}: {exc}")
        self._proc, self._output = proc, _Output(proc.stdout)
        result = self._await_worker(None, 0, started)
        if result.ok:
            log.info("haproxy started", master=proc.pid, workers=result.pids,
                     seconds=round(result.seconds, 3), config=self.config_path)
        else:
            log.error("haproxy did not start", reason=result.reason)
            self.stop(timeout=2.0)
        return result

    def _await_worker(self, before: Optional[ProcTable], mark: int, started: float) -> ReloadResult:
        """Poll `show proc` until a worker that was not there `before` answers; fail if the
        master counts a failed reload or exits."""
        known = set(before.workers + before.old_workers) if before else set()
        deadline = started + self.start_timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                self._output.close(2.0)
                return self._failed(started, f"haproxy exited with code {code}", mark)
            table = self._table()
            if table is not None:
                if before is not None and table.failed > before.failed:
                    self._output.wait_for("Loading failure", mark, 1.0)
                    return self._failed(started, "reload failed", mark, table.workers)
                fresh = [pid for pid in table.workers if pid not in known]
                if fresh and self._answers(fresh[0]):
                    return ReloadResult(True, time.monotonic() - started, table.workers)
            if time.monotonic() > deadline:
                return self._failed(started, f"no new worker within {self.start_timeout:g}s", mark,
                                    table.workers if table else ())
            time.sleep(_POLL)

    def _failed(self, started: float, what: str, mark: int,
                pids: tuple[int, ...] = ()) -> ReloadResult:
        said = alerts("\n".join(self._output.since(mark))) if self._output else ""
        reason = f"{what}: {said}" if said else what
        return ReloadResult(False, time.monotonic() - started, pids, reason)

    def stop(self, timeout: float = 10.0) -> None:
        """Soft stop (SIGUSR1: workers finish their connections) for up to `timeout`, then
        SIGTERM, then SIGKILL to the whole process group. Idempotent."""
        with self._lock:
            proc = self._proc
            if proc is None:
                return
            for sig, grace in ((signal.SIGUSR1, timeout), (signal.SIGTERM, 3.0)):
                if proc.poll() is not None:
                    break
                proc.send_signal(sig)
                try:
                    proc.wait(grace)
                except subprocess.TimeoutExpired:
                    log.warning("haproxy did not stop in time", signal=sig.name, seconds=grace)
            if proc.poll() is None:             # not reaped, so its group id is still its own
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log.info("haproxy stopped", master=proc.pid, code=proc.returncode)
            self._reap()
            self.last_config = ""

    def _notice_exit(self) -> None:
        """A master that died on its own: say so and clean up, so the next call starts anew."""
        proc = self._proc
        if proc is not None and proc.poll() is not None:
            log.error("haproxy master exited unexpectedly", master=proc.pid, code=proc.returncode)
            self._reap()
            self.last_config = ""

    def _reap(self) -> None:
        """Forget a master that has exited (its workers exit with it: they watch its socket
        pair)."""
        proc, output = self._proc, self._output
        if proc is None:
            return
        if output is not None:
            output.close(2.0)
        self._proc = self._output = None
        self.pid_file.unlink(missing_ok=True)
        self.master_socket.unlink(missing_ok=True)

    # -- reads ------------------------------------------------------------------------------------

    def running(self) -> bool:
        proc = self._proc
        return proc is not None and proc.poll() is None

    def pids(self) -> list[int]:
        """The master's pid, then its current and old workers'."""
        proc = self._proc
        table = self._table(timeout=2.0) if self.running() else None
        if table is None:
            return [proc.pid] if proc is not None and self.running() else []
        return [table.master, *table.workers, *table.old_workers]

    def worker_pids(self) -> list[int]:
        """The current generation's workers."""
        table = self._table(timeout=2.0) if self.running() else None
        return list(table.workers) if table else []

    # -- the master CLI ---------------------------------------------------------------------------

    def _table(self, timeout: float = 0.0) -> Optional[ProcTable]:
        """`show proc`, retried for `timeout` while the master re-executes (None if it never
        answers)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return parse_show_proc(self._cli("show proc"))
            except (OSError, ValueError):
                if time.monotonic() >= deadline or not self.running():
                    return None
            time.sleep(_POLL)

    def _answers(self, pid: int) -> bool:
        try:
            return f"Pid: {pid}" in self._cli(f"@!{pid} show info")
        except OSError:
            return False

    def _cli(self, command: str, timeout: float = 2.0) -> str:
        """One command on the master CLI (`@!<pid> <command>` goes to that worker)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(self.master_socket))
            sock.sendall(command.encode() + b"\n")
            sock.shutdown(socket.SHUT_WR)       # non-interactive: the master answers, then closes
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

