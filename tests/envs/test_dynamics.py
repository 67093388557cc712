"""Each dynamics rule does what the model says, checked on hand-made users."""

import gymnasium as gym
import numpy as np
import pytest

from recsim_env import dynamics
from recsim_env.config import SessionConfig, UserConfig
from recsim_env.users import UserState
from tests.conftest import make_vec

CFG = UserConfig(exogenous_drift=0.0, stable_drift_rate=0.2, hazard_base=0.01, hazard_boredom=0.5)


def users(n: int = 2, t: int = 3) -> UserState:
    state = UserState.empty(n, t)
    state.sample(CFG, np.random.default_rng(0))
    state.interest[:] = 0.0
    state.satiation[:] = 0.2
    state.budget[:] = 20.0
    state.drift_rate[:] = 0.2
    return state


def step(state, click, topic, quality, engagement, satisfaction, leave_u=1.0, config=CFG):
    n, t = state.interest.shape
    consumed = np.zeros((n, t), np.float32)
    consumed[:, topic] = 1.0 * click
    f = lambda x: np.full(n, x, np.float32)  # noqa: E731
    return dynamics.advance(state, config, np.full(n, click), consumed, f(quality * click), f(engagement * click),
                            f(satisfaction * click), np.zeros((n, t), np.float32), f(leave_u))


def test_interest_moves_toward_satisfying_and_away_from_disappointing_items():
    good, bad = users(), users()
    step(good, True, topic=1, quality=0.8, engagement=2.0, satisfaction=0.9)
    step(bad, True, topic=1, quality=-0.8, engagement=0.5, satisfaction=-0.9)
    assert np.all(good.interest[:, 1] > 0) and np.all(bad.interest[:, 1] < 0)
    assert np.all(good.interest[:, [0, 2]] == 0)


def test_satiation_rises_on_the_consumed_topic_and_decays_elsewhere():
    state = users()
    step(state, True, topic=2, quality=0.5, engagement=1.0, satisfaction=0.5)
    assert np.all(state.satiation[:, 2] > 0.2)
    assert np.allclose(state.satiation[:, :2], 0.2 * CFG.satiation_decay)


def test_budget_is_spent_by_engagement_refilled_by_quality_drained_by_clickbait():
    honest, bait, idle = users(), users(), users()
    step(honest, True, topic=0, quality=0.8, engagement=2.0, satisfaction=0.8)
    step(bait, True, topic=0, quality=-0.6, engagement=1.0, satisfaction=-0.5)
    step(idle, False, topic=0, quality=0.0, engagement=0.0, satisfaction=0.0)
    assert honest.budget[0] == pytest.approx(20 - 1 - 2 + 7 * 0.8)
    assert bait.budget[0] == pytest.approx(20 - 1 - 1 - 7 * 0.6)
    assert idle.budget[0] == pytest.approx(19.0)


def test_leaving_when_the_budget_runs_out_or_the_boredom_hazard_fires():
    state = users()
    state.budget[:] = 0.5
    assert step(state, False, 0, 0, 0, 0).all()
    bored = users()
    bored.satiation[:, 0] = 1.0
    assert np.allclose(dynamics.leave_probability(bored, CFG), 0.01 + 0.5 * 1.0)
    calm = users()
    calm.satiation[:, 0] = 1.0
    # The hazard is drawn after this step's decay: 0.01 + 0.5 * 0.9 = 0.46.
    assert step(bored, False, 0, 0, 0, 0, leave_u=0.45).all()
    assert not step(calm, False, 0, 0, 0, 0, leave_u=0.47).any()


def test_satisfied_users_return_sooner_and_more_surely():
    session = SessionConfig(multi_session=True, horizon_days=100.0)
    happy, unhappy = users(4), users(4)
    happy.session_satisfaction[:], happy.session_clicks[:] = 3.0, 4
    unhappy.session_satisfaction[:], unhappy.session_clicks[:] = -2.0, 4
    left = np.ones(4, bool)
    u = np.full(4, 0.5, np.float32)
    noise = np.zeros((4, 3), np.float32)
    back_h, delay_h = dynamics.start_next_session(happy, CFG, session, left, u, noise)
    back_u, delay_u = dynamics.start_next_session(unhappy, CFG, session, left, u, noise)
    assert back_h.all() and not back_u.any()
    assert np.all(happy.session == 1) and np.all(happy.budget == CFG.initial_budget)
    p_u = 1 / (1 + np.exp(-(session.return_logit + session.return_sensitivity * -0.5)))
    assert p_u < 0.5
    mood_delay = lambda m: session.return_delay * np.exp(-session.delay_sensitivity * m)  # noqa: E731
    assert np.allclose(delay_h, mood_delay(0.75))


def test_cross_session_episodes_span_several_sessions():
    env = make_vec("recsim_env/CrossSessionDrift-v0", num_envs=200)
    env.reset(seed=0)
    sessions = np.zeros(200, int)
    live = np.ones(200, bool)
    rng = np.random.default_rng(0)
    while live.any():
        _, _, term, trunc, info = env.step(rng.integers(0, 10, 200))
        sessions = np.where(live, info["user_state"]["session"], sessions)
        live &= ~(term | trunc)
    assert sessions.max() >= 2 and (sessions > 0).mean() > 0.3


def test_reward_modes():
    for reward, check in (("click", lambda r, i: r == float(i["click"])),
                          (lambda out: out["engagement"] * 2.0, lambda r, i: r == pytest.approx(2 * i["engagement"]))):
        env = gym.make("recsim_env/InterestDrift-v0", reward=reward)
        env.reset(seed=0)
        for _ in range(20):
            _, r, term, _, info = env.step(0)
            assert check(r, info)
            if term:
                break
    bad = gym.make("recsim_env/InterestDrift-v0", reward=lambda out: np.ones(3))
    bad.reset(seed=0)
    with pytest.raises(ValueError, match="reward function must return 1 finite numbers"):
        bad.step(0)


def test_full_observability_shows_the_true_state():
    env = gym.make("recsim_env/InterestDrift-v0", observe_user_state=True)
    obs, info = env.reset(seed=0)
    obs, *_, info = env.step(3)
    parts = env.unwrapped.layout.split(obs[None])
    t = env.unwrapped.config.catalog.n_topics
    assert np.allclose(parts["user_state"][0, :t], info["user_state"]["interest"])
    assert np.allclose(parts["user_state"][0, t:2 * t], info["user_state"]["satiation"])
    assert np.allclose(parts["candidates"][0], env.unwrapped.simulator.catalog.observable[info["candidates"]])
    assert parts["history"][0, -1, -2] == float(info["click"])


def test_a_returning_users_wander_has_draws_of_its_own(monkeypatch):
    """The interest wander while away uses normals independent of the step's drift normals.

    Reusing the step's drift normals (as once happened) would pass the very same array to both: the
    correlation below would then be 1.
    """
    from recsim_env import make_config
    from recsim_env.simulator import Simulator

    seen = {}
    advance, start = dynamics.advance, dynamics.start_next_session

    def spy_advance(*args, **kwargs):
        seen["drift"] = args[7].copy()
        return advance(*args, **kwargs)

    def spy_start(state, user, session, left, return_uniform, away_noise):
        seen["away"], seen["left"] = away_noise, left.copy()
        return start(state, user, session, left, return_uniform, away_noise)

    monkeypatch.setattr(dynamics, "advance", spy_advance)
    monkeypatch.setattr(dynamics, "start_next_session", spy_start)
    sim = Simulator(make_config("cross_session"), n_users=4000)
    sim.reset(np.random.default_rng(0))
    sim.state.budget[:] = 0.5  # everybody leaves at this step
    sim.step(np.zeros((4000, 1), np.int64), np.random.default_rng(1))
    assert seen["left"].mean() > 0.5
    drift, away = seen["drift"], np.asarray(seen["away"])
    assert away.shape == drift.shape and not np.shares_memory(away, drift)
    assert abs(np.corrcoef(drift.ravel(), away.ravel())[0, 1]) < 0.05
    assert abs(away.mean()) < 0.02 and abs(away.std() - 1.0) < 0.02
