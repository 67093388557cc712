"""Exact slate values: the enumeration equals brute force, the closed form equals the simulator's mean."""

import itertools

import numpy as np
import pytest

from recsim_env import choice, slates
from tests.conftest import make_vec


def user_batch(choice_model: str, n: int = 50, seed: int = 0, repeats: bool = True):
    """Simulator, candidates ``(B, N)``, interest and satiation of freshly reset users.

    ``repeats``: some users see one item twice among their candidates; otherwise only the users whose
    candidates are distinct items are kept (candidates are drawn with replacement, so a few repeat).
    """
    env = make_vec("recsim_env/SlateDrift-v0", num_envs=n, choice_model=choice_model)
    _, info = env.reset(seed=seed)
    candidates, state = info["candidates"].copy(), info["user_state"]
    if repeats:
        candidates[::7, 4] = candidates[::7, 1]
        keep = np.ones(n, bool)
    else:
        keep = np.array([len(set(row)) == len(row) for row in candidates])
    return env.unwrapped.simulator, candidates[keep], state["interest"][keep], state["satiation"][keep]


def brute_force(sim, candidates, interest, satiation):
    """Best expected reward per user over every action (repeats included) and over distinct slates only.

    Each slate on its own: its items' scores and expected engagement written out from the config in
    float64, ``choice.outcome_probabilities`` of those scores (repeated items shown once), summed.
    """
    cat, c, r = sim.catalog, sim.config.choice, sim.config.response
    k = sim.config.slate_size
    best_any, best_distinct = [], []
    for user in range(len(candidates)):
        items = candidates[user]
        features = cat.features[items].astype(np.float64)
        affinity, boredom = features @ interest[user], features @ satiation[user]
        score = c.click_interest_weight * affinity + c.click_appeal_weight * cat.appeal[items] \
            - c.click_satiation_weight * boredom
        watch = 1.0 / (1.0 + np.exp(-(r.watch_quality_weight * cat.quality[items] + r.watch_interest_weight * affinity
                                      - r.watch_satiation_weight * boredom + r.watch_bias)))
        gain = cat.length[items] * watch
        values_any, values_distinct = [], []
        for slate in itertools.product(range(len(items)), repeat=k):
            slate = list(slate)
            dup = choice.duplicate_mask(items[slate][None])
            probs = choice.outcome_probabilities(score[slate][None], c, dup)[0]
            value = float(np.dot(probs[:k], gain[slate]))
            values_any.append(value)
            if len(set(slate)) == k:
                values_distinct.append(value)
        best_any.append(max(values_any))
        best_distinct.append(max(values_distinct))
    return np.array(best_any), np.array(best_distinct)


@pytest.mark.parametrize("choice_model", ["logit", "cascade"])
def test_best_slates_equal_brute_force_over_every_slate(choice_model):
    sim, candidates, interest, satiation = user_batch(choice_model)
    best_any, best_distinct = brute_force(sim, candidates, interest, satiation)
    positions, values = slates.best_slates(sim, candidates, interest, satiation)
    full_positions, full_values = slates.best_slates(sim, candidates, interest, satiation, shorter=False)
    assert np.allclose(values, best_any, rtol=1e-5, atol=1e-6)
    assert np.allclose(full_values, best_distinct, rtol=1e-5, atol=1e-6)
    assert all(len(set(row)) == 3 for row in full_positions)
    # The returned positions achieve the returned value.
    shown = np.take_along_axis(candidates, positions, axis=1)
    assert np.allclose(slates.slate_expected_reward(sim, shown[:, None], interest, satiation)[:, 0], values,
                       rtol=1e-6)
    # Showing the three items that are best alone is not the optimum for most users.
    alone = sim.expected_reward(candidates, interest, satiation)
    top = np.take_along_axis(candidates, np.argsort(-alone, axis=1, kind="stable")[:, :3], axis=1)
    itemwise = slates.slate_expected_reward(sim, top[:, None], interest, satiation)[:, 0]
    assert np.all(itemwise <= values * (1 + 1e-6))
    assert np.mean(itemwise < values - 1e-4) > 0.3


def test_under_the_logit_a_shorter_slate_is_often_optimal_and_never_under_the_cascade():
    """Adding an item worth less than the slate's expected reward takes clicks from better ones (logit);
    under the cascade an item at the bottom only gets the attention that is left."""
    for model, expect_shorter in (("logit", True), ("cascade", False)):
        sim, candidates, interest, satiation = user_batch(model, n=300, seed=1, repeats=False)
        positions, values = slates.best_slates(sim, candidates, interest, satiation)
        _, full = slates.best_slates(sim, candidates, interest, satiation, shorter=False)
        shorter = np.array([len(set(row)) < 3 for row in positions])
        assert shorter.any() == expect_shorter
        assert np.all(values >= full * (1 - 1e-6))
        if expect_shorter:
            assert np.all(values[shorter] > full[shorter])


@pytest.mark.parametrize("choice_model", ["logit", "cascade"])
def test_slate_value_equals_the_simulators_mean_reward(choice_model):
    sim, candidates, interest, satiation = user_batch(choice_model, n=1)
    n = 40_000
    clones = make_vec("recsim_env/SlateDrift-v0", num_envs=n, choice_model=choice_model)
    clones.reset(seed=4)
    csim = clones.unwrapped.simulator
    rng = np.random.default_rng(0)
    for positions in ([0, 1, 2], [4, 1, 7], [3, 3, 5]):
        csim.state.interest[:], csim.state.satiation[:] = interest[0], satiation[0]
        csim.candidates[:] = candidates[0]
        expected = slates.slate_expected_reward(sim, candidates[:, positions][:, None], interest, satiation)[0, 0]
        probs = slates.slate_probabilities(sim, candidates[:, positions], interest, satiation)[0]
        out = csim.step(np.tile(positions, (n, 1)), rng)
        stderr = out.reward.std() / np.sqrt(n)
        assert abs(out.reward.mean() - expected) < 4 * stderr + 1e-6
        clicked = np.bincount(np.where(out.position < 0, 3, out.position), minlength=4) / n
        assert np.allclose(clicked, probs, atol=4 * np.sqrt(0.25 / n))


def test_one_item_slates_give_the_simulators_expected_reward():
    sim, candidates, interest, satiation = user_batch("logit")
    single = slates.slate_expected_reward(sim, candidates[:, :, None], interest, satiation)
    assert np.allclose(single, sim.expected_reward(candidates, interest, satiation), rtol=1e-5, atol=1e-6)


def test_enumeration_and_its_limits():
    table = slates.candidate_slates(4, 2)
    assert table.shape == (4 + 12, 2) == (slates.n_slates(4, 2), 2)
    assert len({tuple(row) for row in table}) == len(table)
    assert slates.candidate_slates(10, 3, shorter=False).shape == (720, 3)
    with pytest.raises(ValueError, match=r"999000 slates of 2 from n_candidates=1000 are too many"):
        slates.candidate_slates(1000, 2, shorter=False)
    with pytest.raises(ValueError, match=r"slate_size=5 is out of range: allowed \[1, n_candidates=4\]"):
        slates.candidate_slates(4, 5)


def test_custom_reward_is_refused():
    env = make_vec("recsim_env/SlateDrift-v0", num_envs=2, reward=lambda r: r["engagement"])
    _, info = env.reset(seed=0)
    with pytest.raises(ValueError, match="needs reward='engagement' or 'click'"):
        slates.best_slates(env.unwrapped.simulator, info["candidates"], info["user_state"]["interest"],
                           info["user_state"]["satiation"])


def test_click_reward_is_the_click_probability():
    env = make_vec("recsim_env/SlateDrift-v0", num_envs=20, reward="click")
    _, info = env.reset(seed=0)
    sim, state = env.unwrapped.simulator, info["user_state"]
    shown = info["candidates"][:, [2, 0, 5]]
    value = slates.slate_expected_reward(sim, shown[:, None], state["interest"], state["satiation"])[:, 0]
    probs = slates.slate_probabilities(sim, shown, state["interest"], state["satiation"])
    assert np.allclose(value, 1.0 - probs[:, -1], atol=1e-6)
