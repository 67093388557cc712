"""The one recommender interface that benchmarks, notebooks and tests drive every agent through."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from recsim_env.logs.steps import LoggedSteps

#: Optional ``info`` key: a ``(B,)`` mask of the users whose actions count (an evaluation sets it for
#: the users still in their evaluated episode). Agents may skip costly work for the others; a planner
#: that would otherwise plan for every row of the vector env until its last user leaves is the reason.
ACTIVE = "active"


class Recommender(ABC):
    """Acts on a batch of observations (users first) and returns one action per user.

    ``info`` is the env's info dict for the same batch; only the reference policies read its true
    user state, learning agents use the observation alone.
    """

    name: str = "recommender"

    def __init__(self, env: gym.Env | gym.vector.VectorEnv):
        self.action_space = getattr(env, "single_action_space", env.action_space)
        self.observation_space = getattr(env, "single_observation_space", env.observation_space)

    @abstractmethod
    def act(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        """Actions for a batch: ``(B,)`` for one item per step, ``(B, K)`` for slates."""

    def scores(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        """Ranking scores of the step's candidates ``(B, N)``, higher first: what ``act`` would show.

        Called after ``act`` on the same step (agents that keep a history update it in ``act``).
        Benchmarks read next-click accuracy from it; an agent that cannot rank raises
        ``NotImplementedError``.
        """
        raise NotImplementedError(f"{self.name} does not rank candidates")

    def catalogue_scores(self, steps: LoggedSteps) -> np.ndarray:
        """Scores ``(S, n_items)`` of every catalogue item at each logged step, higher first.

        The one accuracy measure every agent is held to (``agents.log_accuracy``): the item the user
        clicked at the step is the target. Learning agents read ``steps.obs``, ``steps.history`` and
        ``steps.item_features``; oracles may read the true state (``steps.interest``, ...).
        """
        raise NotImplementedError(f"{self.name} does not rank the catalogue")

    def click_probability(self, steps: LoggedSteps) -> np.ndarray:
        """Predicted probability ``(S, K)`` that the user clicks each shown item (``steps.shown``).

        Only agents with a click model implement it; the others raise ``NotImplementedError``.
        """
        raise NotImplementedError(f"{self.name} does not predict clicks")

    def update(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        """Learn from experience; recommenders that do not learn ignore it."""
        return {}

    def save(self, path: str | Path) -> None:
        """Persist what was learned; nothing to save for fixed policies."""

    def load(self, path: str | Path) -> None:
        """Restore what ``save`` wrote; nothing to load for fixed policies."""
