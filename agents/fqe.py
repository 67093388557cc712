"""Fitted Q evaluation (FQE): the target policy's action values learnt from a propensity log alone.

FQE (Le, Voloshin & Yue 2019) repeats the regression

    Q_{k+1}(s_t, a_t) <- r_t + discount * (1 - terminated_t) * sum_a' pi(a' | s_{t+1}) Q_k(s_{t+1}, a')

over the logged transitions, where ``s_{t+1}`` is the next row of the same user and ``pi`` the target's
distribution over that row's candidates. It needs no propensities, only the target's probabilities at
the logged steps, and gives what the direct method and doubly robust estimators of ``agents.ope``
need: ``q`` ``(R, N)``, the value of every candidate at every logged step.

Two function classes share one entry point, :func:`fit_fqe`:

* ``"table"``, for logs of a ``Discrete`` observation (``TabularDrift-v0``: one column holding the
  state index): Q is a table over (state, item id), up to the largest of each the log holds, and each
  iteration is the exact least-squares fit, the mean target per (state, item) by ``np.bincount``. It
  converges to ``Q^pi`` of the empirical MDP the log defines, hence to the true ``Q^pi`` as the log
  grows. Pairs never logged keep the value 0. With discount 1 a rarely logged loop whose logged
  transitions never end has no finite value on the empirical MDP; ``iterations`` then caps the horizon
  and the result says it did not converge.
* ``"network"``, for flat ``Box`` observations laid out by an
  :class:`~recsim_env.observation.ObservationLayout`: the pair-Q network of DQN
  (:class:`~agents.q_networks.PairNetwork`) regressed by minibatch Adam on targets from a frozen copy,
  which is refreshed every ``steps_per_iteration`` gradient steps (one FQE iteration per copy). With
  ``episode_memory`` it also reads every earlier step of the episode
  (:class:`~agents.episode_memory.EpisodeMemory`), for the hidden state the observation's window of
  history forgets. :func:`fit_fqe_targets` fits several targets on one network, an output each.

Episode ends: a terminated row does not bootstrap. Any other row bootstraps from the next row of the
same user when there is one; a truncated row (or a user's last row) without one is treated as the
end, since the log holds nothing to bootstrap from. ``collect_propensity_log`` truncates only a
user's last step, so there a time limit counts as the end of the episode, as the on-policy return does.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from agents.episode_memory import EpisodeMemory, EpisodeSoFar
from agents.ope import _check_order
from agents.q_networks import PairNetwork
from recsim_env.config import Validated, bounded
from recsim_env.io import progress_enabled
from recsim_env.logs.propensity import PropensityLog
from recsim_env.observation import ObservationLayout

#: The function classes :func:`fit_fqe` offers (``"auto"`` picks from the observation).
MODELS = ("auto", "table", "network")


@dataclass(frozen=True)
class FQEConfig(Validated):
    """Iterations, discount and the network's training settings (the table ignores the latter)."""

    iterations: int = bounded(300, ge=0, le=1_000_000, doc="Bellman backups (0: Q stays at its start)")
    discount: float = bounded(1.0, ge=0.0, le=1.0, doc="discount of the value being estimated")
    tolerance: float = bounded(1e-9, ge=0.0, le=1e6,
                               doc="table: stop once no entry moves by more than this in an iteration")
    steps_per_iteration: int = bounded(100, ge=1, le=1_000_000, doc="network: gradient steps per target copy")
    batch_size: int = bounded(256, ge=1, le=1_000_000, doc="network: transitions per gradient step")
    learning_rate: float = bounded(1e-3, ge=0.0, le=1.0, doc="network: Adam step size (0: no learning)")
    hidden: int = bounded(64, ge=1, le=4096, doc="network: width of the user embedding and the pair MLP")
    reward_scale: float = bounded(0.1, gt=0.0, le=1e6, doc="network: reward multiplier while learning")
    max_grad_norm: float = bounded(10.0, gt=0.0, le=1e6, doc="network: gradient norm clip")
    seed: int = bounded(0, ge=0, le=2 ** 32 - 1, doc="network: seed of the weights and the minibatches")
    encoder: str = "mlp"
    #: Network: also encode the episode so far (``agents.episode_memory``), not only the observation.
    episode_memory: bool = False
    memory_dim: int = bounded(8, ge=1, le=1024, doc="network: width of the episode memory's item embedding")
    model: str = "auto"
    #: Show the network's progress bar (None: only on a terminal).
    progress: bool | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.encoder not in ("mlp", "gru"):
            raise ValueError(f"FQEConfig.encoder={self.encoder!r}: allowed 'mlp', 'gru'")
        if self.model not in MODELS:
            raise ValueError(f"FQEConfig.model={self.model!r}: allowed {', '.join(map(repr, MODELS))}")
        if not isinstance(self.episode_memory, (bool, np.bool_)):
            raise TypeError(f"FQEConfig.episode_memory must be a bool, got {self.episode_memory!r}")
        if self.progress is not None and not isinstance(self.progress, (bool, np.bool_)):
            raise TypeError(f"FQEConfig.progress must be a bool or None, got {self.progress!r}")


@dataclass(frozen=True)
class FittedQ:
    """What FQE learnt, evaluated on the logged steps.

    Attributes:
        q: ``(R, N)`` action value of every candidate at every logged step (``estimate_all``'s ``q``).
        v: ``(R,)`` the target's expectation of ``q`` at each step.
        value: mean ``V(s_0)`` over the logged episodes: the direct-method estimate.
        model: ``"table"`` or ``"network"``.
        iterations: Bellman backups done (the table may stop early at ``tolerance``).
        history: per iteration, the table's largest change or the network's mean squared TD error
            (in reward units).
        converged: the table's last change was within ``tolerance`` (``None`` for the network, which
            has no such test). With discount 1 a table may not converge: a rarely logged loop whose
            logged transitions never end has no finite value on the empirical MDP, and ``iterations``
            then acts as a horizon.
        table: the ``(largest logged state + 1, largest item id + 1)`` table, or ``None``; ``network``: the trained :class:`FQENetwork`, or ``None``.
        head: which of the network's outputs is this target's (targets fitted together share one network).
    """

    q: np.ndarray
    v: np.ndarray
    value: float
    model: str
    iterations: int
    history: np.ndarray
    converged: bool | None = None
    table: np.ndarray | None = None
    network: FQENetwork | None = None
    head: int = 0


def _checked_target(log: PropensityLog, target_probabilities: np.ndarray, name: str) -> np.ndarray:
    pi = np.asarray(target_probabilities, np.float64)
    if pi.shape != log.probabilities.shape:
        raise ValueError(f"{name} has shape {pi.shape}: expected {log.probabilities.shape} "
                         "(every candidate of every logged step)")
    if not np.isfinite(pi).all() or (pi < 0).any() or not np.allclose(pi.sum(axis=1), 1.0, atol=1e-9):
        raise ValueError(f"{name} must be a distribution over each step's candidates")
    return pi


class _Transitions:
    """The log's rows as transitions: where each one bootstraps from, and with which target weights."""

    def __init__(self, log: PropensityLog, pi: np.ndarray, discount: float):
        """``pi`` ``(R, N, targets)``: each target's checked probabilities, stacked."""
        if len(log) == 0:
            raise ValueError("the log is empty")
        if not np.isfinite(log.reward).all():
            raise ValueError("the log has non-finite rewards")
        self.start = _check_order(log)
        rows = np.arange(len(log))
        same_user = np.r_[~self.start[1:], False]  # the next row continues this user's episode
        self.bootstrap = same_user & ~np.asarray(log.terminated, bool)
        self.next = np.where(self.bootstrap, rows + 1, rows)  # rows that do not bootstrap point at themselves
        self.gain = discount * self.bootstrap  # discount * (1 - end) per row
        self.pi = pi
        self.reward = np.asarray(log.reward, np.float64)
        self.position = np.asarray(log.position, np.int64)
        self.rows = rows


def _fit_table(log: PropensityLog, t: _Transitions, head: int, config: FQEConfig) -> FittedQ:
    """Exact tabular FQE: each iteration sets every logged (state, item) to its mean target."""
    state = log.obs[:, 0].astype(np.int64)
    items = np.asarray(log.candidates, np.int64)
    n_states, n_items = int(state.max()) + 1, int(items.max()) + 1
    key = state * n_items + items[t.rows, t.position]
    count = np.bincount(key, minlength=n_states * n_items).astype(np.float64)
    seen = count > 0
    mean_reward = np.bincount(key, t.reward, minlength=count.size)[seen] / count[seen]
    next_cells = state[t.next, None] * n_items + items[t.next]  # (R, N) table cells of the next step
    pi_next = t.pi[t.next, :, head]
    table = np.zeros(n_states * n_items)
    history, done = [], 0
    for done in range(1, config.iterations + 1):
        v_next = (pi_next * table[next_cells]).sum(axis=1)
        backup = np.bincount(key, t.gain * v_next, minlength=count.size)[seen] / count[seen]
        change = float(np.abs(mean_reward + backup - table[seen]).max())
        table[seen] = mean_reward + backup
        history.append(change)
        if change <= config.tolerance:
            break
    table = table.reshape(n_states, n_items)
    q = table[state[:, None], items]
    converged = bool(history) and history[-1] <= config.tolerance
    return _result(q, t, head, "table", done, history, converged=converged, table=table)


class FQENetwork(torch.nn.Module):
    """The pair-Q network with one output per target, plus the episode memory when configured."""

    def __init__(self, layout: ObservationLayout, config: FQEConfig, n_targets: int, n_items: int):
        super().__init__()
        self.pairs = PairNetwork(layout, config.hidden, config.encoder, item_outputs=n_targets)
        self.memory = EpisodeMemory(n_items, config.memory_dim, config.hidden) if config.episode_memory else None
        self.reward_scale = config.reward_scale

    def forward(self, obs: torch.Tensor, episode: EpisodeSoFar | None, rows: torch.Tensor) -> torch.Tensor:
        """``(B, N, targets)`` scaled action values at the log's ``rows`` (``obs``: those rows' observations)."""
        offset = None if self.memory is None else self.memory(episode, rows)
        return self.pairs(obs, offset)[0]

    def action_values(self, log: PropensityLog, chunk: int = 4096) -> np.ndarray:
        """``(R, N, targets)`` action values at every row of ``log``, in reward units: the log fitted on,
        or another (say, the whole log when FQE was fitted on part of it)."""
        obs = torch.as_tensor(np.asarray(log.obs, np.float32))
        episode = EpisodeSoFar(log) if self.memory is not None else None
        with torch.no_grad():
            parts = [self(obs[i:i + chunk], episode, torch.arange(i, min(i + chunk, len(obs)))).numpy()
                     for i in range(0, len(obs), chunk)]
        return np.concatenate(parts).astype(np.float64) / self.reward_scale


def _fit_network(log: PropensityLog, t: _Transitions, config: FQEConfig, layout: ObservationLayout,
                 ) -> list[FittedQ]:
    """Network FQE: regress the pair-Q network on targets from a frozen copy, one copy per iteration.

    Every target has its own output on one shared network, each regressed on its own Bellman targets:
    what the log teaches about users does not depend on the target, and one fit costs about what one
    target's costs.
    """
    obs = torch.as_tensor(np.asarray(log.obs, np.float32))
    episode = EpisodeSoFar(log) if config.episode_memory else None
    n_targets = t.pi.shape[2]
    with torch.random.fork_rng(devices=[]):  # the weights come from the seed, the global RNG is untouched
        torch.manual_seed(config.seed)
        net = FQENetwork(layout, config, n_targets, episode.n_items if episode is not None else 0)
    frozen = copy.deepcopy(net).requires_grad_(False)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.learning_rate)
    generator = torch.Generator().manual_seed(config.seed)
    scale = config.reward_scale
    reward = torch.as_tensor(t.reward * scale, dtype=torch.float32)[:, None]
    gain = torch.as_tensor(t.gain, dtype=torch.float32)[:, None]
    pi_next = torch.as_tensor(t.pi[t.next], dtype=torch.float32)  # (R, N, targets)
    next_row = torch.as_tensor(t.next)
    position = torch.as_tensor(t.position)
    n, history = len(t.rows), []
    bar = tqdm(total=config.iterations * config.steps_per_iteration, desc="fqe", unit="step", leave=False,
               disable=not progress_enabled(config.progress))
    for _ in range(config.iterations):
        frozen.load_state_dict(net.state_dict())
        squared = 0.0
        for _ in range(config.steps_per_iteration):
            batch = torch.randint(n, (min(config.batch_size, n),), generator=generator)
            nxt = next_row[batch]
            with torch.no_grad():  # targets of the frozen copy, for the batch only: the cost is per step, not per row
                y = reward[batch] + gain[batch] * (pi_next[batch] * frozen(obs[nxt], episode, nxt)).sum(dim=1)
            q = net(obs[batch], episode, batch)[torch.arange(len(batch)), position[batch]]  # (B, targets)
            loss = torch.nn.functional.mse_loss(q, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), config.max_grad_norm)
            optimizer.step()
            squared += float(loss.detach())
        history.append(squared / config.steps_per_iteration / scale ** 2)
        bar.update(config.steps_per_iteration)
        bar.set_postfix(td_mse=f"{history[-1]:.3g}")
    bar.close()
    q = net.action_values(log)
    return [_result(q[:, :, h], t, h, "network", config.iterations, history, network=net) for h in range(n_targets)]


def _result(q: np.ndarray, t: _Transitions, head: int, model: str, iterations: int, history: list[float],
            converged: bool | None = None, table: np.ndarray | None = None,
            network: FQENetwork | None = None) -> FittedQ:
    v = (t.pi[:, :, head] * q).sum(axis=1)
    return FittedQ(q=q, v=v, value=float(v[t.start].mean()), model=model, iterations=iterations,
                   history=np.asarray(history, np.float64), converged=converged, table=table, network=network,
                   head=head)


def _is_state_index(obs: np.ndarray) -> bool:
    """One column of non-negative integers: a ``Discrete`` observation as the log stores it."""
    return obs.ndim == 2 and obs.shape[1] == 1 and bool(np.all((obs >= 0) & (obs == np.round(obs))))


def fit_fqe(log: PropensityLog, target_probabilities: np.ndarray, config: FQEConfig | None = None,
            layout: ObservationLayout | None = None) -> FittedQ:
    """Fit the target policy's action values on ``log`` by FQE; see the module docstring.

    Args:
        log: A propensity log (rows sorted by user then step, complete episodes).
        target_probabilities: ``(R, N)`` the target's distribution over each logged step's candidates
            (one-hot rows for a deterministic target).
        config: An :class:`FQEConfig`; ``model="auto"`` fits a table to a one-column integer observation
            and the network when a ``layout`` is given.
        layout: How the flat observation is laid out (``env.unwrapped.layout``); needed by the network.

    Raises:
        ValueError: an empty log, target probabilities of the wrong shape or not distributions, rows out
            of user-then-step order, a ``Box`` observation without a layout, or a layout that does not
            match the log's observations or candidates.
    """
    return fit_fqe_targets(log, {"target_probabilities": target_probabilities}, config, layout)["target_probabilities"]


def fit_fqe_targets(log: PropensityLog, targets: Mapping[str, np.ndarray], config: FQEConfig | None = None,
                    layout: ObservationLayout | None = None) -> dict[str, FittedQ]:
    """:func:`fit_fqe` for several targets at once: ``{name: (R, N) probabilities}`` -> ``{name: FittedQ}``.

    The network fits them together (one output each on a shared network, see ``_fit_network``); the
    table fits each on its own, as :func:`fit_fqe` would.
    """
    config = FQEConfig() if config is None else config
    if not targets:
        raise ValueError("no target policies to fit")
    names = list(targets)
    pi = np.stack([_checked_target(log, targets[k], k) for k in names], axis=2)
    t = _Transitions(log, pi, config.discount)
    obs = np.asarray(log.obs)
    model = config.model
    if model == "auto":
        model = "network" if layout is not None or not _is_state_index(obs) else "table"
    if model == "table":
        if not _is_state_index(obs):
            raise ValueError(f"the table needs a Discrete observation (one column of state indices), got obs of "
                             f"shape {obs.shape}; pass layout= to fit the network")
        return {k: _fit_table(log, t, h, config) for h, k in enumerate(names)}
    if layout is None:
        raise ValueError(f"the log's observations have shape {obs.shape} (a Box): pass layout= "
                         "(env.unwrapped.layout) so the network can read history and candidates")
    if obs.ndim != 2 or obs.shape[1] != layout.size:
        raise ValueError(f"the layout describes observations of size {layout.size}, the log's have shape {obs.shape}")
    if log.probabilities.shape[1] != layout.n_candidates:
        raise ValueError(f"the layout has {layout.n_candidates} candidates, the log {log.probabilities.shape[1]}")
    if not math.isfinite(float(np.abs(obs).max())):
        raise ValueError("the log has non-finite observations")
    return dict(zip(names, _fit_network(log, t, config, layout)))
