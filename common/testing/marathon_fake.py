"""A fake Marathon service for the API tests: the facade over an in-memory root group, deploying
with the real planner (group transformations, stamp_versions, compute_plan, conflicting,
revert), and the `world()` every table row starts from. The test_marathon_api*.py files share
it; it has no sockets, threads or master.
"""

from __future__ import annotations

import dataclasses
import json
from string import Template
from typing import Any, Callable

from meseta import proto
from meseta.frameworks.marathon.api import create_app
from meseta.frameworks.marathon.app import AppDefinition
from meseta.frameworks.marathon.errors import ApiError, app_locked
from meseta.frameworks.marathon.group import (Group, UnknownId, empty_root, find_app, find_group,
                                              put_app, stamp_versions, validate_root)
from meseta.frameworks.marathon.instances import Instance, new_instance_id
from meseta.frameworks.marathon.pathid import PathId
from meseta.frameworks.marathon.plan import compute_plan, conflicting, revert
from meseta.frameworks.marathon.snapshot import (CurrentAction, DeploymentResult, DeploymentView,
                                                 LaunchDelay, OfferSummary, QueueEntry, Snapshot)

P = PathId.parse
NOW = 1_700_000_000.0
ALIVE = {"alive": True, "consecutiveFailures": 0, "firstSuccess": None, "lastSuccess": None,
         "lastFailure": None, "lastFailureCause": None, "instanceId": "x"}
DEAD = {**ALIVE, "alive": False, "consecutiveFailures": 3}


class FakeService:
    """The MarathonService facade over an in-memory root group."""

    def __init__(self) -> None:
        self.root: Group = empty_root()
        self.roots: list[Group] = []              # every stored root, oldest first
        self.instances: dict[PathId, tuple[Instance, ...]] = {}
        self.views: list[DeploymentView] = []
        self.queue: dict[PathId, QueueEntry] = {}
        self.failures: dict[PathId, dict[str, Any]] = {}
        self.deadlines: list[tuple[float | None, bool | None]] = []   # options of each deploy
        self.health: dict[str, tuple[dict[str, Any], ...]] = {}
        self.clock = NOW
        self.leading, self.leader_address = True, "m1:8080"
        self.calls: list[tuple[Any, ...]] = []
        self.announced: list[dict[str, Any]] = []     # events `deploy(announce=)` published

    def snapshot(self) -> Snapshot:
        return Snapshot(self.root, dict(self.instances), tuple(self.views), dict(self.queue),
                        dict(self.failures), dict(self.health), "fw-1", self.clock)

    def deploy(self, change: Callable[[Group], Group], *, force: bool = False, dry_run: bool = False,
               announce: Callable[[Group, float], list[dict[str, Any]]] | None = None,
               deadline: float | None = None, rollback_on_deadline: bool | None = None):
        self.deadlines.append((deadline, rollback_on_deadline))
        target = change(self.root)
        validate_root(target)
        self.clock += 1
        target = stamp_versions(self.root, target, self.clock)
        plan = compute_plan(self.root, target)
        if dry_run:
            return plan
        locked = conflicting(plan, [v.plan for v in self.views])
        if locked and not force:
            raise app_locked(p.id for p in locked)
        self.views = [v for v in self.views if v.plan not in locked]
        self.root = target
        self.roots.append(target)
        if announce is not None:
            self.announced.extend(announce(target, self.clock))
        if plan.steps:
            actions = tuple(CurrentAction(a.action, a.app_id, waiting=f"0 of 1 running for {a.app_id}")
                            for a in plan.steps[0].actions)
            self.views.append(DeploymentView(plan, 1, actions))
        return DeploymentResult(plan.id, plan.version)

    def rollback_deployment(self, deployment_id: str, *, force: bool):
        view = next((v for v in self.views if v.plan.id == deployment_id), None)
        if view is None:
            raise ApiError(404, f"DeploymentPlan {deployment_id} does not exist")
        self.views.remove(view)
        return None if force else self.deploy(lambda root: revert(view.plan, root), force=True)

    def kill_tasks(self, task_ids: list[str], *, scale: bool, wipe: bool, force: bool):
        self.calls.append(("kill", list(task_ids), scale, wipe, force))
        found = [i for insts in self.instances.values() for i in insts if i.task_id in task_ids]
        if scale:
            def change(root: Group) -> Group:
                for inst in found:
                    app = find_app(root, inst.app_id)
                    root = put_app(root, dataclasses.replace(app, instances=app.instances - 1))
                return root
            return self.deploy(change, force=force)
        killed = [i.updated(state=proto.TASK_KILLED, now=self.clock) for i in found]
        for inst in killed:
            self.instances[inst.app_id] = tuple(inst if i.task_id == inst.task_id else i
                                                for i in self.instances[inst.app_id])
        return killed

    def _apps(self, app_id: PathId) -> list[AppDefinition]:
        return [a for a in (find_app(r, app_id) for r in self.roots) if a is not None]

    def app_versions(self, app_id: PathId) -> list[str]:
        apps = self._apps(app_id)
        if not apps:
            raise UnknownId(f"App '{app_id}' does not exist")
        return sorted({a.version for a in apps}, reverse=True)

    def app_version(self, app_id: PathId, version: str) -> AppDefinition:
        for app in self._apps(app_id):
            if app.version == version:
                return app
        raise UnknownId(f"App '{app_id}' does not exist in version {version}")

    def _groups(self, group_id: PathId) -> list[Group]:
        return [g for g in (find_group(r, group_id) for r in self.roots) if g is not None]

    def group_versions(self, group_id: PathId) -> list[str]:
        return sorted({g.version for g in self._groups(group_id)}, reverse=True)

    def group_version(self, group_id: PathId, version: str) -> Group:
        for group in self._groups(group_id):
            if group.version == version:
                return group
        raise UnknownId(f"Group '{group_id}' does not exist in version {version}")

    def reset_delay(self, app_id: PathId) -> None:
        if app_id not in self.queue:
            raise ApiError(404, f"Application {app_id} not found in tasks queue.")
        self.calls.append(("reset_delay", app_id))

    def abdicate(self) -> None:
        self.calls.append(("abdicate",))

    def info(self) -> dict[str, Any]:
        return {"name": "marathon", "version": "1.10.0", "elected": self.leading,
                "leader": self.leader_address, "frameworkId": "fw-1"}

    def is_leader(self) -> bool:
        return self.leading

    def leader(self) -> str | None:
        return self.leader_address

    def now(self) -> float:
        return self.clock


def make_app(app_id: str, **fields: Any) -> AppDefinition:
    return AppDefinition(P(app_id), **{"cmd": "sleep 1000", **fields})


def launch(svc: FakeService, app_id: str, state: str = proto.TASK_RUNNING, host: str = "a1",
           health: list[dict[str, Any]] | None = None) -> Instance:
    app = find_app(svc.root, P(app_id))
    n = sum(len(v) for v in svc.instances.values())
    inst = Instance.launched(app, instance_id=new_instance_id(app.id, f"u{n}"), agent_id="S1",
                             host=host, host_ports=(31000 + n,), now=svc.clock - 100)
    if state != proto.TASK_STAGING:
        inst = inst.updated(state=state, now=svc.clock - 50)
    svc.instances[app.id] = svc.instances.get(app.id, ()) + (inst,)
    if health is not None:
        svc.health[inst.instance_id] = tuple(health)
    return inst


def world() -> FakeService:
    """/web (3 wanted: running+healthy, running+unhealthy, staging, one finished) and the
    group /product with /product/db and /product/api; no deployment running."""
    svc = FakeService()
    apps = [make_app("/web", instances=3, labels={"env": "prod", "tier": "front"},
                     cmd="python -m http.server", port_definitions=[{"port": 10001, "protocol": "tcp"}]),
            make_app("/product/db", labels={"env": "dev"}, cmd="postgres -D /data"),
            make_app("/product/api", cmd="api --port 80", dependencies=(P("/product/db"),))]

    def change(root: Group) -> Group:
        for app in apps:
            root = put_app(root, app)
        return root
    svc.deploy(change)
    svc.views.clear()
    launch(svc, "/web", health=[ALIVE])
    launch(svc, "/web", host="a2", health=[DEAD])
    launch(svc, "/web", state=proto.TASK_STAGING)
    launch(svc, "/web", state=proto.TASK_FINISHED)
    svc.failures[P("/web")] = {"appId": "/web", "host": "a1", "message": "boom",
                                "state": "TASK_FAILED", "taskId": "web.x", "timestamp": "t",
                                "version": "v", "slaveId": "S1"}
    svc.queue[P("/web")] = QueueEntry(P("/web"), 1, NOW - 30, LaunchDelay(2.5), "*", OfferSummary(
        processed_offers_count=10, unused_offers_count=7,
        reject_summary_last_offers={"InsufficientMemory": 2, "UnfulfilledConstraint": 1},
        reject_summary_launch_attempt={"InsufficientMemory": 5, "UnfulfilledConstraint": 2},
        last_reasons=("agent a1: needs mem 128, has 64",)))
    return svc


def names(svc: FakeService) -> dict[str, str]:
    """What table rows name with `$name`: the world's task ids and versions."""
    web = svc.instances[P("/web")]
    values = {"task0": web[0].task_id, "task1": web[1].task_id, "finished": web[3].task_id}
    for name, item in (("web_version", find_app(svc.root, P("/web"))),
                       ("product_version", find_group(svc.root, P("/product")))):
        if item is not None:
            values[name] = item.version
    return values


def call(svc: FakeService, method: str, url: str, body: Any = None, headers: dict | None = None):
    """One request against a fresh app; `$name` in url and body are `names(svc)`."""
    values = names(svc)
    url = Template(url).substitute(values)
    data = None
    if body is not None:
        data = body if isinstance(body, str) else Template(json.dumps(body)).substitute(values)
    client = create_app(svc).test_client()
    return client.open(url, method=method, data=data, headers=headers or {},
                       content_type="application/json")


def run_case(method: str, url: str, body: Any, status: int, expect: Callable[..., Any] | None):
    svc = world()
    response = call(svc, method, url, body)
    text = response.get_data(as_text=True)
    assert response.status_code == status, text
    if expect is not None:
        payload = response.get_json(silent=True)
        assert expect(payload, svc, response) is not False, text
    return response


def ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["id"] for item in items]


def message(text: str) -> Callable[..., bool]:
    return lambda body, *_: body == {"message": text}


def deployment(status_svc_check: Callable[[FakeService], bool] | None = None) -> Callable[..., bool]:
    """A deployment result: body `{deploymentId, version}` matching the header."""
    def check(body: dict[str, Any], svc: FakeService, response: Any) -> bool:
        return (set(body) == {"deploymentId", "version"}
                and response.headers["Marathon-Deployment-Id"] == body["deploymentId"]
                and (status_svc_check is None or status_svc_check(svc)))
    return check


def app_of(svc: FakeService, app_id: str) -> AppDefinition | None:
    return find_app(svc.root, P(app_id))
