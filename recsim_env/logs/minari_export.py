"""Propensity logs as Minari datasets (Farama's offline-RL format), so other offline-RL code can read them.

One Minari episode per logged user: the ``T + 1`` observations (the ``T`` the behaviour acted on and
the one the env returned with the episode's end), the chosen candidate index as a ``Discrete(N)``
action, the rewards and the episode-end flags. The infos keep, per step, what importance weighting
needs: the behaviour's probability of the action taken (``propensity``) and of every candidate
(``probabilities``), the candidates' item ids (``candidates``), the ``click`` and the ``engagement``.
Like the observations they have ``T + 1`` entries, entry ``t`` describing step ``t``; the last one
(the final observation, where nothing was chosen) is padding: NaN, -1 for the item ids, no click.

The dataset records the registered env spec (with the config overrides the env was made with), so
``dataset.recover_environment()`` builds the env the log came from, and its metadata names the env
id, its config, the behaviour policy and the seed. The arrow and parquet storages need only pyarrow,
which the package already depends on; Minari itself is the ``minari`` extra.

>>> from recsim_env.logs import collect_propensity_log
>>> log = collect_propensity_log(envs, behaviour, n_users=1000, seed=1)  # doctest: +SKIP
>>> dataset = to_minari(log, "recsim/interest-drift-myopic-v0", envs)   # doctest: +SKIP
>>> minari.load_dataset("recsim/interest-drift-myopic-v0")              # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import EnvSpec

from recsim_env.logs.propensity import PropensityLog
from recsim_env.logs.simulated import _jsonable

if TYPE_CHECKING:
    from minari import MinariDataset

#: Minari storages that need nothing beyond pyarrow (``hdf5`` would need h5py).
DATA_FORMATS = ("arrow", "parquet")
#: Keys ``gym.make_vec`` adds to a spec's kwargs that the single env does not take.
_VECTOR_KWARGS = ("num_envs", "vectorization_mode", "vector_kwargs", "wrappers", "max_episode_steps")
#: Padding of the final observation's info entry, where no candidate was chosen.
_MISSING_PROBABILITY, _MISSING_ITEM = np.nan, -1


def _import_minari() -> Any:
    try:
        import minari
    except ImportError:
        raise ImportError("to_minari needs Minari: pip install 'recsim_env[minari]'") from None
    return minari


def single_env_spec(env: str | EnvSpec | gym.Env | gym.vector.VectorEnv) -> EnvSpec:
    """The spec of one env of ``env``: what Minari stores to recreate it (``gym.make(spec)``).

    A vector env's spec carries ``gym.make_vec``'s own arguments in its kwargs; they are dropped, and
    the time limit it moved there is put back as the spec's ``max_episode_steps``.
    """
    if isinstance(env, str):
        spec = gym.spec(env)
    elif isinstance(env, EnvSpec):
        spec = env
    elif isinstance(env, (gym.Env, gym.vector.VectorEnv)):
        spec = env.spec
        if spec is None:
            raise ValueError(f"env {env} has no spec (made without gym.make): pass its registered id instead")
    else:
        raise TypeError(f"env must be an env id, an EnvSpec, a gym.Env or a VectorEnv, not {type(env).__name__}")
    limit = spec.kwargs.get("max_episode_steps", spec.max_episode_steps)
    kwargs = {k: v for k, v in spec.kwargs.items() if k not in _VECTOR_KWARGS}
    return dataclasses.replace(spec, kwargs=kwargs, max_episode_steps=limit)


def _check_log(log: PropensityLog) -> np.ndarray:
    """The rows that end an episode, after checking the log holds whole episodes of users ``0..E-1``."""
    if len(log) == 0:
        raise ValueError("the propensity log is empty: no episode to export")
    if log.next_obs is None:
        raise ValueError("the log has no final observations (next_obs), which Minari episodes need (files "
                         "written before they were recorded lack them): collect it again with "
                         "collect_propensity_log")
    user, step = np.asarray(log.user, np.int64), np.asarray(log.step, np.int64)
    end = log.episode_end
    first = np.r_[True, end[:-1]]
    if not (np.array_equal(user[end], np.arange(end.sum())) and (step[first] == 0).all()
            and (np.diff(step)[~end[:-1]] == 1).all()):
        raise ValueError("the log must hold whole episodes of users 0..n-1, sorted by user, then step "
                         "(as collect_propensity_log writes it)")
    if np.shape(log.next_obs) != np.shape(log.obs):
        raise ValueError(f"log.next_obs has shape {np.shape(log.next_obs)}: expected that of log.obs "
                         f"{np.shape(log.obs)}")
    return end


def _episodes(log: PropensityLog, end: np.ndarray, observation_space: gym.Space) -> Iterator[Any]:
    """One ``EpisodeBuffer`` per user, built lazily (Minari writes them one by one)."""
    from minari.data_collector.episode_buffer import EpisodeBuffer

    dtype, shape = observation_space.dtype, observation_space.shape
    cuts = np.flatnonzero(end)[:-1] + 1
    obs = np.asarray(log.obs).astype(dtype, copy=False).reshape(len(log), *shape)
    final = np.asarray(log.next_obs).astype(dtype, copy=False).reshape(len(log), *shape)[end]
    n = log.candidates.shape[1]
    step_columns = {
        "propensity": (np.asarray(log.propensity, np.float64), _MISSING_PROBABILITY),
        "probabilities": (np.asarray(log.probabilities, np.float64), np.full(n, _MISSING_PROBABILITY)),
        "candidates": (np.asarray(log.candidates, np.int64), np.full(n, _MISSING_ITEM, np.int64)),
        "click": (np.asarray(log.click, bool), False),
        "engagement": (np.asarray(log.engagement, np.float64), np.nan),
    }
    split = {k: np.split(v, cuts) for k, (v, _) in step_columns.items()}
    position, reward = np.split(np.asarray(log.position, np.int64), cuts), np.split(np.asarray(log.reward), cuts)
    terminated, truncated = (np.split(np.asarray(x, bool), cuts) for x in (log.terminated, log.truncated))
    for u, rows in enumerate(np.split(obs, cuts)):
        infos = {}
        for key, (_, pad) in step_columns.items():
            values = np.concatenate([split[key][u], np.asarray(pad, split[key][u].dtype)[None]])
            # Minari 0.5.4's arrow storage cannot read back 1-D array infos (an empty shape tag); as
            # lists they are stored as plain columns and come back as 1-D arrays.
            infos[key] = values.tolist() if values.ndim == 1 else values
        yield EpisodeBuffer(id=u, observations=np.concatenate([rows, final[u][None]]), actions=position[u],
                            rewards=reward[u], terminations=terminated[u],
                            truncations=truncated[u], infos=infos)


def to_minari(log: PropensityLog, dataset_id: str,
              env: str | EnvSpec | gym.Env | gym.vector.VectorEnv | None = None, *,
              data_path: str | Path | None = None, data_format: str = "arrow", author: str = "recsim_env",
              author_email: str | None = None, code_permalink: str | None = None,
              description: str | None = None) -> MinariDataset:
    """Write ``log`` as the Minari dataset ``dataset_id``, one episode per user, and return it.

    Args:
        log: a propensity log with final observations (``collect_propensity_log`` records them).
        dataset_id: Minari's ``(namespace/)name-v<version>``.
        env: the env the log was collected on (its id, spec, env or vector env); by default the log's
            ``env_id`` as registered. Its config must be the log's, so that the stored spec recreates it.
        data_path: the root of Minari datasets to write under (``<data_path>/<dataset_id>/data``);
            by default Minari's own (``MINARI_DATASETS_PATH``, else ``~/.minari/datasets``), where
            ``minari.load_dataset(dataset_id)`` finds it.
        data_format: a Minari storage in :data:`DATA_FORMATS`.
        author: Minari's dataset card field, as are the next three.
        author_email: left out of the card when ``None``.
        code_permalink: by default this exporter and the package version.
        description: by default a summary of the log and of what the infos hold.

    Raises:
        ImportError: Minari is not installed (the ``minari`` extra).
        ValueError: a malformed ``dataset_id``, a dataset of that id already there, an unknown
            ``data_format``, a log without final observations or whole episodes, or an env whose id,
            config, observation width or action count differs from the log's.
    """
    minari = _import_minari()
    from minari.dataset.minari_dataset import MinariDataset, parse_dataset_id
    from minari.dataset.minari_storage import MinariStorage
    from minari.namespace import create_namespace, list_local_namespaces
    from minari.storage.datasets_root_dir import get_dataset_path

    if data_format not in DATA_FORMATS:
        raise ValueError(f"data_format={data_format!r} is not supported: allowed {', '.join(DATA_FORMATS)}")
    try:
        namespace = parse_dataset_id(dataset_id)[0]
    except (ValueError, TypeError):
        raise ValueError(f"dataset_id={dataset_id!r} is malformed: allowed (namespace/)name-v<version>, "
                         "e.g. 'recsim/interest-drift-v0'") from None
    end = _check_log(log)
    meta = log.metadata
    env = env if env is not None else meta.get("env_id")
    if env is None:
        raise ValueError("the log names no env (metadata env_id): pass env=")
    spec = single_env_spec(env)
    if meta.get("env_id") is not None and spec.id != meta["env_id"]:
        raise ValueError(f"the log was collected on {meta['env_id']}, not on {spec.id}")
    made = gym.make(spec)
    try:
        config = _jsonable(getattr(made.unwrapped, "config", None))
        observation_space, action_space = made.observation_space, made.action_space
    finally:
        made.close()
    if meta.get("config") is not None and config != meta["config"]:
        raise ValueError(f"the log was collected with another config than {spec.id} made with {spec.kwargs}: "
                         "pass env= the env the log was collected on")
    if int(np.prod(observation_space.shape, dtype=np.int64)) != np.shape(log.obs)[1]:
        raise ValueError(f"log.obs has width {np.shape(log.obs)[1]}: {spec.id} observes {observation_space}")
    if not isinstance(action_space, gym.spaces.Discrete) or int(action_space.n) != log.candidates.shape[1]:
        raise ValueError(f"the log offers {log.candidates.shape[1]} candidates per step: {spec.id} acts in "
                         f"{action_space}")

    root = Path(data_path) if data_path is not None else get_dataset_path()
    path = root / dataset_id
    if path.exists():
        raise ValueError(f"a Minari dataset {dataset_id!r} already exists at {path}: pick another id or "
                         "version, or delete it")
    if data_path is None and namespace is not None and namespace not in list_local_namespaces():
        create_namespace(namespace)  # what minari.create_dataset_from_buffers does in its own root
    version = importlib.metadata.version("recsim_env")
    policy = meta.get("policy") or "unnamed behaviour policy"
    metadata = {
        "dataset_id": dataset_id, "minari_version": minari.__version__, "algorithm_name": policy,
        "author": {author}, **({"author_email": {author_email}} if author_email is not None else {}),
        "code_permalink": code_permalink or f"recsim_env {version}: recsim_env.logs.minari_export.to_minari",
        "description": description or (
            f"{log.n_users} users of {spec.id} under {policy} (seed {meta.get('seed')}), one episode per user; "
            "actions are candidate indices; infos hold per step the behaviour propensity of the action, the "
            "behaviour probability and item id of every candidate, the click and the engagement (the final "
            "observation's entry is padding: NaN, -1, no click)."),
        "requirements": [f"recsim_env=={version}"],
        "env_id": spec.id, "env_config": meta.get("config") or config, "behaviour_policy": policy,
        "seed": meta.get("seed"), "propensity_log": meta,
    }
    (path / "data").mkdir(parents=True)
    try:
        storage = MinariStorage.new(path / "data", observation_space=observation_space, action_space=action_space,
                                    env_spec=spec, data_format=data_format)
        storage.update_metadata(metadata)
        # Minari re-measures the whole dataset folder after every episode it writes (quadratic in the
        # episodes: 300 users took 8 s, three quarters of it there); measured once at the end instead.
        storage.get_size = lambda: 0.0
        try:
            storage.update_episodes(_episodes(log, end, observation_space))
        finally:
            del storage.get_size
        storage.update_metadata({"dataset_size": storage.get_size()})
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)  # no half-written dataset under that id
        raise
    return MinariDataset(storage)
