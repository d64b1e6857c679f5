"""ZooKeeper URLs, the `json.info_` node content and the leader choice: pure functions of
meseta.zk, as Mesos and its client libraries read them."""
from __future__ import annotations

import json

import pytest

from meseta import proto
from meseta.zk import (ZkUrl, leader_node, master_info_dict, master_info_from_json,
                       master_info_json, parse_zk_url)

GOOD = [
    ("zk://127.0.0.1:2181/mesos", ZkUrl("127.0.0.1:2181", "/mesos")),
    ("zoo://h1/mesos", ZkUrl("h1:2181", "/mesos")),
    ("zk://h1:2181,h2:2182,h3/meseta/", ZkUrl("h1:2181,h2:2182,h3:2181", "/meseta")),
    ("zk://h1:2181/a/b/c", ZkUrl("h1:2181", "/a/b/c")),
    ("zk://alice:s3cret@h1:2181/mesos", ZkUrl("h1:2181", "/mesos", ("alice", "s3cret"))),
    ("zk://alice:p@ss:w/rd@h1/mesos", ZkUrl("h1:2181", "/mesos", ("alice", "p@ss:w/rd"))),
    ("zk://alice:@h1/mesos", ZkUrl("h1:2181", "/mesos", ("alice", ""))),
    ("zk://[::1]:2181,[fe80::1]/mesos", ZkUrl("[::1]:2181,[fe80::1]:2181", "/mesos")),
    ("  zk://h1:02181/mesos  ", ZkUrl("h1:2181", "/mesos")),
]

BAD = [
    ("", "expected zk://"),
    ("h1:2181/mesos", "expected zk://"),
    ("http://h1:2181/mesos", "expected zk://"),
    ("file:///etc/zk", "expected zk://"),
    ("zk:///mesos", "no hosts"),
    ("zk://h1:2181", "no path"),
    ("zk://h1:2181/", "no path"),
    ("zk://h1:2181//", "no path"),
    ("zk://h1:2181/a//b", "bad path"),
    ("zk://h1:2181/a/../b", "bad path"),
    ("zk://h1:http/mesos", "bad port 'http'"),
    ("zk://h1:0/mesos", "bad port '0'"),
    ("zk://h1:65536/mesos", "bad port '65536'"),
    ("zk://h1:-1/mesos", "bad port '-1'"),
    ("zk://h1:2181,,h2/mesos", "empty host"),
    ("zk://:2181/mesos", "empty host"),
    ("zk://[::1/mesos", "bad host"),
    ("zk://alice@h1/mesos", "credentials must be user:password"),
    ("zk://:pw@h1/mesos", "credentials must be user:password"),
]


@pytest.mark.parametrize("url, expected", GOOD)
def test_parse_zk_url(url, expected):
    assert parse_zk_url(url) == expected


@pytest.mark.parametrize("url, message", BAD)
def test_parse_zk_url_rejects(url, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        parse_zk_url(url)


def test_credentials_stay_out_of_messages_and_reprs():
    with pytest.raises(ValueError) as error:
        parse_zk_url("zk://alice:s3cret@h1:x/mesos")
    assert "s3cret" not in str(error.value)
    url = parse_zk_url("zk://alice:s3cret@h1/mesos")
    assert "s3cret" not in repr(url) and str(url) == "zk://h1:2181/mesos"


INFO = proto.MasterInfo(id="3f0a9c3e", ip="10.0.0.1", port=5050, hostname="m1",
                        router="tcp://10.0.0.1:5060", publisher="tcp://10.0.0.1:5061")


def test_node_content_is_mesos_master_info_plus_native_endpoints():
    data = master_info_json(INFO)
    assert json.loads(data) == {
        "id": "3f0a9c3e", "ip": 16777226, "port": 5050, "pid": "master@10.0.0.1:5050",
        "hostname": "m1", "version": proto.MESOS_VERSION,
        "address": {"hostname": "m1", "ip": "10.0.0.1", "port": 5050},
        "capabilities": [{"type": "AGENT_UPDATE"}],
        "meseta": {"router": "tcp://10.0.0.1:5060", "publisher": "tcp://10.0.0.1:5061",
                   "protocol_version": proto.PROTOCOL_VERSION}}
    assert b" " not in data                                        # compact
    assert master_info_dict(INFO, capabilities=())["capabilities"] == []
    assert master_info_from_json(data) == INFO


def test_ip_is_encoded_as_mesos_does():
    local = proto.MasterInfo(id="", ip="127.0.0.1", port=5050, hostname="h")
    assert json.loads(master_info_json(local))["ip"] == 16777343
    named = proto.MasterInfo(id="", ip="master.example", port=5050, hostname="h")
    assert json.loads(master_info_json(named))["ip"] == 0


@pytest.mark.parametrize("node, ip, port", [
    ({"address": {"ip": "10.0.0.2", "port": 5051}, "pid": "master@10.0.0.9:9"}, "10.0.0.2", 5051),
    ({"pid": "master@10.0.0.3:5052"}, "10.0.0.3", 5052),                    # mesoshttp's field
    ({"ip": 16777226, "port": 5053}, "10.0.0.1", 5053),                     # mesos-go's fallback
])
def test_reading_node_content_falls_back_like_the_clients(node, ip, port):
    info = master_info_from_json(json.dumps(node).encode())
    assert (info.ip, info.port, info.hostname) == (ip, port, ip)
    assert (info.router, info.publisher) == ("", "")               # a Mesos master's node


@pytest.mark.parametrize("data, message", [
    (b"\x08\x01binary protobuf", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"id": "x", "hostname": "m1"}', "names no address"),
    (b'{"address": {"ip": "10.0.0.1", "port": "5050"}}', "names no address"),
])
def test_unreadable_node_content_is_a_clear_error(data, message):
    with pytest.raises(ValueError, match=message):
        master_info_from_json(data)


@pytest.mark.parametrize("children, leader", [
    ([], None),
    (["log_replicas", "registry"], None),
    (["json.info_0000000010", "json.info_0000000009", "log_replicas"], "json.info_0000000009"),
    (["registry", "json.info_0000000003", "info_0000000001"], "json.info_0000000003"),
    (["json.info_9", "json.info_0000000010"], "json.info_9"),      # numeric, not string, min
    (["json.info_", "json.info_x1", "json.info_0000000002"], "json.info_0000000002"),
])
def test_leader_is_the_lowest_json_info_sequence(children, leader):
    assert leader_node(children) == leader
