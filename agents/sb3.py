"""Stable-Baselines3's DQN as a baseline, behind the project's ``Recommender`` interface.

SB3 is the reference implementation of DQN the field knows, so a recommender-specific DQN should be
measured against it on the same users. SB3 sees what any generic agent sees: the flat observation
and ``Discrete(n_candidates)`` actions, one output per candidate *slot*, through its ``MlpPolicy``.
It trains on its own vector env (``DummyVecEnv`` over single envs, which it requires) and is
evaluated with :func:`agents.evaluation.evaluate` like every other agent: ``act`` hands the whole
batch of observations to ``model.predict``. This module imports SB3; the registry imports it lazily.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import DQN
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import configure
from tqdm import tqdm

from agents.base import Recommender
from recsim_env.config import Validated, bounded
from recsim_env.io import atomic_write, progress_enabled

#: Keys ``gym.make_vec`` adds to a spec's kwargs that a single env does not take.
_VECTOR_KEYS = ("num_envs", "vectorization_mode", "vector_kwargs", "wrappers", "max_episode_steps")


@dataclass(frozen=True)
class SB3DQNConfig(Validated):
    """SB3 DQN's hyperparameters (its names) and the training budget."""

    total_timesteps: int = bounded(200_000, ge=1, le=10**10, doc="env steps to train for")
    learning_rate: float = bounded(2.5e-4, gt=0.0, le=1.0, doc="Adam step size")
    buffer_size: int = bounded(100_000, ge=1, le=100_000_000, doc="replay capacity")
    learning_starts: int = bounded(5_000, ge=0, le=10**10, doc="env steps before learning")
    batch_size: int = bounded(64, ge=1, le=1_000_000, doc="transitions per gradient step")
    train_freq: int = bounded(4, ge=1, le=100_000, doc="env steps between gradient rounds")
    gradient_steps: int = bounded(1, ge=1, le=100_000, doc="gradient steps per round")
    target_update_interval: int = bounded(1_000, ge=1, le=10**9, doc="env steps between target copies")
    exploration_fraction: float = bounded(0.25, gt=0.0, le=1.0, doc="share of training over which epsilon decays")
    exploration_final_eps: float = bounded(0.02, ge=0.0, le=1.0, doc="epsilon after the decay")
    gamma: float = bounded(0.97, ge=0.0, le=1.0, doc="discount")
    hidden: int = bounded(256, ge=1, le=4096, doc="width of the two hidden layers of the Q-network")
    n_envs: int = bounded(1, ge=1, le=1024, doc="env copies in SB3's DummyVecEnv")
    seed: int = bounded(0, ge=0, le=2**32 - 1, doc="seed of the model and the training envs")
    torch_threads: int = bounded(1, ge=0, le=256, doc="torch intra-op threads while training (0 = leave as is)")


@dataclass
class SB3TrainResult:
    """Wall time and throughput of one ``SB3DQN.train`` call, and its training episodes' returns."""

    steps: int
    wall_time: float
    steps_per_second: float
    episode_returns: np.ndarray


def single_env_factory(env: gym.Env | gym.vector.VectorEnv) -> Callable[[], gym.Env]:
    """A function making single-user copies of ``env`` (same id, overrides and time limit), from its spec."""
    spec = getattr(env, "spec", None)
    if spec is None:
        raise ValueError(f"{type(env).__name__} has no spec to copy; pass env_fn= to make the training envs")
    kwargs = {k: v for k, v in spec.kwargs.items() if k not in _VECTOR_KEYS}
    return lambda: gym.make(spec.id, max_episode_steps=spec.max_episode_steps, **kwargs)


class ProgressAndReturns(BaseCallback):
    """A tqdm bar over the env steps, and the returns of the training episodes (from SB3's ``Monitor``)."""

    def __init__(self, total: int, show: bool):
        super().__init__()
        self.returns: list[float] = []
        self.bar = tqdm(total=total, unit="step", desc="sb3_dqn", leave=False, disable=not show)

    def _on_step(self) -> bool:
        self.bar.update(self.training_env.num_envs)
        for info in self.locals.get("infos", []):
            if "episode" in info:
                self.returns.append(float(info["episode"]["r"]))
        return True

    def _on_training_end(self) -> None:
        self.bar.close()


class SB3DQN(Recommender):
    """``stable_baselines3.DQN("MlpPolicy")`` on the flat observation; ``act`` = ``model.predict`` on the batch.

    Args:
        env: The env to act in (single or vector); it fixes the spaces, and its spec makes the
            training envs unless ``env_fn`` is given.
        env_fn: Makes one single-user training env.
        config: An :class:`SB3DQNConfig`; keyword overrides replace its fields.
    """

    name = "sb3_dqn"

    def __init__(self, env: gym.Env | gym.vector.VectorEnv, env_fn: Callable[[], gym.Env] | None = None,
                 config: SB3DQNConfig | None = None, **overrides: Any):
        super().__init__(env)
        if not isinstance(self.action_space, gym.spaces.Discrete):
            raise TypeError(f"SB3's DQN takes a Discrete action, got {self.action_space}")
        if not isinstance(self.observation_space, gym.spaces.Box) or len(self.observation_space.shape) != 1:
            raise TypeError(f"the SB3 adapter needs a flat 1-D Box observation, got {self.observation_space}")
        self.config = dataclasses.replace(config or SB3DQNConfig(), **overrides)
        self.env_fn = env_fn or single_env_factory(env)
        self.model = self._build()

    def _build(self) -> DQN:
        cfg = self.config
        env_seed = int(np.random.SeedSequence([cfg.seed, 3]).generate_state(1)[0]) % (2**31 - cfg.n_envs)
        train_env = make_vec_env(self.env_fn, n_envs=cfg.n_envs, seed=env_seed)
        return DQN("MlpPolicy", train_env, learning_rate=cfg.learning_rate, buffer_size=cfg.buffer_size,
                   learning_starts=cfg.learning_starts, batch_size=cfg.batch_size, train_freq=cfg.train_freq,
                   gradient_steps=cfg.gradient_steps, target_update_interval=cfg.target_update_interval,
                   exploration_fraction=cfg.exploration_fraction, exploration_final_eps=cfg.exploration_final_eps,
                   gamma=cfg.gamma, policy_kwargs={"net_arch": [cfg.hidden, cfg.hidden]}, seed=cfg.seed,
                   device="cpu", verbose=0)

    def train(self, out_dir: str | Path | None = None, progress: bool | None = None) -> SB3TrainResult:
        """``model.learn`` for ``total_timesteps``; CSV and TensorBoard logs go to ``out_dir`` if given."""
        if out_dir is not None:
            self.model.set_logger(configure(str(out_dir), ["csv", "tensorboard"]))
        callback = ProgressAndReturns(self.config.total_timesteps, progress_enabled(progress))
        threads = torch.get_num_threads()
        if self.config.torch_threads:  # small networks: more threads mostly add contention on a shared CPU
            torch.set_num_threads(self.config.torch_threads)
        start = time.perf_counter()
        try:
            self.model.learn(total_timesteps=self.config.total_timesteps, callback=callback)
        finally:
            torch.set_num_threads(threads)
        wall = time.perf_counter() - start
        steps = int(self.model.num_timesteps)
        return SB3TrainResult(steps, wall, steps / wall, np.array(callback.returns))

    def act(self, obs: np.ndarray, info: dict[str, Any] | None = None) -> np.ndarray:
        actions, _ = self.model.predict(np.atleast_2d(obs), deterministic=True)
        return np.asarray(actions, np.int64).reshape(-1)

    def scores(self, obs: np.ndarray, info: dict[str, Any] | None = None) -> np.ndarray:
        """The Q-network's value of each candidate slot."""
        with torch.no_grad():
            obs_tensor, _ = self.model.policy.obs_to_tensor(np.atleast_2d(obs))
            return self.model.q_net(obs_tensor).numpy()

    def save(self, path: str | Path) -> None:
        """SB3's zip, written atomically; the path gets a ``.zip`` suffix if it has none (SB3 would add one)."""
        atomic_write(_zip(path), lambda tmp: self.model.save(tmp))

    def load(self, path: str | Path) -> None:
        """Load a zip written by :meth:`save`; a corrupt file or other spaces raise ``ValueError`` naming the file."""
        path = _zip(path)
        if not path.exists():
            raise FileNotFoundError(path)
        try:
            model = DQN.load(path, device="cpu")
        except Exception as err:  # SB3 raises several types for a truncated or foreign zip
            raise ValueError(f"{path} is not a readable SB3 DQN model ({type(err).__name__}: {err})") from err
        if model.observation_space != self.observation_space or model.action_space != self.action_space:
            raise ValueError(f"{path} was trained on {model.observation_space} / {model.action_space}; "
                             f"this env has {self.observation_space} / {self.action_space}")
        self.model = model


def _zip(path: str | Path) -> Path:
    path = Path(path)
    return path if path.suffix == ".zip" else path.with_name(path.name + ".zip")
