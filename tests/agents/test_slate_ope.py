"""Slate off-policy estimators: hand-computed values on a toy log, unbiasedness against exact truth under
the reward structure each estimator assumes, bias where that structure is violated, factored slate logs
through the env and Parquet, and the errors on bad input.

The exact truth enumerates every slate of a tiny case (K = 2 positions over N = 3 candidates) with the
simulator's own closed forms (``recsim_env.slates``); logged steps are drawn by a vectorised sampler of
the same model, one context per row, so a log of many rows is a log of many independent users.
"""

from itertools import product

import gymnasium as gym
import numpy as np
import pytest

import agents
from agents.ope import EstimatorConfig
from agents.slate_ope import (
    SLATE_ESTIMATORS,
    EpsilonSlate,
    estimate_slate,
    position_ratios,
    slate_terms,
    target_marginals,
)
from recsim_env.logs.slate_log import SlateLog, collect_slate_log, read_slate_log, write_slate_log
from recsim_env.slates import item_terms, slate_expected_reward, slate_probabilities

K, N = 2, 3


# -- hand-computed values ----------------------------------------------------------------------------------
def toy_log(**overrides) -> SlateLog:
    """Three rows, two users: slates, propensities and clicks chosen so every estimator differs."""
    columns = {
        "user": np.array([0, 0, 1]), "step": np.array([0, 1, 0]), "obs": np.zeros((3, 1)),
        "candidates": np.array([[10, 11, 12]] * 3), "slate": np.array([[0, 1], [2, 2], [1, 0]]),
        "propensity": np.array([[0.5, 0.25], [0.25, 0.25], [0.5, 0.5]]),
        "probabilities": np.array([[[0.5, 0.25, 0.25], [0.5, 0.25, 0.25]],
                                   [[0.5, 0.25, 0.25], [0.5, 0.25, 0.25]],
                                   [[0.25, 0.5, 0.25], [0.5, 0.25, 0.25]]]),
        "click": np.array([[False, True], [True, False], [False, False]]), "position": np.array([1, 0, -1]),
        "reward": np.array([2.0, 4.0, 0.0]), "terminated": np.array([False, True, True]),
        "truncated": np.zeros(3, bool), "metadata": {"n_users": 2}}
    return SlateLog(**(columns | overrides))


#: The target's slate at each toy row: ratios w = [2, 4], [4, 4], [2, 2].
TOY_TARGET = np.array([[0, 1], [2, 2], [1, 0]])


def test_hand_computed_values_on_the_toy_log():
    # position rewards [0, 2], [4, 0], [0, 0]
    # ips:  8 * 2 + 16 * 4 + 4 * 0          = 80 -> 80 / 3
    # iips: (2 * 0 + 4 * 2) + (4 * 4 + 0)  = 24 -> 8
    # rips: cumulative [2, 8], [4, 16]: 8 * 2 + 4 * 4 = 32 -> 32 / 3
    # pi:   (2 + 4 - 1) * 2 + (4 + 4 - 1) * 4 + 0 = 38 -> 38 / 3
    result = estimate_slate(toy_log(), TOY_TARGET, EstimatorConfig(n_bootstrap=50))
    assert list(result) == list(SLATE_ESTIMATORS)
    expected = {"ips": 80 / 3, "iips": 8.0, "rips": 32 / 3, "pi": 38 / 3}
    for e, value in expected.items():
        assert result[e].estimate == pytest.approx(value, rel=1e-12), e
        assert result[e].n_episodes == 2 and not result[e].clipped


def test_hand_computed_clipped_values():
    # |weights| capped at 5: ips [5, 5, 4] -> (10 + 20) / 3; rips [2, 5], [4, 5] -> (10 + 16) / 3;
    # iips: no weight above 5; pi [5, 7 -> 5, 3] -> (10 + 20) / 3
    result = estimate_slate(toy_log(), TOY_TARGET, EstimatorConfig(n_bootstrap=50, max_weight=5.0))
    expected = {"ips": (10.0, 2), "iips": (8.0, 0), "rips": (26 / 3, 2), "pi": (10.0, 1)}
    for e, (value, n_clipped) in expected.items():
        assert result[e].estimate == pytest.approx(value, rel=1e-12), e
        assert result[e].n_clipped == n_clipped and result[e].clipped == (n_clipped > 0), e
        assert result[e].max_weight == 5.0


def test_hand_computed_stochastic_target_and_negative_pseudoinverse_weight():
    # uniform target 1/3: ratios [2/3, 4/3], [4/3, 4/3], [2/3, 2/3]
    # iips: 4/3 * 2 + 4/3 * 4 = 8 -> 8 / 3; pi: (2/3 + 4/3 - 1) * 2 + (8/3 - 1) * 4 = 26 / 3 -> 26 / 9
    uniform = np.full((3, K, N), 1.0 / N)
    result = estimate_slate(toy_log(), uniform, EstimatorConfig(n_bootstrap=50), estimators=("iips", "pi"))
    assert result["iips"].estimate == pytest.approx(8 / 3) and result["pi"].estimate == pytest.approx(26 / 9)
    # a target that never shows the logged items: every pseudoinverse weight is 0 + 0 - 1 = -1
    ratio = position_ratios(toy_log(), target_marginals(toy_log(), np.array([[2, 0], [0, 0], [0, 2]])))
    terms, weight, _ = slate_terms("pi", ratio, toy_log().position_reward, toy_log().reward)
    np.testing.assert_allclose(weight, [-1, -1, -1])
    np.testing.assert_allclose(terms, [-2, -4, 0])


def test_bootstrap_interval_is_seeded_and_resamples_users():
    log = toy_log()
    a = estimate_slate(log, TOY_TARGET, EstimatorConfig(n_bootstrap=200, seed=1))
    b = estimate_slate(log, TOY_TARGET, EstimatorConfig(n_bootstrap=200, seed=1))
    assert a == b
    # two users: every resample is user 0 twice (80 / 2 = 40), user 1 twice (0) or both (80 / 3)
    assert a["ips"].low == pytest.approx(0.0) and a["ips"].high == pytest.approx(40.0)


# -- exact truth on a tiny case ---------------------------------------------------------------------------------
def tiny_sim(choice_model: str):
    env = gym.make_vec("recsim_env/SlateDrift-v0", num_envs=6, vectorization_mode="vector_entry_point",
                       n_candidates=N, slate_size=K, choice_model=choice_model)
    _, info = env.reset(seed=5)
    state = info["user_state"]
    return env.unwrapped.simulator, np.asarray(info["candidates"]), np.asarray(state["interest"]), \
        np.asarray(state["satiation"])


def additive_outcomes(sim, items, interest, satiation) -> np.ndarray:
    """A single-click model additive over positions: P(click k) = b^k P(click item alone) / K, whatever
    else is shown; the rest of the mass is no click. ``(B, K + 1)``."""
    alone = sim.click_probability(items, interest, satiation).astype(np.float64)
    p = alone * sim.config.choice.position_decay ** np.arange(items.shape[1]) / items.shape[1]
    return np.concatenate([p, 1.0 - p.sum(axis=1, keepdims=True)], axis=1)


def outcome_probabilities(model: str, sim, items, interest, satiation) -> np.ndarray:
    if model == "additive":
        return additive_outcomes(sim, items, interest, satiation)
    return slate_probabilities(sim, items, interest, satiation).astype(np.float64)


def exact_value(model: str, sim, candidates, interest, satiation, marginals) -> float:
    """Mean over contexts of the target's expected slate reward: every one of the N^K slates enumerated."""
    table = np.array(list(product(range(N), repeat=K)))                             # (M, K)
    items = candidates[:, table]                                                     # (C, M, K)
    c, m = items.shape[:2]
    weight = np.prod(marginals[:, np.arange(K), table], axis=2)                     # (C, M)
    if model == "additive":
        flat = items.reshape(c * m, K)
        rep = np.repeat(np.arange(c), m)
        p = additive_outcomes(sim, flat, interest[rep], satiation[rep])[:, :K]
        gain = item_terms(sim, flat, interest[rep], satiation[rep])[1]
        value = (p * gain).sum(axis=1).reshape(c, m)
    else:
        value = slate_expected_reward(sim, items, interest, satiation)
    assert np.allclose(weight.sum(axis=1), 1.0)
    return float((weight * value).sum(axis=1).mean())


def synthetic_log(model: str, sim, candidates, interest, satiation, behaviour, rows: int,
                  rng: np.random.Generator) -> tuple[SlateLog, np.ndarray]:
    """``rows`` independent one-step users, each a uniformly drawn context, a factored slate, one outcome."""
    context = rng.integers(0, len(candidates), rows)
    mu = behaviour[context]                                                          # (R, K, N)
    cdf = np.cumsum(mu, axis=2)
    slate = np.minimum((cdf < rng.random((rows, K, 1))).sum(axis=2), N - 1)
    items = candidates[context][np.arange(rows)[:, None], slate]
    p = outcome_probabilities(model, sim, items, interest[context], satiation[context])
    outcome = np.minimum((np.cumsum(p, axis=1) < rng.random((rows, 1))).sum(axis=1), K)
    gain = item_terms(sim, items, interest[context], satiation[context])[1].astype(np.float64)
    clicked = outcome < K
    reward = np.where(clicked, gain[np.arange(rows), np.minimum(outcome, K - 1)], 0.0)
    log = SlateLog(user=np.arange(rows), step=np.zeros(rows, np.int64), obs=context[:, None].astype(float),
                   candidates=candidates[context], slate=slate,
                   propensity=np.take_along_axis(mu, slate[:, :, None], axis=2)[:, :, 0], probabilities=mu,
                   click=outcome[:, None] == np.arange(K), position=np.where(clicked, outcome, -1), reward=reward,
                   terminated=np.ones(rows, bool), truncated=np.zeros(rows, bool), metadata={"n_users": rows})
    return log, context


def distributions(rng: np.random.Generator, c: int) -> np.ndarray:
    """Random per-context, per-position distributions over the candidates, each at least 0.1."""
    raw = rng.dirichlet(np.ones(N), size=(c, K))
    return 0.1 + (1 - 0.1 * N) * raw


#: (reward model, estimators unbiased under it). IPS is unbiased under all of them.
UNBIASED = [("additive", ("ips", "iips", "rips", "pi")), ("cascade", ("ips", "rips")), ("logit", ("ips",))]


@pytest.mark.parametrize("model,unbiased", UNBIASED, ids=[m for m, _ in UNBIASED])
def test_unbiased_estimators_cover_the_exact_value(model, unbiased):
    """Each estimator's own 99% interval on 60,000 logged steps holds the brute-force value of a stochastic
    and of a deterministic target; the interval is narrow enough (within 10% of the value) to mean something."""
    sim, candidates, interest, satiation = tiny_sim("cascade" if model == "cascade" else "logit")
    rng = np.random.default_rng(11)
    behaviour = distributions(rng, len(candidates))
    stochastic = distributions(rng, len(candidates))
    deterministic = np.zeros_like(behaviour)
    deterministic[:, 0, 0] = deterministic[:, 1, 2] = 1.0
    log, context = synthetic_log(model, sim, candidates, interest, satiation, behaviour, 60_000, rng)
    config = EstimatorConfig(confidence=0.99, n_bootstrap=300, seed=2)
    for target in (stochastic, deterministic):
        truth = exact_value(model, sim, candidates, interest, satiation, target)
        # the log's contexts are a uniform draw, so its estimand is the mean over its own contexts
        truth_here = exact_value(model, sim, candidates[context], interest[context], satiation[context],
                                 target[context])
        assert truth_here == pytest.approx(truth, rel=0.02)
        result = estimate_slate(log, target[context], config, estimators=unbiased)
        for e in unbiased:
            r = result[e]
            assert r.low <= truth_here <= r.high, (model, e, r, truth_here)
            assert r.high - r.low < 0.2 * truth_here, (model, e, r)


def test_position_wise_estimators_are_biased_when_positions_compete():
    """Under the conditional logit the shown items compete for one click: IIPS and PI, which assume
    additive rewards, miss the exact value by more than their own 99% interval, while IPS (no structure
    assumed) covers it on the same log. (RIPS's bias here, from the first position's click depending on
    the second item, is within its interval at this size, so it is not asserted.)"""
    sim, candidates, interest, satiation = tiny_sim("logit")
    rng = np.random.default_rng(12)
    behaviour = np.full((len(candidates), K, N), 1.0 / N)
    target = np.zeros_like(behaviour)
    best = slate_expected_reward(sim, candidates[:, np.array(list(product(range(N), repeat=K)))], interest,
                                 satiation).argmax(axis=1)
    table = np.array(list(product(range(N), repeat=K)))[best]
    np.put_along_axis(target, table[:, :, None], 1.0, axis=2)
    log, context = synthetic_log("logit", sim, candidates, interest, satiation, behaviour, 60_000, rng)
    truth = exact_value("logit", sim, candidates[context], interest[context], satiation[context], target[context])
    result = estimate_slate(log, target[context], EstimatorConfig(confidence=0.99, n_bootstrap=300, seed=3))
    assert result["ips"].low <= truth <= result["ips"].high
    for e in ("iips", "pi"):
        assert not result[e].low <= truth <= result[e].high, (e, result[e], truth)


# -- logs through the env and Parquet --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def env_log():
    env = gym.make_vec("recsim_env/SlateDrift-v0", num_envs=8, vectorization_mode="vector_entry_point")
    behaviour = EpsilonSlate(agents.make("myopic", env), epsilon=0.4, seed=1)
    targets = {"heuristic": agents.make("heuristic", env),
               "soft": EpsilonSlate(agents.make("heuristic", env), epsilon=0.5)}
    return collect_slate_log(env, behaviour, 12, seed=4, targets=targets), env


def test_collected_log_records_the_factored_behaviour(env_log):
    log, env = env_log
    assert log.n_users == 12 and set(np.unique(log.user)) == set(range(12)) and log.slate_size == 3
    assert log.obs.shape[1] == env.single_observation_space.shape[0] and log.candidates.shape[1] == 10
    np.testing.assert_array_equal(np.take_along_axis(log.probabilities, log.slate[:, :, None], 2)[:, :, 0],
                                  log.propensity)
    np.testing.assert_allclose(log.probabilities.sum(axis=2), 1.0)
    assert set(np.unique(np.round(log.probabilities, 12))) <= {0.04, 0.64}  # 0.4 / 10, + 0.6 on the greedy index
    assert (log.click.sum(axis=1) <= 1).all()
    np.testing.assert_array_equal(log.position, np.where(log.click.any(axis=1), log.click.argmax(axis=1), -1))
    assert (log.reward[log.position < 0] == 0).all()
    np.testing.assert_allclose(log.position_reward.sum(axis=1), log.reward)
    last = np.r_[np.diff(log.user) != 0, True]
    assert ((log.terminated | log.truncated) == last).all()  # complete episodes, nothing after their end
    h = log.targets["heuristic"]
    assert set(np.unique(h)) == {0.0, 1.0} and (h.sum(axis=2) == 1).all()
    np.testing.assert_allclose(log.targets["soft"], 0.05 + 0.5 * h)  # the soft target wraps the same slate


def test_epsilon_slate_draws_from_the_probabilities_it_reports():
    env = gym.make_vec("recsim_env/SlateDrift-v0", num_envs=4000, vectorization_mode="vector_entry_point")
    obs, info = env.reset(seed=0)
    agent = agents.make("heuristic", env)
    policy = EpsilonSlate(agent, epsilon=0.5, seed=3)
    slate = policy.act(obs, info)
    greedy = agent.act(obs, info)
    hit = (slate == greedy).mean(axis=0)
    np.testing.assert_allclose(hit, 0.55, atol=0.03)  # 0.5 + 0.5 / 10 at every position
    again = EpsilonSlate(agent, epsilon=0.5, seed=3).act(obs, info)
    np.testing.assert_array_equal(slate, again)
    with pytest.raises(TypeError, match="MultiDiscrete"):
        EpsilonSlate(agents.make("heuristic", gym.make_vec("recsim_env/InterestDrift-v0", num_envs=2,
                                                           vectorization_mode="vector_entry_point")))


def test_parquet_round_trip(env_log, tmp_path):
    log, _ = env_log
    path = write_slate_log(tmp_path / "log.parquet", log)
    back = read_slate_log(path)
    for name in ("user", "step", "obs", "candidates", "slate", "propensity", "probabilities", "click", "position",
                 "reward", "terminated", "truncated", "interest", "satiation", "budget"):
        np.testing.assert_array_equal(getattr(back, name), getattr(log, name), err_msg=name)
    assert back.metadata == log.metadata and list(back.targets) == list(log.targets)
    for name in log.targets:
        np.testing.assert_array_equal(back.targets[name], log.targets[name])
    config = EstimatorConfig(n_bootstrap=50)
    assert estimate_slate(back, "soft", config) == estimate_slate(log, "soft", config)


def test_read_refuses_missing_columns_and_bad_shapes(env_log, tmp_path):
    import pyarrow.parquet as pq

    log = env_log[0]
    path = write_slate_log(tmp_path / "log.parquet", log)
    table = pq.read_table(path)
    pq.write_table(table.drop(["propensity"]), tmp_path / "missing.parquet")
    with pytest.raises(ValueError, match="missing column propensity"):
        read_slate_log(tmp_path / "missing.parquet")
    pq.write_table(table.replace_schema_metadata({}), tmp_path / "plain.parquet")
    with pytest.raises(ValueError, match="not a recsim_env slate log"):
        read_slate_log(tmp_path / "plain.parquet")
    meta = table.schema.metadata
    wrong = meta | {b"recsim_env.slate_log": meta[b"recsim_env.slate_log"].replace(b'"n_candidates": 10',
                                                                                  b'"n_candidates": 9')}
    pq.write_table(table.replace_schema_metadata(wrong), tmp_path / "width.parquet")
    with pytest.raises(ValueError, match="column probabilities has width 30"):
        read_slate_log(tmp_path / "width.parquet")
    with pytest.raises(ValueError, match="column propensity has shape"):
        toy_log(propensity=np.ones((3, 3)))


def test_estimators_refuse_bad_input():
    log, config = toy_log(), EstimatorConfig(n_bootstrap=20)
    with pytest.raises(ValueError, match="estimator='dr' is unknown"):
        estimate_slate(log, TOY_TARGET, config, estimators=("dr",))
    with pytest.raises(ValueError, match="target has shape"):
        estimate_slate(log, np.zeros((3, 3), np.int64), config)
    with pytest.raises(ValueError, match="outside"):
        estimate_slate(log, np.full((3, K), N), config)
    with pytest.raises(ValueError, match="distribution"):
        estimate_slate(log, np.full((3, K, N), 0.5), config)
    with pytest.raises(ValueError, match="not recorded"):
        estimate_slate(log, "myopic", config)
    with pytest.raises(ValueError, match="discount"):
        estimate_slate(log, TOY_TARGET, EstimatorConfig(discount=0.9, n_bootstrap=20))
    with pytest.raises(ValueError, match="not positive"):
        estimate_slate(toy_log(propensity=np.array([[0.5, 0.0], [0.25, 0.25], [0.5, 0.5]])), TOY_TARGET, config)
    with pytest.raises(ValueError, match="sorted by user then step"):
        estimate_slate(toy_log(step=np.array([1, 0, 0])), TOY_TARGET, config)
    with pytest.raises(ValueError, match="max_weight"):
        EstimatorConfig(max_weight=-1.0)


def test_collect_refuses_non_slate_envs_and_bad_sizes():
    env = gym.make_vec("recsim_env/InterestDrift-v0", num_envs=2, vectorization_mode="vector_entry_point")
    with pytest.raises(TypeError, match="MultiDiscrete"):
        collect_slate_log(env, None, 2, seed=0)
    slates = gym.make_vec("recsim_env/SlateDrift-v0", num_envs=2, vectorization_mode="vector_entry_point")
    with pytest.raises(ValueError, match="n_users=0"):
        collect_slate_log(slates, EpsilonSlate(agents.make("random", slates)), 0, seed=0)
