"""Offline RL from a propensity log alone (CQL, BCQ, behaviour cloning): learning against the same agents
untrained and against the policy that wrote the log, the n-step transitions, BCQ's filter, determinism,
files and input errors."""

import dataclasses
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch

import agents
import recsim_env  # noqa: F401  (registers the env ids)
from agents.behaviour import EpsilonGreedy
from agents.evaluation import evaluate
from agents.offline import OfflineAgent, OfflineConfig, train, transitions
from recsim_env.logs import PropensityLog, collect_propensity_log, collect_steps

#: The fast learning settings, spelt out although they are the defaults (see ``OfflineConfig``) so that the
#: tests keep their meaning if the defaults move.
CQL = {"kind": "cql", "alpha": 0.03, "n_step": 5, "learning_rate": 1e-3, "batch_size": 256, "updates": 1500}
BC = {"kind": "bc", "learning_rate": 1e-3, "batch_size": 256, "updates": 1000}
BCQ = {"kind": "bcq", "tau": 0.05, "n_step": 5, "learning_rate": 1e-3, "batch_size": 256, "updates": 600}
TINY = {"hidden": 16, "batch_size": 32, "updates": 40, "target_update_interval": 10}
#: Held-out users: the log's users are reset with seed 1, these never appear in it.
HELD_OUT_SEED = 2**31 + 11


def drift_vec(n: int, **overrides) -> gym.vector.VectorEnv:
    return gym.make_vec("recsim_env/InterestDrift-v0", num_envs=n, vectorization_mode="vector_entry_point",
                        **overrides)


def weights(agent) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in agent.online.state_dict().items()}


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def logged():
    """1,000 users under epsilon-greedy myopic (epsilon 0.3), and 500 held-out users to act on."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    env = drift_vec(256)
    behaviour = EpsilonGreedy(agents.make("myopic", env), epsilon=0.3, seed=0)
    log = collect_propensity_log(env, behaviour, n_users=1000, seed=1)
    held_out = drift_vec(500)
    yield log, held_out
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def behaviour_return(logged) -> float:
    _, held_out = logged
    return float(evaluate(EpsilonGreedy(agents.make("myopic", held_out), 0.3, seed=5), held_out,
                          HELD_OUT_SEED).returns.mean())


def trained_and_untrained(log, env, config: dict) -> tuple[float, float]:
    """Held-out mean returns of the agent trained on ``log`` and of the same agent (same weights) untrained."""
    untrained, learner = OfflineAgent(env, **config), OfflineAgent(env, **config)
    assert same_weights(weights(untrained), weights(learner))
    learner.fit(log, progress=False)
    return (float(evaluate(learner, env, HELD_OUT_SEED).returns.mean()),
            float(evaluate(untrained, env, HELD_OUT_SEED).returns.mean()))


# -- learning ---------------------------------------------------------------------------------------

def test_cql_from_the_log_beats_its_untrained_self_and_the_behaviour_policy(logged, behaviour_return):
    """CQL on 1,000 logged users, never stepping an env, then one episode per held-out user.

    Seen to fail with learning switched off (``learning_rate=0``): the agent is then its untrained
    self (about 14 per user here, against about 45 for the behaviour policy) and both comparisons fail.
    """
    log, env = logged
    trained, untrained = trained_and_untrained(log, env, CQL)
    assert trained > untrained + 20.0
    assert trained > 1.15 * behaviour_return  # measured: 58.3 against 44.5; the myopic oracle earns 52.4


def test_behaviour_cloning_approaches_the_behaviour_policy(logged, behaviour_return):
    """BC imitates the log: far above its untrained self, within 15% of the behaviour policy's return.

    The myopic oracle reads the true interest that the observation does not show, so the cloned
    argmax is not the oracle's; it lands near the epsilon-greedy policy, not near the oracle.
    Seen to fail with ``learning_rate=0`` (untrained, about 14 per user).
    """
    log, env = logged
    trained, untrained = trained_and_untrained(log, env, BC)
    assert trained > untrained + 20.0
    assert abs(trained - behaviour_return) < 0.15 * behaviour_return


def test_bcq_beats_its_untrained_self(logged):
    """BCQ with a loose filter (the log's non-greedy candidates have relative probability about 0.04).

    Seen to fail with ``learning_rate=0`` (untrained, about 14 per user).
    """
    log, env = logged
    trained, untrained = trained_and_untrained(log, env, BCQ)
    assert trained > untrained + 20.0


@pytest.mark.slow
def test_longer_cql_and_bcq_on_a_larger_log_beat_the_behaviour_policy():
    """2,000 logged users, 3,000 updates, 1,000 held-out users: CQL and BCQ beat the behaviour policy.

    Seen to fail with ``learning_rate=0`` (untrained, about 14 per user, against about 45).
    """
    torch.set_num_threads(1)
    env = drift_vec(256)
    log = collect_propensity_log(env, EpsilonGreedy(agents.make("myopic", env), 0.3, seed=0), n_users=2000, seed=1)
    held_out = drift_vec(1000)
    behaviour = float(evaluate(EpsilonGreedy(agents.make("myopic", held_out), 0.3, seed=5), held_out,
                               HELD_OUT_SEED).returns.mean())
    for config in ({**CQL, "updates": 3000}, {**BCQ, "updates": 2000}):
        trained, untrained = trained_and_untrained(log, held_out, config)
        assert trained > untrained + 20.0
        assert trained > 1.15 * behaviour, config


# -- the log as transitions -------------------------------------------------------------------------

def hand_log(reward, user, step, terminated, truncated, n_candidates: int = 10, width: int = 4) -> PropensityLog:
    r = len(reward)
    probabilities = np.full((r, n_candidates), 1.0 / n_candidates)
    return PropensityLog(user=np.asarray(user), step=np.asarray(step), session=np.zeros(r, np.int64),
                         obs=np.arange(r * width, dtype=np.float32).reshape(r, width),
                         candidates=np.tile(np.arange(n_candidates), (r, 1)), position=np.arange(r) % n_candidates,
                         item=np.arange(r) % n_candidates, propensity=np.full(r, 1.0 / n_candidates),
                         probabilities=probabilities, click=np.ones(r, bool), engagement=np.asarray(reward, float),
                         reward=np.asarray(reward, float), terminated=np.asarray(terminated),
                         truncated=np.asarray(truncated))


def test_n_step_returns_and_bootstrap_rows_stop_at_episode_ends():
    # User 0: 4 steps, terminated. User 1: 3 steps, truncated (its next observation is not logged).
    log = hand_log([1.0, 2.0, 3.0, 4.0, 10.0, 20.0, 30.0], user=[0, 0, 0, 0, 1, 1, 1], step=[0, 1, 2, 3, 0, 1, 2],
                   terminated=[0, 0, 0, 1, 0, 0, 0], truncated=[0, 0, 0, 0, 0, 0, 1])
    layout = SimpleNamespace(size=4, n_candidates=10)  # only the widths are read
    one = transitions(log, layout, discount=0.5, n_step=1)
    np.testing.assert_allclose(one.returns.numpy(), log.reward)
    assert one.next_row.tolist() == [1, 2, 3, 3, 5, 6, 6]
    np.testing.assert_allclose(one.discount.numpy(), [0.5, 0.5, 0.5, 0, 0.5, 0.5, 0])
    two = transitions(log, layout, discount=0.5, n_step=2)
    np.testing.assert_allclose(two.returns.numpy(), [2.0, 3.5, 5.0, 4.0, 20.0, 35.0, 30.0])
    assert two.next_row.tolist() == [2, 3, 2, 3, 6, 5, 6]
    np.testing.assert_allclose(two.discount.numpy(), [0.25, 0.25, 0, 0, 0.25, 0, 0])
    batch = two.batch(torch.tensor([0, 4]))
    assert torch.equal(batch["next_obs"], one.obs[[2, 6]]) and batch["action"].tolist() == [0, 4]


def test_a_session_end_discounts_what_follows_it():
    """One episode of two sessions (rows 0-1, then 2-3): at ``session_discount=0`` nothing after the end
    of the first session reaches its rows; at 0.5 the next session's rewards count half."""
    log = hand_log([1.0, 2.0, 4.0, 8.0], user=[0, 0, 0, 0], step=[0, 1, 2, 3], terminated=[0, 0, 0, 1],
                   truncated=[0, 0, 0, 0])
    log = dataclasses.replace(log, session=np.array([0, 0, 1, 1]))
    layout = SimpleNamespace(size=4, n_candidates=10)
    apart = transitions(log, layout, discount=1.0, n_step=2, session_discount=0.0)
    np.testing.assert_allclose(apart.returns.numpy(), [3.0, 2.0, 12.0, 8.0])
    np.testing.assert_allclose(apart.discount.numpy(), [0.0, 0.0, 0.0, 0.0])  # row 0 would bootstrap from row 2
    half = transitions(log, layout, discount=0.9, n_step=2, session_discount=0.5)
    np.testing.assert_allclose(half.returns.numpy(), [1.0 + 0.9 * 2.0, 2.0 + 0.45 * 4.0, 4.0 + 0.9 * 8.0, 8.0],
                               rtol=1e-6)
    np.testing.assert_allclose(half.discount.numpy(), [0.9 * 0.45, 0.45 * 0.9, 0.0, 0.0], rtol=1e-6)
    same = transitions(log, layout, discount=0.9, n_step=2)  # the default leaves sessions alone
    np.testing.assert_allclose(same.returns.numpy(), [2.8, 5.6, 11.2, 8.0], rtol=1e-6)
    with pytest.raises(ValueError, match=r"OfflineConfig.session_discount=2.0 is out of range"):
        OfflineConfig(session_discount=2.0)


def test_logs_the_agent_cannot_learn_from_are_refused(logged):
    log, env = logged
    agent = OfflineAgent(env, **TINY)
    small = drift_vec(8, n_candidates=5)
    other = collect_propensity_log(small, EpsilonGreedy(agents.make("random", small), 0.5), n_users=8, seed=0)
    with pytest.raises(ValueError, match="observations of size"):
        agent.fit(other)
    shuffled = dataclasses.replace(log, **{k: getattr(log, k)[::-1] for k in ("user", "step")})
    with pytest.raises(ValueError, match="sorted by user, then step"):
        agent.fit(shuffled)
    with pytest.raises(ValueError, match="empty"):
        agent.fit(dataclasses.replace(log, **{f.name: getattr(log, f.name)[:0] for f in dataclasses.fields(log)
                                               if isinstance(getattr(log, f.name), np.ndarray)}))


# -- acting, files, determinism ---------------------------------------------------------------------

def test_bcq_filter_ranges_from_q_learning_to_behaviour_cloning(logged):
    log, env = logged
    obs = log.obs[:300]
    x = torch.as_tensor(obs)
    agent = OfflineAgent(env, kind="bcq", **TINY)
    with torch.no_grad():
        agent.online["bc"].pair[-1].weight.mul_(30.0)  # an untrained clone is near uniform: spread it
        q, bc = agent.q_values(x).numpy(), agent.online["bc"](x)[0][..., 0].numpy()

    def with_tau(tau: float) -> OfflineAgent:
        agent.config = dataclasses.replace(agent.config, tau=tau)
        return agent

    assert np.array_equal(with_tau(0.0).act(obs), q.argmax(axis=1))  # everything supported: the Q argmax
    assert np.array_equal(with_tau(1.0).act(obs), bc.argmax(axis=1))  # only the cloned favourite
    assert (q.argmax(axis=1) != bc.argmax(axis=1)).any()  # the two are told apart here
    middle = with_tau(0.5).scores(obs)
    p = torch.softmax(torch.as_tensor(bc), dim=1).numpy()
    supported = p >= 0.5 * p.max(axis=1, keepdims=True)
    assert (~supported).any() and (supported.sum(axis=1) > 1).any()  # the filter bites, and not always to one
    for row in range(len(obs)):  # supported candidates first, each group in Q order
        assert middle[row][supported[row]].min() > middle[row][~supported[row]].max(initial=-np.inf)
        for group in (supported[row], ~supported[row]):
            assert np.array_equal(np.argsort(-q[row][group]), np.argsort(-middle[row][group]))


def test_catalogue_scores_rank_the_candidates_as_scores_does():
    env = drift_vec(16)
    steps = collect_steps(env, agents.make("random", env, seed=1), seed=3)
    for kind in ("cql", "bcq", "bc"):
        agent = OfflineAgent(env, kind=kind, tau=0.5, **TINY)
        scores = agent.scores(steps.obs)
        for row in (0, len(steps) - 1):  # the step's candidates as the whole catalogue
            one = dataclasses.replace(steps.select([row]), item_features=steps.item_features[steps.candidates[row]])
            np.testing.assert_allclose(agent.catalogue_scores(one)[0], scores[row], rtol=1e-5, atol=1e-5)
        full = agent.catalogue_scores(steps)
        assert full.shape == (len(steps), steps.n_items) and np.isfinite(full).all()


def test_same_seed_same_weights_other_seed_other_weights(logged):
    log, env = logged
    for kind in ("cql", "bcq", "bc"):
        runs = [train(env, log, kind=kind, seed=seed, n_step=3, **TINY, progress=False) for seed in (7, 7, 8)]
        assert same_weights(weights(runs[0].agent), weights(runs[1].agent)), kind
        assert not same_weights(weights(runs[0].agent), weights(runs[2].agent)), kind
        assert all(np.isfinite(v).all() and len(v) == TINY["updates"] for v in runs[0].losses.values())
        assert not same_weights(weights(runs[0].agent), weights(OfflineAgent(env, kind=kind, seed=7, **TINY)))


def test_learning_rate_zero_leaves_the_weights_as_they_were(logged):
    log, env = logged
    agent = OfflineAgent(env, kind="bcq", learning_rate=0.0, **TINY)
    before = weights(agent)
    agent.fit(log, progress=False)
    assert same_weights(before, weights(agent)) and agent.gradient_steps == TINY["updates"]


def test_save_load_round_trip_and_kind_mismatch_refused(logged, tmp_path):
    log, env = logged
    trained = train(env, log, kind="bcq", **TINY, progress=False).agent
    trained.save(tmp_path / "bcq.pt")
    fresh = OfflineAgent(env, kind="bcq", seed=99, **TINY)
    fresh.load(tmp_path / "bcq.pt")
    assert same_weights(weights(fresh), weights(trained))
    assert np.array_equal(fresh.act(log.obs[:200]), trained.act(log.obs[:200]))
    with pytest.raises(ValueError, match="algorithm: file has 'bcq', this agent has 'cql'"):
        OfflineAgent(env, kind="cql", **TINY).load(tmp_path / "bcq.pt")


# -- configuration ----------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value, message", [
    ("kind", "sac", r"OfflineConfig\.kind='sac': allowed 'cql', 'bcq', 'bc'"),
    ("encoder", "cnn", r"OfflineConfig\.encoder='cnn': allowed 'mlp', 'gru'"),
    ("alpha", -0.1, r"OfflineConfig\.alpha=-0\.1 is out of range: allowed \[0\.0, 10000\.0\]"),
    ("tau", 1.5, r"OfflineConfig\.tau=1\.5 is out of range: allowed \[0\.0, 1\.0\]"),
    ("learning_rate", -1e-3, r"OfflineConfig\.learning_rate=-0\.001 is out of range: allowed \[0\.0, 1\.0\]"),
    ("batch_size", 0, r"OfflineConfig\.batch_size=0 is out of range: allowed \[1, 1000000\]"),
    ("updates", -1, r"OfflineConfig\.updates=-1 is out of range"),
    ("discount", 1.01, r"OfflineConfig\.discount=1\.01 is out of range: allowed \[0\.0, 1\.0\]"),
    ("n_step", 0, r"OfflineConfig\.n_step=0 is out of range: allowed \[1, 100\]"),
    ("target_update_interval", 0, r"OfflineConfig\.target_update_interval=0 is out of range"),
    ("seed", -1, r"OfflineConfig\.seed=-1 is out of range"),
])
def test_invalid_config_names_the_field_and_its_range(field, value, message):
    with pytest.raises(ValueError, match=message):
        OfflineConfig(**{field: value})


def test_wrong_config_type_and_slate_env_are_refused():
    from agents.dqn import DQNConfig

    with pytest.raises(TypeError, match="OfflineConfig"):
        OfflineAgent(drift_vec(2), config=DQNConfig())
    slate = gym.make_vec("recsim_env/SlateDrift-v0", num_envs=2, vectorization_mode="vector_entry_point")
    with pytest.raises(TypeError, match="Discrete"):
        OfflineAgent(slate)


def test_the_registry_trains_each_kind_on_the_log_it_is_given(logged):
    log, env = logged[0], logged[1]
    for kind in ("cql", "bcq", "bc"):
        agent = agents.make(kind, env, log=log, seed=3, **TINY)
        assert agent.name == kind
        again = agents.make(kind, env, log=log, seed=3, **TINY)
        assert same_weights(weights(agent), weights(again))  # trained from the log, deterministically
    with pytest.raises(TypeError, match=r"cql learns from a log alone: agents.make\('cql', env, log="):
        agents.make("cql", env)
