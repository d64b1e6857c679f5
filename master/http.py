"""The master's HTTP API, in Mesos's shapes (reference: shared/reference/mesos.md §3).

Every route answers both as /master/<x> and /<x>, as libprocess delegation does. Views are
rendered on the loop thread from a consistent state and serialised here.
"""
from __future__ import annotations

from typing import Any

from flask import Flask, Response, request

from meseta import __version__, proto
from meseta.http import add_metrics_routes, base_app, json_response, text_error
from meseta.master import views
from meseta.master.daemon import NotLeader
from meseta.zk import master_info_dict

def _both(app: Flask, path: str, endpoint: str, methods=("GET",)):
    def register(fn):
        app.add_url_rule(f"/master{path}", endpoint + "_master", fn, methods=list(methods))
        app.add_url_rule(path, endpoint, fn, methods=list(methods))
        return fn
    return register


def _int_arg(name: str, default: int) -> int:
    value = request.args.get(name)
    if value is None:
        return default
    if not value.lstrip("-").isdigit():
        raise ValueError(f"Failed to parse '{name}': '{value}' is not a number")
    return int(value)


def create_app(daemon: Any) -> Flask:
    app = base_app("meseta.master")

    @app.errorhandler(NotLeader)
    def not_leader(exc: NotLeader) -> Response:
        # Mesos: a standby redirects to the leader (protocol-relative, /master/ path); 503 if none.
        if exc.leader is None:
            return text_error("No leader elected", 503)
        path = request.full_path.rstrip("?")
        if not path.startswith("/master/"):
            path = "/master" + path
        return Response("", 307, {"Location": f"//{exc.leader.hostname}:{exc.leader.port}{path}"})

    @_both(app, "/health", "health")
    def health() -> Response:
        return Response("", 200)

    @app.route("/version")
    def version() -> Response:
        return json_response(dict(views.build_info(), version=proto.MESOS_VERSION,
                                  meseta_version=__version__))

    @_both(app, "/flags", "flags")
    def flags() -> Response:
        return json_response({"flags": daemon.flags()})

    @_both(app, "/info", "info")
    def info() -> Response:
        # Not in Mesos: MasterInfo plus the native endpoints agents and SDK frameworks need.
        leader = daemon.leader()       # a standby names the leader, so detection finds it
        if leader is None:
            return text_error("No leader elected", 503)
        return json_response(master_info_dict(leader))

    @_both(app, "/redirect", "redirect")
    def redirect() -> Response:
        master = daemon.leader()
        if master is None:
            return text_error("No leader elected", 503)
        return Response("", 307, {"Location": f"//{master.hostname}:{master.port}"})

    for path in ("/state", "/state.json"):
        @_both(app, path, "state" + path.replace(".", "_").replace("/", "_"))
        def state() -> Response:
            flags = daemon.flags()
            # The bus position is read in the same loop turn as the state: they agree exactly.
            return json_response(daemon.read(lambda core: views.state(
                core, flags, {"meseta": {"event_bus": daemon.publisher.position()}})))

    @_both(app, "/state-summary", "state_summary")
    def state_summary() -> Response:
        return json_response(daemon.read(views.state_summary))

    for path in ("/tasks", "/tasks.json"):
        @_both(app, path, "tasks" + path.replace(".", "_").replace("/", "_"))
        def tasks() -> Response:
            try:
                limit, offset = _int_arg("limit", 100), _int_arg("offset", 0)
            except ValueError as exc:
                return text_error(str(exc), 400)
            order = request.args.get("order", "des")
            if order not in ("asc", "des"):
                return text_error("Failed to parse 'order': must be 'asc' or 'des'", 400)
            framework_id = request.args.get("framework_id")
            task_id = request.args.get("task_id")
            return json_response(daemon.read(lambda core: views.tasks(
                core, limit=limit, offset=offset, order=order, framework_id=framework_id,
                task_id=task_id)))

    @_both(app, "/frameworks", "frameworks")
    def frameworks() -> Response:
        framework_id = request.args.get("framework_id")
        return json_response(daemon.read(lambda core: views.frameworks(core, framework_id)))

    @_both(app, "/slaves", "slaves")
    def slaves() -> Response:
        slave_id = request.args.get("slave_id")
        return json_response(daemon.read(lambda core: views.slaves(core, slave_id)))

    add_metrics_routes(app, daemon)

    @_both(app, "/teardown", "teardown", methods=("POST",))
    def teardown() -> Response:
        framework_id = request.form.get("frameworkId") or request.args.get("frameworkId")
        if not framework_id:
            return text_error("Missing 'frameworkId' query parameter in the request body", 400)
        if not daemon.act(lambda core: core.operator_teardown(framework_id)):
            return text_error(f"No framework found with specified ID: {framework_id}", 400)
        return Response("", 200)

    @_both(app, "/kill", "kill", methods=("POST",))
    def kill() -> Response:
        # Not in Mesos: an operator kill of one task (the framework sees TASK_KILLED).
        body = request.get_json(silent=True) if request.is_json else None
        source = body if isinstance(body, dict) else request.form
        task_id = source.get("task_id") or request.args.get("task_id")
        framework_id = source.get("framework_id") or request.args.get("framework_id")
        if not task_id:
            return text_error("Missing 'task_id'", 400)
        ok, message = daemon.act(lambda core: core.operator_kill(task_id, framework_id))
        if not ok:
            return text_error(message, 404)
        return json_response({"message": message}, 202)

    return app
