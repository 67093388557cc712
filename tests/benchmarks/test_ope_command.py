"""The off-policy evaluation command end to end on a tiny budget: what it writes, that its sentences are
its numbers, that a rerun resumes from its cache, what it refuses, and evaluating an existing log."""

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("pyarrow")
pytest.importorskip("matplotlib")

from agents.evaluation import evaluate
from agents.ope import ESTIMATORS
from benchmarks import ope

#: Every target, on a budget whose numbers mean nothing: the command's paths, not its verdicts.
TINY = ["--users", "120", "--logs", "2", "--truth-users", "60", "--train-steps", "1000", "--fqe-iterations", "3",
        "--fqe-steps", "4", "--fqe-users", "80", "--n-bootstrap", "30", "--planner-rollouts", "1",
        "--planner-candidates", "2", "--num-envs", "60", "--seed", "3", "--max-weight", "20", "--offline-updates", "20",
        "--no-progress"]


def run(out: Path, *extra: str) -> dict:
    assert ope.main([*TINY, "--out", str(out), *extra]) == 0
    return json.loads((out / "results.json").read_text())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("ope")
    return out, run(out)


def test_results_hold_every_estimator_per_target_and_log(tiny):
    out, results = tiny
    targets = list(ope.TARGETS)
    clipped = [f"{e}_clip" for e in ope.CLIPPED]
    assert list(results["targets"]) == targets and list(results["estimators"]) == [*ESTIMATORS, *clipped]
    assert len(results["logs"]) == 2 and all(m["users"] == 120 for m in results["logs"])
    seeds = [m["seed"] for m in results["logs"]]
    truth_seed = results["targets"]["random"]["truth"]["seed"]
    assert len(set(seeds)) == 2 and truth_seed not in seeds  # the truth's users are never a log's
    for t in targets:
        row = results["targets"][t]
        truth = row["truth"]["value"]
        assert row["truth"]["low"] <= truth <= row["truth"]["high"] and row["truth"]["n_users"] == 60
        assert 0.0 <= row["effective_sample_size"] <= row["n_episodes"] == 120
        assert len(row["truncated"]["pdis"]) == len(row["truth"]["truncated"]) == ope.HORIZON_STEPS
        for e in [*ESTIMATORS, *clipped]:
            r = row["estimators"][e]
            assert len(r["estimates"]) == len(r["relative_errors"]) == len(r["covered"]) == 2
            np.testing.assert_allclose(r["relative_errors"], np.abs(np.array(r["estimates"]) - truth) / abs(truth))
            assert r["covered"] == [lo <= truth <= hi for lo, hi in zip(r["low"], r["high"])]
            assert r["median_relative_error"] == pytest.approx(np.median(r["relative_errors"]))
            assert r["mean_estimate"] == pytest.approx(np.mean(r["estimates"]))
    true = np.array([results["targets"][t]["truth"]["value"] for t in targets])
    for e, row in results["estimators"].items():
        rho = [ope.spearman(np.array([results["targets"][t]["estimators"][e]["estimates"][i] for t in targets]), true)
               for i in range(2)]
        assert row["spearman_per_log"] == pytest.approx(rho, nan_ok=True)
        assert row["median_relative_error"] == pytest.approx(
            np.median([results["targets"][t]["estimators"][e]["median_relative_error"] for t in targets]))
        assert row["failed_targets"] == [t for t in targets
                                         if results["targets"][t]["estimators"][e]["median_relative_error"] >= ope.FAILURE]
    # Clipping at 20 changes an estimate exactly where a weight was clipped, and is said to be clipping.
    changed = 0
    for t in targets:
        work = json.loads((out / "work" / "log0" / f"{t}.json").read_text())["estimates"]
        for e in ope.CLIPPED:
            assert work[e]["n_clipped"] == 0
            if work[f"{e}_clip"]["n_clipped"] == 0:
                assert work[f"{e}_clip"]["estimate"] == pytest.approx(work[e]["estimate"], rel=1e-12)
            else:
                changed += work[f"{e}_clip"]["estimate"] != work[e]["estimate"]
    assert changed > 0
    assert results["planner"]["rollouts"] == 1 and results["planner"]["candidates"] == 2
    for stem in ("estimate_vs_truth", "horizon", "ess"):
        assert (out / f"{stem}.png").stat().st_size > 1000 and (out / f"{stem}.svg").is_file()
    text = (out / "results.md").read_text()
    assert text == ope.report(results)
    assert "The planner ran with 1 rollouts of its 2 best candidates (its defaults are 12 and 5)" in text
    assert '| PDIS clipped at 20 |' in text and 'Rows "clipped at 20" cap every cumulative importance weight' in text


def test_sentences_follow_the_numbers(tiny):
    _, results = tiny
    flipped = copy.deepcopy(results)
    for row in flipped["estimators"].values():
        row["spearman"], row["median_relative_error"] = 0.5, 0.5
    text = ope.report(flipped)
    assert "No estimator meets the issue's bar (Spearman >= 0.9 and median relative error <= 15%)." in text
    flipped["estimators"]["dr"].update(spearman=0.95, median_relative_error=0.10)
    text = ope.report(flipped)
    assert "Meeting the issue's bar (Spearman >= 0.9 and median relative error <= 15%): DR." in text
    assert "The best estimator by median relative error over the targets is DR (10%)" in text
    assert "| DR | 10% | +0.95 |" in text and "| yes |" in text
    flipped["estimators"]["dr"]["spearman"] = 0.85  # the best by error, but no longer ranks well enough
    text = ope.report(flipped)
    assert "No estimator meets the issue's bar" in text and "is DR (10%); it ranks the targets with a mean " \
        "Spearman correlation of +0.85 across logs." in text
    flipped["estimators"]["wis"].update(median_relative_error=0.05, spearman=0.99)
    assert "The best estimator by median relative error over the targets is WIS (5%)" in ope.report(flipped)
    flipped["estimators"]["pdis_clip"].update(median_relative_error=0.01, spearman=0.99)
    text = ope.report(flipped)
    assert "The best estimator by median relative error over the targets is PDIS clipped at 20 (1%)" in text
    assert "Meeting the issue's bar (Spearman >= 0.9 and median relative error <= 15%): WIS, PDIS clipped at 20." \
        in text
    # A failure is named where it is, and nowhere when there is none.
    for t in flipped["targets"]:
        for r in flipped["targets"][t]["estimators"].values():
            r["median_relative_error"] = 0.2
    for row in flipped["estimators"].values():
        row["failed_targets"] = []
    assert "No estimator has a median relative error of 50% or more on any target." in ope.report(flipped)
    flipped["targets"]["dqn"]["estimators"]["is"]["median_relative_error"] = 3.4
    flipped["targets"]["planner"]["estimators"]["is"]["median_relative_error"] = 0.6
    flipped["targets"]["random"]["estimators"]["dm"]["median_relative_error"] = 0.5
    flipped["estimators"]["is"]["failed_targets"] = ["dqn", "planner"]
    flipped["estimators"]["dm"]["failed_targets"] = ["random"]
    text = ope.report(flipped)
    assert "Failures (median relative error of 50% or more over logs): IS on dqn (340%), planner (60%); " \
        "DM on random (50%)." in text
    assert "(340%, " in text and "**FAILED**" in text


def test_offline_cql_is_set_against_the_behaviour_and_on_the_normalized_scale(tiny):
    _, results = tiny
    off = results["offline"]
    assert off["updates"] == 20 and off["log_users"] == 120 and off["cql"]["low"] <= off["cql"]["value"] <= off["cql"]["high"]
    flipped = copy.deepcopy(results)
    flipped["offline"]["cql"] = {"value": 60.0, "low": 58.0, "high": 62.0}
    flipped["offline"]["behaviour"] = {"value": 45.0, "low": 44.0, "high": 46.0}
    for t, value in (("random", 20.0), ("planner", 120.0), ("dqn", 70.0)):
        flipped["targets"][t]["truth"]["value"] = value
    text = ope.report(flipped)
    assert "earns 60.0 [58.0, 62.0] online on the truth users, against 45.0 [44.0, 46.0] for the behaviour policy " \
        "that wrote the log: ahead, with intervals apart." in text
    assert "(0 = random, 1 = planner): CQL (offline) 0.40, the behaviour policy 0.25, dqn (online, 1,000 " \
        "user-steps) 0.50" in text
    flipped["offline"]["cql"] = {"value": 45.5, "low": 43.0, "high": 48.0}
    assert "behaviour policy that wrote the log: ahead, but the intervals overlap." in ope.report(flipped)


def test_a_rerun_resumes_from_the_cache_and_only_adds_new_work(tiny, monkeypatch):
    """Nothing is trained, measured, logged or estimated again; one more log costs that log alone."""
    out, results = tiny

    def refuse(*args, **kwargs):
        raise AssertionError("redone")

    for name in ("train_learner", "on_policy", "collect_propensity_log", "estimate"):
        monkeypatch.setattr(ope, name, refuse)
    again = run(out)
    for key in ("targets", "estimators", "logs"):
        assert again[key] == results[key]
    monkeypatch.undo()
    for name in ("train_learner", "on_policy"):
        monkeypatch.setattr(ope, name, refuse)
    calls = []
    original = ope.estimate
    monkeypatch.setattr(ope, "estimate", lambda *a, **k: calls.append(a[-1]) or original(*a, **k))
    more = run(out, "--logs", "3", "--targets", "random,dqn")  # fewer targets: the others' work stays cached
    assert calls == [2, 2]  # only the new log's (log, target) pairs
    assert more["logs"][:2] == results["logs"] and len(more["logs"]) == 3 and list(more["targets"]) == ["random", "dqn"]
    for t in ("random", "dqn"):
        assert more["targets"][t]["estimators"]["dr"]["estimates"][:2] == \
            results["targets"][t]["estimators"]["dr"]["estimates"]
    with pytest.raises(SystemExit, match=r"error: .* holds the work of another configuration \(epsilon: 0.3 there, "
                                         r"0.5 now\); use another --out"):
        run(out, "--epsilon", "0.5")


def test_a_run_stopped_within_a_log_resumes_with_the_same_fit(tiny):
    """A log's targets share one FQE fit, redone whole when one target's estimates are missing, so the
    resumed target gets the numbers it had; the fit reads the episode memory unless told not to."""
    out, results = tiny
    (out / "work" / "log1" / "dqn.json").unlink()
    again = run(out)
    assert again["targets"]["dqn"] == results["targets"]["dqn"]
    assert "the whole episode so far" in (out / "results.md").read_text()
    assert ope.parse_args(["--out", "x"]).fqe_memory
    assert not ope.parse_args(["--out", "x", "--no-fqe-memory"]).fqe_memory


@pytest.mark.parametrize("args, message", [
    (["--targets", "random,oracle"], r"--targets: 'oracle' is unknown: allowed random, myopic"),
    (["--targets", "random,random"], r"--targets: must name distinct targets"),
    (["--epsilon", "0"], r"--epsilon=0.0 is out of range: allowed \(0.0, 1.0\]"),
    (["--preset", "slate"], (r"--preset='slate' shows slates, which have no per-candidate propensity: allowed "
                             r"default, cross_session")),
    (["--preset", "nope"], r"--preset='nope' is unknown"),
    (["--users", "1"], r"--users=1 is out of range"),
    (["--behaviour", "oracle"], r"--behaviour='oracle' is unknown"),
])
def test_bad_options_stop_with_one_line(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as stop:
        ope.main(["--out", str(tmp_path), *args])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert __import__("re").search(message, err), err


def test_on_policy_truth_is_evaluate_with_per_step_means():
    env = ope.make_env(ope.OpeBenchmarkConfig(out=""), 40)
    heuristic = ope.agents.make("heuristic", env)
    returns, lengths, per_step = ope.on_policy(heuristic, env, seed=5)
    stats = evaluate(heuristic, env, seed=5)
    np.testing.assert_array_equal(returns, stats.returns)
    np.testing.assert_array_equal(lengths, stats.lengths)
    assert per_step.sum() == pytest.approx(returns.mean()) and len(per_step) == lengths.max()


def test_an_existing_log_is_evaluated_with_probabilities_from_it(tiny, tmp_path):
    """Targets that read only the observation or the logged true state are computed from the log, and
    equal what was recorded while logging; the planner only when the log recorded it."""
    from agents.behaviour import EpsilonGreedy
    from recsim_env.logs.propensity import collect_propensity_log, read_propensity_log, write_propensity_log

    cfg = ope.OpeBenchmarkConfig(out=str(tmp_path / "a"), train_steps=1000, seed=3)
    work = tiny[0] / "work"  # the tiny run's trained dqn (same seed and budget), read only
    env = ope.make_env(cfg, 30)
    names = ("random", "myopic", "heuristic", "dqn")
    log = collect_propensity_log(env, EpsilonGreedy(ope.agents.make("myopic", env), 0.3, seed=0), 60, seed=7,
                                 targets={t: ope.recorder(t, env, cfg, work) for t in names})
    plain = type(log)(**{**vars(log), "targets": {}})
    for t in names:
        np.testing.assert_allclose(ope.probabilities_from_log(t, plain, cfg, work), log.targets[t], atol=1e-12)
    no_state = type(log)(**{**vars(plain), "interest": None, "satiation": None, "budget": None})
    with pytest.raises(SystemExit, match="target 'myopic' cannot be evaluated from .*the true-state columns"):
        ope.probabilities_from_log("myopic", no_state, cfg, work)
    path = write_propensity_log(tmp_path / "log.parquet", plain)
    with pytest.raises(SystemExit, match=r"error: target 'planner' cannot be evaluated from .*log\.parquet: it needs "
                                         r"the full user state"):
        run(tmp_path / "b", "--log", str(path), "--targets", "random,planner")
    results = run(tmp_path / "c", "--log", str(path), "--targets", "random,myopic,heuristic")
    assert len(results["logs"]) == 1 and results["logs"][0]["users"] == 60
    assert "the existing log" in (tmp_path / "c" / "results.md").read_text()
    assert read_propensity_log(path).targets == {}
    with pytest.raises(SystemExit, match="no such propensity log"):
        run(tmp_path / "d", "--log", str(tmp_path / "missing.parquet"))
    assert math.isfinite(results["estimators"]["pdis"]["median_relative_error"])


def test_the_readme_block_carries_the_verdicts_and_the_table(tiny):
    from benchmarks.readme import ope_block

    out, _ = tiny
    results = json.loads((out / "results.json").read_text())  # as written last: the resume test adds a log
    block = ope_block(out)
    assert all(sentence in block for sentence in ope.verdicts(results) + ope.offline_sentences(results))
    assert "| estimator | median relative error over targets |" in block
    assert f"{len(results['logs'])} logs of 120 users" in block
    with pytest.raises(ValueError, match="not a finished off-policy benchmark"):
        ope_block(out / "missing")


def test_the_window_block_shows_the_model_rows_of_a_run_without_the_memory(tiny, tmp_path):
    from benchmarks.readme import ope_window_block

    out, _ = tiny
    with pytest.raises(ValueError, match="a run with the episode memory; this section wants one with --no-fqe-memory"):
        ope_window_block(out)
    window = tmp_path / "window"
    results = run(window, "--no-fqe-memory", "--logs", "1", "--offline-updates", "0")
    assert results["config"]["fqe_memory"] is False
    assert "reading the observation alone" in (window / "results.md").read_text()
    block = ope_window_block(window)
    assert all(sentence in block for sentence in ope.verdicts(results)[:3])
    rows = [line.split("|")[1].strip() for line in block.splitlines() if line.startswith("| ") and "estimator" not in line]
    assert rows == ["DM", "DR", "WDR", "DR clipped at 20", "WDR clipped at 20"]


def test_support_sentence_names_the_value_beyond_the_longest_logged_episode():
    """A target earning 40% of its value after the log's longest episode (3 steps) is named with that share;
    one earning nothing there is not."""
    def truth(value, per_step, length):
        return {"truth": {"value": value, "truncated": list(np.cumsum(per_step)), "user_steps": length * 10,
                          "n_users": 10}}

    results = {"logs": [{"max_length": 2}, {"max_length": 3}],
               "targets": {"long": truth(10.0, [2.0, 2.0, 2.0, 4.0] + [0.0] * 96, 4.0),
                           "short": truth(6.0, [2.0, 2.0, 2.0] + [0.0] * 97, 3.0)}}
    (sentence,) = ope.support_sentences(results)
    assert "longest logged episode has 3 steps" in sentence
    assert "long's users stay 4.0 steps on average and it earns 40% of its true value after step 3" in sentence
    assert "short's" not in sentence
    results["targets"].pop("long")
    assert ope.support_sentences(results) == ["Every target earns less than 5% of its true value after step 3, "
                                              "the longest logged episode."]
