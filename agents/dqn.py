"""DQN for recommendation: a Q-value per (user, candidate) pair, trained on many users at once.

The algorithm is DQN (Mnih et al. 2015) with the usual repairs: a target network, double-DQN targets
(the online network picks the next item, the target network values it), n-step returns, Huber loss,
gradient clipping and a linearly decaying epsilon. What is particular to recommendation:

* The network scores (user state, candidate) pairs (:class:`~agents.q_networks.PairNetwork`), so
  it works with candidates drawn anew each step and catalogues of any size. The bootstrap target
  maximises over the *next* step's candidates, which are in the next observation.
* It trains on the native vector env, hundreds of users per forward pass; the step into a NEXT_STEP
  autoreset is never stored, terminal transitions do not bootstrap and time-limit truncations do.
* ``dqn_myopic`` is the same agent with discount 0: same inputs, same network, same budget, so the
  gap between the two is what planning for the long term earns.

>>> import gymnasium as gym, recsim_env
>>> env = gym.make_vec("recsim_env/InterestDrift-v0", num_envs=256, vectorization_mode="vector_entry_point")
>>> result = train(env, DQNConfig(total_steps=2_000_000), "runs/dqn")  # doctest: +SKIP
>>> result.agent.act(*env.reset(seed=1))  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

from agents.base import Recommender
from agents.q_networks import ENCODERS, PairNetwork, observation_layout, soft_update
from recsim_env.config import Validated, bounded
from recsim_env.io import atomic_write
from recsim_env.logs.steps import LoggedSteps
from recsim_env.observation import ObservationLayout

#: Bumped whenever the layout of saved weights or checkpoints changes.
FORMAT = "recsim_env.pair_q/1"


@dataclass(frozen=True)
class DQNConfig(Validated):
    """Hyperparameters of DQN and SlateQ, and of their training run (budgets count user-steps).

    ``session_discount`` matters with several sessions per episode (``CrossSessionDrift``): the days a
    user stays away are no steps, so with a per-step discount alone a session that ends early costs
    nothing but the chance the user does not return, and the discounted optimum cycles through short
    sessions although the horizon is counted in days. A factor below 1 on whatever follows a session
    end (0: each session valued on its own) makes keeping the user in the session pay again.
    """

    total_steps: int = bounded(2_000_000, ge=1, le=10**11, doc="user-steps to train for (each user of the env counts)")
    discount: float = bounded(0.98, ge=0.0, le=1.0, doc="gamma; 0 makes the agent myopic")
    n_step: int = bounded(5, ge=1, le=100, doc="rewards summed before bootstrapping")
    session_discount: float = bounded(1.0, ge=0.0, le=1.0, doc="extra discount where a session ends (see below)")
    learning_rate: float = bounded(5e-4, gt=0.0, le=1.0, doc="Adam step size")
    batch_size: int = bounded(512, ge=1, le=1_000_000, doc="transitions per gradient step")
    buffer_size: int = bounded(200_000, ge=1, le=100_000_000, doc="transitions the replay buffer keeps")
    learning_starts: int = bounded(20_000, ge=0, le=10**11, doc="user-steps collected before learning starts")
    train_every: int = bounded(1, ge=1, le=10_000, doc="vector steps between rounds of gradient steps")
    gradient_steps: int = bounded(1, ge=1, le=10_000, doc="gradient steps per round (with train_every: replay ratio)")
    target_update_interval: int = bounded(250, ge=1, le=10**9, doc="gradient steps between target-network updates")
    tau: float = bounded(1.0, gt=0.0, le=1.0, doc="target update rate (1 = copy)")
    max_grad_norm: float = bounded(10.0, gt=0.0, le=1e6, doc="gradient norm clip")
    reward_scale: float = bounded(0.1, gt=0.0, le=1e6, doc="reward multiplier for learning (Q in scaled units)")
    epsilon_start: float = bounded(1.0, ge=0.0, le=1.0, doc="exploration at the start")
    epsilon_end: float = bounded(0.02, ge=0.0, le=1.0, doc="exploration after the decay")
    epsilon_fraction: float = bounded(0.25, ge=0.0, le=1.0, doc="share of training over which epsilon decays")
    hidden: int = bounded(64, ge=1, le=4096, doc="width of the user embedding and the pair MLP")
    encoder: str = "mlp"
    double: bool = True
    seed: int = bounded(0, ge=0, le=2**32 - 1, doc="seed of the weights, exploration, sampling and env resets")
    torch_threads: int = bounded(1, ge=0, le=256, doc="torch intra-op threads while training (0 = leave as is)")
    log_every: int = bounded(100, ge=1, le=10**9, doc="vector steps between log rows")
    checkpoint_every: int = bounded(0, ge=0, le=10**11, doc="user-steps between checkpoints (0 = only at the end)")
    checkpoint_replay: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.encoder not in ENCODERS:
            raise ValueError(f"DQNConfig.encoder={self.encoder!r}: allowed {', '.join(map(repr, ENCODERS))}")
        if self.epsilon_end > self.epsilon_start:
            raise ValueError(f"DQNConfig.epsilon_end={self.epsilon_end} is out of range: allowed "
                             f"[0.0, epsilon_start={self.epsilon_start}]")


class PairQAgent(Recommender):
    """What DQN and SlateQ share: config, pair networks, target copies, optimizer, state and files.

    Subclasses build their networks in :meth:`_networks`, pick actions in :meth:`act` /
    :meth:`explore` and define the loss in :meth:`learn`.
    """

    name = "pair_q"

    def __init__(self, env: gym.Env | gym.vector.VectorEnv, layout: ObservationLayout | None = None,
                 config: DQNConfig | None = None, **overrides: Any):
        super().__init__(env)
        self.config = dataclasses.replace(config or DQNConfig(), **overrides)
        self._check_action_space(self.action_space)
        self.layout = observation_layout(env, layout)  # also refuses observations that are not a flat Box
        with torch.random.fork_rng(devices=[]):  # the weights come from the seed, the global RNG is untouched
            torch.manual_seed(self.config.seed)
            self.online = torch.nn.ModuleDict(self._networks())
            self.target = torch.nn.ModuleDict(self._networks())
        self.target.load_state_dict(self.online.state_dict())
        self.target.requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.online.parameters(), lr=self.config.learning_rate)
        self.gradient_steps = 0

    # -- what subclasses define ---------------------------------------------------------------------
    def _check_action_space(self, space: gym.Space) -> None:
        raise NotImplementedError

    def _networks(self) -> dict[str, torch.nn.Module]:
        raise NotImplementedError

    def explore(self, obs: np.ndarray, epsilon: float, rng: np.random.Generator) -> np.ndarray:
        """Epsilon-greedy actions for a batch; the uniform draws come from ``rng``."""
        raise NotImplementedError

    def learn(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One gradient step on a replay minibatch; returns the losses."""
        raise NotImplementedError

    @property
    def action_shape(self) -> tuple[int, ...]:
        return tuple(self.action_space.shape or ())

    # -- shared -------------------------------------------------------------------------------------
    @property
    def target_update_tau(self) -> float:
        """How far each scheduled target update moves the target network (1 copies)."""
        return self.config.tau

    def _step(self, loss: torch.Tensor) -> None:
        """Backward, clip, step, and update the target networks on schedule."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.online.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        self.gradient_steps += 1
        if self.gradient_steps % self.config.target_update_interval == 0:
            soft_update(self.target, self.online, self.target_update_tau)

    def logged_tensors(self, steps: LoggedSteps) -> tuple[torch.Tensor, torch.Tensor]:
        """The logged observations ``(S, D)`` and catalogue rows ``(n_items, item_dim)`` as tensors.

        Raises:
            ValueError: the steps were logged in an env whose observations or items this agent cannot read.
        """
        obs, items = np.asarray(steps.obs), np.asarray(steps.item_features)
        if obs.ndim != 2 or obs.shape[1] != self.layout.size:
            raise ValueError(f"steps.obs has shape {obs.shape}; {self.name} reads observations of size "
                             f"{self.layout.size}")
        if items.ndim != 2 or items.shape[1] != self.layout.item_dim:
            raise ValueError(f"steps.item_features has shape {items.shape}; {self.name} reads items of "
                             f"{self.layout.item_dim} features")
        return torch.as_tensor(obs, dtype=torch.float32), torch.as_tensor(items, dtype=torch.float32)

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:  # the Recommender hook
        return self.learn(batch)

    def state_dict(self) -> dict[str, Any]:
        """Everything learning needs to go on: weights, target weights, optimizer, counter."""
        return {"online": self.online.state_dict(), "target": self.target.state_dict(),
                "optimizer": self.optimizer.state_dict(), "gradient_steps": self.gradient_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.online.load_state_dict(state["online"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.gradient_steps = int(state["gradient_steps"])

    def describe(self) -> dict[str, Any]:
        """What a saved file must agree on with the agent that loads it."""
        return {"format": FORMAT, "algorithm": self.name, "layout": dataclasses.asdict(self.layout),
                "action_space": repr(self.action_space), "hidden": self.config.hidden,
                "encoder": self.config.encoder}

    def save(self, path: str | Path) -> None:
        """Write the online weights and what they were made for, atomically (``torch.save``)."""
        payload = {"meta": self.describe(), "online": self.online.state_dict()}
        atomic_write(path, lambda tmp: torch.save(payload, tmp))

    def load(self, path: str | Path) -> None:
        """Load weights written by :meth:`save` (or a training checkpoint); refuse any mismatch."""
        payload = read_checkpoint(path)
        check_meta(path, payload.get("meta"), self.describe())
        self.online.load_state_dict(payload["online"])
        self.target.load_state_dict(payload["online"])


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)``, with an error that names the file when it is unreadable."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise ValueError(f"{path} is not a readable checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(payload, dict) or "meta" not in payload:
        raise ValueError(f"{path} is not a checkpoint of this project: no 'meta' record")
    return payload


def check_meta(path: str | Path, saved: Any, expected: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming the file and every field that differs."""
    if not isinstance(saved, dict):
        raise ValueError(f"{path} has no valid 'meta' record")
    diffs = _differences(saved, expected)
    if diffs:
        raise ValueError(f"{path} does not match this agent: " + "; ".join(diffs))


def _differences(saved: dict[str, Any], expected: dict[str, Any], prefix: str = "") -> list[str]:
    """``"key: file has X, this agent has Y"`` for each differing key, nested dicts as ``outer.inner``."""
    diffs = []
    for key, value in expected.items():
        old = saved.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            diffs += _differences(old, value, f"{prefix}{key}.")
        elif old != value:
            diffs.append(f"{prefix}{key}: file has {old!r}, this agent has {value!r}")
    return diffs


class DQNAgent(PairQAgent):
    """Double DQN with n-step returns over (user, candidate) pairs; ``act`` is the argmax candidate.

    Args:
        env: A single or vector env with a flat ``Box`` observation laid out by
            :class:`~recsim_env.observation.ObservationLayout` and a ``Discrete`` action (a candidate).
        layout: The layout, when ``env.unwrapped.layout`` does not hold it.
        config: A :class:`DQNConfig`; keyword overrides replace its fields.
    """

    name = "dqn"

    def _check_action_space(self, space: gym.Space) -> None:
        if not isinstance(space, gym.spaces.Discrete):
            raise TypeError(f"{self.name} picks one candidate (a Discrete action), got {space}; "
                            "use 'slateq' for slates")

    def _networks(self) -> dict[str, torch.nn.Module]:
        return {"q": PairNetwork(self.layout, self.config.hidden, self.config.encoder)}

    def q_values(self, obs: torch.Tensor, target: bool = False) -> torch.Tensor:
        """``(B, N)`` Q-values of every candidate, from the online or the target network."""
        nets = self.target if target else self.online
        return nets["q"](obs)[0][..., 0]

    def scores(self, obs: np.ndarray, info: dict[str, Any] | None = None) -> np.ndarray:
        with torch.no_grad():
            return self.q_values(torch.as_tensor(np.atleast_2d(obs), dtype=torch.float32)).numpy()

    def catalogue_scores(self, steps: LoggedSteps) -> np.ndarray:
        """``(S, n_items)`` online Q-value of every catalogue item: the ranking ``act`` would use on it."""
        obs, items = self.logged_tensors(steps)
        with torch.no_grad():
            return self.online["q"].score_items(obs, items)[0][..., 0].numpy()

    def act(self, obs: np.ndarray, info: dict[str, Any] | None = None) -> np.ndarray:
        return self.scores(obs).argmax(axis=1)

    def explore(self, obs: np.ndarray, epsilon: float, rng: np.random.Generator) -> np.ndarray:
        greedy = self.act(obs)
        uniform = rng.random(len(greedy))
        random = rng.integers(0, self.layout.n_candidates, len(greedy))
        return np.where(uniform < epsilon, random, greedy)

    def td_target(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``R + discount * Q_target(s', argmax_a Q_online(s', a))`` over the next step's candidates."""
        reward = batch["reward"] * self.config.reward_scale
        discount = batch["discount"]
        if not bool((discount > 0).any()):  # myopic, or every transition terminal: nothing to bootstrap
            return reward
        with torch.no_grad():
            next_obs = batch["next_obs"]
            q_next = self.q_values(next_obs, target=True)
            if self.config.double:
                best = self.q_values(next_obs).argmax(dim=1, keepdim=True)
                value = q_next.gather(1, best)[:, 0]
            else:
                value = q_next.max(dim=1).values
        return reward + discount * value

    def learn(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        target = self.td_target(batch)
        q = self.q_values(batch["obs"]).gather(1, batch["action"][:, None])[:, 0]
        loss = F.smooth_l1_loss(q, target)
        self._step(loss)
        return {"td_loss": float(loss.detach()), "q_mean": float(q.detach().mean())}


class MyopicDQNAgent(DQNAgent):
    """The same DQN with discount 0: it learns the expected immediate reward and shows its argmax."""

    name = "dqn_myopic"

    def __init__(self, env: gym.Env | gym.vector.VectorEnv, layout: ObservationLayout | None = None,
                 config: DQNConfig | None = None, **overrides: Any):
        config = config or DQNConfig()
        if overrides.get("discount", 0.0) != 0.0:
            raise ValueError(f"dqn_myopic has discount 0 by definition, got discount={overrides['discount']}")
        super().__init__(env, layout, config, **{**overrides, "discount": 0.0})


def train(env: gym.vector.VectorEnv, config: DQNConfig | None = None, out_dir: str | Path | None = None,
          myopic: bool = False, progress: bool | None = None, resume: bool = True, **overrides: Any):
    """Train a DQN (or its myopic twin) on ``env`` and return a :class:`~agents.training.TrainResult`.

    Args:
        env: A vector env with NEXT_STEP autoreset (the native ``vector_entry_point`` one is fastest).
        config: Hyperparameters and budget; keyword ``overrides`` replace fields.
        out_dir: Where ``progress.csv``, TensorBoard events and ``checkpoint.pt`` go (``None``: nowhere).
        myopic: Train ``dqn_myopic`` (discount 0) instead.
        progress: Show a progress bar (``None``: only on a terminal).
        resume: Continue from ``out_dir/checkpoint.pt`` when it exists.
    """
    from agents.training import run

    cls = MyopicDQNAgent if myopic else DQNAgent
    agent = cls(env, config=config, **overrides)
    return run(agent, env, out_dir, progress=progress, resume=resume)
