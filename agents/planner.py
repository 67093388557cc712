"""A planning ceiling: Monte-Carlo rollouts of the simulator itself from each user's true state.

``planner`` is a reference policy like the oracles of :mod:`agents.reference`: it reads the true
user state from ``info`` and so shows how much a policy that knows the user could earn. At each
step it copies every user once per (candidate, rollout) into one batched
:class:`~recsim_env.simulator.Simulator`, shows each copy its candidate, lets the ``heuristic``
choose for ``horizon - 1`` more steps, adds a value of the budget the copy has left, and shows the
candidate with the highest mean. This is one step of policy improvement over the heuristic
(a rollout algorithm): with enough rollouts and a fair terminal value it does at least as well
as the heuristic.

* The copies of one user share their random numbers across candidates (common random numbers):
  every candidate is tried on the same futures (clicks, leaving, next candidates), so the
  differences between candidates are far less noisy than the values themselves.
* Its randomness comes from its own seeded generator, never the env's: planning leaves the env's
  trajectory of random numbers as it would be without a planner.
* A user who leaves and comes back (``CrossSessionDrift``) keeps earning inside a rollout; a copy
  that is gone for good earns nothing more.

>>> import gymnasium as gym, recsim_env, agents
>>> env = gym.make_vec("recsim_env/InterestDrift-v0", num_envs=500, vectorization_mode="vector_entry_point")
>>> agents.evaluate(agents.make("planner", env), env, seed=1_000_000).returns.mean()  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from agents.base import ACTIVE, Recommender
from agents.reference import HeuristicPolicy
from recsim_env import dynamics
from recsim_env.config import Validated, bounded
from recsim_env.simulator import Simulator
from recsim_env.users import UserState


@dataclass(frozen=True)
class PlannerConfig(Validated):
    """How much the planner simulates per step, and what it values at the end of a rollout.

    The cost of a step is about ``users x candidates x rollouts x horizon`` simulated user-steps,
    each with a heuristic choice. ``candidates`` below the env's candidate count plans only the
    heuristic's best few (the others are rarely the best, and each costs as much as the rest).
    The defaults were chosen on two sets of 500 users (seeds 1,000,002 and 1,000,004, not the users
    the benchmark suite reports on; heuristic 107.4 and 112.8): 3 candidates x 16 rollouts earned
    110.9 and 115.0, 5 x 8 earned 115.9 and 116.9, 4 x 12 121.7 and 115.5, 5 x 16 119.6 and 126.9 at
    about twice the time of 5 x 12. Differences of this size are within the noise of 500 users: the
    planner's own seed alone moves one set's mean between 110 and 126 (a few long-lived users earn
    much of the total).
    """

    rollouts: int = bounded(12, ge=1, le=100_000, doc="Monte-Carlo rollouts per (user, candidate)")
    horizon: int = bounded(4, ge=1, le=10_000, doc="simulated steps per rollout, the candidate's own first")
    candidates: int = bounded(5, ge=0, le=1000, doc="candidates planned per user, the heuristic's best (0 = all)")
    terminal_value: float = bounded(110.0, ge=0.0, le=1e6, doc="value at the horizon of a user with unlimited budget")
    terminal_budget_scale: float = bounded(14.0, gt=0.0, le=1e6, doc="budget at which the terminal value reaches 63%")
    budget_value: float = bounded(0.8, ge=0.0, le=1000.0, doc="the base heuristic's value of budget")
    max_copies: int = bounded(262_144, ge=1, le=10**9, doc="user copies simulated at once (bounds memory)")
    seed: int = bounded(0, ge=0, le=2**32 - 1, doc="seed of the planner's own generator")


class PlannerPolicy(Recommender):
    """Shows the candidate with the highest Monte-Carlo value under heuristic rollouts (see the module)."""

    name = "planner"

    def __init__(self, env: gym.Env | gym.vector.VectorEnv, config: PlannerConfig | None = None, **overrides: Any):
        super().__init__(env)
        self.config = dataclasses.replace(config or PlannerConfig(), **overrides)
        sim = getattr(env.unwrapped, "simulator", None)
        if not isinstance(sim, Simulator):
            raise TypeError(f"{type(env.unwrapped).__name__} has no recsim_env simulator to plan with")
        if sim.config.slate_size != 1:
            raise TypeError(f"the planner shows one item per step; this env shows slates of "
                            f"{sim.config.slate_size} (use InterestDrift-v0 or CrossSessionDrift-v0)")
        self.sim = sim
        self.base = HeuristicPolicy(env, budget_value=self.config.budget_value)
        self.rng = np.random.default_rng(self.config.seed)
        self._cache: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # candidates, interest, values

    def act(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        """The best candidate per user ``(B,)`` by the rollout estimates (cached for ``scores``)."""
        return self._values(info, fresh=True).argmax(axis=1)

    def scores(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        """The estimates ``act`` acted on for this step ``(B, C)``; planned afresh if ``act`` was not called.

        Candidates the planner did not simulate (beyond ``config.candidates``) rank below the
        simulated ones, in the heuristic's order.
        """
        return self._values(info, fresh=False)

    def _values(self, info: dict[str, Any], fresh: bool) -> np.ndarray:
        candidates = np.asarray(info["candidates"])
        candidates = candidates[None] if candidates.ndim == 1 else candidates
        interest = np.asarray(info["user_state"]["interest"])
        if not fresh and self._cache is not None:
            cached_candidates, cached_interest, values = self._cache
            if np.array_equal(cached_candidates, candidates) and np.array_equal(cached_interest, interest):
                return values
        state = UserState.from_snapshot(info["user_state"])
        active = info.get(ACTIVE)
        if active is None or np.all(active):
            values = self.plan(state, candidates)
        else:  # plan only for the users whose actions count; the others get the base heuristic's scores
            values = self._heuristic(state, candidates).astype(np.float64)  # the plans' precision
            rows = np.flatnonzero(active)
            if len(rows):
                values[rows] = self.plan(state.take(rows), candidates[rows])
        self._cache = (candidates.copy(), interest.copy(), values)
        return values

    def plan(self, state: UserState, candidates: np.ndarray) -> np.ndarray:
        """Estimated value ``(B, C)`` of showing each candidate to users in ``state``, from ``self.rng``."""
        n, c = candidates.shape
        heuristic = self._heuristic(state, candidates)
        k = c if self.config.candidates in (0, c) else min(self.config.candidates, c)
        order = np.argsort(-heuristic, axis=1, kind="stable")
        planned = order[:, :k]  # (B, k) positions, the heuristic's best first
        estimates = np.empty((n, k))
        per_user = k * self.config.rollouts
        chunk = max(1, self.config.max_copies // per_user)
        for start in range(0, n, chunk):
            rows = slice(start, min(start + chunk, n))
            estimates[rows] = self._rollouts(state.take(np.arange(n)[rows]), candidates[rows], planned[rows])
        if k == c:
            values = np.empty((n, c))
            np.put_along_axis(values, planned, estimates, axis=1)
            return values
        # The rest rank below every planned candidate, in the heuristic's order.
        values = heuristic - heuristic.max(axis=1, keepdims=True) + estimates.min(axis=1, keepdims=True) - 1.0
        np.put_along_axis(values, planned, estimates, axis=1)
        return values

    def _rollouts(self, state: UserState, candidates: np.ndarray, planned: np.ndarray) -> np.ndarray:
        """Mean rollout return ``(U, k)`` of each user's ``planned`` positions: one batched simulator of
        ``U x k x rollouts`` copies, rows ordered (user, candidate, rollout)."""
        cfg = self.config
        u, k = planned.shape
        r = cfg.rollouts
        user = np.repeat(np.arange(u), k * r)
        rollout = np.tile(np.arange(r), u * k)
        sim = self.sim.spawn(state.take(user), candidates[user], common=user * r + rollout)
        positions = np.repeat(planned.reshape(-1), r)[:, None]
        total = np.zeros(u * k * r)
        # Probability that the copy is still there; leaving by boredom is taken in expectation on one session.
        survival = np.ones(u * k * r)
        expected = not self.sim.config.session.multi_session
        for t in range(cfg.horizon):
            if t:
                positions = self._heuristic(sim.state, sim.candidates).argmax(axis=1)[:, None]
            out = sim.step(positions, self.rng)
            total += survival * out.reward
            if expected:
                # A hazard exit changes nothing of a single-session copy's state: keep simulating it,
                # weighted by the chance it stayed; running out of budget still ends it.
                survival *= (sim.state.budget > 0) * (1.0 - dynamics.leave_probability(sim.state, self.sim.config.user))
            else:
                survival *= ~out.terminated  # who left may come back: sampled, as the env does
        total += survival * self.terminal_value(sim.state.budget)
        return total.reshape(u, k, r).mean(axis=2)

    def terminal_value(self, budget: np.ndarray) -> np.ndarray:
        """What a user still there at the horizon is worth: ``V (1 - exp(-budget / scale))``.

        The shape of the heuristic's own return-to-go against the budget left (measured by rolling
        it out to the end from the same states with the budget set to 1 to 80 on the default preset:
        10, 57, 84, 105 and 115 at budgets 1, 10, 20, 40 and 80): a unit of budget is worth much when
        the user is about to run out, little when the budget is full.
        """
        cfg = self.config
        return cfg.terminal_value * -np.expm1(budget / -cfg.terminal_budget_scale)

    def _heuristic(self, state: UserState, candidates: np.ndarray) -> np.ndarray:
        """The base heuristic's scores of ``candidates`` for users in ``state``."""
        user_state = {"interest": state.interest, "satiation": state.satiation, "budget": state.budget}
        return self.base.scores(None, {"user_state": user_state, "candidates": candidates})  # type: ignore[arg-type]
