"""``REPORT.md`` and the plots of a suite's run folder, from the stored runs alone.

Every sentence that states a result is computed here from the runs' numbers (:mod:`benchmarks.findings`),
so the report says what this run found, whatever that is.
"""

from __future__ import annotations

from pathlib import Path
import gymnasium as gym
import numpy as np

import agents
from agents.evaluation import UserTrace
from benchmarks import findings, plots
from benchmarks.references import illustrative_traces
from benchmarks.stats import Interval, improvement_interval
from benchmarks.summary import Results, normalized_scores, seed_values, summary
from benchmarks.suites import LEARNERS, LOG_TRAINED, RunSpec, Suite
from recsim_env.io import atomic_write_text

#: The comparisons the suite exists to make: (better?, than, on metric).
KEY_PAIRS = (("planner", "heuristic", "return"), ("dqn", "dqn_myopic", "return"), ("dqn", "sb3_dqn", "return"),
             ("heuristic", "myopic", "return"), ("lstm", "popularity", "log_HR@10"),
             ("gcn", "popularity", "log_HR@10"), ("slateq", "sb3_ppo", "return"), ("slateq", "myopic", "return"))
#: Main table: metric, header, decimals. ``normalized`` is computed from the returns.
TABLE_METRICS = (("return", "return", 1), ("normalized", "normalized score", 2),
                 ("train_steps", "user-steps trained", 0), ("train_seconds", "wall-clock s", 0),
                 ("log_HR@10", "log HR@10", 4), ("log_NDCG@10", "log NDCG@10", 4), ("log_MRR", "log MRR", 4),
                 ("click_f1", "click F1", 3), ("click_roc_auc", "click ROC-AUC", 3))
#: Second table: how users behave, and the other views of accuracy.
DETAIL_METRICS = (("session_length", "steps per session", 1), ("sessions", "sessions", 2),
                  ("click_rate", "click rate", 3), ("rollout_HR@1", "rollout HR@1", 3),
                  ("rollout_NDCG@10", "rollout NDCG@10", 3), ("click_accuracy", "click accuracy", 3),
                  ("click_precision", "click precision", 3), ("click_recall", "click recall", 3),
                  ("eval_seconds", "evaluation s", 1))
REFERENCE_LINES = ("random", "myopic", "heuristic", "planner")
TRACE_POLICIES = ("myopic", "dqn", "heuristic")


def _fmt(interval: Interval | None, decimals: int) -> str:
    if interval is None:
        return "-"
    if interval.low == interval.high:
        return f"{interval.estimate:,.{decimals}f}"
    return f"{interval.estimate:,.{decimals}f} [{interval.low:,.{decimals}f}, {interval.high:,.{decimals}f}]"


def _table(results: Results, suite: Suite, preset: str, columns: tuple) -> str:
    summaries = {m: summary(results, suite, m).get(preset, {}) for m, _, _ in columns if m != "normalized"}
    summaries["normalized"] = normalized_scores(results, suite).get(preset, {})
    lines = ["| agent | " + " | ".join(h for _, h, _ in columns) + " |", "|---|" + "---|" * len(columns)]
    for agent in suite.agents:
        if any(agent in summaries[m] for m, _, _ in columns):
            cells = [_fmt(summaries[m].get(agent), d) for m, _, d in columns]
            lines.append(f"| {agent} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def results_table(results: Results, suite: Suite, preset: str) -> str:
    """The main table: return, normalized score, budget, wall-clock, catalogue-wide and click accuracy."""
    return _table(results, suite, preset, TABLE_METRICS)


def detail_table(results: Results, suite: Suite, preset: str) -> str:
    return _table(results, suite, preset, DETAIL_METRICS)


def improvement_table(results: Results, suite: Suite) -> str:
    lines = ["| preset | claim | IQM of each | P(improvement) [95% CI] | intervals apart |", "|---|---|---|---|---|"]
    for preset in suite.presets:
        intervals = {m: summary(results, suite, m).get(preset, {}) for m in {m for _, _, m in KEY_PAIRS}}
        for better, worse, metric in KEY_PAIRS:
            ix, iy = intervals[metric].get(better), intervals[metric].get(worse)
            if ix is None or iy is None:
                continue
            x, y = (seed_values(results, preset, a, metric) for a in (better, worse))
            apart = "yes" if ix.low > iy.high else ("no" if ix.overlaps(iy) else "reversed")
            lines.append(f"| {preset} | {better} > {worse} on {metric} | {ix.estimate:.4g} vs {iy.estimate:.4g} | "
                         f"{improvement_interval(x, y)} | {apart} |")
    return "\n".join(lines)


def _curves(results: Results) -> dict[str, dict[str, list]]:
    curves: dict[str, dict[str, list]] = {}
    for spec, result in results.items():
        curve = result.get("curve") or {}
        if len(curve.get("episodes", [])) > 1:
            curves.setdefault(spec.preset, {}).setdefault(spec.agent, []).append((curve["episodes"], curve["return"]))
    return curves


def _per_user(results: Results, preset: str) -> dict[str, dict[str, np.ndarray]]:
    pooled: dict[str, dict[str, list]] = {}
    for spec, result in results.items():
        if spec.preset != preset:
            continue
        users = pooled.setdefault(spec.agent, {"session_length": [], "episode_length": []})
        length, sessions = np.asarray(result["per_user"]["length"]), np.asarray(result["per_user"]["sessions"])
        users["session_length"].append(length / np.maximum(sessions, 1))
        users["episode_length"].append(length)
    return {a: {k: np.concatenate(v) for k, v in d.items()} for a, d in pooled.items()}


def _traces(out: Path, suite: Suite, preset: str) -> dict[str, UserTrace]:
    """One held-out user who stays a while under myopic, the first seed's trained DQN (when its
    weights are stored) and heuristic."""
    seed = min(suite.seeds)
    probe = RunSpec("dqn", preset, seed, suite.budget, suite.choice)
    env = gym.make_vec(probe.env_id, num_envs=1, vectorization_mode="vector_entry_point", **probe.env_kwargs())
    policies = {}
    for name in TRACE_POLICIES:
        if name not in suite.agents:
            continue
        if name == "dqn":
            weights = out / "work" / probe.run_id / "checkpoint.pt"
            if not weights.exists():
                continue
            policies[name] = agents.make("dqn", env)
            policies[name].load(weights)
        else:
            policies[name] = agents.make(name, env)
    return illustrative_traces(env, policies, probe.eval_seed) if policies else {}


def write_plots(out: Path, suite: Suite, results: Results) -> tuple[dict[str, Path], dict[str, str]]:
    """The figures (PNG and SVG) and their captions, computed from the numbers; the accuracy figures
    use the first preset."""
    preset = suite.presets[0]
    returns = summary(results, suite, "return")
    references = {p: {a: iv.estimate for a, iv in by_agent.items() if a in REFERENCE_LINES}
                  for p, by_agent in returns.items()}
    accuracy_panels = {label: summary(results, suite, metric).get(preset, {})
                       for metric, label in (("log_HR@10", "HR@10, whole catalogue (held-out log)"),
                                             ("log_NDCG@10", "NDCG@10, whole catalogue (held-out log)"),
                                             ("click_roc_auc", "click ROC-AUC (logged impressions)"),
                                             ("rollout_NDCG@10", "next-click NDCG@10 (own rollouts)"))}
    accuracy_panels = {k: v for k, v in accuracy_panels.items() if v}
    figures: dict[str, Path] = {}
    captions: dict[str, str] = {}
    curves = _curves(results)
    if curves:
        figures["learning_curves"] = plots.plot_learning_curves(curves, references, out)
        captions["learning_curves"] = findings.curves_caption(curves)
    figures["final_return"] = plots.plot_final_return(returns, out)
    captions["final_return"] = findings.return_caption(returns.get(preset, {}), preset)
    if accuracy_panels:
        figures["accuracy"] = plots.plot_accuracy(accuracy_panels, out)
        captions["accuracy"] = findings.accuracy_caption(summary(results, suite, "log_HR@10").get(preset, {}),
                                                         suite.budget.accuracy_policy)
    hr = summary(results, suite, "log_HR@10").get(preset, {})
    rollout = summary(results, suite, "rollout_NDCG@10").get(preset, {})
    figures["accuracy_vs_return"] = plots.plot_accuracy_vs_return(
        {"HR@10, whole catalogue, on the held-out log": hr, "next-click NDCG@10 in the agent's own rollouts": rollout},
        returns.get(preset, {}), out)
    captions["accuracy_vs_return"] = findings.tension_caption(hr, returns.get(preset, {}))
    traces = _traces(out, suite, preset)
    if traces:
        figures["user_drift"] = plots.plot_user_drift(traces, out / "user_drift.png",
                                                      title=f"One held-out user of {preset} under each policy")
        captions["user_drift"] = findings.trace_caption(traces)
    per_user = _per_user(results, preset)
    figures["sessions"] = plots.plot_sessions(per_user, out)
    captions["sessions"] = findings.sessions_caption(per_user)
    return figures, captions


INTRO = """\
Every agent acted on the same held-out simulated users (one episode each, users never seen in
training), once per training seed. Each cell is the interquartile mean (IQM) over seeds of the
per-seed mean, with a 95% bootstrap interval that resamples both the seeds and, within each seed,
the held-out users (a single number: it did not vary).

How to read the columns:
- **return**: total reward (engagement) per user over the episode: the long-term reward.
- **normalized score**: `(agent - random) / (planner - random)` on return: 0 is random, 1 the planner
  (the best known policy, which plans with the simulator itself).
- **user-steps trained**: environment user-steps each learner trained on (the interacting agents'
  steps, or the length of the next-item models' training log); **wall-clock s**: training time.
- **log HR@10 / NDCG@10 / MRR**: at every logged step of {accuracy_users} other held-out users under
  the `{accuracy_policy}` behaviour policy, the agent ranks the *whole catalogue* and is scored against
  the item the user actually clicked (random: about 10 / n_items).
- **click F1 / ROC-AUC**: for agents that predict clicks, on the same log's impressions (each shown
  item, clicked or not; threshold 0.5).
"""

TINY_WARNING = ("> **This is the `tiny` suite**: a few training steps of everything, to test the machinery. "
                "Its numbers mean nothing; run `--suite quick` for results.")


def write_report(out: Path, suite: Suite, results: Results, failed: dict[RunSpec, str]) -> Path:
    """Plots and ``REPORT.md``: findings, the tables per preset, the key comparisons, every figure."""
    figures, captions = write_plots(out, suite, results)
    seeds = ", ".join(map(str, suite.seeds))
    budget = suite.budget
    parts = [f"# recsim_env benchmark: suite `{suite.name}`", ""]
    if suite.name == "tiny":
        parts += [TINY_WARNING, ""]
    learners = [a for a in suite.agents if a in LEARNERS]
    parts += [f"Agents: {', '.join(suite.agents)}. Presets: {', '.join(suite.presets)}. Seeds: {seeds}. "
              f"{budget.eval_users} held-out users per run. Every learner ({', '.join(learners)}) trained on "
              f"{budget.train_steps:,} environment user-steps.", "",
              INTRO.format(accuracy_users=budget.accuracy_users, accuracy_policy=budget.accuracy_policy)]
    for preset in suite.presets:
        parts += [f"## Results: {preset}", "", "Findings (computed from this run):", ""]
        parts += [f"- {sentence}" for sentence in findings.headline(results, suite, preset)]
        parts += ["", results_table(results, suite, preset), "", "Behaviour and the other views of accuracy:", "",
                  detail_table(results, suite, preset), ""]
    parts += ["## Key comparisons", "",
              "P(improvement) is the chance that a run (seed) of the first agent beats a run of the second.", "",
              improvement_table(results, suite), ""]
    parts += ["## Figures", ""]
    for key, path in figures.items():
        parts += [f"![{key}]({path.name})", "", captions[key], ""]
    if failed:
        parts += ["## Failed runs", ""] + [f"- `{s.run_id}`: {e.strip().splitlines()[-1]}" for s, e in failed.items()]
    if any(a in LOG_TRAINED for a in suite.agents):
        parts += ["", f"Next-item models were trained on a log of {budget.train_steps:,} user-steps of the "
                      f"`{budget.log_policy}` policy (whole episodes of other users)."]
    return atomic_write_text(out / "REPORT.md", "\n".join(parts) + "\n")

