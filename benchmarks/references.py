"""The reference-policy comparison: is greedy beatable, and is it better than random?

Runs ``random``, ``myopic`` and ``heuristic`` on the same held-out users, reports mean total
episode reward with 95% bootstrap intervals, repeats the comparison over catalogue sizes, topic
counts and catalogue seeds across their documented ranges, and draws one user's drifting
interest under each policy.

    python -m benchmarks.references [--users 500] [--seed 0] [--out results/references] [--no-sweep]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
from tqdm import tqdm

import agents
import recsim_env  # noqa: F401  (registers the env ids)
from agents.base import Recommender
from agents.evaluation import EpisodeStats, UserTrace, evaluate, trace_user
from benchmarks.plots import plot_user_drift
from benchmarks.stats import Interval, bootstrap_interval
from recsim_env.io import atomic_write_text, progress_enabled

POLICIES = ("random", "myopic", "heuristic")
#: Catalogue size, topic count and catalogue seed across the documented ranges.
SWEEP = [{"n_items": n, "n_topics": t, "catalog_seed": s} for n in (100, 1000, 100_000) for t in (2, 10, 50)
         for s in (0, 1)]


@dataclass
class ReferencesConfig:
    """Command-line options of the reference comparison."""

    env_id: str = "recsim_env/InterestDrift-v0"
    users: int = 500
    seed: int = 10_000
    out: str = "results/references"
    sweep: bool = True


def compare_policies(env_id: str, users: int, seed: int, policies: tuple[str, ...] = POLICIES,
                     **overrides: Any) -> dict[str, EpisodeStats]:
    """One episode per user for each policy, on the same users (same seed)."""
    env = gym.make_vec(env_id, num_envs=users, vectorization_mode="vector_entry_point", **overrides)
    return {name: evaluate(agents.make(name, env), env, seed=seed) for name in policies}


def intervals(results: dict[str, EpisodeStats]) -> dict[str, Interval]:
    """Mean total episode reward per policy with a 95% bootstrap interval."""
    return {name: bootstrap_interval(stats.returns) for name, stats in results.items()}


def main_table(results: dict[str, EpisodeStats]) -> str:
    ci = intervals(results)
    base = ci["myopic"].estimate
    lines = ["| policy | total reward per user (95% CI) | vs myopic | steps per episode | click rate |",
             "|---|---|---|---|---|"]
    for name, stats in results.items():
        lines.append(f"| {name} | {ci[name]} | {100 * (ci[name].estimate / base - 1):+.0f}% | "
                     f"{stats.lengths.mean():.1f} | {stats.clicks.sum() / stats.lengths.sum():.2f} |")
    return "\n".join(lines)


def sweep_rows(env_id: str, users: int, seed: int, progress: bool) -> list[dict[str, Any]]:
    """The comparison for every configuration in ``SWEEP``."""
    rows = []
    for overrides in tqdm(SWEEP, desc="sweep", disable=not progress):
        ci = intervals(compare_policies(env_id, users, seed, **overrides))
        rows.append({**overrides, **{name: asdict(iv) for name, iv in ci.items()},
                     "heuristic_over_myopic": ci["heuristic"].estimate / ci["myopic"].estimate,
                     "separated": not ci["heuristic"].overlaps(ci["myopic"]) and not ci["myopic"].overlaps(ci["random"])})
    return rows


def sweep_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| n_items | n_topics | catalog_seed | random | myopic | heuristic | heuristic / myopic | CIs apart |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['n_items']} | {r['n_topics']} | {r['catalog_seed']} | {r['random']['estimate']:.1f} | "
                     f"{r['myopic']['estimate']:.1f} | {r['heuristic']['estimate']:.1f} | "
                     f"{r['heuristic_over_myopic']:.2f} | {'yes' if r['separated'] else 'NO'} |")
    return "\n".join(lines)


def findings(ci: dict[str, Interval], rows: list[dict[str, Any]]) -> list[str]:
    """The comparison's conclusions, computed from its intervals (and the sweep's rows, if run)."""
    heuristic, myopic, random = ci["heuristic"], ci["myopic"], ci["random"]
    beatable = "intervals apart" if heuristic.low > myopic.high else "but the intervals overlap"
    sane = "intervals apart" if myopic.low > random.high else "but the intervals overlap"
    sentences = [f"Greedy is {'beatable' if heuristic.estimate > myopic.estimate else 'not beaten'}: the heuristic "
                 f"earns {heuristic.estimate / myopic.estimate:.2f}x the myopic policy ({beatable}), and greedy is "
                 f"{'not perverse' if myopic.estimate > random.estimate else 'worse than random'}: myopic earns "
                 f"{myopic.estimate / random.estimate:.2f}x random ({sane})."]
    if rows:
        ratios = [r["heuristic_over_myopic"] for r in rows]
        apart = sum(r["separated"] for r in rows)
        sentences.append(f"Across the {len(rows)} catalogue configurations (n_items x n_topics x catalogue seed), "
                         f"heuristic / myopic ranges from {min(ratios):.2f} to {max(ratios):.2f}, with all three "
                         f"intervals apart in {apart} of {len(rows)}.")
    return sentences


def illustrative_traces(env: gym.vector.VectorEnv, policies: dict[str, Recommender], seed: int, min_steps: int = 25,
                        tries: int = 50) -> dict[str, UserTrace]:
    """One user followed under each policy: the first seed from ``seed`` whose user stays at least
    ``min_steps`` under every policy (so the drift is visible), else the longest-lived one tried."""
    best: dict[str, UserTrace] = {}
    for s in range(seed, seed + tries):
        traces = {name: trace_user(policy, env, seed=s) for name, policy in policies.items()}
        shortest = min(len(t.budget) for t in traces.values())
        if not best or shortest > min(len(t.budget) for t in best.values()):
            best = traces
        if shortest >= min_steps:
            break
    return best


def parse_args(argv: list[str] | None) -> ReferencesConfig:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = ReferencesConfig()
    parser.add_argument("--env-id", default=defaults.env_id)
    parser.add_argument("--users", type=int, default=defaults.users, help="held-out users per policy")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of the held-out users")
    parser.add_argument("--out", default=defaults.out, help="folder for the table and the plot")
    parser.add_argument("--no-sweep", dest="sweep", action="store_false", help="skip the robustness sweep")
    args = parser.parse_args(argv)
    if args.users < 2:
        parser.error(f"--users={args.users} is out of range: allowed >= 2")
    return ReferencesConfig(**vars(args))


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    progress = progress_enabled(None)
    results = compare_policies(cfg.env_id, cfg.users, cfg.seed)
    table = main_table(results)
    print(f"{cfg.env_id}, {cfg.users} held-out users (seed {cfg.seed}):\n\n{table}\n")
    report = f"# Reference policies on {cfg.env_id}\n\n{cfg.users} users, seed {cfg.seed}.\n\n{table}\n"
    rows: list[dict[str, Any]] = []
    if cfg.sweep:
        rows = sweep_rows(cfg.env_id, cfg.users, cfg.seed, progress)
        table2 = sweep_table(rows)
        print(f"Across catalogue sizes, topic counts and catalogue seeds:\n\n{table2}\n")
        report += f"\n## Across configurations\n\n{table2}\n"
    env = gym.make_vec(cfg.env_id, num_envs=1, vectorization_mode="vector_entry_point")
    traces = illustrative_traces(env, {name: agents.make(name, env) for name in POLICIES}, cfg.seed)
    plot = plot_user_drift(traces, f"{cfg.out}/user_drift.png", title=f"One user of {cfg.env_id} under each policy")
    report += f"\n![one user's interest drifting]({plot.name})\n"
    atomic_write_text(f"{cfg.out}/results.md", report)
    conclusions = findings(intervals(results), rows)
    summary = {"config": asdict(cfg), "policies": {n: asdict(iv) for n, iv in intervals(results).items()},
               "sweep": rows, "table": table, "findings": conclusions}
    atomic_write_text(f"{cfg.out}/results.json", json.dumps(summary, indent=2))
    print(f"wrote {cfg.out}/results.md, results.json and {plot.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
