"""Stable-Baselines3's DQN as a baseline, behind the project's ``Recommender`` interface.

SB3 is the reference implementation of DQN the field knows, so a recommender-specific DQN should be
measured against it on the same users and the same amount of experience. SB3 sees what any generic
agent sees: the flat observation and ``Discrete(n_candidates)`` actions, one output per candidate
*slot*, through its ``MlpPolicy``. It cannot rank the catalogue (it has no notion of items), so
``catalogue_scores`` stays unimplemented.

SB3 steps single envs through ``DummyVecEnv``, one Python call per user, which starves it of data
at a fixed wall time. :class:`SB3VecEnv` hands it a Gymnasium vector env with SAME_STEP autoreset
instead (the batched simulator when it offers that mode), so one SB3 step moves ``n_envs`` users.
Budgets count user-steps, as the project's DQN does; at ``n_envs=256``, ``batch_size=512`` and one
gradient step per vector step the replay ratio is the DQN's (2). The agent is evaluated with
:func:`agents.evaluation.evaluate` like every other one: ``act`` hands the whole batch to
``model.predict``. This module imports SB3; the registry imports it lazily.

:class:`SB3PPO` is SB3's PPO through the same adapter: on the slate env its ``MultiDiscrete`` action
(one candidate index per slate position) is what SB3's PPO takes natively, so it is the generic
baseline beside SlateQ there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import VecEnv
from tqdm import tqdm

from agents.base import Recommender
from agents.episodes import EpisodeLog
from recsim_env.config import Validated, bounded
from recsim_env.io import atomic_write, progress_enabled

#: Keys ``gym.make_vec`` adds to a spec's kwargs that must not be passed on to a new ``make_vec``.
_VECTOR_KEYS = ("num_envs", "vectorization_mode", "vector_kwargs", "wrappers", "autoreset_mode")


@dataclass(frozen=True)
class SB3DQNConfig(Validated):
    """SB3 DQN's hyperparameters (its names) and the training budget, in user-steps.

    The defaults are the best of ``python -m benchmarks.sb3_sweep`` (500,000 user-steps, seeds 0
    and 1, 500 validation users each, not the benchmark's held-out users;
    ``results/sb3_sweep/results.md``): return 63.0 (59.8, 66.1), against 54.4 for the sweep's
    centre (target copy every 64,000 user-steps) and 23.6 for SB3's own defaults (lr 1e-4, gamma
    0.99, target every 10,000, exploration 0.1 to 0.05, 64 units) at the same replay ratio. The replay ratio is the project DQN's: 256 users,
    one gradient step of 512 transitions per vector step.
    """

    total_timesteps: int = bounded(1_000_000, ge=1, le=10**11, doc="user-steps to train for (all n_envs users count)")
    learning_rate: float = bounded(5e-4, gt=0.0, le=1.0, doc="Adam step size")
    buffer_size: int = bounded(200_000, ge=1, le=100_000_000, doc="replay capacity in transitions")
    learning_starts: int = bounded(20_000, ge=0, le=10**11, doc="user-steps of random actions before learning")
    batch_size: int = bounded(512, ge=1, le=1_000_000, doc="transitions per gradient step")
    train_freq: int = bounded(1, ge=1, le=100_000, doc="vector steps between gradient rounds")
    gradient_steps: int = bounded(1, ge=1, le=100_000, doc="gradient steps per round")
    target_update_interval: int = bounded(16_000, ge=1, le=10**11, doc="user-steps between target-network copies")
    exploration_fraction: float = bounded(0.25, gt=0.0, le=1.0, doc="share of training over which epsilon decays")
    exploration_final_eps: float = bounded(0.02, ge=0.0, le=1.0, doc="epsilon after the decay")
    gamma: float = bounded(0.97, ge=0.0, le=1.0, doc="discount")
    hidden: int = bounded(256, ge=1, le=4096, doc="width of the two hidden layers of the Q-network")
    n_envs: int = bounded(256, ge=1, le=100_000, doc="users stepped together in the training vector env")
    seed: int = bounded(0, ge=0, le=2**32 - 1, doc="seed of the weights, exploration, replay and training users")
    torch_threads: int = bounded(1, ge=0, le=256, doc="torch intra-op threads while training (0 = leave as is)")
    log_every: int = bounded(20, ge=1, le=10**9, doc="vector steps between log rows")

    @property
    def replay_ratio(self) -> float:
        """Transitions sampled per user-step collected (the project's DQN uses 2)."""
        return self.batch_size * self.gradient_steps / (self.train_freq * self.n_envs)


@dataclass(frozen=True)
class SB3PPOConfig(Validated):
    """SB3 PPO's hyperparameters (its names) and the training budget, in user-steps.

    A rollout is ``n_steps`` vector steps of ``n_envs`` users (4,096 user-steps by default), reused for
    ``n_epochs`` passes of ``batch_size`` minibatches. SB3's defaults otherwise, except ``gamma``
    (the project's DQN's 0.97), ``ent_coef`` 0.01 (a floor on exploration over the candidates) and
    the network width of SB3DQNConfig.
    """

    total_timesteps: int = bounded(1_000_000, ge=1, le=10**11, doc="user-steps to train for (all n_envs users count)")
    learning_rate: float = bounded(3e-4, gt=0.0, le=1.0, doc="Adam step size")
    n_steps: int = bounded(16, ge=1, le=100_000, doc="vector steps per rollout")
    batch_size: int = bounded(512, ge=2, le=1_000_000, doc="transitions per minibatch")
    n_epochs: int = bounded(4, ge=1, le=1000, doc="passes over each rollout")
    gamma: float = bounded(0.97, ge=0.0, le=1.0, doc="discount")
    gae_lambda: float = bounded(0.95, ge=0.0, le=1.0, doc="GAE's lambda")
    clip_range: float = bounded(0.2, gt=0.0, le=10.0, doc="PPO's ratio clip")
    ent_coef: float = bounded(0.01, ge=0.0, le=10.0, doc="entropy bonus")
    hidden: int = bounded(256, ge=1, le=4096, doc="width of the two hidden layers of policy and value networks")
    n_envs: int = bounded(256, ge=1, le=100_000, doc="users stepped together in the training vector env")
    seed: int = bounded(0, ge=0, le=2**32 - 1, doc="seed of the weights, sampling and training users")
    torch_threads: int = bounded(1, ge=0, le=256, doc="torch intra-op threads while training (0 = leave as is)")
    log_every: int = bounded(20, ge=1, le=10**9, doc="vector steps between log rows")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.batch_size > self.n_steps * self.n_envs:
            raise ValueError(f"SB3PPOConfig.batch_size={self.batch_size} exceeds a rollout of n_steps * n_envs = "
                             f"{self.n_steps * self.n_envs} transitions: allowed 2..{self.n_steps * self.n_envs}")


@dataclass
class SB3TrainResult:
    """What one ``SB3DQN.train`` call did.

    Attributes:
        steps: User-steps trained.
        wall_time: Seconds the call took.
        steps_per_second: Median over the log rows of user-steps per second (learning included).
        episode_returns: Returns of the training episodes, in the order they ended.
        curve_returns: The same in the order they began, without the episodes cut off by the end of
            training (see :mod:`agents.episodes`); for learning curves.
        log: One row every ``log_every`` vector steps: step, episodes, episodic_return, epsilon, sps, elapsed.
        env_seed: The seed the training users were drawn from; evaluate on others.
    """

    steps: int
    wall_time: float
    steps_per_second: float
    episode_returns: np.ndarray
    curve_returns: np.ndarray = field(default_factory=lambda: np.zeros(0))
    log: list[dict[str, float]] = field(default_factory=list)
    env_seed: int | None = None


class SB3VecEnv(VecEnv):
    """SB3's ``VecEnv`` over a Gymnasium vector env with SAME_STEP autoreset: many users per SB3 step.

    A user whose episode ends is reset within the same step, as SB3 expects: its slot of the returned
    observation is the new episode's first, and its info holds the episode's last observation
    (``terminal_observation``, which SB3 stores as the transition's next state, so the step into a
    reset is never a transition), ``TimeLimit.truncated`` (a time limit, so SB3 bootstraps) and
    ``episode`` (return, length, seconds; what SB3's ``Monitor`` would add). Infos of users whose
    episode goes on are empty: SB3 reads nothing else, and building a dict per user per step would
    cost more than the step. Every user is one slot, so per-env attributes and methods are those of
    the vector env as a whole.

    Args:
        venv: A vector env whose ``metadata["autoreset_mode"]`` is SAME_STEP.
    """

    def __init__(self, venv: gym.vector.VectorEnv):
        mode = venv.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if mode != AutoresetMode.SAME_STEP:
            raise ValueError(f"SB3VecEnv needs a vector env with SAME_STEP autoreset, got {mode}; "
                             "make it with vector_training_env() or autoreset_mode=AutoresetMode.SAME_STEP")
        self.venv = venv
        action_space = venv.single_action_space
        super().__init__(venv.num_envs, venv.single_observation_space,
                         gym.spaces.Discrete(action_space.n, start=action_space.start)
                         if isinstance(action_space, gym.spaces.Discrete) else action_space)
        n = venv.num_envs
        self._actions: np.ndarray | None = None
        self._return, self._length = np.zeros(n), np.zeros(n, np.int64)
        self._start = time.perf_counter()
        self.steps = 0
        self.episodes = EpisodeLog(n)
        self.episode_returns: list[float] = []
        self.episode_lengths: list[int] = []

    def reset(self) -> np.ndarray:
        """Reset every user; the seed set by :meth:`seed` is used once (users ``seed + i`` in sync envs)."""
        seed = self._seeds[0]
        obs, _ = self.venv.reset(seed=seed, options=self._options[0] or None)
        self._reset_seeds()
        self._reset_options()
        self.reset_infos = [{} for _ in range(self.num_envs)]
        self._return[:], self._length[:] = 0.0, 0
        self.episodes.restart(self.steps)
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        if self._actions is None:
            raise RuntimeError("step_wait() without step_async()")
        obs, reward, terminated, truncated, info = self.venv.step(self._actions)
        self._actions = None
        terminated, truncated = np.asarray(terminated, bool), np.asarray(truncated, bool)
        dones = terminated | truncated
        reward = np.asarray(reward, np.float32)
        self._return += reward
        self._length += 1
        self.steps += self.num_envs
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        ended = np.flatnonzero(dones)
        if ended.size:
            has_final = np.asarray(info.get("_final_obs", np.zeros(self.num_envs, bool)), bool)
            if not has_final[ended].all():
                raise RuntimeError("a user's episode ended without final_obs in info: the vector env does not "
                                   "autoreset in the same step")
            final_obs = info["final_obs"]
            elapsed = round(time.perf_counter() - self._start, 6)
            for i in ended:  # only the users whose episode ended: a handful per step
                infos[i] = {"terminal_observation": np.asarray(final_obs[i], np.float32),
                            "TimeLimit.truncated": bool(truncated[i] and not terminated[i]),
                            "episode": {"r": float(self._return[i]), "l": int(self._length[i]), "t": elapsed}}
            self.episode_returns.extend(self._return[ended].tolist())
            self.episode_lengths.extend(self._length[ended].tolist())
            self.episodes.record(dones, self._return, self.steps)
            self._return[ended], self._length[ended] = 0.0, 0
        return obs, reward, dones, infos

    def close(self) -> None:
        self.venv.close()

    def _indices(self, indices: Any) -> Sequence[int]:
        if indices is None:
            return range(self.num_envs)
        return [indices] if isinstance(indices, int) else list(indices)

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        """The vector env's attribute, once per requested user (they share one env object)."""
        value = getattr(self.venv, attr_name)
        return [value for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        """Set an attribute of the vector env; only all users at once, since they share it."""
        if indices is not None and len(self._indices(indices)) != self.num_envs:
            raise ValueError(f"the {self.num_envs} users share one vector env: set {attr_name!r} for all or none")
        setattr(self.venv, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any) -> list[Any]:
        """Call a method of the vector env once; its result is reported for each requested user."""
        result = getattr(self.venv, method_name)(*method_args, **method_kwargs)
        return [result for _ in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: Any = None) -> list[bool]:
        """Whether the vector env is that wrapper (users are not wrapped one by one)."""
        wrapped = isinstance(self.venv, wrapper_class)
        return [wrapped for _ in self._indices(indices)]


def vector_training_env(env: gym.Env | gym.vector.VectorEnv) -> Callable[[int], gym.vector.VectorEnv]:
    """A function making SAME_STEP vector copies of ``env`` (same id, overrides, time limit), from its spec.

    The env's own batched vector class is used when it takes ``autoreset_mode``; otherwise a
    ``SyncVectorEnv`` of single envs, which has the same API and is slower.
    """
    spec = getattr(env, "spec", None)
    if spec is None:
        raise ValueError(f"{type(env).__name__} has no spec to copy; pass vec_env_fn= to make the training envs")
    kwargs = {k: v for k, v in spec.kwargs.items() if k not in _VECTOR_KEYS}
    if supports_same_step(spec):
        return lambda n: gym.make_vec(spec.id, num_envs=n, vectorization_mode="vector_entry_point",
                                      autoreset_mode=AutoresetMode.SAME_STEP, **kwargs)
    return lambda n: gym.make_vec(spec.id, num_envs=n, vectorization_mode="sync",
                                  vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP}, **kwargs)


def supports_same_step(spec: gym.envs.registration.EnvSpec) -> bool:
    """Whether the spec's ``vector_entry_point`` takes ``autoreset_mode`` (and so can autoreset in the same step)."""
    entry = spec.vector_entry_point
    if entry is None:
        return False
    if isinstance(entry, str):
        entry = gym.envs.registration.load_env_creator(entry)
    try:
        return "autoreset_mode" in inspect.signature(entry).parameters
    except (TypeError, ValueError):
        return False


class _PrivateRNG:
    """SB3 draws from the global ``random``, NumPy and torch generators; this keeps its own copies.

    Inside :meth:`active` the globals hold SB3's streams (seeded from ``seed`` without reseeding the
    caller's), and on leaving both are put back: the run is a function of its seed and the caller's
    random state is untouched.
    """

    def __init__(self, seed: int):
        self.python = random.Random(seed).getstate()
        self.numpy = np.random.RandomState(np.random.SeedSequence([seed, 4]).generate_state(1)[0]).get_state()
        self.torch = torch.Generator().manual_seed(seed).get_state()

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        saved = random.getstate(), np.random.get_state(), torch.get_rng_state()
        random.setstate(self.python)
        np.random.set_state(self.numpy)
        torch.set_rng_state(self.torch)
        try:
            yield
        finally:
            self.python, self.numpy, self.torch = random.getstate(), np.random.get_state(), torch.get_rng_state()
            random.setstate(saved[0])
            np.random.set_state(saved[1])
            torch.set_rng_state(saved[2])


class ProgressAndReturns(BaseCallback):
    """A tqdm bar over the user-steps and a log row (return, epsilon, user-steps/s) every ``log_every`` steps."""

    def __init__(self, total: int, log_every: int, show: bool, desc: str = "sb3"):
        super().__init__()
        self.log_every = log_every
        self.rows: list[dict[str, float]] = []
        self._returns: list[float] = []
        self._episodes = 0
        self.bar = tqdm(total=total, unit="step", desc=desc, leave=False, disable=not show)

    def _on_training_start(self) -> None:
        self._start = self._t_log = time.perf_counter()
        self._steps_at_log = self.model.num_timesteps

    def _on_step(self) -> bool:
        self.bar.update(self.training_env.num_envs)
        for info in self.locals.get("infos", []):
            if info:
                self._returns.append(float(info["episode"]["r"]))
        if self.n_calls % self.log_every == 0:
            now = time.perf_counter()
            self._episodes += len(self._returns)
            row = {"step": float(self.num_timesteps), "episodes": float(self._episodes),
                   "episodic_return": float(np.mean(self._returns)) if self._returns else float("nan"),
                   "epsilon": float(getattr(self.model, "exploration_rate", float("nan"))),  # DQN's only
                   "sps": (self.num_timesteps - self._steps_at_log) / max(now - self._t_log, 1e-9),
                   "elapsed": now - self._start}
            self.rows.append(row)
            self.bar.set_postfix(ret=f"{row['episodic_return']:.1f}", refresh=False)
            self._returns, self._t_log, self._steps_at_log = [], now, self.num_timesteps
        return True

    def _on_training_end(self) -> None:
        self.bar.close()


class _SB3Agent(Recommender):
    """An SB3 algorithm on the flat observation, trained on the batched env through :class:`SB3VecEnv`;
    ``act`` = ``model.predict`` on the whole batch. Subclasses say which algorithm and how it is built."""

    algorithm: type[BaseAlgorithm]
    config_class: type

    def __init__(self, env: gym.Env | gym.vector.VectorEnv,
                 vec_env_fn: Callable[[int], gym.vector.VectorEnv] | None = None,
                 config: Any = None, **overrides: Any):
        super().__init__(env)
        self._check_action_space(self.action_space)
        if not isinstance(self.observation_space, gym.spaces.Box) or len(self.observation_space.shape) != 1:
            raise TypeError(f"the SB3 adapter needs a flat 1-D Box observation, got {self.observation_space}")
        self.config = dataclasses.replace(config or self.config_class(), **overrides)
        self.vec_env_fn = vec_env_fn or vector_training_env(env)
        self.env_seed = int(np.random.SeedSequence([self.config.seed, 3]).generate_state(1)[0]) % 2**31
        self._rng = _PrivateRNG(self.config.seed)
        train_env = SB3VecEnv(self.vec_env_fn(self.config.n_envs))
        train_env.seed(self.env_seed)
        train_env.action_space.seed(int(np.random.SeedSequence([self.config.seed, 5]).generate_state(1)[0]))
        with self._rng.active():  # seed=None: SB3 would reseed the global generators for good
            self.model = self._build(train_env)

    def _check_action_space(self, space: gym.Space) -> None:
        raise NotImplementedError

    def _build(self, train_env: SB3VecEnv) -> BaseAlgorithm:
        raise NotImplementedError

    def train(self, out_dir: str | Path | None = None, progress: bool | None = None) -> SB3TrainResult:
        """``model.learn`` for ``total_timesteps`` user-steps; SB3's CSV and TensorBoard logs go to ``out_dir``."""
        if not isinstance(self.model.get_env(), SB3VecEnv):
            raise RuntimeError(f"this model was loaded from a file and has no training env; build a new {type(self).__name__}")
        cfg = self.config
        if out_dir is not None:
            self.model.set_logger(configure(str(out_dir), ["csv", "tensorboard"]))
        callback = ProgressAndReturns(cfg.total_timesteps, cfg.log_every, progress_enabled(progress), self.name)
        threads = torch.get_num_threads()
        if cfg.torch_threads:  # small networks: more threads mostly add contention on a shared CPU
            torch.set_num_threads(cfg.torch_threads)
        train_env: SB3VecEnv = self.model.get_env()  # type: ignore[assignment]
        start = time.perf_counter()
        try:
            with self._rng.active():
                self.model.learn(total_timesteps=cfg.total_timesteps, callback=callback)
        finally:
            torch.set_num_threads(threads)
        wall = time.perf_counter() - start
        train_env.episodes.restart(train_env.steps)
        steps = int(self.model.num_timesteps)
        sps = [row["sps"] for row in callback.rows]
        return SB3TrainResult(steps, wall, float(np.median(sps)) if sps else steps / wall,
                              np.array(train_env.episode_returns), train_env.episodes.returns_in_start_order(),
                              callback.rows, self.env_seed)

    def act(self, obs: np.ndarray, info: dict[str, Any] | None = None) -> np.ndarray:
        actions, _ = self.model.predict(np.atleast_2d(obs), deterministic=True)
        return np.asarray(actions, np.int64).reshape(-1)

    def save(self, path: str | Path) -> None:
        """SB3's zip, written atomically; the path gets a ``.zip`` suffix if it has none (SB3 would add one)."""
        atomic_write(_zip(path), lambda tmp: self.model.save(tmp))

    def load(self, path: str | Path) -> None:
        """Load a zip written by :meth:`save`; a corrupt file or other spaces raise ``ValueError`` naming the file."""
        path = _zip(path)
        if not path.exists():
            raise FileNotFoundError(path)
        try:
            model = self.algorithm.load(path, device="cpu")
        except Exception as err:  # SB3 raises several types for a truncated or foreign zip
            raise ValueError(f"{path} is not a readable SB3 {self.algorithm.__name__} model "
                             f"({type(err).__name__}: {err})") from err
        if model.observation_space != self.observation_space or model.action_space != self.action_space:
            raise ValueError(f"{path} was trained on {model.observation_space} / {model.action_space}; "
                             f"this env has {self.observation_space} / {self.action_space}")
        self.model = model


class SB3DQN(_SB3Agent):
    """``stable_baselines3.DQN("MlpPolicy")``: one Q-value per candidate slot.

    SB3's epsilon-greedy draws one coin per vector step: with probability epsilon every user of the
    step acts at random. That is SB3's algorithm and is kept as it is.

    Args:
        env: The env to act in (single or vector); it fixes the spaces, and its spec makes the
            training envs unless ``vec_env_fn`` is given.
        vec_env_fn: Makes the training vector env (SAME_STEP autoreset) for a number of users.
        config: An :class:`SB3DQNConfig`; keyword overrides replace its fields.
    """

    name = "sb3_dqn"
    algorithm = DQN
    config_class = SB3DQNConfig

    def _check_action_space(self, space: gym.Space) -> None:
        if not isinstance(space, gym.spaces.Discrete):
            raise TypeError(f"SB3's DQN takes a Discrete action, got {space}")

    def _build(self, train_env: SB3VecEnv) -> DQN:
        cfg = self.config
        return DQN("MlpPolicy", train_env, learning_rate=cfg.learning_rate, buffer_size=cfg.buffer_size,
                   learning_starts=cfg.learning_starts, batch_size=cfg.batch_size, train_freq=cfg.train_freq,
                   gradient_steps=cfg.gradient_steps, target_update_interval=cfg.target_update_interval,
                   exploration_fraction=cfg.exploration_fraction, exploration_final_eps=cfg.exploration_final_eps,
                   gamma=cfg.gamma, policy_kwargs={"net_arch": [cfg.hidden, cfg.hidden]}, seed=None,
                   device="cpu", verbose=0)

    def scores(self, obs: np.ndarray, info: dict[str, Any] | None = None) -> np.ndarray:
        """The Q-network's value of each candidate slot."""
        with torch.no_grad():
            obs_tensor, _ = self.model.policy.obs_to_tensor(np.atleast_2d(obs))
            return self.model.q_net(obs_tensor).numpy()


class SB3PPO(_SB3Agent):
    """``stable_baselines3.PPO("MlpPolicy")`` on ``Discrete`` candidates or a ``MultiDiscrete`` slate.

    On a slate, SB3's policy draws each position's candidate independently (a repeated candidate is
    shown once, as the env does for any agent); ``act`` takes each position's most likely candidate.

    Args: as :class:`SB3DQN`, with an :class:`SB3PPOConfig`.
    """

    name = "sb3_ppo"
    algorithm = PPO
    config_class = SB3PPOConfig

    def _check_action_space(self, space: gym.Space) -> None:
        if not isinstance(space, (gym.spaces.Discrete, gym.spaces.MultiDiscrete)):
            raise TypeError(f"the SB3 PPO adapter takes a Discrete or MultiDiscrete action, got {space}")

    def _build(self, train_env: SB3VecEnv) -> PPO:
        cfg = self.config
        return PPO("MlpPolicy", train_env, learning_rate=cfg.learning_rate, n_steps=cfg.n_steps,
                   batch_size=cfg.batch_size, n_epochs=cfg.n_epochs, gamma=cfg.gamma, gae_lambda=cfg.gae_lambda,
                   clip_range=cfg.clip_range, ent_coef=cfg.ent_coef,
                   policy_kwargs={"net_arch": [cfg.hidden, cfg.hidden]}, seed=None, device="cpu", verbose=0)

    def act(self, obs: np.ndarray, info: dict[str, Any] | None = None) -> np.ndarray:
        actions, _ = self.model.predict(np.atleast_2d(obs), deterministic=True)
        actions = np.asarray(actions, np.int64)
        return actions.reshape(-1) if isinstance(self.action_space, gym.spaces.Discrete) else actions

    def scores(self, obs: np.ndarray, info: dict[str, Any] | None = None) -> np.ndarray:
        """The policy's logit of each candidate (on a slate: for the first position, the one shown on top)."""
        with torch.no_grad():
            obs_tensor, _ = self.model.policy.obs_to_tensor(np.atleast_2d(obs))
            distribution = self.model.policy.get_distribution(obs_tensor).distribution
            first = distribution[0] if isinstance(distribution, list) else distribution
            return first.logits.numpy()


def _zip(path: str | Path) -> Path:
    path = Path(path)
    return path if path.suffix == ".zip" else path.with_name(path.name + ".zip")
