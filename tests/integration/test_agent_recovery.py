"""An agent that crashes (SIGKILL) and starts again on the same work dir: it takes back the
tasks still running, reports how the others ended while it was down, resends what the
framework has not acknowledged, and refuses (or, with --strict=false, works around) a damaged
checkpoint. Real master, agent and task processes on 127.0.0.1."""
from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

from meseta import proto
from meseta.agent.checkpoint import Checkpoint, current_boot_id
from meseta.resources import Resources
from meseta.scheduler import CommandInfo, SchedulerDriver, TaskInfo
from meseta.testing import make_framework_info
from meseta.testing.frameworks import RecordingScheduler
from meseta.testing.processes import ProcessCluster, get_json

# Exits with the status written to `go` in its sandbox, once that file appears.
WAIT_FOR_GO = 'until [ -s go ]; do sleep 0.05; done; exit "$(cat go)"'
REASON_AGENT_RESTARTED = "REASON_AGENT_RESTARTED"


@pytest.fixture
def cluster(tmp_path, request):
    isolation = getattr(request, "param", "posix")
    cluster = ProcessCluster(tmp_path, agents=1, agent_resources="cpus:4;mem:1024;ports:[31000-31010]",
                             agent_args=["--status_update_retry_interval_min=200ms",
                                         f"--isolation={isolation}"]).start()
    yield cluster
    # The agent leaves its tasks running when it stops: that is the point. End them here.
    for process in psutil.process_iter(["environ"]):
        environ = process.info["environ"] or {}
        if environ.get("MESOS_SANDBOX", "").startswith(str(tmp_path)):
            try:
                process.kill()
            except psutil.Error:
                pass
    cluster.stop()


def start_framework(cluster, **driver_args):
    sched = RecordingScheduler()
    driver = SchedulerDriver(sched, make_framework_info(name="recovery", failover_timeout=3600),
                             cluster.master_address, **driver_args)
    driver.start()
    return sched, driver


def launch(sched, driver, commands: dict[str, str], hostname: str = "agent0") -> str:
    [offer] = sched.wait(lambda: [o for o in sched.take_offers(1) if o.hostname == hostname],
                         what=f"an offer from {hostname}")
    driver.launch_tasks([offer.id], [
        TaskInfo(task_id, task_id, offer.agent_id, Resources.parse("cpus:0.1;mem:32"),
                 CommandInfo(command)) for task_id, command in commands.items()])
    return offer.agent_id


def running_pids(sched, task_ids) -> dict[str, int]:
    return {task_id: sched.wait_state(task_id, proto.TASK_RUNNING).executor_pid
            for task_id in task_ids}


def sandboxes(agent) -> dict[str, str]:
    state = get_json(agent.url + "/state")
    return {executor["id"]: executor["directory"]
            for framework in state["frameworks"] for executor in framework["executors"]}


def ended(pid: int) -> bool:
    """Gone, or a zombie: with the agent down, whether anyone reaps it depends on the init."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_ended(pid: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not ended(pid):
        assert time.monotonic() < deadline, f"process {pid} did not end"
        time.sleep(0.02)


def finish_while_down(sandbox: str, status: int, pid: int) -> None:
    with open(os.path.join(sandbox, "go"), "w") as go:
        go.write(f"{status}\n")
    wait_ended(pid)


def checkpointed_tasks(cluster) -> list[str]:
    """Paths of the task records in the agent's checkpoint (meta/frameworks/<fid>/tasks/), not
    their acknowledgement journals (`.acks`)."""
    meta = os.path.join(cluster.work_dir, "agent0", "meta", "frameworks")
    return [os.path.join(root, name) for root, _, files in os.walk(meta) for name in files
            if not name.endswith(".acks")]


def crash_and_restart(cluster, while_down=lambda: None):
    agent = cluster.agents[0]
    agent.kill()
    while_down()
    agent.restart()
    return agent


def agent_id_of(agent) -> str:
    return get_json(agent.url + "/state")["id"]


@pytest.mark.parametrize("cluster", ["posix", "auto"], indirect=True)   # auto: cgroups if any
def test_a_restarted_agent_takes_back_its_running_tasks(cluster):
    sched, driver = start_framework(cluster)
    try:
        agent_id = launch(sched, driver, {"long-0": "sleep 600", "long-1": "sleep 600"})
        pids = running_pids(sched, ["long-0", "long-1"])
        started = {task_id: psutil.Process(pid).create_time() for task_id, pid in pids.items()}
        journals = [p + ".acks" for p in checkpointed_tasks(cluster)]
        deadline = time.monotonic() + 10            # STARTING and RUNNING acknowledged
        while not all(os.path.exists(j) and len(open(j).read().split()) == 2 for j in journals):
            assert time.monotonic() < deadline, "acknowledgements not journalled"
            time.sleep(0.05)
        sent = {task_id: agent_updates(sched, task_id) for task_id in pids}

        agent = crash_and_restart(cluster)

        assert agent_id_of(agent) == agent_id
        sched.wait(lambda: {u.task_id for u in sched.updates
                            if u.reason == "REASON_AGENT_REREGISTERED"} == set(pids),
                   what="the master hearing of both tasks from the re-registered agent")
        [slave] = cluster.wait_agents(1)
        assert slave["id"] == agent_id and slave["active"]
        for task_id, pid in pids.items():
            assert psutil.Process(pid).create_time() == started[task_id]
        executors = {e["id"]: e for f in get_json(agent.url + "/state")["frameworks"]
                     for e in f["executors"]}
        assert {task_id: e["tasks"][0]["state"] for task_id, e in executors.items()} == {
            "long-0": proto.TASK_RUNNING, "long-1": proto.TASK_RUNNING}
        assert not [u for u in sched.updates if u.state in proto.TERMINAL_STATES]
        # acknowledged before the crash (journalled): not sent again
        assert {task_id: agent_updates(sched, task_id) for task_id in pids} == sent

        # The framework can still kill them, through the agent that adopted them.
        for task_id in pids:
            driver.kill_task(task_id)
        for task_id, pid in pids.items():
            killed = sched.wait_state(task_id, proto.TASK_KILLED)
            assert killed.message == "Command terminated with signal Terminated"
            wait_ended(pid)
        assert not [u for u in sched.updates if u.state == proto.TASK_LOST]
    finally:
        driver.stop()


def test_tasks_that_ended_while_the_agent_was_down_report_how_they_ended(cluster):
    sched, driver = start_framework(cluster)
    try:
        launch(sched, driver, {"fails": WAIT_FOR_GO, "finishes": WAIT_FOR_GO, "vanishes": "sleep 600",
                               "lives": "sleep 600"})
        pids = running_pids(sched, ["fails", "finishes", "vanishes", "lives"])
        dirs = sandboxes(cluster.agents[0])

        def end_some():
            finish_while_down(dirs["fails"], 3, pids["fails"])
            finish_while_down(dirs["finishes"], 0, pids["finishes"])
            os.killpg(pids["vanishes"], signal.SIGKILL)     # no waiter left to record anything
            wait_ended(pids["vanishes"])

        crash_and_restart(cluster, end_some)

        failed = sched.wait_state("fails", proto.TASK_FAILED)
        assert failed.message == "Command exited with status 3"
        assert sched.wait_state("finishes", proto.TASK_FINISHED).message == \
            "Command exited with status 0"
        lost = sched.wait_state("vanishes", proto.TASK_LOST)
        assert lost.reason == REASON_AGENT_RESTARTED and "lost track" in lost.message
        assert not ended(pids["lives"])
        # Each end is told once (the framework acknowledges, so nothing is resent).
        driver.kill_task("lives")
        sched.wait_state("lives", proto.TASK_KILLED)
        terminal = [(u.task_id, u.state) for u in sched.updates if u.state in proto.TERMINAL_STATES]
        assert sorted(terminal) == [("fails", proto.TASK_FAILED), ("finishes", proto.TASK_FINISHED),
                                    ("lives", proto.TASK_KILLED), ("vanishes", proto.TASK_LOST)]
    finally:
        driver.stop()


def test_a_pid_that_started_at_another_time_is_not_adopted(cluster):
    sched, driver = start_framework(cluster)
    try:
        launch(sched, driver, {"impostor": "sleep 600"})
        pid = running_pids(sched, ["impostor"])["impostor"]

        def pretend_the_pid_was_reused():
            checkpoint = Checkpoint(os.path.join(cluster.work_dir, "agent0"))
            [record] = checkpoint.recover(current_boot_id()).tasks
            record.start_time -= 1000      # the process at that pid now looks like another one
            checkpoint.save_task(record)

        crash_and_restart(cluster, pretend_the_pid_was_reused)

        lost = sched.wait(lambda: [u for u in agent_updates(sched, "impostor")
                                   if u.state == proto.TASK_LOST], what="TASK_LOST")[0]
        assert lost.reason == REASON_AGENT_RESTARTED
        assert not ended(pid)              # not ours as far as the agent can tell: left alone
    finally:
        driver.stop()


def agent_updates(sched, task_id):
    """The agent's reliable updates of a task (the master's own carry no uuid)."""
    return [u for u in sched.updates if u.task_id == task_id and u.uuid is not None]


def test_unacknowledged_updates_are_resent_in_order_after_a_restart(cluster):
    sched, driver = start_framework(cluster, implicit_acknowledgements=False)
    try:
        launch(sched, driver, {"quiet": WAIT_FOR_GO})
        # STARTING is never acknowledged, so RUNNING waits behind it, and STARTING is resent.
        starting = sched.wait_state("quiet", proto.TASK_STARTING)
        sched.wait(lambda: len(agent_updates(sched, "quiet")) >= 2, what="a retry")
        assert {u.state for u in agent_updates(sched, "quiet")} == {proto.TASK_STARTING}
        sandbox = sandboxes(cluster.agents[0])["quiet"]
        [pid] = [p.pid for p in psutil.process_iter(["environ", "cmdline"])
                 if (p.info["environ"] or {}).get("MESOS_SANDBOX") == sandbox
                 and "meseta-wait" in p.info["cmdline"]]

        crash_and_restart(cluster, lambda: finish_while_down(sandbox, 0, pid))

        delivered = agent_updates(sched, "quiet")    # before the restart: left unacknowledged

        def acknowledged_in_order():
            seen = []
            for index, update in enumerate(agent_updates(sched, "quiet")):
                if not seen or seen[-1].uuid != update.uuid:
                    seen.append(update)
                if index >= len(delivered):         # as a framework does: every delivery
                    delivered.append(update)
                    driver.acknowledge_status_update(update)
            return [u.state for u in seen] == [proto.TASK_STARTING, proto.TASK_RUNNING,
                                               proto.TASK_FINISHED] and seen
        seen = sched.wait(acknowledged_in_order, what="STARTING, RUNNING, FINISHED")
        assert seen[0].uuid == starting.uuid            # resent from the checkpoint, not made anew
        assert seen[2].message == "Command exited with status 0"
    finally:
        driver.stop()


def test_updates_made_while_the_master_was_away_survive_an_agent_crash(cluster):
    sched, driver = start_framework(cluster)
    try:
        launch(sched, driver, {"offline": WAIT_FOR_GO})
        pid = running_pids(sched, ["offline"])["offline"]
        sandbox = sandboxes(cluster.agents[0])["offline"]
        cluster.master.kill()
        # The task ends with no master to tell; then the agent crashes too.
        crash_and_restart(cluster, lambda: finish_while_down(sandbox, 3, pid))
        cluster.master.restart()
        failed = sched.wait_state("offline", proto.TASK_FAILED, timeout=60)
        assert failed.message == "Command exited with status 3"
        assert not [u for u in sched.updates if u.state == proto.TASK_LOST]
    finally:
        driver.stop()


def damage_checkpoint_of(cluster, task_id: str) -> str:
    [path] = [p for p in checkpointed_tasks(cluster) if os.path.basename(p).startswith(task_id + "@")]
    os.truncate(path, os.path.getsize(path) // 2)
    return path


def test_a_damaged_checkpoint_stops_a_strict_agent_and_is_reported_lost_by_a_lenient_one(cluster):
    sched, driver = start_framework(cluster)
    try:
        launch(sched, driver, {"damaged": "sleep 600", "intact": "sleep 600"})
        pids = running_pids(sched, ["damaged", "intact"])
        agent = cluster.agents[0]
        agent.kill()
        path = damage_checkpoint_of(cluster, "damaged")

        with pytest.raises(RuntimeError, match="exited"):
            agent.restart()
        assert agent.proc.wait(10) != 0
        assert path in agent.log() and "--strict=false" in agent.log()

        agent.args.append("--strict=false")
        agent.restart()
        # The master says it first (the agent did not report the task when it re-registered);
        # the agent's own update is the reliable one, retried until acknowledged.
        lost = sched.wait(lambda: [u for u in agent_updates(sched, "damaged")
                                   if u.state == proto.TASK_LOST], what="the agent's TASK_LOST")[0]
        assert lost.reason == REASON_AGENT_RESTARTED and path not in lost.message
        assert not ended(pids["intact"])
        driver.kill_task("intact")
        sched.wait_state("intact", proto.TASK_KILLED)
        # Both ends acknowledged: nothing is left to recover.
        deadline = time.monotonic() + 20
        while checkpointed_tasks(cluster):
            assert time.monotonic() < deadline, checkpointed_tasks(cluster)
            time.sleep(0.05)
    finally:
        driver.stop()


def test_a_stopped_agent_leaves_its_tasks_to_its_next_start_unless_told_to_kill_them(cluster):
    """The daemon in this process (as `meseta up` runs it): stop(kill_tasks=False) is what a
    Mesos agent does on SIGTERM, stop(kill_tasks=True) what it does on SIGUSR1."""
    from meseta.agent.daemon import AGENT_FLAGS, AgentDaemon
    from meseta.config import load_config
    config = load_config(AGENT_FLAGS, [f"--master={cluster.master_address}", "--port=0",
                                       f"--work_dir={cluster.work_dir}/inprocess",
                                       "--resources=cpus:1;mem:256", "--isolation=posix",
                                       "--hostname=inprocess"], {})
    sched, driver = start_framework(cluster)
    agent = AgentDaemon(config)
    agent.start()
    try:
        agent_id = launch(sched, driver, {"kept": "sleep 600"}, hostname="inprocess")
        pid = running_pids(sched, ["kept"])["kept"]
        agent.stop(kill_tasks=False)
        assert not ended(pid)

        agent = AgentDaemon(config)
        agent.start()
        assert agent.agent_id == agent_id
        assert agent.read(lambda a: {k[1]: t.state for k, t in a.tasks.items()}) == {
            "kept": proto.TASK_RUNNING}
        agent.stop(kill_tasks=True)
        wait_ended(pid)

        agent = AgentDaemon(config)
        agent.start()
        assert agent.agent_id is None        # killed and forgotten: it registers as a new agent
        deadline = time.monotonic() + 20
        while not agent.read(lambda a: a.registered):
            assert time.monotonic() < deadline, "the new agent did not register"
            time.sleep(0.05)
        assert agent.agent_id != agent_id
    finally:
        agent.stop(kill_tasks=True)
        driver.stop()
