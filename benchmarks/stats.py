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
