"""The agent: registers its resources with the master and runs the tasks it is given.

    master --run_task--> loop --checkpoint, launch--> containerizer (waiter, sandbox, isolator)
    pidfd readable --> reap --> terminal state --> checkpoint --> UpdateManager --> master
    framework ack --> master --> status_update_ack --> checkpoint --> next update of that task

    start --> checkpoint.recover --> live tasks re-adopted, ended ones reported, unacknowledged
          updates queued again --> reregister_agent with the same agent id --> resend them

Every change to a task is checkpointed before anyone hears of it, so a restarted agent knows
everything it has said. One loop thread owns the task table; HTTP threads read it through
`loop.call`.
"""
from __future__ import annotations

import hashlib
import os
import signal
import socket
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Optional

from meseta import proto
from meseta.agent import containerizer as cz
from meseta.agent.checkpoint import (BrokenTask, Checkpoint, Recovered, TaskCheckpoint,
                                     current_boot_id)
from meseta.agent.detect import agent_resources
from meseta.agent.health import HealthChecks, Target, Verdict, check_problem
from meseta.agent.isolation import make_isolator
from meseta.agent.updates import UpdateManager
from meseta.clock import Clock
from meseta.config import Flag, bool_flag, duration_flag, parse_port, render_flags
from meseta.link import MasterLink
from meseta.http import HttpServer
from meseta.log import get_logger
from meseta.loop import EventLoop, Timer
from meseta.metrics import Registry
from meseta.resources import Resources, parse_attributes

log = get_logger("meseta.agent")

LIMIT_CHECKS_PER_TURN = 20     # tasks measured per turn of the loop (a round is spread out)

# Mesos's reason for a task the agent could not recover after a restart.


def _attributes(text: str) -> dict:
    return parse_attributes(text) if text else {}


AGENT_FLAGS = (
    Flag("master", "127.0.0.1:5050", "The master: host:port of its HTTP API, or tcp://host:port."),
    Flag("ip", "127.0.0.1", "IP address to listen on."),
    Flag("port", 5051, "HTTP port (the Mesos agent port).", parse_port),
    Flag("advertise_ip", "", "IP address the master and tasks use for this agent (default: --ip)."),
    Flag("hostname", "", "Hostname to advertise (default: the machine's name)."),
    Flag("work_dir", "/tmp/meseta/agent", "Where sandboxes and agent state live."),
    Flag("resources", "", "Resources in Mesos syntax, overriding detection: 'cpus:4;mem:2048;ports:[31000-32000]'."),
    Flag("attributes", {}, "Attributes in Mesos syntax: 'rack:r1;zone:a'.", _attributes,
         lambda a: ";".join(f"{k}:{v}" for k, v in a.items())),
    Flag("isolation", "auto", "Memory isolation: auto, cgroups (cgroups/mem) or posix (posix/mem)."),
    duration_flag("executor_shutdown_grace_period", "5secs",
                  "Default time between SIGTERM and SIGKILL when a task is killed."),
    duration_flag("status_update_retry_interval_min", "10secs", "First retry of an unacknowledged update."),
    duration_flag("status_update_retry_interval_max", "10mins", "Longest retry interval."),
    duration_flag("resource_check_interval", "500ms", "How often posix isolation measures tasks."),
    bool_flag("strict", True, "Refuse to start when a checkpoint file under <work_dir>/meta is "
              "unreadable; false: recover the rest and report the broken tasks lost."),
    Flag("http_threads", 8, "HTTP server threads.", int),
    Flag("log_level", "info", "debug, info, warning or error."),
    Flag("log_format", "auto", "json, text, or auto (text on a terminal)."),
)


@dataclass(slots=True)
class RunningTask:
    framework: proto.FrameworkInfo
    info: proto.TaskInfo
    container_id: str
    sandbox: str
    state: str = proto.TASK_STAGING
    pid: Optional[int] = None
    start_time: Optional[float] = None            # of pid, in seconds after boot
    container: Optional[Any] = None
    kill_requested: bool = False
    kill_reason: Optional[tuple[str, str, str]] = None     # (state, reason, message) overriding exit
    kill_timer: Optional[Timer] = None
    completion_timer: Optional[Timer] = None
    statuses: list[proto.TaskStatus] = field(default_factory=list)
    healthy: Optional[bool] = None                # last reported by its health check

    @property
    def framework_id(self) -> str:
        return self.framework.id or ""

    @property
    def key(self) -> tuple[str, str]:
        return self.framework_id, self.info.task_id


class AgentDaemon:
    def __init__(self, config: Any, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or Clock()
        self.loop = EventLoop(self.clock, "agent")
        self.metrics = Registry("meseta_agent")
        self._launched = self.metrics.counter("tasks_launched_total", "Tasks launched")
        self._finished = self.metrics.counter("tasks_terminal_total", "Tasks ended", ("state",))
        self.agent_id: Optional[str] = None
        self.master_id: Optional[str] = None
        self.tasks: dict[tuple[str, str], RunningTask] = {}
        self._launch_queue: deque[proto.RunTask] = deque()   # tasks given, not yet launched
        self._limit_round: deque[RunningTask] = deque()       # tasks left to measure this round
        # Ended runs whose terminal update is not acknowledged yet, by container id: their
        # checkpoint stays until it is.
        self.terminated: dict[str, RunningTask] = {}
        self.completed: list[RunningTask] = []
        self.updates = UpdateManager(config.status_update_retry_interval_min,
                                     config.status_update_retry_interval_max)
        self.isolator = None
        self.health = HealthChecks(self.loop, self.metrics)
        self.metrics.export_snapshot(self.metrics_snapshot)
        self.info: Optional[proto.AgentInfo] = None
        self.http: Optional[HttpServer] = None
        self.link = MasterLink(self.loop, config.master, proto.MASTER_TO_AGENT, self._hello,
                               self._dispatch, self._lost_master, "agent")
        self._thread = None
        self.start_time = self.clock.time()

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        from meseta.agent.http import create_app

        cfg = self.config
        os.makedirs(cfg.work_dir, exist_ok=True)
        self.work_dir = os.path.realpath(cfg.work_dir)
        self.sandbox_root = os.path.join(self.work_dir, "frameworks")
        self.checkpoint = Checkpoint(self.work_dir)
        boot_id = current_boot_id()
        recovered = self.checkpoint.recover(boot_id, cfg.strict)   # CheckpointError: refuse
        if recovered.rebooted:
            log.warning("the host rebooted since this agent last ran: its tasks are gone, "
                        "so it registers as a new agent")
            self.checkpoint.forget()
        self.checkpoint.save_boot_id(boot_id)
        resources = agent_resources(self.work_dir, cfg.resources or None)
        # A stable name per work dir: a restarted agent finds its own cgroups again.
        name = "meseta-agent-" + hashlib.sha1(self.work_dir.encode()).hexdigest()[:12]
        self.isolator = make_isolator(cfg.isolation, agent_name=name)
        self.http = HttpServer(create_app(self), cfg.ip, cfg.port, cfg.http_threads, "agent-http")
        self.http.server.prepare()
        advertise = cfg.advertise_ip or cfg.ip
        if advertise in ("0.0.0.0", ""):
            advertise = "127.0.0.1"
        self.info = proto.AgentInfo(hostname=cfg.hostname or socket.gethostname(),
                                    port=self.http.port, resources=resources,
                                    attributes=dict(cfg.attributes), ip=advertise)
        self._recover(recovered)
        self.link.start()
        self.loop.call_every(0.25, self._retry_updates)
        self.loop.call_every(cfg.resource_check_interval, self._check_limits)
        self._thread = self.loop.start_thread()
        self.http.start_prepared()
        log.info("agent started", http=f"http://{advertise}:{self.http.port}", master=cfg.master,
                 resources=str(resources), isolation=self.isolator.name)

    def stop(self, kill_tasks: bool) -> None:
        """Stop serving. `kill_tasks`: kill the tasks and forget the checkpoint, so that the next
        start registers afresh, with no tasks (a Mesos agent on SIGUSR1; `meseta up` on Ctrl-C).
        Otherwise they keep running, checkpointed, for the next start to take back (a Mesos
        agent on SIGTERM)."""
        log.info("agent stopping", tasks=len(self.tasks), kill_tasks=kill_tasks)
        if self.http:
            self.http.stop()
        if kill_tasks:
            self.loop.call(self._kill_all, timeout=10)
        self.loop.stop()
        if self._thread:
            self._thread.join(5)
        self.health.close()
        self.link.close()
        if self.isolator:
            self.isolator.close()
        self.loop.close()

    @property
    def registered(self) -> bool:
        return self.link.established

    @property
    def master_info(self) -> Optional[proto.MasterInfo]:
        return self.link.master_info

    @property
    def url(self) -> str:
        return f"http://{self.info.ip}:{self.http.port}"

    def flags(self) -> dict[str, str]:
        return render_flags(AGENT_FLAGS, self.config)

    def _kill_all(self) -> None:
        for task in self.tasks.values():
            if task.container is not None:
                task.container.signal(signal.SIGKILL)
                self.loop.remove_reader(task.container)   # nothing is checkpointed any more
                task.container.close()
                self.isolator.cleanup(task.container_id)
        self._launch_queue.clear()
        self.tasks.clear()
        self.terminated.clear()
        self.checkpoint.forget()

    # -- recovery -------------------------------------------------------------------------------

    def _recover(self, recovered: Recovered) -> None:
        """Take back what the last run of this agent left (start(), before the loop runs)."""
        self.agent_id = recovered.agent_id
        if self.agent_id is None and (recovered.tasks or recovered.broken):
            # Tasks are reported under the agent id; without it they belong to no one.
            log.error("checkpointed tasks but no agent id: killing them and starting as a new agent",
                      tasks=len(recovered.tasks))
            for record in recovered.tasks:
                container = cz.adopt(record.container_id, record.pid, record.start_time,
                                     record.sandbox) if record.pid else None
                if container is not None:
                    container.signal(signal.SIGKILL)
                    container.close()
            self.checkpoint.forget()
            recovered = Recovered()
        # Runs of a reused task id share one update stream: the earlier run's updates go first.
        for record in sorted(recovered.tasks, key=lambda r: (r.state not in proto.TERMINAL_STATES,
                                                             [s.timestamp for s in r.pending])):
            self._recover_task(record)
        for broken in recovered.broken:
            self._recover_broken(broken)
        live = {task.container_id for task in self.tasks.values() if task.container is not None}
        for orphan in self.isolator.orphans(live):
            log.warning("removing a container no recovered task claims", container_id=orphan)
            self.isolator.cleanup(orphan)
        if recovered.tasks or recovered.broken:
            log.info("recovered from the checkpoint", agent_id=self.agent_id,
                     running=len(live), ended=len(self.terminated))

    def _recover_task(self, record: TaskCheckpoint) -> None:
        task = RunningTask(record.framework, record.task, record.container_id, record.sandbox,
                           state=record.state, pid=record.pid, start_time=record.start_time,
                           kill_requested=record.kill_requested,
                           kill_reason=tuple(record.kill_reason) if record.kill_reason else None,
                           statuses=list(record.pending))
        self.updates.restore(task.framework_id, record.pending)
        if record.state in proto.TERMINAL_STATES:
            if record.pending:
                self.terminated[task.container_id] = task
                self.completed.append(task)
            else:   # acknowledged just before the last run stopped
                self.checkpoint.remove_task(task.framework_id, task.info.task_id, task.container_id)
            return
        self.tasks[task.key] = task
        if record.pid is None:
            self._report(task, self._status(
                task, proto.TASK_LOST, "The agent restarted while launching the task",
                proto.REASON_AGENT_RESTARTED, source=proto.SOURCE_AGENT))
            self._finish(task)
            return
        self.isolator.recover(task.container_id, task.info.resources.mem, task.info.resources.cpus)
        task.container = cz.adopt(task.container_id, task.pid, task.start_time, task.sandbox)
        if task.container is None or task.container.reap() is not None:
            # Gone, or a zombie no init has reaped yet (its group's leftovers die in reap()).
            task.container = None
            self._ended_while_away(task)
            return
        self.loop.add_reader(task.container, lambda: self._on_exit(task))
        self._arm_completion_timer(task, cz.running_for(task.start_time))
        if task.kill_requested:   # SIGTERM went out before the restart: SIGKILL follows anyway
            task.kill_timer = self.loop.call_later(self.config.executor_shutdown_grace_period,
                                                   lambda: task.container.signal(signal.SIGKILL))
        else:
            self._start_health(task, cz.running_for(task.start_time))
        log.info("task recovered", task_id=task.info.task_id, pid=task.pid)

    def _ended_while_away(self, task: RunningTask) -> None:
        """The task's process is gone (or its pid belongs to another process now)."""
        recorded = cz.recorded_exit(task.sandbox)
        if task.kill_reason is not None:
            state, reason, message = task.kill_reason
        elif recorded is not None or task.kill_requested:
            state, reason, message = cz.terminal_state(recorded or cz.EXIT_UNKNOWN,
                                                       task.kill_requested)
        else:
            state, reason, message = (proto.TASK_LOST, proto.REASON_AGENT_RESTARTED,
                                      "The agent lost track of the task: its command ended while "
                                      "the agent was down and left no exit status")
        source = proto.SOURCE_AGENT if state == proto.TASK_LOST else proto.SOURCE_EXECUTOR
        self.isolator.cleanup(task.container_id)
        self._report(task, self._status(task, state, message, reason, source=source))
        self._finish(task)

    def _recover_broken(self, broken: BrokenTask) -> None:
        """A run whose checkpoint cannot be read (--strict=false): the framework hears it is lost,
        and a readable record of that replaces the broken file until it is acknowledged."""
        log.error("task checkpoint unreadable: reporting the task lost", path=broken.path,
                  problem=broken.problem, task_id=broken.task_id)
        framework = proto.FrameworkInfo(user="", name="", id=broken.framework_id)
        info = proto.TaskInfo(task_id=broken.task_id, name=broken.task_id,
                              agent_id=self.agent_id or "", resources=Resources())
        task = RunningTask(framework, info, broken.container_id,
                           self._sandbox(broken.framework_id, broken.task_id, broken.container_id))
        message = f"The agent restarted and could not recover the task: {broken.problem}"
        self._report(task, self._status(task, proto.TASK_LOST, message, proto.REASON_AGENT_RESTARTED,
                                        source=proto.SOURCE_AGENT))
        self._finish(task)

    # -- connection to the master ----------------------------------------------------------------

    def _hello(self) -> proto.Message:
        if self.agent_id is None:
            return proto.RegisterAgent(proto.PROTOCOL_VERSION, self.info)
        self.info.id = self.agent_id
        records = {}
        for task in self.terminated.values():
            if task.pid is not None:
                # Reported as it last ran: its terminal update follows the re-registration, and
                # the master learns the end from that (saying it here too would say it twice).
                records[task.key] = proto.TaskRecord(task.framework_id, task.info,
                                                     proto.TASK_RUNNING, task.framework)
        for task in self.tasks.values():
            records[task.key] = proto.TaskRecord(task.framework_id, task.info, task.state,
                                                 task.framework)
        return proto.ReregisterAgent(proto.PROTOCOL_VERSION, self.info, list(records.values()))

    def _lost_master(self, why: str) -> None:
        log.warning("lost the master; detecting it again", reason=why)

    def _dispatch(self, message: proto.Message) -> None:
        kind = type(message)
        if kind is proto.AgentRegistered:
            self._on_registered(message)
        elif kind is proto.RunTask:
            self._launch_queue.append(message)
            if len(self._launch_queue) == 1:
                self.loop.call_later(0, self._launch_next)
        elif kind is proto.KillTask:
            self._kill_task(message.framework_id, message.task_id, message.grace_seconds)
        elif kind is proto.StatusUpdateAck:
            self._on_ack(message)
        elif kind is proto.ShutdownFramework:
            self._shutdown_framework(message.framework_id)
        elif kind is proto.FrameworkToExecutor:
            log.info("framework message dropped: command tasks have no executor to deliver to",
                     framework_id=message.framework_id, executor_id=message.executor_id)
        elif kind is proto.Error:
            self._on_error(message)

    def _on_registered(self, message: proto.AgentRegistered) -> None:
        first = self.agent_id is None
        if message.agent_id != self.agent_id:
            if not first:
                log.error("the master gave this agent a new id", old=self.agent_id,
                          new=message.agent_id)
            try:
                self.checkpoint.save_agent_id(message.agent_id)
            except OSError as error:
                log.error("cannot checkpoint the agent id", error=str(error))
        self.agent_id, self.master_id = message.agent_id, message.master_id
        self.link.established_with(message.heartbeat_interval, message.total_ping_timeout)
        log.info("registered with master" if first else "reregistered with master",
                 agent_id=self.agent_id, master_id=self.master_id)
        for update in self.updates.resend_all(self.clock.monotonic()):
            self.link.send(update)

    def _on_error(self, message: proto.Error) -> None:
        log.error("master refused us", message=message.message, code=message.code)
        if message.code == "UNREGISTERED":
            self.link.resend_hello()

    def _retry_updates(self) -> None:
        if self.link.established:
            for update in self.updates.due(self.clock.monotonic()):
                self.link.send(update)

    # -- tasks ----------------------------------------------------------------------------------

    def _sandbox(self, framework_id: str, task_id: str, container_id: str) -> str:
        return os.path.join(self.sandbox_root, framework_id, "executors", task_id, "runs",
                            container_id)

    def _launch_next(self) -> None:
        """One launch per turn of the loop: what arrives meanwhile (acknowledgements, kills) is
        handled between launches, so a batch of hundreds of tasks does not hold back every
        task's next status update (each waits for the previous one's acknowledgement)."""
        if self._launch_queue:
            self._run_task(self._launch_queue.popleft())
        if self._launch_queue:
            self.loop.call_later(0, self._launch_next)

    def _run_task(self, message: proto.RunTask) -> None:
        framework, info = message.framework, message.task
        if not (proto.valid_id(info.task_id) and proto.valid_id(framework.id or "")):
            # Ids become sandbox path segments: never build a path from an unsafe one.
            log.error("refusing a task with an invalid id", task_id=repr(info.task_id))
            self._agent_status(framework.id or "", info.task_id, proto.TASK_ERROR,
                               proto.REASON_TASK_INVALID, "invalid task or framework id")
            return
        key = (framework.id or "", info.task_id)
        if key in self.tasks:
            log.warning("duplicate run_task ignored", task_id=info.task_id)
            return
        problem = info.health_check and check_problem(info.health_check)
        if problem:
            self._agent_status(*key, proto.TASK_ERROR, proto.REASON_TASK_INVALID,
                               f"Invalid health check: {problem}")
            return
        container_id = str(uuid.uuid4())
        task = RunningTask(framework, info, container_id, self._sandbox(*key, container_id))
        self.tasks[key] = task
        try:
            # Before the process exists, so that no crash can leave it unknown.
            self.checkpoint.save_task(self._record(task))
            spec = cz.LaunchSpec(
                container_id=container_id, sandbox=task.sandbox, shell=info.command.shell,
                value=info.command.value, arguments=list(info.command.arguments),
                environment=self._environment(task), user=info.command.user,
                mem_mb=info.resources.mem, cpus=info.resources.cpus)
            task.container = cz.launch(spec, self.isolator)
        except Exception as exc:   # whatever went wrong, the framework hears about it
            if not isinstance(exc, cz.LaunchError):
                log.exception("launch failed", task_id=info.task_id)
            self._report(task, self._status(task, proto.TASK_FAILED,
                                            f"Failed to launch container: {exc}",
                                            proto.REASON_CONTAINER_LAUNCH_FAILED))
            self._finish(task)
            return
        task.pid, task.start_time = task.container.pid, task.container.start_time
        self._launched.inc()
        self.loop.add_reader(task.container, lambda: self._on_exit(task))
        self._report(task, self._status(task, proto.TASK_STARTING, ""),
                     self._status(task, proto.TASK_RUNNING, "", executor_pid=task.pid))
        self._arm_completion_timer(task, 0.0)
        self._start_health(task, 0.0)

    def _arm_completion_timer(self, task: RunningTask, elapsed: float) -> None:
        limit = task.info.max_completion_seconds
        if limit:
            task.completion_timer = self.loop.call_later(limit - elapsed, lambda: self._terminate(
                task, (proto.TASK_FAILED, proto.REASON_MAX_COMPLETION_TIME_REACHED,
                       "Task exceeded its maximum completion time")))

    def _start_health(self, task: RunningTask, running_for: float) -> None:
        check = task.info.health_check
        if check is not None:
            environment = cz.task_environment(cz.LaunchSpec(
                task.container_id, task.sandbox, "", environment=self._environment(task)))
            self.health.start(task.container_id, check,
                              Target(task.sandbox, environment, task.info.command.user),
                              lambda verdict: self._on_health(task, verdict), running_for)

    def _on_health(self, task: RunningTask, verdict: Verdict) -> None:
        """A health change is reported as TASK_RUNNING with `healthy` (Mesos); enough failures
        in a row kill the task, which ends KILLED whatever its command's exit."""
        if self.tasks.get(task.key) is not task or task.kill_requested:
            return
        if verdict.healthy is not None:
            task.healthy = verdict.healthy
            status = self._status(task, proto.TASK_RUNNING, "",
                                  proto.REASON_TASK_HEALTH_CHECK_STATUS_UPDATED)
            status.healthy = verdict.healthy
            self._report(task, status)
        if verdict.kill:
            times = "time" if verdict.failures == 1 else "times"
            grace = task.info.kill_grace_seconds
            self._terminate(task, (proto.TASK_KILLED, None,
                                   f"Task killed: health check failed {verdict.failures} {times}"),
                            self.config.executor_shutdown_grace_period if grace is None else grace)

    def _environment(self, task: RunningTask) -> dict[str, str]:
        """What Mesos and Marathon give a task, then the framework's own variables on top."""
        ports = [str(p) for begin, end in task.info.resources.ports() for p in range(begin, end + 1)]
        env = {
            "HOST": self.info.hostname,
            "MESOS_TASK_ID": task.info.task_id,
            "MESOS_FRAMEWORK_ID": task.framework_id,
            "MESOS_AGENT_ID": self.agent_id or "",
            "MESOS_EXECUTOR_ID": task.info.task_id,
            "MESOS_SANDBOX": task.sandbox,
            "MESOS_DIRECTORY": task.sandbox,
            "MESOS_AGENT_ENDPOINT": f"{self.info.ip}:{self.info.port}",
            "PORTS": ",".join(ports),
        }
        for index, port in enumerate(ports):
            env[f"PORT{index}"] = port
        if ports:
            env["PORT"] = ports[0]
        for index, entry in enumerate(((task.info.discovery or {}).get("ports") or {}).get("ports") or []):
            name = entry.get("name")
            if name and index < len(ports):
                env[f"PORT_{name.upper().replace('-', '_')}"] = ports[index]
        env.update(task.info.command.environment)
        return env

    # -- status updates -------------------------------------------------------------------------

    def _status(self, task: RunningTask, state: str, message: str, reason: str | None = None,
                executor_pid: int | None = None, source: str = proto.SOURCE_EXECUTOR
                ) -> proto.TaskStatus:
        return proto.TaskStatus(
            task_id=task.info.task_id, state=state, message=message, source=source,
            reason=reason, agent_id=self.agent_id, executor_id=task.info.task_id,
            timestamp=self.clock.time(), uuid=uuid.uuid4().bytes, container_ip=self.info.ip,
            executor_pid=executor_pid)

    def _report(self, task: RunningTask, *statuses: proto.TaskStatus) -> None:
        """Queue the task's new statuses, checkpoint it, and only then send what is due."""
        heads = []
        for status in statuses:
            task.state = status.state
            task.statuses.append(status)
            head = self.updates.enqueue(task.framework_id, status, self.clock.monotonic())
            if head is not None:
                heads.append(head)
        self._save(task)
        if self.link.established:
            for head in heads:
                self.link.send(head)

    def _agent_status(self, framework_id: str, task_id: str, state: str, reason: str,
                      message: str) -> None:
        """A reliable update about a task that has no container (SOURCE_AGENT). Not
        checkpointed: the task is not this agent's, and the master reconciles it anyway."""
        status = proto.TaskStatus(task_id=task_id, state=state, source=proto.SOURCE_AGENT,
                                  reason=reason, agent_id=self.agent_id, message=message,
                                  timestamp=self.clock.time(), uuid=uuid.uuid4().bytes)
        update = self.updates.enqueue(framework_id, status, self.clock.monotonic())
        if update is not None and self.link.established:
            self.link.send(update)

    def _on_ack(self, message: proto.StatusUpdateAck) -> None:
        matched, following = self.updates.acknowledge(message.framework_id, message.task_id,
                                                      message.uuid, self.clock.monotonic())
        if matched:
            self._acknowledged((message.framework_id, message.task_id), message.uuid)
        if following is not None and self.link.established:
            self.link.send(following)

    def _acknowledged(self, key: tuple[str, str], uuid_: bytes) -> None:
        """Checkpoint the run the acknowledged update came from; an ended run that has nothing
        left to say is forgotten."""
        runs = [t for t in self.terminated.values() if t.key == key]
        if key in self.tasks:
            runs.append(self.tasks[key])
        for task in runs:
            if any(s.uuid == uuid_ for s in task.statuses):
                if task.state in proto.TERMINAL_STATES and not self._pending(task):
                    del self.terminated[task.container_id]
                    self.checkpoint.remove_task(task.framework_id, task.info.task_id,
                                                task.container_id)
                else:
                    try:
                        self.checkpoint.save_ack(task.framework_id, task.info.task_id,
                                                 task.container_id, uuid_)
                    except OSError as error:   # a restart only sends the update again
                        log.error("cannot checkpoint an acknowledgement",
                                  task_id=task.info.task_id, error=str(error))
                return

    def _pending(self, task: RunningTask) -> list[proto.TaskStatus]:
        """The run's own unacknowledged updates (a reused task id shares the stream)."""
        mine = {s.uuid for s in task.statuses}
        return [s for s in self.updates.pending(task.framework_id, task.info.task_id)
                if s.uuid in mine]

    def _record(self, task: RunningTask) -> TaskCheckpoint:
        return TaskCheckpoint(
            framework=task.framework, task=task.info, container_id=task.container_id,
            sandbox=task.sandbox, state=task.state, pid=task.pid, start_time=task.start_time,
            kill_requested=task.kill_requested,
            kill_reason=list(task.kill_reason) if task.kill_reason else None,
            pending=self._pending(task))

    def _save(self, task: RunningTask) -> None:
        try:
            self.checkpoint.save_task(self._record(task))
        except OSError as error:
            # The task goes on; a restart would only know it as it was checkpointed last.
            log.error("cannot checkpoint the task", task_id=task.info.task_id, error=str(error))

    # -- kills and exits ------------------------------------------------------------------------

    def _kill_task(self, framework_id: str, task_id: str, grace: float | None) -> None:
        task = self.tasks.get((framework_id, task_id))
        queued = [m for m in self._launch_queue
                  if m.task.task_id == task_id and (m.framework.id or "") == framework_id]
        if task is None and queued:
            self._launch_queue.remove(queued[0])
            self._agent_status(framework_id, task_id, proto.TASK_KILLED,
                               proto.REASON_TASK_KILLED_DURING_LAUNCH, "Killed before it was launched")
            return
        if task is None:
            log.warning("kill for an unknown task", task_id=task_id, framework_id=framework_id)
            self._agent_status(framework_id, task_id, proto.TASK_LOST, proto.REASON_TASK_UNKNOWN,
                               "Task is unknown to the agent")
            return
        grace = self.config.executor_shutdown_grace_period if grace is None else grace
        self._terminate(task, None, grace)

    def _terminate(self, task: RunningTask, override: tuple[str, str, str] | None,
                   grace: float = 0.0) -> None:
        if task.container is None or task.kill_requested:
            return
        log.info("killing task", task_id=task.info.task_id, grace_seconds=grace,
                 reason=override[1] if override else None)
        task.kill_requested = True
        task.kill_reason = override
        self.health.stop(task.container_id)
        if proto.TASK_KILLING_STATE in task.framework.capabilities and override is None:
            self._report(task, self._status(task, proto.TASK_KILLING, ""))
        else:
            self._save(task)    # a restart must know the kill was asked for
        if grace > 0:
            task.container.signal(signal.SIGTERM)
            task.kill_timer = self.loop.call_later(grace, lambda: task.container.signal(signal.SIGKILL))
        else:
            task.container.signal(signal.SIGKILL)

    def _check_limits(self) -> None:
        """A round over the running tasks, a slice per turn of the loop: measuring a task
        takes a few /proc reads, and a round over hundreds of tasks in one go would hold up
        what arrives meanwhile, such as the acknowledgement that releases a task's next update."""
        if not self._limit_round:            # else the last round is still going
            self._limit_round.extend(self.tasks.values())
            self._check_limit_slice()

    def _check_limit_slice(self) -> None:
        for _ in range(min(LIMIT_CHECKS_PER_TURN, len(self._limit_round))):
            task = self._limit_round.popleft()
            if (self.tasks.get(task.key) is not task or task.container is None
                    or task.kill_requested):
                continue
            limitation = self.isolator.check(task.container)
            if limitation is not None:
                log.warning("task exceeded its limits", task_id=task.info.task_id, reason=limitation.message)
                self._terminate(task, (proto.TASK_FAILED, limitation.reason, limitation.message))
        if self._limit_round:
            self.loop.call_later(0, self._check_limit_slice)

    def _on_exit(self, task: RunningTask) -> None:
        exit_info = task.container.reap()
        if exit_info is None:
            return
        self.loop.remove_reader(task.container)
        for timer in (task.kill_timer, task.completion_timer):
            if timer:
                timer.cancel()
        limitation = self.isolator.limitation_after_exit(task.container)
        if task.kill_reason is not None:
            state, reason, message = task.kill_reason
        else:
            state, reason, message = cz.terminal_state(exit_info, task.kill_requested, limitation)
        self.isolator.cleanup(task.container_id)
        status = self._status(task, state, message, reason)
        if task.healthy is False:   # as Mesos: a task that ends unhealthy says so
            status.healthy = False
        self._report(task, status)
        self._finish(task)

    def _finish(self, task: RunningTask) -> None:
        """The run has ended; it is kept (and checkpointed) until its last update is acknowledged."""
        self._finished.labels(task.state).inc()
        self.health.stop(task.container_id)
        if self.tasks.get(task.key) is task:
            del self.tasks[task.key]
        self.terminated[task.container_id] = task
        self.completed.append(task)
        del self.completed[:-1000]
        log.info("task ended", task_id=task.info.task_id, framework_id=task.framework_id,
                 state=task.state)

    def _shutdown_framework(self, framework_id: str) -> None:
        self.updates.forget_framework(framework_id)
        for task in [t for t in self.terminated.values() if t.framework_id == framework_id]:
            del self.terminated[task.container_id]
            self.checkpoint.remove_task(framework_id, task.info.task_id, task.container_id)
        for (fid, _), task in list(self.tasks.items()):
            if fid == framework_id:
                self._terminate(task, None, self.config.executor_shutdown_grace_period)

    # -- HTTP threads ---------------------------------------------------------------------------

    def metrics_snapshot(self) -> dict[str, float]:
        from meseta.agent.http import metrics_snapshot
        return self.read(metrics_snapshot)

    def frames_dropped(self) -> int:
        return self.link.dropped_frames()

    def read(self, fn, timeout: float = 10.0):
        return self.loop.call(lambda: fn(self), timeout)
