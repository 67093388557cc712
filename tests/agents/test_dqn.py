"""DQN, its myopic twin and SlateQ: learning, checkpoints, resuming, determinism and input errors."""

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

def test_learns_to_pick_the_known_best_candidate():
    env = best_candidate_vec()
    result = train(env, total_steps=32_000, **{**TINY, "hidden": 32, "learning_rate": 3e-3, "discount": 0.5,
                                               "epsilon_fraction": 0.3, "n_step": 1}, progress=False)
    probe = BestCandidateEnv()
    probe.reset(seed=123)
    obs = np.stack([probe._obs() for _ in range(500)])
    best = obs[:, probe.layout.candidates].reshape(500, 5, -1)[:, :, probe.quality].argmax(axis=1)
    accuracy = np.mean(result.agent.act(obs) == best)
    assert accuracy >= 0.85, accuracy  # random picks are right 20% of the time; measured 0.956 here


def test_no_transition_into_an_autoreset_is_stored(tmp_path):
    """Episodes of 4 steps in a NEXT_STEP vector env: every fifth step is a reset, never a transition."""
    env = best_candidate_vec(8)
    run(DQNAgent(env, total_steps=8 * 50, n_step=1, discount=0.9, **{**TINY, "learning_starts": 10**6}), env,
        tmp_path, progress=False)
    replay = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["replay"]
    assert replay["size"] == 8 * 40  # 50 steps per user = 10 episodes of 4 transitions + 10 reset steps
    discount = replay["discount"]
    assert torch.sum(discount == 0.0) == 8 * 10  # the last step of each episode: terminal, no bootstrap
    assert torch.all((discount == 0.0) | torch.isclose(discount, torch.tensor(0.9)))  # 1-step: g elsewhere


@pytest.mark.slow
def test_short_dqn_run_on_interest_drift_beats_random_on_held_out_users():
    env = drift_vec(256)
    result = train(env, total_steps=300_000, hidden=32, learning_starts=10_000, progress=False)
    held_out = drift_vec(300)
    seed = 2**31 + 11
    assert seed not in result.env_seeds
    learned = evaluate(result.agent, held_out, seed=seed).returns.mean()
    random = evaluate(agents.make("random", held_out), held_out, seed=seed).returns.mean()
    assert learned > 1.3 * random, (learned, random)
    curve, ended = result.curve_returns, result.episode_returns  # curve: in order of beginning, cut at the end
    assert 0.9 * len(ended) < len(curve) < len(ended)
    assert curve[:256].mean() > 1.1 * ended[:256].mean()  # the first to end are the short ones


@pytest.mark.slow
def test_slateq_beats_random_slates_on_slate_drift():
    env = drift_vec(256, "recsim_env/SlateDrift-v0")
    from agents.slateq import train as train_slateq

    result = train_slateq(env, total_steps=300_000, hidden=32, learning_starts=10_000, progress=False)
    held_out = drift_vec(300, "recsim_env/SlateDrift-v0")
    learned = evaluate(result.agent, held_out, seed=2**31 + 12).returns.mean()
    random = evaluate(agents.make("random", held_out), held_out, seed=2**31 + 12).returns.mean()
    assert learned > 1.2 * random, (learned, random)


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


def test_double_dqn_target_uses_the_next_steps_candidates():
    env = drift_vec()
    agent = DQNAgent(env, **TINY)
    obs, _ = env.reset(seed=0)
    next_obs = torch.as_tensor(obs[:4])
    batch = {"reward": torch.ones(4), "discount": torch.tensor([0.5, 0.0, 0.5, 0.25]), "next_obs": next_obs}
    with torch.no_grad():
        chosen = agent.q_values(next_obs).argmax(dim=1, keepdim=True)
        value = agent.q_values(next_obs, target=True).gather(1, chosen)[:, 0]
    expected = batch["reward"] * agent.config.reward_scale + batch["discount"] * value
    torch.testing.assert_close(agent.td_target(batch), expected)


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


def test_slateq_learns_the_click_model_and_checkpoints(tmp_path):
    env = drift_vec(32, "recsim_env/SlateDrift-v0")
    from agents.slateq import train as train_slateq

    result = train_slateq(env, total_steps=3_200, out_dir=tmp_path, **TINY, progress=False)
    assert np.isfinite([row["td_loss"] for row in result.log[3:]]).all()
    fresh = SlateQAgent(env, **TINY, seed=5)
    fresh.load(tmp_path / "checkpoint.pt")
    obs, info = env.reset(seed=1)
    assert np.array_equal(fresh.act(obs, info), result.agent.act(obs, info))


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
        DQNConfig(encoder="transformer")
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
