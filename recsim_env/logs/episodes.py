"""Which user each row of a vector env serves while a log is collected: one bookkeeping for every collector.

A NEXT_STEP-autoreset vector env serves a fresh user on a row once that row's episode has ended, and
the step that resets the row is no interaction. The collectors (``simulated``, ``propensity``,
``slate_log``) number users in the order they started, keep the first ``n_users``, drop every step
of a later user and stop once each kept user has finished one episode, so a log holds complete
episodes only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


class LoggedRows:
    """Row count and user count of a log dataclass with a ``user`` column and ``metadata``, one per row
    of a logged step (the propensity and slate logs)."""

    user: np.ndarray
    metadata: dict[str, Any]

    def __len__(self) -> int:
        return len(self.user)

    @property
    def n_users(self) -> int:
        """Users the log was collected for (its metadata), or one more than the largest user id."""
        return int(self.metadata.get("n_users", 0 if len(self) == 0 else int(self.user.max()) + 1))


def checked_collection(n_users: int, max_steps: int, targets: Mapping[str, Any] | None) -> dict[str, Any]:
    """The propensity and slate collectors' arguments checked: ``n_users`` and ``max_steps`` >= 1 and
    non-empty target names; returns the targets as a dict.

    Raises:
        ValueError: naming the argument and its allowed range.
    """
    if isinstance(n_users, bool) or not isinstance(n_users, (int, np.integer)) or n_users < 1:
        raise ValueError(f"n_users={n_users!r} is out of range: allowed integers >= 1")
    if max_steps < 1:
        raise ValueError(f"max_steps={max_steps!r} is out of range: allowed >= 1")
    targets = dict(targets or {})
    if any(not isinstance(name, str) or not name for name in targets):
        raise ValueError(f"target names must be non-empty strings, got {sorted(map(repr, targets))}")
    return targets


class UserRows:
    """The user id and step of every env row, advanced once per env step."""

    def __init__(self, num_envs: int, n_users: int):
        self.n_users = n_users
        self.user = np.arange(num_envs, dtype=np.int64)
        self.step = np.zeros(num_envs, np.int64)
        self.finished = np.zeros(n_users, bool)
        self._next_user = num_envs
        self._previous_done = np.zeros(num_envs, bool)

    def unfinished(self, max_steps: int) -> RuntimeError:
        """The error a collector raises when ``max_steps`` env steps ended before every kept user did."""
        return RuntimeError(f"{np.count_nonzero(~self.finished)} of {self.n_users} users had not finished after "
                            f"max_steps={max_steps} env steps")

    def counted(self) -> np.ndarray:
        """``(B,)`` rows whose coming step is an interaction of a kept user (ask before stepping)."""
        return ~self._previous_done & (self.user < self.n_users)

    def after_step(self, info: Mapping[str, Any], terminated: np.ndarray,
                   truncated: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Account for the env step just taken.

        Returns ``(keep, user, step, done)``: the rows whose step belongs in the log, every row's user
        id and step for that step, and the kept rows whose episode it ended. Rows the step reset
        (``info["autoreset"]``, else the rows whose episode ended on the step before) start new users.
        """
        b = len(self.user)
        reset = np.asarray(info["autoreset"], bool).reshape(b) if "autoreset" in info else self._previous_done
        if reset.any():
            self.user[reset] = self._next_user + np.arange(np.count_nonzero(reset))
            self._next_user += int(np.count_nonzero(reset))
            self.step[reset] = 0
        keep = ~reset & (self.user < self.n_users)
        user, step = self.user.copy(), self.step.copy()
        self.step[~reset] += 1
        ended = (np.asarray(terminated, bool).reshape(b) | np.asarray(truncated, bool).reshape(b)) & ~reset
        self._previous_done = ended
        done = ended & (user < self.n_users)
        self.finished[user[done]] = True
        return keep, user, step, done

    @property
    def all_finished(self) -> bool:
        return bool(self.finished.all())


def sorted_columns(parts: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The steps collected per env step, concatenated and sorted by user then step."""
    columns = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.lexsort((columns["step"], columns["user"]))
    return {k: v[order] for k, v in columns.items()}


def true_state(info: Mapping[str, Any], b: int) -> dict[str, np.ndarray]:
    """The true state before a step as log columns (``interest``, ``satiation`` ``(B, T)``, ``budget``
    ``(B,)``), copied so the env's next step cannot change them; empty when the env exposes none."""
    state = info.get("user_state")
    if state is None:
        return {}
    return {"interest": np.atleast_2d(state["interest"]).reshape(b, -1).copy(),
            "satiation": np.atleast_2d(state["satiation"]).reshape(b, -1).copy(),
            "budget": np.asarray(state["budget"], np.float64).reshape(b)}
