"""How a user's hidden state moves after each recommendation: drift, satiation, budget, leaving."""

from __future__ import annotations

import numpy as np

from recsim_env.config import SessionConfig, UserConfig
from recsim_env.users import UserState


def clip_(values: np.ndarray, low: float, high: float) -> None:
    """Clip in place (``np.clip`` costs several times more on the small arrays of one user)."""
    np.minimum(np.maximum(values, low, out=values), high, out=values)


def leave_probability(state: UserState, config: UserConfig) -> np.ndarray:
    """Per-step hazard of leaving: a small base rate that rises with boredom (top satiation)."""
    return config.hazard_base + config.hazard_boredom * np.maximum.reduce(state.satiation, axis=1)


def advance(state: UserState, config: UserConfig, clicked: np.ndarray, consumed: np.ndarray,
            quality: np.ndarray, engagement: np.ndarray, satisfaction: np.ndarray,
            interest_noise: np.ndarray, leave_uniform: np.ndarray) -> np.ndarray:
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
    """
    # Interest moves toward what satisfied and away from what disappointed, plus a slow random walk.
    step = (state.drift_rate * satisfaction)[:, None] * consumed
    if config.exogenous_drift > 0:
        step += config.exogenous_drift * interest_noise
    state.interest += step
    clip_(state.interest, -1.0, 1.0)
    # Satiation decays everywhere and rises on the consumed topics.
    state.satiation *= config.satiation_decay
    state.satiation += config.satiation_gain * (1.0 - state.satiation) * consumed
    # Budget: browsing and watching spend it; quality refills it, low quality drains it further.
    state.budget += config.refill_rate * quality - engagement - config.step_cost
    clip_(state.budget, 0.0, config.max_budget)
    state.session_step += 1
    state.session_clicks += clicked
    state.session_satisfaction += satisfaction
    return (state.budget <= 0.0) | (leave_uniform < leave_probability(state, config))


def session_satisfaction(state: UserState) -> np.ndarray:
    """Mean satisfaction over the session's clicks, with a no-click session counting as -1."""
    return np.where(state.session_clicks > 0,
                    state.session_satisfaction / np.maximum(state.session_clicks, 1), -1.0)


def start_next_session(state: UserState, user: UserConfig, session: SessionConfig, left: np.ndarray,
                       return_uniform: np.ndarray, interest_noise: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Decide who of the users that ``left`` comes back, and start their next session in place.

    A satisfied user returns with higher probability and after a shorter delay
    (``delay = return_delay * exp(-delay_sensitivity * satisfaction)``); nobody returns past the
    horizon. Returns ``(returned, delay)``.
    """
    mood = session_satisfaction(state)
    p_return = 1.0 / (1.0 + np.exp(-(session.return_logit + session.return_sensitivity * mood)))
    delay = (session.return_delay * np.exp(-session.delay_sensitivity * mood)).astype(np.float32)
    returned = left & (return_uniform < p_return) & (state.day + delay < session.horizon_days)
    if returned.any():
        rows = np.flatnonzero(returned)
        away = delay[rows]
        # Days away: boredom fades, interests wander further.
        state.satiation[rows] *= np.exp(-away)[:, None]
        state.interest[rows] += user.exogenous_drift * np.sqrt(away * 10.0)[:, None] * interest_noise[rows]
        clip_(state.interest, -1.0, 1.0)
        state.day[rows] += away
        state.session[rows] += 1
        state.budget[rows] = user.initial_budget
        state.session_step[rows] = 0
        state.session_satisfaction[rows] = 0.0
        state.session_clicks[rows] = 0
    return returned, np.where(returned, delay, 0.0)
