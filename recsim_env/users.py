"""The user population: hidden state of a batch of users (users first), drawn and reset in place."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsim_env.config import UserConfig


@dataclass
class UserState:
    """Hidden state of B users. Every array has the users first; updated in place by the dynamics.

    Attributes:
        interest: affinity for each topic, ``(B, T)`` in [-1, 1].
        satiation: boredom with each topic, ``(B, T)`` in [0, 1].
        budget: time the user is still willing to spend this session, ``(B,)`` in [0, max_budget].
        drift_rate: how far interest moves per consumed item, ``(B,)``; two segments.
        volatile: whether the user belongs to the volatile segment, ``(B,)`` bool.
        session: index of the current session, ``(B,)`` int (always 0 without cross-session return).
        day: day on which the current session takes place, ``(B,)``.
        session_step: recommendations seen in the current session, ``(B,)`` int.
        session_satisfaction: sum of satisfaction over the session's clicks, ``(B,)``.
        session_clicks: clicks in the current session, ``(B,)`` int.
    """

    interest: np.ndarray
    satiation: np.ndarray
    budget: np.ndarray
    drift_rate: np.ndarray
    volatile: np.ndarray
    session: np.ndarray
    day: np.ndarray
    session_step: np.ndarray
    session_satisfaction: np.ndarray
    session_clicks: np.ndarray

    @classmethod
    def empty(cls, n_users: int, n_topics: int) -> UserState:
        f32 = np.float32
        return cls(
            interest=np.zeros((n_users, n_topics), f32), satiation=np.zeros((n_users, n_topics), f32),
            budget=np.zeros(n_users, f32), drift_rate=np.zeros(n_users, f32),
            volatile=np.zeros(n_users, bool), session=np.zeros(n_users, np.int64),
            day=np.zeros(n_users, f32), session_step=np.zeros(n_users, np.int64),
            session_satisfaction=np.zeros(n_users, f32), session_clicks=np.zeros(n_users, np.int64),
        )

    def snapshot(self, index: int | slice = slice(None)) -> dict[str, np.ndarray]:
        """A copy of the state (of one user, or a slice of users), for ``info`` and analysis."""
        return {name: value[index].copy() for name, value in vars(self).items()}

    def sample(self, config: UserConfig, rng: np.random.Generator, mask: np.ndarray | None = None) -> None:
        """Draw fresh users into the rows selected by ``mask`` (all rows when None)."""
        rows = np.arange(self.budget.shape[0]) if mask is None else np.flatnonzero(mask)
        n, t = rows.size, self.interest.shape[1]
        if n == 0:
            return
        interest = np.clip(rng.normal(0.0, 0.35, size=(n, t)), -1.0, 1.0)
        # Everyone has one favourite topic to start from.
        interest[np.arange(n), rng.integers(0, t, size=n)] = rng.uniform(0.5, 1.0, size=n)
        volatile = rng.random(n) < config.volatile_fraction
        self.interest[rows] = interest
        self.satiation[rows] = 0.0
        self.budget[rows] = config.initial_budget
        self.volatile[rows] = volatile
        self.drift_rate[rows] = np.where(volatile, config.volatile_drift_rate, config.stable_drift_rate)
        self.session[rows] = 0
        self.day[rows] = 0.0
        self.session_step[rows] = 0
        self.session_satisfaction[rows] = 0.0
        self.session_clicks[rows] = 0
