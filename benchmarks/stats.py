"""Honest summary statistics: interquartile mean and bootstrap confidence intervals, seeded."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


def iqm(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Interquartile mean: the mean of the middle 50% (robust to a few outlying runs)."""
    values = np.sort(np.asarray(values, dtype=np.float64), axis=axis)
    n = values.shape[axis]
    lo, hi = int(np.floor(0.25 * n)), int(np.ceil(0.75 * n))
    return np.take(values, np.arange(lo, max(hi, lo + 1)), axis=axis).mean(axis=axis)


@dataclass(frozen=True)
class Interval:
    """A point estimate with its confidence interval."""

    estimate: float
    low: float
    high: float

    def overlaps(self, other: Interval) -> bool:
        return self.low <= other.high and other.low <= self.high

    def __str__(self) -> str:
        return f"{self.estimate:.2f} [{self.low:.2f}, {self.high:.2f}]"


def bootstrap_interval(values: np.ndarray, statistic: Callable[..., np.ndarray] = np.mean,
                       confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> Interval:
    """Percentile bootstrap interval of ``statistic`` over the samples in ``values`` (1-D).

    ``statistic`` must accept ``axis=-1``; resampling is vectorised and seeded, so the same input
    gives the same interval.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size < 2:
        raise ValueError(f"need a 1-D array of at least 2 values, got shape {values.shape}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence={confidence} is out of range: allowed (0, 1)")
    rng = np.random.default_rng(seed)
    index = rng.integers(0, values.size, size=(n_resamples, values.size))
    stats = statistic(values[index], axis=-1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    return Interval(float(statistic(values, axis=-1)), float(low), float(high))


def _stratified_resample(scores: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_resamples, runs, tasks)``: the runs of each task resampled with replacement, tasks kept."""
    runs, tasks = scores.shape
    index = rng.integers(0, runs, size=(n_resamples, runs, tasks))
    return np.take_along_axis(np.broadcast_to(scores, (n_resamples, runs, tasks)), index, axis=1)


def _as_runs_by_tasks(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    scores = scores[:, None] if scores.ndim == 1 else scores
    if scores.ndim != 2 or scores.shape[0] < 1:
        raise ValueError(f"need scores of shape (runs,) or (runs, tasks), got {scores.shape}")
    return scores


def stratified_iqm(scores: np.ndarray, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> Interval:
    """IQM over all runs and tasks with a stratified-bootstrap percentile interval (rliable's method).

    ``scores`` is ``(runs, tasks)`` (or ``(runs,)`` for one task, e.g. one value per training seed);
    each bootstrap sample redraws the runs of every task separately, so tasks stay balanced.
    """
    scores = _as_runs_by_tasks(scores)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence={confidence} is out of range: allowed (0, 1)")
    samples = _stratified_resample(scores, n_resamples, np.random.default_rng(seed))
    stats = iqm(samples.reshape(n_resamples, -1), axis=-1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    return Interval(float(iqm(scores.reshape(-1))), float(low), float(high))


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y): the chance a run of X beats a run of Y on the same task (ties count half), averaged
    over tasks. ``x`` and ``y`` are ``(runs, tasks)`` or ``(runs,)``; run counts may differ."""
    x, y = _as_runs_by_tasks(x), _as_runs_by_tasks(y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must cover the same tasks, got {x.shape[1]} and {y.shape[1]}")
    return float(_pairwise_improvement(x[None], y[None])[0])


def _pairwise_improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``(S, n, T)`` and ``(S, m, T)`` -> ``(S,)`` probability of improvement per sample."""
    diff = x[:, :, None, :] - y[:, None, :, :]
    return ((diff > 0) + 0.5 * (diff == 0)).mean(axis=(1, 2, 3))


def improvement_interval(x: np.ndarray, y: np.ndarray, confidence: float = 0.95, n_resamples: int = 2000,
                         seed: int = 0) -> Interval:
    """Probability of improvement of X over Y with a stratified-bootstrap interval."""
    x, y = _as_runs_by_tasks(x), _as_runs_by_tasks(y)
    rng = np.random.default_rng(seed)
    samples = _pairwise_improvement(_stratified_resample(x, n_resamples, rng), _stratified_resample(y, n_resamples, rng))
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(samples, [alpha, 1.0 - alpha])
    return Interval(probability_of_improvement(x, y), float(low), float(high))


def seeds_and_users_samples(numerators: np.ndarray, denominators: np.ndarray | None = None,
                            n_resamples: int = 2000, seed: int = 0) -> tuple[float, np.ndarray]:
    """Bootstrap of the IQM over seeds of each seed's mean over its held-out users, resampling both.

    What varies in a benchmark result is the training seed and the users it is evaluated on, so each
    bootstrap sample redraws the seeds with replacement and, within every drawn seed, its users with
    replacement (a two-stage, hierarchical bootstrap). ``numerators`` is ``(seeds, users)``; a seed's
    mean is ``sum(numerators) / sum(denominators)`` over its drawn users (``denominators`` default to
    one per user), so per-user sums of a per-step metric give its step-weighted mean.

    The draws depend only on ``seed`` and the array shape: two agents evaluated on the same users of
    the same seeds get the same draws, so their samples are paired (their ratio or difference keeps
    the pairing).

    Returns:
        The point estimate (IQM of the seeds' means) and ``n_resamples`` bootstrap samples of it.
    """
    num = np.asarray(numerators, np.float64)
    den = np.ones_like(num) if denominators is None else np.asarray(denominators, np.float64)
    if num.ndim != 2 or num.shape != den.shape or min(num.shape) < 1:
        raise ValueError(f"need (seeds, users) numerators and denominators of one shape, got {num.shape}, {den.shape}")
    seeds, users = num.shape
    rng = np.random.default_rng(seed)
    seed_draws = rng.integers(0, seeds, size=(n_resamples, seeds))
    # Each seed's users redrawn independently (a seed's users are not another's), then the seeds redrawn.
    means = np.empty((n_resamples, seeds))
    for s in range(seeds):
        users_drawn = rng.integers(0, users, size=(n_resamples, users))
        means[:, s] = num[s][users_drawn].sum(axis=1) / np.maximum(den[s][users_drawn].sum(axis=1), 1e-300)
    samples = iqm(np.take_along_axis(means, seed_draws, axis=1), axis=1)
    point = float(iqm(num.sum(axis=1) / np.maximum(den.sum(axis=1), 1e-300)))
    return point, samples


def interval_of(point: float, samples: np.ndarray, confidence: float = 0.95) -> Interval:
    """The percentile interval of bootstrap ``samples`` around ``point``."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence={confidence} is out of range: allowed (0, 1)")
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(samples, [alpha, 1.0 - alpha])
    return Interval(float(point), float(low), float(high))


def seeds_and_users_interval(numerators: np.ndarray, denominators: np.ndarray | None = None,
                             confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> Interval:
    """:func:`seeds_and_users_samples` as a percentile interval."""
    return interval_of(*seeds_and_users_samples(numerators, denominators, n_resamples, seed), confidence)
