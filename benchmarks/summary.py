"""Per-agent summaries of a suite's runs: IQM over seeds with intervals that resample seeds and users.

Where a run stores a metric per held-out user (return, session length, the log accuracy's per-user
sums), the interval resamples the seeds and, within each seed, the users
(:func:`~benchmarks.stats.seeds_and_users_samples`); other metrics (training time, click metrics)
resample the seeds only. The draws depend only on the bootstrap seed and the array shape, so agents
evaluated on the same users are resampled alike and the normalized score keeps that pairing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.stats import Interval, interval_of, iqm, seeds_and_users_samples
from benchmarks.suites import RunSpec, Suite

Results = dict[RunSpec, dict[str, Any]]
#: Bootstrap resamples of every interval in the report.
RESAMPLES = 2000


def seed_values(results: Results, preset: str, agent: str, metric: str) -> np.ndarray:
    """The metric of each seed's run of ``agent`` on ``preset``, in seed order."""
    return np.array([r["metrics"][metric] for s, r in sorted(results.items(), key=lambda item: item[0].seed)
                     if s.preset == preset and s.agent == agent and metric in r["metrics"]], np.float64)


def _user_arrays(result: dict[str, Any], metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-user numerators and denominators of ``metric`` in one run, if the run stored them."""
    users = result.get("per_user", {})
    if metric == "return" and "return" in users:
        values = np.asarray(users["return"], np.float64)
        return values, np.ones_like(values)
    if metric == "session_length" and "length" in users:
        values = np.asarray(users["length"], np.float64) / np.maximum(np.asarray(users["sessions"], np.float64), 1)
        return values, np.ones_like(values)
    if metric.startswith("log_") and metric in users and "log_cases" in users:
        return np.asarray(users[metric], np.float64), np.asarray(users["log_cases"], np.float64)
    return None


def metric_samples(results: Results, preset: str, agent: str, metric: str) -> tuple[float, np.ndarray] | None:
    """Point estimate and bootstrap samples of ``metric`` for ``agent`` (None if no run reports it)."""
    runs = [r for s, r in sorted(results.items(), key=lambda item: item[0].seed)
            if s.preset == preset and s.agent == agent and metric in r["metrics"]]
    if not runs or not all(np.isfinite(r["metrics"][metric]) for r in runs):
        return None
    arrays = [_user_arrays(r, metric) for r in runs]
    if all(a is not None for a in arrays) and len({len(a[0]) for a in arrays}) == 1:
        return seeds_and_users_samples(np.stack([a[0] for a in arrays]), np.stack([a[1] for a in arrays]),
                                       RESAMPLES)
    values = np.array([r["metrics"][metric] for r in runs], np.float64)
    draws = np.random.default_rng(0).integers(0, len(values), size=(RESAMPLES, len(values)))
    return float(iqm(values)), iqm(values[draws], axis=1)  # the seeds resampled (stratified: one task)


def summary(results: Results, suite: Suite, metric: str) -> dict[str, dict[str, Interval]]:
    """``{preset: {agent: IQM over seeds [95% CI]}}`` for the agents that report ``metric``."""
    table: dict[str, dict[str, Interval]] = {}
    for preset in suite.presets:
        for agent in suite.agents:
            found = metric_samples(results, preset, agent, metric)
            if found is not None:
                table.setdefault(preset, {})[agent] = interval_of(*found)
    return table


def normalized_scores(results: Results, suite: Suite) -> dict[str, dict[str, Interval]]:
    """``(agent - random) / (planner - random)`` on return, with paired bootstrap samples of all three.

    0 is the random policy and 1 the planner, the best known policy; empty without both.
    """
    table: dict[str, dict[str, Interval]] = {}
    for preset in suite.presets:
        random, planner = (metric_samples(results, preset, a, "return") for a in ("random", "planner"))
        if random is None or planner is None:
            continue
        span_point, span = planner[0] - random[0], planner[1] - random[1]
        for agent in suite.agents:
            found = metric_samples(results, preset, agent, "return")
            if found is None or span_point == 0:
                continue
            samples = (found[1] - random[1]) / np.where(span == 0, np.nan, span)
            table.setdefault(preset, {})[agent] = interval_of((found[0] - random[0]) / span_point,
                                                              samples[np.isfinite(samples)])
    return table
