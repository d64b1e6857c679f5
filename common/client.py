"""Client commands in Mesos's shapes: agent list, framework list, task list|kill|log.

They read the master's HTTP API (and an agent's /files for logs), print a table or, with
--json, the JSON a script wants.
"""
from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Sequence

import click

DEFAULT_MASTER = "127.0.0.1:5050"


class ClientError(click.ClickException):
    pass


def _get(url: str, timeout: float = 10.0) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise ClientError(f"{url}: HTTP {exc.code}: {exc.read().decode(errors='replace').strip()}")
    except (urllib.error.URLError, OSError) as exc:
        raise ClientError(f"cannot reach {url}: {getattr(exc, 'reason', exc)}")


def _post(url: str, data: dict, timeout: float = 10.0) -> tuple[int, str]:
    body = urllib.parse.urlencode(data).encode()
    try:
        with urllib.request.urlopen(url, data=body, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace").strip()
    except (urllib.error.URLError, OSError) as exc:
        raise ClientError(f"cannot reach {url}: {getattr(exc, 'reason', exc)}")


def _base(master: str) -> str:
    return master if master.startswith("http") else f"http://{master}"


def _table(headers: Sequence[str], rows: list[Sequence[Any]]) -> str:
    cells = [list(map(str, headers))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def _emit(as_json: bool, payload: Any, headers: Sequence[str], rows: list[Sequence[Any]]) -> None:
    if as_json:
        click.echo(json.dumps(payload, indent=2))
    elif rows:
        click.echo(_table(headers, rows))
    else:
        click.echo("(none)")


master_option = click.option("--master", envvar="MESETA_MASTER", default=DEFAULT_MASTER,
                             show_default=True, help="The master's host:port.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _resources(res: dict) -> str:
    return f"cpus={res.get('cpus', 0):g} mem={res.get('mem', 0):g} disk={res.get('disk', 0):g}"


@click.command("list")
@master_option
@json_option
def agent_list(master: str, as_json: bool) -> None:
    """List the agents of the cluster."""
    slaves = _get(f"{_base(master)}/master/slaves")["slaves"]
    rows = [(s["id"], s["hostname"], s["pid"].split("@", 1)[-1], "yes" if s["active"] else "no",
             _resources(s["resources"]), _resources(s["used_resources"])) for s in slaves]
    _emit(as_json, slaves, ("AGENT ID", "HOSTNAME", "ADDRESS", "ACTIVE", "RESOURCES", "USED"), rows)


@click.group("framework")
def framework_group() -> None:
    """Frameworks registered with the master."""


@framework_group.command("list")
@master_option
@json_option
@click.option("--all", "show_all", is_flag=True, help="Include completed frameworks.")
def framework_list(master: str, as_json: bool, show_all: bool) -> None:
    """List frameworks."""
    body = _get(f"{_base(master)}/master/frameworks")
    frameworks = body["frameworks"] + (body["completed_frameworks"] if show_all else [])
    rows = [(f["id"], f["name"], "yes" if f["active"] else "no", len(f["tasks"]),
             _resources(f["used_resources"])) for f in frameworks]
    _emit(as_json, frameworks, ("ID", "NAME", "ACTIVE", "TASKS", "USED"), rows)


@click.group("task")
def task_group() -> None:
    """Tasks: list, kill, read logs."""


def _all_tasks(master: str) -> list[dict]:
    return _get(f"{_base(master)}/master/tasks?limit=100000")["tasks"]


@task_group.command("list")
@master_option
@json_option
@click.option("--all", "show_all", is_flag=True, help="Include tasks that ended.")
def task_list(master: str, as_json: bool, show_all: bool) -> None:
    """List tasks (running ones unless --all)."""
    terminal = {"TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR", "TASK_LOST",
                "TASK_DROPPED", "TASK_GONE", "TASK_GONE_BY_OPERATOR"}
    tasks = [t for t in _all_tasks(master) if show_all or t["state"] not in terminal]
    rows = [(t["id"], t["name"], t["state"], t["framework_id"], t["slave_id"]) for t in tasks]
    _emit(as_json, tasks, ("ID", "NAME", "STATE", "FRAMEWORK", "AGENT"), rows)


@task_group.command("kill")
@master_option
@click.argument("task_id")
@click.option("--framework", "framework_id", default=None, help="Only in this framework.")
def task_kill(master: str, task_id: str, framework_id: str | None) -> None:
    """Kill a task (its framework sees TASK_KILLED)."""
    data = {"task_id": task_id}
    if framework_id:
        data["framework_id"] = framework_id
    status, text = _post(f"{_base(master)}/master/kill", data)
    if status >= 400:
        raise ClientError(text or f"HTTP {status}")
    click.echo(f"killing {task_id}")


def _sandbox(master: str, task_id: str) -> tuple[str, str]:
    """(agent base URL, sandbox directory) of a task, as the Mesos CLI finds them."""
    matches = [t for t in _all_tasks(master) if t["id"] == task_id]
    if not matches:
        raise ClientError(f"no task {task_id!r}")
    task = matches[0]
    slaves = {s["id"]: s for s in _get(f"{_base(master)}/master/slaves")["slaves"]}
    slave = slaves.get(task["slave_id"])
    if slave is None:
        raise ClientError(f"the agent of task {task_id} ({task['slave_id']}) is not registered")
    agent = "http://" + slave["pid"].split("@", 1)[1]
    state = _get(f"{agent}/state")
    for framework in state["frameworks"]:
        for executor in framework["executors"] + framework["completed_executors"]:
            if executor["id"] == task_id and framework["id"] == task["framework_id"]:
                return agent, executor["directory"]
    raise ClientError(f"agent {task['slave_id']} has no sandbox for {task_id}")


@task_group.command("log")
@master_option
@click.argument("task_id")
@click.option("--file", "name", default="stdout", show_default=True, help="stdout or stderr.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing as the file grows.")
@click.option("--interval", default=0.5, show_default=True, hidden=True)
def task_log(master: str, task_id: str, name: str, follow: bool, interval: float) -> None:
    """Print a task's stdout (or --file stderr), optionally following it."""
    agent, sandbox = _sandbox(master, task_id)
    path = os.path.join(sandbox, name)
    offset = 0
    while True:
        query = urllib.parse.urlencode({"path": path, "offset": offset, "length": 65536})
        chunk = _get(f"{agent}/files/read?{query}")
        data = chunk["data"]
        if data:
            sys.stdout.write(data)
            sys.stdout.flush()
            offset += len(data.encode())
            continue
        if not follow:
            return
        time.sleep(interval)


def register(main: click.Group, agent: click.Group) -> None:
    agent.add_command(agent_list)
    main.add_command(framework_group)
    main.add_command(task_group)
