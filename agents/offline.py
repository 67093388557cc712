"""Offline RL from a propensity log alone: conservative Q-learning, BCQ's action filter, behaviour cloning.

A deployed recommender has logs, not a simulator to explore in. These learners read a
:class:`~recsim_env.logs.PropensityLog` (rows per (user, step); a user's next state is the next row)
and never step an env; the env is only asked for the observation layout and the action space. All
three use the pair-Q network of :mod:`agents.dqn` (one score per (user state, candidate)), so the
result acts, ranks candidates and the catalogue, saves and loads like a DQN:

* ``"cql"``: discrete CQL (Kumar et al. 2020), the double-DQN TD loss plus
  ``alpha * (logsumexp_a Q(s, a) - Q(s, a_logged))`` over the step's candidates. Plain off-policy
  Q-learning on a log overvalues the candidates the log never took (nothing corrects them); the
  penalty pushes those down and the logged ones up.
* ``"bcq"``: discrete BCQ (Fujimoto et al. 2019): a behaviour-cloning network over the candidates,
  and the Q-learning max (in the target and when acting) taken only over candidates whose cloned
  probability is at least ``tau`` times the most likely one's, so Q is never trusted where the
  log has no support. ``tau = 0`` is plain off-policy DQN, ``tau = 1`` acts as behaviour cloning's argmax.
* ``"bc"``: behaviour cloning, cross-entropy of the logged position over the candidates: the
  baseline that says how much of an offline learner's return is only imitation.

>>> import gymnasium as gym, recsim_env, agents
>>> from agents.behaviour import EpsilonGreedy
>>> from recsim_env.logs import collect_propensity_log
>>> env = gym.make_vec("recsim_env/InterestDrift-v0", num_envs=256, vectorization_mode="vector_entry_point")
>>> log = collect_propensity_log(env, EpsilonGreedy(agents.make("myopic", env), 0.3), n_users=2000, seed=1)
>>> result = train(env, log, OfflineConfig(kind="cql", updates=3000))  # doctest: +SKIP
>>> agents.evaluate(result.agent, env, seed=10_000).returns.mean()  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from agents.dqn import DQNAgent
from agents.q_networks import ENCODERS, PairNetwork
from recsim_env.config import Validated, bounded
from recsim_env.io import progress_enabled
from recsim_env.logs.propensity import PropensityLog
from recsim_env.logs.steps import LoggedSteps
from recsim_env.observation import ObservationLayout

KINDS = ("cql", "bcq", "bc")


@dataclass(frozen=True)
class OfflineConfig(Validated):
    """Hyperparameters of an offline learner and its budget (gradient updates on minibatches of log rows).

    ``learning_rate=0`` switches learning off while everything else runs (the control of the tests).
    The field names the pair-Q agent reads (``hidden``, ``encoder``, ``seed``, ``double``,
    ``reward_scale``, ``max_grad_norm``, ``target_update_interval``) mean what they mean in
    :class:`~agents.dqn.DQNConfig`.

    The defaults are the best of a small sweep on ``InterestDrift-v0`` logs of 1,000 and 2,000 users
    under epsilon-greedy myopic (epsilon 0.3 and 0.05): 5-step returns (1-step CQL stays near the
    log's return at these budgets), a small ``alpha`` (0.3 and above pull CQL back to the behaviour
    policy's return; 0.03 earns about what ``alpha=0`` does on the wide log, with less spread over
    seeds on the narrow one) and a loose BCQ filter (Fujimoto et al.'s 0.3 keeps little but the
    greedy candidate of an epsilon-greedy log, whose other candidates have relative probability
    ``epsilon / (N (1 - epsilon) + epsilon)``).
    """

    kind: str = "cql"
    alpha: float = bounded(0.03, ge=0.0, le=1e4, doc="CQL: weight of the conservative penalty (0 = off-policy DQN)")
    tau: float = bounded(0.05, ge=0.0, le=1.0, doc="BCQ: least cloned probability, relative to the best, to be maxed over")
    learning_rate: float = bounded(1e-3, ge=0.0, le=1.0, doc="Adam step size (0 = no learning)")
    batch_size: int = bounded(256, ge=1, le=1_000_000, doc="log rows per gradient update")
    updates: int = bounded(3000, ge=0, le=10**9, doc="gradient updates to train for")
    discount: float = bounded(0.98, ge=0.0, le=1.0, doc="gamma (per step); 0 values the immediate reward only")
    n_step: int = bounded(5, ge=1, le=100, doc="logged rewards summed before bootstrapping")
    session_discount: float = bounded(1.0, ge=0.0, le=1.0,
                                      doc="extra discount where a session ends (as DQNConfig.session_discount)")
    target_update_interval: int = bounded(250, ge=1, le=10**9, doc="updates between copies of the target network")
    double: bool = True
    reward_scale: float = bounded(0.1, gt=0.0, le=1e6, doc="reward multiplier for learning (Q in scaled units)")
    max_grad_norm: float = bounded(10.0, gt=0.0, le=1e6, doc="gradient norm clip")
    hidden: int = bounded(64, ge=1, le=4096, doc="width of the user embedding and the pair MLP")
    encoder: str = "mlp"
    seed: int = bounded(0, ge=0, le=2**32 - 1, doc="seed of the weights and of the minibatch draws")
    torch_threads: int = bounded(1, ge=0, le=256, doc="torch intra-op threads while training (0 = leave as is)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kind not in KINDS:
            raise ValueError(f"OfflineConfig.kind={self.kind!r}: allowed {', '.join(map(repr, KINDS))}")
        if self.encoder not in ENCODERS:
            raise ValueError(f"OfflineConfig.encoder={self.encoder!r}: allowed {', '.join(map(repr, ENCODERS))}")


@dataclass(frozen=True)
class Transitions:
    """A log as tensors, with each row's n-step return and bootstrap row computed once.

    ``next_row[i]`` is the row ``n_step`` steps later of the same user (``i`` itself where there is
    none) and ``discount[i]`` its factor ``gamma ** n_step`` (0 where the episode ends first: a
    termination does not bootstrap, and neither does the last logged step of a truncated episode,
    whose next observation the log does not hold).
    """

    obs: torch.Tensor
    action: torch.Tensor
    returns: torch.Tensor
    next_row: torch.Tensor
    discount: torch.Tensor

    def __len__(self) -> int:
        return len(self.action)

    def batch(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """The minibatch of the given rows, in the keys :meth:`agents.dqn.DQNAgent.td_target` reads."""
        return {"obs": self.obs[rows], "action": self.action[rows], "reward": self.returns[rows],
                "discount": self.discount[rows], "next_obs": self.obs[self.next_row[rows]]}


def transitions(log: PropensityLog, layout: ObservationLayout, discount: float, n_step: int = 1,
                session_discount: float = 1.0) -> Transitions:
    """Turn ``log`` into :class:`Transitions` for an agent with ``layout`` (vectorised over rows).

    ``session_discount`` multiplies whatever follows a step after which the user's session ended and
    the next of the same episode began (``log.session`` moves on), as DQN's replay does.

    Raises:
        ValueError: the log is empty, was recorded in an env with other observations or candidates,
            holds positions outside the candidates, or is not sorted by user then step.
    """
    obs = np.asarray(log.obs)
    if len(log) == 0:
        raise ValueError("the propensity log is empty: nothing to learn from")
    if obs.ndim != 2 or obs.shape[1] != layout.size:
        raise ValueError(f"log.obs has shape {obs.shape}; the agent reads observations of size {layout.size}")
    if np.shape(log.candidates)[1] != layout.n_candidates:
        raise ValueError(f"log.candidates has {np.shape(log.candidates)[1]} columns; the agent's env offers "
                         f"{layout.n_candidates} candidates")
    position = np.asarray(log.position, np.int64)
    if position.min() < 0 or position.max() >= layout.n_candidates:
        raise ValueError(f"log.position must lie in [0, {layout.n_candidates - 1}], got "
                         f"[{position.min()}, {position.max()}]")
    user, step = np.asarray(log.user, np.int64), np.asarray(log.step, np.int64)
    if len(log) > 1 and not np.all((np.diff(user) > 0) | ((np.diff(user) == 0) & (np.diff(step) > 0))):
        raise ValueError("the propensity log must be sorted by user, then step (as collect_propensity_log writes it)")
    rows = np.arange(len(log))
    successor = np.r_[(user[1:] == user[:-1]) & (step[1:] == step[:-1] + 1), False] & ~np.asarray(log.terminated, bool)
    following = np.where(successor, rows + 1, rows)
    session = np.asarray(log.session, np.int64)
    step_factor = discount * np.where(np.r_[session[1:] != session[:-1], False] & successor, session_discount, 1.0)
    reward = np.asarray(log.reward, np.float64)
    returns, factor, alive, at = np.zeros(len(log)), np.ones(len(log)), np.ones(len(log), bool), rows
    for _ in range(n_step):  # a loop over the n steps, each vectorised over every row
        returns += np.where(alive, factor * reward[at], 0.0)
        factor *= step_factor[at]
        alive &= successor[at]
        at = np.where(alive, following[at], at)
    return Transitions(obs=torch.as_tensor(obs, dtype=torch.float32), action=torch.as_tensor(position),
                       returns=torch.as_tensor(returns, dtype=torch.float32),
                       next_row=torch.as_tensor(np.where(alive, at, rows)),
                       discount=torch.as_tensor(np.where(alive, factor, 0.0), dtype=torch.float32))


@dataclass
class OfflineResult:
    """What :func:`train` did: the agent, the loss of every update (by name) and the seconds it took."""

    agent: OfflineAgent
    losses: dict[str, np.ndarray]
    wall_time: float


class OfflineAgent(DQNAgent):
    """A pair-Q recommender trained from a log only; ``config.kind`` picks CQL, BCQ or behaviour cloning.

    ``act`` is the argmax of :meth:`scores`: the Q-values (CQL), the Q-values with unsupported
    candidates ranked below every supported one (BCQ), or the cloned logits (BC).

    Args:
        env: The env the log came from (single or vector); only its layout and action space are read.
        layout: The layout, when ``env.unwrapped.layout`` does not hold it.
        config: An :class:`OfflineConfig`; keyword overrides replace its fields.
    """

    def __init__(self, env: gym.Env | gym.vector.VectorEnv, layout: ObservationLayout | None = None,
                 config: OfflineConfig | None = None, **overrides: Any):
        config = dataclasses.replace(config or OfflineConfig(), **overrides)
        if not isinstance(config, OfflineConfig):
            raise TypeError(f"config must be an OfflineConfig, got {type(config).__name__}")
        self.name = config.kind
        super().__init__(env, layout, config)

    def _networks(self) -> dict[str, torch.nn.Module]:
        nets: dict[str, torch.nn.Module] = {"q": PairNetwork(self.layout, self.config.hidden, self.config.encoder)}
        if self.config.kind == "bcq":  # built second, so its "q" starts as CQL's of the same seed
            nets["bc"] = PairNetwork(self.layout, self.config.hidden, self.config.encoder)
        return nets

    # -- acting -------------------------------------------------------------------------------------
    def _supported(self, logits: torch.Tensor) -> torch.Tensor:
        """BCQ's filter: cloned probability at least ``tau`` times the best one's (the best always passes)."""
        log_p = torch.log_softmax(logits, dim=-1)
        return log_p >= log_p.max(dim=-1, keepdim=True).values + float(np.log(max(self.config.tau, 1e-30)))

    @staticmethod
    def _rank_supported_first(q: torch.Tensor, supported: torch.Tensor) -> torch.Tensor:
        """Q where supported, and below every supported value elsewhere, keeping the order within each group."""
        span = q.max(dim=-1, keepdim=True).values - q.min(dim=-1, keepdim=True).values + 1.0
        return torch.where(supported, q, q - span)

    def _filtered(self, q: torch.Tensor, obs: torch.Tensor, nets: torch.nn.ModuleDict) -> torch.Tensor:
        return self._rank_supported_first(q, self._supported(nets["bc"](obs)[0][..., 0]))

    def scores(self, obs: np.ndarray, info: dict[str, Any] | None = None) -> np.ndarray:
        x = torch.as_tensor(np.atleast_2d(obs), dtype=torch.float32)
        with torch.no_grad():
            q = self.q_values(x)
            return (self._filtered(q, x, self.online) if self.config.kind == "bcq" else q).numpy()

    def catalogue_scores(self, steps: LoggedSteps) -> np.ndarray:
        """``(S, n_items)`` the ranking :meth:`scores` would give with the whole catalogue as candidates."""
        if self.config.kind != "bcq":
            return super().catalogue_scores(steps)
        obs, items = self.logged_tensors(steps)
        with torch.no_grad():
            q = self.online["q"].score_items(obs, items)[0][..., 0]
            supported = self._supported(self.online["bc"].score_items(obs, items)[0][..., 0])
            return self._rank_supported_first(q, supported).numpy()

    # -- learning -----------------------------------------------------------------------------------
    @property
    def target_update_tau(self) -> float:
        """The target network is copied every ``target_update_interval`` updates (``config.tau`` is BCQ's)."""
        return 1.0

    def td_target(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """DQN's target; for BCQ the next step's argmax runs over its supported candidates only."""
        if self.config.kind != "bcq":
            return super().td_target(batch)
        reward = batch["reward"] * self.config.reward_scale
        if not bool((batch["discount"] > 0).any()):
            return reward
        with torch.no_grad():
            next_obs = batch["next_obs"]
            q_next = self.q_values(next_obs, target=True)
            chooser = self.q_values(next_obs) if self.config.double else q_next
            best = self._filtered(chooser, next_obs, self.online).argmax(dim=1, keepdim=True)
            return reward + batch["discount"] * q_next.gather(1, best)[:, 0]

    def learn(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One gradient update on a minibatch of log rows; returns its losses."""
        kind, action = self.config.kind, batch["action"][:, None]
        q_all = self.q_values(batch["obs"])
        if kind == "bc":
            loss = F.cross_entropy(q_all, batch["action"])
            self._step(loss)
            return {"bc_loss": float(loss.detach())}
        q = q_all.gather(1, action)[:, 0]
        td = F.smooth_l1_loss(q, self.td_target(batch))
        out = {"td_loss": float(td.detach()), "q_mean": float(q.detach().mean())}
        loss = td
        if kind == "cql":
            penalty = (torch.logsumexp(q_all, dim=1) - q).mean()
            loss = loss + self.config.alpha * penalty
            out["cql_penalty"] = float(penalty.detach())
        else:
            bc = F.cross_entropy(self.online["bc"](batch["obs"])[0][..., 0], batch["action"])
            loss = loss + bc
            out["bc_loss"] = float(bc.detach())
        self._step(loss)
        return out

    def fit(self, log: PropensityLog, progress: bool | None = None) -> dict[str, np.ndarray]:
        """Take ``config.updates`` gradient updates on minibatches drawn from ``log``; the losses per update.

        Minibatch rows come from a ``torch.Generator`` seeded from ``config.seed`` and the updates
        already taken (a second call goes on with new draws), so the same agent, log and config give
        the same weights bit for bit (same machine and thread count).
        """
        cfg = self.config
        data = transitions(log, self.layout, cfg.discount, cfg.n_step, cfg.session_discount)
        seed = np.random.SeedSequence([cfg.seed, self.gradient_steps]).generate_state(1, np.uint64)[0]
        sampler = torch.Generator().manual_seed(int(seed) >> 1)
        threads = torch.get_num_threads()
        if cfg.torch_threads:
            torch.set_num_threads(cfg.torch_threads)
        losses: dict[str, list[float]] = {}
        bar = tqdm(total=cfg.updates, unit="update", desc=self.name, leave=False,
                   disable=not progress_enabled(progress))
        try:
            for _ in range(cfg.updates):
                rows = torch.randint(len(data), (cfg.batch_size,), generator=sampler)
                for key, value in self.learn(data.batch(rows)).items():
                    losses.setdefault(key, []).append(value)
                bar.update(1)
        finally:
            bar.close()
            torch.set_num_threads(threads)
        return {key: np.asarray(values) for key, values in losses.items()}


def train(env: gym.Env | gym.vector.VectorEnv, log: PropensityLog, config: OfflineConfig | None = None,
          progress: bool | None = None, **overrides: Any) -> OfflineResult:
    """Build an :class:`OfflineAgent` for ``env`` and train it on ``log`` alone (the env is never stepped).

    Args:
        env: The env the log was recorded in; it gives the observation layout and the action space.
        log: Complete episodes with propensities (:func:`~recsim_env.logs.collect_propensity_log`).
        config: Hyperparameters and budget; keyword ``overrides`` replace fields.
        progress: Show a progress bar (``None``: only on a terminal).
    """
    agent = OfflineAgent(env, config=config, **overrides)
    start = time.perf_counter()
    losses = agent.fit(log, progress=progress)
    return OfflineResult(agent=agent, losses=losses, wall_time=time.perf_counter() - start)
