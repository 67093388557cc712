"""The slate off-policy evaluation command end to end on a tiny budget: what it writes, that its table is
its numbers, that its truths are what they say, and the one-line errors on bad input."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("matplotlib")

from agents.slate_ope import SLATE_ESTIMATORS
from benchmarks import slate_ope

#: Every target, slateq trained on almost nothing: the command's paths, not its verdicts.
TINY = ["--users", "60", "--truth-users", "40", "--num-envs", "30", "--n-bootstrap", "40", "--train-steps", "2000",
        "--max-weight", "50", "--seed", "3", "--targets", ",".join(slate_ope.TARGETS)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("slate_ope")
    assert slate_ope.main([*TINY, "--out", str(out)]) == 0
    return out, json.loads((out / "results.json").read_text())


def test_results_hold_every_estimator_for_every_target(tiny):
    out, results = tiny
    names = [*SLATE_ESTIMATORS, *(f"{e}_clip" for e in SLATE_ESTIMATORS)]
    assert list(results["targets"]) == list(slate_ope.TARGETS) and list(results["estimators"]) == names
    assert results["log"]["users"] == 60 and results["log"]["slate_size"] == 3
    assert results["log"]["seed"] != results["targets"]["random"]["truth"]["online"]["seed"]  # fresh truth users
    for row in results["targets"].values():
        online, logged = row["truth"]["online"], row["truth"]["logged"]
        assert online["low"] <= online["value"] <= online["high"] and online["n_users"] == 40
        assert logged > 0
        for e in names:
            r = row["estimators"][e]
            assert r["low"] <= r["estimate"] <= r["high"] or r["low"] == r["high"]
            assert r["relative_error_online"] == pytest.approx(abs(r["estimate"] - online["value"]) / online["value"])
            assert r["relative_error_logged"] == pytest.approx(abs(r["estimate"] - logged) / logged)
            assert r["covers_logged"] == (r["low"] <= logged <= r["high"])
            if not e.endswith("_clip"):
                assert r["n_clipped"] == 0
        assert row["estimators"]["ips_clip"]["n_clipped"] >= row["estimators"]["ips"]["n_clipped"]
    for e in names:
        errors = [results["targets"][t]["estimators"][e]["relative_error_logged"] for t in results["targets"]]
        assert results["estimators"][e]["median_relative_error_logged"] == pytest.approx(np.median(errors))
    assert (out / "estimate_vs_truth.png").stat().st_size > 10_000
    assert not list(out.glob(".*"))  # atomic writes leave no temporary files


def test_report_is_the_numbers(tiny):
    out, results = tiny
    text = (out / "results.md").read_text()
    for t, row in results["targets"].items():
        for e, r in row["estimators"].items():
            assert f"| {t} | {e} | {r['estimate']:.3f} [{r['low']:.3f}, {r['high']:.3f}] |" in text
    best = min(results["estimators"], key=lambda e: results["estimators"][e]["median_relative_error_logged"])
    assert f"lowest median error against the logged-context truth is {best}'s" in text
    always = [e for e, s in results["estimators"].items() if s["covered_logged"] == len(results["targets"])]
    assert f"{', '.join(always) if always else 'no estimator'} covered it for every target" in text


def test_logged_truth_is_the_exact_value_of_the_logged_slates():
    """The enumerated truth of a stochastic target equals the mean of the exact values of slates drawn
    from it, and a deterministic target's truth is its one slate's value."""
    import gymnasium as gym

    import agents
    from agents.slate_ope import EpsilonSlate
    from recsim_env.logs.slate_log import collect_slate_log
    from recsim_env.slates import slate_expected_reward

    env = gym.make_vec(slate_ope.ENV_ID, num_envs=20, vectorization_mode="vector_entry_point")
    soft = EpsilonSlate(agents.make("heuristic", env), epsilon=0.6)
    log = collect_slate_log(env, EpsilonSlate(agents.make("random", env), epsilon=1.0, seed=1), 20, seed=2,
                            targets={"heuristic": agents.make("heuristic", env), "soft": soft})
    sim = env.unwrapped.simulator
    one = log.targets["heuristic"].argmax(axis=2)
    items = np.take_along_axis(log.candidates, one, axis=1)[:, None, :]
    exact = slate_expected_reward(sim, items, log.interest, log.satiation).mean()
    assert slate_ope.logged_truth(sim, log, log.targets["heuristic"]) == pytest.approx(float(exact), rel=1e-6)
    rng = np.random.default_rng(0)
    p = log.targets["soft"]
    draws = np.stack([(np.cumsum(p, axis=2) < rng.random((*p.shape[:2], 1))).sum(axis=2) for _ in range(400)], 1)
    drawn = log.candidates[np.arange(len(log))[:, None, None], draws]  # (R, 400, K) item ids
    sampled = slate_expected_reward(sim, drawn, log.interest, log.satiation).mean()
    assert slate_ope.logged_truth(sim, log, p) == pytest.approx(float(sampled), rel=0.03)


@pytest.mark.parametrize("args,message", [
    (["--users", "5"], "--users=5 is out of range"),
    (["--targets", "random,dqn"], "--targets has 'dqn'"),
    (["--behaviour", "planner"], "--behaviour='planner' is unknown"),
    (["--epsilon", "0"], "--epsilon=0.0 is out of range"),
    (["--users", "many"], "invalid int value"),
])
def test_bad_input_is_one_line(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        slate_ope.main(["--out", str(tmp_path), *args])
    assert stop.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert not list(tmp_path.iterdir())


def test_bad_input_from_the_shell_is_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "benchmarks.slate_ope", "--out", str(tmp_path), "--targets", ""],
                          check=False, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 2
    assert done.stderr.strip() == ("python -m benchmarks.slate_ope: error: --targets is empty: allowed a "
                                   f"comma-separated subset of {', '.join(slate_ope.TARGETS)}")


def test_readme_block_is_the_run_s_summary(tiny, tmp_path):
    """``make readme`` writes the run's own summary between the slate markers, and refuses a folder without a run."""
    from benchmarks import readme

    out, results = tiny
    block = readme.slate_ope_block(out)
    assert f"{results['log']['users']:,} users, {results['log']['steps']:,} steps" in block
    for line in slate_ope.summary_lines(results):
        assert line in block
    text = readme.replace_block("a\n<!-- slate_ope:start -->\nold\n<!-- slate_ope:end -->\nb\n", block,
                                readme.SLATE_OPE_START, readme.SLATE_OPE_END)
    assert "old" not in text and block in text
    with pytest.raises(ValueError, match="not a finished slate off-policy benchmark"):
        readme.slate_ope_block(tmp_path)
