"""Speed of the simulator: single-env steps per second and vector-env user-steps per second.

What is measured:

* single: ``gymnasium.make(env_id)`` (with the wrappers registration adds: TimeLimit,
  OrderEnforcing, PassiveEnvChecker), stepped with random actions drawn beforehand from a seeded
  generator; episode ends are followed by ``reset()`` inside the timed loop, so resets count.
  Reported as environment steps per second.
* vector: ``gymnasium.make_vec(env_id, num_envs=B, vectorization_mode="vector_entry_point")`` for
  each B, random actions drawn beforehand, autoreset included. Reported as user-steps per second
  (B x steps / seconds).

Each figure is the median over ``--repeats`` timed runs that follow one untimed warm-up run.
Memory is measured in a separate, untimed run per B (tracing slows allocation): the peak of
``tracemalloc`` (numpy reports its array buffers to it) over making the env, resetting it and
stepping it, i.e. the env's footprint plus the largest set of live temporaries of one step.

    python -m benchmarks.speed [--out results/speed.json] [--repeats 5] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import gymnasium as gym
import numpy as np

import recsim_env  # noqa: F401  (registers the env ids)
from recsim_env.io import atomic_write_text


@dataclass(frozen=True)
class SpeedConfig:
    """Command-line options of the speed benchmark."""

    env_id: str = "recsim_env/InterestDrift-v0"
    out: str = "results/speed.json"
    repeats: int = 5
    seed: int = 0
    single_steps: int = 20_000
    batch_sizes: tuple[int, ...] = (1, 64, 1024, 4096, 16384)
    #: Each timed vector run steps about this many users in all, within the step bounds below.
    vector_user_steps: int = 1_000_000
    min_vector_steps: int = 20
    max_vector_steps: int = 5_000
    memory_steps: int = 5


#: ``--quick``: tiny sizes, so that a test runs the whole script in a couple of seconds.
QUICK = {"repeats": 2, "single_steps": 300, "batch_sizes": (1, 16), "vector_user_steps": 400,
         "min_vector_steps": 5, "max_vector_steps": 50, "memory_steps": 2}


def _actions(space: gym.Space, n: int, rng: np.random.Generator) -> list[Any]:
    """``n`` random actions for ``space``, drawn up front so that drawing is not timed."""
    if isinstance(space, gym.spaces.Discrete):
        return rng.integers(0, space.n, size=n).tolist()
    if isinstance(space, gym.spaces.MultiDiscrete):
        return list(rng.integers(0, space.nvec, size=(n, *space.nvec.shape)))
    raise TypeError(f"no random actions for {space}")


def _median_rate(run: Callable[[], float], repeats: int) -> tuple[float, list[float]]:
    """One warm-up call, then the median of ``repeats`` calls of ``run`` (each returns a rate)."""
    run()
    rates = [run() for _ in range(repeats)]
    return statistics.median(rates), rates


def single_env_rate(cfg: SpeedConfig) -> dict[str, Any]:
    """Steps per second of one env made with ``gymnasium.make``, resets included."""
    env = gym.make(cfg.env_id)
    actions = _actions(env.action_space, cfg.single_steps, np.random.default_rng(cfg.seed))
    env.reset(seed=cfg.seed)

    def run() -> float:
        step, reset, episodes = env.step, env.reset, 0
        start = time.perf_counter()
        for action in actions:
            _, _, terminated, truncated, _ = step(action)
            if terminated or truncated:
                reset()
                episodes += 1
        return len(actions) / (time.perf_counter() - start)

    median, rates = _median_rate(run, cfg.repeats)
    env.close()
    return {"env_id": cfg.env_id, "steps": cfg.single_steps, "steps_per_s": median, "runs": rates}


def _make_vec(cfg: SpeedConfig, num_envs: int) -> gym.vector.VectorEnv:
    return gym.make_vec(cfg.env_id, num_envs=num_envs, vectorization_mode="vector_entry_point")


def vector_steps(cfg: SpeedConfig, num_envs: int) -> int:
    """Steps of one timed run for ``num_envs`` users."""
    return int(np.clip(cfg.vector_user_steps // num_envs, cfg.min_vector_steps, cfg.max_vector_steps))


def vector_env_rate(cfg: SpeedConfig, num_envs: int) -> dict[str, Any]:
    """User-steps per second of the native vector env with ``num_envs`` users, autoreset included."""
    env = _make_vec(cfg, num_envs)
    steps = vector_steps(cfg, num_envs)
    actions = _actions(env.action_space, steps, np.random.default_rng(cfg.seed))
    env.reset(seed=cfg.seed)

    def run() -> float:
        step = env.step
        start = time.perf_counter()
        for action in actions:
            step(action)
        return num_envs * steps / (time.perf_counter() - start)

    median, rates = _median_rate(run, cfg.repeats)
    env.close()
    return {"num_envs": num_envs, "steps": steps, "user_steps_per_s": median, "runs": rates,
            "peak_memory_bytes": vector_env_peak_memory(cfg, num_envs)}


def vector_env_peak_memory(cfg: SpeedConfig, num_envs: int) -> int:
    """tracemalloc peak over making, resetting and stepping the vector env (an untimed run)."""
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    env = _make_vec(cfg, num_envs)
    env.reset(seed=cfg.seed)
    for action in _actions(env.action_space, cfg.memory_steps, np.random.default_rng(cfg.seed)):
        env.step(action)
    peak = tracemalloc.get_traced_memory()[1] - base
    env.close()
    if not was_tracing:
        tracemalloc.stop()
    return int(peak)


def machine_info() -> dict[str, Any]:
    return {"cpu_count": os.cpu_count(), "python": sys.version.split()[0], "numpy": np.__version__,
            "gymnasium": gym.__version__, "platform": platform.platform(), "processor": platform.processor()}


def table(report: dict[str, Any]) -> str:
    single = report["single"]
    lines = [f"single env ({single['env_id']}, gymnasium.make, resets included): "
             f"{single['steps_per_s']:,.0f} steps/s (median of {len(single['runs'])})", "",
             "| num_envs | steps per run | user-steps/s (median) | min | max | peak memory (MiB) |",
             "|---:|---:|---:|---:|---:|---:|"]
    for row in report["vector"]:
        lines.append(f"| {row['num_envs']} | {row['steps']} | {row['user_steps_per_s']:,.0f} | "
                     f"{min(row['runs']):,.0f} | {max(row['runs']):,.0f} | "
                     f"{row['peak_memory_bytes'] / 2**20:.1f} |")
    best = report["best_vector"]
    lines.append(f"\nbest vector batch: num_envs={best['num_envs']}, {best['user_steps_per_s']:,.0f} user-steps/s")
    return "\n".join(lines)


def run_benchmark(cfg: SpeedConfig) -> dict[str, Any]:
    vector = [vector_env_rate(cfg, b) for b in cfg.batch_sizes]
    best = max(vector, key=lambda row: row["user_steps_per_s"])
    return {
        "config": asdict(cfg),
        "machine": machine_info(),
        "memory": "tracemalloc peak in bytes over make_vec + reset + memory_steps steps, untimed run",
        "single": single_env_rate(cfg),
        "vector": vector,
        "best_vector": {"num_envs": best["num_envs"], "user_steps_per_s": best["user_steps_per_s"]},
    }


def parse_args(argv: list[str] | None) -> SpeedConfig:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = SpeedConfig()
    parser.add_argument("--env-id", default=defaults.env_id)
    parser.add_argument("--out", default=defaults.out, help="JSON file for the results")
    parser.add_argument("--repeats", type=int, default=defaults.repeats, help="timed runs per figure")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of the env and of the actions")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats={args.repeats} is out of range: allowed >= 1")
    cfg = SpeedConfig(env_id=args.env_id, out=args.out, repeats=args.repeats, seed=args.seed)
    return replace(cfg, **{**QUICK, "repeats": min(args.repeats, QUICK["repeats"])}) if args.quick else cfg


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    report = run_benchmark(cfg)
    print(table(report))
    atomic_write_text(cfg.out, json.dumps(report, indent=2))
    print(f"\nwrote {cfg.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
