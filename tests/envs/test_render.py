import gymnasium as gym
import numpy as np
import pytest


def test_ansi_shows_interests_satiation_budget_slate_and_choice():
    env = gym.make("recsim_env/SlateDrift-v0", render_mode="ansi")
    env.reset(seed=0)
    assert "slate: (none yet)" in env.render()
    env.step(np.array([0, 1, 2]))
    text = env.render()
    for fragment in ("top interests", "satiation", "budget", "[0] item", "[2] item", "choice:"):
        assert fragment in text


def test_rgb_array_is_an_image():
    env = gym.make("recsim_env/InterestDrift-v0", render_mode="rgb_array")
    env.reset(seed=0)
    env.step(0)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
    assert frame.shape[0] >= 200 and frame.std() > 0


def test_unknown_render_mode_is_rejected():
    from recsim_env import RecommendationEnv

    with pytest.raises(ValueError, match="render_mode='human'"):
        RecommendationEnv(render_mode="human")


def test_tabular_ansi():
    env = gym.make("recsim_env/TabularDrift-v0", render_mode="ansi")
    env.reset(seed=0)
    env.step(0)
    assert "budget" in env.render() or "left" in env.render()
