"""Exact expected immediate reward of whole slates, and the slate that maximises it.

Showing the ``K`` items that are best on their own is not the myopic optimum of a slate: under the
conditional logit the items compete for one click, and under the cascade an item placed high takes
the attention of those below it. The expected reward of a slate is
``sum_k P(click position k | slate) * E[reward | click on item k]``, with the outcome probabilities
from the env's own choice model (``choice.outcome_probabilities``). :func:`best_slates` enumerates
every ordered slate of distinct candidates, and the shorter ones (a repeated index is shown once, so
the action space holds them too), and picks the best per user in vectorised chunks.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import permutations
from math import perm

import numpy as np

from recsim_env import choice, response
from recsim_env.simulator import Simulator

#: Enumerating more slates than this per step is refused (the work is users x slates x slate size).
MAX_SLATES = 200_000
#: Users x slates scored at once by ``best_slates``; bounds its temporaries to a few tens of MiB.
CHUNK_USER_SLATES = 1 << 19


def n_slates(n_candidates: int, slate_size: int, shorter: bool = True) -> int:
    """How many slates :func:`candidate_slates` enumerates: ordered, distinct, of length ``slate_size``
    (and, with ``shorter``, of every length from 1 up)."""
    lengths = range(1, slate_size + 1) if shorter else (slate_size,)
    return sum(perm(n_candidates, k) for k in lengths)


@lru_cache(maxsize=16)
def candidate_slates(n_candidates: int, slate_size: int, shorter: bool = True) -> np.ndarray:
    """Every ordered slate of distinct candidate positions, ``(M, slate_size)``, read-only.

    With ``shorter`` the slates of fewer items come too, written as actions: the unused positions
    repeat the first index (shown once), so each row is a valid action that shows exactly its
    distinct prefix. Adding an item that is worth less than the slate's current expected reward
    lowers it, so a shorter slate can be the optimum. Actions with a gap (a repeat before a new item)
    are left out: under either choice model the expected reward is monotone in each item's attention,
    so an item is best at the highest free position or not shown at all, and the best action is
    always among these (the tests check it against every action).

    Raises:
        ValueError: more than ``MAX_SLATES`` slates, naming the sizes.
    """
    if not 1 <= slate_size <= n_candidates:
        raise ValueError(f"slate_size={slate_size} is out of range: allowed [1, n_candidates={n_candidates}]")
    count = n_slates(n_candidates, slate_size, shorter)
    if count > MAX_SLATES:
        raise ValueError(f"{count} slates of {slate_size} from n_candidates={n_candidates} are too many to enumerate "
                         f"exactly (at most {MAX_SLATES}); reduce n_candidates or slate_size")
    lengths = range(1, slate_size + 1) if shorter else (slate_size,)
    rows = [prefix + (prefix[0],) * (slate_size - k) for k in lengths
            for prefix in permutations(range(n_candidates), k)]
    table = np.array(rows, np.int64).reshape(-1, slate_size)
    table.flags.writeable = False
    return table


def item_terms(sim: Simulator, items: np.ndarray, interest: np.ndarray,
               satiation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Click score (before position effects) and expected reward given a click of each item ``(B, M)``.

    The same closed forms as the step: the score ``w_i affinity + w_a appeal - w_s boredom`` in
    float32, and the mean engagement ``length * watch_fraction`` (the noise has mean one), or 1
    for ``reward="click"``.

    Raises:
        ValueError: a custom reward function (it has no closed-form expectation).
    """
    kind = sim.config.reward
    if kind not in ("engagement", "click"):
        raise ValueError("the expected reward of a slate needs reward='engagement' or 'click' "
                         "(a custom reward has no closed form)")
    cat = sim.catalog
    features = cat.features[items].astype(np.float32, copy=False)
    affinity, boredom = choice.topic_match(np.asarray(interest, np.float32), np.asarray(satiation, np.float32),
                                           features)
    scores = choice.click_scores(affinity, boredom, cat.appeal[items].astype(np.float32), sim.config.choice)
    if kind == "click":
        return scores, np.ones(items.shape, np.float32)
    watch = response.watch_fraction(cat.quality[items].astype(np.float32), affinity, boredom, sim.config.response)
    return scores, cat.length[items].astype(np.float32) * watch


def _slate_values(scores: np.ndarray, gains: np.ndarray, duplicates: np.ndarray | None,
                  sim: Simulator) -> np.ndarray:
    """Expected reward ``(...,)`` of slates from per-position scores, gains and duplicate mask ``(..., K)``."""
    k = scores.shape[-1]
    probs = choice.outcome_probabilities(scores.reshape(-1, k), sim.config.choice,
                                         None if duplicates is None else duplicates.reshape(-1, k))
    return np.einsum("nk,nk->n", probs[:, :k], gains.reshape(-1, k)).reshape(scores.shape[:-1])


def _table_duplicates(table: np.ndarray, candidates: np.ndarray) -> np.ndarray | None:
    """Duplicate mask ``(B, M, K)`` of every user's enumerated slates, or None for slates of one.

    Repeated positions are the same for every user (one mask of the table); only users whose
    candidates repeat an item id (rare) need their own, item-wise mask.
    """
    b, k = len(candidates), table.shape[1]
    if k == 1:
        return None
    mask = np.broadcast_to(choice.duplicate_mask(table), (b, *table.shape))
    ordered = np.sort(candidates, axis=1)
    repeats = np.flatnonzero((ordered[:, 1:] == ordered[:, :-1]).any(axis=1))
    if repeats.size:
        mask = mask.copy()
        items = candidates[repeats][:, table]
        mask[repeats] = choice.duplicate_mask(items.reshape(-1, k)).reshape(items.shape)
    return mask


def slate_probabilities(sim: Simulator, slates: np.ndarray, interest: np.ndarray,
                        satiation: np.ndarray) -> np.ndarray:
    """Outcome probabilities ``(B, K + 1)`` of each user's slate of item ids ``(B, K)`` (last: no click).

    Exactly the step's choice model, repeated items shown once at their first position.
    """
    slates = np.asarray(slates)
    scores, _ = item_terms(sim, slates, interest, satiation)
    duplicates = choice.duplicate_mask(slates) if slates.shape[1] > 1 else None
    return choice.outcome_probabilities(scores, sim.config.choice, duplicates)


def slate_expected_reward(sim: Simulator, slates: np.ndarray, interest: np.ndarray,
                          satiation: np.ndarray) -> np.ndarray:
    """Exact expected immediate reward ``(B, M)`` of each user's slates of item ids ``(B, M, K)``.

    ``interest`` and ``satiation`` are the users' true state ``(B, T)``. A slate of one item gives
    ``sim.expected_reward`` up to float32 rounding.
    """
    slates = np.asarray(slates)
    b, m, k = slates.shape
    flat = slates.reshape(b, m * k)
    scores, gains = item_terms(sim, flat, interest, satiation)
    duplicates = choice.duplicate_mask(slates.reshape(b * m, k)) if k > 1 else None
    return _slate_values(scores.reshape(b, m, k), gains.reshape(b, m, k), duplicates, sim)


def best_slates(sim: Simulator, candidates: np.ndarray, interest: np.ndarray, satiation: np.ndarray,
                shorter: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The slate positions ``(B, K)`` with the highest exact expected immediate reward, and that reward ``(B,)``.

    ``candidates (B, N)`` are each user's item ids; ``K`` is the env's slate size. Every slate of
    :func:`candidate_slates` is scored (per-item terms once, then gathered), in chunks of users;
    ties go to the first slate enumerated (longer slates after shorter ones, lexicographic within).
    ``shorter=False`` restricts the search to slates of ``K`` distinct candidates.

    Raises:
        ValueError: the slate space is too large to enumerate (sizes named), or a custom reward.
    """
    candidates = np.asarray(candidates)
    b, n = candidates.shape
    k = sim.config.slate_size
    table = candidate_slates(n, k, shorter)
    scores, gains = item_terms(sim, candidates, interest, satiation)
    positions = np.empty((b, k), np.int64)
    values = np.empty(b, np.float32)
    step = max(1, CHUNK_USER_SLATES // len(table))
    for start in range(0, b, step):
        rows = slice(start, start + step)
        part = _slate_values(scores[rows][:, table], gains[rows][:, table],
                             _table_duplicates(table, candidates[rows]), sim)
        best = part.argmax(axis=1)
        positions[rows] = table[best]
        values[rows] = part[np.arange(len(best)), best]
    return positions, values
