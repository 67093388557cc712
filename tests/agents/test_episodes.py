"""Learning-curve episodes in the order they began: no length bias at either end of training."""

import numpy as np

from agents.episodes import EpisodeLog


def test_order_of_beginning_and_the_cut_at_a_restart():
    log = EpisodeLog(n_envs=3)
    returns = np.array([1.0, 2.0, 3.0])
    log.record(np.array([False, True, False]), returns, step=3)  # user 1 ends first (began at 0)
    log.record(np.array([True, False, False]), returns * 10, step=6)  # user 0 (began at 0)
    log.record(np.array([False, True, False]), returns * 100, step=9)  # user 1 again (began at 3)
    # user 2 is still in its first episode (began at 0): everything that began at 0 or later and
    # ended is kept only if it began before 0, i.e. nothing of this segment
    log.restart(step=12)
    assert log.returns_in_start_order().size == 0
    log.record(np.array([True, True, False]), returns, step=15)  # users 0, 1 (began at 12)
    log.record(np.array([False, False, True]), returns * 7, step=18)  # user 2 (began at 12)
    log.record(np.array([True, False, False]), returns * 5, step=19)  # user 0 (began at 15)
    log.restart(step=20)  # running: user 0 from 19, user 1 from 15, user 2 from 18 -> cut at 15
    assert log.returns_in_start_order().tolist() == [1.0, 2.0, 21.0]  # began at 12: users 0, 1, 2


def test_curve_is_unbiased_where_the_order_of_ending_is_not():
    """Back-to-back episodes of random length (mean 30) with return = length: in the order they
    began, the first and the last thousand episodes average the true mean length; in the order
    they ended, the first ones are the short ones."""
    rng = np.random.default_rng(0)
    n_envs, steps = 1024, 300
    log = EpisodeLog(n_envs)
    remaining = rng.geometric(1 / 30, n_envs)
    length = remaining.copy()
    ended_order = []
    for step in range(1, steps + 1):
        remaining -= 1
        done = remaining == 0
        ended_order.extend(length[done].tolist())
        log.record(done, length.astype(float), step)
        fresh = rng.geometric(1 / 30, n_envs)
        length = np.where(done, fresh, length)
        remaining = np.where(done, fresh, remaining)
    log.restart(steps)
    curve = log.returns_in_start_order()
    assert 0.9 * 30 < curve[:n_envs].mean() < 1.1 * 30
    assert 0.9 * 30 < curve[-n_envs:].mean() < 1.1 * 30
    assert np.mean(ended_order[:n_envs]) < 0.5 * 30
    assert len(curve) < len(ended_order)
