"""Off-policy value estimates from a log with propensities (``recsim_env.logs.propensity``).

The per-decision importance-sampling estimate reweights each logged reward by the product of the
target-over-behaviour probability ratios of the actions up to and including its step: unbiased for
the target policy's value whenever the behaviour policy gives every target action a positive
probability, which the logged propensities make checkable.

:func:`estimate_all` adds the other standard estimators on the same footing: trajectory-wise IS and
its self-normalised version (WIS), weighted PDIS (WPDIS), the direct method (DM) from a model's
action values, per-decision doubly robust (DR, Jiang & Li 2016) and weighted DR (WDR, Thomas &
Brunskill 2016). Weights are computed once per logged step and laid out per episode, so every
estimator is a weighted sum over episodes: the estimate and each bootstrap resample (episodes drawn
with replacement, from a seeded generator) are the same computation with different multiplicities.
The self-normalised versions trade a bias that vanishes with more episodes for a lower variance;
clipping the weights (``max_weight``) does the same, and the result says whether it happened.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from recsim_env.config import Validated, bounded
from recsim_env.logs.propensity import PropensityLog


def _group_cumsum(values: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Cumulative sum of ``values`` restarting at every row where ``start`` is set (vectorised)."""
    total = np.cumsum(values)
    first = np.maximum.accumulate(np.where(start, np.arange(len(values)), 0))
    before = np.concatenate([[0.0], total[:-1]])
    return total - before[first]


def per_decision_importance_sampling(log: PropensityLog, target_probability: np.ndarray,
                                     discount: float = 1.0) -> np.ndarray:
    """Per-episode estimates ``(n_users,)`` of the target policy's value; their mean is the estimate.

    ``target_probability`` ``(R,)`` is the target policy's probability of each logged action at its
    logged step (0 or 1 for a deterministic target). The estimates are independent across users, so
    their standard error gives the estimate's interval.

    Raises:
        ValueError: shapes that do not match the log, rows not in user-then-step order, a logged
            propensity that is not positive, target probabilities outside [0, 1], or ``discount``
            outside [0, 1].
    """
    target = np.asarray(target_probability, np.float64)
    if target.shape != log.propensity.shape:
        raise ValueError(f"target_probability has shape {target.shape}: expected {log.propensity.shape}")
    if not 0.0 <= discount <= 1.0:
        raise ValueError(f"discount={discount!r} is out of range: allowed [0, 1]")
    if ((target < 0) | (target > 1) | ~np.isfinite(target)).any():
        raise ValueError("target_probability is out of range: allowed [0, 1]")
    if (log.propensity <= 0).any():
        raise ValueError("a logged propensity is not positive: the behaviour policy never takes that action")
    start = log.step == 0
    order_ok = np.all(np.diff(log.user) >= 0) and np.array_equal(start, np.r_[True, np.diff(log.user) > 0]) \
        if len(log) else True
    if not order_ok:
        raise ValueError("the log's rows must be sorted by user then step, each episode from step 0")
    ratio = target / log.propensity
    zero = ratio == 0.0
    log_ratio = _group_cumsum(np.log(np.where(zero, 1.0, ratio)), start)
    zeros_so_far = _group_cumsum(zero.astype(np.float64), start)
    weight = np.where(zeros_so_far > 0, 0.0, np.exp(log_ratio))
    contribution = weight * discount ** log.step.astype(np.float64) * log.reward
    return np.bincount(log.user, contribution, minlength=log.n_users)


#: The estimators :func:`estimate_all` computes, in the order it reports them.
ESTIMATORS = ("is", "wis", "pdis", "wpdis", "dm", "dr", "wdr")
_NEEDS_Q = frozenset({"dm", "dr", "wdr"})


@dataclass(frozen=True)
class EstimatorConfig(Validated):
    """Discount, bootstrap interval and weight clipping shared by every estimator."""

    discount: float = bounded(1.0, ge=0.0, le=1.0, doc="discount of the value being estimated")
    confidence: float = bounded(0.95, gt=0.0, lt=1.0, doc="coverage of the bootstrap interval")
    n_bootstrap: int = bounded(1000, ge=10, le=1_000_000, doc="bootstrap resamples of the episodes")
    seed: int = bounded(0, ge=0, lt=2 ** 63, doc="seed of the bootstrap's generator")
    #: Cap on every cumulative importance weight (None: no clipping); trades bias for variance.
    max_weight: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        w = self.max_weight
        if w is not None:
            if isinstance(w, bool) or not isinstance(w, (int, float, np.integer, np.floating)):
                raise TypeError(f"EstimatorConfig.max_weight must be a number or None, got {w!r}")
            if not (math.isfinite(w) and w > 0):
                raise ValueError(f"EstimatorConfig.max_weight={w!r} is out of range: allowed (0, inf) or None")
            object.__setattr__(self, "max_weight", float(w))


@dataclass(frozen=True)
class OffPolicyEstimate:
    """One estimator's value estimate with its percentile-bootstrap interval over episodes.

    ``effective_sample_size`` is ``(sum w)^2 / sum w^2`` of the (clipped) trajectory weights: how many
    on-policy episodes the reweighted log is worth. ``n_clipped`` counts logged steps whose cumulative
    weight hit ``max_weight``; ``clipped`` says whether any did (then the estimate may be biased).
    """

    estimator: str
    estimate: float
    low: float
    high: float
    confidence: float
    n_episodes: int
    effective_sample_size: float
    max_weight: float | None
    n_clipped: int
    clipped: bool


TargetPolicy = Callable[[PropensityLog], np.ndarray] | np.ndarray


def _check_order(log: PropensityLog) -> np.ndarray:
    """The episode-start mask, after checking rows are sorted by user then step from step 0."""
    start = log.step == 0
    if len(log) and not (np.all(np.diff(log.user) >= 0)
                         and np.array_equal(start, np.r_[True, np.diff(log.user) > 0])
                         and np.all(np.diff(log.step)[~start[1:]] == 1)):
        raise ValueError("the log's rows must be sorted by user then step, each episode from step 0 "
                         "without gaps")
    return start


def _target_probabilities(log: PropensityLog, target: TargetPolicy) -> np.ndarray:
    """The target's ``(R, N)`` distribution over each logged step's candidates, validated."""
    probabilities = np.asarray(target(log) if callable(target) else target, np.float64)
    if probabilities.shape != log.probabilities.shape:
        raise ValueError(f"target probabilities have shape {probabilities.shape}: expected "
                         f"{log.probabilities.shape} (every candidate of every logged step)")
    if not np.isfinite(probabilities).all() or (probabilities < 0).any() \
            or not np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-9):
        raise ValueError("target probabilities must be a distribution over each step's candidates")
    return probabilities


def _weigh(counts: np.ndarray, per_episode: np.ndarray) -> np.ndarray:
    """``counts @ per_episode`` by einsum's own loops: a multithreaded BLAS call is many times slower
    for these small products when cores are shared, and the result is the same."""
    return np.einsum("bn,n...->b...", counts, per_episode)


class _Episodes:
    """Per-episode ``(n, H)`` matrices of the log, weights carried past each episode's end.

    Every estimator is then a function of episode multiplicities ``c`` ``(B, n)``: ones for the
    estimate itself, multinomial counts for a bootstrap resample, so one code path serves both.
    """

    def __init__(self, log: PropensityLog, pi: np.ndarray, q: np.ndarray | None, v: np.ndarray | None,
                 config: EstimatorConfig):
        if (log.propensity <= 0).any():
            raise ValueError("a logged propensity is not positive: the behaviour policy never takes that action")
        start = _check_order(log)
        rows = np.arange(len(log))
        ratio = pi[rows, log.position] / log.propensity
        zero = ratio == 0.0
        log_weight = _group_cumsum(np.log(np.where(zero, 1.0, ratio)), start)
        weight = np.where(_group_cumsum(zero.astype(np.float64), start) > 0, 0.0, np.exp(log_weight))
        self.n_clipped = 0
        if config.max_weight is not None:
            self.n_clipped = int(np.count_nonzero(weight > config.max_weight))
            weight = np.minimum(weight, config.max_weight)
        n, h = log.n_users, int(log.step.max()) + 1 if len(log) else 1
        self.n = n
        alive = np.zeros((n, h), bool)
        alive[log.user, log.step] = True
        length = alive.sum(axis=1)
        if (length == 0).any():
            raise ValueError(f"{np.count_nonzero(length == 0)} users have no logged step")

        def dense(values: np.ndarray) -> np.ndarray:
            out = np.zeros((n, h))
            out[log.user, log.step] = values
            return out

        w = dense(weight)
        self.final_weight = w[np.arange(n), length - 1]
        self.w = np.where(alive, w, self.final_weight[:, None])  # an ended episode keeps its last weight
        self.w_prev = np.concatenate([np.ones((n, 1)), self.w[:, :-1]], axis=1)
        self.discount = config.discount ** np.arange(h, dtype=np.float64)
        self.reward = dense(log.reward)
        self.returns = self.reward @ self.discount
        # What the estimators multiply by the episode multiplicities, computed once for all resamples.
        self.is_terms = self.final_weight * self.returns
        self.weighted_reward = self.w * self.reward
        self.pdis_terms = self.weighted_reward @ self.discount
        if q is not None:
            v = (pi * q).sum(axis=1) if v is None else v
            q_taken, v = dense(q[rows, log.position]), dense(v)
            self.v0 = v[:, 0]
            self.corrected = self.w * (self.reward - q_taken)
            self.baseline = self.w_prev * v
            self.dr_terms = (self.corrected + self.baseline) @ self.discount

    @staticmethod
    def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        """``num / den``, 0 where every resampled weight is 0 (that step says nothing)."""
        return np.divide(num, den, out=np.zeros_like(num), where=den > 0)

    def statistic(self, name: str, c: np.ndarray) -> np.ndarray:
        """The estimator ``name`` on episode multiplicities ``c`` ``(B, n)``: one value per row."""
        total = c.sum(axis=1)
        if name == "is":
            return _weigh(c, self.is_terms) / total
        if name == "wis":
            return self._ratio(_weigh(c, self.is_terms), _weigh(c, self.final_weight))
        if name == "pdis":
            return _weigh(c, self.pdis_terms) / total
        if name == "wpdis":
            return self._ratio(_weigh(c, self.weighted_reward), _weigh(c, self.w)) @ self.discount
        if name == "dm":
            return _weigh(c, self.v0) / total
        if name == "dr":
            return _weigh(c, self.dr_terms) / total
        if name == "wdr":
            corrected = self._ratio(_weigh(c, self.corrected), _weigh(c, self.w))
            return (corrected + self._ratio(_weigh(c, self.baseline), _weigh(c, self.w_prev))) @ self.discount
        raise ValueError(f"estimator={name!r} is unknown: allowed {', '.join(ESTIMATORS)}")


def estimate_all(log: PropensityLog, target: TargetPolicy, q: np.ndarray | None = None,
                 v: np.ndarray | None = None, config: EstimatorConfig | None = None,
                 estimators: Sequence[str] | None = None) -> dict[str, OffPolicyEstimate]:
    """Every requested estimator of the target policy's value, on the same bootstrap resamples.

    Args:
        target: the target's probability of every candidate at every logged step, ``(R, N)`` (one-hot
            rows for a deterministic target), or a function of the log returning it.
        q: ``(R, N)`` estimated action values of every candidate at every logged step under the target
            (needed by ``dm``, ``dr`` and ``wdr``); ``v``: ``(R,)`` estimated state values, by default
            the target's expectation of ``q``.
        estimators: names from :data:`ESTIMATORS`; by default all of them that ``q`` allows.

    Sharing the resamples makes the intervals of different estimators directly comparable.

    Raises:
        ValueError: an unknown estimator, ``dm``/``dr``/``wdr`` without ``q``, shapes that do not match
            the log, target rows that are not distributions, non-positive propensities, or rows not in
            user-then-step order.
    """
    config = EstimatorConfig() if config is None else config
    names = tuple(estimators) if estimators is not None else \
        tuple(e for e in ESTIMATORS if q is not None or e not in _NEEDS_Q)
    unknown = [e for e in names if e not in ESTIMATORS]
    if unknown:
        raise ValueError(f"estimator={unknown[0]!r} is unknown: allowed {', '.join(ESTIMATORS)}")
    if q is None and _NEEDS_Q.intersection(names):
        raise ValueError(f"{', '.join(sorted(_NEEDS_Q.intersection(names)))} need q (action values per logged step)")
    if len(log) == 0:
        raise ValueError("the log is empty")
    pi = _target_probabilities(log, target)
    if q is not None:
        q = np.asarray(q, np.float64)
        if q.shape != pi.shape:
            raise ValueError(f"q has shape {q.shape}: expected {pi.shape}")
        if not np.isfinite(q).all():
            raise ValueError("q has non-finite action values")
        if v is not None:
            v = np.asarray(v, np.float64)
            if v.shape != (len(log),):
                raise ValueError(f"v has shape {v.shape}: expected {(len(log),)}")
            if not np.isfinite(v).all():
                raise ValueError("v has non-finite state values")
    episodes = _Episodes(log, pi, q, v, config)
    n = episodes.n
    rng = np.random.default_rng(config.seed)
    point = {e: float(episodes.statistic(e, np.ones((1, n)))[0]) for e in names}
    resampled: dict[str, list[np.ndarray]] = {e: [] for e in names}
    chunk = max(1, min(config.n_bootstrap, 2 ** 22 // max(n, 1)))  # bounds the (B, n) count matrix
    for done in range(0, config.n_bootstrap, chunk):
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=min(chunk, config.n_bootstrap - done))
        counts = counts.astype(np.float64)
        for e in names:
            resampled[e].append(episodes.statistic(e, counts))
    alpha = (1.0 - config.confidence) / 2.0
    w = episodes.final_weight
    ess = float(w.sum() ** 2 / (w ** 2).sum()) if (w > 0).any() else 0.0
    out = {}
    for e in names:
        low, high = np.quantile(np.concatenate(resampled[e]), [alpha, 1.0 - alpha])
        out[e] = OffPolicyEstimate(estimator=e, estimate=point[e], low=float(low), high=float(high),
                                   confidence=config.confidence, n_episodes=n, effective_sample_size=ess,
                                   max_weight=config.max_weight, n_clipped=episodes.n_clipped,
                                   clipped=episodes.n_clipped > 0)
    return out


def off_policy_estimate(log: PropensityLog, estimator: str, target: TargetPolicy, q: np.ndarray | None = None,
                        v: np.ndarray | None = None, config: EstimatorConfig | None = None) -> OffPolicyEstimate:
    """One estimator's result; see :func:`estimate_all` for the arguments."""
    return estimate_all(log, target, q, v, config, estimators=(estimator,))[estimator]
