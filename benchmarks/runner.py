"""One benchmark run: build (and train) one agent, then evaluate it on held-out simulated users.

:func:`execute` is a pure function of its :class:`~benchmarks.suites.RunSpec`: every random draw
comes from seeds in the spec and torch uses one thread, so a local process and a Ray worker return
the same numbers. It returns plain JSON-ready data; the caller stores it.

Training users and held-out users never share a seed: the DQN and SB3 derive their env seeds
from the run seed, Q-learning resets with a stream derived from the run seed, the training log is
simulated from ``10_000 + seed``, the offline agents' propensity log from ``3_000_000 + seed``, every
agent of a seed is evaluated on the users of ``1_000_000 + seed``, and scored for accuracy on the
logged steps of the users of ``2_000_000 + seed``.
"""

from __future__ import annotations

import dataclasses
import importlib
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
from agents.log_accuracy import click_prediction, log_accuracy
from benchmarks.suites import RunSpec
from recsim_env.logs.propensity import PropensityLog, collect_propensity_log
from recsim_env.logs.steps import LoggedSteps, collect_steps

#: Learning-curve points kept per run (training episodes are binned on a log scale).
CURVE_POINTS = 24


def _vector_env(spec: RunSpec, users: int) -> gym.vector.VectorEnv:
    return gym.make_vec(spec.env_id, num_envs=users, vectorization_mode="vector_entry_point", **spec.env_kwargs())


def learning_curve(episode_returns: np.ndarray, points: int = CURVE_POINTS) -> dict[str, list[float]]:
    """Mean training-episode return in log-spaced bins of the episode count (x: the bin's last episode).

    Every trainer passes its episodes in the order they began (``curve_returns``): with many users in
    parallel the short episodes end first, and a curve in order of ending would start low for that alone.
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
    budget = spec.budget
    train_env = _vector_env(spec, budget.train_users)
    agent = agents.make("qlearning", train_env, total_steps=budget.train_steps, seed=spec.seed)
    log = agent.train(train_env, progress=False)
    if work_dir is not None:
        agent.save(work_dir / "qtable.npz")
    return agent, {**learning_curve(log.curve_returns), "train_steps": budget.train_steps}


def _dqn(spec: RunSpec, env: gym.vector.VectorEnv, work_dir: Path | None) -> tuple[Recommender, dict]:
    """The project's DQN, its myopic twin, or SlateQ (the same trainer and config, on slates)."""
    from agents.dqn import DQNConfig, train
    from agents.slateq import train as train_slateq

    budget = spec.budget
    config = DQNConfig(total_steps=budget.train_steps, seed=spec.seed,
                       learning_starts=min(20_000, budget.train_steps // 4), checkpoint_replay=False,
                       **spec.overrides())
    train_env = _vector_env(spec, budget.train_users)
    if spec.agent == "slateq":
        result = train_slateq(train_env, config, out_dir=work_dir, progress=False, resume=False)
    else:
        result = train(train_env, config, out_dir=work_dir, myopic=spec.agent == "dqn_myopic", progress=False,
                       resume=False)
    return result.agent, {**learning_curve(result.curve_returns), "train_steps": result.steps}


def _sb3(spec: RunSpec, env: gym.vector.VectorEnv, work_dir: Path | None) -> tuple[Recommender, dict]:
    """SB3's DQN (or PPO) on the same users in parallel and user-step budget as our DQN (hyperparameters:
    the config's defaults; DQN's chosen by ``python -m benchmarks.sb3_sweep``)."""
    budget = spec.budget
    extra = {"learning_starts": min(20_000, budget.train_steps // 4)} if spec.agent == "sb3_dqn" else \
        {"batch_size": min(512, budget.train_users * 16)}  # PPO: a minibatch fits in one rollout
    agent = agents.make(spec.agent, env, total_timesteps=budget.train_steps, n_envs=budget.train_users,
                        seed=spec.seed, **extra)
    result = agent.train(out_dir=work_dir, progress=False)
    if work_dir is not None:
        agent.save(work_dir / "model.zip")
    return agent, {**learning_curve(result.curve_returns), "train_steps": result.steps}


def _sequential(spec: RunSpec, env: gym.vector.VectorEnv, work_dir: Path | None) -> tuple[Recommender, dict]:
    """Fit on a simulated log of other users, as many user-steps long as the other learners' budget."""
    from agents.sequential.checkpoint import fit
    from agents.sequential.click import ClickHeadConfig, fit_click_head
    from agents.sequential.policy import SequentialPolicy
    from agents.sequential.training import TrainConfig
    from recsim_env.logs import collect_log, leave_last_out

    budget = spec.budget
    log_env = _vector_env(spec, min(budget.train_steps, 1000))
    log = collect_log(log_env, agents.make(budget.log_policy, log_env), None, seed=10_000 + spec.seed,
                      policy_name=budget.log_policy, progress=False, n_steps=budget.train_steps)
    split = leave_last_out(log.to_sequences())
    train_config = TrainConfig(**{**SEQUENTIAL_TRAINING, "epochs": budget.seq_epochs, "seed": spec.seed,
                                  "exclude_history": False})
    trained, _ = fit(spec.agent, split.train, split.valid, SEQUENTIAL_MODELS.get(spec.agent), train_config,
                     checkpoint=None if work_dir is None else work_dir / "model.pt", progress=False)
    # on a seeded sample of the same log's impressions (a few hundred thousand add nothing but time)
    head = fit_click_head(trained, log, ClickHeadConfig(seed=spec.seed, max_impressions=CLICK_HEAD_IMPRESSIONS))
    return SequentialPolicy(env, trained, click_head=head), {"train_steps": len(log)}


def propensity_log(spec: RunSpec) -> PropensityLog:
    """The offline agents' training log: whole episodes of other users, at most ``budget.train_steps`` steps.

    The behaviour is ``budget.log_policy`` made epsilon-greedy with ``budget.log_epsilon`` (exact
    propensities), on the users of ``spec.offline_log_seed``. Like the next-item models' log it holds
    the first users, in the order they started, whose episodes add up to at most the budget: the
    episode that would cross it is dropped whole, with every later one. A log of more users has the
    log of fewer as its prefix (same env rows, same draws), so a pilot of ``n / 200`` users gives the
    mean episode length and the log is then collected for 10% more users than that predicts (again
    if it still falls short; the env is reset each time, the behaviour rebuilt with its seed): about
    1.1 logs' worth of memory at the peak, not the several of a blind overestimate.

    Raises:
        ValueError: the budget is shorter than the first user's episode (the log would be empty).
    """
    from agents.behaviour import EpsilonGreedy

    budget = spec.budget
    n_steps = budget.train_steps
    env = _vector_env(spec, min(n_steps, 1000))
    # the epsilon draws and (for random) the reference's own: two streams of the log's seed, apart from its users'
    policy_seed, reference_seed = (int(s) for s in np.random.SeedSequence([spec.offline_log_seed, 1]).generate_state(2))
    users = max(1, min(n_steps, n_steps // 200))
    while True:
        reference = agents.make(budget.log_policy, env, **({"seed": reference_seed} if budget.log_policy == "random"
                                                            else {}))
        behaviour = EpsilonGreedy(reference, budget.log_epsilon, seed=policy_seed)
        log = collect_propensity_log(env, behaviour, users, seed=spec.offline_log_seed,
                                     policy_name=f"epsilon_greedy({budget.log_policy}, {budget.log_epsilon})")
        total = np.cumsum(np.bincount(log.user, minlength=users))
        if total[-1] > n_steps or users == n_steps:
            break
        users = min(n_steps, int(1.1 * users * n_steps / max(int(total[-1]), 1)) + 1)
        del log  # before the next one is simulated
    keep = int(np.searchsorted(total, n_steps, side="right"))
    if keep == 0:
        raise ValueError(f"Budget.train_steps={n_steps} is shorter than the first logged episode ({total[0]} steps): "
                         f"the offline agents' log of whole episodes would be empty")
    rows = int(total[keep - 1])  # the log is sorted by user: its first rows, as views
    columns = {f.name: getattr(log, f.name) for f in dataclasses.fields(log) if f.name not in ("metadata", "targets")}
    return PropensityLog(**{k: None if v is None else v[:rows] for k, v in columns.items()},
                         metadata={**log.metadata, "n_users": keep, "n_steps_budget": n_steps})


def _offline(spec: RunSpec, env: gym.vector.VectorEnv, work_dir: Path | None) -> tuple[Recommender, dict]:
    """CQL, BCQ or behaviour cloning, trained on :func:`propensity_log` alone (no env is stepped)."""
    from agents.offline import OfflineConfig, train

    budget = spec.budget
    # they bootstrap from the next row's obs: the log's own next_obs would only double its memory
    log = dataclasses.replace(propensity_log(spec), next_obs=None)
    config = OfflineConfig(kind=spec.agent, updates=budget.offline_updates, seed=spec.seed, **spec.overrides())
    agent = train(env, log, config, progress=False).agent
    if work_dir is not None:
        agent.save(work_dir / "model.pt")
    return agent, {"train_steps": len(log)}


#: Impressions the next-item models' click head is fitted on.
CLICK_HEAD_IMPRESSIONS = 150_000
#: Training settings of the sequential models on simulated logs.
SEQUENTIAL_TRAINING: dict[str, Any] = {"lr": 1e-2, "batch_size": 256, "patience": 3}
SEQUENTIAL_MODELS: dict[str, dict[str, Any]] = {
    "lstm": {"cell": "lstm", "embedding_dim": 64, "hidden_dim": 128, "dropout": 0.3},
    "gcn": {"embedding_dim": 64, "steps": 1, "dropout": 0.3},
    "transformer": {"embedding_dim": 64, "num_blocks": 2, "dropout": 0.3},
}

BUILDERS: dict[str, Callable[[RunSpec, gym.vector.VectorEnv, Path | None], tuple[Recommender, dict]]] = {
    "random": _fixed, "myopic": _fixed, "heuristic": _fixed, "planner": _fixed, "qlearning": _qlearning,
    "dqn": _dqn, "dqn_myopic": _dqn, "slateq": _dqn, "sb3_dqn": _sb3, "sb3_ppo": _sb3, "popularity": _sequential,
    "lstm": _sequential, "gcn": _sequential, "transformer": _sequential, "dqn_gru": _dqn, "dqn_transformer": _dqn, "cql": _offline,
    "bcq": _offline, "bc": _offline,
}


def accuracy_log(spec: RunSpec) -> LoggedSteps:
    """The held-out users' logged steps that every agent of ``spec``'s seed is scored on."""
    budget = spec.budget
    env = _vector_env(spec, budget.accuracy_users)
    policy = agents.make(budget.accuracy_policy, env, **({"seed": spec.accuracy_seed}
                                                         if budget.accuracy_policy == "random" else {}))
    return collect_steps(env, policy, seed=spec.accuracy_seed, policy_name=budget.accuracy_policy)


def _accuracy(agent: Recommender, steps: LoggedSteps) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Catalogue-wide log accuracy and click prediction, where the agent can rank / predict (else absent)."""
    metrics: dict[str, float] = {}
    per_user: dict[str, list[float]] = {}
    try:
        result = log_accuracy(agent, steps, n_users=steps.metadata.get("n_users"))
    except NotImplementedError:
        pass
    else:
        metrics.update({f"log_{name}": value for name, value in result.metrics.items()})
        per_user.update({f"log_{name}": result.per_user_sums[name].tolist() for name in result.metrics})
        per_user["log_cases"] = result.per_user_cases.tolist()
    try:
        clicks = click_prediction(agent, steps)
    except NotImplementedError:
        pass
    else:
        metrics.update({f"click_{name}": value for name, value in clicks.items()})
    return metrics, per_user


def execute(spec: RunSpec, work_dir: str | Path | None = None) -> dict[str, Any]:
    """Train (if the agent learns) and evaluate one run; return its metrics, curve and per-user results.

    ``work_dir`` receives training logs and the trained weights (nothing is written without it).
    """
    import torch

    torch.set_num_threads(1)
    for module in spec.choice.plugins:  # a worker process registers the user's agents itself
        importlib.import_module(module)
    work = None if work_dir is None else Path(work_dir)
    if work is not None:
        work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    env = _vector_env(spec, spec.budget.eval_users)
    agent, extra = BUILDERS.get(spec.agent, _fixed)(spec, env, work)  # a plugin's agent: built as registered
    trained = time.perf_counter()
    stats = evaluate(agent, env, seed=spec.eval_seed, max_steps=spec.budget.max_steps, accuracy=True)
    evaluated = time.perf_counter()
    rollout = stats.accuracy()
    accuracy, accuracy_per_user = _accuracy(agent, accuracy_log(spec))
    metrics = {
        "return": float(stats.returns.mean()),
        "session_length": float((stats.lengths / stats.sessions).mean()),
        "sessions": float(stats.sessions.mean()),
        "click_rate": float(stats.clicks.sum() / stats.lengths.sum()),
        "rollout_HR@1": rollout["HR@1"],
        "rollout_NDCG@10": rollout["NDCG"],
        **accuracy,
        "eval_seconds": evaluated - trained,
    }
    if "train_steps" in extra:
        metrics.update({"train_steps": float(extra["train_steps"]), "train_seconds": trained - start})
    return {
        "metrics": metrics,
        "curve": {k: v for k, v in extra.items() if k in ("episodes", "return")},
        "per_user": {"return": stats.returns.tolist(), "length": stats.lengths.tolist(),
                     "sessions": stats.sessions.tolist(), **accuracy_per_user},
        "seconds": time.perf_counter() - start,
    }
