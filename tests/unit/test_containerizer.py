"""The command containerizer with real processes: sandbox, environment, exit and kill semantics.

No test sleeps to let time pass: each waits on the container's pidfd (or a condition) with a
deadline, and fails if the deadline passes.
"""
import os
import pwd
import select
import signal
import time
import uuid

import psutil
import pytest

from meseta import proto
from meseta.agent.containerizer import (EXIT_UNKNOWN, ExitInfo, LaunchError, LaunchSpec, adopt,
                                        exit_info, launch, process_start_time, recorded_exit,
                                        terminal_state)
from meseta.agent.isolation import Limitation, PosixIsolator

DEADLINE = 20.0


@pytest.fixture
def isolator():
    return PosixIsolator()


@pytest.fixture
def run(tmp_path, isolator):
    """Launch a command in a fresh sandbox; every container is SIGKILLed at teardown."""
    started = []

    def _run(value, **fields):
        cid = fields.pop("container_id", uuid.uuid4().hex)
        sandbox = fields.pop("sandbox", str(tmp_path / "runs" / cid))
        container = launch(LaunchSpec(cid, sandbox, value, **fields), isolator)
        started.append(container)
        return container

    yield _run
    for container in started:
        container.signal(signal.SIGKILL)
        wait_exit(container)


def wait_exit(container, timeout=DEADLINE):
    """Wait on the pidfd, then reap; fails if the command does not exit in time."""
    deadline = time.monotonic() + timeout
    while True:
        info = container.reap()
        if info is not None:
            return info
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"{container} did not exit"
        select.select([container], [], [], remaining)


def wait_for(condition, timeout=DEADLINE):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        select.select([], [], [], 0.01)


def running(container, name="sleep"):
    """Wait until the waiter's command (or its child) runs `name`: a SIGTERM sent while the
    waiter is still forking it may be lost (see the containerizer's docstring)."""
    wait_for(lambda: name in [p.name() for p in psutil.Process(container.pid).children(True)])
    return container


def read(container, name):
    with open(os.path.join(container.sandbox, name)) as f:
        return f.read()


def gone(pid):
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# --------------------------------------------------------------------------- sandbox, env


def test_sandbox_is_created_with_stdout_and_stderr(run, tmp_path):
    sandbox = str(tmp_path / "frameworks" / "f" / "executors" / "e" / "runs" / "r")
    container = run("echo out; echo err >&2; pwd", sandbox=sandbox)
    assert wait_exit(container).code == 0
    assert container.sandbox == sandbox
    assert read(container, "stdout") == f"out\n{sandbox}\n"
    assert read(container, "stderr") == "err\n"


def test_environment_is_the_base_plus_the_callers(run):
    container = run('echo "$PORT0|$HOST|$HOME|$MESOS_SANDBOX|$MESOS_DIRECTORY|$LANG|${PATH:+set}"',
                    environment={"PORT0": "31001", "HOST": "node-1"})
    wait_exit(container)
    sandbox = container.sandbox
    lang = os.environ.get("LANG", "C.UTF-8")
    assert read(container, "stdout") == f"31001|node-1|{sandbox}|{sandbox}|{sandbox}|{lang}|set\n"


def test_agent_environment_does_not_leak_and_caller_wins(run, monkeypatch):
    monkeypatch.setenv("MESETA_SECRET_FOR_TEST", "leak")
    container = run('echo "${MESETA_SECRET_FOR_TEST:-none} $HOME"', environment={"HOME": "/h"})
    wait_exit(container)
    assert read(container, "stdout") == "none /h\n"


# --------------------------------------------------------------------------- exits


def test_exit_status_message_and_state(run):
    info = wait_exit(run("exit 3"))
    assert info == ExitInfo(3, None, "Command exited with status 3")
    assert terminal_state(info, killed_by_request=False) == (proto.TASK_FAILED, None, info.message)


def test_exit_zero_is_finished(run):
    info = wait_exit(run("true"))
    assert info.message == "Command exited with status 0"
    assert terminal_state(info, False).state == proto.TASK_FINISHED


def test_signal_message(run):
    info = wait_exit(run("kill -9 $$"))     # the waiter sees its shell's 128+9
    assert info == ExitInfo(137, signal.SIGKILL, "Command terminated with signal Killed")
    assert terminal_state(info, killed_by_request=False).state == proto.TASK_FAILED


def test_exit_info_reads_the_shell_convention_and_popen_returncodes():
    assert exit_info(3) == ExitInfo(3, None, "Command exited with status 3")
    assert exit_info(143) == ExitInfo(143, signal.SIGTERM, "Command terminated with signal Terminated")
    assert exit_info(-9) == ExitInfo(None, signal.SIGKILL, "Command terminated with signal Killed")
    assert exit_info(255) == ExitInfo(255, None, "Command exited with status 255")
    assert exit_info(128).signal is None


# --------------------------------------------------------------------------- the waiter


def test_the_waiter_records_the_exit_status_in_the_sandbox(run):
    container = run("echo out; exit 3")
    assert wait_exit(container).code == 3
    assert recorded_exit(container.sandbox) == ExitInfo(3, None, "Command exited with status 3")
    assert read(container, "stdout") == "out\n"
    assert read(container, "stderr") == ""          # nothing from the waiter itself


def test_the_waiter_outlives_sigterm_to_record_how_its_command_ended(run):
    container = running(run("sleep 300"))
    container.signal(signal.SIGTERM)
    info = wait_exit(container)
    assert info.signal == signal.SIGTERM
    assert recorded_exit(container.sandbox) == info
    assert read(container, "stderr") == ""          # no "Terminated" from the waiting shell


def test_a_command_that_handles_sigterm_decides_its_own_status(run):
    container = run("trap 'exit 7' TERM; touch ready; while :; do sleep 0.05; done")
    wait_for(lambda: os.path.exists(os.path.join(container.sandbox, "ready")))
    container.signal(signal.SIGTERM)
    assert wait_exit(container).code == 7
    assert recorded_exit(container.sandbox).code == 7


def test_the_command_ignores_no_signal_the_waiter_traps(run):
    container = run("/bin/cat", shell=False, arguments=["cat", "/proc/self/status"])
    wait_exit(container)
    fields = dict(line.split(":\t", 1) for line in read(container, "stdout").splitlines())
    # Whatever the agent itself inherited ignored (CI runners ignore some) is not the waiter's
    # doing; the waiter must add nothing to it.
    with open("/proc/self/status") as own:
        inherited = int(dict(line.split(":\t", 1) for line in own.read().splitlines())["SigIgn"], 16)
    assert int(fields["SigIgn"], 16) & ~inherited == 0


def test_sigkill_leaves_no_record(run):
    container = run("sleep 300")
    container.signal(signal.SIGKILL)
    assert wait_exit(container) == ExitInfo(None, signal.SIGKILL, "Command terminated with signal Killed")
    assert recorded_exit(container.sandbox) is None


def test_reap_is_none_while_running_and_pidfd_turns_readable_on_exit(run):
    container = running(run("sleep 300"))
    assert container.reap() is None
    assert select.select([container], [], [], 0)[0] == []
    container.signal(signal.SIGTERM)
    readable, _, _ = select.select([container], [], [], DEADLINE)
    assert readable == [container]
    assert container.reap().message == "Command terminated with signal Terminated"
    assert container.reap() is container.reap()      # reaped once, then the same answer
    with pytest.raises(ValueError):
        container.fileno()                           # closed: drop it from pollers


# --------------------------------------------------------------------------- kill


def test_kill_reaches_the_children_of_a_shell_command(run):
    container = run("sleep 300 & echo $! > child.pid; wait")
    pid_file = os.path.join(container.sandbox, "child.pid")
    wait_for(lambda: os.path.exists(pid_file) and read(container, "child.pid").strip())
    child = int(read(container, "child.pid"))
    wait_for(lambda: psutil.Process(child).name() == "sleep")    # forked sh, then exec
    container.signal(signal.SIGTERM)
    info = wait_exit(container)
    assert terminal_state(info, killed_by_request=True) == (
        proto.TASK_KILLED, None, "Command terminated with signal Terminated")
    wait_for(lambda: gone(child))


def test_processes_left_behind_die_with_the_command(run):
    container = run("sleep 300 & echo $! > child.pid")
    assert wait_exit(container).code == 0
    child = int(read(container, "child.pid"))
    wait_for(lambda: gone(child))


def test_signal_after_reap_is_a_no_op(run):
    container = run("true")
    wait_exit(container)
    container.signal(signal.SIGKILL)


def test_terminal_state_order():
    exited0 = ExitInfo(0, None, "Command exited with status 0")
    killed = ExitInfo(None, 15, "Command terminated with signal Terminated")
    memory = Limitation(proto.REASON_CONTAINER_LIMITATION_MEMORY, "Memory limit exceeded: ...")
    assert terminal_state(killed, True).state == proto.TASK_KILLED
    assert terminal_state(exited0, True).state == proto.TASK_FINISHED   # Mesos: WSUCCEEDED first
    assert terminal_state(killed, True, memory) == (
        proto.TASK_FAILED, proto.REASON_CONTAINER_LIMITATION_MEMORY, memory.message)
    assert terminal_state(EXIT_UNKNOWN, False) == (
        proto.TASK_FAILED, proto.REASON_EXECUTOR_TERMINATED, EXIT_UNKNOWN.message)


# --------------------------------------------------------------------------- argv mode, errors


def test_argv_mode_runs_the_executable_by_path_with_the_arguments(run):
    container = run("/bin/cat", shell=False, arguments=["my-cat", "/proc/self/cmdline"])
    assert wait_exit(container).code == 0
    assert read(container, "stdout") == "/bin/cat\0/proc/self/cmdline\0"   # no exec -a in sh


def test_argv_mode_searches_path_and_does_not_use_a_shell(run):
    container = run("printf", shell=False, arguments=["printf", "%s|", "$HOME", "a b"])
    wait_exit(container)
    assert read(container, "stdout") == "$HOME|a b|"


def test_missing_binary_is_a_launch_error(run):
    with pytest.raises(LaunchError, match="no-such-binary-here"):
        run("no-such-binary-here", shell=False)
    with pytest.raises(LaunchError, match="not found"):
        run("/nonexistent/bin/tool", shell=False, arguments=["tool"])


def test_uncreatable_sandbox_is_a_launch_error(run, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(LaunchError, match="Failed to create sandbox"):
        run("true", sandbox=str(blocker / "sandbox"))


@pytest.mark.skipif(os.geteuid() != 0, reason="switching user needs root")
def test_runs_as_the_task_user_when_root(run):
    nobody = pwd.getpwnam("nobody")
    container = run("id -u; echo x > own-file", user="nobody")
    assert wait_exit(container).code == 0
    assert read(container, "stdout") == f"{nobody.pw_uid}\n"
    assert os.stat(container.sandbox).st_uid == nobody.pw_uid


# --------------------------------------------------------------------------- re-adoption


def test_adopt_checks_start_time_and_watches_the_process(run):
    container = run("sleep 300")
    assert container.start_time == process_start_time(container.pid)
    assert adopt("other", container.pid, container.start_time + 5, container.sandbox) is None
    adopted = adopt(container.container_id, container.pid, container.start_time,
                    container.sandbox)
    assert adopted is not None and adopted.pgid == container.pgid
    assert adopted.reap() is None
    adopted.signal(signal.SIGKILL)
    select.select([adopted], [], [], DEADLINE)
    assert adopted.reap() is EXIT_UNKNOWN    # not our child, and SIGKILL took the waiter too
    assert wait_exit(container).signal == signal.SIGKILL


def test_an_adopted_container_reports_the_status_its_waiter_recorded(run):
    container = run("read line < fifo; exit $line")
    fifo = os.path.join(container.sandbox, "fifo")
    os.mkfifo(fifo)
    adopted = adopt(container.container_id, container.pid, container.start_time,
                    container.sandbox)
    with open(fifo, "w") as pipe:
        pipe.write("3\n")
    assert wait_exit(adopted) == ExitInfo(3, None, "Command exited with status 3")
    wait_exit(container)


def test_adopt_a_process_that_is_gone(run):
    container = run("true")
    wait_exit(container)
    assert adopt(container.container_id, container.pid, container.start_time,
                 container.sandbox) is None
