"""The suite's offline RL agents (trained on a propensity log of their own users) and the DQN's other encoders."""

import csv
import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch

import agents
from agents.behaviour import EpsilonGreedy
from benchmarks import runner
from benchmarks.run import RunConfig, run_suite
from benchmarks.suites import SUITES, Budget, RunSpec, Suite
from recsim_env.logs import collect_propensity_log

TINY = SUITES["tiny"].budget


def read_table(out):
    with open(out / "results.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_cql_and_dqn_gru_run_end_to_end_through_the_suite(tmp_path):
    outcome = run_suite(RunConfig(suite="tiny", out=str(tmp_path), jobs=1, agents=("random", "cql", "dqn_gru"),
                                  seeds=(0,), progress=False))
    assert not outcome.failed
    by = {(r["agent"], r["metric"]): float(r["value"]) for r in read_table(tmp_path)}
    for agent in ("random", "cql", "dqn_gru"):
        assert np.isfinite(by[(agent, "return")]) and np.isfinite(by[(agent, "rollout_NDCG@10")])
    for agent in ("cql", "dqn_gru"):  # both rank the whole catalogue with their pair networks
        assert 0.0 <= by[(agent, "log_HR@10")] <= 1.0 and by[(agent, "train_seconds")] > 0
    # the same budget: the interacting DQN steps exactly that many users, the log holds whole episodes
    assert by[("dqn_gru", "train_steps")] == TINY.train_steps
    assert 0.9 * TINY.train_steps < by[("cql", "train_steps")] <= TINY.train_steps
    report = (tmp_path / "REPORT.md").read_text()
    assert "| cql |" in report and "| dqn_gru |" in report
    # the stored weights are what the names say: a GRU user encoder, and a CQL agent
    work = tmp_path / "work"
    env = gym.make_vec("recsim_env/InterestDrift-v0", num_envs=1, vectorization_mode="vector_entry_point")
    agents.make("dqn", env, encoder="gru").load(work / "default__dqn_gru__seed0" / "checkpoint.pt")
    with pytest.raises(ValueError, match="encoder: file has 'gru', this agent has 'mlp'"):
        agents.make("dqn", env).load(work / "default__dqn_gru__seed0" / "checkpoint.pt")
    from agents.offline import OfflineAgent

    OfflineAgent(env, kind="cql").load(work / "default__cql__seed0" / "model.pt")


def test_the_offline_log_is_the_budget_of_whole_episodes_of_other_users():
    spec = RunSpec("cql", "default", 0, TINY)
    log = runner.propensity_log(spec)
    assert 0.9 * TINY.train_steps < len(log) <= TINY.train_steps
    # whole episodes: users 0..n-1, each from step 0 to a step that ended it
    lengths = np.bincount(log.user)
    assert (lengths > 0).all() and len(lengths) == log.n_users
    last = np.cumsum(lengths) - 1
    assert (log.step[last] == lengths - 1).all() and (log.terminated[last] | log.truncated[last]).all()
    # the episode that would cross the budget is dropped whole: one more user would not fit
    longer = dataclasses.replace(TINY, train_steps=4 * TINY.train_steps)
    more = runner.propensity_log(dataclasses.replace(spec, budget=longer))
    assert len(log) + np.count_nonzero(more.user == log.n_users) > TINY.train_steps
    # epsilon-soft myopic behaviour: every candidate has at least epsilon / N of the mass
    assert log.probabilities.min() >= TINY.log_epsilon / log.probabilities.shape[1] - 1e-12
    assert log.metadata["policy"] == "epsilon_greedy(myopic, 0.3)"
    # its prefix claim: the same as logging exactly these users with a fresh behaviour (the run is a pure function)
    env = gym.make_vec(spec.env_id, num_envs=1000, vectorization_mode="vector_entry_point")
    seed = int(np.random.SeedSequence([spec.offline_log_seed, 1]).generate_state(1)[0])
    direct = collect_propensity_log(env, EpsilonGreedy(agents.make("myopic", env), TINY.log_epsilon, seed=seed),
                                    log.n_users, seed=spec.offline_log_seed)
    assert np.array_equal(direct.obs, log.obs) and np.array_equal(direct.position, log.position)
    assert np.array_equal(more.obs[:len(log)], log.obs)
    # none of the held-out users: no first observation of the log is one of theirs
    first = {row.tobytes() for row in log.obs[log.step == 0]}
    for held_out_seed, users in ((spec.eval_seed, TINY.eval_users), (spec.accuracy_seed, TINY.accuracy_users)):
        held_out = gym.make_vec(spec.env_id, num_envs=users, vectorization_mode="vector_entry_point")
        obs, _ = held_out.reset(seed=held_out_seed)
        assert not first & {row.tobytes() for row in np.asarray(obs)}
    assert len({spec.offline_log_seed, spec.eval_seed, spec.accuracy_seed, 10_000 + spec.seed}) == 4


def test_the_offline_agent_never_steps_the_evaluation_env_and_trains_the_budgets_updates(monkeypatch):
    spec = RunSpec("bc", "default", 1, dataclasses.replace(TINY, offline_updates=7))
    env = gym.make_vec(spec.env_id, num_envs=TINY.eval_users, vectorization_mode="vector_entry_point")

    def refuse(*args, **kwargs):
        raise AssertionError("an offline agent stepped the evaluation users")

    monkeypatch.setattr(env, "step", refuse)
    monkeypatch.setattr(env, "reset", refuse)
    agent, extra = runner.BUILDERS["bc"](spec, env, None)
    assert extra["train_steps"] == len(runner.propensity_log(spec))
    assert agent.name == "bc" and agent.gradient_steps == 7 and agent.config.seed == 1


def test_the_encoder_agents_are_the_dqn_with_another_encoder_and_its_preset_settings():
    assert RunSpec("dqn_transformer", "default", 0).overrides() == {"encoder": "transformer"}
    assert RunSpec("dqn_gru", "cross_session", 0).overrides() == {"encoder": "gru", "session_discount": 0.0}
    assert RunSpec("dqn", "cross_session", 0).overrides() == {"session_discount": 0.0}
    for offline in ("cql", "bcq", "bc"):  # the offline learners value each session on its own there too
        assert RunSpec(offline, "cross_session", 0).overrides() == {"session_discount": 0.0}
        assert RunSpec(offline, "default", 0).overrides() == {}
    spec = RunSpec("dqn_gru", "default", 0, dataclasses.replace(TINY, train_steps=64))
    env = gym.make_vec(spec.env_id, num_envs=TINY.eval_users, vectorization_mode="vector_entry_point")
    agent, extra = runner.BUILDERS["dqn_gru"](spec, env, None)
    assert agent.config.encoder == "gru" and any(isinstance(m, torch.nn.GRU) for m in agent.online.modules())
    assert extra["train_steps"] == 64


def test_the_offline_agents_sit_in_the_full_and_offline_suites_and_not_in_quick_or_on_slates():
    for name in ("cql", "bcq", "bc"):
        assert name in SUITES["full"].agents and name in SUITES["offline"].agents
        assert name not in SUITES["quick"].agents
        assert {r.preset for r in SUITES["full"].runs() if r.agent == name} == {"default", "cross_session"}
    assert {"dqn_gru", "dqn_transformer"} <= set(SUITES["full"].agents) & set(SUITES["encoders"].agents)


@pytest.mark.parametrize("make, message", [
    (lambda: Suite("s", ("cql",), ("slate",), (0,), TINY),
     "agent 'cql' cannot act on preset(s) slate: it shows one item; agents for slates:"),
    (lambda: Budget(log_epsilon=0.0), "Budget.log_epsilon=0.0 is out of range"),
    (lambda: Budget(log_epsilon=1.5), "Budget.log_epsilon=1.5 is out of range"),
    (lambda: Budget(offline_updates=0), "Budget.offline_updates=0 is out of range"),
    (lambda: runner.propensity_log(RunSpec("cql", "default", 0, dataclasses.replace(TINY, train_steps=1))),
     "Budget.train_steps=1 is shorter than the first logged episode"),
])
def test_an_inconsistent_spec_gets_a_clear_error(make, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make()
