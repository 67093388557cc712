"""Stochastic behaviour policies made from any recommender, with the exact probability of every action.

Off-policy evaluation reweights a log by how likely the behaviour policy was to take each logged
action, so the policy that collected the log must know those probabilities exactly, and ``act`` must
sample from the very numbers it reports. ``EpsilonGreedy`` and ``Softmax`` wrap any recommender's
``scores``: the wrapped agent ranks, the wrapper randomises, from its own seeded generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from agents.base import Recommender
from recsim_env.config import Validated, bounded


@dataclass(frozen=True)
class EpsilonGreedyConfig(Validated):
    """Exploration rate and seed of an epsilon-greedy behaviour policy."""

    epsilon: float = bounded(0.1, ge=0.0, le=1.0, doc="probability of a uniformly random candidate")
    seed: int = bounded(0, ge=0, lt=2 ** 63, doc="seed of the policy's own generator")


@dataclass(frozen=True)
class SoftmaxConfig(Validated):
    """Temperature and seed of a softmax (Boltzmann) behaviour policy."""

    temperature: float = bounded(1.0, gt=0.0, lt=float("inf"), doc="score scale: small is near greedy")
    seed: int = bounded(0, ge=0, lt=2 ** 63, doc="seed of the policy's own generator")


def sample_rows(probabilities: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One index per row of ``probabilities`` ``(B, N)``, drawn by inverse CDF from one uniform per row.

    The CDF is normalised by its last entry, so rounding in the sum never leaves a gap at 1 and an
    entry of probability 0 is never drawn.
    """
    cdf = np.cumsum(probabilities, axis=1)
    u = rng.random(len(probabilities)) * cdf[:, -1]
    index = (cdf <= u[:, None]).sum(axis=1)
    return np.minimum(index, probabilities.shape[1] - 1)


def _candidates(info: dict[str, Any]) -> np.ndarray | None:
    """The step's candidate ids (part of what identifies a step), or None for envs without them."""
    return np.array(info["candidates"], copy=True) if "candidates" in info else None


class _Stochastic(Recommender):
    """What both wrappers share: the wrapped agent, a seeded generator, the last step's probabilities."""

    def __init__(self, agent: Recommender, seed: int):
        super().__init__(agent)  # the agent carries the spaces it was built for
        if not isinstance(self.action_space, gym.spaces.Discrete):
            raise TypeError(f"{type(self).__name__} gives exact probabilities for one item per step "
                            f"(a Discrete action space), not {self.action_space}; slates are not supported")
        self.agent = agent
        self.rng = np.random.default_rng(seed)
        self._last: tuple[np.ndarray, np.ndarray | None, np.ndarray] | None = None

    def _probabilities(self, scores: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _from_scores(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        scores = np.asarray(self.agent.scores(obs, info), np.float64)
        n = int(self.action_space.n)
        if scores.ndim != 2 or scores.shape[1] != n:
            raise ValueError(f"{self.agent.name}.scores returned shape {scores.shape}: expected (B, {n})")
        if np.isnan(scores).any():
            raise ValueError(f"{self.agent.name}.scores returned NaN: the probabilities would be undefined")
        return self._probabilities(scores)

    def act(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        """Draws each user's candidate from ``action_probabilities`` of this step.

        The wrapped agent's ``act`` runs first, so agents that keep a history update it once per step
        (its action itself is not used); its ``scores`` then give the probabilities.
        """
        self.agent.act(obs, info)
        probabilities = self._from_scores(obs, info)
        self._last = (np.array(obs, copy=True), _candidates(info), probabilities)
        return sample_rows(probabilities, self.rng)

    def action_probabilities(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        """Probability ``(B, N)`` of each candidate: after ``act`` on the same observations, the very
        numbers it sampled from; otherwise computed from the agent's ``scores`` alone."""
        if self._last is not None:
            seen, candidates, probabilities = self._last
            offered = _candidates(info)
            if seen.shape == np.shape(obs) and np.array_equal(seen, obs) and (
                    (candidates is None and offered is None)
                    or (candidates is not None and offered is not None and np.array_equal(candidates, offered))):
                return probabilities
        return self._from_scores(obs, info)

    def scores(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        """The wrapped agent's ranking of the candidates."""
        return self.agent.scores(obs, info)


class EpsilonGreedy(_Stochastic):
    """With probability ``epsilon`` a uniformly random candidate, otherwise the agent's best-scored one.

    Tied best scores share the greedy mass equally, so the reported probabilities stay exact whatever
    the agent's own tie-break would have been.
    """

    def __init__(self, agent: Recommender, epsilon: float = 0.1, seed: int = 0):
        self.config = EpsilonGreedyConfig(epsilon=epsilon, seed=seed)
        super().__init__(agent, self.config.seed)
        self.name = f"epsilon_greedy({agent.name})"

    def _probabilities(self, scores: np.ndarray) -> np.ndarray:
        eps = self.config.epsilon
        best = scores == scores.max(axis=1, keepdims=True)
        greedy = best / best.sum(axis=1, keepdims=True)
        return eps / scores.shape[1] + (1.0 - eps) * greedy


class Softmax(_Stochastic):
    """Each candidate with probability proportional to ``exp(score / temperature)``."""

    def __init__(self, agent: Recommender, temperature: float = 1.0, seed: int = 0):
        self.config = SoftmaxConfig(temperature=temperature, seed=seed)
        super().__init__(agent, self.config.seed)
        self.name = f"softmax({agent.name})"

    def _probabilities(self, scores: np.ndarray) -> np.ndarray:
        top = scores.max(axis=1, keepdims=True)
        if not np.isfinite(top).all():
            raise ValueError(f"{self.agent.name}.scores has a row without a finite best score")
        weights = np.exp((scores - top) / self.config.temperature)
        return weights / weights.sum(axis=1, keepdims=True)
