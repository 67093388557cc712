"""Choice models: the probability of every outcome in closed form, then one draw.

Outcomes for a slate of K items are the K positions plus "no click" (index K, the last column).
Both models share the per-item click score; they differ in how positions interact.
"""

from __future__ import annotations

from functools import lru_cache
from types import SimpleNamespace

import numpy as np

from recsim_env._cache import by_ndim, f32, per_config
from recsim_env.config import ChoiceConfig


@per_config
def _weights(config: ChoiceConfig) -> SimpleNamespace:
    return SimpleNamespace(
        appeal=f32(config.click_appeal_weight),
        # Interest and (negated) satiation weights side by side: one product scores a whole ``match``.
        match=by_ndim(np.array([config.click_interest_weight, -config.click_satiation_weight], np.float32)),
    )


def match(features: np.ndarray, topics: np.ndarray) -> np.ndarray:
    """Affinity and boredom of each user for each of its items.

    ``features (B, K, T)`` and ``topics (B, 2, T)`` (interest, satiation) -> ``(B, K, 2)``:
    ``features . interest`` and ``features . satiation``. A product and a sum over topics rather
    than ``matmul``, which would run one tiny product per user; with users innermost in memory
    both are vectorised over users. ``features`` may also come as ``(B, K, 2, T)``, the same mixture
    twice: the product is then between equal shapes for one user and one item.
    """
    if features.ndim == 3:
        features = features[:, :, None, :]
    return np.add.reduce(features * topics[:, None, :, :], axis=3)


def topic_match(interest: np.ndarray, satiation: np.ndarray, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Affinity and boredom of each user for each of its items.

    ``interest, satiation (B, T)`` and ``features (B, K, T)`` -> two ``(B, K)`` arrays:
    ``features . interest`` and ``features . satiation``.
    """
    both = match(features, np.stack((interest, satiation), axis=1))
    return both[..., 0], both[..., 1]


def click_scores(affinity: np.ndarray, boredom: np.ndarray, appeal: np.ndarray, config: ChoiceConfig) -> np.ndarray:
    """Logit score of clicking each item ``(B, K)``, before position effects."""
    return match_scores(np.stack(np.broadcast_arrays(affinity, boredom), axis=-1), weighted_appeal(appeal, config),
                        config)


def weighted_appeal(appeal: np.ndarray, config: ChoiceConfig) -> np.ndarray:
    """``w_a appeal``: the part of the score that depends on the item alone, so it can be computed per item once."""
    return appeal * _weights(config).appeal


def match_scores(match: np.ndarray, appeal_term: np.ndarray, config: ChoiceConfig,
                 out: np.ndarray | None = None) -> np.ndarray:
    """``w_i affinity + w_a appeal - w_s boredom`` from ``match (B, K, 2)`` and ``weighted_appeal (B, K)``.

    Both topic terms come from one product; subtracting ``w_s boredom`` is adding its negation, which
    IEEE arithmetic makes exact, so the numbers do not depend on which of the two is used. ``out`` lets
    the caller place the scores where it needs them (the logits of ``slate_probabilities``).
    """
    terms = match * _weights(config).match[match.ndim]
    return np.add(terms[..., 0] + appeal_term, terms[..., 1], out=out)


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
        logits = np.empty((k + 1, b), np.float32)
        logits[:k] = scores.T
        return _logit(logits, config, duplicates)
    return _cascade(scores, config, duplicates)


def slate_probabilities(match: np.ndarray, appeal_term: np.ndarray, config: ChoiceConfig,
                        duplicates: np.ndarray | None = None) -> np.ndarray:
    """``outcome_probabilities`` of the scores ``match_scores(match, appeal_term)``, which the logit
    model writes straight into its logits instead of into an array of their own."""
    b, k = appeal_term.shape
    if config.choice_model == "logit":
        logits = np.empty((k + 1, b), np.float32)
        match_scores(match, appeal_term, config, out=logits[:k].T)
        return _logit(logits, config, duplicates)
    return _cascade(match_scores(match, appeal_term, config), config, duplicates)


def _logit(logits: np.ndarray, config: ChoiceConfig, duplicates: np.ndarray | None) -> np.ndarray:
    """Conditional logit from ``(K + 1, B)`` logits whose first ``K`` rows hold the scores (overwritten)."""
    # b^k e^{s_k} = e^{s_k + k log b}: one softmax over K + 1 logits, the no-click one included.
    # Outcomes first, users innermost: every operation below runs over users.
    k = logits.shape[0] - 1
    if k > 1:  # the top position's attention is log(b^0) = 0, which changes no probability
        logits[:k] += _log_attention(config.position_decay, k)
    logits[k] = config.no_click_score
    if duplicates is not None:
        logits[:k][duplicates.T] = -np.inf
    if k == 1:  # two outcomes: a binary maximum and sum give the reductions' very numbers, for less
        item, none = logits[0], logits[1]
        logits -= np.maximum(item, none)
        np.exp(logits, out=logits)
        logits /= item + none
    else:
        logits -= np.maximum.reduce(logits, axis=0)
        np.exp(logits, out=logits)
        logits /= np.add.reduce(logits, axis=0)
    return logits.T


def _cascade(scores: np.ndarray, config: ChoiceConfig, duplicates: np.ndarray | None) -> np.ndarray:
    """Cascade model: examine top-down with attention ``b^k``, click with ``sigmoid(s_k - s_0)``."""
    b, k = scores.shape
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
    by_outcome = probabilities.T
    if by_outcome.shape[0] == 2:
        return _sample_of_two(by_outcome, uniform)
    # Running sums as one product, outcomes first (``np.add.accumulate`` would loop over users).
    cumulative = _prefix_ones(by_outcome.shape[0]) @ by_outcome
    below = cumulative < uniform * cumulative[-1]
    # ``below`` is True on a prefix (the sums never decrease) and False at the end (uniform < 1),
    # so the first False is the number of outcomes passed: the drawn one.
    return below.argmin(axis=0)


def _sample_of_two(by_outcome: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """``sample_outcome`` for one item or nothing: the running sums are ``p0`` and ``p0 + p1``, and the
    last one is never below ``uniform`` times itself, so the draw is whether ``p0`` is."""
    first = by_outcome[0]
    return (first < uniform * (first + by_outcome[1])).astype(np.intp)
