"""One benchmark run: build (and train) one agent, then evaluate it on held-out simulated users.

:func:`execute` is a pure function of its :class:`~benchmarks.suites.RunSpec`: every random draw
comes from seeds in the spec and torch uses one thread, so a local process and a Ray worker return
the same numbers. It returns plain JSON-ready data; the caller stores it.

Training users and held-out users never share a seed: the DQN and SB3 derive their env seeds
from the run seed, Q-learning resets with the run seed, the log is simulated from ``10_000 + seed``,
and every agent of a seed is evaluated on the users of ``1_000_000 + seed``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import agents
import recsim_env  # noqa: F401  (registers the env ids)
from agents.base import Recommender
from agents.evaluation import evaluate
from benchmarks.suites import RunSpec

#: Learning-curve points kept per run (training episodes are binned on a log scale).
CURVE_POINTS = 24


def _vector_env(spec: RunSpec, users: int) -> gym.vector.VectorEnv:
    return gym.make_vec(spec.env_id, num_envs=users, vectorization_mode="vector_entry_point")


def learning_curve(episode_returns: np.ndarray, points: int = CURVE_POINTS) -> dict[str, list[float]]:
    """Mean training-episode return in log-spaced bins of the episode count (x: the bin's last episode).

    Vector-env trainers pass their episodes in the order they began (``curve_returns``); SB3 trains
    one user at a time, so its order of ending is the order of beginning.
    """
    returns = np.asarray(episode_returns, np.float64)
    if returns.size == 0:
        return {"episodes": [], "return": []}
    edges = np.unique(np.geomspace(1, returns.size, min(points, returns.size) + 1).astype(np.int64))
    edges[0] = 0
    means = [float(returns[a:b].mean()) for a, b in zip(edges[:-1], edges[1:])]
    return {"episodes": [float(b) for b in edges[1:]], "return": means}


def _fixed(spec: RunSpec, env: gym.vector.VectorEnv, work_dir: Path | None) -> tuple[Recommender, dict]:
    if spec.agent == "random":
        return agents.make("random", env, seed=spec.seed), {}
    return agents.make(spec.agent, env), {}


def _qlearning(spec: RunSpec, env: gym.vector.VectorEnv, work_dir: Path | None) -> tuple[Recommender, dict]:
    train_env = _vector_env(spec, 256)
    agent = agents.make("qlearning", train_env, episodes=spec.budget.qlearning_episodes, seed=spec.seed)
    log = agent.train(train_env, progress=False)
    if work_dir is not None:
        agent.save(work_dir / "qtable.npz")
    return agent, learning_curve(log.curve_returns)


def _dqn(spec: RunSpec, env: gym.vector.VectorEnv, work_dir: Path | None) -> tuple[Recommender, dict]:
    from agents.dqn import DQNConfig, train

    budget = spec.budget
    config = DQNConfig(total_steps=budget.dqn_steps, seed=spec.seed, learning_starts=min(20_000, budget.dqn_steps // 4),
                       checkpoint_replay=False, **spec.overrides())
    result = train(_vector_env(spec, budget.dqn_users), config, out_dir=work_dir, myopic=spec.agent == "dqn_myopic",
                   progress=False, resume=False)
    return result.agent, learning_curve(result.curve_returns)


def _sb3(spec: RunSpec, env: gym.vector.VectorEnv, work_dir: Path | None) -> tuple[Recommender, dict]:
    steps = spec.budget.sb3_steps
    agent = agents.make("sb3_dqn", env, total_timesteps=steps, learning_starts=min(5_000, steps // 4), seed=spec.seed)
    result = agent.train(out_dir=work_dir, progress=False)
    if work_dir is not None:
        agent.save(work_dir / "model.zip")
    return agent, learning_curve(result.episode_returns)


def _sequential(spec: RunSpec, env: gym.vector.VectorEnv, work_dir: Path | None) -> tuple[Recommender, dict]:
    """Fit on a simulated log of other users; also measure next-item accuracy on the log's held-out users."""
    from agents.sequential.checkpoint import fit
    from agents.sequential.policy import SequentialPolicy
    from agents.sequential.training import TrainConfig, rank_cases
    from recsim_env.logs import collect_log, holdout_split
    from recsim_env.metrics import ranking_metrics

    budget = spec.budget
    log_env = _vector_env(spec, min(budget.log_users, 1000))
    log = collect_log(log_env, agents.make(budget.log_policy, log_env), budget.log_users, seed=10_000 + spec.seed,
                      policy_name=budget.log_policy, progress=False)
    split = holdout_split(log.to_sequences(), budget.holdout, np.random.default_rng(spec.seed))
    train_config = TrainConfig(**{**SEQUENTIAL_TRAINING, "epochs": budget.seq_epochs, "seed": spec.seed,
                                  "exclude_history": False})
    trained, _ = fit(spec.agent, split.train, split.valid, SEQUENTIAL_MODELS.get(spec.agent), train_config,
                     checkpoint=None if work_dir is None else work_dir / "model.pt", progress=False)
    metrics = ranking_metrics(rank_cases(trained.model, split.test, train_config.max_len, exclude_history=False), (10,))
    return SequentialPolicy(env, trained), {"log_metrics": {"log_HR@10": metrics["HR@10"],
                                                            "log_NDCG@10": metrics["NDCG@10"]}}


#: Training settings of the sequential models on simulated logs.
SEQUENTIAL_TRAINING: dict[str, Any] = {"lr": 1e-2, "batch_size": 256, "patience": 3}
SEQUENTIAL_MODELS: dict[str, dict[str, Any]] = {
    "lstm": {"cell": "lstm", "embedding_dim": 64, "hidden_dim": 128, "dropout": 0.3},
    "gcn": {"embedding_dim": 64, "steps": 1, "dropout": 0.3},
}

BUILDERS: dict[str, Callable[[RunSpec, gym.vector.VectorEnv, Path | None], tuple[Recommender, dict]]] = {
    "random": _fixed, "myopic": _fixed, "heuristic": _fixed, "qlearning": _qlearning, "dqn": _dqn,
    "dqn_myopic": _dqn, "sb3_dqn": _sb3, "popularity": _sequential, "lstm": _sequential, "gcn": _sequential,
}


def execute(spec: RunSpec, work_dir: str | Path | None = None) -> dict[str, Any]:
    """Train (if the agent learns) and evaluate one run; return its metrics, curve and per-user results.

    ``work_dir`` receives training logs and the trained weights (nothing is written without it).
    """
    import torch

    torch.set_num_threads(1)
    work = None if work_dir is None else Path(work_dir)
    if work is not None:
        work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    env = _vector_env(spec, spec.budget.eval_users)
    agent, extra = BUILDERS[spec.agent](spec, env, work)
    trained = time.perf_counter()
    stats = evaluate(agent, env, seed=spec.eval_seed, max_steps=spec.budget.max_steps, accuracy=True)
    accuracy = stats.accuracy()
    metrics = {
        "return": float(stats.returns.mean()),
        "session_length": float((stats.lengths / stats.sessions).mean()),
        "sessions": float(stats.sessions.mean()),
        "click_rate": float(stats.clicks.sum() / stats.lengths.sum()),
        "HR@1": accuracy["HR@1"],
        "NDCG@10": accuracy["NDCG"],
        **extra.get("log_metrics", {}),
        "train_seconds": trained - start,
    }
    return {
        "metrics": metrics,
        "curve": {k: v for k, v in extra.items() if k in ("episodes", "return")},
        "per_user": {"return": stats.returns.tolist(), "length": stats.lengths.tolist(),
                     "sessions": stats.sessions.tolist()},
        "seconds": time.perf_counter() - start,
    }
