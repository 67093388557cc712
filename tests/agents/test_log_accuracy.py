"""The catalogue-wide accuracy every agent is scored on, and the logged steps it is scored at."""

import gymnasium as gym
import numpy as np
import pytest

import agents
import recsim_env  # noqa: F401  (registers the env ids)
from agents.base import Recommender
from agents.evaluation import evaluate
from agents.log_accuracy import click_labels, click_prediction, clicked_steps, log_accuracy
from recsim_env.logs import LoggedSteps, collect_steps
from recsim_env.logs.steps import NO_ITEM


def vec(n: int = 40, env_id: str = "recsim_env/InterestDrift-v0") -> gym.vector.VectorEnv:
    return gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point")


@pytest.fixture(scope="module")
def steps() -> LoggedSteps:
    env = vec()
    return collect_steps(env, agents.make("random", env, seed=1), seed=5, policy_name="random")


class KnownRanking(Recommender):
    """Ranks the catalogue by a fixed rule of the clicked item, so every metric is known by hand."""

    name = "known"

    def __init__(self, env, rank_of_target):
        super().__init__(env)
        self.rank_of_target = rank_of_target

    def act(self, obs, info):
        return np.zeros(len(obs), np.int64)

    def catalogue_scores(self, steps):
        # Item j scores -j, so it sits at 0-based rank j; swapping the target with item r puts it at rank r.
        scores = -np.arange(steps.n_items, dtype=np.float64)[None].repeat(len(steps), axis=0)
        rows, r = np.arange(len(steps)), self.rank_of_target
        scores[rows, steps.item], scores[rows, r] = -float(r), -steps.item.astype(np.float64)
        return scores

    def click_probability(self, steps):
        return click_labels(steps).astype(np.float64)  # a perfect click model


def test_steps_follow_each_user_to_the_end_of_one_episode(steps):
    stats = evaluate(agents.make("random", vec(), seed=1), vec(), seed=5)
    assert np.array_equal(np.bincount(steps.user, minlength=40), stats.lengths)  # same users, same episodes
    assert np.array_equal(np.bincount(steps.user, steps.click, minlength=40), stats.clicks)
    first = steps.step == 0
    assert np.all(steps.history[first] == NO_ITEM)


def test_history_is_the_clicks_before_the_step_most_recent_last(steps):
    for user in range(5):
        rows = np.flatnonzero(steps.user == user)
        clicks = steps.item[rows][steps.click[rows]]
        for j, row in enumerate(rows):
            before = steps.item[rows[:j]][steps.click[rows[:j]]][-steps.history.shape[1]:]
            seen = steps.history[row][steps.history[row] != NO_ITEM]
            assert np.array_equal(seen, before)
        assert len(clicks) == np.count_nonzero(steps.click[rows])


def test_target_first_scores_perfectly_and_target_at_rank_r_scores_by_hand(steps):
    env = vec()
    best = log_accuracy(KnownRanking(env, 0), steps)
    assert best.metrics == {"HR@10": 1.0, "NDCG@10": 1.0, "MRR": 1.0}
    r = 4
    known = log_accuracy(KnownRanking(env, r), steps).metrics
    assert known["HR@10"] == 1.0
    assert known["NDCG@10"] == pytest.approx(1 / np.log2(r + 2))
    assert known["MRR"] == pytest.approx(1 / (r + 1))
    outside = log_accuracy(KnownRanking(env, 10), steps).metrics
    assert outside["HR@10"] == 0.0 and outside["MRR"] == pytest.approx(1 / 11)


def test_per_user_sums_add_up_to_the_means(steps):
    result = log_accuracy(KnownRanking(vec(), 3), steps)
    cases = clicked_steps(steps)
    assert result.per_user_cases.sum() == len(cases)
    for name, value in result.metrics.items():
        assert result.per_user_sums[name].sum() / result.per_user_cases.sum() == pytest.approx(value)


def test_the_myopic_oracle_beats_random_and_random_is_at_chance():
    """On a log of the myopic policy (the suite's default) the oracle is far above chance; random is at it."""
    env = vec(200)
    steps = collect_steps(env, agents.make("myopic", env), seed=6, policy_name="myopic")
    random = log_accuracy(agents.make("random", env, seed=3), steps).metrics["HR@10"]
    myopic = log_accuracy(agents.make("myopic", env), steps).metrics["HR@10"]
    assert abs(random - 10 / steps.n_items) < 0.01  # 10 of 1,000 items
    assert myopic > 5 * random


def test_click_prediction_of_a_perfect_and_of_the_exact_model(steps):
    env = vec()
    perfect = click_prediction(KnownRanking(env, 0), steps)
    assert perfect == {"accuracy": 1.0, "precision": 1.0, "recall": 1.0, "f1": 1.0, "roc_auc": 1.0}
    exact = click_prediction(agents.make("myopic", env), steps)
    assert 0.6 < exact["roc_auc"] < 1.0


def test_agents_that_cannot_rank_or_predict_say_so(steps):
    class Blind(KnownRanking):
        catalogue_scores = Recommender.catalogue_scores
        click_probability = Recommender.click_probability

    with pytest.raises(NotImplementedError, match="does not rank the catalogue"):
        log_accuracy(Blind(vec(), 0), steps)
    with pytest.raises(NotImplementedError, match="does not predict clicks"):
        click_prediction(Blind(vec(), 0), steps)


def test_wrong_shapes_are_refused(steps):
    class Short(KnownRanking):
        def catalogue_scores(self, steps):
            return np.zeros((len(steps), 3))

    with pytest.raises(ValueError, match="returned shape"):
        log_accuracy(Short(vec(), 0), steps)
