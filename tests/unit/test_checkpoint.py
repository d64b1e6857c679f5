"""The agent's checkpoint files: atomic writes, what recovery reads back, and what it does with
files a crash, a reboot or a damaged disk left behind."""
from __future__ import annotations

import os

import pytest

from meseta import proto
from meseta.agent.checkpoint import (Checkpoint, CheckpointError, TaskCheckpoint, decode_task,
                                     encode_task, write_atomic)
from meseta.agent.updates import UpdateManager
from meseta.testing import make_framework_info, make_task

BOOT = "6c1f5bd2-0d0e-4e8f-9d4e-5b1c1c1d2e3f"


def make_record(task_id="t1", container_id="c1", state=proto.TASK_RUNNING, **fields):
    framework = make_framework_info(framework_id="F-0000", capabilities=[proto.PARTITION_AWARE])
    task = make_task(task_id, "S0", resources="cpus:0.5;mem:64;ports:[31000-31001]",
                     command="sleep 60", data=b"\x00\xff")
    pending = [proto.TaskStatus(task_id, proto.TASK_STARTING, uuid=b"a" * 16, timestamp=1.0),
               proto.TaskStatus(task_id, state, uuid=b"b" * 16, timestamp=2.0, executor_pid=42)]
    defaults = dict(framework=framework, task=task, container_id=container_id,
                    sandbox=f"/w/frameworks/F-0000/executors/{task_id}/runs/{container_id}",
                    state=state, pid=42, start_time=1234.56, pending=pending)
    defaults.update(fields)
    return TaskCheckpoint(**defaults)


@pytest.fixture
def checkpoint(tmp_path):
    checkpoint = Checkpoint(str(tmp_path))
    checkpoint.save_boot_id(BOOT)
    checkpoint.save_agent_id("M-S0")
    return checkpoint


def task_path(checkpoint, record):
    return checkpoint.task_path(record.framework_id, record.task.task_id, record.container_id)


def test_a_task_comes_back_exactly_as_it_was_saved(checkpoint):
    record = make_record(kill_requested=True, kill_reason=[proto.TASK_FAILED, "R", "why"])
    checkpoint.save_task(record)
    recovered = checkpoint.recover(BOOT)
    assert recovered.agent_id == "M-S0"
    assert recovered.tasks == [record] and not recovered.broken and not recovered.rebooted


def test_saving_again_replaces_the_record(checkpoint):
    checkpoint.save_task(make_record())
    checkpoint.save_task(make_record(state=proto.TASK_FINISHED, pending=[]))
    [record] = checkpoint.recover(BOOT).tasks
    assert (record.state, record.pending) == (proto.TASK_FINISHED, [])


def test_one_file_per_run_named_by_its_ids(checkpoint, tmp_path):
    checkpoint.save_task(make_record("web.1@x", "c1"))
    assert sorted(os.listdir(tmp_path / "meta")) == ["agent_id", "boot_id", "frameworks"]
    assert os.listdir(tmp_path / "meta/frameworks/F-0000/tasks") == ["web.1@x@c1"]
    assert (tmp_path / "meta/agent_id").read_text() == "M-S0\n"
    assert checkpoint.recover(BOOT).tasks[0].task.task_id == "web.1@x"


def test_a_fresh_work_dir_recovers_nothing(tmp_path):
    recovered = Checkpoint(str(tmp_path)).recover(BOOT)
    assert recovered.agent_id is None and not recovered.tasks and not recovered.rebooted


def test_another_boot_means_the_tasks_are_gone(checkpoint):
    checkpoint.save_task(make_record())
    recovered = checkpoint.recover("another-boot")
    assert recovered.rebooted and recovered.agent_id is None and not recovered.tasks
    checkpoint.forget()
    checkpoint.save_boot_id("another-boot")
    assert checkpoint.recover("another-boot").agent_id is None


def test_a_framework_directory_goes_with_its_last_task(checkpoint, tmp_path):
    checkpoint.save_task(make_record("t1", "c1"))
    checkpoint.save_task(make_record("t1", "c2"))
    checkpoint.remove_task("F-0000", "t1", "c1")
    assert os.listdir(tmp_path / "meta/frameworks/F-0000/tasks") == ["t1@c2"]
    checkpoint.remove_task("F-0000", "t1", "c2")
    checkpoint.remove_task("F-0000", "t1", "c2")      # again: nothing to do
    assert os.listdir(tmp_path / "meta/frameworks") == []
    assert checkpoint.recover(BOOT).tasks == []


def test_forget_leaves_only_the_boot_id(checkpoint, tmp_path):
    checkpoint.save_task(make_record())
    checkpoint.forget()
    assert os.listdir(tmp_path / "meta") == ["boot_id"]


# --------------------------------------------------------------------------- crashes, damage


def test_a_write_interrupted_before_its_rename_leaves_the_old_file(checkpoint):
    record = make_record()
    checkpoint.save_task(record)
    path = task_path(checkpoint, record)
    with open(path + ".tmp", "wb") as half_written:
        half_written.write(encode_task(make_record(state=proto.TASK_FAILED))[:40])
    assert checkpoint.recover(BOOT).tasks == [record]
    assert not os.path.exists(path + ".tmp")


@pytest.mark.parametrize("durable", [True, False])
def test_write_atomic_replaces_whole_files_and_leaves_no_temporary(tmp_path, durable):
    path = str(tmp_path / "a" / "b" / "file")
    write_atomic(path, b"first", durable)
    write_atomic(path, b"second", durable)
    assert open(path, "rb").read() == b"second"
    assert os.listdir(tmp_path / "a" / "b") == ["file"]


def test_no_truncation_of_a_record_reads_as_a_record():
    data = encode_task(make_record())
    for length in range(len(data)):
        with pytest.raises(CheckpointError):
            decode_task(data[:length])


def test_a_damaged_byte_fails_the_checksum():
    data = bytearray(encode_task(make_record()))
    data[len(data) // 2] ^= 0x01
    with pytest.raises(CheckpointError, match="checksum|not a checkpoint"):
        decode_task(bytes(data))


def test_strict_recovery_refuses_a_truncated_file_and_names_it(checkpoint):
    record = make_record()
    checkpoint.save_task(record)
    path = task_path(checkpoint, record)
    os.truncate(path, os.path.getsize(path) // 2)
    with pytest.raises(CheckpointError) as error:
        checkpoint.recover(BOOT, strict=True)
    assert path in str(error.value) and "--strict=false" in str(error.value)


def test_lenient_recovery_keeps_the_rest_and_reads_the_broken_ids_from_the_path(checkpoint):
    good, bad = make_record("good", "c1"), make_record("bad", "c2")
    checkpoint.save_task(good)
    checkpoint.save_task(bad)
    path = task_path(checkpoint, bad)
    with open(path, "wb") as handle:
        handle.write(b"\x93\x01")
    recovered = checkpoint.recover(BOOT, strict=False)
    assert recovered.tasks == [good]
    [broken] = recovered.broken
    assert (broken.framework_id, broken.task_id, broken.container_id, broken.path) == (
        "F-0000", "bad", "c2", path)


def test_a_record_under_another_tasks_name_is_broken(checkpoint, tmp_path):
    record = make_record("t1", "c1")
    checkpoint.save_task(record)
    os.rename(task_path(checkpoint, record), checkpoint.task_path("F-0000", "t9", "c9"))
    with pytest.raises(CheckpointError, match="do not match its path"):
        checkpoint.recover(BOOT)
    [broken] = checkpoint.recover(BOOT, strict=False).broken
    assert (broken.task_id, broken.container_id) == ("t9", "c9")


def test_a_file_that_names_no_task_is_an_error_when_strict_and_skipped_otherwise(checkpoint):
    record = make_record()
    checkpoint.save_task(record)
    stray = os.path.join(os.path.dirname(task_path(checkpoint, record)), "no-ids-here")
    with open(stray, "wb") as handle:
        handle.write(b"?")
    with pytest.raises(CheckpointError, match="no-ids-here"):
        checkpoint.recover(BOOT)
    recovered = checkpoint.recover(BOOT, strict=False)
    assert recovered.tasks == [record] and recovered.broken == []


def test_an_unreadable_agent_id_is_an_error_when_strict(checkpoint, tmp_path):
    (tmp_path / "meta" / "agent_id").write_text("../../etc\n")
    with pytest.raises(CheckpointError, match="agent_id"):
        checkpoint.recover(BOOT)
    assert checkpoint.recover(BOOT, strict=False).agent_id is None


def test_checkpointed_updates_rebuild_the_update_stream_in_order(checkpoint):
    record = make_record()
    checkpoint.save_task(record)
    [recovered] = checkpoint.recover(BOOT).tasks
    updates = UpdateManager(retry_min=1, retry_max=10)
    updates.restore("F-0000", recovered.pending)
    assert updates.pending("F-0000", "t1") == record.pending
    [head] = updates.resend_all(now=0)          # nothing is sent before the agent re-registers
    assert head.status.uuid == b"a" * 16 and head.latest_state == proto.TASK_RUNNING
    _, following = updates.acknowledge("F-0000", "t1", b"a" * 16, now=1)
    assert following.status.uuid == b"b" * 16


def test_acknowledgements_are_journalled_and_drop_their_updates_on_recovery(checkpoint):
    record = make_record()
    checkpoint.save_task(record)
    path = task_path(checkpoint, record)
    checkpoint.save_ack("F-0000", "t1", "c1", b"a" * 16)
    with open(path, "rb") as handle:
        written = handle.read()
    [recovered] = checkpoint.recover(BOOT).tasks
    assert recovered.pending == record.pending[1:]
    checkpoint.save_ack("F-0000", "t1", "c1", b"b" * 16)
    with open(path, "rb") as handle:
        assert handle.read() == written           # an append to the journal, not a rewrite
    [recovered] = checkpoint.recover(BOOT).tasks
    assert recovered.pending == [] and recovered.state == proto.TASK_RUNNING


def test_a_new_record_retires_the_journal_and_removal_takes_both(checkpoint, tmp_path):
    record = make_record()
    checkpoint.save_task(record)
    checkpoint.save_ack("F-0000", "t1", "c1", b"a" * 16)
    tasks = tmp_path / "meta/frameworks/F-0000/tasks"
    assert sorted(os.listdir(tasks)) == ["t1@c1", "t1@c1.acks"]
    checkpoint.save_task(make_record(pending=record.pending[1:]))
    assert os.listdir(tasks) == ["t1@c1"]
    checkpoint.save_ack("F-0000", "t1", "c1", b"b" * 16)
    checkpoint.remove_task("F-0000", "t1", "c1")
    assert os.listdir(tmp_path / "meta/frameworks") == []


def test_a_torn_or_damaged_journal_line_acknowledges_nothing(checkpoint):
    record = make_record()
    checkpoint.save_task(record)
    with open(task_path(checkpoint, record) + ".acks", "wb") as handle:
        handle.write(b"not hex\n" + (b"b" * 16).hex().encode()[:10])   # a crash mid-append
    [recovered] = checkpoint.recover(BOOT).tasks
    assert recovered.pending == record.pending
