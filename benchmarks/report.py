"""``REPORT.md`` and the six plots of a suite's run folder, from the stored runs alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import agents
from agents.evaluation import UserTrace
from benchmarks import plots
from benchmarks.references import illustrative_traces
from benchmarks.stats import Interval, improvement_interval, stratified_iqm
from benchmarks.suites import LOG_TRAINED, PRESET_ENVS, RunSpec, Suite
from recsim_env.io import atomic_write_text

#: The comparisons the suite exists to make: (better?, than, on metric).
KEY_PAIRS = (("dqn", "dqn_myopic", "return"), ("dqn", "sb3_dqn", "return"), ("heuristic", "myopic", "return"),
             ("lstm", "popularity", "log_HR@10"), ("gcn", "popularity", "log_HR@10"),
             ("myopic", "heuristic", "NDCG@10"))
#: Table columns: metric, header, decimals.
TABLE_METRICS = (("return", "return", 1), ("session_length", "steps per session", 1), ("sessions", "sessions", 2),
                 ("click_rate", "click rate", 3), ("HR@1", "next-click HR@1", 3), ("NDCG@10", "next-click NDCG@10", 3),
                 ("log_HR@10", "log HR@10", 4), ("log_NDCG@10", "log NDCG@10", 4), ("train_seconds", "train s", 0))
REFERENCE_LINES = ("random", "myopic", "heuristic")
TRACE_POLICIES = ("myopic", "dqn", "heuristic")


def seed_values(results: dict[RunSpec, dict[str, Any]], preset: str, agent: str, metric: str) -> np.ndarray:
    return np.array([r["metrics"][metric] for s, r in results.items()
                     if s.preset == preset and s.agent == agent and metric in r["metrics"]], np.float64)


def summary(results: dict[RunSpec, dict[str, Any]], suite: Suite, metric: str) -> dict[str, dict[str, Interval]]:
    """``{preset: {agent: IQM over seeds [95% CI]}}`` for the agents that report ``metric``."""
    table: dict[str, dict[str, Interval]] = {}
    for preset in suite.presets:
        for agent in suite.agents:
            values = seed_values(results, preset, agent, metric)
            if values.size and np.isfinite(values).all():
                table.setdefault(preset, {})[agent] = stratified_iqm(values)
    return table


def _fmt(interval: Interval | None, decimals: int) -> str:
    if interval is None:
        return "-"
    if interval.low == interval.high:
        return f"{interval.estimate:.{decimals}f}"
    return f"{interval.estimate:.{decimals}f} [{interval.low:.{decimals}f}, {interval.high:.{decimals}f}]"


def results_table(results: dict[RunSpec, dict[str, Any]], suite: Suite, preset: str) -> str:
    summaries = {m: summary(results, suite, m).get(preset, {}) for m, _, _ in TABLE_METRICS}
    lines = ["| agent | " + " | ".join(h for _, h, _ in TABLE_METRICS) + " |",
             "|---|" + "---|" * len(TABLE_METRICS)]
    for agent in suite.agents:
        if any(agent in summaries[m] for m, _, _ in TABLE_METRICS):
            cells = [_fmt(summaries[m].get(agent), d) for m, _, d in TABLE_METRICS]
            lines.append(f"| {agent} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def improvement_table(results: dict[RunSpec, dict[str, Any]], suite: Suite) -> str:
    lines = ["| preset | claim | IQM of each | P(improvement) [95% CI] | intervals apart |", "|---|---|---|---|---|"]
    for preset in suite.presets:
        for better, worse, metric in KEY_PAIRS:
            x, y = (seed_values(results, preset, a, metric) for a in (better, worse))
            if not x.size or not y.size:
                continue
            ix, iy = stratified_iqm(x), stratified_iqm(y)
            apart = "yes" if ix.low > iy.high else ("no" if ix.overlaps(iy) else "reversed")
            lines.append(f"| {preset} | {better} > {worse} on {metric} | {ix.estimate:.4g} vs {iy.estimate:.4g} | "
                         f"{improvement_interval(x, y)} | {apart} |")
    return "\n".join(lines)


def _curves(results: dict[RunSpec, dict[str, Any]], suite: Suite) -> dict[str, dict[str, list]]:
    curves: dict[str, dict[str, list]] = {}
    for spec, result in results.items():
        curve = result.get("curve") or {}
        if len(curve.get("episodes", [])) > 1:
            curves.setdefault(spec.preset, {}).setdefault(spec.agent, []).append((curve["episodes"], curve["return"]))
    return curves


def _per_user(results: dict[RunSpec, dict[str, Any]], preset: str) -> dict[str, dict[str, np.ndarray]]:
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
    env = gym.make_vec(PRESET_ENVS[preset], num_envs=1, vectorization_mode="vector_entry_point")
    seed = min(suite.seeds)
    policies = {}
    for name in TRACE_POLICIES:
        if name == "dqn":
            weights = out / "work" / RunSpec("dqn", preset, seed, suite.budget).run_id / "checkpoint.pt"
            if not weights.exists():
                continue
            policies[name] = agents.make("dqn", env)
            policies[name].load(weights)
        else:
            policies[name] = agents.make(name, env)
    return illustrative_traces(env, policies, RunSpec("dqn", preset, seed).eval_seed)


def write_plots(out: Path, suite: Suite, results: dict[RunSpec, dict[str, Any]]) -> dict[str, Path]:
    """The six figures (PNG and SVG); the accuracy figures use the first preset."""
    preset = suite.presets[0]
    returns = summary(results, suite, "return")
    references = {p: {a: iv.estimate for a, iv in by_agent.items() if a in REFERENCE_LINES}
                  for p, by_agent in returns.items()}
    accuracy_panels = {label: summary(results, suite, metric).get(preset, {})
                       for metric, label in (("HR@1", "next-click HR@1 (rollouts)"),
                                             ("NDCG@10", "next-click NDCG@10 (rollouts)"),
                                             ("log_HR@10", "HR@10 on held-out logs"),
                                             ("log_NDCG@10", "NDCG@10 on held-out logs"))}
    accuracy_panels = {k: v for k, v in accuracy_panels.items() if v}
    figures = {}
    curves = _curves(results, suite)
    if curves:
        figures["learning_curves"] = plots.plot_learning_curves(curves, references, out)
    figures["final_return"] = plots.plot_final_return(returns, out)
    if accuracy_panels:
        figures["accuracy"] = plots.plot_accuracy(accuracy_panels, out)
    ndcg = summary(results, suite, "NDCG@10").get(preset, {})
    figures["accuracy_vs_return"] = plots.plot_accuracy_vs_return(
        ndcg, returns.get(preset, {}), out, "next-click NDCG@10 over the step's candidates (rollouts)")
    traces = _traces(out, suite, preset)
    figures["user_drift"] = plots.plot_user_drift(traces, out / "user_drift.png",
                                                  title=f"One held-out user of {preset} under each policy")
    figures["sessions"] = plots.plot_sessions(_per_user(results, preset), out)
    return figures


INTRO = """\
Every agent acted on the same held-out simulated users (one episode each, users never seen in
training), once per training seed. Each cell is the interquartile mean (IQM) over seeds with a 95%
stratified-bootstrap confidence interval (a single number: every seed gave the same value).

How to read the columns:
- **return**: total reward (engagement) per user over the episode: the long-term reward.
- **steps per session**, **sessions**: how long users stay, and how often they come back.
- **next-click HR@1 / NDCG@10**: at every step of the agent's own rollouts, the agent's ranking of the
  step's candidates against the candidate the user would click if shown all of them (exact, from the
  simulator's choice model). Random ranking scores about 0.10 / 0.46 with 10 candidates.
- **log HR@10 / NDCG@10**: the next-item models ranking the whole catalogue for the held-out users of
  a simulated log (behaviour policy: {log_policy}), as the sequential-recommendation literature reports it.
"""


def write_report(out: Path, suite: Suite, results: dict[RunSpec, dict[str, Any]], failed: dict[RunSpec, str]) -> Path:
    """Plots and ``REPORT.md``: the table per preset, the key comparisons, every figure with a caption."""
    figures = write_plots(out, suite, results)
    seeds = ", ".join(map(str, suite.seeds))
    parts = [f"# recsim_env benchmark: suite `{suite.name}`", "",
             f"Agents: {', '.join(suite.agents)}. Presets: {', '.join(suite.presets)}. Seeds: {seeds}. "
             f"{suite.budget.eval_users} held-out users per run.", "",
             INTRO.format(log_policy=suite.budget.log_policy)]
    for preset in suite.presets:
        parts += [f"## Results: {preset}", "", results_table(results, suite, preset), ""]
    parts += ["## Key comparisons", "",
              "P(improvement) is the chance that a run of the first agent beats a run of the second.", "",
              improvement_table(results, suite), ""]
    captions = {
        "learning_curves": "Learning curves: return of training episodes (with exploration) in the order they "
                           "began; dashed lines are the fixed policies' evaluated returns.",
        "final_return": "Final long-term reward per agent, evaluated on held-out users.",
        "accuracy": "Accuracy per agent: next-click accuracy in the agent's own rollouts, and catalogue-wide "
                    "accuracy on held-out logs for the next-item models.",
        "accuracy_vs_return": "Accuracy against long-term reward, one point per agent: the agents that predict "
                              "the next click best are not the ones that keep users longest.",
        "user_drift": "One held-out user under three policies: interest (top), boredom (middle), budget "
                      "(bottom). The myopic policy exhausts a topic and the user leaves; the long-term "
                      "policies vary topics and quality and keep the user.",
        "sessions": "Session length per user, and retention: the share of users still active after t steps.",
    }
    parts += ["## Figures", ""]
    for key, path in figures.items():
        parts += [f"![{key}]({path.name})", "", captions[key], ""]
    if failed:
        parts += ["## Failed runs", ""] + [f"- `{s.run_id}`: {e.strip().splitlines()[-1]}" for s, e in failed.items()]
    trained = [a for a in suite.agents if a in LOG_TRAINED]
    if trained:
        parts += ["", f"Next-item models ({', '.join(trained)}) were trained on a log of {suite.budget.log_users} "
                      f"simulated users ({suite.budget.holdout:.0%} held out for log accuracy)."]
    return atomic_write_text(out / "REPORT.md", "\n".join(parts) + "\n")
