"""DQN, its myopic twin and SlateQ: learning (against the same agents untrained), double-DQN targets,
catalogue scores and click probabilities at logged steps, checkpoints, resuming, determinism and input errors."""

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch

import agents
import recsim_env  # noqa: F401  (registers the env ids)
from agents.dqn import DQNAgent, DQNConfig, MyopicDQNAgent, train
from agents.evaluation import evaluate
from agents.slateq import SlateQAgent
from agents.training import run
from recsim_env.logs import LoggedSteps, collect_steps
from recsim_env.observation import ObservationLayout

# Small, fast settings: the point of these tests is behaviour, not returns.
TINY = {"hidden": 16, "batch_size": 64, "learning_starts": 256, "buffer_size": 4096, "log_every": 10,
        "target_update_interval": 20}


class BestCandidateEnv(gym.Env):
    """A contextual task whose best item is known: reward 1 for the candidate with the highest quality score.

    Observations follow ``ObservationLayout`` (one history row, five candidates); episodes last
    ``length`` steps and terminate, so NEXT_STEP resets happen in a vector env.
    """

    layout = ObservationLayout(n_topics=2, history_length=1, n_candidates=5, observe_user_state=False)
    quality = 3  # column of the quality score in an item row: topics (2), appeal, quality, length

    def __init__(self, length: int = 4):
        self.length = length
        self.observation_space = self.layout.space()
        self.action_space = gym.spaces.Discrete(self.layout.n_candidates)

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.layout.size, np.float32)
        self.items = self.np_random.random((self.layout.n_candidates, self.layout.item_dim), dtype=np.float32)
        obs[self.layout.candidates] = self.items.reshape(-1)
        return obs

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        reward = float(action == self.items[:, self.quality].argmax())
        self.t += 1
        return self._obs(), reward, self.t >= self.length, False, {}


def best_candidate_vec(n: int = 16) -> gym.vector.VectorEnv:
    return gym.vector.SyncVectorEnv([BestCandidateEnv for _ in range(n)])


def drift_vec(n: int = 32, env_id: str = "recsim_env/InterestDrift-v0", **overrides) -> gym.vector.VectorEnv:
    return gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point", **overrides)


def weights(agent) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in agent.online.state_dict().items()}


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# -- learning ---------------------------------------------------------------------------------------
# Every "learns" test compares the trained agent with the same agent untrained: built with the same seed,
# hence the same initial weights (checked), and scored on the same held-out users.

#: Users never trained on (training resets use ``segment_seed``), shared by trained and untrained agents.
HELD_OUT_SEED = 2**31 + 11
BEST_CANDIDATE_RUN = {**TINY, "hidden": 32, "learning_rate": 3e-3, "discount": 0.5, "epsilon_fraction": 0.3,
                      "n_step": 1, "total_steps": 32_000}
DRIFT_RUN = {"total_steps": 300_000, "hidden": 32, "learning_starts": 10_000}


def train_beside_untrained(cls, env_factory, **config):
    """Train ``cls(**config)`` and build its untrained twin, checking the two start from the same weights."""
    agent = cls(env_factory(), **config)
    initial = weights(agent)
    result = run(agent, env_factory(), progress=False)
    untrained = cls(env_factory(), **config)
    assert same_weights(weights(untrained), initial)
    assert HELD_OUT_SEED not in result.env_seeds
    return result, untrained


def test_learns_to_pick_the_known_best_candidate():
    """Measured: trained 0.956 right, its untrained twin 0.36, random 0.2. With learning off
    (``learning_starts=10**6``: no gradient step) both are 0.36 and the test fails."""
    result, untrained = train_beside_untrained(DQNAgent, best_candidate_vec, **BEST_CANDIDATE_RUN)
    probe = BestCandidateEnv()
    probe.reset(seed=123)
    obs = np.stack([probe._obs() for _ in range(500)])
    best = obs[:, probe.layout.candidates].reshape(500, 5, -1)[:, :, probe.quality].argmax(axis=1)
    accuracy = np.mean(result.agent.act(obs) == best)
    before = np.mean(untrained.act(obs) == best)
    assert accuracy >= 0.85 and accuracy > before + 0.4, (accuracy, before)


@pytest.mark.slow
def test_short_dqn_run_on_interest_drift_beats_its_untrained_self_on_held_out_users():
    """Measured (300 held-out users): trained 68.8, untrained 33.2 (the same initial weights), random 21.8;
    the untrained net already earns 1.52x random, so random is no yardstick for learning. With learning
    off (``learning_starts`` beyond ``total_steps``) trained = untrained and the test fails."""
    result, untrained = train_beside_untrained(DQNAgent, lambda: drift_vec(256), **DRIFT_RUN)
    held_out = drift_vec(300)
    learned = evaluate(result.agent, held_out, seed=HELD_OUT_SEED).returns.mean()
    before = evaluate(untrained, held_out, seed=HELD_OUT_SEED).returns.mean()
    random = evaluate(agents.make("random", held_out), held_out, seed=HELD_OUT_SEED).returns.mean()
    assert learned > 1.5 * before and learned > 2.0 * random, (learned, before, random)
    curve, ended = result.curve_returns, result.episode_returns  # curve: in order of beginning, cut at the end
    assert 0.9 * len(ended) < len(curve) < len(ended)
    assert curve[:256].mean() > 1.1 * ended[:256].mean()  # the first to end are the short ones


def outcome_log_loss(agent: SlateQAgent, steps: LoggedSteps) -> float:
    """Mean negative log-likelihood of the logged outcome (the clicked position, or no click)."""
    p = agent.click_probability(steps)
    clicked = steps.click[:, None] & (steps.shown == steps.item[:, None])
    p_outcome = np.where(steps.click, (p * clicked).sum(axis=1), 1.0 - p.sum(axis=1))
    return float(-np.log(np.clip(p_outcome, 1e-12, 1.0)).mean())


@pytest.mark.slow
def test_slateq_beats_its_untrained_self_on_slate_drift_and_learns_the_click_model():
    """Measured (300 held-out users): trained 78.9, untrained 36.3 (same initial weights), random slates
    25.6; log-loss of the logged outcome on held-out random slates: trained 1.314, untrained 1.383 (a
    uniform guess over 3 positions and no click: 1.386). With learning off (``learning_starts`` beyond
    ``total_steps``) trained = untrained and both checks fail."""
    env_id = "recsim_env/SlateDrift-v0"
    result, untrained = train_beside_untrained(SlateQAgent, lambda: drift_vec(256, env_id), **DRIFT_RUN)
    held_out = drift_vec(300, env_id)
    learned = evaluate(result.agent, held_out, seed=HELD_OUT_SEED).returns.mean()
    before = evaluate(untrained, held_out, seed=HELD_OUT_SEED).returns.mean()
    random = evaluate(agents.make("random", held_out), held_out, seed=HELD_OUT_SEED).returns.mean()
    assert learned > 1.5 * before and learned > 2.0 * random, (learned, before, random)
    logged = collect_steps(held_out, agents.make("random", held_out, seed=1), seed=HELD_OUT_SEED + 1)
    trained_loss, untrained_loss = outcome_log_loss(result.agent, logged), outcome_log_loss(untrained, logged)
    assert trained_loss < untrained_loss - 0.04, (trained_loss, untrained_loss)


# -- determinism, checkpoints, resume ----------------------------------------------------------------

def test_same_seed_same_weights_other_seed_other_weights():
    runs = [train(drift_vec(), total_steps=3_200, seed=seed, **TINY, progress=False).agent for seed in (7, 7, 8)]
    assert same_weights(weights(runs[0]), weights(runs[1]))
    assert not same_weights(weights(runs[0]), weights(runs[2]))


def test_resumed_run_continues_exactly_as_the_uninterrupted_one(tmp_path):
    config = DQNConfig(total_steps=6_400, checkpoint_every=3_200, seed=3, **TINY)
    whole = run(DQNAgent(drift_vec(), config=config), drift_vec(), tmp_path / "whole", progress=False)
    first = run(DQNAgent(drift_vec(), config=config), drift_vec(), tmp_path / "split", progress=False, stop_at=3_200)
    assert first.steps == 3_200 and first.checkpoint is not None
    second = run(DQNAgent(drift_vec(), config=config), drift_vec(), tmp_path / "split", progress=False)
    assert second.steps == 6_400
    assert same_weights(weights(whole.agent), weights(second.agent))
    assert whole.agent.gradient_steps == second.agent.gradient_steps
    rows = (tmp_path / "split" / "progress.csv").read_text().splitlines()
    assert rows[0].startswith("step,") and len(rows) == 1 + 6_400 // 32 // TINY["log_every"]
    assert any((tmp_path / "whole" / "tb").iterdir())


def test_agent_save_load_round_trip(tmp_path):
    env = drift_vec()
    trained = train(env, total_steps=1_600, **TINY, progress=False).agent
    trained.save(tmp_path / "dqn.pt")
    fresh = DQNAgent(env, **TINY, seed=99)
    fresh.load(tmp_path / "dqn.pt")
    obs, info = env.reset(seed=5)
    assert np.array_equal(fresh.act(obs, info), trained.act(obs, info))
    assert same_weights(weights(fresh), weights(trained))


def test_corrupt_checkpoint_is_refused_naming_the_file(tmp_path):
    env = drift_vec()
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="checkpoint.pt is not a readable checkpoint"):
        run(DQNAgent(env, total_steps=320, **TINY), env, tmp_path, progress=False)
    run(DQNAgent(env, total_steps=320, **TINY), env, tmp_path / "ok", progress=False)
    data = (tmp_path / "ok" / "checkpoint.pt").read_bytes()
    (tmp_path / "ok" / "checkpoint.pt").write_bytes(data[: len(data) // 2])  # a write cut short
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        DQNAgent(env, **TINY).load(tmp_path / "ok" / "checkpoint.pt")


def test_mismatched_checkpoint_is_refused_naming_what_differs(tmp_path):
    env = drift_vec()
    run(DQNAgent(env, total_steps=320, **TINY), env, tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"checkpoint\.pt does not match.*hidden: file has 16, this agent has 24"):
        run(DQNAgent(env, total_steps=640, **{**TINY, "hidden": 24}), env, tmp_path, progress=False)
    with pytest.raises(ValueError, match="config.learning_rate: file has 0.0005, this agent has 0.1"):
        run(DQNAgent(env, total_steps=640, **{**TINY, "learning_rate": 0.1}), env, tmp_path, progress=False)
    with pytest.raises(ValueError, match="num_envs"):
        run(DQNAgent(drift_vec(16), total_steps=640, **TINY), drift_vec(16), tmp_path, progress=False)
    with pytest.raises(ValueError, match="algorithm: file has 'dqn', this agent has 'dqn_myopic'"):
        MyopicDQNAgent(env, **TINY).load(tmp_path / "checkpoint.pt")
    other = drift_vec(n_topics=5)
    with pytest.raises(ValueError, match="layout"):
        DQNAgent(other, **TINY).load(tmp_path / "checkpoint.pt")
    # A longer budget is not a mismatch: training goes on.
    assert run(DQNAgent(env, total_steps=640, **TINY), env, tmp_path, progress=False).steps == 640


# -- the myopic twin and SlateQ ----------------------------------------------------------------------

def test_myopic_twin_has_discount_zero_and_learns_immediate_reward_targets():
    env = drift_vec()
    agent = agents.make("dqn_myopic", env, **TINY)
    assert agent.config.discount == 0.0 and agent.name == "dqn_myopic"
    with pytest.raises(ValueError, match="discount 0"):
        MyopicDQNAgent(env, discount=0.9)
    batch = {"reward": torch.tensor([2.0, 3.0]), "discount": torch.zeros(2), "next_obs": torch.zeros(2, 282)}
    assert torch.equal(agent.td_target(batch), batch["reward"] * agent.config.reward_scale)


def set_linear_q(net: torch.nn.Module, column: int) -> None:
    """Make a PairNetwork score each candidate by one of its feature columns: Q(s, i) = items[i, column] (>= 0)."""
    with torch.no_grad():
        for param in net.parameters():
            param.zero_()
        net.item_in.weight[0, column] = 1.0
        net.pair[1].weight[0, 0] = 1.0  # pair = ReLU, Linear, ReLU, Linear: unit 0 passes the column through
        net.pair[3].weight[0, 0] = 1.0


@pytest.mark.parametrize("double", [True, False])
def test_double_dqn_values_the_online_argmax_with_the_target_network(double):
    """Online Q = appeal, target Q = length of each next candidate (set by hand). Candidate 1 has the top
    appeal (0.8) but length 0.3; candidate 0 has the top length (0.9). With reward 1 (scaled: 0.1) and
    discount 0.5, double DQN's target is 0.1 + 0.5 * 0.3 = 0.25 and plain DQN's 0.1 + 0.5 * 0.9 = 0.55;
    a terminal transition (discount 0) is 0.1 either way. Checked: asserting 0.25 fails with double=False."""
    agent = DQNAgent(BestCandidateEnv(), **TINY, double=double)
    lay = BestCandidateEnv.layout
    appeal, length = lay.n_topics, lay.n_topics + 2  # item row: topics, appeal, quality score, length
    set_linear_q(agent.online["q"], appeal)
    set_linear_q(agent.target["q"], length)
    items = np.full((lay.n_candidates, lay.item_dim), 0.1, np.float32)
    items[0, [appeal, length]] = 0.1, 0.9
    items[1, [appeal, length]] = 0.8, 0.3
    items[2, [appeal, length]] = 0.2, 0.5
    next_obs = np.zeros((2, lay.size), np.float32)
    next_obs[:, lay.candidates] = items.reshape(-1)
    batch = {"reward": torch.ones(2), "discount": torch.tensor([0.5, 0.0]), "next_obs": torch.as_tensor(next_obs)}
    with torch.no_grad():  # the hand-set networks are what they claim to be
        torch.testing.assert_close(agent.q_values(batch["next_obs"])[0], torch.as_tensor(items[:, appeal]))
        torch.testing.assert_close(agent.q_values(batch["next_obs"], target=True)[0], torch.as_tensor(items[:, length]))
    expected = [0.25, 0.1] if double else [0.55, 0.1]
    torch.testing.assert_close(agent.td_target(batch), torch.tensor(expected))


def test_slateq_greedy_slate_is_distinct_and_its_value_matches_the_choice_model():
    env = drift_vec(8, "recsim_env/SlateDrift-v0")
    agent = SlateQAgent(env, **TINY)
    obs, info = env.reset(seed=0)
    slates = agent.act(obs, info)
    assert slates.shape == (8, 3) and all(len(set(row)) == 3 for row in slates)
    x = torch.as_tensor(obs)
    with torch.no_grad():
        q_items, q_none = agent.item_values(x)
        logits = agent.click_logits(x)
        slate, value = agent.greedy_slate(q_items, q_none, *logits)
        p = torch.softmax(agent.outcome_logits(*logits, slate), dim=1)
        direct = (p[:, :-1] * q_items.gather(1, slate)).sum(dim=1) + p[:, -1] * q_none
    torch.testing.assert_close(value, direct)
    explored = agent.explore(obs, 1.0, np.random.default_rng(0))
    assert explored.shape == (8, 3) and all(len(set(row)) == 3 for row in explored)
    env.step(explored)  # a valid action for the env


def test_slateq_trains_with_finite_losses_and_its_checkpoint_acts_the_same(tmp_path):
    env = drift_vec(32, "recsim_env/SlateDrift-v0")
    from agents.slateq import train as train_slateq

    result = train_slateq(env, total_steps=3_200, out_dir=tmp_path, **TINY, progress=False)
    assert np.isfinite([row["td_loss"] for row in result.log[3:]]).all()
    fresh = SlateQAgent(env, **TINY, seed=5)
    fresh.load(tmp_path / "checkpoint.pt")
    obs, info = env.reset(seed=1)
    assert np.array_equal(fresh.act(obs, info), result.agent.act(obs, info))


# -- ranking the catalogue and predicting clicks at logged steps ---------------------------------------

def logged(env_id: str) -> tuple[gym.vector.VectorEnv, LoggedSteps]:
    env = drift_vec(16, env_id)
    return env, collect_steps(env, agents.make("random", env, seed=1), seed=3)


@pytest.mark.parametrize("name, env_id", [("dqn", "recsim_env/InterestDrift-v0"),
                                          ("dqn_myopic", "recsim_env/InterestDrift-v0"),
                                          ("slateq", "recsim_env/SlateDrift-v0")])
def test_catalogue_scores_are_the_candidate_scores_for_the_candidates(name, env_id):
    env, steps = logged(env_id)
    agent = agents.make(name, env, **TINY)
    scores = agent.scores(steps.obs)
    for row in (0, len(steps) // 2, len(steps) - 1):  # the step's candidates as the whole catalogue
        one = dataclasses.replace(steps.select([row]), item_features=steps.item_features[steps.candidates[row]])
        np.testing.assert_allclose(agent.catalogue_scores(one)[0], scores[row], rtol=1e-5, atol=1e-6)
    full = agent.catalogue_scores(steps)  # the real catalogue: its candidates' columns are the candidate scores
    assert full.shape == (len(steps), steps.n_items) and np.isfinite(full).all()
    np.testing.assert_allclose(np.take_along_axis(full, steps.candidates, axis=1), scores, rtol=1e-5, atol=1e-6)
    assert full.std(axis=1).min() > 0  # items are told apart
    top = agent.act(steps.obs)
    assert np.array_equal(scores.argmax(axis=1), top[:, 0] if top.ndim == 2 else top)  # the ranking act follows
    with torch.no_grad():  # user chunks of any size give the same scores
        x, items = agent.logged_tensors(steps)
        whole, _ = agent.online["q"].score_items(x, items)
        one_at_a_time, _ = agent.online["q"].score_items(x, items, max_elements=1)
    torch.testing.assert_close(one_at_a_time, whole)


def test_slateq_click_probability_is_its_choice_model_on_the_logged_slate():
    env, steps = logged("recsim_env/SlateDrift-v0")
    agent = SlateQAgent(env, **TINY)
    with torch.no_grad():
        agent.online["attention"].rest.copy_(torch.tensor([-0.5, -1.0]))  # positions matter
    # Where each shown item sits among the step's candidates: the slate as an action.
    slate = torch.as_tensor((steps.candidates[:, None, :] == steps.shown[:, :, None]).argmax(axis=2))
    with torch.no_grad():
        logits = agent.outcome_logits(*agent.click_logits(torch.as_tensor(steps.obs)), slate)
    p = agent.click_probability(steps)
    distinct = np.array([len(set(row)) == 3 for row in steps.shown])  # candidates may repeat an item
    assert p.shape == (len(steps), 3) and (p[distinct] > 0).all() and (p.sum(axis=1) < 1).all()
    np.testing.assert_allclose(p[distinct], torch.softmax(logits, dim=1)[distinct, :-1].numpy(), rtol=1e-5, atol=1e-6)
    # A repeated item is shown once, at its first position: the later copy gets 0 and no share of the rest.
    repeated = agent.click_probability(dataclasses.replace(steps, shown=steps.shown[:, [0, 0, 1]]))
    assert np.all(repeated[:, 1] == 0.0)
    with torch.no_grad():
        kept = torch.softmax(agent.outcome_logits(*agent.click_logits(torch.as_tensor(steps.obs)),
                                                  slate[:, [0, 0, 1]])[:, [0, 2, 3]], dim=1)
    np.testing.assert_allclose(repeated[distinct][:, [0, 2]], kept[distinct, :2].numpy(), rtol=1e-5, atol=1e-6)


def test_logged_steps_the_agents_cannot_read_are_refused():
    env, steps = logged("recsim_env/SlateDrift-v0")
    agent = SlateQAgent(env, **TINY)
    with pytest.raises(ValueError, match="steps.obs has shape"):
        agent.catalogue_scores(dataclasses.replace(steps, obs=steps.obs[:, :-1]))
    with pytest.raises(ValueError, match="steps.item_features has shape"):
        agent.catalogue_scores(dataclasses.replace(steps, item_features=steps.item_features[:, :-1]))
    with pytest.raises(ValueError, match="slates of 4 items"):
        agent.click_probability(dataclasses.replace(steps, shown=steps.shown[:, [0, 1, 2, 2]]))
    with pytest.raises(ValueError, match="item ids outside"):
        agent.click_probability(dataclasses.replace(steps, shown=np.full_like(steps.shown, steps.n_items)))
    dqn_env, dqn_steps = logged("recsim_env/InterestDrift-v0")
    with pytest.raises(NotImplementedError, match="does not predict clicks"):
        DQNAgent(dqn_env, **TINY).click_probability(dqn_steps)


# -- errors ------------------------------------------------------------------------------------------

def test_clear_errors_for_inputs_the_agents_do_not_support():
    with pytest.raises(TypeError, match="Discrete"):
        DQNAgent(drift_vec(4, "recsim_env/SlateDrift-v0"))
    with pytest.raises(TypeError, match="MultiDiscrete"):
        SlateQAgent(drift_vec(4))
    with pytest.raises(TypeError, match="flat 1-D Box"):
        DQNAgent(gym.make("recsim_env/TabularDrift-v0"))
    with pytest.raises(TypeError, match="ObservationLayout"):
        DQNAgent(_NoLayoutEnv())
    with pytest.raises(TypeError, match="VectorEnv"):
        run(DQNAgent(BestCandidateEnv(), **TINY), BestCandidateEnv())
    same_step = gym.vector.SyncVectorEnv([BestCandidateEnv], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    with pytest.raises(ValueError, match="NEXT_STEP"):
        run(DQNAgent(same_step, **TINY), same_step)
    with pytest.raises(ValueError, match="DQNConfig.encoder"):
        DQNConfig(encoder="cnn")
    with pytest.raises(ValueError, match=r"DQNConfig.discount=1.5 is out of range"):
        DQNConfig(discount=1.5)


class _NoLayoutEnv(gym.Env):
    observation_space = gym.spaces.Box(0.0, 1.0, (8,), np.float32)
    action_space = gym.spaces.Discrete(2)


def test_gru_encoder_trains_and_acts():
    env = drift_vec(16)
    agent = train(env, total_steps=1_600, encoder="gru", **TINY, progress=False).agent
    obs, info = env.reset(seed=0)
    assert agent.act(obs, info).shape == (16,)
