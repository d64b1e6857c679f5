"""Bad input to the master's ZeroMQ port and API: refused with a reason, never a crash."""
from __future__ import annotations

import socket
import time

import msgpack
import pytest
import zmq

from meseta import proto
from meseta.resources import Resources
from meseta.scheduler import CommandInfo, SchedulerDriver, TaskInfo
from meseta.testing import make_agent_info, make_framework_info
from meseta.testing.frameworks import RecordingScheduler
from meseta.testing.processes import ProcessCluster, get_json


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with ProcessCluster(tmp_path_factory.mktemp("bad"), agents=1,
                        agent_resources="cpus:2;mem:1024;ports:[31000-31010]",
                        master_args=["--max_frame_bytes=1048576"]) as running:
        yield running


def router_endpoint(cluster) -> str:
    return get_json(cluster.master.url + "/master/info")["meseta"]["router"]


def dealer(cluster) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(router_endpoint(cluster))
    return sock


def reply(sock: zmq.Socket, timeout_ms: int = 5000) -> proto.Message:
    assert sock.poll(timeout_ms), "the master did not answer"
    return proto.decode(sock.recv())


def still_serving(cluster) -> dict:
    snapshot = get_json(cluster.master.url + "/metrics/snapshot")
    assert snapshot["master/elected"] == 1.0
    return snapshot


def test_raw_tcp_garbage_does_not_hurt_the_master(cluster):
    host, port = router_endpoint(cluster)[len("tcp://"):].rsplit(":", 1)
    for payload in (b"\x00" * 64, b"GET / HTTP/1.1\r\n\r\n", bytes(range(256)) * 40):
        with socket.create_connection((host, int(port)), timeout=5) as conn:
            conn.sendall(payload)
            time.sleep(0.05)
    still_serving(cluster)


@pytest.mark.parametrize("frame, words", [
    (b"\xc1\xc1 not msgpack", "not msgpack"),
    (msgpack.packb(["a", "list"]), "not a msgpack map"),
    (msgpack.packb({"type": "launch_missiles"}), "unknown message type"),
    (msgpack.packb({"type": "offers", "offers": []}), "not accepted here"),
    (msgpack.packb({"type": "subscribe", "protocol_version": 1}), "missing required field"),
])
def test_undecodable_frames_are_answered_and_counted(cluster, frame, words):
    before = still_serving(cluster)["master/dropped_messages"]
    sock = dealer(cluster)
    try:
        sock.send(frame)
        answer = reply(sock)
    finally:
        sock.close()
    assert isinstance(answer, proto.Error) and answer.code == "INVALID"
    assert words in answer.message
    assert still_serving(cluster)["master/dropped_messages"] > before


def test_oversized_frames_are_dropped_with_a_reason(cluster):
    sock = dealer(cluster)
    try:
        sock.send(b"\x00" * (1024 * 1024 + 1))
        answer = reply(sock)
    finally:
        sock.close()
    assert answer.code == "INVALID" and "exceeds the limit" in answer.message
    assert still_serving(cluster)["master/dropped_frames"] >= 1


@pytest.mark.parametrize("message", [
    proto.RegisterAgent(0, make_agent_info()),
    proto.Subscribe(proto.PROTOCOL_VERSION + 1, make_framework_info()),
])
def test_other_protocol_versions_are_refused_by_name(cluster, message):
    sock = dealer(cluster)
    try:
        sock.send(proto.encode(message))
        answer = reply(sock)
    finally:
        sock.close()
    assert answer.code == "PROTOCOL_VERSION"
    assert f"protocol version {message.protocol_version} is not supported" in answer.message
    assert still_serving(cluster)["master/slaves_active"] == 1.0


def test_sdk_reports_a_version_mismatch_through_error(cluster, monkeypatch):
    monkeypatch.setattr(proto, "PROTOCOL_VERSION", 99)
    sched = RecordingScheduler()
    driver = SchedulerDriver(sched, make_framework_info(name="old"), cluster.master_address)
    driver.start()
    try:
        message = sched.wait_event("error")
    finally:
        driver.abort()
    assert "protocol version 99" in message


def test_launch_on_an_offer_already_used(cluster):
    sched = RecordingScheduler()
    driver = SchedulerDriver(sched, make_framework_info(name="reuse"), cluster.master_address)
    driver.start()
    try:
        [offer] = sched.take_offers(1)
        task = lambda tid: TaskInfo(tid, tid, offer.agent_id, Resources.parse("cpus:0.1;mem:32"),
                                    CommandInfo("sleep 0.2"))
        driver.launch_tasks([offer.id], [task("first")])
        driver.launch_tasks([offer.id], [task("second")])
        lost = sched.wait_state("second", proto.TASK_LOST)
        sched.wait_state("first", proto.TASK_FINISHED)
        too_big = TaskInfo("huge", "huge", offer.agent_id, Resources.parse("cpus:64;mem:32"),
                           CommandInfo("true"))
        [again] = sched.take_offers(1)
        driver.launch_tasks([again.id], [too_big])
        error = sched.wait_state("huge", proto.TASK_ERROR)
    finally:
        driver.stop()
    assert lost.reason == proto.REASON_INVALID_OFFERS and "no longer valid" in lost.message
    assert lost.uuid is None
    assert error.reason == proto.REASON_TASK_INVALID and "more resources" in error.message
    still_serving(cluster)


def test_http_api_rejects_bad_requests_in_mesos_shape(cluster):
    import urllib.error
    import urllib.request
    for url, code in ((cluster.master.url + "/master/tasks?limit=abc", 400),
                      (cluster.master.url + "/master/nope", 404)):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url)
        assert err.value.code == code and err.value.read().strip()
    request = urllib.request.Request(cluster.master.url + "/master/teardown", data=b"frameworkId=nope")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request)
    assert err.value.code == 400
    still_serving(cluster)
