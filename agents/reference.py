"""Reference policies: random, and two oracles that read the true user state from ``info``.

``myopic`` maximises the exact expected immediate reward; ``heuristic`` trades it against what the
click does to the user's budget and boredom, and so keeps users longer. The gap between the two is
the long-term tension the simulator exists to show.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from agents.base import Recommender
from recsim_env.simulator import Simulator


def _simulator(env: gym.Env | gym.vector.VectorEnv) -> Simulator:
    sim = getattr(env.unwrapped, "simulator", None)
    if not isinstance(sim, Simulator):
        raise TypeError(f"{type(env.unwrapped).__name__} has no recsim_env simulator to read the user state from")
    return sim


def _batched(info: dict[str, Any], key: str) -> np.ndarray:
    value = np.asarray(info[key])
    return value[None] if value.ndim == (1 if key == "candidates" else 0) else value


def _top_positions(scores: np.ndarray, slate_size: int) -> np.ndarray:
    """Best ``slate_size`` positions per user, best first; ``(B,)`` when one item is shown."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :slate_size]
    return order[:, 0] if slate_size == 1 else order


class RandomPolicy(Recommender):
    """Uniformly random candidates (distinct within a slate), from a seeded generator."""

    name = "random"

    def __init__(self, env: gym.Env | gym.vector.VectorEnv, seed: int = 0):
        super().__init__(env)
        self.slate_size = _simulator(env).config.slate_size
        self.rng = np.random.default_rng(seed)

    def act(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        return _top_positions(self.scores(obs, info), self.slate_size)

    def scores(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        return self.rng.random(_batched(info, "candidates").shape)


class MyopicPolicy(Recommender):
    """Shows the candidates with the highest exact expected immediate reward."""

    name = "myopic"

    def __init__(self, env: gym.Env | gym.vector.VectorEnv):
        super().__init__(env)
        self.sim = _simulator(env)

    def scores(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        state = info["user_state"]
        return self.sim.expected_reward(_batched(info, "candidates"), np.atleast_2d(state["interest"]),
                                        np.atleast_2d(state["satiation"]))

    def act(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        return _top_positions(self.scores(obs, info), self.sim.config.slate_size)


class HeuristicPolicy(MyopicPolicy):
    """One-step lookahead with a linear value of the user's remaining budget.

    ``Q(i) = E[reward now] + budget_value * E[budget after] * E[1 - leaving hazard after]``, with the
    expectations over click / no click taken exactly from the choice model. Spending budget on
    engagement now is thereby weighed against the engagement the same budget buys later: quality
    refills the budget, clickbait drains it, and a topic the user is tired of raises the hazard
    of losing the whole remaining budget.
    """

    name = "heuristic"

    def __init__(self, env: gym.Env | gym.vector.VectorEnv, budget_value: float = 0.8):
        super().__init__(env)
        self.budget_value = budget_value

    def scores(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        sim, cfg = self.sim, self.sim.config.user
        state = info["user_state"]
        items = _batched(info, "candidates")
        interest, satiation = np.atleast_2d(state["interest"]), np.atleast_2d(state["satiation"])
        budget = np.atleast_1d(state["budget"])[:, None]
        p_click = sim.click_probability(items, interest, satiation)
        gain = sim.expected_reward(items, interest, satiation) / np.maximum(p_click, 1e-12)
        decayed = satiation * cfg.satiation_decay
        hazard_skip = cfg.hazard_base + cfg.hazard_boredom * decayed.max(axis=1, keepdims=True)
        after = decayed[:, None, :] + cfg.satiation_gain * (1 - decayed[:, None, :]) * sim.catalog.features[items]
        hazard_click = cfg.hazard_base + cfg.hazard_boredom * after.max(axis=2)
        budget_skip = np.clip(budget - cfg.step_cost, 0.0, cfg.max_budget)
        budget_click = np.clip(budget - cfg.step_cost - gain + cfg.refill_rate * sim.catalog.quality[items],
                               0.0, cfg.max_budget)
        value_click = gain + self.budget_value * budget_click * (1.0 - hazard_click)
        value_skip = self.budget_value * budget_skip * (1.0 - hazard_skip)
        return p_click * value_click + (1.0 - p_click) * value_skip
