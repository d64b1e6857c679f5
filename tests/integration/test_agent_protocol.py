"""A real agent process against a test that plays the master on a raw ROUTER socket: the
agent's side of the protocol, including what a master can get wrong."""
from __future__ import annotations

import os

import pytest
import zmq

from meseta import proto
from meseta.testing import make_framework_info, make_task
from meseta.testing.processes import Daemon, free_port


@pytest.fixture
def fake_master(tmp_path):
    router = zmq.Context.instance().socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    http = free_port()
    agent = Daemon("agent", [f"--master=tcp://127.0.0.1:{port}", f"--port={http}",
                             f"--work_dir={tmp_path}/agent", "--resources=cpus:2;mem:512",
                             "--status_update_retry_interval_min=200ms"],
                   os.path.join(tmp_path, "agent.log"), http).wait_ready()

    def receive(kind, timeout=10_000):
        while True:
            assert router.poll(timeout), f"agent sent no {kind.__name__}"
            peer, body = router.recv_multipart()
            message = proto.decode(body)
            if isinstance(message, kind):
                return peer, message

    peer, register = receive(proto.RegisterAgent)
    assert register.protocol_version == proto.PROTOCOL_VERSION
    assert register.agent.resources.cpus == 2
    router.send_multipart([peer, proto.encode(proto.AgentRegistered("S0", "M", 1.0, 30.0))])
    yield router, peer, receive
    agent.stop()
    router.close()


def send(router, peer, message):
    router.send_multipart([peer, proto.encode(message)])


@pytest.mark.parametrize("task_id", ["..", "../../etc", "a/b", "x" * 256, "tab\there"])
def test_agent_refuses_unsafe_task_ids_before_touching_the_disk(fake_master, tmp_path, task_id):
    router, peer, receive = fake_master
    framework = make_framework_info(framework_id="M-0000")
    send(router, peer, proto.RunTask(framework, make_task(task_id, "S0")))
    _, update = receive(proto.StatusUpdate)
    assert update.status.state == proto.TASK_ERROR
    assert update.status.reason == proto.REASON_TASK_INVALID
    assert not os.path.exists(tmp_path / "etc")


def test_unacknowledged_updates_are_retried_in_order(fake_master):
    router, peer, receive = fake_master
    framework = make_framework_info(framework_id="M-0000")
    send(router, peer, proto.RunTask(framework, make_task("t1", "S0", command="true")))
    _, first = receive(proto.StatusUpdate)
    _, again = receive(proto.StatusUpdate)          # not acknowledged: sent again, same uuid
    assert first.status.state == again.status.state == proto.TASK_STARTING
    assert first.status.uuid == again.status.uuid
    assert first.latest_state == proto.TASK_FINISHED or again.latest_state == proto.TASK_FINISHED
    states = []
    update = again
    while True:
        states.append(update.status.state)
        send(router, peer, proto.StatusUpdateAck("M-0000", "t1", update.status.uuid))
        if update.status.state in proto.TERMINAL_STATES:
            break
        _, update = receive(proto.StatusUpdate)
    assert states == [proto.TASK_STARTING, proto.TASK_RUNNING, proto.TASK_FINISHED]


def test_an_unknown_kill_is_answered_lost(fake_master):
    router, peer, receive = fake_master
    send(router, peer, proto.KillTask("M-0000", "ghost", None))
    _, update = receive(proto.StatusUpdate)
    assert (update.status.task_id, update.status.state) == ("ghost", proto.TASK_LOST)


def test_garbage_from_the_master_is_dropped_and_the_agent_goes_on(fake_master):
    router, peer, receive = fake_master
    router.send_multipart([peer, b"\xc1 not msgpack"])
    send(router, peer, proto.KillTask("M-0000", "after-garbage", None))
    _, update = receive(proto.StatusUpdate)
    assert update.status.task_id == "after-garbage"


def test_tasks_are_launched_one_per_loop_turn_and_a_queued_one_can_be_killed(fake_master):
    """A batch of launches does not hold back acknowledgements: the agent launches one task per
    turn of its loop, and a kill that arrives while a task still waits its turn removes it."""
    router, peer, receive = fake_master
    framework = make_framework_info(framework_id="M-0000")
    tasks = [make_task(f"b{i}", "S0", resources="cpus:0.01;mem:1", command="sleep 30")
             for i in range(40)]
    for task in tasks:
        send(router, peer, proto.RunTask(framework, task))
    send(router, peer, proto.KillTask("M-0000", "b39", None))
    seen = {}
    while "b39" not in seen:
        _, update = receive(proto.StatusUpdate)
        seen.setdefault(update.status.task_id, update.status)
        send(router, peer, proto.StatusUpdateAck("M-0000", update.status.task_id,
                                                 update.status.uuid))
    assert seen["b39"].state == proto.TASK_KILLED
    assert seen["b39"].reason == proto.REASON_TASK_KILLED_DURING_LAUNCH
