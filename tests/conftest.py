"""Shared fixtures and helpers for the test suite."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import recsim_env

SIMULATED_IDS = ["recsim_env/InterestDrift-v0", "recsim_env/SlateDrift-v0", "recsim_env/CrossSessionDrift-v0"]


def make_vec(env_id: str = "recsim_env/InterestDrift-v0", num_envs: int = 8, **overrides) -> gym.vector.VectorEnv:
    return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", **overrides)


def random_actions(space: gym.Space, rng: np.random.Generator) -> np.ndarray | int:
    """A valid action for ``space`` drawn from ``rng`` (independent of the space's own generator)."""
    if isinstance(space, gym.spaces.Discrete):
        return int(rng.integers(space.n))
    return rng.integers(0, space.nvec).astype(np.int64)


@pytest.fixture(params=SIMULATED_IDS)
def simulated_id(request) -> str:
    return request.param


@pytest.fixture(params=list(recsim_env.ENV_IDS))
def env_id(request) -> str:
    return request.param
