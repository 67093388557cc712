"""The tabular benchmark: Q-learning reaches the exact optimum, and the script writes its plot and results."""

import json
import re

import numpy as np
import pytest

from benchmarks import tabular


@pytest.fixture(scope="module")
def solution() -> tabular.Solution:
    return tabular.solve(tabular.make_env(1).envs[0].unwrapped.mdp)


def test_script_writes_plot_and_results_with_q_learning_near_the_optimum(tmp_path, capsys):
    assert tabular.main(["--seeds", "2", "--episodes", "10000", "--eval-every", "2500", "--out", str(tmp_path)]) == 0
    assert "of V*" in capsys.readouterr().out
    png = (tmp_path / "qlearning_vs_optimum.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    assert (tmp_path / "qlearning_vs_optimum.svg").read_text().rstrip().endswith("</svg>")
    summary = json.loads((tmp_path / "results.json").read_text())
    assert [s["seed"] for s in summary["seeds"]] == [0, 1]
    assert summary["fraction_of_optimum"]["min"] >= 0.95
    assert all(s["fraction_of_optimum"] >= 0.95 and s["fraction_ties_split"] >= 0.95 for s in summary["seeds"])
    assert summary["myopic_return"] < 0.9 * summary["optimal_return"]
    report = (tmp_path / "results.md").read_text()
    assert "qlearning_vs_optimum.png" in report and "| IQM [95% CI] |" in report
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_exact_values_of_reference_policies(solution):
    mdp = solution.mdp
    assert solution.random_return < solution.myopic_return < solution.optimal_return
    zeros = np.zeros_like(solution.q_star)
    assert tabular.greedy_return(mdp, zeros) == pytest.approx(solution.random_return)  # ties split: random
    assert tabular.greedy_return(mdp, solution.q_star) == pytest.approx(solution.optimal_return)
    assert tabular.agreement(solution, solution.optimal_policy) == 1.0


def test_visits_match_a_simulation_and_disagreement_costs_add_up_to_the_loss(solution):
    mdp = solution.mdp
    policy = solution.myopic_policy
    visits = tabular.state_visits(mdp, policy)
    p_live = mdp.transition[np.arange(mdp.n_states), policy]
    dist, total = np.eye(mdp.n_states)[mdp.initial_state], np.zeros(mdp.n_states)
    for _ in range(3000):
        total += dist
        dist = dist @ p_live
    total[mdp.terminal] = 0.0
    assert np.allclose(visits, total, atol=1e-8)
    rows = tabular.disagreements(solution, policy)
    assert rows and all(r["optimal"] != r["learned"] and r["q_gap"] > 0 for r in rows)
    loss = solution.optimal_return - solution.myopic_return
    assert sum(r["cost"] for r in rows) == pytest.approx(loss, rel=1e-6)
    assert "| state |" in tabular.disagreement_table(rows)


def test_learning_curve_aggregates_seeds_on_a_common_grid(solution):
    runs = [tabular.train_seed(solution, seed, episodes=200, envs=8, eval_every=50) for seed in (0, 1, 2)]
    curve = tabular.learning_curve(runs)
    assert curve.per_seed.shape == (3, curve.episodes.size)
    assert np.all(curve.low <= curve.iqm + 1e-9) and np.all(curve.iqm <= curve.high + 1e-9)
    assert curve.iqm[0] == pytest.approx(solution.random_return)
    with pytest.raises(ValueError, match="at least 2 seeds"):
        tabular.learning_curve(runs[:1])


@pytest.mark.parametrize("argv, message", [
    (["--seeds", "1"], "--seeds=1 is out of range"),
    (["--eval-every", "0"], "--eval-every=0 is out of range"),
    (["--episodes", "10", "--eval-every", "20"], r"--eval-every=20 is out of range: allowed \[1, episodes=10\]"),
    (["--envs", "0"], "--envs=0 is out of range"),
])
def test_invalid_arguments_are_refused_with_the_allowed_range(argv, message, capsys):
    with pytest.raises(SystemExit):
        tabular.main(argv)
    assert re.search(message, capsys.readouterr().err)
