"""Stochastic behaviour policies: exact probabilities, sampled from as reported, validated arguments."""

import numpy as np
import pytest
from scipy import stats

import agents
from agents.base import Recommender
from agents.behaviour import EpsilonGreedy, Softmax, sample_rows
from tests.conftest import make_vec

#: Scores of 3 users over 10 candidates: a clear best, a three-way tie, all equal.
SCORES = np.array([[0.0, 2.0, 1.0, -1.0, 0.5, 0.0, 0.2, 0.1, -3.0, 1.5],
                   [1.0, 3.0, 3.0, 0.0, 3.0, 2.0, 0.0, 0.0, 0.0, 0.0],
                   [0.0] * 10])


class FixedScores(Recommender):
    """Scores that ignore the observation; ``drift`` shifts them after every call, to tell calls apart."""

    name = "fixed"

    def __init__(self, env, scores: np.ndarray, drift: float = 0.0):
        super().__init__(env)
        self.base, self.drift, self.calls, self.acted = scores, drift, 0, 0

    def act(self, obs, info):
        self.acted += 1
        return self.base.argmax(axis=1)

    def scores(self, obs, info):
        self.calls += 1
        out = self.base.copy()
        out[:, 0] += self.drift * self.calls
        return out


@pytest.fixture(scope="module")
def env():
    return make_vec(num_envs=3)


def obs_info(env, seed=0):
    return env.reset(seed=seed)


def empirical(policy, obs, info, draws: int) -> np.ndarray:
    counts = np.zeros(SCORES.shape)
    for _ in range(draws):
        counts[np.arange(len(SCORES)), policy.act(obs, info)] += 1
    return counts


@pytest.mark.parametrize("make", [lambda a: EpsilonGreedy(a, 0.3, seed=1), lambda a: Softmax(a, 0.7, seed=2)],
                         ids=["epsilon_greedy", "softmax"])
def test_probabilities_are_a_distribution_matching_the_draws(env, make):
    obs, info = obs_info(env)
    policy = make(FixedScores(env, SCORES))
    p = policy.action_probabilities(obs, info)
    assert p.shape == SCORES.shape and (p >= 0).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)
    draws = 4000
    counts = empirical(policy, obs, info, draws)
    for row in range(len(SCORES)):  # chi-square goodness of fit of each user's draws
        assert stats.chisquare(counts[row], draws * p[row]).pvalue > 1e-3, (row, counts[row], draws * p[row])


def test_epsilon_greedy_probabilities_are_exact_with_ties(env):
    obs, info = obs_info(env)
    p = EpsilonGreedy(FixedScores(env, SCORES), 0.2, seed=0).action_probabilities(obs, info)
    np.testing.assert_allclose(p[0], np.where(np.arange(10) == 1, 0.8 + 0.02, 0.02))
    np.testing.assert_allclose(p[1], np.where(np.isin(np.arange(10), [1, 2, 4]), 0.8 / 3 + 0.02, 0.02))
    np.testing.assert_allclose(p[2], 0.1)


def test_epsilon_zero_is_greedy_with_probability_one(env):
    obs, info = obs_info(env)
    policy = EpsilonGreedy(FixedScores(env, SCORES[:1].repeat(3, axis=0)), 0.0, seed=3)
    p = policy.action_probabilities(obs, info)
    np.testing.assert_array_equal(p, np.eye(10)[[1, 1, 1]])
    for _ in range(200):
        np.testing.assert_array_equal(policy.act(obs, info), [1, 1, 1])


def test_softmax_matches_the_closed_form_and_low_temperature_is_greedy(env):
    obs, info = obs_info(env)
    p = Softmax(FixedScores(env, SCORES), 0.5).action_probabilities(obs, info)
    expected = np.exp(SCORES / 0.5) / np.exp(SCORES / 0.5).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(p, expected, rtol=1e-12)
    cold = Softmax(FixedScores(env, SCORES), 1e-3).action_probabilities(obs, info)
    np.testing.assert_allclose(cold[0], np.eye(10)[1], atol=1e-12)
    np.testing.assert_allclose(cold[1, [1, 2, 4]], 1 / 3)


def test_reported_probabilities_are_the_ones_act_sampled_from(env):
    """The agent's scores change on every call, so recomputing them would give other numbers."""
    obs, info = obs_info(env)
    agent = FixedScores(env, SCORES, drift=1.0)
    policy = Softmax(agent, 1.0, seed=0)
    rng = np.random.default_rng(0)
    action = policy.act(obs, info)
    p = policy.action_probabilities(obs, info)
    assert agent.calls == 1 and agent.acted == 1  # the wrapped agent acted once, scored once
    expected = SCORES.copy()
    expected[:, 0] += 1.0
    np.testing.assert_allclose(p, np.exp(expected) / np.exp(expected).sum(axis=1, keepdims=True), rtol=1e-12)
    np.testing.assert_array_equal(action, sample_rows(p, rng))  # same seed, same uniforms, same draw
    other_obs, other_info = obs_info(env, seed=1)
    assert not np.allclose(policy.action_probabilities(other_obs, other_info), p)  # a new step: rescored


def test_same_seed_same_actions_and_a_real_agent_works(env):
    obs, info = obs_info(env)
    a, b, c = (EpsilonGreedy(agents.make("myopic", env), 0.5, seed=s) for s in (7, 7, 8))
    draws = [np.stack([policy.act(obs, info) for _ in range(50)]) for policy in (a, b, c)]
    np.testing.assert_array_equal(draws[0], draws[1])
    assert not np.array_equal(draws[0], draws[2])
    greedy = agents.make("myopic", env).act(obs, info)
    p = a.action_probabilities(obs, info)
    assert (p[np.arange(3), greedy] >= 0.5 + 0.05 - 1e-12).all()  # the myopic choice keeps the greedy mass


def test_sample_rows_never_draws_a_zero_probability_entry():
    p = np.zeros((1000, 5))
    p[:, 2], p[:, 4] = 0.25, 0.75
    drawn = sample_rows(p, np.random.default_rng(0))
    assert set(np.unique(drawn)) == {2, 4}


@pytest.mark.parametrize("build, field", [
    (lambda a: EpsilonGreedy(a, 1.5), r"epsilon.*\[0\.0, 1\.0\]"),
    (lambda a: EpsilonGreedy(a, -0.1), r"epsilon.*\[0\.0, 1\.0\]"),
    (lambda a: EpsilonGreedy(a, 0.1, seed=-1), r"seed.*\[0,"),
    (lambda a: Softmax(a, 0.0), r"temperature.*\(0\.0, inf\)"),
    (lambda a: Softmax(a, float("nan")), r"temperature"),
])
def test_arguments_are_validated(env, build, field):
    with pytest.raises(ValueError, match=field):
        build(FixedScores(env, SCORES))


def test_slate_envs_are_refused_and_bad_scores_are_named(env):
    slate_env = make_vec("recsim_env/SlateDrift-v0", num_envs=2)
    with pytest.raises(TypeError, match="Discrete.*slates are not supported"):
        EpsilonGreedy(agents.make("myopic", slate_env), 0.1)
    obs, info = obs_info(env)
    with pytest.raises(ValueError, match=r"fixed\.scores returned shape \(3, 4\)"):
        Softmax(FixedScores(env, SCORES[:, :4])).action_probabilities(obs, info)
    with pytest.raises(ValueError, match="NaN"):
        EpsilonGreedy(FixedScores(env, np.full((3, 10), np.nan))).action_probabilities(obs, info)
