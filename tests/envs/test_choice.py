"""The closed-form outcome probabilities match simulated frequencies, and behave as documented."""

import numpy as np
import pytest

from recsim_env import choice
from recsim_env.config import ChoiceConfig


@pytest.mark.parametrize("model", ["logit", "cascade"])
def test_draws_follow_the_closed_form(model):
    cfg = ChoiceConfig(choice_model=model)
    scores = np.array([[1.0, 0.2, 2.0]], np.float32)
    probs = choice.outcome_probabilities(scores, cfg)
    rng = np.random.default_rng(0)
    n = 200_000
    draws = choice.sample_outcome(np.repeat(probs, n, axis=0), rng.random(n, dtype=np.float32))
    freq = np.bincount(draws, minlength=4) / n
    assert np.allclose(freq, probs[0], atol=4e-3)


def test_logit_formula_by_hand():
    cfg = ChoiceConfig(position_decay=0.5, no_click_score=0.0)
    scores = np.array([[0.0, np.log(2.0)]], np.float32)
    # weights: e^0 * 1 = 1, e^{ln 2} * 0.5 = 1, no click e^0 = 1
    assert np.allclose(choice.outcome_probabilities(scores, cfg), [[1 / 3, 1 / 3, 1 / 3]])


def test_cascade_formula_by_hand():
    cfg = ChoiceConfig(choice_model="cascade", position_decay=1.0, no_click_score=0.0)
    scores = np.array([[0.0, 0.0]], np.float32)  # each examined item clicked with sigmoid(0) = 1/2
    assert np.allclose(choice.outcome_probabilities(scores, cfg), [[0.5, 0.25, 0.25]])


def test_position_bias_favours_the_top():
    probs = choice.outcome_probabilities(np.zeros((1, 4), np.float32), ChoiceConfig(position_decay=0.7))
    assert np.all(np.diff(probs[0, :4]) < 0)


def test_duplicates_are_shown_once():
    items = np.array([[5, 5, 7, 5]])
    assert choice.duplicate_mask(items).tolist() == [[False, True, False, True]]
    probs = choice.outcome_probabilities(np.ones((1, 4), np.float32), ChoiceConfig(), choice.duplicate_mask(items))
    assert probs[0, 1] == 0 and probs[0, 3] == 0 and probs.sum() == pytest.approx(1.0)


def test_extreme_scores_stay_finite():
    scores = np.array([[500.0, -500.0, 80.0]], np.float32)
    for model in ("logit", "cascade"):
        probs = choice.outcome_probabilities(scores, ChoiceConfig(choice_model=model))
        assert np.all(np.isfinite(probs)) and probs.sum() == pytest.approx(1.0, abs=1e-5)
