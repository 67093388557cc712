"""Off-policy estimates of a target slate policy's expected per-step reward from a factored slate log.

The setting is the slate bandit: each logged step is a context ``x``, the behaviour ``mu`` drew a slate
``s = (s_1..s_K)`` with positions independent (``mu(s | x) = prod_k mu_k(s_k | x)``,
``recsim_env.logs.slate_log``), and the estimand is ``E_x E_{s ~ pi(x)} [r(x, s)]`` over the logged
contexts. Targets are factored too: a deterministic slate per step, or per-position marginals
``pi_k`` with positions independent. With ``w_k = pi_k(s_k) / mu_k(s_k)`` and ``r_k`` the reward at
position ``k`` (the env has one click per step, so ``r = sum_k r_k``):

* ``ips``: ``r prod_k w_k``, the standard slate IPS, unbiased for any reward but with weights up to
  ``(N / epsilon)^K``: the high-variance reference;
* ``iips`` (Li et al. 2018): ``sum_k w_k r_k``, unbiased when each position's expected reward depends
  on the item there only (position-independent, additive rewards);
* ``rips`` (McInerney et al. 2020): ``sum_k (prod_{j<=k} w_j) r_k``, unbiased when position ``k``'s
  reward depends on the items at positions ``1..k`` only (a cascade);
* ``pi`` (Swaminathan et al. 2017): ``r (sum_k w_k - (K - 1))``, the pseudoinverse estimator for
  factored logging, unbiased when the slate's expected reward is a sum of per-(position, item) terms.

Under the env's conditional logit the items compete for one click, so only IPS is unbiased there;
the others trade that bias for far smaller weights. Each estimate is a mean over logged steps; its
interval is a percentile bootstrap that resamples users (a user's steps are dependent), from a seeded
generator. ``max_weight`` clips every weight an estimator multiplies a reward by (the pseudoinverse
weight, which can be negative, in absolute value) and the result says how many were clipped.

``EpsilonSlate`` makes a factored stochastic behaviour (or target) from any slate agent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from agents.base import Recommender
from agents.behaviour import EpsilonGreedyConfig, sample_rows
from agents.ope import EstimatorConfig, OffPolicyEstimate, _check_order, _weigh
from recsim_env.logs.slate_log import SlateLog

#: The estimators :func:`estimate_slate` computes, in the order it reports them.
SLATE_ESTIMATORS = ("ips", "iips", "rips", "pi")

SlateTarget = Callable[[SlateLog], np.ndarray] | np.ndarray | str


class EpsilonSlate(Recommender):
    """At every position, the wrapped agent's index with probability ``1 - epsilon``, else a uniform one.

    Positions are drawn independently, so an index may repeat (the env shows it once) and the
    probability of a slate is the product of the per-position probabilities
    (:meth:`position_probabilities`), exactly what a factored slate log records. ``epsilon=1`` is the
    uniform factored policy.
    """

    def __init__(self, agent: Recommender, epsilon: float = 0.1, seed: int = 0):
        self.config = EpsilonGreedyConfig(epsilon=epsilon, seed=seed)
        super().__init__(agent)
        space = self.action_space
        if not isinstance(space, gym.spaces.MultiDiscrete) or space.nvec.ndim != 1 \
                or len(set(space.nvec.tolist())) != 1:
            raise TypeError(f"{type(self).__name__} randomises a slate (MultiDiscrete([N] * K)), not {space}")
        self.slate_size, self.n_candidates = int(space.nvec.shape[0]), int(space.nvec[0])
        self.agent = agent
        self.rng = np.random.default_rng(self.config.seed)
        self.name = f"epsilon_slate({agent.name}, {self.config.epsilon:g})"
        self._last: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def _from_agent(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        k, n, eps = self.slate_size, self.n_candidates, self.config.epsilon
        greedy = np.asarray(self.agent.act(obs, info), np.int64).reshape(-1, k)
        probabilities = np.full((len(greedy), k, n), eps / n)
        np.put_along_axis(probabilities, greedy[:, :, None], eps / n + 1.0 - eps, axis=2)
        return probabilities

    def act(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        """Each position's index drawn from :meth:`position_probabilities` of this step, one uniform each."""
        probabilities = self._from_agent(obs, info)
        self._last = (np.array(obs, copy=True), np.array(info["candidates"], copy=True), probabilities)
        b, k, n = probabilities.shape
        return sample_rows(probabilities.reshape(b * k, n), self.rng).reshape(b, k)

    def position_probabilities(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        """``(B, K, N)`` probability of each candidate at each position: after ``act`` on the same
        observations, the very numbers it sampled from; otherwise from the agent's slate."""
        if self._last is not None:
            seen, candidates, probabilities = self._last
            if seen.shape == np.shape(obs) and np.array_equal(seen, obs) \
                    and np.array_equal(candidates, info["candidates"]):
                return probabilities
        return self._from_agent(obs, info)

    def scores(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        """The wrapped agent's ranking of the candidates."""
        return self.agent.scores(obs, info)


def target_marginals(log: SlateLog, target: SlateTarget) -> np.ndarray:
    """The target's ``(R, K, N)`` per-position distribution at every logged step, validated.

    ``target`` is a recorded target's name (``log.targets``), a deterministic slate per step
    ``(R, K)`` of candidate indices, per-position marginals ``(R, K, N)``, or a function of the log
    returning either.

    Raises:
        ValueError: an unknown name, a shape that does not match the log, indices outside the
            candidates, or rows that are not distributions.
    """
    if isinstance(target, str):
        if target not in log.targets:
            raise ValueError(f"target {target!r} is not recorded in the log: recorded are "
                             f"{', '.join(log.targets) or 'none'}")
        target = log.targets[target]
    values = np.asarray(target(log) if callable(target) else target)
    r, k, n = log.probabilities.shape
    if values.shape == (r, k):
        if not np.issubdtype(values.dtype, np.integer):
            raise ValueError(f"a deterministic target slate must hold integer candidate indices, got {values.dtype}")
        if values.size and (values.min() < 0 or values.max() >= n):
            raise ValueError(f"the target slate holds indices outside [0, {n})")
        out = np.zeros((r, k, n))
        np.put_along_axis(out, values[:, :, None], 1.0, axis=2)
        return out
    if values.shape != (r, k, n):
        raise ValueError(f"target has shape {values.shape}: expected a slate {(r, k)} or per-position "
                         f"probabilities {(r, k, n)}")
    values = values.astype(np.float64)
    if not np.isfinite(values).all() or (values < 0).any() or not np.allclose(values.sum(axis=2), 1.0, atol=1e-9):
        raise ValueError("target probabilities must be a distribution over the candidates at every position")
    return values


def position_ratios(log: SlateLog, marginals: np.ndarray) -> np.ndarray:
    """``(R, K)`` ratios ``pi_k(s_k) / mu_k(s_k)`` of the logged index at every position.

    Raises:
        ValueError: a logged propensity that is not positive.
    """
    if (log.propensity <= 0).any() or not np.isfinite(log.propensity).all():
        raise ValueError("a logged propensity is not positive: the behaviour never draws that index there")
    taken = np.take_along_axis(marginals, np.asarray(log.slate, np.int64)[:, :, None], axis=2)[:, :, 0]
    return taken / log.propensity


def _clip(weight: np.ndarray, max_weight: float | None) -> tuple[np.ndarray, int]:
    """Weights with ``|w|`` capped at ``max_weight`` (sign kept), and how many were capped."""
    if max_weight is None:
        return weight, 0
    over = np.abs(weight) > max_weight
    return np.where(over, np.sign(weight) * max_weight, weight), int(np.count_nonzero(over))


def slate_terms(estimator: str, ratio: np.ndarray, position_reward: np.ndarray, reward: np.ndarray,
                max_weight: float | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """One estimator's contribution per logged step ``(R,)``; the estimate is their mean.

    Args:
        ratio: ``(R, K)`` per-position ratios (:func:`position_ratios`).
        position_reward: ``(R, K)`` reward at each position; ``reward``: ``(R,)`` the slate's reward.
        max_weight: cap on ``|weight|`` of every weight that multiplies a reward (None: no clipping).

    Returns:
        The contributions, the row's weight ``(R,)`` for the effective sample size (the position-wise
        estimators: the mean of their per-position weights), and how many weights were clipped.

    Raises:
        ValueError: an unknown estimator.
    """
    k = ratio.shape[1]
    if estimator == "ips":
        weight, clipped = _clip(np.prod(ratio, axis=1), max_weight)
        return weight * reward, weight, clipped
    if estimator == "pi":
        weight, clipped = _clip(ratio.sum(axis=1) - (k - 1), max_weight)
        return weight * reward, weight, clipped
    if estimator == "iips":
        weights, clipped = _clip(ratio, max_weight)
    elif estimator == "rips":
        weights, clipped = _clip(np.cumprod(ratio, axis=1), max_weight)
    else:
        raise ValueError(f"estimator={estimator!r} is unknown: allowed {', '.join(SLATE_ESTIMATORS)}")
    return (weights * position_reward).sum(axis=1), weights.mean(axis=1), clipped


def estimate_slate(log: SlateLog, target: SlateTarget, config: EstimatorConfig | None = None,
                   estimators: Sequence[str] | None = None) -> dict[str, OffPolicyEstimate]:
    """Every requested slate estimator of the target's expected per-step reward, on shared resamples.

    ``config`` is the one-item estimators' (``agents.ope.EstimatorConfig``): its confidence,
    bootstrap resamples, seed and ``max_weight`` apply; its ``discount`` must be 1, since each step is
    valued on its own. ``n_episodes`` of each result counts users, the bootstrap's unit.

    Raises:
        ValueError: an unknown estimator, an empty log, a discount other than 1, rows not in
            user-then-step order, a target that does not match the log (:func:`target_marginals`),
            or non-positive propensities.
    """
    config = EstimatorConfig() if config is None else config
    if config.discount != 1.0:
        raise ValueError(f"EstimatorConfig.discount={config.discount!r} is out of range for slate estimates: "
                         "allowed 1 (each logged step is a context valued on its own)")
    names = tuple(SLATE_ESTIMATORS if estimators is None else estimators)
    unknown = [e for e in names if e not in SLATE_ESTIMATORS]
    if unknown:
        raise ValueError(f"estimator={unknown[0]!r} is unknown: allowed {', '.join(SLATE_ESTIMATORS)}")
    if len(log) == 0:
        raise ValueError("the log is empty")
    _check_order(log)
    ratio = position_ratios(log, target_marginals(log, target))
    n = log.n_users
    if log.user.max() >= n:
        raise ValueError(f"the log's user ids reach {int(log.user.max())}: its metadata says n_users={n}")
    steps = np.bincount(log.user, minlength=n).astype(np.float64)
    if (steps == 0).any():
        raise ValueError(f"{np.count_nonzero(steps == 0)} users have no logged step")
    position_reward, reward = log.position_reward, np.asarray(log.reward, np.float64)
    per_user, weights, clipped = {}, {}, {}
    for e in names:
        terms, weights[e], clipped[e] = slate_terms(e, ratio, position_reward, reward, config.max_weight)
        per_user[e] = np.bincount(log.user, terms, minlength=n)
    rng = np.random.default_rng(config.seed)
    resampled: dict[str, list[np.ndarray]] = {e: [] for e in names}
    chunk = max(1, min(config.n_bootstrap, 2 ** 22 // n))  # bounds the (B, n) count matrix
    for done in range(0, config.n_bootstrap, chunk):
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=min(chunk, config.n_bootstrap - done)).astype(float)
        total = _weigh(counts, steps)
        for e in names:
            resampled[e].append(_weigh(counts, per_user[e]) / total)
    alpha = (1.0 - config.confidence) / 2.0
    out = {}
    for e in names:
        low, high = np.quantile(np.concatenate(resampled[e]), [alpha, 1.0 - alpha])
        w = weights[e]
        ess = float(w.sum() ** 2 / (w ** 2).sum()) if (w != 0).any() else 0.0
        out[e] = OffPolicyEstimate(estimator=e, estimate=float(per_user[e].sum() / steps.sum()), low=float(low),
                                   high=float(high), confidence=config.confidence, n_episodes=n,
                                   effective_sample_size=ess, max_weight=config.max_weight,
                                   n_clipped=clipped[e], clipped=clipped[e] > 0)
    return out
