"""Propensity logs exported as Minari datasets and read back with Minari's own loader, equal to the log.

Every dataset goes under ``tmp_path`` (``MINARI_DATASETS_PATH`` is pointed there for the whole module),
never into the user's home.
"""

import dataclasses
import sys

import gymnasium as gym
import numpy as np
import pytest

import agents
import recsim_env  # noqa: F401  (registers the env ids)
from agents.base import Recommender
from agents.behaviour import EpsilonGreedy
from recsim_env.logs.minari_export import to_minari
from recsim_env.logs.propensity import PropensityLog, collect_propensity_log, read_propensity_log, write_propensity_log
from tests.conftest import make_vec

minari = pytest.importorskip("minari")

ENV_ID = "recsim_env/InterestDrift-v0"


@pytest.fixture(autouse=True)
def minari_root(tmp_path, monkeypatch):
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


class Recorder(gym.vector.VectorWrapper):
    """Keeps every observation the wrapped vector env returns from ``step`` with its episode-end flag."""

    def __init__(self, env):
        super().__init__(env)
        self.returned: list[tuple[np.ndarray, np.ndarray]] = []

    def step(self, actions):
        obs, reward, terminated, truncated, info = self.env.step(actions)
        self.returned.append((np.array(obs, copy=True), np.asarray(terminated) | np.asarray(truncated)))
        return obs, reward, terminated, truncated, info


class StateTable(Recommender):
    """Scores of the finite MDP's actions read from a table indexed by the observed state."""

    name = "state_table"

    def __init__(self, env, table: np.ndarray):
        super().__init__(env)
        self.table = table

    def act(self, obs, info):
        return self.scores(obs, info).argmax(axis=1)

    def scores(self, obs, info):
        return self.table[np.asarray(obs, np.int64)]


def drift_log(num_envs: int = 4, n_users: int = 10, **overrides) -> tuple[PropensityLog, gym.vector.VectorEnv]:
    env = make_vec(ENV_ID, num_envs=num_envs, n_items=300, **overrides)
    behaviour = EpsilonGreedy(agents.make("myopic", env), 0.3, seed=1)
    return collect_propensity_log(env, behaviour, n_users, seed=5, policy_name="epsilon_greedy(myopic, 0.3)"), env


@pytest.fixture(scope="module")
def logged():
    return drift_log()


def test_episodes_read_back_with_minari_equal_the_log(logged):
    log, env = logged
    dataset = to_minari(log, "recsim/drift-v0", env)
    back = minari.load_dataset("recsim/drift-v0")  # from MINARI_DATASETS_PATH, as any Minari user would
    assert back.total_episodes == dataset.total_episodes == 10 and back.total_steps == len(log)
    assert back.observation_space == env.single_observation_space and back.action_space == gym.spaces.Discrete(10)
    episodes = list(back.iterate_episodes())
    assert [e.id for e in episodes] == list(range(10))
    for user, episode in enumerate(episodes):
        rows = log.user == user
        t = int(rows.sum())
        assert episode.observations.shape == (t + 1, log.obs.shape[1]) and episode.observations.dtype == np.float32
        np.testing.assert_array_equal(episode.observations[:t], log.obs[rows])
        np.testing.assert_array_equal(episode.observations[t], log.next_obs[rows][-1])
        np.testing.assert_array_equal(episode.actions, log.position[rows])
        np.testing.assert_array_equal(episode.rewards, log.reward[rows])
        np.testing.assert_array_equal(episode.terminations, log.terminated[rows])
        np.testing.assert_array_equal(episode.truncations, log.truncated[rows])
        assert episode.terminations[-1] or episode.truncations[-1]
        infos = episode.infos
        assert all(len(v) == t + 1 for v in infos.values())
        np.testing.assert_array_equal(infos["propensity"][:t], log.propensity[rows])
        np.testing.assert_array_equal(infos["probabilities"][:t], log.probabilities[rows])
        np.testing.assert_array_equal(infos["candidates"][:t], log.candidates[rows])
        np.testing.assert_array_equal(infos["click"][:t], log.click[rows])
        np.testing.assert_array_equal(infos["engagement"][:t], log.engagement[rows])
        # The final observation's entry is padding: nothing was chosen there.
        assert np.isnan(infos["propensity"][t]) and np.isnan(infos["probabilities"][t]).all()
        assert (infos["candidates"][t] == -1).all() and not infos["click"][t]
        # The propensity is the probability of the candidate taken, and the item ids those of the step.
        np.testing.assert_array_equal(infos["propensity"][:t], infos["probabilities"][np.arange(t), episode.actions])


def test_metadata_names_env_config_policy_and_seed_and_recreates_the_env(logged):
    log, env = logged
    to_minari(log, "recsim/drift-v1", env, author_email="team@example.org")
    back = minari.load_dataset("recsim/drift-v1")
    meta = back.storage.metadata
    assert meta["env_id"] == ENV_ID and meta["env_config"] == log.metadata["config"]
    assert meta["behaviour_policy"] == meta["algorithm_name"] == "epsilon_greedy(myopic, 0.3)" and meta["seed"] == 5
    assert meta["author"] == {"recsim_env"} and meta["author_email"] == {"team@example.org"}
    assert meta["propensity_log"] == log.metadata and "recsim_env" in meta["code_permalink"]
    assert back.spec.env_spec.id == ENV_ID and back.spec.env_spec.kwargs == {"preset": "default", "n_items": 300}
    recreated = back.recover_environment()
    assert recreated.unwrapped.config == env.unwrapped.config and recreated.spec.max_episode_steps == 500


def test_final_observation_is_what_the_env_returned_with_the_episode_end():
    """One user at a time, so the k-th episode end the env reports is user k's."""
    env = Recorder(make_vec(ENV_ID, num_envs=1, n_items=300))
    log = collect_propensity_log(env, EpsilonGreedy(agents.make("myopic", env), 0.5, seed=2), 6, seed=7)
    finals = np.stack([obs[0] for obs, done in env.returned if done[0]])[:6]
    end = log.episode_end
    np.testing.assert_array_equal(log.next_obs[end], finals)
    np.testing.assert_array_equal(log.next_obs[:-1][~end[:-1]], log.obs[1:][~end[:-1]])  # the next step's obs
    assert not np.array_equal(finals, log.obs[end])  # the step did move the observation on
    episodes = list(to_minari(log, "recsim/one-by-one-v0", env.env).iterate_episodes())
    np.testing.assert_array_equal(np.stack([e.observations[-1] for e in episodes]), finals)


def test_a_discrete_observation_env_exports_integer_states(tmp_path):
    env = gym.make_vec("recsim_env/TabularDrift-v0", num_envs=3, vectorization_mode="sync")
    table = np.random.default_rng(0).standard_normal((37, 4))
    log = collect_propensity_log(env, EpsilonGreedy(StateTable(env, table), 0.5, seed=0), 5, seed=1)
    # No env given: the log's own env id, as registered.
    dataset = to_minari(log, "tabular-v0", data_path=tmp_path / "elsewhere", data_format="parquet")
    back = minari.MinariDataset(tmp_path / "elsewhere" / "tabular-v0" / "data")
    assert back.observation_space == gym.spaces.Discrete(37) and back.total_steps == dataset.total_steps == len(log)
    assert back.spec.env_spec.id == "recsim_env/TabularDrift-v0"
    assert back.storage.metadata["env_config"]["n_topics"] == 2
    for user, episode in enumerate(back.iterate_episodes()):
        rows = log.user == user
        np.testing.assert_array_equal(episode.observations, np.r_[log.obs[rows, 0], log.next_obs[rows][-1, 0]])
        assert episode.observations[-1] == 36  # the MDP's terminal state
        assert np.isnan(episode.infos["engagement"]).all()  # the MDP reports none


def test_final_observations_round_trip_through_parquet_and_older_files_say_what_is_missing(logged, tmp_path):
    import pyarrow.parquet as pq

    log, env = logged
    path = write_propensity_log(tmp_path / "log.parquet", log)
    table = pq.read_table(path)
    assert table.column("final_obs").null_count == len(log) - 10  # stored once per episode
    back = read_propensity_log(path)
    np.testing.assert_array_equal(back.next_obs, log.next_obs)
    assert back.next_obs.dtype == log.obs.dtype
    old = tmp_path / "old.parquet"
    pq.write_table(table.drop_columns(["final_obs"]), old)  # as written before final observations were kept
    older = read_propensity_log(old)
    assert older.next_obs is None and len(older) == len(log)
    with pytest.raises(ValueError, match=r"the log has no final observations \(next_obs\)"):
        to_minari(older, "recsim/old-v0", env)
    moved = dataclasses.replace(log, next_obs=np.roll(log.next_obs, 1, axis=0))
    with pytest.raises(ValueError, match="next_obs must be the next row's obs within an episode"):
        write_propensity_log(tmp_path / "moved.parquet", moved)


def test_refusals_name_the_problem(logged, minari_root, monkeypatch):
    log, env = logged
    to_minari(log, "recsim/taken-v0", env)
    with pytest.raises(ValueError, match=r"a Minari dataset 'recsim/taken-v0' already exists"):
        to_minari(log, "recsim/taken-v0", env)
    with pytest.raises(ValueError, match=r"dataset_id='no-version' is malformed"):
        to_minari(log, "no-version", env)
    with pytest.raises(ValueError, match="data_format='hdf5' is not supported"):
        to_minari(log, "recsim/h5-v0", env, data_format="hdf5")
    with pytest.raises(ValueError, match="another config"):  # the registered default has 5,000 items
        to_minari(log, "recsim/default-v0")
    assert not (minari_root / "recsim" / "default-v0").exists()
    monkeypatch.setitem(sys.modules, "minari", None)
    with pytest.raises(ImportError, match=r"pip install 'recsim_env\[minari\]'"):
        to_minari(log, "recsim/none-v0", env)
