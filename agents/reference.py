"""Reference policies: random, and two oracles that read the true user state from ``info``.

``myopic`` maximises the exact expected immediate reward (on slates, of the whole slate under the
env's choice model: ``recsim_env.slates``); ``heuristic`` trades it against what the click does to
the user's budget and boredom, and so keeps users longer. The gap between the two is the long-term
tension the simulator exists to show.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from agents.base import Recommender
from recsim_env.logs.steps import LoggedSteps
from recsim_env.simulator import Simulator
from recsim_env.slates import best_slates, candidate_slates, slate_probabilities

#: Catalogue items x topics scored at once by ``catalogue_scores`` (bounds its temporaries).
CHUNK_ELEMENTS = 1 << 22


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


def _check_catalogue(sim: Simulator, steps: LoggedSteps) -> None:
    if steps.n_items != sim.catalog.n_items:
        raise ValueError(f"the logged steps have {steps.n_items} catalogue items, the policy's env "
                         f"{sim.catalog.n_items}: they come from another catalogue")


def _by_chunks(score: Callable[[slice, np.ndarray], np.ndarray], steps: LoggedSteps,
               per_step: int) -> np.ndarray:
    """``score(rows, items)`` over chunks of steps, with ``items`` every catalogue id ``(chunk, n_items)``."""
    n = len(steps)
    chunk = max(1, CHUNK_ELEMENTS // max(per_step, 1))
    everything = np.arange(steps.n_items)
    out: np.ndarray | None = None
    for start in range(0, n, chunk):
        rows = slice(start, min(start + chunk, n))
        part = score(rows, np.broadcast_to(everything, (rows.stop - rows.start, steps.n_items)))
        if out is None:  # the scorer's own dtype: rounding to another could create ties
            out = np.empty((n, steps.n_items), part.dtype)
        out[rows] = part
    return np.empty((0, steps.n_items), np.float32) if out is None else out


class RandomPolicy(Recommender):
    """Uniformly random candidates (distinct within a slate), from a seeded generator.

    ``scores`` returns the very numbers ``act`` ranked on the same step, so that accuracy is measured
    on the ranking that was acted on; ``catalogue_scores`` draws from a second stream of the same seed.
    """

    name = "random"

    def __init__(self, env: gym.Env | gym.vector.VectorEnv, seed: int = 0):
        super().__init__(env)
        self.sim = _simulator(env)
        self.slate_size = self.sim.config.slate_size
        self.rng = np.random.default_rng(seed)
        self._catalogue_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
        self._last: tuple[Any, np.ndarray] | None = None

    def act(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        ranking = self.rng.random(_batched(info, "candidates").shape)
        self._last = (info["candidates"], ranking)
        return _top_positions(ranking, self.slate_size)

    def scores(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        """The ranking ``act`` drew for these candidates; a fresh draw if ``act`` did not see them."""
        if self._last is not None:
            seen, ranking = self._last
            if seen is info["candidates"] or (np.shape(seen) == np.shape(info["candidates"])
                                              and np.array_equal(seen, info["candidates"])):
                return ranking
        ranking = self.rng.random(_batched(info, "candidates").shape)
        self._last = (info["candidates"], ranking)
        return ranking

    def catalogue_scores(self, steps: LoggedSteps) -> np.ndarray:
        """Uniform scores ``(S, n_items)`` from the catalogue stream: the chance level of every metric."""
        _check_catalogue(self.sim, steps)
        return self._catalogue_rng.random((len(steps), steps.n_items))


class _Oracle(Recommender):
    """What both oracles share: the env's simulator, the true state from ``info``, the exact click model."""

    def __init__(self, env: gym.Env | gym.vector.VectorEnv):
        super().__init__(env)
        self.sim = _simulator(env)

    def _state(self, info: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        state = info["user_state"]
        return (_batched(info, "candidates"), np.atleast_2d(state["interest"]),
                np.atleast_2d(state["satiation"]))

    def click_probability(self, steps: LoggedSteps) -> np.ndarray:
        """Exact probability ``(S, K)`` of a click on each shown item, given the whole shown slate."""
        _check_catalogue(self.sim, steps)
        if steps.shown.shape[1] == 1:
            return self.sim.click_probability(steps.shown, steps.interest, steps.satiation)
        return slate_probabilities(self.sim, steps.shown, steps.interest, steps.satiation)[:, :-1]


class MyopicPolicy(_Oracle):
    """Shows what has the highest exact expected immediate reward.

    One item: the candidate with the highest expected reward. A slate: the ordered slate with the
    highest expected reward of the whole slate under the env's choice model
    (:func:`recsim_env.slates.best_slates`), which may show fewer than ``slate_size`` items (a repeated
    index) when adding one would take clicks from better ones.

    Raises:
        ValueError: on construction, when the env's slates are too many to enumerate (sizes named).
    """

    name = "myopic"

    def __init__(self, env: gym.Env | gym.vector.VectorEnv):
        super().__init__(env)
        cfg = self.sim.config
        if cfg.slate_size > 1:
            candidate_slates(cfg.n_candidates, cfg.slate_size)  # refuses a space too large, before the first step
        self._last: tuple[tuple[Any, ...], np.ndarray] | None = None

    def _best_slate(self, info: dict[str, Any]) -> np.ndarray:
        """Slate positions ``(B, K)`` of ``best_slates``, kept for ``scores`` on the same step (the very
        same candidate and state arrays; anything else is searched again)."""
        key = (info["candidates"], info["user_state"]["interest"], info["user_state"]["satiation"])
        if self._last is not None and all(a is b for a, b in zip(self._last[0], key)):
            return self._last[1]
        positions, _ = best_slates(self.sim, *self._state(info))
        self._last = (key, positions)
        return positions

    def act(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        if self.sim.config.slate_size == 1:
            return _top_positions(self.scores(obs, info), 1)
        self._last = None  # a new step: search again even if the caller reuses its arrays
        return self._best_slate(info)

    def scores(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        """Expected reward of each candidate alone; on slates the shown slate's items rank first, in order."""
        alone = self.sim.expected_reward(*self._state(info))
        if self.sim.config.slate_size == 1:
            return alone
        positions = self._best_slate(info)
        ranking = alone.astype(np.float64)
        top = ranking.max(axis=1, keepdims=True) + 1.0
        for j in range(positions.shape[1] - 1, -1, -1):  # the first position last: a repeat keeps its first rank
            np.put_along_axis(ranking, positions[:, j:j + 1], top + (positions.shape[1] - j), axis=1)
        return ranking

    def catalogue_scores(self, steps: LoggedSteps) -> np.ndarray:
        """Exact expected immediate reward ``(S, n_items)`` of every catalogue item shown alone."""
        _check_catalogue(self.sim, steps)
        return _by_chunks(lambda rows, items: self.sim.expected_reward(items, steps.interest[rows],
                                                                       steps.satiation[rows]),
                          steps, steps.n_items * (self.sim.catalog.n_topics + 6))


class HeuristicPolicy(_Oracle):
    """One-step lookahead with a linear value of the user's remaining budget.

    ``Q(i) = E[reward now] + budget_value * E[budget after] * E[1 - leaving hazard after]``, with the
    expectations over click / no click taken exactly from the choice model. Spending budget on
    engagement now is thereby weighed against the engagement the same budget buys later: quality
    refills the budget, clickbait drains it, and a topic the user is tired of raises the hazard
    of losing the whole remaining budget.

    Item-wise: each item is valued as if shown alone, and a slate is the ``slate_size`` best items
    (not the best slate), a deliberate simplification of a reference that already beats the myopic one.
    """

    name = "heuristic"

    def __init__(self, env: gym.Env | gym.vector.VectorEnv, budget_value: float = 0.8):
        super().__init__(env)
        self.budget_value = budget_value

    def act(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        return _top_positions(self.scores(obs, info), self.sim.config.slate_size)

    def scores(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        items, interest, satiation = self._state(info)
        return self._values(items, interest, satiation, np.atleast_1d(info["user_state"]["budget"]))

    def catalogue_scores(self, steps: LoggedSteps) -> np.ndarray:
        """The heuristic's value ``(S, n_items)`` of every catalogue item (what it would rank)."""
        _check_catalogue(self.sim, steps)
        return _by_chunks(lambda rows, items: self._values(items, steps.interest[rows], steps.satiation[rows],
                                                           steps.budget[rows]),
                          steps, steps.n_items * (self.sim.catalog.n_topics + 6))

    def _values(self, items: np.ndarray, interest: np.ndarray, satiation: np.ndarray,
                budget: np.ndarray) -> np.ndarray:
        """``Q`` of each item ``(B, M)`` for users' true interest, satiation ``(B, T)`` and budget ``(B,)``."""
        sim, cfg = self.sim, self.sim.config.user
        budget = budget[:, None]
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
