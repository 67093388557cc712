"""Choice models: the probability of every outcome in closed form, then one draw.

Outcomes for a slate of K items are the K positions plus "no click" (index K, the last column).
Both models share the per-item click score; they differ in how positions interact.
"""

from __future__ import annotations

import numpy as np

from recsim_env.config import ChoiceConfig


def topic_match(interest: np.ndarray, satiation: np.ndarray, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Affinity and boredom of each user for each of its items, in one product.

    ``interest, satiation (B, T)`` and ``features (B, K, T)`` -> two ``(B, K)`` arrays:
    ``features . interest`` and ``features . satiation``.
    """
    both = np.matmul(features, np.stack((interest, satiation), axis=2))
    return both[..., 0], both[..., 1]


def click_scores(affinity: np.ndarray, boredom: np.ndarray, appeal: np.ndarray, config: ChoiceConfig) -> np.ndarray:
    """Logit score of clicking each item ``(B, K)``, before position effects."""
    return (config.click_interest_weight * affinity + config.click_appeal_weight * appeal
            - config.click_satiation_weight * boredom)


def duplicate_mask(items: np.ndarray) -> np.ndarray:
    """True where a slate repeats an item already shown at an earlier position."""
    same = items[:, :, None] == items[:, None, :]
    return np.logical_or.reduce(np.tril(same, k=-1), axis=2)


def outcome_probabilities(scores: np.ndarray, config: ChoiceConfig,
                          duplicates: np.ndarray | None = None) -> np.ndarray:
    """``(B, K)`` scores -> ``(B, K + 1)`` probabilities of clicking each position or nothing.

    Logit: ``P(k) = b^k e^{s_k} / (e^{s_0} + sum_j b^j e^{s_j})`` with position attention ``b``.
    Cascade: the user scans top-down, examines position ``k`` with probability ``b^k`` and clicks
    it with ``sigmoid(s_k - s_0)``; the first click ends the scan.
    Repeated items (``duplicates``) are shown once, at their first position.
    """
    b, k = scores.shape
    attention = config.position_decay ** np.arange(k, dtype=np.float32)
    out = np.empty((b, k + 1), np.float32)
    if config.choice_model == "logit":
        shift = np.maximum(np.maximum.reduce(scores, axis=1), config.no_click_score)[:, None]
        np.exp(scores - shift, out=out[:, :k])
        out[:, :k] *= attention
        np.exp(config.no_click_score - shift[:, 0], out=out[:, k])
        if duplicates is not None:
            out[:, :k][duplicates] = 0.0
        out /= np.add.reduce(out, axis=1)[:, None]
        return out
    click = attention / (1.0 + np.exp(config.no_click_score - scores))
    if duplicates is not None:
        click[duplicates] = 0.0
    survive = np.cumprod(1.0 - click, axis=1)
    out[:, 0] = click[:, 0]
    out[:, 1:k] = click[:, 1:] * survive[:, :-1]
    out[:, k] = survive[:, -1]
    return out


def sample_outcome(probabilities: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """Index of the drawn outcome per user, ``K`` meaning no click, from one uniform per user."""
    cumulative = np.cumsum(probabilities, axis=1)
    outcome = np.add.reduce(cumulative < (uniform * cumulative[:, -1])[:, None], axis=1)
    return np.minimum(outcome, probabilities.shape[1] - 1)
