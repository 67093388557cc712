"""Simulator invariants over random valid configurations (hypothesis)."""

import gymnasium as gym
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsim_env import RecommendationEnv, choice
from recsim_env.config import ChoiceConfig
from tests.conftest import random_actions

MAX_STEPS = 3000  # with hazard_base >= 0.02 an episode outlives this with probability < 1e-26


@st.composite
def configs(draw):
    n_candidates = draw(st.integers(2, 15))
    initial_budget = draw(st.floats(1.0, 100.0))
    hazard_base = draw(st.floats(0.02, 1.0))  # the two hazards add up to a probability
    return dict(
        n_items=draw(st.integers(100, 3000)), n_topics=draw(st.integers(2, 20)), n_candidates=n_candidates,
        slate_size=draw(st.integers(1, min(4, n_candidates))), history_length=draw(st.integers(1, 6)),
        choice_model=draw(st.sampled_from(["logit", "cascade"])),
        clickbait_fraction=draw(st.floats(0.0, 0.9)), topic_purity=draw(st.floats(0.0, 1.0)),
        satiation_gain=draw(st.floats(0.0, 1.0)), satiation_decay=draw(st.floats(0.0, 1.0)),
        refill_rate=draw(st.floats(0.0, 30.0)), hazard_base=hazard_base,
        hazard_boredom=draw(st.floats(0.0, 1.0 - hazard_base)), click_interest_weight=draw(st.floats(0.0, 20.0)),
        click_appeal_weight=draw(st.floats(0.0, 20.0)), no_click_score=draw(st.floats(-10.0, 10.0)),
        position_decay=draw(st.floats(0.05, 1.0)), engagement_noise=draw(st.floats(0.0, 2.0)),
        exogenous_drift=draw(st.floats(0.0, 1.0)), volatile_drift_rate=draw(st.floats(0.0, 1.0)),
        initial_budget=initial_budget, max_budget=initial_budget * draw(st.floats(1.0, 3.0)),
        observe_user_state=draw(st.booleans()), multi_session=draw(st.booleans()),
        horizon_days=draw(st.floats(1.0, 20.0)), catalog_seed=draw(st.integers(0, 2**32 - 1)),
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(overrides=configs(), seed=st.integers(0, 2**31 - 1))
def test_episode_invariants(overrides, seed):
    env = RecommendationEnv(**overrides)
    space = env.observation_space
    obs, info = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    assert space.contains(obs)
    for _ in range(MAX_STEPS):
        budget_before = float(info["user_state"]["budget"])
        obs, reward, terminated, truncated, info = env.step(random_actions(env.action_space, rng))
        probs = env._last.probabilities
        assert np.all(probs >= 0) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
        assert space.contains(obs), "observation left its space"
        assert np.isfinite(reward) and reward >= 0
        state = info["user_state"]
        assert all(np.all(np.isfinite(v)) for v in state.values())
        assert np.all((state["satiation"] >= 0) & (state["satiation"] <= 1))
        assert np.all(np.abs(state["interest"]) <= 1)
        if float(state["budget"]) > budget_before + 1e-6 and not info["session_ended"]:
            assert info["click"] and env._last.quality[0] > 0, "budget rose without quality consumption"
        if terminated:
            return
    raise AssertionError(f"episode did not end within {MAX_STEPS} steps")


@settings(max_examples=200, deadline=None)
@given(scores=st.lists(st.floats(-60, 60), min_size=1, max_size=12),
       model=st.sampled_from(["logit", "cascade"]), decay=st.floats(0.01, 1.0), none=st.floats(-50, 50),
       items=st.lists(st.integers(0, 3), min_size=12, max_size=12))
def test_outcome_probabilities_are_a_distribution(scores, model, decay, none, items):
    cfg = ChoiceConfig(choice_model=model, position_decay=decay, no_click_score=none)
    arr = np.array([scores], np.float32)
    dup = choice.duplicate_mask(np.array([items[: len(scores)]]))
    probs = choice.outcome_probabilities(arr, cfg, dup)
    assert probs.shape == (1, len(scores) + 1)
    assert np.all(np.isfinite(probs)) and np.all(probs >= 0)
    assert abs(probs.sum() - 1.0) < 1e-5
    assert np.all(probs[0, :-1][dup[0]] == 0)


def test_episode_always_ends_through_make():
    env = gym.make("recsim_env/InterestDrift-v0", hazard_base=1e-6, hazard_boredom=0.0, refill_rate=100.0)
    env.reset(seed=0)
    for step in range(env.spec.max_episode_steps):
        _, _, terminated, truncated, _ = env.step(0)
        if terminated or truncated:
            break
    assert terminated or truncated
