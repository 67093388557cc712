"""A small, fully observed finite MDP built from the simulator's own components, and its exact solution.

One stable user (fixed interest profile) is offered two archetypal items per topic: an honest one
(moderate appeal, good quality) and clickbait (high appeal, poor quality). The state is the user's
satiation per topic and their budget, each on a grid. The choice model, the response and the
dynamics are the simulator's functions applied to every (state, action) pair at once; the next
continuous state is mapped onto the grid by stochastic rounding, which gives exact transition
probabilities. Value iteration on the exposed arrays therefore yields the exact optimum of the
environment the agent is trained on.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from recsim_env import choice, dynamics, response
from recsim_env.config import ChoiceConfig, ResponseConfig, UserConfig, Validated, bounded
from recsim_env.users import UserState


@dataclass(frozen=True)
class TabularConfig(Validated):
    """Size of the finite MDP and the two item archetypes per topic."""

    n_topics: int = bounded(2, ge=1, le=6, doc="topics (each has an honest and a clickbait item)")
    satiation_levels: int = bounded(3, ge=2, le=6, doc="grid points of each topic's satiation in [0, 1]")
    budget_levels: int = bounded(4, ge=1, le=20, doc="grid points of the budget in (0, max_budget]")
    honest_quality: float = bounded(0.7, ge=-1.0, le=1.0, doc="quality of the honest items")
    honest_appeal: float = bounded(0.1, ge=0.0, le=1.0, doc="appeal of the honest items")
    clickbait_quality: float = bounded(-0.2, ge=-1.0, le=1.0, doc="quality of the clickbait items")
    clickbait_appeal: float = bounded(1.0, ge=0.0, le=1.0, doc="appeal of the clickbait items")
    item_length: float = bounded(4.0, gt=0.0, le=100.0, doc="length of every item")
    exploring_starts: bool = False
    top_interest: float = bounded(0.9, ge=-1.0, le=1.0, doc="interest in topic 0")
    interest_spread: float = bounded(1.2, ge=0.0, le=2.0, doc="interest drop from topic 0 to the last topic")
    user: UserConfig = field(default_factory=lambda: UserConfig(hazard_base=0.02, max_budget=40.0,
                                                                 initial_budget=30.0, exogenous_drift=0.0))
    choice: ChoiceConfig = field(default_factory=ChoiceConfig)
    response: ResponseConfig = field(default_factory=ResponseConfig)


@dataclass(frozen=True)
class TabularMDP:
    """Exact arrays of the finite MDP. State ``n_states - 1`` is the absorbing terminal state.

    Attributes:
        transition: ``P[s, a, s']``, rows sum to one.
        reward: expected immediate reward ``R[s, a]``.
        click_probability: ``p[s, a]``; a click earns ``engagement[s, a]``, no click earns 0.
        next_if_click, next_if_skip: ``(S, A, S)`` next-state distributions of the two outcomes.
        initial_state: the state every episode starts in.
        satiation_grid, budget_grid: the grid values behind the state indices.
    """

    transition: np.ndarray
    reward: np.ndarray
    click_probability: np.ndarray
    engagement: np.ndarray
    next_if_click: np.ndarray
    next_if_skip: np.ndarray
    initial_state: int
    satiation_grid: np.ndarray
    budget_grid: np.ndarray
    n_topics: int

    @property
    def n_states(self) -> int:
        return self.transition.shape[0]

    @property
    def n_actions(self) -> int:
        return self.transition.shape[1]

    @property
    def terminal(self) -> int:
        return self.n_states - 1

    @property
    def min_exit_probability(self) -> float:
        """The least probability, over live states and actions, of reaching the terminal state in one step.

        It is at least the leaving hazard's base rate, so under every policy an episode outlives
        ``n`` steps with probability at most ``(1 - min_exit_probability) ** n`` and lasts
        ``1 / min_exit_probability`` steps at most on average: episodes end without a time limit,
        and value iteration with discount 1 converges.
        """
        return float(self.transition[:self.terminal, :, self.terminal].min())

    def describe(self, state: int) -> dict[str, Any]:
        """Satiation per topic and budget of a state index (``{"terminal": True}`` for the terminal state)."""
        if state == self.terminal:
            return {"terminal": True}
        levels = np.unravel_index(state, self._shape())
        return {"satiation": self.satiation_grid[list(levels[:-1])], "budget": float(self.budget_grid[levels[-1]])}

    def describe_action(self, action: int) -> str:
        return f"topic {action // 2} {'clickbait' if action % 2 else 'honest'}"

    def _shape(self) -> tuple[int, ...]:
        return (self.satiation_grid.size,) * self.n_topics + (self.budget_grid.size,)


def _rounding_weights(values: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stochastic rounding of ``values`` onto an increasing ``grid``: lower index, upper index, P(upper)."""
    values = np.clip(values, grid[0], grid[-1])
    upper = np.clip(np.searchsorted(grid, values, side="left"), 1, grid.size - 1)
    lower = upper - 1
    share = (values - grid[lower]) / (grid[upper] - grid[lower])
    return lower, upper, share


def _grid_distribution(satiation: np.ndarray, budget: np.ndarray, sat_grid: np.ndarray,
                       budget_grid: np.ndarray) -> np.ndarray:
    """Distribution over grid states ``(N, S)`` of N continuous states; budget 0 means terminal."""
    n, t = satiation.shape
    n_sat, n_budget = sat_grid.size, budget_grid.size
    n_states = n_sat ** t * n_budget + 1
    # Budget rounds onto [0, grid...]; the 0 point is the terminal state.
    full_budget = np.concatenate([[0.0], budget_grid])
    dims = [_rounding_weights(satiation[:, i], sat_grid) for i in range(t)]
    dims.append(_rounding_weights(budget, full_budget))
    out = np.zeros((n, n_states))
    rows = np.arange(n)
    for corner in itertools.product((0, 1), repeat=t + 1):
        weight = np.ones(n)
        index = []
        for (lower, upper, share), bit in zip(dims, corner):
            weight = weight * (share if bit else 1.0 - share)
            index.append(upper if bit else lower)
        budget_index = index[-1] - 1  # -1 where the budget rounded to 0
        flat = np.ravel_multi_index(index[:-1] + [np.maximum(budget_index, 0)], (n_sat,) * t + (n_budget,))
        flat = np.where(budget_index < 0, n_states - 1, flat)
        np.add.at(out, (rows, flat), weight)
    return out


def build_mdp(config: TabularConfig) -> TabularMDP:
    """Apply the simulator's choice, response and dynamics to every (state, action) pair."""
    t, user = config.n_topics, config.user
    sat_grid = np.linspace(0.0, 1.0, config.satiation_levels)
    budget_grid = np.linspace(user.max_budget / config.budget_levels, user.max_budget, config.budget_levels)
    sat_states = np.array(list(itertools.product(sat_grid, repeat=t)))  # (G, T), row-major like ravel
    n_live = sat_states.shape[0] * budget_grid.size
    n_actions = 2 * t
    # Every (live state, action) pair becomes one user of a batch.
    state_sat = np.repeat(sat_states, budget_grid.size, axis=0)
    state_budget = np.tile(budget_grid, sat_states.shape[0])
    satiation = np.repeat(state_sat, n_actions, axis=0).astype(np.float32)
    budget = np.repeat(state_budget, n_actions).astype(np.float32)
    action = np.tile(np.arange(n_actions), n_live)
    topic, bait = action // 2, action % 2 == 1
    features = np.eye(t, dtype=np.float32)[topic][:, None, :]
    interest = np.broadcast_to(np.linspace(config.top_interest, config.top_interest - config.interest_spread, t,
                                           dtype=np.float32),
                               (action.size, t)).copy()
    quality = np.where(bait, config.clickbait_quality, config.honest_quality).astype(np.float32)
    appeal = np.where(bait, config.clickbait_appeal, config.honest_appeal).astype(np.float32)[:, None]
    affinity, boredom = choice.topic_match(interest, satiation, features)
    scores = choice.click_scores(affinity, boredom, appeal, config.choice)
    p_click = choice.outcome_probabilities(scores, config.choice)[:, 0]
    watch = response.watch_fraction(quality[:, None], affinity, boredom, config.response)[:, 0]
    engagement = (config.item_length * watch).astype(np.float32)
    satisfaction = response.satisfaction_from_watch(watch).astype(np.float32)

    def branch(click: bool) -> np.ndarray:
        state = UserState.empty(action.size, t)
        state.interest[:] = interest
        state.satiation[:] = satiation
        state.budget[:] = budget
        clicked = np.full(action.size, click)
        dynamics.advance(state, user, clicked, features[:, 0] * click, quality * click, engagement * click,
                         satisfaction * click, np.zeros((action.size, t), np.float32),
                         np.ones(action.size, np.float32))
        hazard = dynamics.leave_probability(state, user).astype(np.float64)
        dist = _grid_distribution(state.satiation.astype(np.float64), state.budget.astype(np.float64),
                                  sat_grid, budget_grid)
        dist *= (1.0 - hazard)[:, None]
        dist[:, -1] += hazard
        return dist.reshape(n_live, n_actions, -1)

    shape = (n_live, n_actions)
    on_click, on_skip = branch(True), branch(False)
    p = p_click.reshape(shape).astype(np.float64)
    terminal_row = np.zeros((1, n_actions, n_live + 1))
    terminal_row[..., -1] = 1.0
    next_if_click = np.concatenate([on_click, terminal_row])
    next_if_skip = np.concatenate([on_skip, terminal_row])
    p_full = np.concatenate([p, np.zeros((1, n_actions))])
    eng_full = np.concatenate([engagement.reshape(shape).astype(np.float64), np.zeros((1, n_actions))])
    transition = p_full[..., None] * next_if_click + (1.0 - p_full[..., None]) * next_if_skip
    start_budget = int(np.argmin(np.abs(budget_grid - user.initial_budget)))
    return TabularMDP(transition=transition, reward=p_full * eng_full, click_probability=p_full,
                      engagement=eng_full, next_if_click=next_if_click, next_if_skip=next_if_skip,
                      initial_state=start_budget, satiation_grid=sat_grid, budget_grid=budget_grid, n_topics=t)


def value_iteration(transition: np.ndarray, reward: np.ndarray, discount: float = 1.0, tol: float = 1e-10,
                    max_iterations: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    """Optimal values ``V*`` and action values ``Q*`` of a finite MDP (terminal states absorb at 0 reward).

    With ``discount = 1`` it converges when every policy ends the episode with probability one, as
    the hazard guarantees here.
    """
    values = np.zeros(transition.shape[0])
    for _ in range(max_iterations):
        q = reward + discount * transition @ values
        new = q.max(axis=1)
        if np.max(np.abs(new - values)) < tol:
            return new, q
        values = new
    raise RuntimeError(f"value iteration did not converge within {max_iterations} iterations")


def policy_value(transition: np.ndarray, reward: np.ndarray, policy: np.ndarray, discount: float = 1.0) -> np.ndarray:
    """Exact value of a deterministic policy by solving the linear Bellman equations (terminal fixed at 0)."""
    s = transition.shape[0]
    rows = np.arange(s)
    p_pi = transition[rows, policy]
    r_pi = reward[rows, policy]
    live = rows[:-1]
    a = np.eye(s - 1) - discount * p_pi[np.ix_(live, live)]
    values = np.zeros(s)
    values[live] = np.linalg.solve(a, r_pi[live])
    return values


class TabularDriftEnv(gym.Env[int, int]):
    """## Description
    The finite-MDP preset: one stable user, their satiation per topic and budget on a grid, and two
    items per topic (honest or clickbait). Fully observed; ``env.unwrapped.mdp`` exposes the exact
    transition and reward arrays, so ``value_iteration`` gives the optimal values.

    ## Action Space
    ``Discrete(2 * n_topics)``: action ``2k`` is topic k's honest item, ``2k + 1`` its clickbait.

    ## Observation Space
    ``Discrete(n_states)``: the state index (``mdp.describe`` decodes it); the last is terminal.

    ## Rewards
    The engagement of a click (0 without one); ``mdp.reward`` holds its expectation.

    ## Episode End
    When the user leaves: the budget runs out or the boredom hazard fires. Registered without a time
    limit, so that the env is the MDP ``value_iteration`` solves: every step leaves with probability
    at least ``mdp.min_exit_probability`` (at least ``hazard_base``), so every episode ends.

    ## Arguments
    ``config`` (a ``TabularConfig``) or any of its fields as keywords; ``exploring_starts=True``
    starts each episode in a uniformly drawn live state instead of the fixed initial one.

    ## Version History
    * v0: initial version.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, config: TabularConfig | None = None, render_mode: str | None = None, **overrides: Any):
        import dataclasses

        self.config = dataclasses.replace(config or TabularConfig(), **overrides)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode={render_mode!r}: allowed {self.metadata['render_modes']}")
        self.render_mode = render_mode
        self.mdp = build_mdp(self.config)
        self.observation_space = spaces.Discrete(self.mdp.n_states)
        self.action_space = spaces.Discrete(self.mdp.n_actions)
        self._cum_click = np.cumsum(self.mdp.next_if_click, axis=2)
        self._cum_skip = np.cumsum(self.mdp.next_if_skip, axis=2)
        self.state = self.mdp.initial_state
        self._last: tuple[int, bool] | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        # Exploring starts: begin anywhere, so that every state is visited often (for convergence checks).
        self.state = int(self.np_random.integers(self.mdp.terminal)) if self.config.exploring_starts \
            else self.mdp.initial_state
        self._last = None
        return self.state, {"state": self.mdp.describe(self.state)}

    def step(self, action: Any):
        if not (isinstance(action, (int, np.integer)) and not isinstance(action, bool)) \
                and not (isinstance(action, np.ndarray) and action.shape == () and action.dtype.kind in "iu"):
            raise TypeError(f"action {action!r} is invalid for {self.action_space}: expected an integer")
        if not 0 <= int(action) < self.mdp.n_actions:
            raise ValueError(f"action {action!r} is outside {self.action_space}: allowed [0, {self.mdp.n_actions})")
        if self.state == self.mdp.terminal:
            raise RuntimeError("the user has left: call reset() before step()")
        a, previous = int(action), self.state
        u_click, u_next = self.np_random.random(2)
        click = bool(u_click < self.mdp.click_probability[previous, a])
        cumulative = (self._cum_click if click else self._cum_skip)[previous, a]
        self.state = int(min(np.searchsorted(cumulative, u_next * cumulative[-1], side="right"),
                             self.mdp.n_states - 1))
        reward = float(self.mdp.engagement[previous, a]) if click else 0.0
        self._last = (a, click)
        terminated = self.state == self.mdp.terminal
        return self.state, reward, terminated, False, {"click": click, "state": self.mdp.describe(self.state)}

    def render(self) -> str | None:
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='ansi'")
            return None
        desc = self.mdp.describe(self.state)
        if desc.get("terminal"):
            text = "the user has left\n"
        else:
            sat = ", ".join(f"topic {k} {v:.2f}" for k, v in enumerate(desc["satiation"]))
            text = f"budget {desc['budget']:.1f}  satiation: {sat}\n"
        if self._last is not None:
            text += f"last: {self.mdp.describe_action(self._last[0])} -> {'click' if self._last[1] else 'no click'}\n"
        return text
