"""The report's sentences follow the numbers: swap two agents' results and what is said swaps too."""

import numpy as np
import pytest

from agents.evaluation import UserTrace
from benchmarks import findings
from benchmarks.readme import END, START, replace_block, results_block
from benchmarks.report import results_table
from benchmarks.suites import Budget, RunSpec, Suite

AGENTS = ("random", "myopic", "heuristic", "planner", "dqn", "dqn_myopic", "sb3_dqn")
SUITE = Suite("quick", AGENTS, ("default",), (0, 1, 2, 3, 4), Budget())
#: Mean return per agent; per-user returns are drawn around it.
MEANS = {"random": 22.0, "myopic": 52.0, "heuristic": 104.0, "planner": 120.0, "dqn": 76.0, "dqn_myopic": 51.0,
         "sb3_dqn": 40.0}
#: Log HR@10 per agent (sb3_dqn and planner cannot rank the catalogue).
HR = {"random": 0.010, "myopic": 0.060, "heuristic": 0.030, "dqn": 0.020, "dqn_myopic": 0.040}


def fake_results(means=MEANS, hr=HR, suite=SUITE):
    rng = np.random.default_rng(0)
    results = {}
    for agent in suite.agents:
        for seed in suite.seeds:
            returns = rng.normal(means[agent], 5.0, size=200)
            cases = np.full(200, 10.0)
            per_user = {"return": returns.tolist(), "length": np.full(200, 20).tolist(),
                        "sessions": np.ones(200).tolist()}
            metrics = {"return": float(returns.mean()), "train_steps": 500_000.0}
            if agent in hr:
                hits = rng.binomial(10, hr[agent], size=200).astype(float)
                per_user.update({"log_HR@10": hits.tolist(), "log_cases": cases.tolist()})
                metrics["log_HR@10"] = float(hits.sum() / cases.sum())
            results[RunSpec(agent, suite.presets[0], seed, suite.budget)] = {"metrics": metrics, "per_user": per_user}
    return results


def swapped(mapping, a, b):
    out = dict(mapping)
    out[a], out[b] = mapping[b], mapping[a]
    return out


def test_headline_names_the_winner_and_the_ratios_from_the_numbers():
    text = " ".join(findings.headline(fake_results(), SUITE, "default"))
    assert "The highest return is planner's" in text
    assert "The planner (" in text and "is ahead, with intervals apart against the one-step heuristic" in text
    assert "At equal budgets (500,000 user-steps each)" in text and "DQN is 1.9" in text
    assert "most accurate agent on the held-out log" in text and "is myopic" in text


def test_slateq_is_set_against_sb3_ppo_at_equal_budgets_on_slates():
    suite = Suite("slates", ("random", "myopic", "slateq", "sb3_ppo"), ("slate",), (0, 1, 2, 3, 4), Budget())
    means = {"random": 22.0, "myopic": 50.0, "slateq": 80.0, "sb3_ppo": 60.0}
    text = " ".join(findings.headline(fake_results(means, {}, suite), suite, "slate"))
    assert "slateq 79.8 [" in text and "SlateQ is 1.32x sb3_ppo (ahead, with intervals apart)" in text
    flipped = " ".join(findings.headline(fake_results(swapped(means, "slateq", "sb3_ppo"), {}, suite), suite, "slate"))
    assert "SlateQ is 0.74x sb3_ppo (behind, with intervals apart)" in flipped


def test_swapping_two_agents_results_changes_the_sentences():
    before = findings.headline(fake_results(), SUITE, "default")
    after = findings.headline(fake_results(swapped(MEANS, "planner", "heuristic")), SUITE, "default")
    assert "The highest return is heuristic's" in after[0] and before[0] != after[0]
    assert "is behind, with intervals apart against the one-step heuristic" in after[1]
    accurate = findings.headline(fake_results(hr=swapped(HR, "myopic", "dqn")), SUITE, "default")
    assert any("is dqn, " in s for s in accurate) and not any("is dqn, " in s for s in before)


def test_overlapping_intervals_are_said_to_overlap():
    close = dict(MEANS, planner=104.3)
    text = " ".join(findings.headline(fake_results(close), SUITE, "default"))
    assert "but the intervals overlap" in text


def trace(reason, budget=0.0, boredom=0.4, steps=12):
    z = np.zeros((steps, 3))
    return UserTrace(z, z, np.ones(steps), np.ones(steps, bool), np.full(steps, 2.0), np.zeros(steps, int),
                     reason=reason, final_budget=budget, final_boredom=boredom)


def test_trace_caption_says_why_each_user_left():
    text = findings.trace_caption({"myopic": trace("budget"), "dqn": trace("hazard", 3.2, 0.83)})
    assert "Under myopic the user earned 24 over 12 steps and left when the time budget ran out" in text
    assert "under dqn the user earned 24 over 12 steps and left on the leaving hazard with 3.2 budget to spare" in text
    swapped_text = findings.trace_caption({"myopic": trace("hazard", 1.0, 0.9), "dqn": trace("budget")})
    assert "Under myopic the user earned 24 over 12 steps and left on the leaving hazard" in swapped_text


def test_table_has_the_normalized_score_between_random_and_planner():
    table = results_table(fake_results(), SUITE, "default")
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines()[2:]}
    assert rows["random"].split(" | ")[2].startswith("0.00") and rows["planner"].split(" | ")[2].startswith("1.00")
    normalized = float(rows["dqn"].split(" | ")[2].split(" ")[0])
    assert normalized == pytest.approx((76 - 22) / (120 - 22), abs=0.03)
    assert rows["sb3_dqn"].split(" | ")[5] == "-"  # cannot rank the catalogue


def test_readme_block_is_replaced_between_the_markers_only():
    block = results_block(SUITE, fake_results(), {"git_commit": "abc123", "machine": {"cpus": 2},
                                                  "wall_seconds": 300})
    text = f"intro\n{START}\nold numbers\n{END}\noutro\n"
    new = replace_block(text, block)
    assert new.startswith("intro\n") and new.endswith(f"{END}\noutro\n") and "old numbers" not in new
    assert "The highest return is planner's" in new and "| dqn |" in new
    with pytest.raises(ValueError, match="exactly one"):
        replace_block("no markers", block)


def test_reference_findings_follow_the_intervals(tmp_path):
    import json

    from benchmarks.readme import REFERENCES_END, REFERENCES_START, references_block
    from benchmarks.references import findings as reference_findings
    from benchmarks.stats import Interval

    ci = {"random": Interval(22, 21, 23), "myopic": Interval(52, 50, 54), "heuristic": Interval(107, 99, 117)}
    rows = [{"heuristic_over_myopic": 1.5, "separated": True}, {"heuristic_over_myopic": 2.3, "separated": False}]
    text = " ".join(reference_findings(ci, rows))
    assert "the heuristic earns 2.06x the myopic policy (intervals apart)" in text
    assert "myopic earns 2.36x random (intervals apart)" in text
    assert "ranges from 1.50 to 2.30, with all three intervals apart in 1 of 2" in text
    swapped_ci = {**ci, "heuristic": ci["myopic"], "myopic": ci["heuristic"]}
    assert "Greedy is not beaten" in reference_findings(swapped_ci, [])[0]
    (tmp_path / "results.json").write_text(json.dumps({"config": {"users": 500, "seed": 1}, "table": "| t |",
                                                       "findings": reference_findings(ci, rows)}))
    block = references_block(tmp_path)
    new = replace_block(f"a\n{REFERENCES_START}\nold\n{REFERENCES_END}\nb", block, REFERENCES_START, REFERENCES_END)
    assert "| t |" in new and "2.06x" in new and "old" not in new
    with pytest.raises(ValueError, match="not a finished reference comparison"):
        references_block(tmp_path / "missing")


def test_tabular_block_states_the_measured_fraction_of_the_optimum(tmp_path):
    import json

    from benchmarks.readme import tabular_block

    record = {"config": {"seeds": 5, "episodes": 20000}, "optimal_return": 40.0, "myopic_return": 30.0,
              "fraction_of_optimum": {"estimate": 0.95, "low": 0.9, "high": 0.99, "min": 0.88},
              "agreement": {"estimate": 0.75, "min": 0.5}}
    (tmp_path / "results.json").write_text(json.dumps(record))
    text = tabular_block(tmp_path)
    assert "reaches 0.950 of V* = 40.00" in text and "worst seed 0.880" in text and "myopic: 0.750" in text
    assert "on 0.75 of the states" in text


def test_obd_block_follows_the_command_s_results(tmp_path):
    import json

    from benchmarks.readme import obd_block

    def write(covers):
        record = {"behaviour": {"log": "random", "rows": 100, "clicks": 3}, "confidence": 0.95,
                  "target": {"rows": 90, "clicks": 4, "on_policy_ctr": 4 / 90}, "effective_sample_size": 12.3,
                  "n_covering": sum(covers),
                  "estimates": {name: {"estimate": 0.05, "low": 0.01, "high": 0.09, "relative_error": 0.125,
                                       "covers_on_policy": c} for name, c in zip(("IPS", "SNIPS", "DR"), covers)}}
        (tmp_path / "results.json").write_text(json.dumps(record))
        return obd_block(tmp_path)

    block = write((True, True, True))
    assert "on-policy CTR 0.0444" in block and "| IPS | 0.0500 | [0.0100, 0.0900] | +12% | yes |" in block
    assert "3 of 3 intervals cover" in block and "worth 12 of its 100 impressions" in block
    flipped = write((True, False, True))
    assert "| SNIPS | 0.0500 | [0.0100, 0.0900] | +12% | no |" in flipped and "2 of 3 intervals cover" in flipped
    with pytest.raises(ValueError, match="not a finished Open Bandit benchmark"):
        obd_block(tmp_path / "missing")


def test_clicks_block_carries_the_study_sentences(tmp_path):
    import json

    from benchmarks.readme import clicks_block

    def model(auc, accuracy):
        mean = {"roc_auc": auc, "log_loss": 0.5, "accuracy": accuracy, "f1": 0.1, "threshold": 0.3,
                "accuracy@t": 0.9, "precision@t": 0.2, "recall@t": 0.3, "f1@t": 0.25, "positive_rate": 0.05,
                "always_no_accuracy": 0.95}
        return {"mean": mean, "interval": {"roc_auc": [auc - 0.02, auc + 0.02]}}

    summary = {"lstm": model(0.70, 0.95), "logistic": model(0.60, 0.96),
               "lstm_minus_logistic_roc_auc": {"mean": 0.1, "interval": [0.05, 0.15], "seeds_lstm_ahead": 5, "seeds": 5}}
    info = {"source": "toy", "train_impressions": 10, "test_impressions": 5}
    record = {"config": {"negatives": 4}, "seconds": 60.0, "simulated": {"info": info, "seeds": 5, "summary": summary}}
    (tmp_path / "results.json").write_text(json.dumps(record))
    block = clicks_block(tmp_path)
    assert "#### Simulated users" in block and "| lstm | 0.700 [0.680, 0.720]" in block
    assert "At threshold 0.5, lstm is no more accurate than that" in block
    assert "the LSTM click model beats logistic regression" in block


def test_findings_block_lists_the_command_s_sentences(tmp_path):
    import json

    from benchmarks.readme import findings_block

    (tmp_path / "results.json").write_text(json.dumps({"findings": ["One is 2.0.", "Two is 3.0."]}))
    block = findings_block(tmp_path, "python -m benchmarks.finetune")
    assert "- One is 2.0.\n- Two is 3.0.\n" in block and "from `python -m benchmarks.finetune`" in block
    with pytest.raises(ValueError, match="not a finished run of python -m benchmarks.feedback_loop"):
        findings_block(tmp_path / "missing", "python -m benchmarks.feedback_loop")


def test_seqrec_block_is_the_run_s_report_without_title_or_plot(tmp_path):
    import json

    from benchmarks.readme import seqrec_block

    metrics = {"HR@1": 0.1, "HR@5": 0.2, "HR@10": 0.3, "HR@20": 0.4, "NDCG@5": 0.1, "NDCG@10": 0.2, "NDCG@20": 0.3,
               "MRR": 0.1}
    results = {"transformer": {"full": metrics, "sampled99": metrics}}
    record = {"config": {"simulate": None, "data": "x/Beauty.txt", "seed": 0, "max_len": 50}, "n_users": 3,
              "n_items": 4, "n_interactions": 5, "test_cases": 3, "models": {}}
    (tmp_path / "results.json").write_text(json.dumps(results))
    (tmp_path / "run.json").write_text(json.dumps(record))
    block = seqrec_block(tmp_path)
    assert "| transformer | full |" in block and "0.3000" in block and "# Next-item" not in block and "![" not in block
    with pytest.raises(ValueError, match="not a finished next-item run"):
        seqrec_block(tmp_path / "missing")
