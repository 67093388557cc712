"""The user population: hidden state of a batch of users (users first), drawn and reset in place."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsim_env.config import UserConfig

#: The per-user (one number per user) fields, in the order ``snapshot`` reports them after the topics.
PER_USER_FIELDS = ("budget", "drift_rate", "volatile", "session", "day", "session_step", "session_satisfaction",
                   "session_clicks")


@dataclass(eq=False)
class UserState:
    """Hidden state of B users. Every array has the users first; updated in place by the dynamics.

    Shapes put users first, but the memory of ``topics`` puts them last (it is a transposed view), as
    it does for every batch array of the step: numpy then vectorises each operation over users, where
    a users-first layout would loop over the few topics of each user.

    Attributes:
        topics: ``(B, 2, T)`` float32, interest in ``[:, 0]`` and satiation in ``[:, 1]``; one array
            so that a single product scores both against an item.
        interest: affinity for each topic, ``(B, T)`` in [-1, 1] (a view of ``topics``).
        satiation: boredom with each topic, ``(B, T)`` in [0, 1] (a view of ``topics``).
        budget: time the user is still willing to spend this session, ``(B,)`` in [0, max_budget].
        drift_rate: how far interest moves per consumed item, ``(B,)``; two segments.
        volatile: whether the user belongs to the volatile segment, ``(B,)`` bool.
        session: index of the current session, ``(B,)`` int (always 0 without cross-session return).
        day: day on which the current session takes place, ``(B,)``.
        session_step: recommendations seen in the current session, ``(B,)`` int.
        session_satisfaction: sum of satisfaction over the session's clicks, ``(B,)``.
        session_clicks: clicks in the current session, ``(B,)`` int.
    """

    topics: np.ndarray
    budget: np.ndarray
    drift_rate: np.ndarray
    volatile: np.ndarray
    session: np.ndarray
    day: np.ndarray
    session_step: np.ndarray
    session_satisfaction: np.ndarray
    session_clicks: np.ndarray

    @property
    def interest(self) -> np.ndarray:
        return self.topics[:, 0]

    @interest.setter
    def interest(self, value: np.ndarray) -> None:
        self.topics[:, 0] = value  # assignment writes into the shared array, so views stay valid

    @property
    def satiation(self) -> np.ndarray:
        return self.topics[:, 1]

    @satiation.setter
    def satiation(self, value: np.ndarray) -> None:
        self.topics[:, 1] = value

    @classmethod
    def empty(cls, n_users: int, n_topics: int) -> UserState:
        f32 = np.float32
        return cls(
            topics=np.zeros((2, n_topics, n_users), f32).transpose(2, 0, 1), budget=np.zeros(n_users, f32),
            drift_rate=np.zeros(n_users, f32), volatile=np.zeros(n_users, bool),
            session=np.zeros(n_users, np.int64), day=np.zeros(n_users, f32),
            session_step=np.zeros(n_users, np.int64), session_satisfaction=np.zeros(n_users, f32),
            session_clicks=np.zeros(n_users, np.int64),
        )

    def snapshot(self, index: int | slice = slice(None)) -> dict[str, np.ndarray]:
        """A copy of the state (of one user, or a slice of users), for ``info`` and analysis."""
        topics = self.topics[index].copy(order="K")  # one copy; interest and satiation are views of it
        snap = {"interest": topics[..., 0, :], "satiation": topics[..., 1, :]}
        if isinstance(index, (int, np.integer)):  # one user: each field comes out as a numpy scalar, a copy
            for name in PER_USER_FIELDS:
                snap[name] = getattr(self, name)[index]
        else:
            for name in PER_USER_FIELDS:
                snap[name] = getattr(self, name)[index].copy()
        return snap

    def sample(self, config: UserConfig, rng: np.random.Generator, mask: np.ndarray | None = None) -> None:
        """Draw fresh users into the rows selected by ``mask`` (all rows when None)."""
        rows = slice(None) if mask is None else mask.nonzero()[0]
        n, t = self.budget[rows].shape[0], self.topics.shape[2]
        if n == 0:
            return
        topics = np.zeros((2, t, n), np.float32)  # interest, satiation; users innermost like ``self.topics``
        interest = topics[0]
        np.multiply(rng.standard_normal((t, n), dtype=np.float32), np.float32(0.35), out=interest)
        np.minimum(np.maximum(interest, np.float32(-1.0), out=interest), np.float32(1.0), out=interest)
        # Everyone has one favourite topic to start from (floored uniforms: uniform over topics).
        favourite, strength, segment = rng.random((3, n))
        interest[(favourite * t).astype(np.intp), np.arange(n)] = 0.5 + 0.5 * strength
        volatile = segment < config.volatile_fraction
        self.topics[rows] = topics.transpose(2, 0, 1)
        self.budget[rows] = config.initial_budget
        self.volatile[rows] = volatile
        rates = np.array([config.stable_drift_rate, config.volatile_drift_rate], np.float32)
        self.drift_rate[rows] = rates.take(volatile)  # index 0 (stable) or 1 (volatile)
        self.session[rows] = 0
        self.day[rows] = 0.0
        self.session_step[rows] = 0
        self.session_satisfaction[rows] = 0.0
        self.session_clicks[rows] = 0
