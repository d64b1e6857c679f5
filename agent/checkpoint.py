"""The agent's checkpoint: what a restarted agent needs to take its tasks back (Mesos's
`<work_dir>/meta`, docs/agent-recovery.md). Pure file IO on the caller's thread.

    <work_dir>/meta/
        boot_id                                      the host boot the rest belongs to
        agent_id                                     the id the master gave this agent
        frameworks/<fid>/tasks/<tid>@<cid>           one TaskCheckpoint per run of a task
        frameworks/<fid>/tasks/<tid>@<cid>.acks      uuids of its updates acknowledged since

One flat file per run (a container id is a uuid, so the last '@' splits the name): a launch
creates no directory, and a task's ids can be read from its file name even when its content
cannot be.

Every file is written to a temporary name and renamed over the old one: a crash of the agent
leaves the old file or the new one, never half of one, and the page cache keeps it for the
next start. fsync adds durability across a crash of the host only, after which the boot id
differs and recover() discards every task unread (their processes died with the host). So the
boot id and agent id are fsynced (file, then directory), which is cheap, and task records,
which are written on every launch and status change, are not: their fsyncs would halve the
agent's launch rate on a busy disk and protect nothing. A task file is msgpack with a CRC32, so
a truncated or damaged file is detected instead of misread.

An acknowledgement is appended to the run's `.acks` journal (a line of hex) instead of
rewriting its record: two of a task's four checkpoint writes were acknowledgements, and a
rename over an existing file costs the file system far more than an append (Mesos journals
acknowledgements the same way, in `task.updates`). Recovery drops the journalled uuids from the
record's pending updates; the next record written makes the journal moot and removes it.

    checkpoint = Checkpoint(work_dir)
    recovered = checkpoint.recover(current_boot_id(), strict=True)   # or CheckpointError
    checkpoint.save_boot_id(current_boot_id())
    checkpoint.save_agent_id("M-S0")
    checkpoint.save_task(record)       # before the launch, and on changes after it
    checkpoint.save_ack(framework_id, task_id, container_id, uuid)   # an update acknowledged
    checkpoint.remove_task(framework_id, task_id, container_id)   # its last update acknowledged
"""
from __future__ import annotations

import os
import shutil
import zlib
from dataclasses import dataclass, field
from typing import Optional

import msgpack

from meseta import proto
from meseta.log import get_logger

log = get_logger("meseta.agent.checkpoint")

FORMAT = 1
ACKS = ".acks"                  # suffix of a run's acknowledgement journal
BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read; the text names the file and says what to do."""


@dataclass(slots=True)
class TaskCheckpoint:
    """One run of a task, as the agent must know it after a restart."""
    framework: proto.FrameworkInfo
    task: proto.TaskInfo
    container_id: str
    sandbox: str
    state: str
    pid: Optional[int] = None                 # None until the command has been spawned
    start_time: Optional[float] = None        # the pid's start time: a reused pid differs
    kill_requested: bool = False
    kill_reason: Optional[list[str]] = None   # [state, reason, message] overriding the exit
    pending: list[proto.TaskStatus] = field(default_factory=list)   # unacknowledged, oldest first

    @property
    def framework_id(self) -> str:
        return self.framework.id or ""


@dataclass(frozen=True, slots=True)
class BrokenTask:
    """A task file that cannot be read; its ids come from its name."""
    framework_id: str
    task_id: str
    container_id: str
    path: str
    problem: str


@dataclass(slots=True)
class Recovered:
    agent_id: Optional[str] = None
    tasks: list[TaskCheckpoint] = field(default_factory=list)
    broken: list[BrokenTask] = field(default_factory=list)
    rebooted: bool = False                    # the checkpoint belongs to an earlier boot


def current_boot_id(path: str = BOOT_ID_PATH) -> str:
    with open(path) as handle:
        return handle.read().strip()


def encode_task(record: TaskCheckpoint) -> bytes:
    body = proto.pack(record)
    return msgpack.packb([FORMAT, zlib.crc32(body), body], use_bin_type=True)


def decode_task(data: bytes) -> TaskCheckpoint:
    """The record in `data`, or CheckpointError saying what is wrong with it."""
    try:
        version, crc, body = msgpack.unpackb(data, raw=False)
    except Exception as exc:   # msgpack raises several unrelated types; so does unpacking
        raise CheckpointError(f"not a checkpoint record ({exc})") from None
    if version != FORMAT:
        raise CheckpointError(f"format {version!r}, this agent reads format {FORMAT}")
    if not isinstance(body, bytes) or zlib.crc32(body) != crc:
        raise CheckpointError("checksum mismatch (the file is damaged)")
    try:
        return proto.unpack(TaskCheckpoint, body)
    except (proto.ProtocolError, TypeError) as exc:
        raise CheckpointError(f"invalid record: {exc}") from None


class Checkpoint:
    def __init__(self, work_dir: str) -> None:
        self.meta = os.path.join(work_dir, "meta")

    # -- agent ----------------------------------------------------------------------------------

    def save_boot_id(self, boot_id: str) -> None:
        write_atomic(os.path.join(self.meta, "boot_id"), (boot_id + "\n").encode(), durable=True)

    def save_agent_id(self, agent_id: str) -> None:
        write_atomic(os.path.join(self.meta, "agent_id"), (agent_id + "\n").encode(), durable=True)

    def forget(self) -> None:
        """Drop the agent id and every task: the next start registers as a new agent."""
        for name in ("agent_id", "frameworks"):
            path = os.path.join(self.meta, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.unlink(path)
        if os.path.isdir(self.meta):
            _fsync_dir(self.meta)

    # -- tasks ----------------------------------------------------------------------------------

    def task_path(self, framework_id: str, task_id: str, container_id: str) -> str:
        return os.path.join(self.meta, "frameworks", framework_id, "tasks",
                            f"{task_id}@{container_id}")

    def save_task(self, record: TaskCheckpoint) -> None:
        """Write the run's record; its pending updates are the truth from now on, so its
        acknowledgement journal goes."""
        path = self.task_path(record.framework_id, record.task.task_id, record.container_id)
        write_atomic(path, encode_task(record), durable=False)
        _unlink(path + ACKS)

    def save_ack(self, framework_id: str, task_id: str, container_id: str, uuid: bytes) -> None:
        """Journal that the run's update `uuid` was acknowledged (an append, not a rewrite)."""
        path = self.task_path(framework_id, task_id, container_id) + ACKS
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, uuid.hex().encode() + b"\n")   # one write: a crash tears the last line
        finally:
            os.close(fd)

    def remove_task(self, framework_id: str, task_id: str, container_id: str) -> None:
        """Remove a run's files, and its framework's directories once they are empty."""
        path = self.task_path(framework_id, task_id, container_id)
        _unlink(path + ACKS)
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
        tasks = os.path.dirname(path)
        for directory in (tasks, os.path.dirname(tasks)):
            try:
                os.rmdir(directory)
            except OSError:
                return

    # -- recovery -------------------------------------------------------------------------------

    def recover(self, boot_id: str, strict: bool = True) -> Recovered:
        """What the last run of this agent left. A checkpoint from another boot is reported as
        such (its processes are gone). Strict: the first unreadable file raises CheckpointError;
        otherwise it is listed in `broken` and the rest is recovered."""
        if not os.path.isdir(self.meta):
            return Recovered()
        _remove_temporaries(self.meta)
        if _read_text(os.path.join(self.meta, "boot_id")) != boot_id:
            return Recovered(rebooted=True)
        recovered = Recovered()
        agent_id_path = os.path.join(self.meta, "agent_id")
        agent_id = _read_text(agent_id_path)
        if agent_id is not None and not proto.valid_id(agent_id):
            self._broken(strict, agent_id_path, f"invalid agent id {agent_id!r}")
            agent_id = None
        recovered.agent_id = agent_id
        for framework_id, name, path in self._task_files():
            task_id, at, container_id = name.rpartition("@")
            if not (at and proto.valid_id(task_id) and proto.valid_id(container_id)):
                self._broken(strict, path, "its name is not <task id>@<container id>")
                log.error("skipping a checkpoint file that names no task", path=path)
                continue
            try:
                with open(path, "rb") as handle:
                    record = decode_task(handle.read())
            except (CheckpointError, OSError) as exc:
                self._broken(strict, path, str(exc))
                recovered.broken.append(BrokenTask(framework_id, task_id, container_id, path,
                                                   str(exc)))
                continue
            if (record.framework_id, record.task.task_id, record.container_id) != (
                    framework_id, task_id, container_id):
                problem = "its ids do not match its path"
                self._broken(strict, path, problem)
                recovered.broken.append(BrokenTask(framework_id, task_id, container_id, path,
                                                   problem))
                continue
            acked = _read_acks(path + ACKS)
            if acked:
                record.pending = [s for s in record.pending if s.uuid not in acked]
            recovered.tasks.append(record)
        return recovered

    @staticmethod
    def _broken(strict: bool, path: str, problem: str) -> None:
        if strict:
            raise CheckpointError(
                f"checkpoint file {path} is unreadable: {problem}. Remove it (its task will be "
                f"reported lost), or start with --strict=false to recover everything else")

    def _task_files(self):
        """(framework_id, file name, path) of every task file, sorted."""
        frameworks = os.path.join(self.meta, "frameworks")
        for framework_id in _listdir(frameworks, directories=True):
            tasks = os.path.join(frameworks, framework_id, "tasks")
            for name in _listdir(tasks, directories=False):
                if not name.endswith(ACKS):             # read with its run's record
                    yield framework_id, name, os.path.join(tasks, name)


# --------------------------------------------------------------------------- file helpers

def write_atomic(path: str, data: bytes, durable: bool) -> None:
    """Write `<path>.tmp` and rename it over `path`: a reader sees the old content or the new,
    never a mix. `durable`: fsync the file before the rename and its directory (new ones too)
    after, so that the new content also survives a crash of the host."""
    directory = os.path.dirname(path)
    _makedirs(directory, durable)
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(path + ".tmp", path)
    if durable:
        _fsync_dir(directory)


def _makedirs(directory: str, durable: bool) -> None:
    if os.path.isdir(directory):
        return
    parent = os.path.dirname(directory)
    _makedirs(parent, durable)
    try:
        os.mkdir(directory, 0o755)
    except FileExistsError:
        return
    if durable:
        _fsync_dir(parent)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _read_acks(path: str) -> set[bytes]:
    """The uuids in an acknowledgement journal; a torn last line (a crash mid-append) is not
    one, and an unreadable journal acknowledges nothing (those updates are only sent again)."""
    try:
        with open(path, "rb") as handle:
            lines = handle.read().split(b"\n")
    except FileNotFoundError:
        return set()
    except OSError as exc:
        log.error("cannot read an acknowledgement journal", path=path, error=str(exc))
        return set()
    acked = set()
    for line in lines[:-1]:                         # the part after the last newline is torn
        try:
            acked.add(bytes.fromhex(line.decode("ascii")))
        except ValueError:
            log.error("skipping a damaged acknowledgement", path=path)
    return acked


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_text(path: str) -> Optional[str]:
    try:
        with open(path, "rb") as handle:
            text = handle.read().decode("utf-8", "replace").strip()
    except FileNotFoundError:
        return None
    return text


def _listdir(directory: str, directories: bool) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(directory)
                      if e.is_dir(follow_symlinks=False) == directories)
    except FileNotFoundError:
        return []


def _remove_temporaries(meta: str) -> None:
    """Leftovers of writes a crash interrupted: the renamed-over files are the truth."""
    for root, _, files in os.walk(meta):
        for name in files:
            if name.endswith(".tmp"):
                os.unlink(os.path.join(root, name))

