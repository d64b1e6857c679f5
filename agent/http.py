"""The agent's HTTP API: /health, /state, /flags, /files/{read,download,browse}, /metrics.

File access is confined to task sandboxes: a path is resolved (symlinks and `..` included)
and must lie inside `<work_dir>/frameworks`, else 403 — never a read of the agent's host.
"""
from __future__ import annotations

import os
import stat
from typing import Any

from flask import Flask, Response, request, send_file

from meseta import proto
from meseta.http import add_metrics_routes, base_app, json_response, text_error

MAX_READ = 1024 * 1024


def _resolve(daemon: Any, path: str | None) -> tuple[str | None, Response | None]:
    if not path:
        return None, text_error("Expecting 'path=value' in query", 400)
    if "\0" in path:
        return None, text_error("Path contains a NUL byte", 400)
    root = daemon.sandbox_root
    candidate = path if os.path.isabs(path) else os.path.join(root, path)
    if ".." in candidate.split(os.sep):
        return None, text_error(f"Path '{path}' must not contain '..'", 403)
    real = os.path.realpath(candidate)
    if real != root and not real.startswith(root + os.sep):
        return None, text_error(f"Path '{path}' is outside the task sandboxes", 403)
    if not os.path.exists(real):
        return None, text_error(f"No such file or directory: '{path}'", 404)
    return real, None


def _task_json(task: Any) -> dict:
    info = task.info
    return {
        "id": info.task_id, "name": info.name, "framework_id": task.framework_id,
        "executor_id": info.task_id, "slave_id": info.agent_id, "state": task.state,
        "resources": info.resources.summary(),
        "statuses": [{"state": s.state, "timestamp": s.timestamp} for s in task.statuses],
    }


def state(daemon: Any) -> dict:
    """A subset of the Mesos agent's /state with the same keys: enough for tools and the CLI."""
    frameworks: dict[str, dict] = {}
    for group, tasks in (("executors", daemon.tasks.values()), ("completed_executors", daemon.completed)):
        for task in tasks:
            fw = frameworks.setdefault(task.framework_id, {
                "id": task.framework_id, "name": task.framework.name, "user": task.framework.user,
                "executors": [], "completed_executors": []})
            fw[group].append({
                "id": task.info.task_id, "name": f"Command Executor (Task: {task.info.task_id})",
                "source": task.info.task_id, "container": task.container_id,
                "directory": task.sandbox, "resources": task.info.resources.summary(),
                "tasks": [_task_json(task)] if group == "executors" else [],
                "completed_tasks": [_task_json(task)] if group != "executors" else [],
                "queued_tasks": [],
            })
    info = daemon.info
    master = daemon.master_info
    return {
        "version": proto.MESOS_VERSION, "id": daemon.agent_id or "",
        "pid": f"slave(1)@{info.ip}:{info.port}", "hostname": info.hostname,
        "start_time": daemon.start_time, "resources": info.resources.summary(),
        "attributes": dict(info.attributes),
        "master_hostname": master.hostname if master else "",
        "isolation": daemon.isolator.name if daemon.isolator else "",
        "frameworks": list(frameworks.values()), "completed_frameworks": [],
        "flags": daemon.flags(),
    }


def metrics_snapshot(daemon: Any) -> dict[str, float]:
    """Mesos's agent metric names (`slave/...`); runs on the agent's loop thread."""
    total = daemon.info.resources
    running = list(daemon.tasks.values())
    used = sum((t.info.resources for t in running), type(total)())
    counts = {state: float(sum(t.state == state for t in running))
              for state in (proto.TASK_STAGING, proto.TASK_STARTING, proto.TASK_RUNNING, proto.TASK_KILLING)}
    snapshot = {f"slave/tasks_{state[5:].lower()}": value for state, value in counts.items()}
    snapshot.update({
        "slave/registered": 1.0 if daemon.registered else 0.0,
        "slave/uptime_secs": daemon.clock.time() - daemon.start_time,
        "slave/cpus_total": total.cpus, "slave/mem_total": total.mem, "slave/disk_total": total.disk,
        "slave/cpus_used": used.cpus, "slave/mem_used": used.mem, "slave/disk_used": used.disk,
        "slave/status_updates_pending": float(daemon.updates.pending_count()),
        "slave/frames_dropped": float(daemon.frames_dropped()),
    })
    return snapshot


def create_app(daemon: Any) -> Flask:
    app = base_app("meseta.agent")

    for prefix in ("", "/slave(1)"):
        app.add_url_rule(prefix + "/health", "health" + prefix, lambda: Response("", 200))
        app.add_url_rule(prefix + "/state", "state" + prefix,
                         lambda: json_response(daemon.read(state)))
        app.add_url_rule(prefix + "/flags", "flags" + prefix,
                         lambda: json_response({"flags": daemon.flags()}))

    @app.route("/version")
    def version() -> Response:
        return json_response({"version": proto.MESOS_VERSION})

    @app.route("/files/read")
    def files_read() -> Response:
        path, error = _resolve(daemon, request.args.get("path"))
        if error:
            return error
        if os.path.isdir(path):
            return text_error(f"Cannot read a directory: '{request.args['path']}'", 400)
        try:
            offset = int(request.args.get("offset", "-1"))
            length = int(request.args.get("length", str(MAX_READ)))
        except ValueError:
            return text_error("'offset' and 'length' must be integers", 400)
        size = os.path.getsize(path)
        if offset < 0:
            # Mesos: offset -1 asks for the size only.
            return json_response({"data": "", "offset": size})
        length = max(0, min(length, MAX_READ))
        with open(path, "rb") as handle:
            handle.seek(min(offset, size))
            data = handle.read(length)
        return json_response({"data": data.decode("utf-8", "replace"), "offset": offset})

    @app.route("/files/download")
    def files_download() -> Response:
        path, error = _resolve(daemon, request.args.get("path"))
        if error:
            return error
        if os.path.isdir(path):
            return text_error("Cannot download a directory", 400)
        return send_file(path, as_attachment=True, download_name=os.path.basename(path),
                         mimetype="application/octet-stream")

    @app.route("/files/browse")
    def files_browse() -> Response:
        path, error = _resolve(daemon, request.args.get("path"))
        if error:
            return error
        if not os.path.isdir(path):
            return text_error("Not a directory", 400)
        entries = []
        for name in sorted(os.listdir(path)):
            full = os.path.join(path, name)
            st = os.lstat(full)
            entries.append({"path": full, "size": st.st_size, "mtime": st.st_mtime,
                            "mode": stat.filemode(st.st_mode), "nlink": st.st_nlink})
        return json_response(entries)

    add_metrics_routes(app, daemon)

    return app
