"""What a recommender sees: a flat float32 vector of recent history, candidates and context.

Layout (``ObservationLayout`` gives the slices):
    history     ``history_length`` rows, oldest first, of item features + [click, engagement / max_length]
    candidates  ``n_candidates`` rows of item features
    context     [session step / 100 (capped at 1), day / horizon]
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

    The history is a ring buffer stored twice over (``2H`` rows), so the last ``H`` steps are
    always one contiguous slice, oldest first; all users share the write position.
    """

    def __init__(self, layout: ObservationLayout, n_users: int, config: EnvConfig):
        self.layout = layout
        self.config = config
        self._buffer = np.zeros((n_users, 2 * layout.history_length, layout.history_dim), np.float32)
        self._pos = layout.history_length - 1

    def clear(self, mask: np.ndarray | None = None) -> None:
        """Forget the history of all users, or those in ``mask``."""
        if mask is None:
            self._buffer[:] = 0.0
        else:
            self._buffer[mask] = 0.0

    def record(self, catalog: Catalog, item: np.ndarray, click: np.ndarray, engagement: np.ndarray) -> None:
        """Append one step per user: the item (clicked, or shown first) and the response."""
        h = self.layout.history_length
        self._pos = (self._pos + 1) % h
        row = np.empty((item.shape[0], self.layout.history_dim), np.float32)
        row[:, :-2] = catalog.observable[item]
        row[:, -2] = click
        np.minimum(engagement / catalog.max_length, 1.0, out=row[:, -1])
        self._buffer[:, self._pos] = row
        self._buffer[:, self._pos + h] = row

    def encode(self, catalog: Catalog, candidates: np.ndarray, state: UserState) -> np.ndarray:
        """A fresh ``(B, D)`` float32 array of observations."""
        lay, b = self.layout, candidates.shape[0]
        obs = np.empty((b, lay.size), np.float32)
        start = self._pos + 1
        obs[:, lay.history] = self._buffer[:, start:start + lay.history_length].reshape(b, -1)
        obs[:, lay.candidates] = catalog.observable[candidates].reshape(b, -1)
        ctx = lay.context.start
        np.minimum(state.session_step / SESSION_STEP_SCALE, 1.0, out=obs[:, ctx], casting="unsafe")
        np.minimum(state.day / self.config.session.horizon_days, 1.0, out=obs[:, ctx + 1])
        if lay.observe_user_state:
            t = lay.n_topics
            us = lay.user_state.start
            obs[:, us:us + t] = state.interest
            obs[:, us + t:us + 2 * t] = state.satiation
            obs[:, us + 2 * t] = state.budget / self.config.user.max_budget
        return obs
