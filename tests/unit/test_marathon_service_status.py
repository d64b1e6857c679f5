"""The Marathon service's handling of status updates and offers, driven on the test's thread
(the loop is never started): updates stored before acknowledged, ahead of any other work, not
acknowledged when the store fails; offers matched one per turn; a launch's instances stored
before the launch."""
from __future__ import annotations

import uuid

from meseta import proto
from meseta.frameworks.marathon.app import AppDefinition
from meseta.frameworks.marathon.core import CoreConfig, MarathonCore, StoredState
from meseta.frameworks.marathon.group import empty_root, put_app
from meseta.frameworks.marathon.service import MarathonService, ServiceConfig
from meseta.frameworks.marathon.store import DirectoryStore, StoreError
from meseta.resources import Resources


class RecordingStore(DirectoryStore):
    def __init__(self, path, log: list) -> None:
        super().__init__(path)
        self.log = log
        self.broken = False

    def save_instance(self, instance) -> None:
        if self.broken:
            raise StoreError("disk full")
        self.log.append(("stored", instance.task_id, instance.state))
        super().save_instance(instance)

    def sync(self) -> None:
        self.log.append(("synced",))
        super().sync()


class FakeDriver:
    def __init__(self, log: list) -> None:
        self.log = log
        self.launched: list[proto.TaskInfo] = []

    def acknowledge_status_update(self, status) -> None:
        self.log.append(("acked", status.task_id, status.state))

    def launch_tasks(self, offer_ids, tasks) -> None:
        self.log.append(("launched", offer_ids[0]))
        self.launched += tasks

    def decline_offer(self, offer_id, filters) -> None:
        self.log.append(("declined", offer_id))

    def __getattr__(self, name):           # revive, suppress, kill, reconcile: not looked at
        return lambda *args, **kwargs: None


class FakeElection:
    is_leader = True
    abdicated = False

    def abdicate(self) -> None:
        self.abdicated = True


def offer(n: int) -> proto.Offer:
    return proto.Offer(id=f"O{n}", framework_id="F", agent_id=f"S{n}", hostname=f"agent{n}",
                       role="*", resources=Resources.parse("cpus:4;mem:2048;disk:1000;ports:[31000-31999]"),
                       attributes={})


def deployed_service(tmp_path, instances: int):
    log: list = []
    service = MarathonService(ServiceConfig(master="127.0.0.1:5050"),
                              RecordingStore(tmp_path, log), FakeElection())
    service.core = MarathonCore(CoreConfig(), StoredState(empty_root()))
    service.driver = FakeDriver(log)
    app = AppDefinition.from_json({"id": "/web", "cmd": "sleep 3600", "cpus": 0.1, "mem": 32,
                                   "instances": instances})
    service._run(lambda core: core.deploy(lambda root: put_app(root, app), force=False,
                                          now=service.clock.time()))
    log.clear()
    return service, log


def service_with_tasks(tmp_path, instances: int):
    service, log = deployed_service(tmp_path, instances)
    service._offers([offer(1)])
    log.clear()
    return service, log, service.driver.launched


def arrive(service, task, state) -> None:
    service._status_arrived(proto.TaskStatus(task_id=task.task_id, state=state, agent_id="S1",
                                             uuid=uuid.uuid4().bytes, timestamp=1.0))


def test_each_update_is_stored_then_acknowledged_in_order(tmp_path):
    service, log, tasks = service_with_tasks(tmp_path, 2)
    for task in tasks:
        arrive(service, task, proto.TASK_STARTING)
    service._drain_statuses()
    assert log == [("stored", tasks[0].task_id, proto.TASK_STARTING),
                   ("acked", tasks[0].task_id, proto.TASK_STARTING),
                   ("stored", tasks[1].task_id, proto.TASK_STARTING),
                   ("acked", tasks[1].task_id, proto.TASK_STARTING)]


def test_updates_go_before_any_other_work_of_the_loop(tmp_path):
    service, log, tasks = service_with_tasks(tmp_path, 1)
    arrive(service, tasks[0], proto.TASK_RUNNING)
    service._run(lambda core: log.append(("api call",)))
    assert log == [("stored", tasks[0].task_id, proto.TASK_RUNNING),
                   ("acked", tasks[0].task_id, proto.TASK_RUNNING), ("api call",)]


def test_an_update_that_cannot_be_stored_is_not_acknowledged(tmp_path):
    service, log, tasks = service_with_tasks(tmp_path, 2)
    service.store.broken = True
    for task in tasks:
        arrive(service, task, proto.TASK_RUNNING)
    try:
        service._drain_statuses()
    except Exception:
        pass                              # the loop logs it; the agents resend
    assert log == []
    assert service.core is None and service.election.abdicated
    assert not service._statuses          # not carried into a later term



def test_a_launch_goes_out_after_its_instances_are_stored(tmp_path):
    # a leader killed right after the launch must leave its successor knowing every task
    service, log = deployed_service(tmp_path, 2)
    service._offers([offer(1)])
    tasks = service.driver.launched
    assert log == [("stored", tasks[0].task_id, proto.TASK_STAGING),
                   ("stored", tasks[1].task_id, proto.TASK_STAGING),
                   ("synced",), ("launched", "O1")]
    assert {i.task_id for i in service.store.load().instances} == {t.task_id for t in tasks}


def test_offers_are_matched_one_per_turn_with_updates_first(tmp_path):
    service, log, tasks = service_with_tasks(tmp_path, 1)
    service._offers([offer(2), offer(3)])       # nothing wanted: both are declined
    assert log == [("declined", "O2")]
    arrive(service, tasks[0], proto.TASK_RUNNING)
    while service.loop._inbox:                  # the loop's next turns
        service.loop._inbox.popleft()()
    assert log == [("declined", "O2"), ("stored", tasks[0].task_id, proto.TASK_RUNNING),
                   ("acked", tasks[0].task_id, proto.TASK_RUNNING), ("declined", "O3")]
