"""The master's event bus: a follower takes /master/state (which names the bus position) and
applies sequenced events; what it ends up with matches the master's own state."""
from __future__ import annotations

import time

import zmq

from meseta import proto
from meseta.bus import Follower
from meseta.resources import Resources
from meseta.scheduler import CommandInfo, SchedulerDriver, TaskInfo
from meseta.testing import make_framework_info
from meseta.testing.frameworks import RecordingScheduler
from meseta.testing.processes import ProcessCluster, get_json


def running_tasks(state: dict) -> dict[str, str]:
    return {t["id"]: t["state"] for f in state["frameworks"] for t in f["tasks"]}


def test_follower_tracks_task_states_from_snapshot_and_deltas(tmp_path):
    with ProcessCluster(tmp_path, agents=1, agent_resources="cpus:2;mem:512") as cluster:
        info = get_json(cluster.master.url + "/master/info")
        sub = zmq.Context.instance().socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(info["meseta"]["publisher"])
        time.sleep(0.2)                        # let the subscription reach the publisher

        def snapshot():
            state = get_json(cluster.master.url + "/master/state")
            bus = state["meseta"]["event_bus"]
            return running_tasks(state), bus["epoch"], bus["seq"]

        def apply(tasks, event):
            if event["kind"] == "task_updated":
                payload = event["payload"]
                tasks = dict(tasks, **{payload["task_id"]: payload["state"]})
            return tasks

        follower = Follower(snapshot, apply)
        follower.resync()
        sched = RecordingScheduler()
        driver = SchedulerDriver(sched, make_framework_info(name="bus"), cluster.master_address)
        driver.start()
        try:
            [offer] = sched.take_offers(1)
            tasks = [TaskInfo(f"b{i}", f"b{i}", offer.agent_id, Resources.parse("cpus:0.1;mem:32"),
                              CommandInfo("sleep 0.2")) for i in range(3)]
            driver.launch_tasks([offer.id], tasks)
            for task in tasks:
                sched.wait_state(task.task_id, proto.TASK_FINISHED)
            seen_seqs = []
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if sub.poll(200):
                    frames = sub.recv_multipart()
                    follower.on_frame(frames)
                    seen_seqs.append(follower.seq)
                if all(follower.state.get(t.task_id) == proto.TASK_FINISHED for t in tasks):
                    break
            assert all(follower.state[t.task_id] == proto.TASK_FINISHED for t in tasks), follower.state
            assert seen_seqs == sorted(seen_seqs)
            final = get_json(cluster.master.url + "/master/state")["meseta"]["event_bus"]
            assert final["epoch"] == follower.epoch and final["seq"] >= follower.seq
        finally:
            driver.stop()
            sub.close()
