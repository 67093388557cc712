"""The user population: hidden state of a batch of users (users first), drawn and reset in place."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from types import SimpleNamespace
from typing import Any

import numpy as np

from recsim_env._cache import f32, per_config
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

    def __len__(self) -> int:
        return self.budget.shape[0]

    def take(self, rows: np.ndarray) -> UserState:
        """A copy of the users at ``rows`` (indices, repeats allowed), sharing no memory with this state.

        For planning: many copies of a user can be stepped forward without touching the original.
        The copy keeps the layout of ``empty`` (users innermost in memory).
        """
        rows = np.asarray(rows, np.intp)
        fields = self.__dict__
        # ``topics.transpose(1, 2, 0)`` is the (2, T, B) array itself; taking along its last axis copies.
        topics = self.topics.transpose(1, 2, 0).take(rows, axis=2).transpose(2, 0, 1)
        return UserState(topics=topics, **{name: fields[name].take(rows) for name in PER_USER_FIELDS})

    @classmethod
    def from_snapshot(cls, snapshot: dict[str, Any]) -> UserState:
        """The users of a ``snapshot`` (as ``info["user_state"]`` holds it, one user or a batch), copied.

        Every field of the state is in a snapshot, so a policy that reads ``info`` can rebuild the
        full state and simulate the users forward.
        """
        interest = np.asarray(snapshot["interest"], np.float32)
        interest = interest[None] if interest.ndim == 1 else interest
        n, t = interest.shape
        state = cls.empty(n, t)
        state.interest = interest
        state.satiation = np.asarray(snapshot["satiation"], np.float32).reshape(n, t)
        fields = state.__dict__
        for name in PER_USER_FIELDS:
            fields[name][:] = np.asarray(snapshot[name]).reshape(n)
        return state

    def snapshot(self, index: int | slice = slice(None)) -> dict[str, np.ndarray]:
        """A copy of the state (of one user, or a slice of users), for ``info`` and analysis."""
        topics = self.topics[index].copy(order="K")  # one copy; interest and satiation are views of it
        fields = self.__dict__
        if isinstance(index, (int, np.integer)):  # one user: each field comes out as a numpy scalar, a copy
            snap = {"interest": topics[0], "satiation": topics[1]}
            for name in PER_USER_FIELDS:
                snap[name] = fields[name][index]
        else:
            snap = {"interest": topics[:, 0], "satiation": topics[:, 1]}
            for name in PER_USER_FIELDS:
                snap[name] = fields[name][index].copy()
        return snap

    def sample(self, config: UserConfig, rng: np.random.Generator, mask: np.ndarray | None = None) -> None:
        """Draw fresh users into the rows selected by ``mask`` (all rows when None)."""
        rows = _ALL if mask is None else mask.nonzero()[0]
        n, t = self.budget[rows].shape[0], self.topics.shape[2]
        if n == 0:
            return
        c = _constants(config)
        topics = np.zeros((2, t, n), np.float32)  # interest, satiation; users innermost like ``self.topics``
        interest = topics[0]
        np.multiply(rng.standard_normal((t, n), dtype=np.float32), _SPREAD, out=interest)
        np.minimum(np.maximum(interest, _MINUS_ONE, out=interest), _ONE, out=interest)
        # Everyone has one favourite topic to start from (floored uniforms: uniform over topics).
        uniforms = rng.random((3, n))
        favourite, strength, segment = uniforms[0], uniforms[1], uniforms[2]
        interest[(favourite * _float(t)).astype(np.intp), np.arange(n)] = _HALF + _HALF * strength
        volatile = segment < c.volatile_fraction
        self.topics[rows] = topics.transpose(2, 0, 1)
        self.volatile[rows] = volatile
        self.drift_rate[rows] = c.drift_rates.take(volatile)  # index 0 (stable) or 1 (volatile)
        for name, value in c.fresh:
            _fill(getattr(self, name), rows, value)


def _fill(values: np.ndarray, rows: slice | np.ndarray, value: float) -> None:
    """``values[rows] = value``; ``fill`` when that is every row (a third of the cost for one user)."""
    if rows is _ALL:
        values.fill(value)
    else:
        values[rows] = value


_ALL = slice(None)


@lru_cache(maxsize=64)
def _float(value: int) -> np.ndarray:
    """An int as a 0-d float64 array: the same product with a float64 array, computed faster."""
    return np.array(float(value))


#: Operands of ``UserState.sample`` as 0-d arrays, which numpy combines faster than Python floats.
_SPREAD, _MINUS_ONE, _ONE = f32(0.35), f32(-1.0), f32(1.0)
_HALF = np.array(0.5)


@per_config
def _constants(config: UserConfig) -> SimpleNamespace:
    return SimpleNamespace(
        volatile_fraction=np.array(config.volatile_fraction),
        drift_rates=np.array([config.stable_drift_rate, config.volatile_drift_rate], np.float32),
        #: Every field a new user starts with the same value of.
        fresh=(("budget", config.initial_budget), ("session", 0), ("day", 0.0), ("session_step", 0),
               ("session_satisfaction", 0.0), ("session_clicks", 0)),
    )
