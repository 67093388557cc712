"""Reference policies, and the long-term tension they measure: greedy is beatable, not perverse."""

import gymnasium as gym
import numpy as np
import pytest

import agents
from benchmarks.references import SWEEP, compare_policies, intervals
from tests.conftest import make_vec


def assert_tension(env_id: str, users: int, seed: int, **overrides):
    ci = intervals(compare_policies(env_id, users, seed, **overrides))
    gain = ci["heuristic"].estimate / ci["myopic"].estimate
    assert gain >= 1.15, (overrides, ci)
    assert ci["heuristic"].low > ci["myopic"].high, (overrides, ci)
    assert ci["myopic"].low > ci["random"].high, (overrides, ci)


def test_heuristic_beats_myopic_beats_random_on_defaults():
    assert_tension("recsim_env/InterestDrift-v0", users=500, seed=12345)


@pytest.mark.parametrize("overrides", [SWEEP[0], SWEEP[len(SWEEP) // 2], SWEEP[-1]])
def test_tension_holds_across_the_documented_ranges_quick(overrides):
    assert_tension("recsim_env/InterestDrift-v0", users=500, seed=1, **overrides)


@pytest.mark.slow
@pytest.mark.parametrize("overrides", SWEEP + [{"n_items": 100_000, "n_topics": 50, "catalog_seed": 7}])
def test_tension_holds_across_the_documented_ranges(overrides):
    assert_tension("recsim_env/InterestDrift-v0", users=500, seed=2, **overrides)


@pytest.mark.parametrize("env_id", ["recsim_env/SlateDrift-v0", "recsim_env/CrossSessionDrift-v0"])
def test_ordering_holds_on_the_other_presets(env_id):
    ci = intervals(compare_policies(env_id, users=300, seed=5))
    assert ci["heuristic"].low > ci["myopic"].high > ci["myopic"].low > ci["random"].high


def test_myopic_expected_reward_is_exact():
    """The oracle's closed form equals the mean reward of showing each candidate many times."""
    env = make_vec(num_envs=1)
    _, info = env.reset(seed=3)
    sim = env.unwrapped.simulator
    candidates = info["candidates"]
    expected = sim.expected_reward(candidates, info["user_state"]["interest"], info["user_state"]["satiation"])[0]
    clones = make_vec(num_envs=40_000)
    clones.reset(seed=4)
    csim = clones.unwrapped.simulator
    csim.state.interest[:] = info["user_state"]["interest"]
    csim.state.satiation[:] = info["user_state"]["satiation"]
    csim.state.budget[:] = info["user_state"]["budget"]
    rng = np.random.default_rng(0)
    for position in (0, 3, 7):
        csim.candidates[:] = candidates
        interest, satiation = csim.state.interest.copy(), csim.state.satiation.copy()
        out = csim.step(np.full((40_000, 1), position), rng)
        csim.state.interest[:], csim.state.satiation[:] = interest, satiation
        stderr = out.reward.std() / np.sqrt(out.reward.size)
        assert abs(out.reward.mean() - expected[position]) < 4 * stderr + 1e-6


def test_policies_return_valid_actions_for_single_and_slate_envs():
    for env_id, shape in (("recsim_env/InterestDrift-v0", (6,)), ("recsim_env/SlateDrift-v0", (6, 3))):
        env = make_vec(env_id, num_envs=6)
        obs, info = env.reset(seed=0)
        for name in ("random", "myopic", "heuristic"):
            actions = agents.make(name, env).act(obs, info)
            assert actions.shape == shape and env.action_space.contains(actions.astype(np.int64))
            if len(shape) == 2:
                assert all(len(set(row)) == shape[1] for row in actions)


def test_policies_accept_single_env_info():
    env = gym.make("recsim_env/InterestDrift-v0")
    obs, info = env.reset(seed=0)
    action = agents.make("heuristic", env).act(obs[None], info)
    assert action.shape == (1,)


def test_registry():
    assert {"random", "myopic", "heuristic"} <= set(agents.names())
    with pytest.raises(KeyError, match="unknown recommender 'nope'"):
        agents.make("nope", make_vec())
    with pytest.raises(TypeError, match="has no recsim_env simulator"):
        agents.make("myopic", gym.make("CartPole-v1"))
