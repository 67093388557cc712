"""n-step windows and the replay buffer, against returns computed by hand."""

import numpy as np
import pytest
import torch

from agents.replay import NStepWindow, ReplayBuffer

G = 0.5


def obs_of(*values: float) -> np.ndarray:
    """One observation per user, ``(B, 1)``, its single entry naming the step."""
    return np.array(values, np.float32)[:, None]


def push(window: NStepWindow, t: float | list[float], reward, terminated=None, truncated=None, autoreset=None):
    """Step ``t -> t + 1`` for every user; observation values are the step numbers."""
    ts = np.atleast_1d(np.asarray(t, np.float32))
    n = len(ts)
    no = np.zeros(n, bool)
    return window.push(obs_of(*ts), np.arange(n), np.asarray(reward, np.float32).reshape(n), obs_of(*(ts + 1)),
                       no if terminated is None else np.asarray(terminated), no if truncated is None else
                       np.asarray(truncated), no if autoreset is None else np.asarray(autoreset))


def test_full_window_sums_n_rewards_and_bootstraps_with_g_to_the_n():
    w = NStepWindow(1, 3, G, 1)
    assert len(push(w, 0, 1.0)["reward"]) == 0
    assert len(push(w, 1, 2.0)["reward"]) == 0
    out = push(w, 2, 3.0)
    assert out["obs"][:, 0].tolist() == [0.0]
    assert out["reward"].tolist() == [1 + G * 2 + G**2 * 3]
    assert out["discount"].tolist() == [G**3]
    assert out["next_obs"][:, 0].tolist() == [3.0]
    out = push(w, 3, 4.0)  # the window slides by one
    assert out["obs"][:, 0].tolist() == [1.0]
    assert out["reward"].tolist() == [2 + G * 3 + G**2 * 4]


def test_termination_inside_the_window_emits_every_open_step_without_bootstrap():
    w = NStepWindow(1, 3, G, 1)
    push(w, 0, 1.0)
    out = push(w, 1, 2.0, terminated=[True])
    assert out["obs"][:, 0].tolist() == [0.0, 1.0]
    np.testing.assert_allclose(out["reward"], [1 + G * 2, 2.0])
    assert out["discount"].tolist() == [0.0, 0.0]
    assert out["next_obs"][:, 0].tolist() == [2.0, 2.0]


def test_truncation_inside_the_window_bootstraps_from_the_last_observation():
    w = NStepWindow(1, 3, G, 1)
    push(w, 0, 1.0)
    out = push(w, 1, 2.0, truncated=[True])
    np.testing.assert_allclose(out["reward"], [1 + G * 2, 2.0])
    np.testing.assert_allclose(out["discount"], [G**2, G])
    assert out["next_obs"][:, 0].tolist() == [2.0, 2.0]


def test_the_step_into_an_autoreset_is_skipped_and_the_next_episode_starts_clean():
    w = NStepWindow(1, 2, G, 1)
    push(w, 0, 1.0, terminated=[True])
    skipped = push(w, 1, 0.0, autoreset=[True])  # NEXT_STEP: the action was ignored, the user was reset
    assert len(skipped["reward"]) == 0
    assert len(push(w, 10, 5.0)["reward"]) == 0
    out = push(w, 11, 6.0)
    assert out["obs"][:, 0].tolist() == [10.0]
    assert out["reward"].tolist() == [5 + G * 6]


def test_users_keep_separate_windows():
    w = NStepWindow(2, 2, G, 1)
    assert len(push(w, [0, 100], [1.0, 10.0], terminated=[True, False])["reward"]) == 1
    out = push(w, [1, 101], [0.0, 20.0], autoreset=[True, False])
    assert out["obs"][:, 0].tolist() == [100.0]
    assert out["reward"].tolist() == [10 + G * 20]
    assert out["action"].tolist() == [1]


def test_zero_discount_keeps_only_the_immediate_reward():
    w = NStepWindow(1, 3, 0.0, 1)
    push(w, 0, 1.0)
    push(w, 1, 2.0)
    out = push(w, 2, 3.0)
    assert out["reward"].tolist() == [1.0] and out["discount"].tolist() == [0.0]


def test_flush_emits_open_steps_as_truncated_and_empties_the_window():
    w = NStepWindow(1, 3, G, 1)
    push(w, 0, 1.0)
    push(w, 1, 2.0)
    out = w.flush(obs_of(2.0))
    np.testing.assert_allclose(out["reward"], [1 + G * 2, 2.0])
    np.testing.assert_allclose(out["discount"], [G**2, G])
    assert len(w.flush(obs_of(2.0))["reward"]) == 0


def test_slate_actions_and_click_positions_travel_with_the_transition():
    w = NStepWindow(2, 1, G, 1, action_shape=(3,))
    no = np.zeros(2, bool)
    out = w.push(obs_of(0, 0), np.array([[1, 2, 3], [4, 5, 6]]), np.ones(2, np.float32), obs_of(1, 1), no, no, no,
                 clicked=np.array([2, -1]))
    assert out["action"].tolist() == [[1, 2, 3], [4, 5, 6]] and out["clicked"].tolist() == [2, -1]


def batch(values: list[float]) -> dict[str, np.ndarray]:
    v = np.array(values, np.float32)
    return {"obs": v[:, None], "next_obs": v[:, None] + 1, "action": v.astype(np.int64), "reward": v,
            "discount": np.full(len(v), G, np.float32), "clicked": np.full(len(v), -1)}


def test_replay_ring_overwrites_the_oldest():
    buffer = ReplayBuffer(4, 1)
    buffer.add(batch([0, 1, 2]))
    buffer.add(batch([3, 4, 5]))
    assert len(buffer) == 4
    assert sorted(buffer.obs[:, 0].tolist()) == [2, 3, 4, 5]
    assert sorted(buffer.scalars["reward"].tolist()) == [2, 3, 4, 5]


def test_replay_sampling_follows_its_generator_and_keeps_fields_aligned():
    buffer = ReplayBuffer(100, 1)
    buffer.add(batch(list(range(50))))
    one = buffer.sample(32, torch.Generator().manual_seed(3))
    two = buffer.sample(32, torch.Generator().manual_seed(3))
    assert torch.equal(one["obs"], two["obs"])
    assert torch.equal(one["obs"][:, 0], one["reward"]) and torch.equal(one["next_obs"], one["obs"] + 1)
    assert one["obs"].max() < 50


def test_replay_state_round_trip_and_capacity_check():
    buffer = ReplayBuffer(10, 1)
    buffer.add(batch([1, 2, 3]))
    copy = ReplayBuffer(10, 1)
    copy.load_state_dict(buffer.state_dict())
    assert len(copy) == 3 and copy.pos == 3 and np.array_equal(copy.obs, buffer.obs)
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(5, 1).load_state_dict(buffer.state_dict())
    with pytest.raises(ValueError, match="empty"):
        ReplayBuffer(5, 1).sample(1, torch.Generator())


def test_session_discount_scales_what_follows_a_session_end():
    w = NStepWindow(1, 3, G, 1, session_discount=0.25)
    no = np.zeros(1, bool)
    w.push(obs_of(0), np.zeros(1, np.int64), np.array([1.0], np.float32), obs_of(1), no, no, no,
           session_ended=np.array([True]))  # the user left after this step and will come back
    w.push(obs_of(1), np.zeros(1, np.int64), np.array([2.0], np.float32), obs_of(2), no, no, no)
    out = w.push(obs_of(2), np.zeros(1, np.int64), np.array([3.0], np.float32), obs_of(3), no, no, no)
    np.testing.assert_allclose(out["reward"], [1 + 0.25 * (G * 2 + G**2 * 3)])
    np.testing.assert_allclose(out["discount"], [0.25 * G**3])
    np.testing.assert_allclose(w.flush(obs_of(3))["reward"], [2 + G * 3, 3.0])  # opened after the end: unscaled
