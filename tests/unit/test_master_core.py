"""The master core as a state machine: messages in, messages out, no sockets or sleeps."""
from __future__ import annotations

import pytest

from meseta import proto
from meseta.resources import Resources
from meseta.testing import MasterHarness, make_agent_info, make_framework_info, make_task

A1, A2, F1, F2 = b"agent-1", b"agent-2", b"fw-1", b"fw-2"


@pytest.fixture
def h() -> MasterHarness:
    return MasterHarness()


def launched(h: MasterHarness, *, cpus: float = 4, task_res: str = "cpus:1;mem:128"):
    agent_id = h.register_agent(A1, cpus=cpus, mem=1024)
    framework_id = h.subscribe(F1)
    h.allocate()
    [offer] = h.offers(F1)
    h.launch(F1, offer, make_task("t1", agent_id, task_res))
    return agent_id, framework_id, offer


def test_ids_follow_mesos_forms(h):
    assert h.register_agent(A1) == "M-S0"
    assert h.register_agent(A2, hostname="agent2", port=5052) == "M-S1"
    assert h.subscribe(F1) == "M-0000"
    assert h.subscribe(F2, name="other") == "M-0001"
    h.allocate()
    ids = sorted(o.id for peer in (F1, F2) for o in h.offers(peer))
    assert ids == ["M-O1", "M-O2"]


@pytest.mark.parametrize("first", [
    proto.RegisterAgent(99, None),           # the agent body is never looked at
    proto.Subscribe(0, None),
])
def test_wrong_protocol_version_is_refused_with_a_reason(h, first):
    [reply] = h.send(b"peer", first)
    assert isinstance(reply, proto.Error) and reply.code == "PROTOCOL_VERSION"
    assert "version" in reply.message and str(proto.PROTOCOL_VERSION) in reply.message
    assert not h.master.agents and not h.master.frameworks


def test_calls_from_unregistered_peers_are_refused(h):
    [reply] = h.send(b"stranger", proto.Accept(["M-O1"]))
    assert reply.code == "UNREGISTERED"


def test_undecodable_frames_get_an_error_and_are_counted(h):
    [reply] = h.send(b"peer", proto.ProtocolError("frame is not msgpack"))
    assert reply.code == "INVALID" and "msgpack" in reply.message
    assert h.master.counters["dropped_messages"] == 1


def test_one_offer_per_framework_and_agent_with_everything_unallocated(h):
    agent_id = h.register_agent(A1, cpus=4, mem=1024)
    h.subscribe(F1)
    h.allocate()
    [offer] = h.offers(F1)
    assert offer.agent_id == agent_id and offer.role == "*"
    assert offer.resources == h.master.agents[agent_id].total
    assert h.allocate() == 0            # nothing is offered twice


def test_launch_charges_the_agent_and_filters_the_rest(h):
    agent_id, framework_id, offer = launched(h)
    [run] = h.messages(A1, proto.RunTask)
    assert run.task.task_id == "t1" and run.framework.id == framework_id
    agent = h.master.agents[agent_id]
    assert agent.used == Resources.parse("cpus:1;mem:128")
    assert h.master.frameworks[framework_id].tasks["t1"].state == proto.TASK_STAGING
    assert h.allocate() == 0            # the unused rest is filtered for refuse_seconds
    h.clock.advance(5.1)
    assert h.allocate() == 1
    [again] = h.offers(F1)
    assert again.resources == agent.total - Resources.parse("cpus:1;mem:128")


@pytest.mark.parametrize("case, state, reason, words", [
    ("unknown offer", proto.TASK_LOST, proto.REASON_INVALID_OFFERS, "no longer valid"),
    ("too many resources", proto.TASK_ERROR, proto.REASON_TASK_INVALID, "more resources"),
    ("duplicate id", proto.TASK_ERROR, proto.REASON_TASK_INVALID, "duplicate"),
    ("wrong agent", proto.TASK_ERROR, proto.REASON_TASK_INVALID, "agent"),
    ("empty command", proto.TASK_ERROR, proto.REASON_TASK_INVALID, "command"),
])
def test_invalid_launches_are_answered_not_crashed(h, case, state, reason, words):
    agent_id = h.register_agent(A1, cpus=2, mem=512)
    h.subscribe(F1)
    h.allocate()
    [offer] = h.offers(F1)
    task = make_task("t1", agent_id)
    if case == "unknown offer":
        offer = proto.Offer("M-O999", "", agent_id, "", "*", Resources())
    elif case == "too many resources":
        task = make_task("t1", agent_id, "cpus:3;mem:64")
    elif case == "duplicate id":
        h.launch(F1, offer, make_task("t1", agent_id))
        h.clock.advance(6)
        h.allocate()
        [offer] = h.offers(F1)
    elif case == "wrong agent":
        task = make_task("t1", "M-S7")
    elif case == "empty command":
        task = make_task("t1", agent_id, command="  ")
    replies = h.launch(F1, offer, task)
    status = [m.status for m in replies if isinstance(m, proto.Update)][-1]
    assert (status.task_id, status.state, status.reason) == ("t1", state, reason)
    assert words in status.message.lower()
    assert status.uuid is None and status.source == proto.SOURCE_MASTER
    assert h.master.agents[agent_id].used.cpus <= 2


def test_an_offer_cannot_be_used_twice(h):
    agent_id, _, offer = launched(h)
    replies = h.launch(F1, offer, make_task("t2", agent_id))
    [update] = [m for m in replies if isinstance(m, proto.Update)]
    assert update.status.state == proto.TASK_LOST and "no longer valid" in update.status.message
    assert len(h.messages(A1, proto.RunTask)) == 1


def test_status_updates_are_forwarded_in_order_and_acknowledged_by_uuid(h):
    agent_id, framework_id, _ = launched(h)
    for state in (proto.TASK_STARTING, proto.TASK_RUNNING, proto.TASK_FINISHED):
        h.agent_update(A1, framework_id, "t1", state)
    statuses = h.updates(F1)
    assert [s.state for s in statuses] == [proto.TASK_STARTING, proto.TASK_RUNNING, proto.TASK_FINISHED]
    assert all(s.agent_id == agent_id and s.uuid for s in statuses)
    framework = h.master.frameworks[framework_id]
    assert h.master.agents[agent_id].used.is_empty()       # released at the terminal state
    assert "t1" in framework.tasks                          # ... but kept until acknowledged
    last = statuses[-1]
    h.send(F1, proto.Acknowledge(agent_id, "t1", b"wrong-uuid-0000"))
    assert h.master.counters["invalid_status_update_acknowledgements"] == 1
    h.send(F1, proto.Acknowledge(agent_id, "t1", last.uuid))
    assert h.messages(A1, proto.StatusUpdateAck)[-1].uuid == last.uuid
    assert "t1" not in framework.tasks and framework.completed_tasks[-1].id == "t1"


def test_kill_goes_to_the_agent_with_the_grace_period(h):
    launched(h)
    h.send(F1, proto.Kill("t1", grace_seconds=2.5))
    [kill] = h.messages(A1, proto.KillTask)
    assert (kill.task_id, kill.grace_seconds) == ("t1", 2.5)


def test_kill_of_an_unknown_task_answers_like_reconciliation(h):
    h.register_agent(A1)
    h.subscribe(F1)
    [update] = h.send(F1, proto.Kill("nope"))
    assert update.status.state == proto.TASK_LOST and update.status.reason == proto.REASON_RECONCILIATION


def test_decline_filters_until_revive(h):
    h.register_agent(A1)
    h.subscribe(F1)
    h.allocate()
    [offer] = h.offers(F1)
    h.send(F1, proto.Decline([offer.id], refuse_seconds=60))
    h.clock.advance(10)
    assert h.allocate() == 0
    h.send(F1, proto.Revive())
    assert h.allocate() == 1


def test_suppressed_frameworks_get_no_offers(h):
    h.register_agent(A1)
    h.subscribe(F1)
    h.send(F1, proto.Suppress())
    assert h.allocate() == 0
    h.send(F1, proto.Revive())
    assert h.allocate() == 1


def test_offer_timeout_rescinds(h):
    h.master.config.offer_timeout = 3.0
    h.register_agent(A1)
    h.subscribe(F1)
    h.allocate()
    [offer] = h.offers(F1)
    h.clock.advance(3)
    h.master.tick()
    h._drain()
    assert [m.offer_id for m in h.messages(F1, proto.Rescind)] == [offer.id]
    assert h.allocate() == 1            # rescinded resources come back without a filter


def test_silent_agent_becomes_unreachable_and_its_tasks_lost(h):
    agent_id, framework_id, offer = launched(h)
    h.agent_update(A1, framework_id, "t1", proto.TASK_RUNNING)
    h.send(F1, proto.Heartbeat())
    deadline = h.master.config.agent_ping_timeout * h.master.config.max_agent_ping_timeouts
    h.clock.advance(deadline + 1)
    h.master.frameworks[framework_id].last_seen = h.clock.monotonic()
    h.master.tick()
    h._drain()
    lost = h.updates(F1)[-1]
    assert lost.state == proto.TASK_LOST and lost.reason == proto.REASON_AGENT_REMOVED
    assert lost.uuid is None
    assert [m.agent_id for m in h.messages(F1, proto.Failure)] == [agent_id]
    assert agent_id in h.master.unreachable_agents


def test_partition_aware_frameworks_see_unreachable(h):
    agent_id = h.register_agent(A1)
    [reply] = h.send(F1, proto.Subscribe(proto.PROTOCOL_VERSION, make_framework_info(
        capabilities=[proto.PARTITION_AWARE])))
    framework_id = reply.framework_id
    h.allocate()
    [offer] = h.offers(F1)
    h.launch(F1, offer, make_task("t1", agent_id))
    h.clock.advance(1000)
    h.master.frameworks[framework_id].last_seen = h.clock.monotonic()
    h.master.tick()
    h._drain()
    assert h.updates(F1)[-1].state == proto.TASK_UNREACHABLE


def test_disconnected_framework_is_removed_after_failover_timeout(h):
    agent_id = h.register_agent(A1)
    [reply] = h.send(F1, proto.Subscribe(proto.PROTOCOL_VERSION, make_framework_info(failover_timeout=30)))
    framework_id = reply.framework_id
    h.allocate()
    [offer] = h.offers(F1)
    h.launch(F1, offer, make_task("t1", agent_id))
    h.clock.advance(h.master.config.framework_heartbeat_interval * 5 + 1)
    h.master.agents[agent_id].last_seen = h.clock.monotonic()
    h.master.tick()
    framework = h.master.frameworks[framework_id]
    assert not framework.connected and not framework.offers
    h.clock.advance(30)
    h.master.agents[agent_id].last_seen = h.clock.monotonic()
    h.master.tick()
    h._drain()
    assert framework_id not in h.master.frameworks
    assert [m.framework_id for m in h.messages(A1, proto.ShutdownFramework)] == [framework_id]


def test_resubscribing_keeps_tasks_and_replaces_the_connection(h):
    agent_id, framework_id, _ = launched(h)
    info = make_framework_info(framework_id=framework_id)
    [reply] = h.send(F2, proto.Subscribe(proto.PROTOCOL_VERSION, info))
    assert reply.framework_id == framework_id and reply.reregistered
    assert h.messages(F1, proto.Error)[-1].code == "FAILED_OVER"
    assert "t1" in h.master.frameworks[framework_id].tasks
    assert h.master.peers[F2] == ("framework", framework_id) and F1 not in h.master.peers


@pytest.mark.parametrize("partition_aware, agent, expected", [
    (False, None, proto.TASK_LOST),
    (True, None, proto.TASK_GONE),
    (True, "M-S99", proto.TASK_UNKNOWN),
])
def test_explicit_reconciliation_of_unknown_tasks(h, partition_aware, agent, expected):
    h.register_agent(A1)
    caps = [proto.PARTITION_AWARE] if partition_aware else []
    h.send(F1, proto.Subscribe(proto.PROTOCOL_VERSION, make_framework_info(capabilities=caps)))
    [update] = h.send(F1, proto.Reconcile([proto.ReconcileTask("ghost", agent)]))
    assert update.status.state == expected and update.status.uuid is None


def test_implicit_reconciliation_reports_every_known_task(h):
    _, framework_id, _ = launched(h)
    h.agent_update(A1, framework_id, "t1", proto.TASK_RUNNING)
    [update] = h.send(F1, proto.Reconcile([]))
    assert (update.status.task_id, update.status.state) == ("t1", proto.TASK_RUNNING)
    assert update.status.reason == proto.REASON_RECONCILIATION


def test_teardown_kills_tasks_and_completes_the_framework(h):
    agent_id, framework_id, _ = launched(h)
    h.send(F1, proto.Teardown())
    assert framework_id not in h.master.frameworks
    assert h.master.completed_frameworks[-1].id == framework_id
    assert h.master.agents[agent_id].used.is_empty()
    [reply] = h.send(F2, proto.Subscribe(proto.PROTOCOL_VERSION, make_framework_info(framework_id=framework_id)))
    assert reply.code == "REMOVED"


def test_events_are_published_for_the_bus(h):
    _, framework_id, _ = launched(h)
    kinds = [kind for kind, _ in h.master.events]
    assert kinds[:3] == ["agent_added", "framework_added", "task_updated"]


def test_recovered_agents_reregister_or_expire_after_the_deadline(h):
    info_a, info_b = make_agent_info(hostname="a"), make_agent_info(hostname="b")
    h.master.recover_agents({"OLD-S0": info_a, "OLD-S1": info_b}, h.clock.monotonic() + 600)
    framework_id = h.subscribe(F1)
    # Still re-registering: Mesos says nothing about tasks that may be on them.
    assert h.send(F1, proto.Reconcile([proto.ReconcileTask("t", "OLD-S0")])) == []
    assert h.send(F1, proto.Reconcile([proto.ReconcileTask("t")])) == []
    info_a.id = "OLD-S0"
    [reply] = h.send(A1, proto.ReregisterAgent(proto.PROTOCOL_VERSION, info_a))
    assert isinstance(reply, proto.AgentRegistered) and reply.agent_id == "OLD-S0"
    assert set(h.master.recovered_agents) == {"OLD-S1"}
    assert h.master.registry_ops == []          # already in the registry: nothing to write
    h.clock.advance(601)
    h.master.agents["OLD-S0"].last_seen = h.clock.monotonic()
    h.master.frameworks[framework_id].last_seen = h.clock.monotonic()
    h.master.tick()
    h._drain()
    assert not h.master.recovered_agents and "OLD-S1" in h.master.unreachable_agents
    assert [m.agent_id for m in h.messages(F1, proto.Failure)] == ["OLD-S1"]
    assert h.master.registry_ops == [("forget", "OLD-S1")]
    [update] = h.send(F1, proto.Reconcile([proto.ReconcileTask("t", "OLD-S1")]))
    assert update.status.state == proto.TASK_LOST


def test_new_agents_are_written_to_the_registry(h):
    agent_id = h.register_agent(A1)
    assert h.master.registry_ops == [("admit", agent_id)]


def test_an_agent_registering_twice_keeps_one_id_and_follows_the_new_connection(h):
    first = h.register_agent(A1, hostname="x", port=5051)
    second = h.register_agent(A2, hostname="x", port=5051)
    assert first == second and len(h.master.agents) == 1
    assert h.master.agents[first].peer == A2 and A1 not in h.master.peers
    assert h.register_agent(b"other", hostname="y", port=5052) != first


def test_an_agent_that_restarts_without_its_state_loses_its_tasks_and_gets_a_new_id(h):
    agent_id, framework_id, _ = launched(h)
    h.agent_update(A1, framework_id, "t1", proto.TASK_RUNNING)
    new_id = h.register_agent(A2, cpus=4, mem=1024)     # same address, no id: a fresh start
    assert new_id != agent_id and agent_id not in h.master.agents
    lost = h.updates(F1)[-1]
    assert (lost.task_id, lost.state, lost.reason) == ("t1", proto.TASK_LOST, proto.REASON_AGENT_RESTARTED)
    assert ("forget", agent_id) in h.master.registry_ops
    assert h.master.agents[new_id].used.is_empty()
