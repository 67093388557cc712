"""Ranking metrics (HR@k, NDCG@k, MRR) and click-prediction metrics, vectorized over users.

A ranking is summarised per evaluated case by two counts, kept in :class:`Ranks`: how many
competitors score strictly above the target (``above``) and how many score exactly the same
(``tied``). Every ranking metric is a function of those two counts, so full ranking (all items) and
sampled ranking (the target against drawn negatives) share one code path, and batches of users can be
ranked separately and concatenated before the metrics are taken.

Ties. A model that gives the target the same score as other items has not ranked it above them, so
ties must not be resolved in the target's favour by accident (for instance by a sort that happens to
put the target first). Three rules are offered:

* ``"pessimistic"`` (the default): the target is placed after every tied competitor,
  rank = above + tied. A constant scorer gets nothing.
* ``"expected"``: the exact expectation of each metric when ties are broken uniformly at random, the
  target's 0-based rank being uniform on ``above .. above + tied``.
* ``"optimistic"``: rank = above; only for bounding, never for reporting.

A model that wants a deterministic tie-break (popularity broken by lower item id, as in the S3-Rec
tables) should make its scores distinct instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.stats import rankdata

TieRule = Literal["pessimistic", "expected", "optimistic"]
TIE_RULES: tuple[str, ...] = ("pessimistic", "expected", "optimistic")
DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 20)


@dataclass(frozen=True)
class Ranks:
    """Per evaluated case: competitors scored above the target, and competitors tied with it."""

    above: np.ndarray
    tied: np.ndarray

    def __post_init__(self) -> None:
        if self.above.shape != self.tied.shape or self.above.ndim != 1:
            raise ValueError(f"Ranks needs two 1-D arrays of one shape, got {self.above.shape} and {self.tied.shape}")

    def __len__(self) -> int:
        return len(self.above)

    @staticmethod
    def concat(parts: Iterable[Ranks]) -> Ranks:
        """Join the ranks of several batches, in order."""
        parts = list(parts)
        if not parts:
            return Ranks(np.zeros(0, np.int64), np.zeros(0, np.int64))
        return Ranks(np.concatenate([p.above for p in parts]), np.concatenate([p.tied for p in parts]))


def _check_finite(scores: np.ndarray, what: str) -> None:
    if np.isnan(scores).any():
        raise ValueError(f"{what} contain NaN; a NaN cannot be ranked")


def full_ranks(scores: np.ndarray, targets: np.ndarray, exclude: np.ndarray | None = None) -> Ranks:
    """Rank each target against every other item.

    Args:
        scores: ``(B, n)`` scores, higher is better.
        targets: ``(B,)`` column of each case's target in ``scores``.
        exclude: optional ``(B, n)`` mask of items that do not compete (the user's history, a padding
            column). If a target is itself excluded it cannot be recommended, so it is placed after
            every competitor (a miss at any realistic cut-off) rather than silently kept.

    Returns:
        The :class:`Ranks` of the targets.
    """
    scores = np.asarray(scores)
    targets = np.asarray(targets, np.int64)
    if scores.ndim != 2 or targets.shape != (scores.shape[0],):
        raise ValueError(f"scores must be (B, n) and targets (B,), got {scores.shape} and {targets.shape}")
    if targets.size and (targets.min() < 0 or targets.max() >= scores.shape[1]):
        raise ValueError(f"targets must lie in [0, {scores.shape[1]}), got [{targets.min()}, {targets.max()}]")
    _check_finite(scores, "scores")
    rows = np.arange(len(targets))
    competes = np.ones(scores.shape, bool) if exclude is None else ~np.asarray(exclude, bool)
    if competes.shape != scores.shape:
        raise ValueError(f"exclude must have the shape of scores {scores.shape}, got {competes.shape}")
    target_excluded = ~competes[rows, targets]
    competes[rows, targets] = False
    t = scores[rows, targets][:, None]
    above = np.count_nonzero((scores > t) & competes, axis=1)
    tied = np.count_nonzero((scores == t) & competes, axis=1)
    above = np.where(target_excluded, np.count_nonzero(competes, axis=1), above)
    tied = np.where(target_excluded, 0, tied)
    return Ranks(above.astype(np.int64), tied.astype(np.int64))


def sampled_ranks(target_scores: np.ndarray, negative_scores: np.ndarray) -> Ranks:
    """Rank each target against its own sampled negatives: ``(B,)`` against ``(B, m)``."""
    t = np.asarray(target_scores)
    neg = np.asarray(negative_scores)
    if neg.ndim != 2 or t.shape != (neg.shape[0],):
        raise ValueError(f"target_scores must be (B,) and negative_scores (B, m), got {t.shape} and {neg.shape}")
    _check_finite(t, "target scores")
    _check_finite(neg, "negative scores")
    above = np.count_nonzero(neg > t[:, None], axis=1).astype(np.int64)
    tied = np.count_nonzero(neg == t[:, None], axis=1).astype(np.int64)
    return Ranks(above, tied)


def _check_ks(ks: Sequence[int]) -> None:
    if any(int(k) != k or k < 1 for k in ks):
        raise ValueError(f"every cut-off k must be an integer >= 1, got {list(ks)}")


def _cumulative(values_at: np.ndarray) -> np.ndarray:
    """``C[m] = sum(values_at[:m])``, so the sum over ranks ``a .. b-1`` is ``C[b] - C[a]``."""
    return np.concatenate([[0.0], np.cumsum(values_at)])


def ranking_metrics(ranks: Ranks, ks: Sequence[int] = DEFAULT_KS, ties: TieRule = "pessimistic",
                    per_case: bool = False) -> dict[str, float] | dict[str, np.ndarray]:
    """HR@k, NDCG@k (one relevant item, so IDCG = 1) and MRR (no cut-off).

    With a 0-based rank ``r``: HR@k = [r < k], NDCG@k = [r < k] / log2(r + 2), MRR = 1 / (r + 1).

    Args:
        ranks: from :func:`full_ranks` or :func:`sampled_ranks`.
        ks: the cut-offs.
        ties: how tied competitors count (see the module docstring).
        per_case: return one value per case instead of the mean.

    Returns:
        ``{"HR@k": ..., "NDCG@k": ..., "MRR": ...}``, means over cases (or per-case arrays).
    """
    _check_ks(ks)
    if ties not in TIE_RULES:
        raise ValueError(f"ties={ties!r}: allowed {', '.join(TIE_RULES)}")
    if len(ranks) == 0:
        raise ValueError("no cases to average: the ranks are empty")
    lo = ranks.above
    hi = ranks.above + ranks.tied + 1  # the target's possible 0-based ranks are lo .. hi-1
    if ties == "pessimistic":
        lo = hi - 1
    elif ties == "optimistic":
        hi = lo + 1
    count = (hi - lo).astype(np.float64)
    top = int(hi.max())
    discount = _cumulative(1.0 / np.log2(np.arange(top) + 2.0))
    harmonic = _cumulative(1.0 / (np.arange(top) + 1.0))
    out: dict[str, np.ndarray] = {}
    for k in ks:
        out[f"HR@{k}"] = (np.minimum(hi, k) - np.minimum(lo, k)).clip(0) / count
    for k in ks:
        out[f"NDCG@{k}"] = (discount[np.minimum(hi, k)] - discount[np.minimum(lo, k)]) / count
    out["MRR"] = (harmonic[hi] - harmonic[lo]) / count
    if per_case:
        return out
    return {name: float(values.mean()) for name, values in out.items()}


def click_metrics(clicked: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Accuracy, precision, recall and F1 at ``threshold``, and ROC-AUC, of click predictions.

    A case is predicted a click when ``score >= threshold``. Precision with no predicted click and
    recall with no actual click are 0 (nothing was found), as is F1 when both are 0. ROC-AUC is the
    Mann-Whitney probability that a random click outscores a random non-click, a tie counting one
    half (average ranks), so a constant scorer gets exactly 0.5.

    Raises:
        ValueError: on mismatched shapes, NaN scores, or, for ROC-AUC, when only one class occurs.
    """
    y = np.asarray(clicked)
    s = np.asarray(scores, np.float64)
    if y.ndim != 1 or y.shape != s.shape or y.size == 0:
        raise ValueError(f"clicked and scores must be non-empty 1-D arrays of one shape, got {y.shape} and {s.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("clicked must hold 0/1 or booleans")
    _check_finite(s, "scores")
    y = y.astype(bool)
    pred = s >= threshold
    tp = np.count_nonzero(pred & y)
    fp = np.count_nonzero(pred & ~y)
    fn = np.count_nonzero(~pred & y)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    n_pos = np.count_nonzero(y)
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC-AUC needs both clicks and non-clicks among the cases")
    rank_sum = rankdata(s)[y].sum()  # average ranks: ties count one half
    auc = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return {"accuracy": float(np.mean(pred == y)), "precision": float(precision), "recall": float(recall),
            "f1": float(f1), "roc_auc": float(auc)}
