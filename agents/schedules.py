"""Schedules for exploration and learning rates, as functions of progress."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LinearSchedule:
    """Goes linearly from ``start`` to ``end`` over the first ``fraction`` of training, then stays."""

    start: float
    end: float
    fraction: float

    def __call__(self, progress: float) -> float:
        """Value at ``progress`` in [0, 1] (the share of training done)."""
        if self.fraction <= 0:
            return self.end
        t = min(max(progress / self.fraction, 0.0), 1.0)
        return self.start + t * (self.end - self.start)
