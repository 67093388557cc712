"""RLlib (new API stack) trains on the registered ids unchanged, and Ray Tune fans a sweep out over them.

RLlib builds its env with ``gym.make_vec(id, **env_config)``, wraps it in Gymnasium's
``DictInfoToList`` (which needs the ``_key`` masks of a vector info) and reads spaces from it, so a
few training iterations exercise the whole path: the id, the config passed through ``env_config``,
the flat ``Box`` observation and the ``Discrete`` / ``MultiDiscrete`` (slate) actions.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import recsim_env  # noqa: F401  (registers the env ids)

ray = pytest.importorskip("ray")
pytest.importorskip("ray.rllib")

from ray.rllib.algorithms.dqn import DQNConfig  # noqa: E402
from ray.rllib.algorithms.ppo import PPOConfig  # noqa: E402

#: A small catalogue, passed through ``env_config``: the test checks that it reached the env.
ENV_CONFIG = {"n_items": 200, "n_topics": 5}


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _env_configs(algo) -> list:
    """The config of every env the algorithm's local env runner built (sync or native vector env)."""
    vector = algo.env_runner.env.unwrapped
    if hasattr(vector, "envs"):
        return [env.unwrapped.config for env in vector.envs]
    return [vector.config]


def _train(config, iterations: int) -> tuple[object, list[dict]]:
    algo = config.debugging(seed=0).build_algo()
    results = [algo.train() for _ in range(iterations)]
    return algo, results


def _ppo(env_id: str, **runners) -> PPOConfig:
    return (PPOConfig().environment(env_id, env_config=ENV_CONFIG)
            .env_runners(num_env_runners=0, **({"num_envs_per_env_runner": 4} | runners))
            .training(train_batch_size_per_learner=256, minibatch_size=64, num_epochs=2))


@pytest.mark.parametrize("env_id, vectorize", [
    ("recsim_env/InterestDrift-v0", "sync"),
    ("recsim_env/InterestDrift-v0", "vector_entry_point"),  # the package's own batched vector env
    ("recsim_env/SlateDrift-v0", "sync"),  # MultiDiscrete slate action
])
def test_ppo_trains_on_the_registered_id_with_its_env_config(local_ray, env_id, vectorize):
    algo, results = _train(_ppo(env_id, gym_env_vectorize_mode=vectorize), iterations=2)
    try:
        configs = _env_configs(algo)
        assert configs and all(c.catalog.n_items == 200 and c.catalog.n_topics == 5 for c in configs)
        expected_space = gym.make(env_id, **ENV_CONFIG).action_space
        assert algo.env_runner.env.unwrapped.single_action_space == expected_space
        sampled = [r["env_runners"]["num_env_steps_sampled_lifetime"] for r in results]
        assert sampled[0] >= 256 and sampled[1] >= 2 * 256  # both iterations stepped the env
        returns = [r["env_runners"]["episode_return_mean"] for r in results]
        assert all(np.isfinite(returns)) and all(x > 0 for x in returns)  # whole episodes ended and were counted
        learner = results[-1]["learners"]["default_policy"]
        assert np.isfinite(learner["total_loss"])
    finally:
        algo.stop()


def test_dqn_trains_on_the_registered_id(local_ray):
    config = (DQNConfig().environment("recsim_env/InterestDrift-v0", env_config=ENV_CONFIG)
              .env_runners(num_env_runners=0, num_envs_per_env_runner=1)
              .reporting(min_sample_timesteps_per_iteration=200)
              .training(num_steps_sampled_before_learning_starts=100, train_batch_size_per_learner=32,
                        training_intensity=4))
    algo, results = _train(config, iterations=2)
    try:
        assert all(c.catalog.n_items == 200 for c in _env_configs(algo))
        assert results[-1]["env_runners"]["num_env_steps_sampled_lifetime"] >= 400
        assert np.isfinite(results[-1]["learners"]["default_policy"]["qf_loss"])  # it learnt from replay
    finally:
        algo.stop()


def test_register_env_passes_env_config_to_a_creator(local_ray):
    from ray.tune.registry import register_env

    def creator(env_config):  # RLlib hands it an EnvContext: the env_config dict plus worker indices
        return gym.make("recsim_env/InterestDrift-v0", **env_config)

    register_env("recsim-interest-drift", creator)
    algo, results = _train(_ppo("recsim-interest-drift", num_envs_per_env_runner=2), iterations=1)
    try:
        assert all(c.catalog.n_items == 200 and c.catalog.n_topics == 5 for c in _env_configs(algo))
        assert results[0]["env_runners"]["num_env_steps_sampled_lifetime"] >= 256
    finally:
        algo.stop()


def test_tune_fans_a_sweep_out_over_trials(local_ray, tmp_path):
    """Each trial runs in its own worker process, which has not imported ``recsim_env``: the
    ``module:id`` form of the id makes Gymnasium import the package (and so register its ids) first."""
    from ray import tune

    config = _ppo("recsim_env:recsim_env/InterestDrift-v0", num_envs_per_env_runner=2).training(
        lr=tune.grid_search([1e-4, 1e-3]))
    tuner = tune.Tuner("PPO", param_space=config,
                       run_config=tune.RunConfig(stop={"training_iteration": 1}, storage_path=str(tmp_path),
                                                 verbose=0))
    grid = tuner.fit()
    assert len(grid) == 2 and not grid.errors
    assert sorted(r.config["lr"] for r in grid) == [1e-4, 1e-3]
    assert all(r.metrics["env_runners"]["num_env_steps_sampled_lifetime"] >= 256 for r in grid)
