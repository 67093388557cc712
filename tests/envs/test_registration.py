import subprocess
import sys

import gymnasium as gym
import pytest

import recsim_env


def test_every_id_is_registered():
    for env_id in recsim_env.ENV_IDS:
        assert env_id in gym.registry


def test_registration_is_idempotent():
    before = {k: gym.registry[k] for k in recsim_env.ENV_IDS}
    recsim_env._register()
    assert {k: gym.registry[k] for k in recsim_env.ENV_IDS} == before


def test_make_with_module_prefix_works_without_import():
    code = ("import gymnasium as gym, sys\n"
            "assert 'recsim_env' not in sys.modules\n"
            "env = gym.make('recsim_env:recsim_env/InterestDrift-v0')\n"
            "obs, _ = env.reset(seed=0)\n"
            "assert env.observation_space.contains(obs)\n")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("env_id", ["recsim_env/InterestDrift-v0", "recsim_env/SlateDrift-v0",
                                    "recsim_env/CrossSessionDrift-v0"])
def test_vector_entry_point(env_id):
    env = gym.make_vec(env_id, num_envs=3, vectorization_mode="vector_entry_point")
    obs, info = env.reset(seed=0)
    assert obs.shape == (3, *env.single_observation_space.shape)
    assert info["candidates"].shape[0] == 3
