"""The native vector env: Gymnasium 1.x NEXT_STEP autoreset, and the same statistics as the single env."""

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from scipy import stats

from tests.conftest import make_vec


def test_declares_next_step_autoreset_and_single_spaces():
    env = make_vec(num_envs=4)
    assert env.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert env.observation_space.shape == (4, *env.single_observation_space.shape)
    assert env.action_space.shape == (4,)


def test_step_after_done_is_a_reset_step():
    env = make_vec(num_envs=32, initial_budget=3.0, max_budget=6.0)
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    prev_done = np.zeros(32, bool)
    seen_reset = False
    for _ in range(60):
        obs, reward, terminated, truncated, info = env.step(rng.integers(0, 10, 32))
        assert np.array_equal(info["autoreset"], prev_done)
        if prev_done.any():
            seen_reset = True
            assert np.all(reward[prev_done] == 0)
            assert not np.any(terminated[prev_done] | truncated[prev_done])
            assert not np.any(info["click"][prev_done])
            # A fresh user: full budget, empty history.
            assert np.allclose(info["user_state"]["budget"][prev_done], 3.0)
            layout = env.unwrapped.layout
            assert np.all(obs[prev_done][:, layout.history] == 0)
        prev_done = terminated | truncated
    assert seen_reset


def test_truncation_from_max_episode_steps():
    env = gym.make_vec("recsim_env/InterestDrift-v0", num_envs=4, vectorization_mode="vector_entry_point",
                       max_episode_steps=3, hazard_base=1e-6, hazard_boredom=0.0, initial_budget=500.0,
                       max_budget=500.0)
    env.reset(seed=0)
    for _ in range(2):
        _, _, terminated, truncated, _ = env.step(np.zeros(4, np.int64))
        assert not truncated.any()
    _, _, terminated, truncated, _ = env.step(np.zeros(4, np.int64))
    assert truncated.all()


def episode_returns_single(n: int, seed: int) -> np.ndarray:
    env = gym.make("recsim_env/InterestDrift-v0")
    rng = np.random.default_rng(seed)
    out = []
    for ep in range(n):
        env.reset(seed=seed * 100_000 + ep)
        total, done = 0.0, False
        while not done:
            _, r, term, trunc, _ = env.step(int(rng.integers(10)))
            total += r
            done = term or trunc
        out.append(total)
    return np.array(out)


def episode_returns_vector(n: int, seed: int) -> np.ndarray:
    env = make_vec(num_envs=n)
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    totals, live = np.zeros(n), np.ones(n, bool)
    while live.any():
        _, r, term, trunc, _ = env.step(rng.integers(0, 10, n))
        totals += np.where(live, r, 0)
        live &= ~(term | trunc)
    return totals


def test_vector_and_single_env_returns_have_the_same_distribution():
    single = episode_returns_single(400, seed=1)
    vector = episode_returns_vector(400, seed=2)
    result = stats.ks_2samp(single, vector)
    assert result.pvalue > 0.01, (single.mean(), vector.mean(), result)


def test_ks_test_does_detect_a_different_env():
    """The equivalence test above has power: a changed dynamics parameter is detected."""
    single = episode_returns_single(400, seed=1)
    env = make_vec(num_envs=400, initial_budget=25.0)
    env.reset(seed=2)
    rng = np.random.default_rng(2)
    totals, live = np.zeros(400), np.ones(400, bool)
    while live.any():
        _, r, term, trunc, _ = env.step(rng.integers(0, 10, 400))
        totals += np.where(live, r, 0)
        live &= ~(term | trunc)
    assert stats.ks_2samp(single, totals).pvalue < 0.01
