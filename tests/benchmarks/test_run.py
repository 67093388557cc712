"""The benchmark suite end to end: every agent on a tiny budget, resuming after a crash, the engines agree."""

import csv
import dataclasses
import json
import socket

import numpy as np
import pyarrow.parquet as pq
import pytest

from benchmarks import engines, runner
from benchmarks.run import RunConfig, main, parse_args, run_suite
from benchmarks.suites import ONE_ITEM_AGENTS, SLATE_AGENTS, SUITES, Suite

PLOTS = ("learning_curves", "final_return", "accuracy", "accuracy_vs_return", "user_drift", "sessions")


def read_table(out):
    with open(out / "results.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_tiny_suite_end_to_end(tmp_path):
    outcome = run_suite(RunConfig(suite="tiny", out=str(tmp_path), jobs=2, progress=False))
    assert not outcome.failed
    rows = read_table(tmp_path)
    assert {(r["agent"], r["seed"]) for r in rows} == {(a, str(s)) for a in ONE_ITEM_AGENTS for s in (0, 1)}
    metrics = {r["metric"] for r in rows}
    assert {"return", "session_length", "rollout_HR@1", "rollout_NDCG@10", "log_HR@10", "log_NDCG@10", "log_MRR",
            "click_f1", "click_roc_auc", "train_steps", "train_seconds"} <= metrics
    parquet = pq.read_table(tmp_path / "results.parquet").to_pylist()
    assert len(parquet) == len(rows) and parquet[0].keys() == {"agent", "preset", "seed", "metric", "value"}
    for stem in PLOTS:
        assert (tmp_path / f"{stem}.png").stat().st_size > 5_000
        assert (tmp_path / f"{stem}.svg").exists()
    report = (tmp_path / "REPORT.md").read_text()
    assert all(f"({stem}.png)" in report for stem in PLOTS) and "| dqn |" in report
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["packages"]["numpy"] and record["machine"]["cpus"] and record["failed_runs"] == []
    # every agent reports next-click accuracy from its rollouts; random ranks at chance (1 in 10)
    by = {(r["agent"], r["metric"], r["seed"]): float(r["value"]) for r in rows}
    assert all(np.isfinite(by[(a, "rollout_NDCG@10", "0")]) for a in ONE_ITEM_AGENTS)
    assert 0.05 < by[("random", "rollout_HR@1", "0")] < 0.2
    # every agent that can rank the catalogue is scored on the same held-out log; SB3 (per-slot outputs)
    # and the planner (values only for the candidates it rolls out) cannot
    ranked = {a for (a, m, _) in by if m == "log_HR@10"}
    assert ranked == set(ONE_ITEM_AGENTS) - {"sb3_dqn", "planner"}
    # every learner trained on the same user-step budget (a log of whole episodes: at most that)
    budget = SUITES["tiny"].budget.train_steps
    for agent in ("qlearning", "dqn", "dqn_myopic", "sb3_dqn"):
        assert by[(agent, "train_steps", "0")] == budget
    for agent in ("popularity", "lstm", "gcn"):
        assert 0.9 * budget < by[(agent, "train_steps", "0")] <= budget


def test_tiny_slate_suite_runs_slateq_ppo_and_the_slate_references(tmp_path):
    outcome = run_suite(RunConfig(suite="tiny_slates", out=str(tmp_path), jobs=2, progress=False))
    assert not outcome.failed
    rows = read_table(tmp_path)
    assert {(r["agent"], r["preset"]) for r in rows} == {(a, "slate") for a in SLATE_AGENTS}
    by = {(r["agent"], r["metric"], r["seed"]): float(r["value"]) for r in rows}
    budget = SUITES["tiny_slates"].budget.train_steps
    assert by[("slateq", "train_steps", "0")] == budget
    assert budget <= by[("sb3_ppo", "train_steps", "0")] < budget + 16 * 16  # whole rollouts of 16 users x 16 steps
    assert "slateq > sb3_ppo on return" in (tmp_path / "REPORT.md").read_text()


@pytest.mark.parametrize("agents, presets, message", [
    (("dqn",), ("slate",), "agent 'dqn' cannot act on preset(s) slate: it shows one item; agents for slates:"),
    (("slateq",), ("default",), "agent 'slateq' cannot act on preset(s) default: it shows slates"),
])
def test_an_agent_on_a_preset_it_cannot_act_on_is_refused_by_name(agents, presets, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SUITES["tiny"].restrict(agents=agents, presets=presets)


def test_a_mixed_suite_runs_each_agent_only_where_it_can_act():
    suite = Suite("mixed", ("myopic", "dqn", "slateq"), ("default", "slate"), (0,), SUITES["tiny"].budget)
    assert {(r.agent, r.preset) for r in suite.runs()} == {("myopic", "default"), ("dqn", "default"),
                                                            ("myopic", "slate"), ("slateq", "slate")}


class ProcessDied(BaseException):
    """Stands for the process being killed mid-suite."""


def test_resume_after_a_crash_redoes_only_unfinished_runs(tmp_path, monkeypatch):
    config = RunConfig(suite="tiny", out=str(tmp_path), jobs=1, agents=("random", "myopic", "qlearning"),
                       progress=False)
    real = runner.execute
    calls, crashed = [], []

    def crash_on_third(spec, work_dir=None):
        calls.append(spec.run_id)
        if len(calls) == 3 and not crashed:
            crashed.append(spec.run_id)
            raise ProcessDied  # not an Exception: the suite cannot catch it, as with a kill
        return real(spec, work_dir)

    monkeypatch.setattr(engines, "execute", crash_on_third)
    with pytest.raises(ProcessDied):
        run_suite(config)
    finished = sorted(p.name for p in (tmp_path / "runs").glob("*.json"))
    assert len(finished) == 2 and not list((tmp_path / "runs").glob(".*"))  # no half-written file left
    stamps = {p: (tmp_path / "runs" / p).stat().st_mtime_ns for p in finished}

    calls.clear()
    outcome = run_suite(config)
    assert len(calls) == 4 and not outcome.failed  # 6 runs in the suite, 2 kept
    assert {(tmp_path / "runs" / p).stat().st_mtime_ns for p in finished} == set(stamps.values())
    assert len(read_table(tmp_path)) == sum(len(r["metrics"]) for r in outcome.results.values())


def test_a_failed_run_is_reported_and_the_suite_goes_on(tmp_path, monkeypatch, capsys):
    real = runner.execute

    def broken_myopic(spec, work_dir=None):
        if spec.agent == "myopic":
            raise RuntimeError("simulated failure")
        return real(spec, work_dir)

    monkeypatch.setattr(engines, "execute", broken_myopic)
    code = main(["--suite", "tiny", "--out", str(tmp_path), "--jobs", "1", "--agents", "random,myopic",
                 "--seeds", "0", "--no-progress"])
    assert code == 1
    assert "simulated failure" in (tmp_path / "runs" / "default__myopic__seed0.error.txt").read_text()
    assert {r["agent"] for r in read_table(tmp_path)} == {"random"}
    assert "simulated failure" in capsys.readouterr().err
    monkeypatch.setattr(engines, "execute", real)  # fixed: the rerun does the failed run only
    assert main(["--suite", "tiny", "--out", str(tmp_path), "--jobs", "1", "--agents", "random,myopic",
                 "--seeds", "0", "--no-progress"]) == 0
    assert not (tmp_path / "runs" / "default__myopic__seed0.error.txt").exists()


def test_a_changed_budget_is_not_mistaken_for_a_finished_run(tmp_path):
    config = RunConfig(suite="tiny", out=str(tmp_path), jobs=1, agents=("random",), seeds=(0,), progress=False)
    run_suite(config)
    bigger = dataclasses.replace(SUITES["tiny"].budget, eval_users=20)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(SUITES, "tiny", Suite("tiny", ("random",), ("default",), (0,), bigger))
        outcome = run_suite(config)
    assert len(outcome.executed) == 1
    assert len(json.loads((tmp_path / "runs" / "default__random__seed0.json").read_text())["per_user"]["return"]) == 20


def _closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


CLOSED_PORT = _closed_port()


@pytest.mark.parametrize("argv, message", [
    (["--agents", "random,nope"], "unknown agent"),
    (["--presets", "moon"], "unknown preset"),
    (["--seeds", "1,x"], "comma-separated int"),
    (["--jobs", "-1"], "RunConfig.jobs=-1"),
    (["--engine", "spark"], "invalid choice"),
    (["--engine", "ray", "--address", "headnode"], "expected HOST:PORT"),
    (["--engine", "ray", "--address", f"ray://127.0.0.1:{CLOSED_PORT}"], "nothing answers at 127.0.0.1"),
])
def test_bad_options_get_a_clear_error(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.slow
def test_ray_engine_gives_the_same_table_as_the_local_engine(tmp_path):
    pytest.importorskip("ray")
    kwargs = dict(suite="tiny", agents=("random", "heuristic", "qlearning", "dqn", "lstm"), progress=False)
    run_suite(RunConfig(out=str(tmp_path / "local"), jobs=2, **kwargs))
    run_suite(RunConfig(out=str(tmp_path / "ray"), engine="ray", **kwargs))
    local, ray = read_table(tmp_path / "local"), read_table(tmp_path / "ray")
    drop_timing = lambda rows: [r for r in rows if r["metric"] not in ("train_seconds", "eval_seconds")]  # noqa: E731
    assert drop_timing(local) == drop_timing(ray)


PLUGIN = '''
import numpy as np
import agents
from agents.base import Recommender


class Longest(Recommender):
    """Shows the longest candidate: a user's own policy, registered from outside the package."""

    name = "mine"

    def __init__(self, env):
        super().__init__(env)
        self.layout = env.unwrapped.layout

    def scores(self, obs, info):
        lay = self.layout
        return obs[:, lay.candidates].reshape(len(obs), lay.n_candidates, lay.item_dim)[..., -1]

    def act(self, obs, info):
        return self.scores(obs, info).argmax(axis=1)


agents.register("mine", Longest)
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    (tmp_path / "my_policies.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_policies"


def test_own_env_config_and_own_agent_beside_the_zoo(tmp_path, plugin, capsys):
    out = tmp_path / "out"
    argv = ["--suite", "tiny", "--env", "recsim_env/InterestDrift-v0", "--set", "n_items=5000", "n_topics=20",
            "--plugin", plugin, "--agents", "mine,myopic", "--seeds", "0", "--jobs", "1", "--out", str(out),
            "--no-progress"]
    assert main(argv) == 0
    rows = read_table(out)
    assert {r["agent"] for r in rows} == {"mine", "myopic"} and {r["preset"] for r in rows} == {"InterestDrift-v0"}
    stored = json.loads((out / "runs" / "InterestDrift-v0__mine__seed0.json").read_text())["spec"]["choice"]
    assert stored == {"env": "recsim_env/InterestDrift-v0", "overrides": [["n_items", 5000], ["n_topics", 20]],
                      "plugins": [plugin]}
    record = json.loads((out / "run.json").read_text())["config"]
    assert record["env"] == "recsim_env/InterestDrift-v0" and record["set"] == ["n_items=5000", "n_topics=20"]
    # resuming into the folder with another configuration is refused, naming what changed
    changed = argv[:5] + ["n_items=7000"] + argv[7:]
    assert changed[4:6] == ["--set", "n_items=7000"]
    with pytest.raises(SystemExit):
        parse_args(changed)
    assert "holds runs made with another env configuration (overrides: stored [['n_items', 5000], ['n_topics', " \
           "20]], asked [['n_items', 7000]])" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--env", "recsim_env/InterestDrift-v0", "--set", "n_itemz=5000"], "unknown config field 'n_itemz'; allowed"),
    (["--env", "recsim_env/InterestDrift-v0", "--set", "n_items=10"], "n_items=10 is out of range"),
    (["--env", "recsim_env/Nope-v0"], "is not a recsim_env id; allowed"),
    (["--set", "n_items=5000"], "need --env"),
    (["--env", "recsim_env/InterestDrift-v0", "--set", "n_items"], "expected FIELD=VALUE"),
    (["--plugin", "no_such_module_here"], "--plugin no_such_module_here: cannot import"),
    (["--agents", "mien"], "unknown agent ['mien']; allowed: random"),
])
def test_own_things_are_checked_before_anything_runs(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--suite", "tiny", *argv])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_env_config_file_is_read_and_checked(tmp_path, capsys):
    good, bad = tmp_path / "env.json", tmp_path / "bad.json"
    good.write_text(json.dumps({"n_items": 4000, "n_topics": 12}))
    bad.write_text("[1, 2]")
    config = parse_args(["--suite", "tiny", "--env", "recsim_env/InterestDrift-v0", "--env-config", str(good),
                         "--set", "n_topics=8"])
    assert dict(config.env_choice().overrides) == {"n_items": 4000, "n_topics": 8}  # --set wins
    assert "InterestDrift-v0" in str(config.out_dir)  # its own folder, not the presets' results/tiny
    with pytest.raises(SystemExit):
        parse_args(["--suite", "tiny", "--env", "recsim_env/InterestDrift-v0", "--env-config", str(bad)])
    assert "expected a JSON object" in capsys.readouterr().err
