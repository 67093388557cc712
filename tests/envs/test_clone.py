"""Copies of users for planning: a clone replays the original bit for bit and never aliases it."""

import dataclasses

import gymnasium as gym
import numpy as np
import pytest

from recsim_env.simulator import Simulator, StepOutcome
from recsim_env.users import PER_USER_FIELDS, UserState
from tests.conftest import make_vec

STATE_FIELDS = ("topics", *PER_USER_FIELDS)


def played(env_id: str, n: int = 32, steps: int = 6) -> tuple[gym.vector.VectorEnv, dict]:
    """An env a few random steps in, so that the users' state is no longer fresh."""
    env = make_vec(env_id, num_envs=n)
    _, info = env.reset(seed=1)
    rng = np.random.default_rng(2)
    for _ in range(steps):
        _, _, _, _, info = env.step(rng.integers(0, 10, env.action_space.shape))
    return env, info


def assert_same_outcome(a: StepOutcome, b: StepOutcome) -> None:
    for f in dataclasses.fields(StepOutcome):
        assert np.array_equal(getattr(a, f.name), getattr(b, f.name)), f.name


def assert_same_state(a: UserState, b: UserState) -> None:
    for name in STATE_FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name


@pytest.mark.parametrize("env_id", ["recsim_env/InterestDrift-v0", "recsim_env/SlateDrift-v0",
                                    "recsim_env/CrossSessionDrift-v0"])
@pytest.mark.parametrize("from_info", [False, True])
def test_a_clone_stepped_alike_reproduces_the_original_bit_for_bit(env_id, from_info):
    """Rebuilt from ``info`` alone or copied from the state, over steps with leaving and (cross-session) returns."""
    env, info = played(env_id)
    sim = env.unwrapped.simulator
    state = UserState.from_snapshot(info["user_state"]) if from_info else sim.state
    clone = sim.spawn(state, info["candidates"] if from_info else sim.candidates)
    assert clone.catalog is sim.catalog and clone.config is sim.config
    rng_a, rng_b, actions = np.random.default_rng(9), np.random.default_rng(9), np.random.default_rng(3)
    left = 0
    for _ in range(40):
        positions = actions.integers(0, 10, (sim.n_users, sim.config.slate_size))
        a, b = sim.step(positions, rng_a), clone.step(positions, rng_b)
        assert_same_outcome(a, b)
        assert_same_state(sim.state, clone.state)
        assert np.array_equal(sim.candidates, clone.candidates)
        left += a.session_ended.sum()
    assert left > 0  # the comparison covered users leaving (and, cross-session, coming back)


def test_take_copies_the_rows_with_repeats_and_shares_no_memory():
    env, _ = played("recsim_env/InterestDrift-v0", n=5)
    state = env.unwrapped.simulator.state
    rows = np.array([3, 0, 3, 3])
    copy = state.take(rows)
    assert len(copy) == 4
    for name in STATE_FIELDS:
        original = getattr(state, name)
        assert np.array_equal(getattr(copy, name), original[rows]), name
        assert not np.shares_memory(getattr(copy, name), original), name
    assert copy.topics.transpose(1, 2, 0).flags.c_contiguous  # users innermost, like ``UserState.empty``
    before = state.snapshot()
    copy.interest[:] = 0.5
    copy.budget[:] = 1.0
    copy.session_step[:] += 7
    for key, value in state.snapshot().items():
        assert np.array_equal(value, before[key]), key
    copy.interest[1] = -0.25  # the repeated rows are copies of their own, too
    assert np.all(copy.interest[0] == 0.5) and np.all(copy.interest[2] == 0.5)


def test_a_spawned_simulator_never_touches_the_original_or_its_inputs():
    env, info = played("recsim_env/CrossSessionDrift-v0", n=16)
    sim = env.unwrapped.simulator
    before, candidates_before = sim.state.snapshot(), sim.candidates.copy()
    given = info["candidates"].copy()
    clone = sim.spawn(sim.state, given)
    for name in STATE_FIELDS:
        assert not np.shares_memory(getattr(clone.state, name), getattr(sim.state, name)), name
    assert not np.shares_memory(clone.candidates, given) and not np.shares_memory(clone.candidates, sim.candidates)
    rng = np.random.default_rng(0)
    for _ in range(30):
        clone.step(rng.integers(0, 10, (16, 1)), rng)
    assert not np.array_equal(clone.state.budget, sim.state.budget)
    for key, value in sim.state.snapshot().items():
        assert np.array_equal(value, before[key]), key
    assert np.array_equal(sim.candidates, candidates_before) and np.array_equal(given, info["candidates"])
    assert clone._item_columns is sim._item_columns  # the catalogue's item table is shared, not rebuilt


def test_common_random_numbers_give_copies_of_a_group_the_same_draws():
    env, _ = played("recsim_env/InterestDrift-v0", n=3)
    sim = env.unwrapped.simulator
    rows = np.repeat(np.arange(3), 4)  # 4 copies of each user
    groups = np.tile([0, 0, 1, 1], 3) + 2 * np.repeat(np.arange(3), 4)
    clone = sim.spawn(sim.state.take(rows), sim.candidates[rows], common=groups)
    rng = np.random.default_rng(5)
    positions = np.tile([[0], [0], [0], [0]], (3, 1))
    differs = False
    for _ in range(12):
        out = clone.step(positions, rng)
        pair = out.engagement.reshape(3, 2, 2)
        assert np.array_equal(pair[:, :, 0], pair[:, :, 1])  # same group, same action: the same outcome
        assert np.array_equal(clone.candidates[0::2], clone.candidates[1::2])
        differs |= not np.array_equal(clone.candidates[0], clone.candidates[2])
    assert differs  # other groups draw other numbers
    # One group per user is the plain draw: bit for bit the simulator without groups.
    a = sim.spawn(sim.state, sim.candidates, common=np.arange(3))
    b = sim.spawn(sim.state, sim.candidates)
    ra, rb = np.random.default_rng(1), np.random.default_rng(1)
    for _ in range(5):
        assert_same_outcome(a.step(np.zeros((3, 1), np.int64), ra), b.step(np.zeros((3, 1), np.int64), rb))


def test_from_snapshot_reads_one_user_or_a_batch():
    env = gym.make("recsim_env/CrossSessionDrift-v0")
    _, info = env.reset(seed=4)
    for _ in range(5):
        _, _, _, _, info = env.step(1)
    state = UserState.from_snapshot(info["user_state"])
    assert len(state) == 1
    assert_same_state(state, env.unwrapped.simulator.state)


def test_spawn_refuses_inputs_that_do_not_fit():
    sim = Simulator(make_vec(num_envs=2).unwrapped.config, n_users=2)
    state = sim.state
    with pytest.raises(ValueError, match=r"candidates must be integer item ids of shape \(2, 10\)"):
        sim.spawn(state, np.zeros((2, 9), np.int64))
    with pytest.raises(ValueError, match=r"candidates must be integer item ids of shape"):
        sim.spawn(state, np.zeros((2, 10)))
    with pytest.raises(ValueError, match=r"item ids in \[0, 1000\)"):
        sim.spawn(state, np.full((2, 10), 1000))
    with pytest.raises(ValueError, match="common must be 2 integers >= 0"):
        sim.spawn(state, np.zeros((2, 10), np.int64), common=np.array([0, -1]))
