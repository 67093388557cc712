"""Tabular Q-learning: reaches the exact optimum of the tabular preset, converges to Q* on a tiny MDP, and
learns on the simulated env against its own untrained start."""

from collections import Counter

import gymnasium as gym
import numpy as np
import pytest

import recsim_env  # noqa: F401
from agents.evaluation import evaluate
from agents.qlearning import (QLearningConfig, StrategyAbstraction, TabularQLearning, TopicAbstraction,
                              seed_stream)
from benchmarks.stats import bootstrap_interval
from benchmarks.tabular import visited_states
from recsim_env.logs import collect_steps
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
    assert agreement >= 0.8  # 0.83 to 1.0 over seeds 0-5: the few disagreements are nearly tied and rare


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


def test_checkpoint_round_trip_and_mismatch(tmp_path):
    env = tabular_vec(num_envs=4)
    agent = TabularQLearning(env, episodes=50, seed=0)
    agent.train(env, progress=False)
    agent.save(tmp_path / "q.npz")
    other = TabularQLearning(env, episodes=1)
    other.load(tmp_path / "q.npz")
    assert np.array_equal(other.q, agent.q)
    small = TabularQLearning(tabular_vec(num_envs=2, n_topics=1), episodes=1)
    with pytest.raises(ValueError, match="holds a table of shape"):
        small.load(tmp_path / "q.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="is not a Q-learning checkpoint"):
        other.load(tmp_path / "bad.npz")


def test_config_validation():
    with pytest.raises(ValueError, match=r"QLearningConfig.lr_exponent=0.5 is out of range: allowed \(0.5, 1.0\]"):
        QLearningConfig(lr_exponent=0.5)
    with pytest.raises(TypeError, match="tabular Q-learning needs Discrete spaces"):
        TabularQLearning(gym.make("CartPole-v1"), episodes=1)
    for budget in ({}, {"episodes": 10, "total_steps": 10}):
        with pytest.raises(ValueError, match="QLearningConfig needs exactly one budget"):
            QLearningConfig(**budget)
    with pytest.raises(ValueError, match=r"QLearningConfig.total_steps=-1 is out of range"):
        QLearningConfig(total_steps=-1)
    assert QLearningConfig(total_steps=7).budget == 7 and QLearningConfig(episodes=3).budget == 3


def simulated_vec(num_envs: int) -> gym.vector.VectorEnv:
    return gym.make_vec("recsim_env/InterestDrift-v0", num_envs=num_envs, vectorization_mode="vector_entry_point")


def test_strategy_abstraction_learns_on_the_simulated_env():
    """Trained beats the same agent untrained (zero table, same seed and tie-break draws) by 15% on the
    same held-out users, with bootstrap intervals apart.

    Seen failing with learning switched off: with the table update in ``train`` removed, the trained
    agent is the untrained one and both earn the same (ratio 1.00).
    """
    env = simulated_vec(256)
    agent = TabularQLearning(env, total_steps=300_000, seed=0)
    untrained = TabularQLearning(env, total_steps=300_000, seed=0)
    assert isinstance(agent.abstraction, StrategyAbstraction)
    log = agent.train(env, progress=False)
    assert log.steps == 300_032 and np.array_equal(untrained.q, np.zeros_like(untrained.q))
    held_out = simulated_vec(300)
    learned = bootstrap_interval(evaluate(agent, held_out, seed=77).returns)
    start = bootstrap_interval(evaluate(untrained, held_out, seed=77).returns)
    assert learned.estimate > 1.15 * start.estimate, (learned, start)
    assert learned.low > start.high, (learned, start)


def test_untrained_ties_are_a_uniform_mixture_and_reproducible():
    env = simulated_vec(2000)
    obs, _ = env.reset(seed=3)
    agent = TabularQLearning(env, total_steps=1, seed=0)
    states = agent.abstraction.states(obs)
    greedy = agent.greedy(states, obs)
    shares = np.bincount(greedy, minlength=agent.abstraction.n_actions) / len(obs)
    assert np.all(np.abs(shares - 1 / agent.abstraction.n_actions) < 0.03), shares
    assert np.array_equal(agent.greedy(states, obs), greedy)  # a fixed function of the observation
    assert np.array_equal(agent.act(obs), agent.abstraction.actions(obs, greedy))
    agent.q[:, [1, 3]] = 1.0  # two tied best actions: only they are picked, about half each
    greedy = agent.greedy(states, obs)
    assert set(np.unique(greedy)) == {1, 3} and abs(np.mean(greedy == 1) - 0.5) < 0.04
    agent.q[:, 3] = 2.0
    assert np.all(agent.greedy(states, obs) == 3)
    other = TabularQLearning(env, total_steps=1, seed=1)  # another seed draws other ties
    assert np.mean(other.greedy(states, obs) != TabularQLearning(env, total_steps=1, seed=0).greedy(states, obs)) > 0.5


def test_exploration_draws_are_independent_of_the_env_resets():
    """The env is reset with ``seed`` (its generator is ``default_rng(seed)``); exploration and tie-breaks
    come from other streams of the same seed."""
    seed = 5
    env_draws = gym.utils.seeding.np_random(seed)[0].random(1000)  # what ``env.reset(seed=seed)`` seeds
    assert np.array_equal(env_draws, np.random.default_rng(seed).random(1000))  # the old, shared stream
    agent = TabularQLearning(tabular_vec(num_envs=2), episodes=1, seed=seed)
    explore = agent.exploration_rng().random(1000)
    assert np.intersect1d(explore, env_draws).size == 0
    assert np.intersect1d(seed_stream(seed, 1).random(1000), env_draws).size == 0
    assert np.intersect1d(seed_stream(seed, 1).random(1000), explore).size == 0
    assert np.array_equal(agent.exploration_rng().random(1000), explore)  # each training run draws the same


def test_total_steps_budget_counts_every_user():
    env = tabular_vec(num_envs=8)
    agent = TabularQLearning(env, total_steps=1_000, seed=0)
    log = agent.train(env, progress=False)
    assert log.steps == 1_000  # 125 vector steps of 8 users
    skipped = 1_000 - agent.visits.sum()  # the step into a NEXT_STEP reset follows each ended episode
    assert len(log.episode_returns) - 8 <= skipped <= len(log.episode_returns) and skipped > 0
    steps = TabularQLearning(env, total_steps=1_001, seed=0).train(env, progress=False).steps
    assert steps == 1_008


@pytest.mark.parametrize("abstraction", [StrategyAbstraction, TopicAbstraction])
def test_catalogue_scores_rank_as_act_picks(abstraction):
    env = simulated_vec(40)
    layout = env.unwrapped.layout
    agent = TabularQLearning(env, abstraction=abstraction(layout), total_steps=1, seed=0)
    rng = np.random.default_rng(0)
    agent.q = rng.normal(size=agent.q.shape)
    agent.q[::3] = 0.0  # some all-tied states too
    steps = collect_steps(env, agent, seed=11)
    scores = agent.catalogue_scores(steps)
    assert scores.shape == (len(steps), steps.n_items)
    on_candidates = np.take_along_axis(scores, steps.candidates, axis=1)
    assert np.allclose(on_candidates, agent.scores(steps.obs), atol=1e-6)
    picked = steps.candidates[np.arange(len(steps)), agent.act(steps.obs)]
    assert np.array_equal(steps.candidates[np.arange(len(steps)), on_candidates.argmax(axis=1)], picked)
    assert np.array_equal(steps.shown[:, 0], picked)  # the logged behaviour was the agent itself
    greedy = agent.greedy(agent.abstraction.states(steps.obs), steps.obs)
    assert len(np.unique(greedy)) > 1 and len(np.unique(scores.argmax(axis=1))) > 1


def test_catalogue_scores_need_an_item_scoring_abstraction():
    steps = collect_steps(simulated_vec(4), TabularQLearning(simulated_vec(4), total_steps=1), seed=0)
    with pytest.raises(NotImplementedError, match="item-scoring abstraction"):
        TabularQLearning(tabular_vec(num_envs=2), episodes=1).catalogue_scores(steps)
