"""The DQN's user encoders: output shapes of each kind, the transformer's padding mask, config validation,
and a DQN with each encoder training a few hundred user-steps."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import agents  # noqa: F401
import recsim_env  # noqa: F401  (registers the env ids)
from agents.dqn import DQNConfig, train
from agents.q_networks import ENCODERS, PairNetwork, UserEncoder

TINY = {"hidden": 16, "batch_size": 64, "learning_starts": 256, "buffer_size": 4096, "log_every": 10,
        "target_update_interval": 20}


def drift_vec(n: int = 32) -> gym.vector.VectorEnv:
    return gym.make_vec("recsim_env/InterestDrift-v0", num_envs=n, vectorization_mode="vector_entry_point")


@pytest.fixture(scope="module")
def partly_filled() -> tuple[gym.vector.VectorEnv, np.ndarray]:
    """Observations of users 4 steps into their episode: 4 of the 10 history rows filled, the 6 oldest empty
    (users who left and were reset in the meantime are dropped)."""
    env = drift_vec()
    obs, _ = env.reset(seed=3)
    for _ in range(4):
        obs, *_ = env.step(np.zeros(env.num_envs, np.int64))
    layout = env.unwrapped.layout
    empty = np.abs(layout.split(obs)["history"][..., :layout.n_topics]).sum(axis=-1) == 0
    keep = empty[:, :6].all(axis=1) & ~empty[:, 6:].any(axis=1)
    assert keep.sum() >= 16
    return env, obs[keep][:16]


def encode(kind: str, obs: np.ndarray, layout, hidden: int = 16) -> torch.Tensor:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        encoder = UserEncoder(layout, hidden, kind)
    with torch.no_grad():
        return encoder(torch.as_tensor(obs, dtype=torch.float32))


@pytest.mark.parametrize("kind", ENCODERS)
def test_every_encoder_gives_one_embedding_per_user_and_a_score_per_candidate(kind, partly_filled):
    env, obs = partly_filled
    layout = env.unwrapped.layout
    assert encode(kind, obs, layout, hidden=24).shape == (16, 24)
    net = PairNetwork(layout, 24, kind, item_outputs=2, state_outputs=3)
    with torch.no_grad():
        scores, state = net(torch.as_tensor(obs))
        catalogue, _ = net.score_items(torch.as_tensor(obs), torch.rand(7, layout.item_dim))
    assert scores.shape == (16, layout.n_candidates, 2) and state.shape == (16, 3)
    assert catalogue.shape == (16, 7, 2)
    assert torch.isfinite(scores).all()


def test_transformer_never_reads_padded_history_rows(partly_filled):
    """Empty rows (zero topic mixture) may hold anything in their other columns: the embedding stays the same.

    With the padding mask removed (``history_mask`` returning all True) this test fails: the altered
    appeal, quality, length, click and engagement of the padded rows then reach the attention.
    """
    env, obs = partly_filled
    layout = env.unwrapped.layout
    rows = layout.split(obs)["history"]
    empty = np.abs(rows[..., :layout.n_topics]).sum(axis=-1) == 0
    assert empty[:, :6].all() and not empty[:, 6:].any()  # left-padded: oldest first
    n = len(obs)
    noisy = obs.copy()
    noisy_rows = noisy[:, layout.history].reshape(rows.shape)
    noisy_rows[:, :6, layout.n_topics:] = np.random.default_rng(0).random((n, 6, rows.shape[2] - layout.n_topics))
    noisy[:, layout.history] = noisy_rows.reshape(n, -1)
    base = encode("transformer", obs, layout)
    torch.testing.assert_close(encode("transformer", noisy, layout), base, rtol=0, atol=1e-6)
    changed = obs.copy()  # a real row does count
    changed[:, layout.history.stop - 1] += 0.5
    assert not torch.allclose(encode("transformer", changed, layout), base, atol=1e-4)


def test_transformer_embeds_users_without_history():
    env = drift_vec(4)
    obs, _ = env.reset(seed=0)  # no history yet: every row empty, the attention mean is over no rows
    assert not obs[:, env.unwrapped.layout.history].any()
    embedding = encode("transformer", obs, env.unwrapped.layout)
    assert torch.isfinite(embedding).all() and embedding.shape == (4, 16)


def test_config_lists_the_three_encoders():
    for kind in ENCODERS:
        assert DQNConfig(encoder=kind).encoder == kind
    with pytest.raises(ValueError, match="DQNConfig.encoder='cnn': allowed 'mlp', 'gru', 'transformer'"):
        DQNConfig(encoder="cnn")
    with pytest.raises(ValueError, match="allowed 'mlp', 'gru', 'transformer'"):
        UserEncoder(drift_vec(1).unwrapped.layout, 8, "lstm")


@pytest.mark.parametrize("kind", ENCODERS)
def test_dqn_with_each_encoder_trains_and_acts(kind, one_thread):
    env = drift_vec(16)
    result = train(env, total_steps=800, encoder=kind, **TINY, progress=False)
    agent = result.agent
    fresh = type(agent)(env, config=agent.config)  # the same seed: the initial weights
    assert result.steps >= 800 and agent.gradient_steps > 0
    moved = [name for name, value in agent.online.state_dict().items()
             if not torch.equal(value, fresh.online.state_dict()[name])]
    assert any(name.startswith("q.encoder.") for name in moved)  # the encoder itself learned
    obs, info = env.reset(seed=0)
    actions = agent.act(obs, info)
    assert actions.shape == (16,) and ((actions >= 0) & (actions < env.unwrapped.layout.n_candidates)).all()
