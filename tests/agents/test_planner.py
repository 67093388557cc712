"""The planning ceiling: deterministic, validated, leaves the env alone, and beats its base heuristic."""

import numpy as np
import pytest

import agents
from agents.planner import PlannerConfig, PlannerPolicy
from tests.conftest import make_vec

SMALL = {"rollouts": 4, "horizon": 3}


def played(env_id: str = "recsim_env/InterestDrift-v0", n: int = 24, steps: int = 3, seed: int = 0):
    env = make_vec(env_id, num_envs=n)
    obs, info = env.reset(seed=seed)
    heuristic = agents.make("heuristic", env)
    for _ in range(steps):
        obs, _, _, _, info = env.step(heuristic.act(obs, info))
    return env, obs, info


def test_same_seed_same_actions_other_seed_other_estimates():
    env, obs, info = played()
    runs = []
    for seed in (3, 3, 4):
        planner = agents.make("planner", env, seed=seed, **SMALL)
        runs.append([(planner.act(obs, info), planner.scores(obs, info)) for _ in range(3)])
    for (a1, s1), (a2, s2) in zip(runs[0], runs[1]):
        assert np.array_equal(a1, a2) and np.array_equal(s1, s2)
    assert not np.array_equal(runs[0][0][1], runs[2][0][1])
    # Later calls draw later numbers of the planner's generator: other futures, other estimates.
    assert not np.array_equal(runs[0][0][1], runs[0][1][1])


def test_config_errors_name_the_field_and_its_range():
    with pytest.raises(ValueError, match=r"PlannerConfig.rollouts=0 is out of range: allowed \[1, 100000\]"):
        PlannerConfig(rollouts=0)
    with pytest.raises(ValueError, match=r"PlannerConfig.terminal_budget_scale=0.0 is out of range: allowed \(0.0"):
        PlannerConfig(terminal_budget_scale=0.0)
    with pytest.raises(TypeError, match="PlannerConfig.horizon must be an integer"):
        PlannerConfig(horizon=2.5)
    with pytest.raises(TypeError, match="PlannerConfig.seed must be a number"):
        PlannerConfig(seed="0")
    env = make_vec(num_envs=2)
    with pytest.raises(TypeError, match="horizons"):
        agents.make("planner", env, horizons=3)
    with pytest.raises(TypeError, match="slates of 3"):
        agents.make("planner", make_vec("recsim_env/SlateDrift-v0", num_envs=2))


def test_planning_leaves_the_env_and_its_generator_untouched():
    """The planner steps copies with its own generator: the env's users, candidates and random stream stay."""
    env, obs, info = played("recsim_env/CrossSessionDrift-v0")
    sim = env.unwrapped.simulator
    before, candidates = sim.state.snapshot(), sim.candidates.copy()
    stream = env.unwrapped.np_random.bit_generator.state
    planner = agents.make("planner", env, **SMALL)
    actions = planner.act(obs, info)
    assert actions.shape == (24,) and actions.dtype.kind == "i" and np.all((actions >= 0) & (actions < 10))
    for key, value in sim.state.snapshot().items():
        assert np.array_equal(value, before[key]), key
    assert np.array_equal(sim.candidates, candidates)
    assert env.unwrapped.np_random.bit_generator.state == stream


def test_scores_are_the_estimates_acted_on_and_the_heuristics_best_are_planned():
    env, obs, info = played()
    planner = PlannerPolicy(env, PlannerConfig(candidates=3, **SMALL))
    actions = planner.act(obs, info)
    scores = planner.scores(obs, info)
    assert np.array_equal(actions, scores.argmax(axis=1))
    assert scores is planner.scores(obs, info)  # cached, not planned again
    heuristic = agents.make("heuristic", env).scores(obs, info)
    order = np.argsort(-heuristic, axis=1, kind="stable")
    planned, rest = np.sort(order[:, :3], axis=1), order[:, 3:]
    assert np.array_equal(np.sort(np.argsort(-scores, axis=1, kind="stable")[:, :3], axis=1), planned)
    ranked_rest = np.take_along_axis(scores, rest, axis=1)
    assert np.all(np.diff(ranked_rest, axis=1) <= 0)  # unplanned candidates keep the heuristic's order
    # Planning all candidates with one step and the heuristic's own value is close to the heuristic itself.
    full = PlannerPolicy(env, PlannerConfig(candidates=0, rollouts=2000, horizon=1))
    one_step = full.scores(obs, info)
    assert np.corrcoef(one_step.ravel(), heuristic.ravel())[0, 1] > 0.95


def test_planner_runs_on_one_user_and_across_sessions():
    env, obs, info = played("recsim_env/CrossSessionDrift-v0", n=6, steps=0)
    planner = agents.make("planner", env, **SMALL)
    live = np.ones(6, bool)
    sessions = np.zeros(6, np.int64)
    for _ in range(400):
        obs, _, term, trunc, info = env.step(planner.act(obs, info))
        sessions = np.maximum(sessions, np.where(live, info["user_state"]["session"], 0))
        live &= ~(term | trunc)
        if not live.any():
            break
    assert sessions.max() >= 1  # some user left and came back while the planner served them
    import gymnasium as gym

    single = gym.make("recsim_env/InterestDrift-v0")
    obs, info = single.reset(seed=0)
    action = agents.make("planner", single, **SMALL).act(obs, info)
    assert action.shape == (1,)
    single.step(int(action[0]))


def test_planned_choices_are_worth_more_than_the_heuristics():
    """Judged by an independent, far larger planner of the same horizon, the planner's picks are worth more.

    With ``candidates=1`` (the heuristic's pick only, so no planning) the two mean values are equal
    and the check fails.
    """
    env, obs, info = played(n=150, steps=5, seed=8)
    judge = PlannerPolicy(env, PlannerConfig(candidates=0, rollouts=256, seed=99)).scores(obs, info)
    picked = agents.make("planner", env).act(obs, info)
    heuristic = agents.make("heuristic", env).act(obs, info)
    rows = np.arange(150)
    gain = judge[rows, picked] - judge[rows, heuristic]
    assert gain.mean() > 0.08 and (picked != heuristic).mean() > 0.2


@pytest.mark.slow
def test_planner_beats_the_heuristic_on_held_out_users():
    """1,000 held-out users (two seeds of 500): mean return at least 5% above the heuristic's on the same
    users (measured: 9%).

    Cheaper than the default config (8 rollouts) to stay a test. With ``candidates=1`` (no planning:
    the heuristic's own pick) the returns equal the heuristic's and the check fails.
    """
    planner, heuristic = [], []
    for seed in (1_000_020, 1_000_021):
        env = make_vec(num_envs=500)
        planner.append(agents.evaluate(agents.make("planner", env, rollouts=8), env, seed=seed).returns)
        heuristic.append(agents.evaluate(agents.make("heuristic", env), env, seed=seed).returns)
    gain = np.concatenate(planner).mean() / np.concatenate(heuristic).mean()
    assert gain > 1.05, gain


def test_only_the_active_users_are_planned_for():
    """An evaluation marks the users still in their evaluated episode (``info["active"]``); the others'
    actions do not count, so the planner gives them the heuristic's choice instead of planning."""
    from agents.base import ACTIVE
    from recsim_env.users import UserState

    env, obs, info = played()
    active = np.arange(24) % 3 == 0
    planner = agents.make("planner", env, seed=5, **SMALL)
    values = planner.scores(obs, {**info, ACTIVE: active})
    heuristic = agents.make("heuristic", env).scores(obs, info)
    assert np.array_equal(values[~active], heuristic[~active])
    alone = agents.make("planner", env, seed=5, **SMALL)
    rows = np.flatnonzero(active)
    state = UserState.from_snapshot(info["user_state"]).take(rows)
    assert np.array_equal(values[active], alone.plan(state, np.asarray(info["candidates"])[rows]))


def test_evaluation_marks_the_users_whose_actions_count():
    from agents.base import ACTIVE
    from agents.base import Recommender

    class Recording(Recommender):
        seen: list = []

        def act(self, obs, info):
            self.seen.append(info[ACTIVE].copy())
            return np.zeros(len(obs), np.int64)

    env = make_vec(num_envs=16)
    stats = agents.evaluate(Recording(env), env, seed=3)
    seen = np.array(Recording.seen)
    assert seen[0].all() and not seen[-1].all()
    assert np.array_equal(seen.sum(axis=0), stats.lengths)  # active for exactly its episode's steps
