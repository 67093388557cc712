"""Training-episode returns in the order the episodes began, for learning curves without a length bias.

Users of a vector env run their episodes side by side, and short episodes end first. Listed in the
order they end, the first training episodes are the shortest ones, so a learning curve starts low
for that reason alone (and ends low for the same reason: the last episodes to end before training
stops are the ones that were short). Listed in the order they began (users in env order within a
step), each stretch of episodes is a fair sample of users. Episodes still running when training or
a segment of it stops are left out, and with them every episode that began later, since those
ended only because they were short.
"""

from __future__ import annotations

import numpy as np


class EpisodeLog:
    """Per-user episode starts and, once episodes end, their (start, user, return)."""

    def __init__(self, n_envs: int, step: int = 0):
        self.begun = np.full(n_envs, step, np.int64)
        self._ended: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # this segment, not yet cut
        self._kept: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def record(self, done: np.ndarray, returns: np.ndarray, step: int) -> None:
        """The users in ``done`` ended an episode with ``returns[done]``; their next one begins at ``step``."""
        users = np.flatnonzero(done)
        if users.size:
            self._ended.append((self.begun[users].copy(), users, np.asarray(returns, np.float64)[users]))
            self.begun[users] = step

    def restart(self, step: int) -> None:
        """Training stops or every user is reset: drop the running episodes and all that began after."""
        cut = int(self.begun.min())
        for begun, users, returns in self._ended:
            keep = begun < cut
            self._kept.append((begun[keep], users[keep], returns[keep]))
        self._ended.clear()
        self.begun[:] = step

    def returns_in_start_order(self) -> np.ndarray:
        """Returns of the kept episodes, ordered by start step, then user."""
        if not self._kept:
            return np.zeros(0)
        begun, users, returns = (np.concatenate(parts) for parts in zip(*self._kept))
        return returns[np.lexsort((users, begun))]
