"""Same seed, same trajectory bit for bit; different seeds, different trajectories."""

import gymnasium as gym
import numpy as np

from tests.conftest import make_vec, random_actions


def rollout(env_id: str, seed: int, steps: int = 300) -> list[tuple]:
    env = gym.make(env_id)
    obs, info = env.reset(seed=seed)
    rng = np.random.default_rng(123)
    out = [(obs.tobytes(), info["user_state"]["interest"].tobytes())]
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(random_actions(env.action_space, rng))
        out.append((obs.tobytes(), reward, terminated, truncated, info["user_state"]["budget"].tobytes()))
        if terminated or truncated:
            obs, info = env.reset()
            out.append((obs.tobytes(),))
    return out


def test_same_seed_same_trajectory(simulated_id):
    assert rollout(simulated_id, seed=7) == rollout(simulated_id, seed=7)


def test_different_seeds_differ(simulated_id):
    assert rollout(simulated_id, seed=7, steps=20) != rollout(simulated_id, seed=8, steps=20)


def test_vector_env_same_seed_same_trajectory():
    def run(seed):
        env = make_vec(num_envs=16)
        obs, _ = env.reset(seed=seed)
        rng = np.random.default_rng(0)
        chunks = [obs.tobytes()]
        for _ in range(200):
            obs, reward, terminated, truncated, _ = env.step(rng.integers(0, 10, 16))
            chunks += [obs.tobytes(), reward.tobytes(), terminated.tobytes()]
        return chunks

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_catalogue_comes_from_its_own_seed_not_the_reset_seed():
    a, b = gym.make("recsim_env/InterestDrift-v0"), gym.make("recsim_env/InterestDrift-v0", catalog_seed=1)
    a.reset(seed=0)
    a2 = gym.make("recsim_env/InterestDrift-v0")
    a2.reset(seed=99)
    assert np.array_equal(a.unwrapped.simulator.catalog.quality, a2.unwrapped.simulator.catalog.quality)
    assert not np.array_equal(a.unwrapped.simulator.catalog.quality, b.unwrapped.simulator.catalog.quality)
