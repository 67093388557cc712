"""The finite MDP: valid arrays, value iteration equals brute force, and the env follows the arrays."""

import itertools

import gymnasium as gym
import numpy as np
import pytest

from recsim_env import UserConfig
from recsim_env.tabular import TabularConfig, build_mdp, policy_value, value_iteration


def test_transition_rows_are_distributions_and_terminal_absorbs():
    mdp = gym.make("recsim_env/TabularDrift-v0").unwrapped.mdp
    assert np.all(mdp.transition >= 0)
    assert np.allclose(mdp.transition.sum(axis=2), 1.0, atol=1e-12)
    assert np.all(mdp.transition[mdp.terminal, :, mdp.terminal] == 1.0)
    assert np.all(mdp.reward[mdp.terminal] == 0)
    assert mdp.describe(mdp.terminal) == {"terminal": True}


def test_no_time_limit_is_needed_because_every_episode_ends():
    """The env is registered untruncated, so it is the MDP value iteration solves; that is sound because
    every live step exits with at least the base hazard, under any policy."""
    env = gym.make("recsim_env/TabularDrift-v0")
    assert gym.spec("recsim_env/TabularDrift-v0").max_episode_steps is None
    assert not isinstance(env, gym.wrappers.TimeLimit)
    for config in (TabularConfig(), TabularConfig(n_topics=3, budget_levels=6),
                   TabularConfig(user=UserConfig(hazard_base=1e-3, hazard_boredom=0.0, max_budget=40.0,
                                                 initial_budget=30.0))):
        mdp = build_mdp(config)
        assert mdp.min_exit_probability >= config.user.hazard_base * (1 - 1e-6)
        # The longest expected episode over all policies: value iteration with a reward of 1 per live step.
        steps = np.ones_like(mdp.reward)
        steps[mdp.terminal] = 0.0
        longest, _ = value_iteration(mdp.transition, steps)
        assert np.all(np.isfinite(longest)) and longest.max() <= 1.0 / mdp.min_exit_probability + 1e-6
    mdp = env.unwrapped.mdp
    v_star, q_star = value_iteration(mdp.transition, mdp.reward)
    # What a 200-step limit used to cut off: the optimum of the truncated MDP is below V*.
    truncated = np.zeros(mdp.n_states)
    for _ in range(200):
        truncated = (mdp.reward + mdp.transition @ truncated).max(axis=1)
    assert 0 < v_star[mdp.initial_state] - truncated[mdp.initial_state] < 1e-3


def test_value_iteration_matches_brute_force_on_a_tiny_instance():
    mdp = build_mdp(TabularConfig(n_topics=2, satiation_levels=2, budget_levels=2))
    assert (mdp.n_states, mdp.n_actions) == (9, 4)
    v_star, q_star = value_iteration(mdp.transition, mdp.reward)
    live = mdp.n_states - 1
    best = np.full(mdp.n_states, -np.inf)
    for choice in itertools.product(range(mdp.n_actions), repeat=live):
        policy = np.array(choice + (0,))
        best = np.maximum(best, policy_value(mdp.transition, mdp.reward, policy))
    assert np.allclose(v_star, best, atol=1e-7)
    assert np.allclose(policy_value(mdp.transition, mdp.reward, q_star.argmax(axis=1)), v_star, atol=1e-7)


def test_monte_carlo_return_of_the_optimal_policy_matches_v_star():
    env = gym.make("recsim_env/TabularDrift-v0")
    mdp = env.unwrapped.mdp
    v_star, q_star = value_iteration(mdp.transition, mdp.reward)
    policy = q_star.argmax(axis=1)
    returns = []
    for episode in range(3000):
        state, _ = env.reset(seed=episode)
        total, done = 0.0, False
        while not done:
            state, reward, terminated, truncated, _ = env.step(int(policy[state]))
            total += reward
            done = terminated or truncated
        returns.append(total)
    stderr = np.std(returns) / np.sqrt(len(returns))
    assert abs(np.mean(returns) - v_star[mdp.initial_state]) < 4 * stderr


def test_long_horizon_beats_greedy_and_honest_beats_clickbait():
    mdp = gym.make("recsim_env/TabularDrift-v0").unwrapped.mdp
    v_star, _ = value_iteration(mdp.transition, mdp.reward)
    s0 = mdp.initial_state
    greedy = policy_value(mdp.transition, mdp.reward, mdp.reward.argmax(axis=1))[s0]
    assert v_star[s0] > greedy
    honest = policy_value(mdp.transition, mdp.reward, np.zeros(mdp.n_states, int))[s0]
    bait = policy_value(mdp.transition, mdp.reward, np.ones(mdp.n_states, int))[s0]
    assert honest > 2 * bait


def test_bad_action_and_config():
    env = gym.make("recsim_env/TabularDrift-v0")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"outside Discrete\(4\)"):
        env.step(4)
    with pytest.raises(TypeError, match=r"invalid for Discrete\(4\)"):
        env.step(1.5)
    with pytest.raises(ValueError, match="TabularConfig.n_topics=9 is out of range"):
        gym.make("recsim_env/TabularDrift-v0", n_topics=9)
