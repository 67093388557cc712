"""Both env checkers pass with zero warnings on every registered id; SB3's DQN trains on the env."""

import warnings

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env

from tests.conftest import SIMULATED_IDS


def test_gymnasium_checker_without_warnings(env_id):
    env = gym.make(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gym_check_env(env.unwrapped, skip_render_check=False)


def test_sb3_checker_without_warnings(env_id):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sb3_check_env(gym.make(env_id), warn=True)


def test_render_checks_pass_for_every_render_mode():
    for mode in ("ansi", "rgb_array"):
        env = gym.make("recsim_env/InterestDrift-v0", render_mode=mode)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            gym_check_env(env.unwrapped, skip_render_check=False)


@pytest.mark.parametrize("env_id", SIMULATED_IDS[:1])
def test_sb3_dqn_learns_2000_steps(env_id):
    from stable_baselines3 import DQN

    env = gym.make(env_id)
    model = DQN("MlpPolicy", env, learning_starts=200, seed=0, device="cpu")
    model.learn(2000)
    obs, _ = env.reset(seed=1)
    action, _ = model.predict(obs, deterministic=True)
    assert env.action_space.contains(int(action))
