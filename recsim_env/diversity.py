"""What a recommender does to the catalogue and to its users: exposure concentration and interest homogeneity.

Feedback loops are known to narrow what is shown (a few items take most of the exposure) and to make
users alike (their interests drift toward what everybody is shown). Each is one number here, computed
from counts or from the simulator's true interests, so a retraining experiment can follow it round
after round:

* :func:`coverage`: the share of the catalogue shown at least once.
* :func:`gini`: the Gini coefficient of item exposure (0: every item shown equally; towards 1: one
  item takes it all), over the whole catalogue, so never-shown items count.
* :func:`entropy`: the Shannon entropy (nats) of a distribution, e.g. of users' favourite topics.
* :func:`interest_summary`: the entropy of the population's favourite topics, the mean entropy of each
  user's own interest profile, and the mean pairwise cosine similarity of users' interests.
"""

from __future__ import annotations

import numpy as np


def exposure_counts(shown: np.ndarray, n_items: int) -> np.ndarray:
    """How often each of the ``n_items`` items was shown: ``shown`` holds item ids, ``-1`` for an empty slot.

    Raises:
        ValueError: an id outside ``-1 .. n_items - 1``.
    """
    ids = np.asarray(shown, np.int64).ravel()
    if ids.size and (ids.min() < -1 or ids.max() >= n_items):
        raise ValueError(f"shown holds item ids outside -1..{n_items - 1}")
    return np.bincount(ids[ids >= 0], minlength=n_items)


def coverage(counts: np.ndarray) -> float:
    """Share of the items with a positive count."""
    counts = _counts(counts)
    return float(np.count_nonzero(counts) / counts.size)


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of ``counts`` (0 for equal counts; ``1 - 1/n`` when one item has everything).

    Raises:
        ValueError: negative counts, or all zero (no exposure to measure).
    """
    counts = np.sort(_counts(counts).astype(np.float64))
    total = counts.sum()
    if total == 0:
        raise ValueError("gini of all-zero counts is undefined: nothing was shown")
    n = counts.size
    rank = np.arange(1, n + 1)
    return float((2 * (rank * counts).sum() / (n * total)) - (n + 1) / n)


def entropy(weights: np.ndarray, axis: int = -1) -> np.ndarray | float:
    """Shannon entropy in nats of non-negative ``weights`` normalised along ``axis`` (0 log 0 = 0)."""
    w = np.asarray(weights, np.float64)
    if (w < 0).any() or not np.isfinite(w).all():
        raise ValueError("entropy needs finite, non-negative weights")
    total = w.sum(axis=axis, keepdims=True)
    if (total == 0).any():
        raise ValueError("entropy of an all-zero distribution is undefined")
    p = w / total
    terms = np.where(p > 0, -p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    out = terms.sum(axis=axis)
    return float(out) if np.ndim(out) == 0 else out


def interest_summary(interest: np.ndarray) -> dict[str, float]:
    """Homogeneity of users' interests ``(U, T)`` (one row per user, any real values).

    ``favourite_topic_entropy``: entropy of how users' strongest topics spread over the topics (lower:
    more users share a favourite). ``profile_entropy``: mean entropy of each user's interests shifted
    to be non-negative (lower: each user is narrower). ``mean_cosine``: mean cosine similarity of
    two different users' interest vectors (higher: users are more alike).
    """
    x = np.asarray(interest, np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"interest must be (users >= 2, topics), got shape {x.shape}")
    favourite = np.bincount(x.argmax(axis=1), minlength=x.shape[1])
    shifted = x - x.min(axis=1, keepdims=True)
    shifted[shifted.sum(axis=1) == 0] = 1.0  # a flat profile is the uniform one
    unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    total = unit.sum(axis=0)
    n = len(x)
    mean_cosine = (total @ total - (unit * unit).sum()) / (n * (n - 1))  # all pairs, without the diagonal
    return {"favourite_topic_entropy": float(entropy(favourite)),
            "profile_entropy": float(np.mean(entropy(shifted, axis=1))),
            "mean_cosine": float(mean_cosine)}


def _counts(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts)
    if counts.ndim != 1 or counts.size == 0:
        raise ValueError(f"counts must be a non-empty 1-D array, got shape {counts.shape}")
    if (counts < 0).any():
        raise ValueError("counts must be non-negative")
    return counts
