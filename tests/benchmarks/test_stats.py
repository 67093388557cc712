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


def test_seeds_and_users_bootstrap_widens_with_either_source_of_variation():
    from benchmarks.stats import seeds_and_users_interval, stratified_iqm

    rng = np.random.default_rng(0)
    same_users = np.tile(10 + rng.normal(0, 5, size=400), (5, 1))  # every seed the same: only users vary
    seed_only = stratified_iqm(same_users.mean(axis=1))
    both = seeds_and_users_interval(same_users)
    assert seed_only.low == seed_only.high  # resampling seeds alone sees no uncertainty at all
    half_width = 1.96 * 5 / np.sqrt(400)  # the users' standard error, shrunk a little by averaging 5 seeds
    assert both.low < 10 < both.high and 0.3 * half_width < (both.high - both.low) / 2 < 1.2 * half_width
    seeds_differ = same_users + np.array([[-4.0], [-2.0], [0.0], [2.0], [4.0]])
    wider = seeds_and_users_interval(seeds_differ)
    assert wider.high - wider.low > 3 * (both.high - both.low)


def test_seeds_and_users_ratio_and_pairing():
    from benchmarks.stats import seeds_and_users_samples

    hits = np.array([[1.0, 0.0, 3.0], [2.0, 2.0, 0.0]])
    cases = np.array([[2.0, 1.0, 4.0], [4.0, 2.0, 2.0]])
    point, samples = seeds_and_users_samples(hits, cases, n_resamples=50, seed=1)
    assert point == pytest.approx(iqm(np.array([4 / 7, 4 / 8])))  # each seed's step-weighted mean
    assert samples.shape == (50,) and np.all((samples >= 0) & (samples <= 1))
    # same shape and seed: the same draws, so two agents' samples are paired
    _, doubled = seeds_and_users_samples(2 * hits, cases, n_resamples=50, seed=1)
    assert np.allclose(doubled, 2 * samples)
    with pytest.raises(ValueError, match="one shape"):
        seeds_and_users_samples(hits, cases[:, :2])
