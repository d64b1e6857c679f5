"""The native wire protocol: every message Meseta peers exchange over ZeroMQ.

One msgpack map per frame with a `type` tag. Messages are dataclasses grouped by direction;
nested values are dataclasses too (or `Resources`), converted by one small codec at the bottom.
Names follow Mesos (agent, framework, offer, task, TASK_RUNNING, REASON_*).

Allowed flows (who may send what):

    agent     -> master     register_agent, reregister_agent, status_update, heartbeat
    master    -> agent      agent_registered, run_task, kill_task, status_update_ack,
                            shutdown_framework, framework_to_executor, error, heartbeat
    framework -> master     subscribe, accept, decline, revive, suppress, kill, acknowledge,
                            reconcile, message, teardown, heartbeat
    master    -> framework  subscribed, offers, rescind, update, framework_message, failure,
                            error, heartbeat

The first message of every peer (register_agent, reregister_agent, subscribe) carries
`protocol_version`; the master refuses any other version with an `error` that says why.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, NewType, Optional, Union

import msgpack

from meseta.resources import Resources

PROTOCOL_VERSION = 1
MESOS_VERSION = "1.11.0"       # what we answer as /version: pymesos int()s every part

AgentId = NewType("AgentId", str)
FrameworkId = NewType("FrameworkId", str)
OfferId = NewType("OfferId", str)
TaskId = NewType("TaskId", str)

# Task states (Mesos names). STAGING is master-internal; LOST may resurrect if an agent returns.
TASK_STAGING = "TASK_STAGING"
TASK_STARTING = "TASK_STARTING"
TASK_RUNNING = "TASK_RUNNING"
TASK_KILLING = "TASK_KILLING"
TASK_FINISHED = "TASK_FINISHED"
TASK_FAILED = "TASK_FAILED"
TASK_KILLED = "TASK_KILLED"
TASK_ERROR = "TASK_ERROR"
TASK_LOST = "TASK_LOST"
TASK_DROPPED = "TASK_DROPPED"
TASK_UNREACHABLE = "TASK_UNREACHABLE"
TASK_GONE = "TASK_GONE"
TASK_GONE_BY_OPERATOR = "TASK_GONE_BY_OPERATOR"
TASK_UNKNOWN = "TASK_UNKNOWN"
TASK_STATES = (TASK_STAGING, TASK_STARTING, TASK_RUNNING, TASK_KILLING, TASK_FINISHED,
               TASK_FAILED, TASK_KILLED, TASK_ERROR, TASK_LOST, TASK_DROPPED,
               TASK_UNREACHABLE, TASK_GONE, TASK_GONE_BY_OPERATOR, TASK_UNKNOWN)
TERMINAL_STATES = frozenset({TASK_FINISHED, TASK_FAILED, TASK_KILLED, TASK_ERROR, TASK_LOST,
                             TASK_DROPPED, TASK_GONE, TASK_GONE_BY_OPERATOR})

SOURCE_MASTER = "SOURCE_MASTER"
SOURCE_AGENT = "SOURCE_AGENT"
SOURCE_EXECUTOR = "SOURCE_EXECUTOR"

REASON_COMMAND_EXECUTOR_FAILED = "REASON_COMMAND_EXECUTOR_FAILED"
REASON_CONTAINER_LIMITATION_MEMORY = "REASON_CONTAINER_LIMITATION_MEMORY"
REASON_CONTAINER_LAUNCH_FAILED = "REASON_CONTAINER_LAUNCH_FAILED"
REASON_EXECUTOR_TERMINATED = "REASON_EXECUTOR_TERMINATED"
REASON_FRAMEWORK_REMOVED = "REASON_FRAMEWORK_REMOVED"
REASON_INVALID_OFFERS = "REASON_INVALID_OFFERS"
REASON_RECONCILIATION = "REASON_RECONCILIATION"
REASON_AGENT_REMOVED = "REASON_AGENT_REMOVED"
REASON_AGENT_UNKNOWN = "REASON_AGENT_UNKNOWN"
REASON_AGENT_RESTARTED = "REASON_AGENT_RESTARTED"
REASON_TASK_INVALID = "REASON_TASK_INVALID"
REASON_TASK_UNKNOWN = "REASON_TASK_UNKNOWN"
REASON_TASK_KILLED_DURING_LAUNCH = "REASON_TASK_KILLED_DURING_LAUNCH"
REASON_MAX_COMPLETION_TIME_REACHED = "REASON_MAX_COMPLETION_TIME_REACHED"
REASON_TASK_HEALTH_CHECK_STATUS_UPDATED = "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED"

# Framework capabilities (Mesos names).
PARTITION_AWARE = "PARTITION_AWARE"
TASK_KILLING_STATE = "TASK_KILLING_STATE"
MULTI_ROLE = "MULTI_ROLE"


def valid_id(value: str) -> bool:
    """Mesos's ID rule (validateID): 1-255 printable characters, not '.' or '..', no '/' or '\\'.
    Ids become path segments of sandboxes, so both master and agent check them."""
    return (isinstance(value, str) and 0 < len(value) <= 255 and value not in (".", "..")
            and not any(c in value for c in "/\\") and value.isprintable())


class ProtocolError(ValueError):
    """A frame that is not a valid message; the text says what is wrong."""


# ---------------------------------------------------------------------------------------------
# Shared records


@dataclass(slots=True)
class CommandInfo:
    value: str = ""
    shell: bool = True
    arguments: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    uris: list[dict[str, Any]] = field(default_factory=list)
    user: Optional[str] = None


@dataclass(slots=True)
class HTTPCheckInfo:
    port: int
    path: str = "/"
    scheme: str = "http"                  # "https": TLS, certificate not verified
    statuses: list[int] = field(default_factory=list)   # healthy codes; empty: 200-399
    protocol: str = "IPv4"                # IPv6: the check goes to ::1


@dataclass(slots=True)
class TCPCheckInfo:
    port: int
    protocol: str = "IPv4"


@dataclass(slots=True)
class HealthCheck:
    """Mesos's HealthCheck, run by the agent next to the task (agent/health.py). Only the
    member `type` names is read: COMMAND `command`, HTTP `http`, TCP `tcp`. Defaults are Mesos's.
    A task is killed once `consecutive_failures` checks in a row failed after the grace period
    (0 kills on the first such failure, as in Mesos)."""
    type: str                             # COMMAND, HTTP or TCP
    command: Optional[CommandInfo] = None
    http: Optional[HTTPCheckInfo] = None
    tcp: Optional[TCPCheckInfo] = None
    delay_seconds: float = 15.0
    interval_seconds: float = 10.0
    timeout_seconds: float = 20.0
    consecutive_failures: int = 3
    grace_period_seconds: float = 10.0


@dataclass(slots=True)
class TaskInfo:
    task_id: str
    name: str
    agent_id: str
    resources: Resources
    command: CommandInfo = field(default_factory=CommandInfo)
    labels: dict[str, str] = field(default_factory=dict)
    discovery: Optional[dict[str, Any]] = None
    kill_grace_seconds: Optional[float] = None
    max_completion_seconds: Optional[float] = None
    data: Optional[bytes] = None
    # Fields travel by name and a missing one takes its default, so peers and checkpoints
    # from before this field still decode: PROTOCOL_VERSION stays 1. Last: positional callers
    # are unaffected.
    health_check: Optional[HealthCheck] = None


@dataclass(slots=True)
class TaskStatus:
    task_id: str
    state: str
    message: str = ""
    source: str = SOURCE_EXECUTOR
    reason: Optional[str] = None
    agent_id: Optional[str] = None
    executor_id: Optional[str] = None
    timestamp: float = 0.0
    uuid: Optional[bytes] = None          # set only on reliable (agent) updates, to be acknowledged
    healthy: Optional[bool] = None
    data: Optional[bytes] = None
    labels: dict[str, str] = field(default_factory=dict)
    container_ip: Optional[str] = None    # becomes container_status.network_infos in Mesos JSON
    executor_pid: Optional[int] = None


@dataclass(slots=True)
class FrameworkInfo:
    user: str
    name: str
    id: Optional[str] = None
    failover_timeout: float = 0.0
    checkpoint: bool = False
    roles: list[str] = field(default_factory=list)
    hostname: str = ""
    principal: Optional[str] = None
    webui_url: str = ""
    capabilities: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class AgentInfo:
    hostname: str
    port: int                                   # the agent's HTTP port
    resources: Resources
    attributes: dict[str, Any] = field(default_factory=dict)
    ip: str = "127.0.0.1"
    id: Optional[str] = None


@dataclass(slots=True)
class MasterInfo:
    id: str
    ip: str
    port: int
    hostname: str
    version: str = MESOS_VERSION
    router: str = ""                            # tcp://ip:port of the ROUTER (agents, frameworks)
    publisher: str = ""                         # tcp://ip:port of the event bus (PUB)


@dataclass(slots=True)
class Offer:
    id: str
    framework_id: str
    agent_id: str
    hostname: str
    role: str
    resources: Resources
    attributes: dict[str, Any] = field(default_factory=dict)
    agent_port: int = 0


@dataclass(slots=True)
class Operation:
    """An ACCEPT operation. Only LAUNCH exists today; the type tag leaves room for more."""
    type: str
    tasks: list[TaskInfo] = field(default_factory=list)


@dataclass(slots=True)
class TaskRecord:
    """A task as an agent reports it when re-registering."""
    framework_id: str
    task: TaskInfo
    state: str
    framework: Optional[FrameworkInfo] = None


# ---------------------------------------------------------------------------------------------
# Messages. Every message class has a TYPE; `Heartbeat` and `Error` travel both ways.

class Message:
    TYPE: ClassVar[str] = ""


@dataclass(slots=True)
class Heartbeat(Message):
    TYPE: ClassVar[str] = "heartbeat"


@dataclass(slots=True)
class Error(Message):
    TYPE: ClassVar[str] = "error"
    message: str
    code: str = ""     # UNREGISTERED (register again), PROTOCOL_VERSION, INVALID, REMOVED


# agent -> master

@dataclass(slots=True)
class RegisterAgent(Message):
    TYPE: ClassVar[str] = "register_agent"
    protocol_version: int
    agent: AgentInfo
    version: str = MESOS_VERSION


@dataclass(slots=True)
class ReregisterAgent(Message):
    TYPE: ClassVar[str] = "reregister_agent"
    protocol_version: int
    agent: AgentInfo
    tasks: list[TaskRecord] = field(default_factory=list)
    version: str = MESOS_VERSION


@dataclass(slots=True)
class StatusUpdate(Message):
    TYPE: ClassVar[str] = "status_update"
    framework_id: str
    status: TaskStatus
    latest_state: Optional[str] = None     # tail of the agent's queue for this task


# master -> agent

@dataclass(slots=True)
class AgentRegistered(Message):
    TYPE: ClassVar[str] = "agent_registered"
    agent_id: str
    master_id: str
    heartbeat_interval: float
    total_ping_timeout: float        # no word from the master this long: it is gone


@dataclass(slots=True)
class RunTask(Message):
    TYPE: ClassVar[str] = "run_task"
    framework: FrameworkInfo
    task: TaskInfo


@dataclass(slots=True)
class KillTask(Message):
    TYPE: ClassVar[str] = "kill_task"
    framework_id: str
    task_id: str
    grace_seconds: Optional[float] = None


@dataclass(slots=True)
class StatusUpdateAck(Message):
    TYPE: ClassVar[str] = "status_update_ack"
    framework_id: str
    task_id: str
    uuid: bytes


@dataclass(slots=True)
class ShutdownFramework(Message):
    TYPE: ClassVar[str] = "shutdown_framework"
    framework_id: str


@dataclass(slots=True)
class FrameworkToExecutor(Message):
    TYPE: ClassVar[str] = "framework_to_executor"
    framework_id: str
    executor_id: str
    data: bytes


# framework -> master

@dataclass(slots=True)
class Subscribe(Message):
    TYPE: ClassVar[str] = "subscribe"
    protocol_version: int
    framework: FrameworkInfo
    suppressed_roles: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Accept(Message):
    TYPE: ClassVar[str] = "accept"
    offer_ids: list[str]
    operations: list[Operation] = field(default_factory=list)
    refuse_seconds: float = 5.0


@dataclass(slots=True)
class Decline(Message):
    TYPE: ClassVar[str] = "decline"
    offer_ids: list[str]
    refuse_seconds: float = 5.0


@dataclass(slots=True)
class Revive(Message):
    TYPE: ClassVar[str] = "revive"
    roles: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Suppress(Message):
    TYPE: ClassVar[str] = "suppress"
    roles: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Kill(Message):
    TYPE: ClassVar[str] = "kill"
    task_id: str
    agent_id: Optional[str] = None
    grace_seconds: Optional[float] = None


@dataclass(slots=True)
class Acknowledge(Message):
    TYPE: ClassVar[str] = "acknowledge"
    agent_id: str
    task_id: str
    uuid: bytes


@dataclass(slots=True)
class ReconcileTask:
    task_id: str
    agent_id: Optional[str] = None


@dataclass(slots=True)
class Reconcile(Message):
    TYPE: ClassVar[str] = "reconcile"
    tasks: list[ReconcileTask] = field(default_factory=list)


@dataclass(slots=True)
class FrameworkMessageCall(Message):
    TYPE: ClassVar[str] = "message"
    agent_id: str
    executor_id: str
    data: bytes


@dataclass(slots=True)
class Teardown(Message):
    TYPE: ClassVar[str] = "teardown"


# master -> framework

@dataclass(slots=True)
class Subscribed(Message):
    TYPE: ClassVar[str] = "subscribed"
    framework_id: str
    master: MasterInfo
    heartbeat_interval: float
    reregistered: bool = False


@dataclass(slots=True)
class Offers(Message):
    TYPE: ClassVar[str] = "offers"
    offers: list[Offer]


@dataclass(slots=True)
class Rescind(Message):
    TYPE: ClassVar[str] = "rescind"
    offer_id: str


@dataclass(slots=True)
class Update(Message):
    TYPE: ClassVar[str] = "update"
    status: TaskStatus


@dataclass(slots=True)
class FrameworkMessage(Message):
    TYPE: ClassVar[str] = "framework_message"
    agent_id: str
    executor_id: str
    data: bytes


@dataclass(slots=True)
class Failure(Message):
    TYPE: ClassVar[str] = "failure"
    agent_id: str
    executor_id: Optional[str] = None
    status: Optional[int] = None


AGENT_TO_MASTER = (RegisterAgent, ReregisterAgent, StatusUpdate, Heartbeat)
MASTER_TO_AGENT = (AgentRegistered, RunTask, KillTask, StatusUpdateAck, ShutdownFramework,
                   FrameworkToExecutor, Error, Heartbeat)
FRAMEWORK_TO_MASTER = (Subscribe, Accept, Decline, Revive, Suppress, Kill, Acknowledge, Reconcile,
                       FrameworkMessageCall, Teardown, Heartbeat)
MASTER_TO_FRAMEWORK = (Subscribed, Offers, Rescind, Update, FrameworkMessage, Failure, Error,
                       Heartbeat)
FIRST_MESSAGES = (RegisterAgent, ReregisterAgent, Subscribe)

MESSAGES: dict[str, type] = {cls.TYPE: cls for cls in
                             AGENT_TO_MASTER + MASTER_TO_AGENT + FRAMEWORK_TO_MASTER + MASTER_TO_FRAMEWORK}


# ---------------------------------------------------------------------------------------------
# Codec: dataclass <-> plain msgpack values. Converters are built once per type.

_to_plain_cache: dict[Any, Any] = {}
_from_plain_cache: dict[Any, Any] = {}


def _identity(value: Any) -> Any:
    return value


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _to_plain(tp: Any):
    if tp in _to_plain_cache:
        return _to_plain_cache[tp]
    inner, optional = _unwrap_optional(tp)
    origin = typing.get_origin(inner)
    if inner is Resources:
        conv = Resources.to_wire
    elif dataclasses.is_dataclass(inner):
        hints = typing.get_type_hints(inner)
        fields = [(f.name, _to_plain(hints[f.name])) for f in dataclasses.fields(inner)]

        def conv(obj, fields=fields):
            return {name: c(getattr(obj, name)) for name, c in fields}
    elif origin is list:
        item = _to_plain(typing.get_args(inner)[0])
        conv = _identity if item is _identity else (lambda seq, item=item: [item(x) for x in seq])
    elif origin is dict:
        value = _to_plain(typing.get_args(inner)[1])
        conv = _identity if value is _identity else (
            lambda d, value=value: {k: value(v) for k, v in d.items()})
    else:
        conv = _identity
    if optional and conv is not _identity:
        base = conv
        conv = lambda v, base=base: None if v is None else base(v)  # noqa: E731
    _to_plain_cache[tp] = conv
    return conv


_SCALARS = {str: (str,), int: (int,), float: (int, float), bool: (bool,), bytes: (bytes,)}


def _from_plain(tp: Any):
    if tp in _from_plain_cache:
        return _from_plain_cache[tp]
    inner, optional = _unwrap_optional(tp)
    origin = typing.get_origin(inner)
    if inner is Resources:
        def conv(value):
            if not isinstance(value, dict):
                raise ProtocolError("resources must be a map")
            try:
                return Resources.from_wire(value)
            except ValueError as exc:
                raise ProtocolError(f"invalid resources: {exc}") from None
    elif dataclasses.is_dataclass(inner):
        conv = _dataclass_from_plain(inner)
    elif origin is list:
        item = _from_plain(typing.get_args(inner)[0])

        def conv(value, item=item):
            if not isinstance(value, (list, tuple)):
                raise ProtocolError(f"expected a list, got {type(value).__name__}")
            return [item(x) for x in value]
    elif origin is dict:
        item = _from_plain(typing.get_args(inner)[1])

        def conv(value, item=item):
            if not isinstance(value, dict):
                raise ProtocolError(f"expected a map, got {type(value).__name__}")
            return {str(k): item(v) for k, v in value.items()}
    elif inner in _SCALARS:
        accepted = _SCALARS[inner]

        def conv(value, accepted=accepted, inner=inner):
            if not isinstance(value, accepted) or (inner is not bool and isinstance(value, bool)):
                raise ProtocolError(f"expected {inner.__name__}, got {type(value).__name__}")
            return float(value) if inner is float else value
    else:
        conv = _identity
    if optional:
        base = conv
        conv = lambda v, base=base: None if v is None else base(v)  # noqa: E731
    _from_plain_cache[tp] = conv
    return conv


def _dataclass_from_plain(cls: type):
    hints = typing.get_type_hints(cls)
    fields = []
    for f in dataclasses.fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        fields.append((f.name, _from_plain(hints[f.name]), required))

    def conv(value):
        if not isinstance(value, dict):
            raise ProtocolError(f"{cls.__name__} must be a map")
        kwargs = {}
        for name, c, required in fields:
            if name in value:
                try:
                    kwargs[name] = c(value[name])
                except ProtocolError as exc:
                    raise ProtocolError(f"{cls.__name__}.{name}: {exc}") from None
            elif required:
                raise ProtocolError(f"{cls.__name__}: missing required field '{name}'")
        return cls(**kwargs)
    return conv


def encode(message: Message) -> bytes:
    body = _to_plain(type(message))(message)
    body["type"] = message.TYPE
    return msgpack.packb(body, use_bin_type=True)


def decode(frame: bytes, allowed: tuple[type, ...] | None = None) -> Message:
    """Bytes to a message, or ProtocolError saying exactly what is wrong."""
    try:
        body = msgpack.unpackb(frame, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise ProtocolError(f"frame is not msgpack: {exc}") from None
    if not isinstance(body, dict):
        raise ProtocolError("frame is not a msgpack map")
    kind = body.pop("type", None)
    cls = MESSAGES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProtocolError(f"unknown message type {kind!r}")
    if allowed is not None and cls not in allowed:
        raise ProtocolError(f"message type {kind!r} is not accepted here")
    return _from_plain(cls)(body)


def pack(record: Any) -> bytes:
    """Any record of this catalogue (a message or not, e.g. AgentInfo) to msgpack bytes."""
    return msgpack.packb(_to_plain(type(record))(record), use_bin_type=True)


def unpack(cls: type, data: bytes) -> Any:
    """The inverse of pack; ProtocolError says what is wrong with bad bytes."""
    try:
        body = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:
        raise ProtocolError(f"{cls.__name__} is not msgpack: {exc}") from None
    return _from_plain(cls)(body)
