"""Memory isolation with real processes: cgroups (where this host lets us write them) and posix
monitoring. A task that allocates 200 MB under a 64 MB limit must end as a memory limitation.

No test sleeps to let time pass: each polls with a deadline and fails when it passes.
"""
import os
import select
import signal
import sys
import time
import uuid

import psutil
import pytest

from meseta import proto
from meseta.agent.containerizer import LaunchSpec, launch, terminal_state
from meseta.agent.isolation import (CgroupsV1Isolator, CgroupsV2Isolator, IsolatorError,
                                    PosixIsolator, cpu_weight, format_bytes, make_isolator,
                                    memory_limitation)

DEADLINE = 30.0
GREEDY = f'{sys.executable} -c "b = bytearray(200*1024*1024); import time; time.sleep(60)"'
MODEST = f'{sys.executable} -c "b = bytearray(8*1024*1024); print(len(b))"'


def wait_exit(container, timeout=DEADLINE):
    deadline = time.monotonic() + timeout
    while (info := container.reap()) is None:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"{container} did not exit"
        select.select([container], [], [], remaining)
    return info


def poll_until(probe, timeout=DEADLINE, interval=0.05):
    """Call probe() until it returns something truthy; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while not (result := probe()):
        assert time.monotonic() < deadline, "nothing before the deadline"
        select.select([], [], [], interval)
    return result


def gone(pid):
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def launcher(tmp_path):
    """launch(command, isolator, mem_mb) in a fresh sandbox; kills and cleans up at teardown."""
    started = []

    def _launch(value, isolator, mem_mb=64.0, cpus=0.5, **fields):
        cid = uuid.uuid4().hex
        spec = LaunchSpec(cid, str(tmp_path / cid), value, mem_mb=mem_mb, cpus=cpus,
                          environment={"PYTHONSAFEPATH": "1"}, **fields)
        container = launch(spec, isolator)
        started.append((container, isolator))
        return container

    yield _launch
    for container, isolator in started:
        container.signal(signal.SIGKILL)
        wait_exit(container)
        poll_until(lambda: isolator.cleanup(container.container_id))


@pytest.fixture
def cgroups():
    """A real cgroup isolator nested under this test process's own cgroup, or a skip."""
    name = f"meseta-test-{uuid.uuid4().hex[:8]}"
    try:
        isolator = make_isolator("cgroups", agent_name=name)
    except IsolatorError as error:
        pytest.skip(f"no writable cgroup memory hierarchy on this host: {error}")
    yield isolator
    for directory in isolator.hierarchies.values():   # evicted processes may still be dying
        poll_until(lambda: _rmdir(directory))


def _rmdir(directory):
    try:
        os.rmdir(directory)
    except OSError:
        return False
    return True


# --------------------------------------------------------------------------- cgroups


def test_cgroup_oom_kill_is_a_memory_limitation(cgroups, launcher):
    container = launcher(GREEDY, cgroups, mem_mb=64)
    info = wait_exit(container)
    assert signal.SIGKILL in (info.signal, info.code - 128)   # the OOM killer, maybe via sh
    limitation = cgroups.limitation_after_exit(container)
    assert limitation == memory_limitation(64 * 1024 * 1024, 64 * 1024 * 1024)
    assert limitation.message == "Memory limit exceeded: Requested: 64MB Maximum Used: 64MB"
    assert terminal_state(info, False, limitation) == (
        proto.TASK_FAILED, proto.REASON_CONTAINER_LIMITATION_MEMORY, limitation.message)


def test_cgroup_oom_is_seen_by_check_when_a_shell_outlives_its_child(cgroups, launcher):
    container = launcher(f"{GREEDY}; sleep 300", cgroups, mem_mb=64)
    limitation = poll_until(lambda: cgroups.check(container))
    assert limitation.reason == proto.REASON_CONTAINER_LIMITATION_MEMORY
    assert container.reap() is None             # the shell lives on: the agent kills it
    container.signal(signal.SIGKILL)
    info = wait_exit(container)
    assert terminal_state(info, False, cgroups.limitation_after_exit(container)).reason == \
        proto.REASON_CONTAINER_LIMITATION_MEMORY


def test_cgroup_task_under_its_limit_finishes(cgroups, launcher):
    container = launcher(MODEST, cgroups, mem_mb=64)
    info = wait_exit(container)
    assert cgroups.check(container) is None
    assert terminal_state(info, False, cgroups.limitation_after_exit(container)).state == \
        proto.TASK_FINISHED
    with open(os.path.join(container.sandbox, "stdout")) as f:
        assert f.read() == f"{8 * 1024 * 1024}\n"


def test_cgroup_holds_the_task_from_its_first_instruction(cgroups, launcher):
    container = launcher("/bin/cat", cgroups, shell=False, arguments=["cat", "/proc/self/cgroup"])
    assert wait_exit(container).code == 0
    with open(os.path.join(container.sandbox, "stdout")) as f:
        lines = f.read().splitlines()
    memory = [line for line in lines if line.split(":")[1].split(",").count("memory")
              or (line.startswith("0::") and isinstance(cgroups, CgroupsV2Isolator))]
    assert any(line.endswith(f"/{container.container_id}") for line in memory)


def test_cgroup_limits_are_written(cgroups, launcher):
    container = launcher("sleep 300", cgroups, mem_mb=100, cpus=0.5)
    stats = poll_until(lambda: cgroups.usage(container).get("mem_total_bytes") and
                       cgroups.usage(container))
    assert stats["mem_limit_bytes"] == 100 * 1024 * 1024
    assert stats["cpus_limit"] == 0.5
    if isinstance(cgroups, CgroupsV1Isolator):
        memory = os.path.join(cgroups.hierarchies["memory"], container.container_id)
        with open(os.path.join(memory, "memory.limit_in_bytes")) as f:
            assert int(f.read()) == 100 * 1024 * 1024
        if "cpu" in cgroups.hierarchies:
            cpu = os.path.join(cgroups.hierarchies["cpu"], container.container_id)
            with open(os.path.join(cpu, "cpu.shares")) as f:
                assert int(f.read()) == 512


def test_cleanup_kills_stragglers_and_removes_the_cgroup(cgroups, launcher):
    # setsid takes the straggler out of the task's process group, but not out of its cgroup.
    container = launcher("setsid sh -c 'echo $$ > straggler.pid; exec sleep 300' & "
                         "while [ ! -s straggler.pid ]; do sleep 0.01; done", cgroups)
    assert wait_exit(container).code == 0
    with open(os.path.join(container.sandbox, "straggler.pid")) as f:
        straggler = int(f.read())
    assert psutil.Process(straggler).name() == "sleep"
    directories = [os.path.join(h, container.container_id) for h in cgroups.hierarchies.values()]
    assert all(os.path.isdir(d) for d in directories)
    assert cgroups.orphans(known=[]) == [container.container_id]
    assert cgroups.orphans(known=[container.container_id]) == []
    if isinstance(cgroups, CgroupsV1Isolator):
        assert cgroups.cleanup(container.container_id)   # dying processes are moved out
    else:
        poll_until(lambda: cgroups.cleanup(container.container_id))
    assert not any(os.path.exists(d) for d in directories)
    poll_until(lambda: gone(straggler))


def test_cleanup_right_after_launch_leaves_nothing_behind(cgroups, launcher):
    container = launcher("sleep 300", cgroups)
    poll_until(lambda: cgroups.cleanup(container.container_id))
    info = wait_exit(container)   # killed, or refused entry (125) if cleanup came first
    assert info.signal == signal.SIGKILL or info.code == 125


def test_cgroup_isolation_with_another_user(cgroups, launcher):
    if os.geteuid() != 0:
        pytest.skip("switching user needs root")
    container = launcher("cat /proc/self/cgroup; id -un", cgroups, user="nobody")
    assert wait_exit(container).code == 0
    with open(os.path.join(container.sandbox, "stdout")) as f:
        out = f.read()
    assert container.container_id in out and out.endswith("nobody\n")


# --------------------------------------------------------------------------- posix


def test_posix_check_catches_a_task_over_its_limit(launcher):
    isolator = PosixIsolator()
    container = launcher(GREEDY, isolator, mem_mb=64)
    limitation = poll_until(lambda: isolator.check(container))
    assert limitation.reason == proto.REASON_CONTAINER_LIMITATION_MEMORY
    assert limitation.message.startswith("Memory limit exceeded: Requested: 64MB Maximum Used: ")
    container.signal(signal.SIGKILL)            # posix does not enforce: the agent kills
    info = wait_exit(container)
    assert terminal_state(info, False, isolator.limitation_after_exit(container)) == (
        proto.TASK_FAILED, proto.REASON_CONTAINER_LIMITATION_MEMORY, limitation.message)


def test_posix_task_under_its_limit_finishes(launcher):
    isolator = PosixIsolator()
    container = launcher(f"{MODEST}; sleep 0.3", isolator, mem_mb=64)
    while container.reap() is None:
        assert isolator.check(container) is None
        select.select([container], [], [], 0.05)
    info = container.reap()
    assert terminal_state(info, False, isolator.limitation_after_exit(container)).state == \
        proto.TASK_FINISHED


def test_posix_usage_sums_the_process_group(launcher):
    isolator = PosixIsolator()
    container = launcher("sleep 300 & sleep 300 & wait", isolator, mem_mb=64, cpus=1)
    stats = poll_until(lambda: isolator.usage(container)["mem_rss_bytes"] > 0 and
                       isolator.usage(container))
    assert stats["mem_limit_bytes"] == 64 * 1024 * 1024
    assert stats["cpus_limit"] == 1
    assert {"cpus_user_time_secs", "cpus_system_time_secs"} <= set(stats)


# --------------------------------------------------------------------------- choosing


@pytest.mark.parametrize("mode", ["posix", "posix/mem", "posix/cpu,posix/mem"])
def test_posix_spellings(mode):
    assert isinstance(make_isolator(mode), PosixIsolator)


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="unknown isolation"):
        make_isolator("cgroups/mem,posix/mem")
    with pytest.raises(ValueError, match="unknown isolation"):
        make_isolator("docker")


def test_auto_falls_back_to_posix_and_cgroups_fails_loudly(tmp_path):
    proc = tmp_path / "cgroup"
    proc.write_text("4:memory:/\n0::/\n")
    root = tmp_path / "no-cgroups"
    root.mkdir()
    assert isinstance(make_isolator("auto", str(root), proc_cgroup=str(proc)), PosixIsolator)
    with pytest.raises(IsolatorError, match="memory"):
        make_isolator("cgroups/mem", str(root), proc_cgroup=str(proc))


def test_v2_on_a_fake_hierarchy(tmp_path):
    """The kernel cannot give this host a v2 memory controller, so the v2 file handling is
    exercised on plain files laid out as the kernel would lay them out."""
    proc = tmp_path / "cgroup"
    proc.write_text("0::/agent.service\n")
    root = tmp_path / "fs"
    (root / "agent.service").mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu memory pids\n")
    (root / "agent.service" / "cgroup.controllers").write_text("cpu memory\n")
    isolator = make_isolator("auto", str(root), agent_name="a1", proc_cgroup=str(proc))
    assert isinstance(isolator, CgroupsV2Isolator)
    assert (root / "agent.service" / "a1" / "cgroup.subtree_control").read_text() == \
        "+memory +cpu"
    container = launch(LaunchSpec("c1", str(tmp_path / "sandbox"), "true", mem_mb=16, cpus=1),
                       isolator)
    assert wait_exit(container).code == 0
    directory = root / "agent.service" / "a1" / "c1"
    assert (directory / "memory.max").read_text() == str(32 * 1024 * 1024)   # Mesos's minimum
    assert (directory / "cgroup.procs").read_text().strip() == str(container.pid)
    assert isolator.check(container) is None
    (directory / "memory.events").write_text("low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\n")
    (directory / "memory.peak").write_text(str(32 * 1024 * 1024))
    assert isolator.limitation_after_exit(container).message == \
        "Memory limit exceeded: Requested: 32MB Maximum Used: 32MB"


# --------------------------------------------------------------------------- pure helpers


@pytest.mark.parametrize("count, text", [
    (0, "0B"), (100, "100B"), (1536 * 1024, "1536KB"), (64 * 1024 * 1024, "64MB"),
    (3 * 1024 ** 3, "3GB"), (2 * 1024 ** 4, "2TB"), (4096 * 3 + 1, "12289B"),
])
def test_format_bytes_as_stout(count, text):
    assert format_bytes(count) == text


def test_cpu_weight_spans_the_v2_range():
    assert cpu_weight(0.001) == 1
    assert cpu_weight(1) == 39
    assert cpu_weight(256) == 10000
