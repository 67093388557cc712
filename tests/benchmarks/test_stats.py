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


def test_stratified_iqm_known_cases():
    from benchmarks.stats import stratified_iqm

    # one task, three seeds: the IQM of three values is their mean, and the interval spans the
    # bootstrap means of three values, so it lies within [min, max] and reaches neither end point
    ci = stratified_iqm(np.array([70.0, 74.0, 78.0]))
    assert ci.estimate == pytest.approx(74.0)
    assert 70.0 <= ci.low < 74.0 < ci.high <= 78.0
    # identical runs: no uncertainty
    assert stratified_iqm(np.full((4, 3), 2.5)) == Interval(2.5, 2.5, 2.5)
    # many runs, one task: close to the normal-theory interval of the trimmed mean's centre
    values = np.random.default_rng(0).normal(10.0, 2.0, size=(400, 1))
    ci = stratified_iqm(values, n_resamples=4000)
    assert ci.low < 10.0 < ci.high and ci.high - ci.low < 0.6


def test_stratified_resampling_keeps_tasks_apart():
    from benchmarks.stats import stratified_iqm

    # two tasks on very different scales: every resample keeps both, so the IQM stays put
    scores = np.stack([np.zeros(6), np.full(6, 100.0)], axis=1)
    assert stratified_iqm(scores) == Interval(50.0, 50.0, 50.0)


def test_probability_of_improvement_by_hand():
    from benchmarks.stats import improvement_interval, probability_of_improvement

    assert probability_of_improvement([3, 4, 5], [0, 1, 2]) == 1.0
    assert probability_of_improvement([1, 2], [1, 2]) == 0.5
    # pairs (x > y): 3>1, 3>2, 3=3 (half), 4>1, 4>2, 4>3, 5 beats all three -> (2.5 + 3 + 3) / 9
    assert probability_of_improvement([3, 4, 5], [1, 2, 3]) == pytest.approx(8.5 / 9)
    ci = improvement_interval([3, 4, 5], [0, 1, 2])
    assert ci == Interval(1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="same tasks"):
        probability_of_improvement(np.zeros((2, 2)), np.zeros((2, 3)))
