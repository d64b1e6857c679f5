"""meseta.frameworks.marathon.restart: Marathon's rolling-restart arithmetic and step function."""

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meseta.frameworks.marathon.restart import (
    RESIDENT_UPGRADE_STRATEGY,
    RestartActions,
    RestartState,
    RestartStrategy,
    UpgradeStrategy,
    apply_actions,
    compute_restart_strategy,
    max_capacity,
    min_healthy,
    next_actions,
)

U = UpgradeStrategy

# --------------------------------------------------------------------------- computeRestartStrategy


@pytest.mark.parametrize("n, upgrade, healthy, running, resident, expected", [
    # defaults (1, 1): keep all N, run up to 2N
    (3, U(1, 1), 3, 3, False, RestartStrategy(0, 6, 3)),
    # (0, 0): kill every old instance first, then start the new ones
    (3, U(0, 0), 3, 3, False, RestartStrategy(3, 3, 0)),
    # (0.5, 0) with n=4: kill 2, then replace one for one
    (4, U(0.5, 0), 4, 4, False, RestartStrategy(2, 4, 2)),
    # docs: 3 instances x 0.7 -> ceil(2.1) = 3 kept
    (3, U(0.7, 1), 3, 3, False, RestartStrategy(0, 6, 3)),
    # exact decimals: 10 x 0.7 is 7 (a binary float would give ceil(7.000000000000001) = 8)
    (10, U(0.7, 0.3), 10, 10, False, RestartStrategy(3, 13, 7)),
    (3, U(0.5, 0.5), 3, 3, False, RestartStrategy(1, 4, 2)),
    # min_healthy == max_capacity with enough healthy: one extra instance
    (3, U(1, 0), 3, 3, False, RestartStrategy(0, 4, 3)),
    (5, U(0.9, 0.1), 5, 5, False, RestartStrategy(0, 6, 5)),
    # ... or, for resident apps, one instance below min_healthy
    (1, RESIDENT_UPGRADE_STRATEGY, 1, 1, True, RestartStrategy(1, 1, 1)),
    (3, U(1, 0), 3, 3, True, RestartStrategy(1, 3, 3)),
    # ... but not when fewer are healthy than the capacity
    (3, U(1, 0), 2, 3, False, RestartStrategy(0, 3, 3)),
    # instances left over from a forced deployment are killed at once
    (2, U(1, 1), 5, 5, False, RestartStrategy(3, 4, 2)),
    (2, U(1, 1), 1, 5, False, RestartStrategy(3, 4, 2)),
    (4, U(0.5, 0), 6, 6, False, RestartStrategy(4, 4, 2)),
])
def test_compute_restart_strategy(n, upgrade, healthy, running, resident, expected):
    assert compute_restart_strategy(n, upgrade, healthy, running, resident) == expected


def test_compute_restart_strategy_needs_instances():
    with pytest.raises(ValueError, match="instances must be > 0 but is 0"):
        compute_restart_strategy(0, U(), 0, 0)


@pytest.mark.parametrize("n, capacity, expected", [(3, 0.7, 3), (10, 0.7, 7), (10, 0.71, 8),
                                                     (1, 0.0, 0), (7, 1.0, 7), (3, 0.1, 1)])
def test_min_healthy_is_a_ceiling(n, capacity, expected):
    assert min_healthy(n, U(capacity, 0)) == expected


@pytest.mark.parametrize("n, over, expected", [(3, 1.0, 6), (3, 0.1, 3), (10, 0.1, 11),
                                               (10, 0.29, 12), (3, 0.5, 4), (4, 0.0, 4)])
def test_max_capacity_is_a_floor(n, over, expected):
    assert max_capacity(n, U(1, over)) == expected


@pytest.mark.parametrize("kwargs, message", [
    ({"minimum_health_capacity": 1.5}, "minimumHealthCapacity is greater than 1"),
    ({"maximum_over_capacity": -0.1}, "maximumOverCapacity is less than 0"),
    ({"minimum_health_capacity": float("nan")}, "minimumHealthCapacity must be a number"),
    ({"maximum_over_capacity": True}, "maximumOverCapacity must be a number"),
    ({"maximum_over_capacity": "1"}, "maximumOverCapacity must be a number"),
])
def test_upgrade_strategy_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        UpgradeStrategy(**kwargs)


def test_upgrade_strategy_json():
    upgrade = UpgradeStrategy.from_json({"minimumHealthCapacity": 0.5})
    assert upgrade == U(0.5, 1.0)
    assert upgrade.to_json() == {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 1.0}


# --------------------------------------------------------------------------- the step function


def ready_one(state):
    return replace(state, new_staged=state.new_staged - 1, new_ready=state.new_ready + 1)


def terminate_killed(state):
    return replace(state, old_killing=0)


def step(state):
    actions = next_actions(state)
    return actions, apply_actions(state, actions)


def test_defaults_start_all_new_side_by_side_then_kill_one_old_per_ready_new():
    state = RestartState(3, U(1, 1), old_running=3)
    actions, state = step(state)
    assert actions == (0, 3)
    trace = []
    for _ in range(3):
        actions, state = step(ready_one(state))
        trace.append(actions)
    assert trace == [(1, 0), (1, 0), (1, 0)]
    assert terminate_killed(state).finished


def test_zero_zero_kills_everything_first():
    actions, state = step(RestartState(3, U(0, 0), old_running=3))
    assert actions == (3, 0)  # killed instances hold their resources until they terminate
    actions, state = step(terminate_killed(state))
    assert actions == (0, 3)


def test_half_and_no_overcapacity_replaces_one_for_one():
    actions, state = step(RestartState(4, U(0.5, 0), old_running=4))
    assert actions == (2, 0)
    actions, state = step(terminate_killed(state))
    assert actions == (0, 2)
    actions, state = step(ready_one(state))
    assert actions == (1, 0)
    actions, state = step(terminate_killed(state))
    assert actions == (0, 1)


def test_full_health_without_overcapacity_uses_one_extra_instance():
    actions, state = step(RestartState(2, U(1, 0), old_running=2))
    assert actions == (0, 1)
    actions, state = step(ready_one(state))
    assert actions == (1, 0)
    actions, state = step(terminate_killed(state))
    assert actions == (0, 1)
    assert state.total == 3


def test_resident_app_goes_one_below_instead():
    actions, state = step(RestartState(1, RESIDENT_UPGRADE_STRATEGY, resident=True, old_running=1))
    assert actions == (1, 0)
    actions, state = step(terminate_killed(state))
    assert actions == (0, 1)


def test_unhealthy_old_instances_go_first_and_free_capacity():
    state = RestartState(3, U(1, 0), old_running=3, old_unhealthy=1)
    actions, state = step(state)
    assert actions == (1, 0)  # healthy 2 < 3: no healthy one may go, but the broken one does
    assert state.old_unhealthy == 0 and state.healthy == 2
    actions, state = step(terminate_killed(state))
    assert actions == (0, 1)


def test_new_instance_that_fails_is_replaced_and_no_old_dies_for_it():
    actions, state = step(RestartState(2, U(1, 1), old_running=2))
    assert actions == (0, 2)
    state = replace(state, new_staged=1)  # one new instance failed
    assert next_actions(state) == (0, 1)


def test_zero_instances_kills_every_old_one():
    assert next_actions(RestartState(0, U(), old_running=3)) == (3, 0)
    assert RestartState(0).finished


def test_apply_actions_checks_its_input():
    with pytest.raises(ValueError):
        apply_actions(RestartState(1, old_running=1), RestartActions(2, 0))
    with pytest.raises(ValueError, match="old_unhealthy cannot exceed old_running"):
        RestartState(1, old_running=1, old_unhealthy=2)
    with pytest.raises(ValueError, match="new_ready must be a non-negative integer"):
        RestartState(1, new_ready=-1)


# --------------------------------------------------------------------------- properties

CAPACITIES = st.sampled_from([0.0, 0.1, 0.25, 0.3, 0.5, 0.7, 0.75, 0.9, 1.0]) | st.floats(0, 1)


@st.composite
def restarts(draw, all_healthy=False):
    n = draw(st.integers(1, 10))
    resident = draw(st.booleans())
    upgrade = U(draw(CAPACITIES), 0.0 if resident else draw(CAPACITIES))
    old = draw(st.integers(0, 2 * n))
    unhealthy = 0 if all_healthy else draw(st.integers(0, old))
    return RestartState(n, upgrade, resident, old_running=old, old_unhealthy=unhealthy)


@settings(max_examples=500, deadline=None)
@given(state=restarts(all_healthy=True))
def test_first_step_is_marathons_strategy(state):
    strategy = compute_restart_strategy(state.instances, state.upgrade, state.old_running,
                                        state.old_running, state.resident)
    kill, start = next_actions(state)
    assert kill == min(state.old_running, strategy.kill_immediately)
    assert start == max(0, min(state.instances, strategy.max_capacity - state.old_running))


def _limits(state):
    """The bounds the restart promises: (fewest healthy its kills leave, most instances alive)."""
    floor = min_healthy(state.instances, state.upgrade)
    capacity = max_capacity(state.instances, state.upgrade)
    if floor == capacity:  # Marathon's way out of a deadlock
        return (floor - 1, capacity) if state.resident else (floor, capacity + 1)
    return floor, capacity


def _settle(state):
    """Run one step, check every promise, and return the state once its actions are issued."""
    floor, capacity = _limits(state)
    kill, start = next_actions(state)
    after = apply_actions(state, RestartActions(kill, start))
    assert after.healthy >= min(state.healthy, floor), "a kill took healthy below the floor"
    if start:
        assert after.total <= capacity, "a start went over capacity"
    assert after.new_started <= state.instances, "more new instances than N"
    assert next_actions(after) == (0, 0), "the step is not settled"
    return after


EVENTS = {
    "new ready": (lambda s: s.new_staged, lambda s: replace(s, new_staged=s.new_staged - 1,
                                                         new_ready=s.new_ready + 1)),
    "new staged fails": (lambda s: s.new_staged, lambda s: replace(s, new_staged=s.new_staged - 1)),
    "new ready fails": (lambda s: s.new_ready, lambda s: replace(s, new_ready=s.new_ready - 1)),
    "new turns unhealthy": (lambda s: s.new_ready, lambda s: replace(s, new_ready=s.new_ready - 1,
                                                                  new_staged=s.new_staged + 1)),
    "killed old terminates": (lambda s: s.old_killing,
                              lambda s: replace(s, old_killing=s.old_killing - 1)),
    "old fails": (lambda s: s.old_running, lambda s: replace(
        s, old_running=s.old_running - 1, old_unhealthy=min(s.old_unhealthy, s.old_running - 1))),
    "old turns unhealthy": (lambda s: s.old_running - s.old_unhealthy,
                            lambda s: replace(s, old_unhealthy=s.old_unhealthy + 1)),
    "old recovers": (lambda s: s.old_unhealthy,
                     lambda s: replace(s, old_unhealthy=s.old_unhealthy - 1)),
}


def _drain(state):
    """Events without failures: staged instances become ready, killed ones terminate."""
    for _ in range(10 * (state.total + state.instances) + 10):
        state = _settle(state)
        if state.new_staged:
            state = ready_one(state)
        elif state.old_killing:
            state = replace(state, old_killing=state.old_killing - 1)
        elif state.old_unhealthy:
            state = replace(state, old_unhealthy=state.old_unhealthy - 1)
        else:
            return state
    raise AssertionError(f"the restart does not end: {state}")


@settings(max_examples=1000, deadline=None)
@given(state=restarts(), events=st.lists(st.sampled_from(sorted(EVENTS)), max_size=60))
def test_restart_keeps_its_bounds_and_ends_with_n_new_instances(state, events):
    state = _settle(state)
    for name in events:
        applies, event = EVENTS[name]
        if applies(state):
            state = _settle(event(state))
    state = _drain(state)
    assert state.finished
    assert (state.new_ready, state.new_staged, state.old_running, state.old_killing) == (
        state.instances, 0, 0, 0)


@settings(max_examples=300, deadline=None)
@given(state=restarts(all_healthy=True))
def test_healthy_count_never_dips_on_a_clean_restart(state):
    # From healthy old instances with no failures, healthy stays at or above the floor all along.
    floor, _ = _limits(state)
    start_healthy = state.healthy
    for _ in range(10 * (state.total + state.instances) + 10):
        state = _settle(state)
        assert state.healthy >= min(floor, start_healthy)
        if state.new_staged:
            state = ready_one(state)
        elif state.old_killing:
            state = replace(state, old_killing=state.old_killing - 1)
        else:
            break
    assert state.finished
