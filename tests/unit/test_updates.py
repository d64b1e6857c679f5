"""The agent's status update streams: in order, one in flight, retried with backoff."""
from __future__ import annotations

from meseta import proto
from meseta.agent.updates import UpdateManager


def status(state, n):
    return proto.TaskStatus("t1", state, uuid=bytes([n]) * 16)


def test_one_update_in_flight_per_task_in_order():
    m = UpdateManager(retry_min=10, retry_max=40)
    first = m.enqueue("F", status(proto.TASK_STARTING, 1), now=0)
    assert first.status.state == proto.TASK_STARTING
    assert m.enqueue("F", status(proto.TASK_RUNNING, 2), now=0) is None
    assert m.enqueue("F", status(proto.TASK_FINISHED, 3), now=0) is None
    assert first.latest_state == proto.TASK_STARTING
    matched, following = m.acknowledge("F", "t1", bytes([1]) * 16, now=1)
    assert matched and following.status.state == proto.TASK_RUNNING
    assert following.latest_state == proto.TASK_FINISHED
    assert m.acknowledge("F", "t1", bytes([9]) * 16, now=1) == (False, None)   # stale uuid
    _, last = m.acknowledge("F", "t1", bytes([2]) * 16, now=2)
    assert last.status.state == proto.TASK_FINISHED
    assert m.acknowledge("F", "t1", bytes([3]) * 16, now=3) == (True, None)
    assert m.pending_count() == 0 and not m.streams


def test_retries_back_off_exponentially_up_to_the_cap():
    m = UpdateManager(retry_min=10, retry_max=40)
    m.enqueue("F", status(proto.TASK_RUNNING, 1), now=0)
    times = [t for t in range(0, 200) if m.due(t)]
    assert times == [10, 30, 70, 110, 150, 190]


def test_resend_all_after_reregistration_resets_backoff():
    m = UpdateManager(retry_min=10, retry_max=600)
    m.enqueue("F", status(proto.TASK_RUNNING, 1), now=0)
    m.due(10)
    m.due(30)
    [again] = m.resend_all(now=31)
    assert again.status.state == proto.TASK_RUNNING
    assert not m.due(40) and m.due(41)
