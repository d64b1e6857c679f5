from __future__ import annotations

import msgpack
import pytest

from meseta import proto
from meseta.resources import Resources
from meseta.testing import make_agent_info, make_framework_info, make_task

MESSAGES = [
    proto.RegisterAgent(proto.PROTOCOL_VERSION, make_agent_info(attributes={"rack": "r1", "level": 10.0})),
    proto.Subscribe(proto.PROTOCOL_VERSION, make_framework_info(roles=["web", "batch"])),
    proto.Accept(["M-O1"], [proto.Operation("LAUNCH", [make_task("t", "M-S0", labels={"k": "v"})])], 2.5),
    proto.Update(proto.TaskStatus("t", proto.TASK_RUNNING, uuid=b"\x00" * 16, healthy=True)),
    proto.Offers([proto.Offer("M-O1", "M-0000", "M-S0", "h", "*", Resources.parse("cpus:1;ports:[1-3]"))]),
    proto.Reconcile([proto.ReconcileTask("t", None)]),
    proto.Heartbeat(),
    proto.Error("bad", code="INVALID"),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: m.TYPE)
def test_round_trip(message):
    assert proto.decode(proto.encode(message)) == message


def test_every_peer_opens_with_the_protocol_version():
    for cls in proto.FIRST_MESSAGES:
        assert "protocol_version" in cls.__dataclass_fields__


def test_catalogue_is_grouped_by_direction_and_complete():
    groups = (proto.AGENT_TO_MASTER, proto.MASTER_TO_AGENT, proto.FRAMEWORK_TO_MASTER,
              proto.MASTER_TO_FRAMEWORK)
    assert {cls.TYPE for group in groups for cls in group} == set(proto.MESSAGES)


@pytest.mark.parametrize("frame, words", [
    (b"\xc1garbage", "not msgpack"),
    (msgpack.packb([1, 2]), "not a msgpack map"),
    (msgpack.packb({"type": "nope"}), "unknown message type"),
    (msgpack.packb({"type": "accept"}), "missing required field 'offer_ids'"),
    (msgpack.packb({"type": "accept", "offer_ids": "x"}), "expected a list"),
    (msgpack.packb({"type": "decline", "offer_ids": [], "refuse_seconds": "5"}), "expected float"),
    (msgpack.packb({"type": "register_agent", "protocol_version": 1,
                    "agent": {"hostname": "h", "port": 1, "resources": {"scalars": {"cpus": "x"}}}}),
     "invalid resources"),
])
def test_bad_frames_say_what_is_wrong(frame, words):
    with pytest.raises(proto.ProtocolError, match=words):
        proto.decode(frame)


def test_direction_is_enforced_when_asked():
    frame = proto.encode(proto.Offers([]))
    with pytest.raises(proto.ProtocolError, match="not accepted here"):
        proto.decode(frame, proto.FRAMEWORK_TO_MASTER)


def test_unknown_fields_are_ignored_for_forward_compatibility():
    body = msgpack.unpackb(proto.encode(proto.Heartbeat()))
    body["future_field"] = 1
    assert proto.decode(msgpack.packb(body)) == proto.Heartbeat()
