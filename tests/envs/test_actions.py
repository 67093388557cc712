"""Invalid actions get a clear error that names the action space."""

import gymnasium as gym
import numpy as np
import pytest

from tests.conftest import make_vec


@pytest.mark.parametrize("action, error, fragment", [
    (10, ValueError, "outside Discrete(10)"),
    (-1, ValueError, "outside Discrete(10)"),
    (2.0, TypeError, "Discrete(10) needs integers"),
    (True, TypeError, "Discrete(10) needs integers"),
    (np.array([1, 2]), ValueError, "Discrete(10) needs shape ()"),
    ("3", TypeError, "Discrete(10) needs integers"),
])
def test_single_env_bad_actions(action, error, fragment):
    env = gym.make("recsim_env/InterestDrift-v0")
    env.reset(seed=0)
    with pytest.raises(error) as err:
        env.step(action)
    assert fragment in str(err.value)


def test_single_env_accepts_numpy_integers():
    env = gym.make("recsim_env/InterestDrift-v0")
    env.reset(seed=0)
    env.step(np.int64(3))
    env.step(np.array(4))


def test_slate_env_bad_actions():
    env = gym.make("recsim_env/SlateDrift-v0")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"MultiDiscrete\(\[10 10 10\]\) needs shape \(3,\)"):
        env.step(np.array([1, 2]))
    with pytest.raises(ValueError, match="outside MultiDiscrete"):
        env.step(np.array([1, 2, 10]))
    with pytest.raises(TypeError, match="needs integers"):
        env.step(np.array([1.0, 2.0, 3.0]))


def test_vector_env_bad_actions():
    env = make_vec(num_envs=4)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"needs shape \(4,\)"):
        env.step(np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="outside MultiDiscrete"):
        env.step(np.array([0, 1, 2, 12]))


def test_step_before_reset_and_after_termination():
    env = gym.make("recsim_env/InterestDrift-v0", initial_budget=1.0, max_budget=1.0, refill_rate=0.0)
    with pytest.raises(gym.error.ResetNeeded):
        env.step(0)
    env.reset(seed=0)
    _, _, terminated, _, _ = env.step(0)
    assert terminated  # one step costs the whole budget
    with pytest.raises(RuntimeError, match="call reset"):
        env.unwrapped.step(0)


def test_slate_repeats_are_shown_once():
    env = gym.make("recsim_env/SlateDrift-v0")
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([4, 4, 4]))
    probs = env.unwrapped._last.probabilities[0]
    assert probs[1] == 0 and probs[2] == 0 and probs.sum() == pytest.approx(1.0)
