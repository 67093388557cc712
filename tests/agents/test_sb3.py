"""The Stable-Baselines3 DQN adapter: trains, acts on a batch, evaluates like any agent, saves and loads."""

import gymnasium as gym
import numpy as np
import pytest

import agents
import recsim_env  # noqa: F401  (registers the env ids)
from agents.evaluation import evaluate
from agents.sb3 import SB3DQN, single_env_factory

TINY = {"total_timesteps": 600, "learning_starts": 200, "batch_size": 32, "hidden": 16, "buffer_size": 1000}


def drift_vec(n: int = 16, env_id: str = "recsim_env/InterestDrift-v0", **overrides) -> gym.vector.VectorEnv:
    return gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point", **overrides)


@pytest.fixture(scope="module")
def trained() -> SB3DQN:
    agent = agents.make("sb3_dqn", drift_vec(), **TINY)
    result = agent.train(progress=False)
    assert result.steps == TINY["total_timesteps"] and result.steps_per_second > 0
    assert len(result.episode_returns) > 0
    return agent


def test_trains_and_is_evaluated_like_every_agent(trained):
    env = drift_vec()
    obs, info = env.reset(seed=0)
    actions = trained.act(obs, info)
    assert actions.shape == (16,) and actions.dtype == np.int64 and ((0 <= actions) & (actions < 10)).all()
    stats = evaluate(trained, env, seed=2**31 + 1)
    assert stats.returns.shape == (16,) and np.isfinite(stats.returns).all()


def test_same_seed_same_policy():
    env = drift_vec()
    obs, info = env.reset(seed=3)
    runs = []
    for _ in range(2):
        agent = SB3DQN(env, **{**TINY, "seed": 4})
        agent.train(progress=False)
        runs.append(agent.act(obs, info))
    assert np.array_equal(*runs)


def test_save_load_round_trip_and_errors(trained, tmp_path):
    env = drift_vec()
    trained.save(tmp_path / "model")  # SB3's suffix is added
    assert (tmp_path / "model.zip").exists()
    fresh = SB3DQN(env, **TINY)
    fresh.load(tmp_path / "model.zip")
    obs, info = env.reset(seed=1)
    assert np.array_equal(fresh.act(obs, info), trained.act(obs, info))
    (tmp_path / "bad.zip").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="bad.zip is not a readable SB3 DQN model"):
        fresh.load(tmp_path / "bad.zip")
    other = SB3DQN(drift_vec(n_topics=4), **TINY)
    with pytest.raises(ValueError, match="model.zip was trained on"):
        other.load(tmp_path / "model.zip")


def test_training_envs_copy_the_overrides_and_time_limit():
    single = single_env_factory(drift_vec(n_items=500))()
    assert single.unwrapped.config.catalog.n_items == 500
    assert single.spec.max_episode_steps == 500


def test_refuses_what_sb3_dqn_cannot_take():
    with pytest.raises(TypeError, match="Discrete action"):
        SB3DQN(drift_vec(4, "recsim_env/SlateDrift-v0"))
    with pytest.raises(ValueError, match="SB3DQNConfig.gamma"):
        SB3DQN(drift_vec(4), gamma=2.0)
