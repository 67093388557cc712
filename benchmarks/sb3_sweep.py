"""A small hyperparameter sweep of SB3's DQN on this env, at the project DQN's replay ratio.

    python -m benchmarks.sb3_sweep [--steps 500000] [--seeds 0,1] [--settings NAME,...] [--out results/sb3_sweep]

SB3's defaults were tuned for Atari and classic control; a baseline should get settings chosen for
the env it is compared on, by the same protocol as the agent it is compared with. Each setting
trains ``SB3DQN`` for ``--steps`` user-steps on 256 training users at a time (one gradient step of
512 transitions per vector step: replay ratio 2, as the project's DQN) and is evaluated, greedy,
on 500 validation users (``seed = 3_000_000 + seed``: never a training seed, and not the users the
benchmark suite reports on, so the suite's numbers are not tuned on), one episode each.

The settings change one thing at a time around a centre (``centre``), plus SB3's own defaults
with the batch and training frequency scaled to the replay ratio (``sb3_defaults``) and the two
best single changes together (``explore_0.1_target_16k``). The best
mean over seeds becomes ``SB3DQNConfig``'s defaults; ``--settings defaults`` runs those as they
are (e.g. ``--steps 1000000 --settings defaults --out results/sb3_1m`` for the suite's budget).

Each finished run is written at once to ``runs/<setting>_s<seed>.json`` (atomically) with its
config; rerunning skips the runs whose file holds the same config. ``results.json`` and
``results.md`` (one row per setting) are rewritten after every run, and the table is printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

import recsim_env  # noqa: F401  (registers the env ids)
from agents.evaluation import evaluate
from agents.sb3 import SB3DQN, SB3DQNConfig
from benchmarks.stats import bootstrap_interval
from recsim_env.io import atomic_write_text, progress_enabled

ENV_ID = "recsim_env/InterestDrift-v0"
#: Seeds of the validation users: ``EVAL_SEED + seed``, apart from the suite's held-out users (1,000,000 + seed).
EVAL_SEED = 3_000_000

#: The centre of the sweep: the project DQN's budget-related settings (buffer, warm-up, replay
#: ratio, exploration, target copy every 250 gradient steps) with SB3's 1-step DQN.
CENTRE: dict[str, Any] = {"learning_rate": 5e-4, "gamma": 0.97, "target_update_interval": 64_000,
                          "exploration_fraction": 0.25, "exploration_final_eps": 0.02, "hidden": 256,
                          "batch_size": 512, "train_freq": 1, "gradient_steps": 1, "buffer_size": 200_000,
                          "learning_starts": 20_000}

#: Every setting, as complete overrides (independent of the config's defaults, so resuming stays valid).
SETTINGS: dict[str, dict[str, Any]] = {
    "sb3_defaults": {**CENTRE, "learning_rate": 1e-4, "gamma": 0.99, "target_update_interval": 10_000,
                     "exploration_fraction": 0.1, "exploration_final_eps": 0.05, "hidden": 64},
    "centre": CENTRE,
    "lr_2.5e-4": {**CENTRE, "learning_rate": 2.5e-4},
    "lr_1e-3": {**CENTRE, "learning_rate": 1e-3},
    "gamma_0.9": {**CENTRE, "gamma": 0.9},
    "gamma_0.99": {**CENTRE, "gamma": 0.99},
    "target_16k": {**CENTRE, "target_update_interval": 16_000},
    "explore_0.1": {**CENTRE, "exploration_fraction": 0.1},
    "hidden_64": {**CENTRE, "hidden": 64},
    "explore_0.1_target_16k": {**CENTRE, "exploration_fraction": 0.1, "target_update_interval": 16_000},
}
#: Run only on request: ``SB3DQNConfig()``'s defaults as they are now.
EXTRA = ("defaults",)


@dataclass(frozen=True)
class SweepConfig:
    """Command-line options; validated on construction so that library callers get the same errors."""

    steps: int = 500_000
    seeds: tuple[int, ...] = (0, 1)
    settings: tuple[str, ...] = tuple(SETTINGS)
    n_envs: int = 256
    eval_users: int = 500
    out: str = "results/sb3_sweep"

    def __post_init__(self) -> None:
        checks = {"steps": (self.steps >= 1, ">= 1"),
                  "seeds": (len(self.seeds) >= 1 and all(s >= 0 for s in self.seeds), "one or more seeds >= 0"),
                  "settings": (len(self.settings) >= 1 and all(s in SETTINGS or s in EXTRA for s in self.settings),
                               f"one or more of {', '.join((*SETTINGS, *EXTRA))}"),
                  "n_envs": (1 <= self.n_envs <= 100_000, "[1, 100000]"),
                  "eval_users": (2 <= self.eval_users <= 1_000_000, "[2, 1000000]")}
        for name, (ok, allowed) in checks.items():
            if not ok:
                raise ValueError(f"SweepConfig.{name}={getattr(self, name)!r} is out of range: allowed {allowed}")


def setting_config(name: str, seed: int, cfg: SweepConfig) -> SB3DQNConfig:
    """The agent config of one run: the setting's overrides, the budget, the users and the seed."""
    overrides = {} if name == "defaults" else SETTINGS[name]
    return dataclasses.replace(SB3DQNConfig(), **overrides, total_timesteps=cfg.steps, n_envs=cfg.n_envs,
                               seed=seed, torch_threads=1)


def run_one(name: str, seed: int, cfg: SweepConfig) -> dict[str, Any]:
    """Train one setting with one seed and evaluate it on the validation users; a JSON-ready record."""
    config = setting_config(name, seed, cfg)
    eval_env = gym.make_vec(ENV_ID, num_envs=cfg.eval_users, vectorization_mode="vector_entry_point")
    agent = SB3DQN(eval_env, config=config)
    result = agent.train(progress=False)
    stats = evaluate(agent, eval_env, seed=EVAL_SEED + seed)
    interval = bootstrap_interval(stats.returns, seed=seed)
    return {"setting": name, "seed": seed, "eval_seed": EVAL_SEED + seed, "config": dataclasses.asdict(config),
            "steps": result.steps,
            "return": float(stats.returns.mean()), "return_ci": [interval.low, interval.high],
            "session_length": float(stats.lengths.mean()), "train_seconds": result.wall_time,
            "steps_per_second": result.steps_per_second, "training_episodes": int(result.episode_returns.size),
            "train_env": type(agent.model.get_env().venv).__name__}


def summarise(records: list[dict[str, Any]], cfg: SweepConfig) -> list[dict[str, Any]]:
    """One row per setting (in sweep order): returns per seed, their mean, and training speed."""
    rows = []
    for name in cfg.settings:
        runs = sorted((r for r in records if r["setting"] == name), key=lambda r: r["seed"])
        if runs:
            rows.append({"setting": name, "changes": describe(name), "seeds": [r["seed"] for r in runs],
                         "returns": [r["return"] for r in runs],
                         "mean_return": float(np.mean([r["return"] for r in runs])),
                         "session_length": float(np.mean([r["session_length"] for r in runs])),
                         "train_seconds": float(np.mean([r["train_seconds"] for r in runs])),
                         "steps_per_second": float(np.median([r["steps_per_second"] for r in runs]))})
    return rows


def describe(name: str) -> str:
    """What a setting changes relative to the centre."""
    if name == "defaults":
        return "SB3DQNConfig() defaults"
    diffs = [f"{k}={v}" for k, v in SETTINGS[name].items() if CENTRE.get(k) != v]
    return ", ".join(diffs) or "-"


def markdown(rows: list[dict[str, Any]], cfg: SweepConfig) -> str:
    """The results table; the best mean return in bold."""
    best = max((r["mean_return"] for r in rows), default=float("nan"))
    lines = [f"SB3 DQN on `{ENV_ID}`, {cfg.steps:,} user-steps on {cfg.n_envs} training users at a time; "
             f"validation return = mean total reward of {cfg.eval_users} validation users (seed {EVAL_SEED:,} + seed).",
             "", f"Centre: {', '.join(f'{k}={v}' for k, v in CENTRE.items())}.", "",
             "| setting | change from the centre | return per seed | mean return | steps per session "
             "| train s | user-steps/s |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        per_seed = ", ".join(f"{s}: {v:.1f}" for s, v in zip(r["seeds"], r["returns"]))
        mean = f"**{r['mean_return']:.1f}**" if r["mean_return"] == best else f"{r['mean_return']:.1f}"
        lines.append(f"| {r['setting']} | {r['changes']} | {per_seed} | {mean} | {r['session_length']:.1f} "
                     f"| {r['train_seconds']:.0f} | {r['steps_per_second']:,.0f} |")
    return "\n".join(lines) + "\n"


def run(cfg: SweepConfig, progress: bool | None = None) -> list[dict[str, Any]]:
    """Run every (setting, seed) not already done with the same config; write and return the summary."""
    out = Path(cfg.out)
    runs_dir = out / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    todo = [(name, seed) for name in cfg.settings for seed in cfg.seeds]
    records: list[dict[str, Any]] = []
    bar = tqdm(todo, desc="sb3 sweep", unit="run", disable=not progress_enabled(progress))
    for name, seed in bar:
        bar.set_postfix(setting=name, seed=seed, refresh=True)
        path = runs_dir / f"{name}_s{seed}.json"
        wanted = dataclasses.asdict(setting_config(name, seed, cfg))
        record = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
        if record is None or record.get("config") != wanted or record.get("eval_seed") != EVAL_SEED + seed:
            record = run_one(name, seed, cfg)
            atomic_write_text(path, json.dumps(record, indent=2))
        records.append(record)
        rows = summarise(records, cfg)
        atomic_write_text(out / "results.json", json.dumps({"config": dataclasses.asdict(cfg), "centre": CENTRE,
                                                            "rows": rows, "runs": records}, indent=2))
        atomic_write_text(out / "results.md", markdown(rows, cfg))
    bar.close()
    return summarise(records, cfg)


def parse_args(argv: list[str] | None = None) -> SweepConfig:
    defaults = SweepConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=defaults.steps, help="user-steps each run trains for")
    parser.add_argument("--seeds", default=",".join(map(str, defaults.seeds)), help="comma-separated seeds")
    parser.add_argument("--settings", default=",".join(defaults.settings),
                        help=f"comma-separated settings: {', '.join((*SETTINGS, *EXTRA))}")
    parser.add_argument("--n-envs", type=int, default=defaults.n_envs, help="training users stepped together")
    parser.add_argument("--eval-users", type=int, default=defaults.eval_users, help="validation users per seed")
    parser.add_argument("--out", default=defaults.out, help="folder for runs/, results.json and results.md")
    args = parser.parse_args(argv)
    try:
        seeds = tuple(int(s) for s in args.seeds.split(",") if s)
    except ValueError:
        parser.error(f"--seeds={args.seeds!r}: expected comma-separated integers")
    try:
        return SweepConfig(steps=args.steps, seeds=seeds, settings=tuple(s for s in args.settings.split(",") if s),
                           n_envs=args.n_envs, eval_users=args.eval_users, out=args.out)
    except ValueError as err:
        parser.error(str(err))
        raise  # unreachable: parser.error exits


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    start = time.perf_counter()
    rows = run(cfg)
    print(markdown(rows, cfg))
    best = max(rows, key=lambda r: r["mean_return"])
    print(f"best: {best['setting']} ({best['changes']}), mean validation return {best['mean_return']:.1f}; "
          f"wall {time.perf_counter() - start:.0f} s; wrote {cfg.out}/results.md and results.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
