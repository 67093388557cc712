"""How a user's hidden state moves after each recommendation: drift, satiation, budget, leaving."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from recsim_env._cache import f32, per_config
from recsim_env.config import SessionConfig, UserConfig
from recsim_env.users import UserState


@per_config
def _constants(config: UserConfig) -> SimpleNamespace:
    return SimpleNamespace(
        drift=f32(config.exogenous_drift), decay=f32(config.satiation_decay), gain=f32(config.satiation_gain),
        refill=f32(config.refill_rate), step_cost=f32(config.step_cost), max_budget=f32(config.max_budget),
        hazard_base=f32(config.hazard_base), hazard_boredom=f32(config.hazard_boredom),
        zero=f32(0.0), one=f32(1.0), minus_one=f32(-1.0), one_step=np.array(1, np.int64),
    )


def clip_(values: np.ndarray, low: float | np.ndarray, high: float | np.ndarray) -> None:
    """Clip in place (``np.clip`` costs several times more on the small arrays of one user)."""
    np.minimum(np.maximum(values, low, out=values), high, out=values)


def leave_probability(state: UserState, config: UserConfig) -> np.ndarray:
    """Per-step hazard of leaving: a small base rate that rises with boredom (top satiation)."""
    return _hazard(state.topics[:, 1], _constants(config))


def _hazard(satiation: np.ndarray, c: SimpleNamespace) -> np.ndarray:
    """``leave_probability`` from the satiation view and the cached constants (no second lookup)."""
    return np.maximum.reduce(satiation, axis=1) * c.hazard_boredom + c.hazard_base


def advance(state: UserState, config: UserConfig, clicked: np.ndarray, consumed: np.ndarray,
            quality: np.ndarray, engagement: np.ndarray, satisfaction: np.ndarray,
            interest_noise: np.ndarray, leave_uniform: np.ndarray, *, n_clicked: int | None = None) -> np.ndarray:
    """Apply one step of dynamics in place; return which users left the session.

    Args:
        clicked: ``(B,)`` bool, whether the user consumed an item this step.
        consumed: ``(B, T)`` topic mixture of the consumed item (zeros where nothing was clicked).
        quality: ``(B,)`` true quality of the consumed item (0 where nothing was clicked); only
            a click on a positive-quality item can raise the budget.
        engagement: ``(B,)`` time spent on it.
        satisfaction: ``(B,)`` in (-1, 1), 0 where nothing was clicked.
        interest_noise: ``(B, T)`` standard normals for the exogenous drift.
        leave_uniform: ``(B,)`` uniforms for the boredom hazard.
        n_clicked: the number of True in ``clicked``, when the caller knows it (else it is counted).
    """
    c = _constants(config)
    interest, satiation = state.topics[:, 0], state.topics[:, 1]
    if n_clicked is None:
        n_clicked = np.count_nonzero(clicked)
    consumed_any = n_clicked > 0  # else skip the terms that are zero without a click
    # Interest moves toward what satisfied and away from what disappointed, plus a slow random walk.
    if config.exogenous_drift > 0:
        interest += interest_noise * c.drift
    if consumed_any:
        interest += consumed * (state.drift_rate * satisfaction)[:, None]
    clip_(interest, c.minus_one, c.one)
    # Satiation decays everywhere and rises on the consumed topics.
    satiation *= c.decay
    if consumed_any:
        satiation += (c.one - satiation) * consumed * c.gain
    # Budget: browsing and watching spend it; quality refills it, low quality drains it further.
    budget = state.budget - c.step_cost
    if consumed_any:
        budget = budget + (quality * c.refill - engagement)
    np.minimum(np.maximum(budget, c.zero), c.max_budget, out=state.budget)
    _add(state.session_step, c.one_step)
    if consumed_any:
        # Adding one to all is adding ``clicked`` when everyone clicked, and cheaper than a bool operand.
        _add(state.session_clicks, c.one_step if n_clicked == clicked.shape[0] else clicked)
        _add(state.session_satisfaction, satisfaction)
    return (state.budget <= c.zero) | (leave_uniform < _hazard(satiation, c))


def _add(target: np.ndarray, increment: np.ndarray) -> None:
    """``target += increment`` for a per-user ``(B,)`` array.

    Computed out of place, then copied in: for a 1-element array (one user) numpy copies an input
    that overlaps the output before an in-place ufunc, which makes ``+=`` ~1.5x slower.
    """
    target[...] = target + increment


def session_satisfaction(state: UserState) -> np.ndarray:
    """Mean satisfaction over the session's clicks, with a no-click session counting as -1."""
    return np.where(state.session_clicks > 0,
                    state.session_satisfaction / np.maximum(state.session_clicks, 1), -1.0)


def start_next_session(state: UserState, user: UserConfig, session: SessionConfig, left: np.ndarray,
                       return_uniform: np.ndarray, away_noise: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Decide who of the users that ``left`` comes back, and start their next session in place.

    A satisfied user returns with higher probability and after a shorter delay
    (``delay = return_delay * exp(-delay_sensitivity * satisfaction)``); nobody returns past the
    horizon. ``away_noise`` ``(B, T)``: standard normals for the interest's wander while away, drawn
    apart from the step's drift (reusing those would move a returning user twice along one
    direction). Returns ``(returned, delay)``.
    """
    mood = session_satisfaction(state)
    p_return = 1.0 / (1.0 + np.exp(-(session.return_logit + session.return_sensitivity * mood)))
    delay = (session.return_delay * np.exp(-session.delay_sensitivity * mood)).astype(np.float32)
    returned = left & (return_uniform < p_return) & (state.day + delay < session.horizon_days)
    if returned.any():
        rows = np.flatnonzero(returned)
        away = delay[rows]
        # Days away: boredom fades, interests wander further.
        state.topics[rows, 1] *= np.exp(-away)[:, None]
        state.topics[rows, 0] += user.exogenous_drift * np.sqrt(away * 10.0)[:, None] * away_noise[rows]
        clip_(state.interest, -1.0, 1.0)
        state.day[rows] += away
        state.session[rows] += 1
        state.budget[rows] = user.initial_budget
        state.session_step[rows] = 0
        state.session_satisfaction[rows] = 0.0
        state.session_clicks[rows] = 0
    return returned, np.where(returned, delay, 0.0)
