"""Pre-training the DQN's networks as a choice model: it learns (against its untrained twin), the targets are
what users did, the DQN initialisation really copies, the frozen model acts and ranks, and bad input is refused."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import agents
import recsim_env  # noqa: F401  (registers the env ids)
from agents.dqn import DQNAgent, DQNConfig
from agents.pretrain import (
    ChoicePolicy,
    PretrainConfig,
    build_network,
    choice_metrics,
    choice_tensors,
    init_from_pretrained,
    pretrain,
)
from recsim_env.logs.steps import collect_steps


def drift_vec(n: int, env_id: str = "recsim_env/InterestDrift-v0", **overrides) -> gym.vector.VectorEnv:
    return gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point", **overrides)


@pytest.fixture(scope="module")
def logs():
    """Myopic-policy steps of 400 training users and of 200 other, held-out users."""
    env = drift_vec(400)
    train_steps = collect_steps(env, agents.make("myopic", env), seed=10)
    held_env = drift_vec(200)
    return env, train_steps, collect_steps(held_env, agents.make("myopic", held_env), seed=20)


@pytest.mark.parametrize("encoder", ["mlp", "transformer"])
def test_pretraining_beats_its_untrained_twin_on_held_out_users(encoder, logs, one_thread):
    """Held-out cross-entropy of the users' choices falls well below that of the same network untrained
    (same seed, so the same initial weights). With ``learning_rate=0`` (no learning) the fitted model
    equals its twin and the first assertion fails; that control is asserted too."""
    env, train_steps, held_out = logs
    layout = env.unwrapped.layout
    config = PretrainConfig(hidden=32, encoder=encoder, epochs=3, learning_rate=3e-3, seed=5)
    fitted = pretrain(train_steps, layout, config, progress=False)
    trained = choice_metrics(fitted.network, held_out)
    untrained = choice_metrics(build_network(layout, config), held_out)
    assert trained["cross_entropy"] < untrained["cross_entropy"] - 0.02
    assert trained["accuracy"] >= untrained["accuracy"]
    assert fitted.losses[-1] < fitted.losses[0] and fitted.train_steps == len(train_steps)
    frozen = pretrain(train_steps, layout, config, progress=False, learning_rate=0.0, epochs=1)
    assert choice_metrics(frozen.network, held_out) == pytest.approx(untrained)


def test_targets_are_what_the_users_did():
    env = drift_vec(30, "recsim_env/SlateDrift-v0")
    steps = collect_steps(env, agents.make("myopic", env), seed=1)
    data = choice_tensors(steps)
    target, shown = data["target"].numpy(), np.asarray(steps.shown)
    k = shown.shape[1]
    assert data["items"].shape == (len(steps), k, steps.item_features.shape[1])
    assert ((target == k) == ~np.asarray(steps.click)).all()
    rows = np.flatnonzero(target < k)
    assert (shown[rows, target[rows]] == steps.item[rows]).all()
    assert data["shown_mask"][rows, target[rows]].all()
    np.testing.assert_array_equal(data["items"][rows, target[rows]].numpy(), steps.item_features[steps.item[rows]])


def test_pretraining_is_seeded_and_leaves_the_global_rng_alone(logs, one_thread):
    env, train_steps, _ = logs
    state = torch.random.get_rng_state()
    small = train_steps.select(slice(0, 800))
    runs = [pretrain(small, env.unwrapped.layout, hidden=8, epochs=2, seed=s, progress=False).losses for s in (1, 1, 2)]
    assert runs[0] == runs[1] and runs[0] != runs[2]
    assert torch.equal(torch.random.get_rng_state(), state)


def _params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("pair,copied", [("none", ["encoder", "item_in"]),
                                         ("first", ["encoder", "item_in", "user_in", "pair.1"]),
                                         ("all", ["encoder", "item_in", "user_in", "pair.1", "pair.3"])])
def test_init_from_pretrained_copies_the_towers_into_online_and_target(pair, copied, logs):
    env, train_steps, _ = logs
    fitted = pretrain(train_steps.select(slice(0, 500)), env.unwrapped.layout, hidden=16, encoder="gru", epochs=1,
                      progress=False)
    config = DQNConfig(hidden=16, encoder="gru", seed=3)
    scratch, tuned = DQNAgent(env, config=config), DQNAgent(env, config=config)
    assert init_from_pretrained(tuned, fitted, pair) == copied
    source = _params(fitted.network)
    before = _params(scratch.online["q"])
    for nets in (tuned.online, tuned.target):
        after = _params(nets["q"])
        for name, value in after.items():
            if any(name.startswith(part + ".") for part in copied):
                assert torch.equal(value, source[name]), name  # copied
                assert not torch.equal(before[name], source[name]), name  # and the scratch DQN's differ
            else:
                assert torch.equal(value, before[name]), name  # the rest as the scratch DQN starts
    obs, _ = env.reset(seed=0)
    with torch.no_grad():
        embedding = tuned.online["q"].encoder(torch.as_tensor(obs))
        torch.testing.assert_close(embedding, fitted.network.encoder(torch.as_tensor(obs)))
    tuned.online["q"].encoder.gru.weight_hh_l0.data += 1.0  # copies, not shared tensors
    assert not torch.equal(tuned.online["q"].encoder.gru.weight_hh_l0, fitted.network.encoder.gru.weight_hh_l0)


def test_the_frozen_model_acts_ranks_and_predicts_clicks(logs):
    env, train_steps, held_out = logs
    fitted = pretrain(train_steps.select(slice(0, 500)), env.unwrapped.layout, hidden=16, epochs=1, progress=False)
    policy = ChoicePolicy(env, fitted)
    obs, info = env.reset(seed=4)
    scores = policy.scores(obs, info)
    np.testing.assert_array_equal(policy.act(obs, info), scores.argmax(axis=1))
    part = held_out.select(slice(0, 50))
    catalogue = policy.catalogue_scores(part)
    assert catalogue.shape == (50, part.n_items)
    np.testing.assert_allclose(np.take_along_axis(catalogue, part.candidates, axis=1), policy.scores(part.obs),
                               rtol=1e-5, atol=1e-5)  # candidates scored as the catalogue rows they are
    click = policy.click_probability(part)
    assert click.shape == part.shown.shape and ((click > 0) & (click < 1)).all()


def test_bad_input_is_refused(logs):
    env, train_steps, _ = logs
    with pytest.raises(ValueError, match="PretrainConfig.encoder='cnn': allowed 'mlp', 'gru', 'transformer'"):
        PretrainConfig(encoder="cnn")
    with pytest.raises(ValueError, match=r"PretrainConfig.learning_rate=-1.0 is out of range"):
        PretrainConfig(learning_rate=-1.0)
    other = drift_vec(2, n_topics=5)
    with pytest.raises(ValueError, match="steps.obs has shape"):
        pretrain(collect_steps(other, agents.make("random", other, seed=0), seed=0), env.unwrapped.layout)
    fitted = pretrain(train_steps.select(slice(0, 100)), env.unwrapped.layout, hidden=16, epochs=1, progress=False)
    with pytest.raises(ValueError, match="pair='some'"):
        init_from_pretrained(DQNAgent(env, hidden=16), fitted, "some")
    with pytest.raises(ValueError, match="encoder is 'mlp', the agent's 'gru'"):
        init_from_pretrained(DQNAgent(env, hidden=16, encoder="gru"), fitted)
    with pytest.raises(ValueError, match="cannot copy"):
        init_from_pretrained(DQNAgent(env, hidden=32), fitted)
