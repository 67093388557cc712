"""Users' item sequences, the leave-last-out split, sampled negatives and padded batches.

Every sequential recommender consumes the same thing: for each user, the items they interacted with
in time order. :class:`Sequences` stores them flat (CSR: ``items[offsets[u]:offsets[u + 1]]`` is user
``u``), with items remapped to dense ids ``1..n_items`` so that ``0`` is free for padding. All the
operations here work on whole arrays (no loop over users), so they stay fast on millions of rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

PAD = 0


@dataclass(frozen=True)
class Sequences:
    """Users' items in time order, flat.

    Attributes:
        offsets: ``(n_users + 1,)`` start of each user's items in ``items``.
        items: dense item ids in ``1..n_items``.
        item_ids: ``(n_items + 1,)`` original id of each dense item; entry 0 (padding) is a placeholder.
        user_ids: ``(n_users,)`` original id of each user.
    """

    offsets: np.ndarray
    items: np.ndarray
    item_ids: np.ndarray
    user_ids: np.ndarray

    def __post_init__(self) -> None:
        if self.offsets.ndim != 1 or self.offsets[0] != 0 or self.offsets[-1] != len(self.items):
            raise ValueError("offsets must start at 0 and end at len(items)")
        if len(self.user_ids) != len(self.offsets) - 1:
            raise ValueError(f"{len(self.user_ids)} user ids for {len(self.offsets) - 1} users")
        if np.any(np.diff(self.offsets) < 0):
            raise ValueError("offsets must not decrease")
        if len(self.items) and (self.items.min() < 1 or self.items.max() > self.n_items):
            raise ValueError(f"items must lie in 1..{self.n_items} (0 is padding)")

    @property
    def n_users(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_items(self) -> int:
        return len(self.item_ids) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.items)

    def user(self, u: int) -> np.ndarray:
        """One user's items, oldest first."""
        return self.items[self.offsets[u]:self.offsets[u + 1]]

    def row_of_each(self) -> np.ndarray:
        """The user (row) of every entry of ``items``."""
        return np.repeat(np.arange(self.n_users), self.lengths)

    def position_of_each(self) -> np.ndarray:
        """Every entry's 0-based position within its user's sequence."""
        return np.arange(len(self.items)) - np.repeat(self.offsets[:-1], self.lengths)

    def item_counts(self) -> np.ndarray:
        """Interactions per dense item, ``(n_items + 1,)``; entry 0 is always 0."""
        return np.bincount(self.items, minlength=self.n_items + 1)

    @classmethod
    def from_interactions(cls, users: np.ndarray, items: np.ndarray, times: np.ndarray | None = None) -> Sequences:
        """Group (user, item[, time]) interactions into sequences.

        Each user's interactions are put in time order (stable: equal times keep their input order;
        without ``times`` the input order is the time order). Users and items are remapped to dense
        ids in the sorted order of their original ids, so with integer ids a lower original id stays
        a lower dense id (which deterministic tie-breaks rely on).
        """
        users, items = np.asarray(users), np.asarray(items)
        if users.shape != items.shape or users.ndim != 1:
            raise ValueError(f"users and items must be 1-D of one length, got {users.shape} and {items.shape}")
        user_ids, user_index = np.unique(users, return_inverse=True)
        item_ids, item_index = np.unique(items, return_inverse=True)
        keys = (user_index,) if times is None else (np.asarray(times), user_index)
        order = np.lexsort(keys)  # by user, then time; stable
        offsets = np.concatenate([[0], np.cumsum(np.bincount(user_index, minlength=len(user_ids)))])
        placeholder = np.zeros(1, item_ids.dtype) if item_ids.dtype.kind in "iuf" else np.array([""], item_ids.dtype)
        return cls(offsets.astype(np.int64), item_index[order].astype(np.int64) + 1,
                   np.concatenate([placeholder, item_ids]), user_ids)

    def keep(self, mask: np.ndarray) -> Sequences:
        """The sequences with only the entries where ``mask`` holds (users may become empty)."""
        counts = np.bincount(self.row_of_each()[mask], minlength=self.n_users)
        return Sequences(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), self.items[mask],
                         self.item_ids, self.user_ids)

    def select_users(self, rows: np.ndarray) -> Sequences:
        """The sequences of the given users, in the given order."""
        rows = np.asarray(rows, np.int64)
        index, lengths = _gather_index(self.offsets[rows], self.lengths[rows])
        return Sequences(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), self.items[index],
                         self.item_ids, self.user_ids[rows])

    def drop_empty(self) -> Sequences:
        """Without users that have no items left."""
        return self.select_users(np.flatnonzero(self.lengths > 0))

    def compact_items(self) -> Sequences:
        """Dense item ids again after filtering: unused items removed, order of the original ids kept."""
        used = np.flatnonzero(self.item_counts()[1:]) + 1
        new_id = np.zeros(self.n_items + 1, np.int64)
        new_id[used] = np.arange(1, len(used) + 1)
        item_ids = np.concatenate([self.item_ids[:1], self.item_ids[used]])
        return Sequences(self.offsets, new_id[self.items], item_ids, self.user_ids)

    def kcore(self, k_user: int, k_item: int | None = None) -> Sequences:
        """Repeatedly drop users with fewer than ``k_user`` and items with fewer than ``k_item``
        interactions until both hold (``k_item`` defaults to ``k_user``); ids are compacted."""
        k_item = k_user if k_item is None else k_item
        seqs = self
        while True:
            rows = seqs.row_of_each()
            ok = (seqs.lengths[rows] >= k_user) & (seqs.item_counts()[seqs.items] >= k_item)
            if ok.all():
                return seqs.drop_empty().compact_items()
            seqs = seqs.keep(ok)

    def pad(self, rows: np.ndarray | None = None, max_len: int = 50) -> tuple[np.ndarray, np.ndarray]:
        """The last ``max_len`` items of each selected user, right-padded with 0.

        Returns:
            ``(B, L)`` items (``L`` = the longest selected length, at most ``max_len``) and ``(B,)`` lengths.
        """
        rows = np.arange(self.n_users) if rows is None else np.asarray(rows, np.int64)
        lengths = np.minimum(self.lengths[rows], max_len)
        width = max(int(lengths.max(initial=0)), 1)
        starts = self.offsets[rows + 1] - lengths
        cols = np.arange(width)
        valid = cols[None, :] < lengths[:, None]
        index = np.where(valid, starts[:, None] + cols[None, :], 0)
        padded = np.where(valid, self.items[index] if len(self.items) else 0, PAD)
        return padded.astype(np.int64), lengths.astype(np.int64)

    def history_mask(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Coordinates ``(case, item)`` of every item in the selected users' whole sequences, for
        masking them in a ``(len(rows), n_items + 1)`` score matrix."""
        rows = np.asarray(rows, np.int64)
        index, lengths = _gather_index(self.offsets[rows], self.lengths[rows])
        return np.repeat(np.arange(len(rows)), lengths), self.items[index]


def _gather_index(starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices of the ranges ``starts[i] .. starts[i] + lengths[i]``, concatenated."""
    total = int(lengths.sum())
    first = np.cumsum(lengths) - lengths
    index = np.arange(total) - np.repeat(first - starts, lengths)
    return index.astype(np.int64), lengths


def _drop_last(seqs: Sequences, n: np.ndarray) -> Sequences:
    """Every user without their last ``n[u]`` items."""
    keep = seqs.position_of_each() < (seqs.lengths - n)[seqs.row_of_each()]
    return seqs.keep(keep)


@dataclass(frozen=True)
class EvalSet:
    """Next-item cases: predict ``targets[c]`` from ``history`` row ``c``.

    ``users[c]`` is the case's row in the training :class:`Sequences`, or -1 for a user the model
    was not trained on; ``full`` holds every item of the case's user (its history, target and
    future), which sampled negatives must avoid.
    """

    history: Sequences
    targets: np.ndarray
    users: np.ndarray
    full: Sequences

    def __len__(self) -> int:
        return len(self.targets)


@dataclass(frozen=True)
class Split:
    """Leave-last-out: train on all but the last two items, validate on the second last, test on the last."""

    train: Sequences
    valid: EvalSet
    test: EvalSet


def leave_last_out(seqs: Sequences) -> Split:
    """The S3-Rec / SASRec protocol.

    For a sequence ``s`` of a user with at least 3 items: train on ``s[:-2]`` (inputs ``s[:-3]``,
    targets ``s[1:-2]``), validate by predicting ``s[-2]`` from ``s[:-2]``, test by predicting
    ``s[-1]`` from ``s[:-1]``. Users with fewer than 3 items only add to training. The training rows
    are the rows of ``seqs``, so ``valid.users`` and ``test.users`` index them.
    """
    lengths = seqs.lengths
    evaluated = np.flatnonzero(lengths >= 3)
    train = _drop_last(seqs, np.where(lengths >= 3, 2, 0))
    last = seqs.offsets[evaluated + 1] - 1
    one_off = _drop_last(seqs, np.ones_like(lengths))
    full = seqs.select_users(evaluated)
    valid = EvalSet(train.select_users(evaluated), seqs.items[last - 1], evaluated, full)
    test = EvalSet(one_off.select_users(evaluated), seqs.items[last], evaluated, full)
    return Split(train, valid, test)


def split_users(seqs: Sequences, test_fraction: float, rng: np.random.Generator) -> tuple[Sequences, Sequences]:
    """Held-out users: a random ``test_fraction`` of users (at least one each side) for testing."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction={test_fraction!r} is out of range: allowed (0, 1)")
    if seqs.n_users < 2:
        raise ValueError(f"cannot hold out users from {seqs.n_users} user(s)")
    order = rng.permutation(seqs.n_users)
    n_test = int(np.clip(round(test_fraction * seqs.n_users), 1, seqs.n_users - 1))
    return seqs.select_users(np.sort(order[n_test:])), seqs.select_users(np.sort(order[:n_test]))


def holdout_split(seqs: Sequences, test_fraction: float, rng: np.random.Generator) -> Split:
    """Train and validate (leave-last-out) on some users; test on every next click of the others.

    The protocol for simulated logs: held-out users are never trained on, and a policy serving
    them meets each of their steps, so every click after their first is a test case.
    """
    train_users, test_users = split_users(seqs, test_fraction, rng)
    inner = leave_last_out(train_users)
    return Split(inner.train, inner.valid, next_item_events(test_users))


def next_item_events(seqs: Sequences, min_history: int = 1) -> EvalSet:
    """Every next item of every user as a case, predicted from all the items before it.

    For held-out users (``users`` is -1): each step of their sequence after the first
    ``min_history`` items is a case, as a policy serving them would meet it.
    """
    if min_history < 1:
        raise ValueError(f"min_history={min_history!r} is out of range: allowed >= 1")
    pos = seqs.position_of_each()
    case = np.flatnonzero(pos >= min_history)
    rows = seqs.row_of_each()[case]
    starts = seqs.offsets[rows]
    index, lengths = _gather_index(starts, pos[case])
    history = Sequences(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), seqs.items[index],
                        seqs.item_ids, seqs.user_ids[rows])
    return EvalSet(history, seqs.items[case], np.full(len(case), -1, np.int64), seqs.select_users(rows))


def sample_negatives(full: Sequences, n_negatives: int, rng: np.random.Generator) -> np.ndarray:
    """``n_negatives`` distinct items per user drawn uniformly from the items that user never touched.

    Draws in rounds with replacement and keeps the first valid, distinct draws of each row; rows that
    are still short are redrawn, so the result is exactly uniform over the allowed sets.

    Returns:
        ``(n_users, n_negatives)`` dense item ids.

    Raises:
        ValueError: when a user has touched too many items to leave ``n_negatives`` others.
    """
    n_users, n_items = full.n_users, full.n_items
    forbidden = np.unique(full.row_of_each() * (n_items + 1) + full.items)  # sorted (user, item) keys
    room = n_items - np.bincount(forbidden // (n_items + 1), minlength=n_users)
    short = np.flatnonzero(room < n_negatives)
    if len(short):
        raise ValueError(f"user {full.user_ids[short[0]]!r} leaves only {room[short[0]]} untouched items of "
                         f"{n_items}; cannot draw {n_negatives} negatives")
    out = np.zeros((n_users, n_negatives), np.int64)
    filled = np.zeros(n_users, np.int64)
    todo = np.arange(n_users)
    while len(todo):
        draws = rng.integers(1, n_items + 1, size=(len(todo), 2 * n_negatives))
        keys = (todo[:, None] * (n_items + 1) + draws).ravel()
        first = np.zeros(keys.size, bool)
        first[np.unique(keys, return_index=True)[1]] = True  # a repeat within the round counts once
        hit = np.searchsorted(forbidden, keys).clip(max=max(len(forbidden) - 1, 0))
        allowed = first if not len(forbidden) else first & (forbidden[hit] != keys)
        good = allowed.reshape(draws.shape)
        slot = np.cumsum(good, axis=1) - 1 + filled[todo, None]
        take = good & (slot < n_negatives)
        r, c = np.nonzero(take)
        out[todo[r], slot[r, c]] = draws[r, c]
        filled[todo] += np.count_nonzero(take, axis=1)
        forbidden = np.union1d(forbidden, keys[take.ravel()])
        todo = todo[filled[todo] < n_negatives]
    return out


@dataclass(frozen=True)
class TrainingBatch:
    """Right-padded inputs and next-item targets (0 where there is no target)."""

    rows: np.ndarray
    inputs: np.ndarray
    targets: np.ndarray
    lengths: np.ndarray


def training_batches(train: Sequences, batch_size: int, max_len: int,
                     rng: np.random.Generator) -> Iterator[TrainingBatch]:
    """One epoch of shuffled batches: each user's last ``max_len + 1`` items give ``max_len`` inputs
    and their next-item targets (``inputs[:, t]`` predicts ``targets[:, t]``). Users with fewer than
    two items have no target and are skipped."""
    if batch_size < 1 or max_len < 1:
        raise ValueError(f"batch_size={batch_size} and max_len={max_len} must be >= 1")
    rows = rng.permutation(np.flatnonzero(train.lengths >= 2))
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        padded, lengths = train.pad(chunk, max_len + 1)
        yield TrainingBatch(chunk, padded[:, :-1], padded[:, 1:], lengths - 1)
