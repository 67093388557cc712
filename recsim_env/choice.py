"""Choice models: the probability of every outcome in closed form, then one draw.

Outcomes for a slate of K items are the K positions plus "no click" (index K, the last column).
Both models share the per-item click score; they differ in how positions interact.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from recsim_env._cache import f32, per_config
from recsim_env.config import ChoiceConfig


@per_config
def _weights(config: ChoiceConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return f32(config.click_interest_weight), f32(config.click_appeal_weight), f32(config.click_satiation_weight)


def match(features: np.ndarray, topics: np.ndarray) -> np.ndarray:
    """Affinity and boredom of each user for each of its items.

    ``features (B, K, T)`` and ``topics (B, 2, T)`` (interest, satiation) -> ``(B, K, 2)``:
    ``features . interest`` and ``features . satiation``. A product and a sum over topics rather
    than ``matmul``, which would run one tiny product per user; with users innermost in memory
    both are vectorised over users.
    """
    return np.add.reduce(features[:, :, None, :] * topics[:, None, :, :], axis=3)


def topic_match(interest: np.ndarray, satiation: np.ndarray, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Affinity and boredom of each user for each of its items.

    ``interest, satiation (B, T)`` and ``features (B, K, T)`` -> two ``(B, K)`` arrays:
    ``features . interest`` and ``features . satiation``.
    """
    both = match(features, np.stack((interest, satiation), axis=1))
    return both[..., 0], both[..., 1]


def click_scores(affinity: np.ndarray, boredom: np.ndarray, appeal: np.ndarray, config: ChoiceConfig) -> np.ndarray:
    """Logit score of clicking each item ``(B, K)``, before position effects."""
    interest_weight, appeal_weight, satiation_weight = _weights(config)
    return affinity * interest_weight + appeal * appeal_weight - boredom * satiation_weight


def duplicate_mask(items: np.ndarray) -> np.ndarray:
    """True where a slate repeats an item already shown at an earlier position."""
    k = items.shape[1]
    by_position = items.T  # (K, B): users innermost, so the comparisons run over users
    same = by_position[:, None, :] == by_position[None, :, :]  # same[i, j]: position i repeats position j
    return np.logical_or.reduce(same & np.tri(k, k, -1, bool)[:, :, None], axis=1).T


@lru_cache(maxsize=64)
def _log_attention(position_decay: float, k: int) -> np.ndarray:
    """``log(b^j)`` for positions ``j < k``, as a column; cached, since every step asks for the same few."""
    log_attention = (np.arange(k, dtype=np.float32) * np.float32(np.log(position_decay)))[:, None]
    log_attention.flags.writeable = False
    return log_attention


def outcome_probabilities(scores: np.ndarray, config: ChoiceConfig,
                          duplicates: np.ndarray | None = None) -> np.ndarray:
    """``(B, K)`` scores -> ``(B, K + 1)`` probabilities of clicking each position or nothing.

    Logit: ``P(k) = b^k e^{s_k} / (e^{s_0} + sum_j b^j e^{s_j})`` with position attention ``b``.
    Cascade: the user scans top-down, examines position ``k`` with probability ``b^k`` and clicks
    it with ``sigmoid(s_k - s_0)``; the first click ends the scan.
    Repeated items (``duplicates``) are shown once, at their first position.
    """
    b, k = scores.shape
    if config.choice_model == "logit":
        # b^k e^{s_k} = e^{s_k + k log b}: one softmax over K + 1 logits, the no-click one included.
        # Outcomes first, users innermost: every operation below runs over users.
        logits = np.empty((k + 1, b), np.float32)
        np.add(scores.T, _log_attention(config.position_decay, k), out=logits[:k])
        logits[k] = config.no_click_score
        if duplicates is not None:
            logits[:k][duplicates.T] = -np.inf
        logits -= np.maximum.reduce(logits, axis=0)
        np.exp(logits, out=logits)
        logits /= np.add.reduce(logits, axis=0)
        return logits.T
    out = np.empty((k + 1, b), np.float32).T
    attention = config.position_decay ** np.arange(k, dtype=np.float32)
    # sigmoid(s - s_none); the exponent is capped so extreme scores give 0 instead of an overflow.
    click = attention / (1.0 + np.exp(np.minimum(config.no_click_score - scores, 80.0)))
    if duplicates is not None:
        click[duplicates] = 0.0
    survive = np.cumprod(1.0 - click, axis=1)
    out[:, 0] = click[:, 0]
    out[:, 1:k] = click[:, 1:] * survive[:, :-1]
    out[:, k] = survive[:, -1]
    return out


@lru_cache(maxsize=64)
def _prefix_ones(n: int) -> np.ndarray:
    """``(n, n)`` lower triangle of ones: its product with ``(n, B)`` values gives their running sums."""
    ones = np.tri(n, dtype=np.float32)
    ones.flags.writeable = False
    return ones


def sample_outcome(probabilities: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """Index of the drawn outcome per user, ``K`` meaning no click, from one uniform per user."""
    # Running sums as one product, outcomes first (``np.add.accumulate`` would loop over users).
    cumulative = _prefix_ones(probabilities.shape[1]) @ probabilities.T
    below = cumulative < uniform * cumulative[-1]
    # ``below`` is True on a prefix (the sums never decrease) and False at the end (uniform < 1),
    # so the first False is the number of outcomes passed: the drawn one.
    return below.argmin(axis=0)
