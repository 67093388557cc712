"""Tabular Q-learning: reaches the exact optimum of the tabular preset, converges to Q* on a tiny MDP."""

from collections import Counter

import gymnasium as gym
import numpy as np
import pytest

import recsim_env  # noqa: F401
from agents.qlearning import QLearningConfig, TabularQLearning
from benchmarks.tabular import visited_states
from recsim_env.tabular import policy_value, value_iteration


def tabular_vec(num_envs: int = 32, **overrides) -> gym.vector.VectorEnv:
    return gym.make_vec("recsim_env/TabularDrift-v0", num_envs=num_envs, vectorization_mode="sync", **overrides)


def pessimistic_greedy(q: np.ndarray, q_star: np.ndarray) -> np.ndarray:
    """The greedy action of ``q``, a tie going to the worst action under ``q_star``: an untrained
    table (all ties) then scores as badly as it deserves instead of inheriting the lowest index."""
    tied = q == q.max(axis=1, keepdims=True)
    return np.where(tied, q_star, np.inf).argmin(axis=1)


def test_reaches_95_percent_of_the_optimum_and_agrees_with_the_optimal_policy():
    env = tabular_vec()
    mdp = env.envs[0].unwrapped.mdp
    v_star, q_star = value_iteration(mdp.transition, mdp.reward)
    states = visited_states(mdp, q_star.argmax(axis=1))

    def fraction_and_agreement(q: np.ndarray) -> tuple[float, float]:
        policy = pessimistic_greedy(q, q_star)
        value = policy_value(mdp.transition, mdp.reward, policy)[mdp.initial_state] / v_star[mdp.initial_state]
        return value, np.mean(policy[states] == q_star[states].argmax(axis=1))

    agent = TabularQLearning(env, episodes=20_000, seed=0)
    untrained = fraction_and_agreement(agent.q)
    assert untrained[0] < 0.5 and untrained[1] == 0.0  # the check below is not met by an empty table
    agent.train(env, progress=False)
    fraction, agreement = fraction_and_agreement(agent.q)
    assert fraction >= 0.95
    assert agreement >= 0.9


def test_converges_to_q_star_on_a_tiny_mdp():
    """Uniform exploration from exploring starts visits every pair often; Q then lands within 5% of Q*."""
    env = tabular_vec(num_envs=16, n_topics=1, satiation_levels=2, budget_levels=2, exploring_starts=True)
    mdp = env.envs[0].unwrapped.mdp
    _, q_star = value_iteration(mdp.transition, mdp.reward)
    agent = TabularQLearning(env, episodes=20_000, epsilon_start=1.0, epsilon_end=1.0, lr_exponent=0.7, seed=1)
    agent.train(env, progress=False)
    live = np.arange(mdp.n_states - 1)
    assert np.allclose(agent.q[live], q_star[live], rtol=0.05), (agent.q, q_star)


def test_evaluation_hook_and_log():
    env = tabular_vec(num_envs=8)
    mdp = env.envs[0].unwrapped.mdp
    agent = TabularQLearning(env, episodes=400, seed=0)
    log = agent.train(env, evaluate=lambda a: policy_value(mdp.transition, mdp.reward, a.q.argmax(1))[0],
                      eval_every=100, progress=False)
    assert len(log.episode_returns) >= 400
    kept = Counter(log.curve_returns.tolist())  # in order of beginning, without the episodes cut short
    assert kept <= Counter(log.episode_returns) and kept.total() >= 0.9 * len(log.episode_returns)
    assert [e for e, _ in log.evaluations][:4] == [0, 100, 200, 300]


def test_same_seed_same_table():
    tables = []
    for _ in range(2):
        env = tabular_vec(num_envs=8)
        agent = TabularQLearning(env, episodes=300, seed=5)
        agent.train(env, progress=False)
        tables.append(agent.q)
    assert np.array_equal(*tables)


def test_topic_abstraction_learns_on_the_simulated_env():
    import agents
    from agents.evaluation import evaluate

    env = gym.make_vec("recsim_env/InterestDrift-v0", num_envs=256, vectorization_mode="vector_entry_point")
    agent = TabularQLearning(env, episodes=5000, discount=0.95, seed=0)
    agent.train(env, progress=False)
    held_out = gym.make_vec("recsim_env/InterestDrift-v0", num_envs=300, vectorization_mode="vector_entry_point")
    learned = evaluate(agent, held_out, seed=77).returns.mean()
    random = evaluate(agents.make("random", held_out), held_out, seed=77).returns.mean()
    assert learned > 1.3 * random


def test_checkpoint_round_trip_and_mismatch(tmp_path):
    env = tabular_vec(num_envs=4)
    agent = TabularQLearning(env, episodes=50, seed=0)
    agent.train(env, progress=False)
    agent.save(tmp_path / "q.npz")
    other = TabularQLearning(env)
    other.load(tmp_path / "q.npz")
    assert np.array_equal(other.q, agent.q)
    small = TabularQLearning(tabular_vec(num_envs=2, n_topics=1))
    with pytest.raises(ValueError, match="holds a table of shape"):
        small.load(tmp_path / "q.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="is not a Q-learning checkpoint"):
        other.load(tmp_path / "bad.npz")


def test_config_validation():
    with pytest.raises(ValueError, match=r"QLearningConfig.lr_exponent=0.5 is out of range: allowed \(0.5, 1.0\]"):
        QLearningConfig(lr_exponent=0.5)
    with pytest.raises(TypeError, match="tabular Q-learning needs Discrete spaces"):
        TabularQLearning(gym.make("CartPole-v1"))
