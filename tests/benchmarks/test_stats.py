import numpy as np
import pytest

from benchmarks.stats import Interval, bootstrap_interval, iqm


def test_iqm_by_hand():
    assert iqm(np.array([1, 2, 3, 4, 100, -100, 5, 6])) == pytest.approx(3.5)
    assert iqm(np.arange(4.0)) == pytest.approx(1.5)


def test_bootstrap_interval_of_the_mean_matches_the_normal_theory():
    values = np.random.default_rng(0).normal(10.0, 2.0, size=2000)
    ci = bootstrap_interval(values, n_resamples=4000, seed=1)
    half_width = 1.96 * values.std() / np.sqrt(values.size)
    assert ci.low < values.mean() < ci.high
    assert (ci.high - ci.low) / 2 == pytest.approx(half_width, rel=0.1)


def test_bootstrap_is_seeded_and_validates_input():
    values = np.arange(30.0)
    assert bootstrap_interval(values, seed=3) == bootstrap_interval(values, seed=3)
    with pytest.raises(ValueError, match="at least 2 values"):
        bootstrap_interval(np.array([1.0]))
    with pytest.raises(ValueError, match="confidence=1.5"):
        bootstrap_interval(values, confidence=1.5)


def test_interval_overlap():
    assert Interval(1, 0, 2).overlaps(Interval(3, 1.5, 4))
    assert not Interval(1, 0, 2).overlaps(Interval(3, 2.5, 4))
