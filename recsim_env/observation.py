"""What a recommender sees: a flat float32 vector of recent history, candidates and context.

Layout (``ObservationLayout`` gives the slices):
    history     ``history_length`` rows, oldest first, of item features + [click, engagement / max_length]
    candidates  ``n_candidates`` rows of item features
    context     [session step / 100 (capped at 1), day / horizon (capped at 1)]
    user_state  only with ``observe_user_state``: interest (T), satiation (T), budget / max_budget
Item features are the catalogue's ``observable`` columns: topic mixture (T), appeal, quality score,
length / max_length. Empty history rows are all zeros.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from gymnasium import spaces

from recsim_env.catalog import Catalog
from recsim_env.config import EnvConfig
from recsim_env.users import UserState

SESSION_STEP_SCALE = 100.0


@dataclass(frozen=True)
class ObservationLayout:
    """Where each part sits in the flat observation; use it to decode observations in agents."""

    n_topics: int
    history_length: int
    n_candidates: int
    observe_user_state: bool

    @cached_property
    def item_dim(self) -> int:
        return self.n_topics + 3

    @cached_property
    def history_dim(self) -> int:
        return self.item_dim + 2

    @cached_property
    def history(self) -> slice:
        return slice(0, self.history_length * self.history_dim)

    @cached_property
    def candidates(self) -> slice:
        start = self.history.stop
        return slice(start, start + self.n_candidates * self.item_dim)

    @cached_property
    def context(self) -> slice:
        return slice(self.candidates.stop, self.candidates.stop + 2)

    @cached_property
    def user_state(self) -> slice:
        width = 2 * self.n_topics + 1 if self.observe_user_state else 0
        return slice(self.context.stop, self.context.stop + width)

    @cached_property
    def size(self) -> int:
        return self.user_state.stop

    def split(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        """Batch of flat observations ``(B, D)`` -> named, shaped parts."""
        b = obs.shape[0]
        parts = {
            "history": obs[:, self.history].reshape(b, self.history_length, self.history_dim),
            "candidates": obs[:, self.candidates].reshape(b, self.n_candidates, self.item_dim),
            "context": obs[:, self.context],
        }
        if self.observe_user_state:
            parts["user_state"] = obs[:, self.user_state]
        return parts

    def space(self) -> spaces.Box:
        """The single-user observation space, with finite bounds."""
        low = np.zeros(self.size, np.float32)
        high = np.ones(self.size, np.float32)
        quality_col = self.n_topics + 1
        hist = low[self.history].reshape(self.history_length, self.history_dim)
        hist[:, quality_col] = -1.0
        cand = low[self.candidates].reshape(self.n_candidates, self.item_dim)
        cand[:, quality_col] = -1.0
        if self.observe_user_state:
            low[self.user_state.start:self.user_state.start + self.n_topics] = -1.0
        return spaces.Box(low, high, dtype=np.float32)

    @classmethod
    def from_config(cls, config: EnvConfig) -> ObservationLayout:
        return cls(config.catalog.n_topics, config.history_length, config.n_candidates, config.observe_user_state)


class ObservationEncoder:
    """Keeps each user's recent history and writes observations without per-user Python loops.

    The history is a ring buffer of ``H`` rows per user with a shared write position; an observation
    copies it out oldest first (one ``take`` for one user, two slices for many).
    """

    def __init__(self, layout: ObservationLayout, n_users: int, config: EnvConfig, catalog: Catalog):
        self.layout = layout
        self.config = config
        self._observable = catalog.observable
        self._buffer = np.zeros((n_users, layout.history_length, layout.history_dim), np.float32)
        self._pos = layout.history_length - 1
        h = layout.history_length
        #: For each write position, the buffer rows oldest first: the rows after it, then those up to it.
        self._oldest_first = [np.roll(np.arange(h), -(pos + 1)) for pos in range(h)]
        # Scales as arrays: cheaper operands than Python floats, and computed once.
        self._one = np.array(1.0, np.float32)
        self._inverse_length = np.array(1.0 / catalog.max_length, np.float32)
        # Shaped like the context of one user, so that its division is a same-shape ufunc loop.
        self._context_scale = np.array([[SESSION_STEP_SCALE, config.session.horizon_days]], np.float32)
        self._max_budget = np.array(config.user.max_budget, np.float32)

    def clear(self, mask: np.ndarray | None = None) -> None:
        """Forget the history of all users, or those in ``mask``."""
        if mask is None:
            self._buffer.fill(0.0)
        else:
            self._buffer[mask] = 0.0

    def _features(self, items: np.ndarray, out: np.ndarray) -> None:
        """Write the observable features of ``items`` into ``out`` (shape ``items.shape + (item_dim,)``)."""
        if out.flags.c_contiguous:  # one user: ``take`` writes straight into place
            self._observable.take(items, 0, out, "clip")  # ids come from the simulator, always valid
        else:  # ``take`` would stage through a buffer here, which is slower than gathering then copying
            out[...] = self._observable.take(items, axis=0)

    def record(self, item: np.ndarray, click: np.ndarray, engagement: np.ndarray) -> None:
        """Append one step per user: the item (clicked, or shown first) and the response."""
        self._pos = pos = (self._pos + 1) % self.layout.history_length
        row = self._buffer[:, pos]
        self._features(item, row[:, :-2])
        row[:, -2] = click
        np.minimum(engagement * self._inverse_length, self._one, out=row[:, -1])

    def _history_into(self, out: np.ndarray) -> None:
        """Copy the history, oldest first, into ``out`` ``(B, H, history_dim)``."""
        if out.flags.c_contiguous:  # one user: a single ``take`` of the rows in order
            self._buffer.take(self._oldest_first[self._pos], 1, out, "clip")
            return
        # The rows after the write position, then those up to it: two copies, no temporary.
        start = self._pos + 1
        older = self.layout.history_length - start
        if older:
            out[:, :older] = self._buffer[:, start:]
        out[:, older:] = self._buffer[:, :start]

    def _context_into(self, state: UserState, out: np.ndarray) -> None:
        """Write the context (session step, day; scaled, capped at 1) into ``out`` ``(B, 2)``."""
        if out.shape[0] == 1:  # one user: the two numbers are adjacent, work on them in place
            context = out
        else:  # many: build it users innermost, then write both columns at once
            context = np.empty((2, out.shape[0]), np.float32).T
        context[:, 0] = state.session_step
        context[:, 1] = state.day
        context /= self._context_scale
        np.minimum(context, self._one, out=context)
        if context is not out:
            out[...] = context

    def encode(self, candidates: np.ndarray, state: UserState) -> np.ndarray:
        """A fresh ``(B, D)`` float32 array of observations."""
        lay, b = self.layout, candidates.shape[0]
        obs = np.empty((b, lay.size), np.float32)
        self._history_into(obs[:, lay.history].reshape(b, lay.history_length, lay.history_dim))
        self._features(candidates, obs[:, lay.candidates].reshape(b, lay.n_candidates, lay.item_dim))
        self._context_into(state, obs[:, lay.context])
        if lay.observe_user_state:
            t = lay.n_topics
            us = lay.user_state.start
            obs[:, us:us + 2 * t] = state.topics.reshape(b, 2 * t)  # interest, then satiation
            np.divide(state.budget, self._max_budget, out=obs[:, us + 2 * t])
        return obs
