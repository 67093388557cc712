"""Logs with propensities: what was recorded, reproducibility, Parquet, and a first off-policy estimate."""

import dataclasses

import gymnasium as gym
import numpy as np
import pytest

import agents
from agents.base import Recommender
from agents.behaviour import EpsilonGreedy, Softmax
from agents.ope import per_decision_importance_sampling
from recsim_env.logs.propensity import PropensityLog, collect_propensity_log, read_propensity_log, write_propensity_log
from recsim_env.tabular import policy_value, value_iteration
from tests.conftest import make_vec

pytest.importorskip("pyarrow")


class TableAgent(Recommender):
    """Scores of the finite MDP's actions read from a table indexed by the observed state."""

    name = "table"

    def __init__(self, env, table: np.ndarray):
        super().__init__(env)
        self.table = table

    def act(self, obs, info):
        return self.table[np.asarray(obs, np.int64)].argmax(axis=1)

    def scores(self, obs, info):
        return self.table[np.asarray(obs, np.int64)]


def tabular_env(num_envs: int = 16) -> gym.vector.VectorEnv:
    return gym.make_vec("recsim_env/TabularDrift-v0", num_envs=num_envs, vectorization_mode="sync")


def simulated_log(seed: int = 3, policy_seed: int = 1, n_users: int = 12) -> PropensityLog:
    env = make_vec(num_envs=5)
    return collect_propensity_log(env, EpsilonGreedy(agents.make("myopic", env), 0.3, seed=policy_seed),
                                  n_users, seed=seed)


def assert_same(a: PropensityLog, b: PropensityLog) -> None:
    for f in dataclasses.fields(PropensityLog):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and x.shape == y.shape, f.name
            np.testing.assert_array_equal(x, y, err_msg=f.name)  # NaN equals NaN here
        else:
            assert x == y, f.name


def test_log_records_complete_episodes_and_consistent_actions():
    log = simulated_log()
    assert len(log) > 12 and np.array_equal(np.unique(log.user), np.arange(12))
    for u in range(12):
        rows = log.user == u
        assert np.array_equal(log.step[rows], np.arange(rows.sum()))  # users first, then steps
        ends = log.terminated[rows] | log.truncated[rows]
        assert ends[-1] and not ends[:-1].any()  # one whole episode each
    rows = np.arange(len(log))
    assert np.array_equal(log.item, log.candidates[rows, log.position])
    assert np.array_equal(log.propensity, log.probabilities[rows, log.position])
    np.testing.assert_allclose(log.probabilities.sum(axis=1), 1.0, atol=1e-12)
    assert set(np.unique(np.round(log.probabilities, 12))) <= {0.03, 0.73}  # 0.3 / 10 and 0.7 + 0.03
    assert log.interest.shape == log.satiation.shape == (len(log), 10) and log.budget.shape == (len(log),)
    assert (log.budget > 0).all() and np.isfinite(log.engagement).all()
    assert np.array_equal(log.reward, log.engagement)  # the default reward is engagement
    assert (log.engagement[~log.click] == 0).all() and (log.engagement[log.click] > 0).all()


def test_logged_propensity_is_the_policy_probability_at_the_logged_step():
    """On the finite MDP the probabilities depend on the logged state alone, so they can be recomputed."""
    env = tabular_env()
    table = np.random.default_rng(0).standard_normal((37, 4))
    policy = Softmax(TableAgent(env, table), 0.5, seed=4)
    log = collect_propensity_log(env, policy, 40, seed=2)
    recomputed = Softmax(TableAgent(env, table), 0.5).action_probabilities(log.obs[:, 0], {})
    np.testing.assert_array_equal(log.probabilities, recomputed)
    np.testing.assert_array_equal(log.propensity, recomputed[np.arange(len(log)), log.position])
    assert np.array_equal(log.candidates, np.broadcast_to(np.arange(4), (len(log), 4)))
    assert log.interest is None and np.isnan(log.engagement).all()  # the MDP reports neither
    assert (log.obs[:, 0] < 36).all()  # never acted on in the terminal state


def test_same_seed_same_log_bit_for_bit():
    assert_same(simulated_log(), simulated_log())
    other = simulated_log(policy_seed=2)
    assert not (len(other) == len(simulated_log()) and np.array_equal(other.position, simulated_log().position))


@pytest.mark.parametrize("make", [simulated_log, lambda: collect_propensity_log(
    tabular_env(4), EpsilonGreedy(TableAgent(tabular_env(1), np.eye(37, 4)), 0.2, seed=0), 6, seed=0)],
    ids=["simulated", "tabular"])
def test_parquet_round_trip(tmp_path, make):
    log = make()
    path = write_propensity_log(tmp_path / "sub" / "log.parquet", log)
    assert path.exists() and [p.name for p in path.parent.iterdir()] == ["log.parquet"]  # no temp file left
    assert_same(read_propensity_log(path), log)


def test_malformed_files_are_refused_naming_file_and_column(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = write_propensity_log(tmp_path / "log.parquet", simulated_log(n_users=3))
    table = pq.read_table(path)
    dropped = tmp_path / "no_propensity.parquet"
    pq.write_table(table.drop_columns(["propensity"]), dropped)
    with pytest.raises(ValueError, match=r"no_propensity\.parquet.*missing column propensity"):
        read_propensity_log(dropped)
    partial = tmp_path / "partial_state.parquet"
    pq.write_table(table.drop_columns(["budget"]), partial)
    with pytest.raises(ValueError, match=r"partial_state\.parquet.*missing column budget"):
        read_propensity_log(partial)
    flat = tmp_path / "flat.parquet"
    pq.write_table(table.set_column(table.column_names.index("probabilities"), "probabilities",
                                    pa.array(np.zeros(len(table)))), flat)
    with pytest.raises(ValueError, match=r"flat\.parquet: column probabilities must hold fixed-size lists"):
        read_propensity_log(flat)
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"user": [0, 1]}), plain)
    with pytest.raises(ValueError, match=r"plain\.parquet: not a recsim_env propensity log \(no .* metadata\)"):
        read_propensity_log(plain)


def test_arguments_are_validated():
    env = make_vec(num_envs=2)
    policy = EpsilonGreedy(agents.make("myopic", env), 0.1)
    with pytest.raises(ValueError, match=r"n_users=0 is out of range"):
        collect_propensity_log(env, policy, 0, seed=0)
    with pytest.raises(RuntimeError, match="had not finished after max_steps=3"):
        collect_propensity_log(env, policy, 2, seed=0, max_steps=3)
    slate_env = make_vec("recsim_env/SlateDrift-v0", num_envs=2)
    with pytest.raises(TypeError, match="Discrete action space"):
        collect_propensity_log(slate_env, policy, 2, seed=0)


def test_importance_sampling_recovers_the_exact_value_of_a_deterministic_target():
    """The per-decision IS estimate of the optimal policy's value from an epsilon-greedy log lies within
    its own 99% interval of the exact value (the linear Bellman system on the env's arrays), while the
    same log's unweighted mean return (IS switched off: every weight 1) is outside its 99% interval.

    Per-decision weights are heavy-tailed, so the normal interval is approximate: at epsilon 0.1 and
    4,000 users one seed in six fell outside it; at epsilon 0.05 and 8,000 users six seeds of six
    passed both checks (|z| <= 1.7 for IS, z <= -3.3 for the unweighted mean)."""
    env = tabular_env(64)
    mdp = env.envs[0].unwrapped.mdp
    _, q = value_iteration(mdp.transition, mdp.reward)
    target = q.argmax(axis=1)
    exact = policy_value(mdp.transition, mdp.reward, target)[mdp.initial_state]
    log = collect_propensity_log(env, EpsilonGreedy(TableAgent(env, q), 0.05, seed=1), 8000, seed=2)
    target_probability = (target[log.obs[:, 0]] == log.position).astype(np.float64)
    estimates = per_decision_importance_sampling(log, target_probability)
    assert estimates.shape == (8000,)
    half_width = 2.576 * estimates.std(ddof=1) / np.sqrt(estimates.size)
    assert abs(estimates.mean() - exact) < half_width, (estimates.mean(), exact, half_width)
    returns = np.bincount(log.user, log.reward)
    assert abs(returns.mean() - exact) > 2.576 * returns.std(ddof=1) / np.sqrt(returns.size)
    # The behaviour policy's own value is what the unweighted mean estimates: the target as target.
    on_policy = per_decision_importance_sampling(log, log.propensity)
    np.testing.assert_allclose(on_policy, returns, rtol=1e-12)


def test_importance_sampling_weights_follow_the_definition():
    """Two short hand-made episodes: each reward times the product of ratios up to its step."""
    probs = np.full((5, 2), 0.5)
    log = PropensityLog(
        user=np.array([0, 0, 0, 1, 1]), step=np.array([0, 1, 2, 0, 1]), session=np.zeros(5, np.int64),
        obs=np.zeros((5, 1)), candidates=np.tile([0, 1], (5, 1)), position=np.zeros(5, np.int64),
        item=np.zeros(5, np.int64), propensity=np.array([0.5, 0.25, 0.5, 0.5, 0.8]), probabilities=probs,
        click=np.ones(5, bool), engagement=np.ones(5), reward=np.array([1.0, 2.0, 3.0, 4.0, 5.0]),
        terminated=np.array([0, 0, 1, 0, 1], bool), truncated=np.zeros(5, bool), metadata={"n_users": 2})
    target = np.array([1.0, 1.0, 0.0, 0.5, 1.0])
    expected = [1 * 2 + 2 * 2 * 4 + 0.0, 4 * 1 + 5 * 1 / 0.8]
    np.testing.assert_allclose(per_decision_importance_sampling(log, target), expected)
    np.testing.assert_allclose(per_decision_importance_sampling(log, target, discount=0.5),
                               [2 + 0.5 * 16, 4 + 0.5 * 6.25])
    with pytest.raises(ValueError, match="discount"):
        per_decision_importance_sampling(log, target, discount=1.5)
    with pytest.raises(ValueError, match="target_probability has shape"):
        per_decision_importance_sampling(log, target[:3])


def test_probabilities_that_are_not_a_distribution_are_refused():
    class Broken(EpsilonGreedy):
        def action_probabilities(self, obs, info):
            return super().action_probabilities(obs, info) * 0.5

    env = make_vec(num_envs=2)
    with pytest.raises(ValueError, match="distribution over the 10 candidates"):
        collect_propensity_log(env, Broken(agents.make("myopic", env), 0.1), 2, seed=0)


class Spy:
    """A target that records what it was shown and answers with a fixed candidate."""

    def __init__(self, choice: int = 0):
        self.active: list[np.ndarray] = []
        self.choice = choice

    def act(self, obs, info):
        from recsim_env.logs.propensity import ACTIVE_KEY

        self.active.append(np.array(info[ACTIVE_KEY], copy=True))
        return np.full(len(obs), self.choice)


def recorded_log(n_users: int = 30, seed: int = 4) -> tuple[PropensityLog, gym.vector.VectorEnv]:
    env = make_vec(num_envs=7)
    behaviour = EpsilonGreedy(agents.make("myopic", env), 0.3, seed=1)
    targets = {"myopic": agents.make("myopic", env), "soft": Softmax(agents.make("myopic", env), 0.5, seed=9),
               "random": agents.make("random", env, seed=3)}
    return collect_propensity_log(env, behaviour, n_users, seed=seed, targets=targets), env


def test_recorded_targets_are_aligned_with_the_rows_and_leave_the_log_unchanged():
    """A deterministic target equal to the behaviour's greedy agent is recorded as the one-hot of the
    behaviour's greedy choice on every row (the candidate with the 0.73 probability); a stochastic
    target as its exact softmax of the logged state's expected rewards; and the log itself is the one
    collected without targets, bit for bit (targets never touch the env or the behaviour's generator)."""
    log, env = recorded_log()
    assert sorted(log.targets) == ["myopic", "random", "soft"] and log.metadata["targets"] == ["myopic", "soft", "random"]
    for values in log.targets.values():
        assert values.shape == log.probabilities.shape
        np.testing.assert_allclose(values.sum(axis=1), 1.0, atol=1e-12)
    best = log.probabilities == log.probabilities.max(axis=1, keepdims=True)
    single = best.sum(axis=1) == 1  # tied best scores share the greedy mass (a few rows)
    assert single.mean() > 0.9 and np.isclose(log.probabilities[single].max(axis=1), 0.73).all()
    np.testing.assert_array_equal(log.targets["myopic"][single], best[single].astype(np.float64))
    assert best[log.targets["myopic"] == 1.0].all()  # on ties: one of the tied best
    # Where the behaviour took its (single) greedy candidate, the recorded target agrees with the logged action.
    took_greedy = log.propensity > 0.5
    assert took_greedy.any() and (~took_greedy & single).any()
    np.testing.assert_array_equal(log.targets["myopic"][np.arange(len(log)), log.position][single],
                                  took_greedy[single])
    sim = env.unwrapped.simulator
    scores = sim.expected_reward(log.candidates, log.interest, log.satiation) / 0.5
    soft = np.exp(scores - scores.max(axis=1, keepdims=True))
    np.testing.assert_allclose(log.targets["soft"], soft / soft.sum(axis=1, keepdims=True), rtol=1e-6, atol=1e-9)
    assert set(np.unique(log.targets["random"])) == {0.0, 1.0}  # an agent without probabilities: its one-hot act
    plain = collect_propensity_log(make_vec(num_envs=7), EpsilonGreedy(agents.make("myopic", env), 0.3, seed=1), 30,
                                   seed=4)
    assert plain.targets == {} and "targets" not in plain.metadata
    assert_same(dataclasses.replace(log, targets={}, metadata=plain.metadata), plain)


def test_targets_see_which_rows_the_log_keeps():
    """The active mask a target sees is set on exactly the rows that become log rows (not the autoreset
    steps, not the users started beyond ``n_users``), so a costly target can skip the others."""
    from agents.base import ACTIVE
    from recsim_env.logs.propensity import ACTIVE_KEY

    assert ACTIVE_KEY == ACTIVE
    env = make_vec(num_envs=4)
    spy = Spy(choice=2)
    log = collect_propensity_log(env, EpsilonGreedy(agents.make("myopic", env), 0.3, seed=0), 9, seed=1,
                                 targets={"spy": spy})
    active = np.array(spy.active)
    assert active.shape[1] == 4 and active.sum() == len(log) and not active.all()
    np.testing.assert_array_equal(log.targets["spy"], np.eye(10)[np.full(len(log), 2)])


def test_recorded_targets_round_trip_through_parquet_and_old_files_still_read(tmp_path):
    import pyarrow.parquet as pq

    log, _ = recorded_log(n_users=8)
    path = write_propensity_log(tmp_path / "log.parquet", log)
    back = read_propensity_log(path)
    assert sorted(back.targets) == sorted(log.targets)
    for name, values in log.targets.items():
        np.testing.assert_array_equal(back.targets[name], values)
    assert_same(dataclasses.replace(back, targets={}), dataclasses.replace(log, targets={}))
    # A file without target columns (as written before targets existed) reads with no targets.
    table = pq.read_table(path)
    old = tmp_path / "old.parquet"
    pq.write_table(table.drop_columns([c for c in table.column_names if c.startswith("target.")]), old)
    assert read_propensity_log(old).targets == {}
    with pytest.raises(ValueError, match=r"target 'myopic' has shape \(3, 10\)"):
        write_propensity_log(tmp_path / "bad.parquet",
                             dataclasses.replace(log, targets={"myopic": log.targets["myopic"][:3]}))


def test_targets_that_do_not_give_a_distribution_are_refused_by_name():
    env = make_vec(num_envs=2)
    behaviour = EpsilonGreedy(agents.make("myopic", env), 0.1)
    with pytest.raises(ValueError, match=r"target 'spy' chose a candidate outside \[0, 10\)"):
        collect_propensity_log(env, behaviour, 2, seed=0, targets={"spy": Spy(choice=10)})

    class Half:
        def act(self, obs, info):
            return np.zeros(len(obs), np.int64)

        def action_probabilities(self, obs, info):
            return np.full((len(obs), 10), 0.05)

    with pytest.raises(ValueError, match="target 'half' must give a distribution over the 10 candidates"):
        collect_propensity_log(env, behaviour, 2, seed=0, targets={"half": Half()})
    with pytest.raises(ValueError, match="target names must be non-empty strings"):
        collect_propensity_log(env, behaviour, 2, seed=0, targets={"": Spy()})
