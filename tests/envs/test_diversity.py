"""Exposure and homogeneity measures against hand-computed values and brute force."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsim_env.diversity import coverage, entropy, exposure_counts, gini, interest_summary


def brute_force_gini(counts):
    """Mean absolute difference over all ordered pairs, over twice the mean."""
    x = np.asarray(counts, float)
    pairs = sum(abs(a - b) for a, b in itertools.product(x, x))
    return pairs / (2 * len(x) ** 2 * x.mean())


def test_gini_and_coverage_by_hand():
    assert gini([5, 5, 5, 5]) == pytest.approx(0.0)
    assert gini([0, 0, 0, 8]) == pytest.approx(0.75)  # 1 - 1/n: one item takes everything
    assert gini([1, 2, 3]) == pytest.approx(brute_force_gini([1, 2, 3]))
    assert coverage([0, 3, 0, 1]) == 0.5
    with pytest.raises(ValueError, match="nothing was shown"):
        gini([0, 0])
    with pytest.raises(ValueError, match="non-negative"):
        coverage([1, -1])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=1, max_size=12).filter(lambda c: sum(c) > 0))
def test_gini_equals_the_pairwise_definition(counts):
    assert gini(counts) == pytest.approx(brute_force_gini(counts), abs=1e-12)
    assert 0.0 <= gini(counts) <= 1.0 - 1.0 / len(counts) + 1e-12


def test_exposure_counts_skip_empty_slots_and_refuse_unknown_items():
    assert exposure_counts(np.array([[0, 2], [2, -1]]), 4).tolist() == [1, 0, 2, 0]
    with pytest.raises(ValueError, match="outside -1..3"):
        exposure_counts(np.array([4]), 4)


def test_entropy_by_hand():
    assert entropy([1, 1, 1, 1]) == pytest.approx(np.log(4))
    assert entropy([0, 7]) == 0.0
    assert np.allclose(entropy(np.array([[1, 1], [1, 0]]), axis=1), [np.log(2), 0.0])
    with pytest.raises(ValueError, match="all-zero"):
        entropy([0, 0])


def test_interest_summary_tells_alike_users_from_diverse_ones():
    rng = np.random.default_rng(0)
    diverse = rng.normal(size=(200, 10))
    alike = np.tile(rng.normal(size=10), (200, 1)) + 0.01 * rng.normal(size=(200, 10))
    d, a = interest_summary(diverse), interest_summary(alike)
    assert d["favourite_topic_entropy"] > 2.0 and a["favourite_topic_entropy"] < 0.1
    assert a["mean_cosine"] > 0.99 and abs(d["mean_cosine"]) < 0.05
    pairs = [diverse[i] @ diverse[j] / np.linalg.norm(diverse[i]) / np.linalg.norm(diverse[j])
             for i in range(20) for j in range(20) if i != j]
    assert interest_summary(diverse[:20])["mean_cosine"] == pytest.approx(np.mean(pairs))
