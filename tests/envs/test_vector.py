"""The native vector env: NEXT_STEP and SAME_STEP autoreset, info masks as Gymnasium builds them, and the
same statistics as the single env."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode
from scipy import stats

from tests.conftest import make_vec


def test_declares_next_step_autoreset_and_single_spaces():
    env = make_vec(num_envs=4)
    assert env.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert env.observation_space.shape == (4, *env.single_observation_space.shape)
    assert env.action_space.shape == (4,)


def test_step_after_done_is_a_reset_step():
    env = make_vec(num_envs=32, initial_budget=3.0, max_budget=6.0)
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    prev_done = np.zeros(32, bool)
    seen_reset = False
    for _ in range(60):
        obs, reward, terminated, truncated, info = env.step(rng.integers(0, 10, 32))
        assert np.array_equal(info["autoreset"], prev_done)
        if prev_done.any():
            seen_reset = True
            assert np.all(reward[prev_done] == 0)
            assert not np.any(terminated[prev_done] | truncated[prev_done])
            assert not np.any(info["click"][prev_done])
            # A fresh user: full budget, empty history.
            assert np.allclose(info["user_state"]["budget"][prev_done], 3.0)
            layout = env.unwrapped.layout
            assert np.all(obs[prev_done][:, layout.history] == 0)
        prev_done = terminated | truncated
    assert seen_reset


def test_truncation_from_max_episode_steps():
    env = gym.make_vec("recsim_env/InterestDrift-v0", num_envs=4, vectorization_mode="vector_entry_point",
                       max_episode_steps=3, hazard_base=1e-6, hazard_boredom=0.0, initial_budget=500.0,
                       max_budget=500.0)
    env.reset(seed=0)
    for _ in range(2):
        _, _, terminated, truncated, _ = env.step(np.zeros(4, np.int64))
        assert not truncated.any()
    _, _, terminated, truncated, _ = env.step(np.zeros(4, np.int64))
    assert truncated.all()


def episode_returns_single(n: int, seed: int) -> np.ndarray:
    env = gym.make("recsim_env/InterestDrift-v0")
    rng = np.random.default_rng(seed)
    out = []
    for ep in range(n):
        env.reset(seed=seed * 100_000 + ep)
        total, done = 0.0, False
        while not done:
            _, r, term, trunc, _ = env.step(int(rng.integers(10)))
            total += r
            done = term or trunc
        out.append(total)
    return np.array(out)


def episode_returns_vector(n: int, seed: int) -> np.ndarray:
    env = make_vec(num_envs=n)
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    totals, live = np.zeros(n), np.ones(n, bool)
    while live.any():
        _, r, term, trunc, _ = env.step(rng.integers(0, 10, n))
        totals += np.where(live, r, 0)
        live &= ~(term | trunc)
    return totals


def test_vector_and_single_env_returns_have_the_same_distribution():
    single = episode_returns_single(400, seed=1)
    vector = episode_returns_vector(400, seed=2)
    result = stats.ks_2samp(single, vector)
    assert result.pvalue > 0.01, (single.mean(), vector.mean(), result)


def test_ks_test_does_detect_a_different_env():
    """The equivalence test above has power: a changed dynamics parameter is detected."""
    single = episode_returns_single(400, seed=1)
    env = make_vec(num_envs=400, initial_budget=25.0)
    env.reset(seed=2)
    rng = np.random.default_rng(2)
    totals, live = np.zeros(400), np.ones(400, bool)
    while live.any():
        _, r, term, trunc, _ = env.step(rng.integers(0, 10, 400))
        totals += np.where(live, r, 0)
        live &= ~(term | trunc)
    assert stats.ks_2samp(single, totals).pvalue < 0.01


def info_keys(info: dict, prefix: str = "") -> set[str]:
    """Every key of a (nested) info dict, as a path."""
    out = set()
    for key, value in info.items():
        out.add(prefix + key)
        if isinstance(value, dict):
            out |= info_keys(value, prefix + key + "/")
    return out


def assert_masked(info: dict, n: int) -> None:
    """Gymnasium's convention: every key ``k`` has a boolean ``(n,)`` mask ``_k``, nested dicts too."""
    for key, value in info.items():
        if key.startswith("_"):
            assert value.dtype == np.bool_ and value.shape == (n,), key
            continue
        assert f"_{key}" in info, key
        if isinstance(value, dict):
            assert_masked(value, n)
        else:
            assert len(value) == n, key


RESPONSE_KEYS = ("click", "engagement", "position", "item", "slate", "session_ended")


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_every_info_key_has_a_mask_true_where_it_describes_the_user(mode):
    n = 32
    env = make_vec(num_envs=n, initial_budget=3.0, max_budget=6.0, autoreset_mode=mode)
    _, info = env.reset(seed=0)
    assert_masked(info, n)
    assert info["_candidates"].all() and info["user_state"]["_budget"].all()
    rng = np.random.default_rng(0)
    resets = 0
    for _ in range(40):
        _, _, terminated, truncated, info = env.step(rng.integers(0, 10, n))
        assert_masked(info, n)
        just_reset = info["autoreset"] if mode == AutoresetMode.NEXT_STEP else terminated | truncated
        resets += just_reset.sum()
        for key in RESPONSE_KEYS:  # a user who was just reset has no response to this step
            assert np.array_equal(info[f"_{key}"], ~just_reset), key
        assert info["_candidates"].all() and all(info["user_state"][f"_{k}"].all() for k in ("interest", "budget"))
        # Cheap: the all-True masks are one shared, read-only array.
        assert info["_candidates"] is info["user_state"]["_interest"] and not info["_candidates"].flags.writeable
        if mode == AutoresetMode.SAME_STEP and just_reset.any():
            assert_masked(info["final_info"], n)
            assert np.array_equal(info["_final_obs"], just_reset) and np.array_equal(info["_final_info"], just_reset)
    assert resets > 10


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_gymnasiums_info_reading_vector_wrappers_accept_the_info(mode):
    from gymnasium.wrappers.vector import DictInfoToList, RecordEpisodeStatistics

    n = 16
    env = DictInfoToList(RecordEpisodeStatistics(make_vec(num_envs=n, initial_budget=3.0, max_budget=6.0,
                                                          autoreset_mode=mode)))
    _, infos = env.reset(seed=1)
    assert len(infos) == n and {"candidates", "user_state"} <= set(infos[0])
    rng = np.random.default_rng(1)
    returns, live_return = [], np.zeros(n)
    for _ in range(40):
        _, reward, terminated, truncated, infos = env.step(rng.integers(0, 10, n))
        if mode == AutoresetMode.NEXT_STEP:
            live_return += np.where([i["autoreset"] for i in infos], 0.0, reward)
        else:
            live_return += reward
        for user in np.flatnonzero(terminated | truncated):
            returns.append((infos[user]["episode"]["r"], live_return[user]))
            live_return[user] = 0.0
            if mode == AutoresetMode.SAME_STEP:  # the new episode's info, the last one's under final_info
                assert "click" not in infos[user] and "click" in infos[user]["final_info"]
                assert infos[user]["final_obs"].shape == env.single_observation_space.shape
    assert len(returns) > 5
    recorded, ours = np.array(returns, dtype=float).T
    assert np.allclose(recorded, ours, rtol=1e-5)


def structure(info: dict) -> dict[str, tuple]:
    """Key path -> (dtype, shape per user) of every entry of a vector info dict.

    ``SyncVectorEnv`` stores numpy bools in object arrays (``np.bool_`` is no ``np.number``), None where
    the key is missing; such an array counts as the bool array it stands for.
    """
    out = {}
    for key, value in info.items():
        if isinstance(value, dict):
            out |= {f"{key}/{k}": v for k, v in structure(value).items()}
        elif value.dtype == object and all(v is None or isinstance(v, np.bool_) for v in value):
            out[key] = (np.dtype(bool), value.shape[1:])
        else:
            out[key] = (value.dtype, value.shape[1:])
    return out


def first_mixed_step(env, n: int, seed: int) -> tuple:
    """Step ``env`` with seeded random actions until some, not all, users' episodes end: that step's output."""
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(200):
        out = env.step(rng.integers(0, 10, n))
        done = out[2] | out[3]
        if 0 < done.sum() < n:
            return out
    raise AssertionError("no step ended some episodes")


def test_same_step_follows_sync_vector_env_semantics():
    n, overrides = 8, dict(initial_budget=3.0, max_budget=6.0)
    ours = make_vec(num_envs=n, autoreset_mode=AutoresetMode.SAME_STEP, **overrides)
    sync = gym.make_vec("recsim_env/InterestDrift-v0", num_envs=n, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP}, **overrides)
    assert ours.metadata["autoreset_mode"] == sync.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    our_obs, _, our_term, our_trunc, our_info = first_mixed_step(ours, n, 0)
    sync_obs, _, sync_term, sync_trunc, sync_info = first_mixed_step(sync, n, 0)
    assert structure({k: v for k, v in our_info.items() if k != "final_obs"}) == \
        structure({k: v for k, v in sync_info.items() if k != "final_obs"})
    for info, obs, terminated, done in ((our_info, our_obs, our_term, our_term | our_trunc),
                                        (sync_info, sync_obs, sync_term, sync_term | sync_trunc)):
        assert info["final_obs"].dtype == object and info["final_obs"].shape == (n,)
        assert all((row is None) != d for row, d in zip(info["final_obs"], done))
        assert all(row.shape == obs.shape[1:] and row.dtype == obs.dtype for row in info["final_obs"][done])
        for key in ("_final_obs", "_final_info", "final_info/_click", "final_info/user_state/_budget"):
            parts = key.split("/")
            value = info
            for part in parts:
                value = value[part]
            assert np.array_equal(value, done), key
        for key in RESPONSE_KEYS:
            assert np.array_equal(info[f"_{key}"], ~done), key
        # The returned observation of an ended user is the new episode's first: empty history, full budget.
        assert np.all(obs[done][:, ours.unwrapped.layout.history] == 0)
        assert np.allclose(info["user_state"]["budget"][done], 3.0)
        assert np.all(info["final_info"]["user_state"]["budget"][terminated] < 3.0)


def run_steps(env, n: int, seed: int, steps: int) -> list:
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    return [env.step(rng.integers(0, 10, n)) for _ in range(steps)]


def test_same_step_final_obs_and_info_are_what_next_step_returns_at_the_end():
    """Up to the first episode end both modes are the same trajectory; SAME_STEP's final observation and
    info are NEXT_STEP's step output, and its rewards and done flags the same."""
    n, overrides = 64, dict(initial_budget=3.0, max_budget=6.0)
    same = run_steps(make_vec(num_envs=n, autoreset_mode="SameStep", **overrides), n, 3, 30)
    nxt = run_steps(make_vec(num_envs=n, **overrides), n, 3, 30)
    t = next(i for i, out in enumerate(nxt) if (out[2] | out[3]).any())
    for i in range(t + 1):
        for j in (1, 2, 3):
            assert np.array_equal(same[i][j], nxt[i][j])
    obs, _, terminated, truncated, info = same[t]
    done = terminated | truncated
    assert np.array_equal(np.stack(list(info["final_obs"][done])), nxt[t][0][done])
    for key in (*RESPONSE_KEYS, "candidates"):
        assert np.array_equal(info["final_info"][key][done], nxt[t][4][key][done]), key
    assert np.array_equal(info["final_info"]["user_state"]["budget"][done], nxt[t][4]["user_state"]["budget"][done])
    assert np.array_equal(obs[~done], nxt[t][0][~done])
    assert not np.array_equal(obs[done], nxt[t][0][done])
    # In SAME_STEP every action counts: no step is a reset step, so the next step's rewards need not be 0.
    assert "autoreset" not in same[t + 1][4] and np.all(nxt[t + 1][1][done] == 0)


def test_same_step_truncation_resets_at_once():
    env = make_vec(num_envs=4, max_episode_steps=3, hazard_base=1e-6, hazard_boredom=0.0, initial_budget=500.0,
                   max_budget=500.0, autoreset_mode=AutoresetMode.SAME_STEP)
    env.reset(seed=0)
    for step in range(1, 10):
        _, _, terminated, truncated, info = env.step(np.zeros(4, np.int64))
        assert not terminated.any() and truncated.all() == (step % 3 == 0)
        assert ("final_obs" in info) == (step % 3 == 0)


def test_next_step_is_the_default_and_explicit_next_step_changes_nothing():
    n, overrides = 16, dict(initial_budget=3.0, max_budget=6.0)
    default = run_steps(make_vec(num_envs=n, **overrides), n, 5, 40)
    explicit = run_steps(make_vec(num_envs=n, autoreset_mode=AutoresetMode.NEXT_STEP, **overrides), n, 5, 40)
    for a, b in zip(default, explicit):
        for x, y in zip(a[:4], b[:4]):
            assert np.array_equal(x, y)
        assert info_keys(a[4]) == info_keys(b[4])
        for key in ("click", "engagement", "item", "autoreset", "candidates"):
            assert np.array_equal(a[4][key], b[4][key])
    assert make_vec(num_envs=2).metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP


def test_unsupported_autoreset_modes_are_refused():
    for mode in (AutoresetMode.DISABLED, "sometimes"):
        with pytest.raises(ValueError, match=r"autoreset_mode=.*: allowed AutoresetMode.NEXT_STEP, "
                                             r"AutoresetMode.SAME_STEP"):
            make_vec(num_envs=2, autoreset_mode=mode)
