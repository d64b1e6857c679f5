"""The snapshot + sequenced deltas follower: a gap or a new epoch means a resync."""
from __future__ import annotations

import msgpack

from meseta.bus import Follower


def frame(epoch, seq, value):
    return [b"k", msgpack.packb({"epoch": epoch, "seq": seq, "kind": "k", "payload": {"v": value}})]


class Source:
    def __init__(self):
        self.state, self.epoch, self.seq = [], "e1", 0

    def snapshot(self):
        return list(self.state), self.epoch, self.seq


def test_applies_in_order_and_resyncs_on_gaps_and_epochs():
    source = Source()
    follower = Follower(source.snapshot, lambda state, event: state + [event["payload"]["v"]])
    source.state, source.seq = ["a"], 1
    follower.resync()
    assert follower.on_frame(frame("e1", 1, "a")) == ["a"]          # already in the snapshot
    assert follower.on_frame(frame("e1", 2, "b")) == ["a", "b"]
    source.state, source.seq = ["a", "b", "c", "d"], 4               # seq 3 is lost
    assert follower.on_frame(frame("e1", 4, "d")) == ["a", "b", "c", "d"]
    source.state, source.epoch, source.seq = ["x"], "e2", 1          # publisher restarted
    assert follower.on_frame(frame("e2", 1, "x")) == ["x"]
    assert follower.resyncs == 3
