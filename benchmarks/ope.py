"""Every off-policy estimator scored against the simulator's truth, on several logs and target policies.

    python -m benchmarks.ope --preset default --behaviour myopic --epsilon 0.3 --users N --logs L
        --targets random,myopic,heuristic,dqn,dqn_myopic,planner --out DIR [--seed S] [--truth-users M]
        [--train-steps T] [--log PATH]

The simulator knows what an off-policy estimate is trying to guess: each target's value is measured
online on ``M`` fresh users (seeds no log uses). ``L`` independent logs of ``N`` users each come from
the epsilon-greedy version of the behaviour agent; while logging, every target acts on the same
observation and info the behaviour saw, so its probability of every candidate is known at every
logged step (the oracles and the planner read the true user state, which no log could give them
afterwards). On every (log, target): IS, WIS, PDIS, WPDIS without a model, and DM, DR, WDR with the
action values of network FQE fitted on that log for that target (``agents.fqe``). The report scores
each estimator by its relative error against the truth, whether its interval covers the truth, and
how well it ranks the targets (Spearman), against the issue's bar: Spearman >= 0.9 and a median
relative error <= 15%.

``dqn`` and ``dqn_myopic`` are trained first on ``T`` user-steps. Trained weights, the truth of each
target and each (log, target)'s estimates are kept in ``DIR/work`` (atomic writes), so a rerun of the
same command resumes where it stopped. ``--log PATH`` evaluates one existing propensity log instead;
targets not recorded in it must be computable from it (``FROM_LOG``). Writes ``DIR/results.json``,
``DIR/results.md`` (its sentences computed from the numbers) and three plots (PNG and SVG).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm import tqdm

import agents
import recsim_env  # noqa: F401  (registers the env ids)
from agents.base import ACTIVE, Recommender
from agents.behaviour import EpsilonGreedy
from agents.ope import EstimatorConfig, _Episodes, estimate_all
from benchmarks.results import write_results
from benchmarks.stats import bootstrap_interval
from recsim_env.config import PRESETS, Validated, bounded
from recsim_env.io import atomic_write_text, progress_enabled
from recsim_env.logs.propensity import PropensityLog, collect_propensity_log, read_propensity_log
from recsim_env.logs.simulated import _jsonable

#: Every target (and behaviour agent) the command knows.
TARGETS = ("random", "myopic", "heuristic", "dqn", "dqn_myopic", "planner")
#: Targets trained before anything else.
LEARNERS = ("dqn", "dqn_myopic")
#: Targets whose probabilities can be computed from a log that did not record them: the networks read
#: the observation, the oracles the logged true interest, satiation and budget; random is uniform.
FROM_LOG = ("random", "myopic", "heuristic", "dqn", "dqn_myopic")
#: Presets with one item per step (propensities are per candidate) and their env ids.
PRESET_ENVS = {"default": "recsim_env/InterestDrift-v0", "cross_session": "recsim_env/CrossSessionDrift-v0"}
#: The issue's bar for an estimator that can be trusted to compare policies.
BAR_SPEARMAN, BAR_RELATIVE_ERROR = 0.9, 0.15
#: A median relative error at or above this is a failure, named as such in the report: an estimate off
#: by half its target's value says nothing about it (IS whose weights vanish sits at about 100%).
FAILURE = 0.5
#: A target earning at least this share of its true value beyond the longest logged episode is named.
SUPPORT_SHARE = 0.05
#: Steps kept of the truncated-horizon curves.
HORIZON_STEPS = 100
#: Estimators that also run with clipped weights when ``max_weight`` is set, reported as ``<name>_clip``.
CLIPPED = ("is", "wis", "pdis", "wpdis", "dr", "wdr")
#: Rows scored at once when computing a target's probabilities or FQE's q from a log.
CHUNK = 8192


@dataclass(frozen=True)
class OpeBenchmarkConfig(Validated):
    """Command-line options, validated on construction."""

    out: str
    preset: str = "default"
    behaviour: str = "myopic"
    epsilon: float = bounded(0.3, gt=0.0, le=1.0, doc="behaviour's probability of a uniformly random candidate")
    users: int = bounded(10_000, ge=2, le=10_000_000, doc="users per log, one episode each")
    logs: int = bounded(5, ge=1, le=1000, doc="independent logs")
    targets: tuple[str, ...] = TARGETS
    seed: int = bounded(0, ge=0, le=1_000_000, doc="seed every other seed is derived from")
    truth_users: int = bounded(5000, ge=2, le=10_000_000, doc="fresh users each target's truth is measured on")
    train_steps: int = bounded(200_000, ge=100, le=10**10, doc="user-steps dqn and dqn_myopic train for")
    log: str | None = None
    num_envs: int = bounded(1000, ge=1, le=100_000, doc="users simulated at once")
    planner_rollouts: int = bounded(4, ge=1, le=100_000, doc="planner's rollouts per candidate (its default: 12)")
    planner_candidates: int = bounded(3, ge=0, le=1000, doc="candidates the planner rolls out (its default: 5)")
    # Each FQE iteration carries the value one step further back, and the best targets keep users for
    # a hundred steps and more: many short iterations rather than a few long ones.
    fqe_iterations: int = bounded(500, ge=0, le=100_000, doc="FQE iterations (target-network copies)")
    fqe_steps: int = bounded(30, ge=1, le=100_000, doc="FQE gradient steps per iteration")
    fqe_batch: int = bounded(256, ge=1, le=1_000_000, doc="FQE transitions per gradient step")
    fqe_users: int = bounded(0, ge=0, le=10_000_000, doc="users of each log FQE is fitted on (0: all)")
    fqe_memory: bool = True
    n_bootstrap: int = bounded(200, ge=10, le=1_000_000, doc="bootstrap resamples of each log's episodes")
    confidence: float = bounded(0.95, gt=0.0, lt=1.0, doc="coverage of the intervals")
    max_weight: float = bounded(100.0, ge=0.0, lt=float("inf"),
                                doc="cap on the cumulative importance weight of the clipped variants (0: none)")
    offline_updates: int = bounded(3000, ge=0, le=10**8,
                                   doc="updates of the CQL agent trained on the first log (0: no offline agent)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.preset not in PRESET_ENVS:
            reason = "shows slates, which have no per-candidate propensity" if self.preset in PRESETS else "is unknown"
            raise ValueError(f"OpeBenchmarkConfig.preset={self.preset!r} {reason}: allowed "
                             f"{', '.join(PRESET_ENVS)}")
        if self.behaviour not in TARGETS:
            raise ValueError(f"OpeBenchmarkConfig.behaviour={self.behaviour!r} is unknown: allowed {', '.join(TARGETS)}")
        unknown = [t for t in self.targets if t not in TARGETS]
        if unknown or not self.targets or len(set(self.targets)) != len(self.targets):
            what = f"{unknown[0]!r} is unknown" if unknown else "must name distinct targets"
            raise ValueError(f"OpeBenchmarkConfig.targets: {what}: allowed {', '.join(TARGETS)}")

    @property
    def env_id(self) -> str:
        return PRESET_ENVS[self.preset]

    @property
    def n_logs(self) -> int:
        """One log when an existing one is given, ``logs`` otherwise."""
        return 1 if self.log else self.logs


# -- seeds: every purpose its own range, so truth users never share a seed with a log -----------------------
def truth_seed(cfg: OpeBenchmarkConfig) -> int:
    return 10_000_000 + cfg.seed


def log_seed(cfg: OpeBenchmarkConfig, i: int) -> int:
    return 20_000_000 + 1000 * cfg.seed + i


def _derived(cfg: OpeBenchmarkConfig, purpose: int, i: int = 0) -> int:
    """A seed for a generator (policy, FQE, bootstrap), independent of the env seeds above."""
    return int(np.random.SeedSequence([cfg.seed, purpose, i]).generate_state(1, np.uint32)[0])


def make_env(cfg: OpeBenchmarkConfig, users: int) -> gym.vector.VectorEnv:
    return gym.make_vec(cfg.env_id, num_envs=users, vectorization_mode="vector_entry_point")


# -- targets --------------------------------------------------------------------------------------------
def train_learner(name: str, cfg: OpeBenchmarkConfig, out_dir: Path) -> Recommender:
    """Train ``dqn`` or ``dqn_myopic`` as the benchmark suite does, on ``cfg.train_steps`` user-steps."""
    from agents.dqn import DQNConfig, train

    config = DQNConfig(total_steps=cfg.train_steps, seed=cfg.seed, learning_starts=min(20_000, cfg.train_steps // 4),
                       checkpoint_replay=False)
    result = train(make_env(cfg, 256), config, out_dir=out_dir, myopic=name == "dqn_myopic", progress=False,
                   resume=False)
    return result.agent


def weights(cfg: OpeBenchmarkConfig, work: Path, name: str) -> tuple[Path, float | None]:
    """The learner's saved weights, trained now if absent, and the seconds training took (None: unknown)."""
    path, record = work / name / "weights.pt", work / name / "train.json"
    if path.is_file():
        return path, json.loads(record.read_text())["seconds"] if record.is_file() else None
    start = time.perf_counter()
    train_learner(name, cfg, work / name).save(path)
    seconds = time.perf_counter() - start
    atomic_write_text(record, json.dumps({"seconds": seconds, "user_steps": cfg.train_steps}))
    return path, seconds


def build(name: str, env: gym.vector.VectorEnv, cfg: OpeBenchmarkConfig, work: Path) -> Recommender:
    """The named policy for ``env``: learners with their trained weights, the planner as configured."""
    if name == "random":
        return agents.make("random", env, seed=_derived(cfg, 1))
    if name == "planner":
        return agents.make("planner", env, rollouts=cfg.planner_rollouts, candidates=cfg.planner_candidates,
                           seed=_derived(cfg, 2))
    agent = agents.make(name, env)
    if name in LEARNERS:
        agent.load(work / name / "weights.pt")
    return agent


class Uniform:
    """The random target as the log records it: its exact distribution, uniform over the candidates."""

    def act(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        raise NotImplementedError("recorded through action_probabilities")

    def action_probabilities(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        n = np.shape(info["candidates"])[-1]
        return np.full((len(np.atleast_2d(info["candidates"])), n), 1.0 / n)


def recorder(name: str, env: gym.vector.VectorEnv, cfg: OpeBenchmarkConfig, work: Path) -> Any:
    """What ``collect_propensity_log`` records for a target: uniform for random, else its one-hot ``act``."""
    return Uniform() if name == "random" else build(name, env, cfg, work)


def _one_hot(action: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((len(action), n))
    out[np.arange(len(action)), action] = 1.0
    return out


def check_from_log(name: str, log: PropensityLog, cfg: OpeBenchmarkConfig) -> None:
    """Refuse, by name, a target whose probabilities the log neither records nor allows computing."""
    if name in log.targets:
        return
    if name not in FROM_LOG or (name in ("myopic", "heuristic") and log.interest is None):
        needs = "the full user state of every step" if name not in FROM_LOG else "the true-state columns"
        raise SystemExit(f"error: target {name!r} cannot be evaluated from {cfg.log or 'the log'}: it needs {needs}, "
                         f"which the log does not hold (from a log: {', '.join(FROM_LOG)}, or targets recorded in it)")


def probabilities_from_log(name: str, log: PropensityLog, cfg: OpeBenchmarkConfig, work: Path) -> np.ndarray:
    """``(R, N)`` a target's probabilities at a log's rows, recorded or computed from what the log holds.

    Raises:
        SystemExit: the target needs what the log does not hold (the planner's simulator copies of the
            users; the oracles without the true-state columns).
    """
    if name in log.targets:
        return np.asarray(log.targets[name], np.float64)
    n = log.probabilities.shape[1]
    check_from_log(name, log, cfg)
    if name == "random":
        return np.full(log.probabilities.shape, 1.0 / n)
    agent = build(name, make_env(cfg, 1), cfg, work)
    out = np.empty(log.probabilities.shape)
    for start in range(0, len(log), CHUNK):
        rows = slice(start, start + CHUNK)
        info = {"candidates": log.candidates[rows]}
        if log.interest is not None:
            info["user_state"] = {"interest": log.interest[rows], "satiation": log.satiation[rows],
                                  "budget": log.budget[rows]}
        out[rows] = _one_hot(np.asarray(agent.act(log.obs[rows], info), np.int64).reshape(-1), n)
    return out


def _horizon(cumulative: np.ndarray) -> list[float]:
    """A cumulative per-step curve at horizons 1..HORIZON_STEPS (constant after the longest episode)."""
    out = np.asarray(cumulative, np.float64)[:HORIZON_STEPS]
    return np.pad(out, (0, HORIZON_STEPS - len(out)), mode="edge" if len(out) else "constant").tolist()


# -- truth ------------------------------------------------------------------------------------------------
def on_policy(agent: Recommender, env: gym.vector.VectorEnv, seed: int,
              max_steps: int = 100_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each user's return and length over one episode ``(M,)``, and the mean reward at each step ``(H,)``.

    ``agents.evaluate``'s loop (the same users for the same seed, the same active mask), keeping the
    per-step means so the value truncated at any horizon is known too.
    """
    obs, info = env.reset(seed=seed)
    n = env.num_envs
    returns, lengths, live, per_step = np.zeros(n), np.zeros(n, np.int64), np.ones(n, bool), []
    for _ in range(max_steps):
        info[ACTIVE] = live.copy()
        obs, reward, terminated, truncated, info = env.step(agent.act(obs, info))
        step_reward = np.where(live, reward, 0.0)
        returns += step_reward
        lengths += live
        per_step.append(step_reward.sum() / n)
        live &= ~(np.asarray(terminated, bool) | np.asarray(truncated, bool))
        if not live.any():
            return returns, lengths, np.asarray(per_step)
    raise RuntimeError(f"{int(live.sum())} of {n} users had not finished within max_steps={max_steps}")


def truth(name: str, cfg: OpeBenchmarkConfig, work: Path) -> dict[str, Any]:
    """A target's online value on ``truth_users`` fresh users, with a bootstrap interval (cached)."""
    path = work / "truth" / f"{name}.json"
    if path.is_file():
        return json.loads(path.read_text())
    env = make_env(cfg, cfg.truth_users)
    start = time.perf_counter()
    returns, lengths, per_step = on_policy(build(name, env, cfg, work), env, seed=truth_seed(cfg))
    seconds = time.perf_counter() - start
    interval = bootstrap_interval(returns, confidence=cfg.confidence, seed=_derived(cfg, 3))
    result = {"value": interval.estimate, "low": interval.low, "high": interval.high, "n_users": cfg.truth_users,
              "seed": truth_seed(cfg), "user_steps": int(lengths.sum()),
              "truncated": _horizon(np.cumsum(per_step)), "seconds": seconds}
    atomic_write_text(path, json.dumps(result))
    return result


# -- estimates ---------------------------------------------------------------------------------------------
def first_users(log: PropensityLog, n_users: int) -> PropensityLog:
    """The log's first ``n_users`` episodes (users are numbered in the order they started)."""
    if n_users <= 0 or n_users >= log.n_users:
        return log
    keep = log.user < n_users
    columns = {f.name: getattr(log, f.name) for f in dataclasses.fields(log)
               if f.name not in ("metadata", "targets")}
    return PropensityLog(**{k: None if v is None else v[keep] for k, v in columns.items()},
                         metadata={**log.metadata, "n_users": n_users},
                         targets={k: v[keep] for k, v in log.targets.items()})


def fqe_q(log: PropensityLog, pis: Mapping[str, np.ndarray], cfg: OpeBenchmarkConfig, layout: Any,
          i: int) -> dict[str, tuple[np.ndarray, dict]]:
    """Network FQE of every target in ``pis`` at once, fitted on the log's first ``fqe_users`` episodes:
    each target's ``q`` on every row of the log and what the fit reports.

    One network with an output per target (``agents.fqe.fit_fqe_targets``), seeded by the log: the
    same targets on the same log give the same fit, so a run resumed mid-log redoes it exactly.
    """
    from agents.fqe import FQEConfig, fit_fqe_targets

    config = FQEConfig(iterations=cfg.fqe_iterations, steps_per_iteration=cfg.fqe_steps, batch_size=cfg.fqe_batch,
                       episode_memory=cfg.fqe_memory, seed=_derived(cfg, 4, i), progress=False)
    part = first_users(log, cfg.fqe_users)
    keep = log.user < part.n_users
    fitted = fit_fqe_targets(part, {t: pi[keep] for t, pi in pis.items()}, config, layout=layout)
    q = next(iter(fitted.values())).network.action_values(log) if part is not log else None
    return {t: (f.q if q is None else q[:, :, f.head],
                {"users": part.n_users, "iterations": f.iterations, "targets_fitted_together": len(pis),
                 "final_td_mse": float(f.history[-1]) if len(f.history) else None})
            for t, f in fitted.items()}


def estimate(log: PropensityLog, pi: np.ndarray, q: np.ndarray, fqe: dict, fqe_seconds: float,
             cfg: OpeBenchmarkConfig, i: int) -> dict[str, Any]:
    """Every estimator on one (log, target), the weights' effective sample size and the truncated PDIS."""
    start = time.perf_counter()
    config = EstimatorConfig(n_bootstrap=cfg.n_bootstrap, confidence=cfg.confidence, seed=_derived(cfg, 5, i))
    results = estimate_all(log, pi, q=q, config=config)
    clipped = {}
    if cfg.max_weight > 0:
        capped = estimate_all(log, pi, q=q, config=dataclasses.replace(config, max_weight=cfg.max_weight),
                              estimators=CLIPPED)
        clipped = {f"{e}_clip": r for e, r in capped.items()}
    episodes = _Episodes(log, pi, None, None, EstimatorConfig())
    weighted = episodes.weighted_reward[:, :HORIZON_STEPS]
    pdis = np.cumsum(weighted.mean(axis=0))
    total = episodes.w[:, :HORIZON_STEPS].sum(axis=0)
    wpdis = np.cumsum(np.divide(weighted.sum(axis=0), total, out=np.zeros_like(total), where=total > 0))
    return {"estimates": {e: {"estimate": r.estimate, "low": r.low, "high": r.high, "n_clipped": r.n_clipped}
                          for e, r in (results | clipped).items()},
            "effective_sample_size": results["is"].effective_sample_size, "n_episodes": log.n_users,
            "rows": len(log), "fqe": fqe, "truncated": {"pdis": _horizon(pdis), "wpdis": _horizon(wpdis)},
            "seconds": {"fqe": fqe_seconds, "estimators": time.perf_counter() - start}}


def _signature(cfg: OpeBenchmarkConfig) -> dict[str, Any]:
    """What the cached work depends on: the options but the output folder, targets and log count, and
    the log file's digest."""
    # Adding or dropping a target or a log reuses the others' work: log i's seeds do not depend on either.
    sig = {k: v for k, v in dataclasses.asdict(cfg).items()
           if k not in ("out", "targets", "logs", "offline_updates")}  # the offline agent's cache says its own
    if cfg.log:
        sig["log_sha256"] = hashlib.sha256(Path(cfg.log).read_bytes()).hexdigest()
    return sig


def _check_work(cfg: OpeBenchmarkConfig, work: Path) -> None:
    path = work / "config.json"
    sig = _signature(cfg)
    if path.is_file():
        saved = json.loads(path.read_text())
        differs = [k for k in sorted(set(saved) | set(sig)) if saved.get(k) != sig.get(k)]
        if differs:
            raise SystemExit(f"error: {work} holds the work of another configuration ("
                             + ", ".join(f"{k}: {saved.get(k)!r} there, {sig.get(k)!r} now" for k in differs)
                             + "); use another --out")
    else:
        atomic_write_text(path, json.dumps(sig, indent=2))


def _load_log(cfg: OpeBenchmarkConfig) -> PropensityLog:
    path = Path(cfg.log)
    if not path.is_file():
        raise SystemExit(f"error: {path}: no such propensity log")
    try:
        log = read_propensity_log(path)
    except (OSError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None
    # Parquet's arrays are read-only; torch wants writable ones.
    log = dataclasses.replace(log, **{f.name: np.array(v) for f in dataclasses.fields(log)
                                      if isinstance(v := getattr(log, f.name), np.ndarray)})
    expected = _jsonable(gym.make(cfg.env_id).unwrapped.config)
    if log.metadata.get("env_id") != cfg.env_id or log.metadata.get("config") != expected:
        raise SystemExit(f"error: {path} was logged on {log.metadata.get('env_id')} with another configuration "
                         f"than --preset {cfg.preset} ({cfg.env_id})")
    return log


def _returns_interval(returns: np.ndarray, cfg: OpeBenchmarkConfig, purpose: int) -> dict[str, float]:
    interval = bootstrap_interval(returns, confidence=cfg.confidence, seed=_derived(cfg, purpose))
    return {"value": interval.estimate, "low": interval.low, "high": interval.high}


def _cached_offline(cfg: OpeBenchmarkConfig, work: Path) -> dict[str, Any] | None:
    """The stored offline result, if it was made with this many updates."""
    path = work / "offline" / "cql.json"
    if not path.is_file():
        return None
    cached = json.loads(path.read_text())
    return cached if cached.get("updates") == cfg.offline_updates else None


def offline(log: PropensityLog, cfg: OpeBenchmarkConfig, work: Path) -> dict[str, Any]:
    """Offline CQL trained on ``log`` alone and the behaviour policy itself, both online on the truth users
    (cached): does learning from the log beat the policy that wrote it?"""
    from agents.offline import train as train_offline

    if (cached := _cached_offline(cfg, work)) is not None:
        return cached
    path = work / "offline" / "cql.json"
    env = make_env(cfg, cfg.truth_users)
    start = time.perf_counter()
    agent = train_offline(env, log, kind="cql", updates=cfg.offline_updates, seed=_derived(cfg, 8), progress=False).agent
    spent = time.perf_counter() - start
    cql_returns, _, _ = on_policy(agent, env, seed=truth_seed(cfg))
    behaviour = EpsilonGreedy(build(cfg.behaviour, env, cfg, work), cfg.epsilon, seed=_derived(cfg, 9))
    behaviour_returns, _, _ = on_policy(behaviour, env, seed=truth_seed(cfg))
    result = {"cql": _returns_interval(cql_returns, cfg, 10), "behaviour": _returns_interval(behaviour_returns, cfg, 11),
              "updates": cfg.offline_updates, "log_users": log.n_users, "log_rows": len(log), "train_seconds": spent}
    atomic_write_text(path, json.dumps(result))
    return result


def run(cfg: OpeBenchmarkConfig, progress: bool | None = None) -> dict[str, Any]:
    """Train, measure the truth, log, estimate; the numbers ``results.json`` holds."""
    import torch

    torch.set_num_threads(1)
    work = Path(cfg.out) / "work"
    work.mkdir(parents=True, exist_ok=True)
    given = _load_log(cfg) if cfg.log else None
    for name in cfg.targets if given is not None else ():
        check_from_log(name, given, cfg)
    _check_work(cfg, work)
    seconds: dict[str, Any] = {"train": {}, "truth": {}, "logs": [], "estimates": {}}
    for name in LEARNERS:
        if name in cfg.targets or name == cfg.behaviour:
            _, spent = weights(cfg, work, name)
            seconds["train"][name] = spent
    truths = {}
    for name in tqdm(cfg.targets, desc="truth", leave=False, disable=not progress_enabled(progress)):
        truths[name] = truth(name, cfg, work)
        seconds["truth"][name] = truths[name]["seconds"]
    layout = make_env(cfg, 1).unwrapped.layout
    per_log: list[dict[str, dict[str, Any]]] = []
    logs_meta = []
    bar = tqdm(total=cfg.n_logs * len(cfg.targets), desc="logs x targets", disable=not progress_enabled(progress))
    offline_result = None
    for i in range(cfg.n_logs):
        cached = {t: json.loads(p.read_text()) for t in cfg.targets
                  if (p := work / f"log{i}" / f"{t}.json").is_file()}
        missing = [t for t in cfg.targets if t not in cached]
        meta_path = work / f"log{i}" / "log.json"
        wants_offline = i == 0 and cfg.offline_updates > 0 and _cached_offline(cfg, work) is None
        if missing or wants_offline:
            start = time.perf_counter()
            if given is not None:
                log = given
            else:
                env = make_env(cfg, min(cfg.num_envs, cfg.users))
                behaviour = EpsilonGreedy(build(cfg.behaviour, env, cfg, work), cfg.epsilon, seed=_derived(cfg, 6, i))
                log = collect_propensity_log(env, behaviour, cfg.users, seed=log_seed(cfg, i),
                                             policy_name=f"epsilon_greedy({cfg.behaviour}, {cfg.epsilon:g})",
                                             targets={t: recorder(t, env, cfg, work) for t in cfg.targets})
            lengths = np.bincount(log.user, minlength=log.n_users)
            meta = {"seed": log.metadata.get("seed"), "users": log.n_users, "rows": len(log),
                    "mean_length": float(lengths.mean()), "max_length": int(lengths.max()),
                    "behaviour_return": float(np.bincount(log.user, log.reward, minlength=log.n_users).mean()),
                    "path": cfg.log, "seconds": time.perf_counter() - start, "targets_estimated": missing}
            atomic_write_text(meta_path, json.dumps(meta))
            if missing:
                # One FQE fit for every target, so the missing ones get exactly the fit they would have had.
                pis = {t: probabilities_from_log(t, log, cfg, work) for t in cfg.targets}
                fit_start = time.perf_counter()
                fitted = fqe_q(log, pis, cfg, layout, i)
                fit_seconds = (time.perf_counter() - fit_start) / len(missing)  # shared by the targets written
            for t in missing:
                cached[t] = estimate(log, pis[t], *fitted[t], fit_seconds, cfg, i)
                atomic_write_text(work / f"log{i}" / f"{t}.json", json.dumps(cached[t]))
                bar.update(1)
            if wants_offline:  # the same log again when its estimates were cached: logging is seeded
                offline_result = offline(log, cfg, work)
            del log
        bar.update(len(cfg.targets) - len(missing))
        logs_meta.append(json.loads(meta_path.read_text()))
        per_log.append(cached)
        seconds["logs"].append(logs_meta[-1]["seconds"])
    bar.close()
    seconds["estimates"] = {t: [per_log[i][t]["seconds"] for i in range(cfg.n_logs)] for t in cfg.targets}
    if cfg.offline_updates > 0 and offline_result is None:
        offline_result = _cached_offline(cfg, work)
    results = summarise(cfg, truths, per_log, logs_meta, seconds)
    results["offline"] = offline_result
    return results


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties); NaN when either side is constant."""
    from scipy.stats import spearmanr

    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def _relative_error(estimate: float, true: float) -> float:
    return abs(estimate - true) / abs(true) if true != 0 else float("inf")


def summarise(cfg: OpeBenchmarkConfig, truths: Mapping[str, dict], per_log: list[dict[str, dict]],
              logs_meta: list[dict], seconds: dict[str, Any]) -> dict[str, Any]:
    """Per target and estimator, per estimator, and the verdicts, from the truths and every log's estimates."""
    targets = list(cfg.targets)
    true = np.array([truths[t]["value"] for t in targets])
    names = list(per_log[0][targets[0]]["estimates"])  # the plain estimators, then any clipped ones
    per_target: dict[str, Any] = {}
    for j, t in enumerate(targets):
        rows = [per_log[i][t] for i in range(len(per_log))]
        ess = [r["effective_sample_size"] for r in rows]
        by_estimator = {}
        for e in names:
            est = [r["estimates"][e]["estimate"] for r in rows]
            low = [r["estimates"][e]["low"] for r in rows]
            high = [r["estimates"][e]["high"] for r in rows]
            rel = [_relative_error(x, true[j]) for x in est]
            covered = [bool(lo <= true[j] <= hi) for lo, hi in zip(low, high)]
            by_estimator[e] = {"estimates": est, "low": low, "high": high, "mean_estimate": float(np.mean(est)),
                               "sd_estimate": float(np.std(est, ddof=1)) if len(est) > 1 else 0.0,
                               "relative_errors": rel, "median_relative_error": float(np.median(rel)),
                               "mean_relative_error": float(np.mean(rel)), "covered": covered,
                               "coverage": float(np.mean(covered))}
        horizon = {k: np.mean([r["truncated"][k] for r in rows], axis=0).tolist() for k in ("pdis", "wpdis")}
        per_target[t] = {"truth": truths[t], "effective_sample_size": float(np.mean(ess)),
                         "effective_sample_size_per_log": ess, "n_episodes": rows[0]["n_episodes"],
                         "estimators": by_estimator, "truncated": horizon}
    per_estimator = {}
    for e in names:
        rho = [spearman(np.array([per_log[i][t]["estimates"][e]["estimate"] for t in targets]), true)
               for i in range(len(per_log))]
        medians = [per_target[t]["estimators"][e]["median_relative_error"] for t in targets]
        covered = [c for t in targets for c in per_target[t]["estimators"][e]["covered"]]
        finite = [r for r in rho if not math.isnan(r)]
        per_estimator[e] = {"spearman_per_log": rho, "spearman": float(np.mean(finite)) if finite else None,
                            "median_relative_error": float(np.median(medians)), "coverage": float(np.mean(covered)),
                            "failed_targets": [t for t, m in zip(targets, medians) if m >= FAILURE]}
    return {"config": dataclasses.asdict(cfg), "env_id": cfg.env_id, "targets": per_target,
            "estimators": per_estimator, "logs": logs_meta,
            "max_weight": cfg.max_weight or None, "bar": {"spearman": BAR_SPEARMAN, "median_relative_error": BAR_RELATIVE_ERROR, "failure": FAILURE},
            "planner": {"rollouts": cfg.planner_rollouts, "candidates": cfg.planner_candidates,
                        "default_rollouts": 12, "default_candidates": 5}, "seconds": seconds}


# -- the report ---------------------------------------------------------------------------------------------
def meets_bar(row: Mapping[str, Any], bar: Mapping[str, float]) -> bool:
    rho = row["spearman"]
    return rho is not None and rho >= bar["spearman"] and row["median_relative_error"] <= bar["median_relative_error"]


def label(e: str, results: Mapping[str, Any]) -> str:
    """An estimator's name in the report; a clipped variant says at what weight."""
    if e.endswith("_clip"):
        return f"{e.removesuffix('_clip').upper()} clipped at {results['max_weight']:g}"
    return e.upper()


def _pct(x: float) -> str:
    return "inf" if not math.isfinite(x) else f"{x:.0%}" if x < 10 else f"{x:.0f}x"


def verdicts(results: Mapping[str, Any]) -> list[str]:
    """The report's sentences, each computed from the numbers in ``results``."""
    est, bar = results["estimators"], results["bar"]
    names = list(est)
    best = min(names, key=lambda e: est[e]["median_relative_error"])
    ranked = [e for e in names if est[e]["spearman"] is not None]
    best_rank = max(ranked, key=lambda e: est[e]["spearman"]) if ranked else None
    passing = [e for e in names if meets_bar(est[e], bar)]
    rho = est[best]["spearman"]
    lines = [f"The best estimator by median relative error over the targets is {label(best, results)} "
             f"({_pct(est[best]['median_relative_error'])}); it ranks the targets with a mean Spearman correlation of "
             + ("- (undefined)" if rho is None else f"{rho:+.2f}") + " across logs."]
    if best_rank is not None:
        lines.append(f"The best ranking is that of {label(best_rank, results)} (Spearman {est[best_rank]['spearman']:+.2f}, median "
                     f"relative error {_pct(est[best_rank]['median_relative_error'])}).")
    rule = (f"Spearman >= {bar['spearman']:g} and median relative error <= {bar['median_relative_error']:.0%}")
    if passing:
        lines.append(f"Meeting the issue's bar ({rule}): {', '.join(label(e, results) for e in passing)}.")
    else:
        lines.append(f"No estimator meets the issue's bar ({rule}).")
    failures = [f"{label(e, results)} on " + ", ".join(
        f"{t} ({_pct(results['targets'][t]['estimators'][e]['median_relative_error'])})" for t in est[e]["failed_targets"])
        for e in names if est[e]["failed_targets"]]
    if failures:
        lines.append(f"Failures (median relative error of {bar['failure']:.0%} or more over logs): "
                     + "; ".join(failures) + ".")
    else:
        lines.append(f"No estimator has a median relative error of {bar['failure']:.0%} or more on any target.")
    return lines


def support_sentences(results: Mapping[str, Any]) -> list[str]:
    """How much of each target's true value lies beyond the longest logged episode, where no estimator sees.

    The truth's cumulative value by horizon is known up to :data:`HORIZON_STEPS`; a log whose longest
    episode is shorter than a target's typical one holds no step of that target's later rewards.
    """
    longest = max(m["max_length"] for m in results["logs"])
    if longest >= HORIZON_STEPS:
        return []
    beyond = {}
    for t, row in results["targets"].items():
        truth = row["truth"]
        value = truth["value"]
        if value > 0 and "truncated" in truth:
            beyond[t] = (1.0 - truth["truncated"][longest - 1] / value, truth["user_steps"] / truth["n_users"])
    unseen = {t: v for t, v in beyond.items() if v[0] >= SUPPORT_SHARE}
    if not unseen:
        return [f"Every target earns less than {SUPPORT_SHARE:.0%} of its true value after step {longest}, the "
                "longest logged episode."]
    return [f"The longest logged episode has {longest} steps; " + "; ".join(
        f"{t}'s users stay {length:.1f} steps on average and it earns {share:.0%} of its true value after step {longest}"
        for t, (share, length) in unseen.items())
        + ". No logged step shows those rewards: an estimator can only extrapolate to them."]


def offline_sentences(results: Mapping[str, Any]) -> list[str]:
    """CQL from the first log against the behaviour policy, and on the normalized scale beside online DQN."""
    off = results.get("offline")
    if not off:
        return []
    cql, beh = off["cql"], off["behaviour"]
    apart = "with intervals apart" if cql["low"] > beh["high"] or cql["high"] < beh["low"] else "but the intervals overlap"
    lines = [f"Offline CQL trained on the first log alone ({off['log_users']:,} users, {off['updates']:,} updates) earns "
             f"{cql['value']:.1f} [{cql['low']:.1f}, {cql['high']:.1f}] online on the truth users, against "
             f"{beh['value']:.1f} [{beh['low']:.1f}, {beh['high']:.1f}] for the behaviour policy that wrote the log: "
             f"{'ahead' if cql['value'] > beh['value'] else 'behind'}, {apart}."]
    tg = results["targets"]
    if "random" in tg and "planner" in tg:
        low, high = tg["random"]["truth"]["value"], tg["planner"]["truth"]["value"]
        scale = {"CQL (offline)": cql["value"], "the behaviour policy": beh["value"]}
        scale |= {f"{t} (online, {results['config']['train_steps']:,} user-steps)": tg[t]["truth"]["value"]
                  for t in ("dqn", "dqn_myopic") if t in tg}
        lines.append("On the normalized scale (0 = random, 1 = planner): " + ", ".join(
            f"{name} {(value - low) / (high - low):.2f}" for name, value in scale.items()) + ".")
    return lines


def estimator_table(results: Mapping[str, Any]) -> list[str]:
    """One row per estimator: median relative error, mean Spearman, coverage, the bar, failed targets."""
    lines = [("| estimator | median relative error over targets | mean Spearman over logs | interval coverage | "
              "meets bar | failed targets |"), "|---|---|---|---|---|---|"]
    for e, row in results["estimators"].items():
        rho = "-" if row["spearman"] is None else f"{row['spearman']:+.2f}"
        lines.append(f"| {label(e, results)} | {_pct(row['median_relative_error'])} | {rho} | {row['coverage']:.0%} | "
                     f"{'yes' if meets_bar(row, results['bar']) else 'no'} | "
                     f"{', '.join(row['failed_targets']) or '-'} |")
    return lines


def report(results: Mapping[str, Any]) -> str:
    """``results.md``: tables and sentences made from ``results`` (no fixed text about a result)."""
    cfg, est, tg = results["config"], results["estimators"], results["targets"]
    n_logs, conf = len(results["logs"]), cfg["confidence"]
    logs = results["logs"]
    source = (f"the existing log `{cfg['log']}`" if cfg["log"] else
              f"{n_logs} independent logs of {cfg['users']:,} users each")
    lines = [f"# Off-policy estimators against the simulator's truth ({results['env_id']})", "",
             (f"Behaviour: epsilon-greedy `{cfg['behaviour']}` (epsilon {cfg['epsilon']:g}); {source} "
              f"(mean {np.mean([m['rows'] for m in logs]):,.0f} logged steps, episodes of "
              f"{np.mean([m['mean_length'] for m in logs]):.1f} steps on average, behaviour return "
              f"{np.mean([m['behaviour_return'] for m in logs]):.2f}). Truth: each target's mean return online on "
              f"{cfg['truth_users']:,} fresh users (seed {tg[cfg['targets'][0]]['truth']['seed']}, never used by a log), "
              f"{conf:.0%} bootstrap interval. DM, DR and WDR use network FQE (one network with an output per target, "
              + ("reading the observation and the whole episode so far: the ids and responses of its earlier steps; "
                 if cfg.get("fqe_memory") else "reading the observation alone; ")
              + f"{cfg['fqe_iterations']} iterations x {cfg['fqe_steps']} steps, batch {cfg['fqe_batch']}, fitted on "
              + (f"the first {cfg['fqe_users']:,} users" if 0 < cfg["fqe_users"] < cfg["users"] else "all users")
              + f" of each log, evaluated on all). Intervals: {cfg['n_bootstrap']} bootstrap resamples of each log's "
              f"episodes at {conf:.0%}. Seed {cfg['seed']}, dqn and dqn_myopic trained on {cfg['train_steps']:,} "
              "user-steps."), ""]
    if "planner" in cfg["targets"]:
        p = results["planner"]
        reduced = (p["rollouts"], p["candidates"]) != (p["default_rollouts"], p["default_candidates"])
        lines += [(f"The planner ran with {p['rollouts']} rollouts of its {p['candidates']} best candidates"
                   + (f" (its defaults are {p['default_rollouts']} and {p['default_candidates']}), fewer to keep the "
                      "command's time down; its truth is measured with the same settings." if reduced else ".")), ""]
    if results.get("max_weight"):
        lines += [(f"Rows \"clipped at {results['max_weight']:g}\" cap every cumulative importance weight at "
                   f"{results['max_weight']:g}: less variance for a bias, reported beside the unclipped estimators, "
                   "not in their place."), ""]
    lines += ["## Verdict", "", *verdicts(results), *support_sentences(results), *offline_sentences(results), "",
              "## Per estimator", "", *estimator_table(results)]
    lines += ["", "## Per target", "",
              f"| target | truth ({conf:.0%} CI) | ESS of the weights (of {tg[cfg['targets'][0]]['n_episodes']:,}) | "
              + " | ".join(label(e, results) for e in est) + " |", "|---|---|---|" + "---|" * len(est)]
    for t, row in tg.items():
        tr = row["truth"]
        cells = []
        for e in est:
            r = row["estimators"][e]
            flag = " **FAILED**" if r["median_relative_error"] >= results["bar"]["failure"] else ""
            cells.append(f"{r['mean_estimate']:.1f} ({_pct(r['median_relative_error'])}, "
                         f"{sum(r['covered'])}/{len(r['covered'])}){flag}")
        lines.append(f"| {t} | {tr['value']:.2f} [{tr['low']:.2f}, {tr['high']:.2f}] | "
                     f"{row['effective_sample_size']:.1f} | " + " | ".join(cells) + " |")
    lines += ["", (f"Each estimator cell: the mean estimate over logs (the median relative error over logs, and in how "
                   f"many logs the {conf:.0%} interval covers the truth). A median relative error of "
                   f"{results['bar']['failure']:.0%} or more is marked FAILED. ESS = (sum w)^2 / sum w^2 of the "
                   "trajectory weights, mean over logs: how many on-policy episodes the reweighted log is worth."), "",
              "## Plots", "",
              "![estimate vs truth](estimate_vs_truth.png)", "",
              (f"`estimate_vs_truth`: one panel per estimator, a point per target at its true value (x) and its mean "
               f"estimate over the {n_logs} log(s) (y, bars: the spread of the estimates over logs, one standard "
               "deviation); the diagonal is a perfect estimate."), "",
              "![relative error against horizon](horizon.png)", "",
              ("`horizon`: relative error of PDIS and WPDIS for the value truncated at horizon h (the rewards of "
               "the first h steps), against the same truncation of the online truth, mean over logs. The weight of "
               "step h multiplies h ratios, so the error of a target unlike the behaviour grows with h."), "",
              "![effective sample size](ess.png)", "",
              "`ess`: the effective sample size of each target's trajectory weights (log scale), mean over logs.", "",
              "## Time", "", _time_line(results)]
    return "\n".join(lines) + "\n"


def _time_line(results: Mapping[str, Any]) -> str:
    s = results["seconds"]
    train = {k: v for k, v in s["train"].items() if v is not None}
    return (f"Training: {', '.join(f'{k} {v:.0f} s' for k, v in train.items()) or 'reused'}; truth: "
            + ", ".join(f"{k} {v:.0f} s" for k, v in s["truth"].items())
            + f"; logging: {', '.join(f'{v:.0f} s' for v in s['logs'])}; FQE and estimators: "
            f"{sum(e['fqe'] + e['estimators'] for v in s['estimates'].values() for e in v):.0f} s over "
            f"{sum(len(v) for v in s['estimates'].values())} (log, target) pairs. Work reused from the cache is "
            "counted as when it was done.")


def plot(results: Mapping[str, Any], out: Path) -> list[Path]:
    """The three plots, PNG and SVG, each written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from recsim_env.io import atomic_write

    tg, est = results["targets"], list(results["estimators"])
    names = list(tg)
    colours = plt.get_cmap("tab10")
    true = np.array([tg[t]["truth"]["value"] for t in names])
    written = []

    def save(fig, stem: str) -> None:
        for ext in ("png", "svg"):
            written.append(atomic_write(out / f"{stem}.{ext}", lambda tmp, e=ext: fig.savefig(tmp, format=e, dpi=120)))
        plt.close(fig)

    cols = 4
    fig, axes = plt.subplots(math.ceil(len(est) / cols), cols, figsize=(4 * cols, 4 * math.ceil(len(est) / cols)),
                             squeeze=False)
    span = [min(true.min(), 0.0), true.max() * 1.3 + 1e-9]
    for k, ax in enumerate(axes.ravel()):
        if k >= len(est):
            ax.axis("off")
            continue
        e = est[k]
        for j, t in enumerate(names):
            r = tg[t]["estimators"][e]
            ax.errorbar(true[j], r["mean_estimate"], yerr=r["sd_estimate"], fmt="o", color=colours(j), label=t,
                        capsize=3)
        ax.plot(span, span, "k--", lw=1)
        ax.set_xlim(span)
        ax.set_ylim(span[0], max(span[1], max(tg[t]["estimators"][e]["mean_estimate"] for t in names) * 1.05))
        row = results["estimators"][e]
        ax.set_title(f"{label(e, results)}: median rel. err {_pct(row['median_relative_error'])}")
        ax.set_xlabel("true value (online)")
        ax.set_ylabel("estimate (mean over logs)")
        if k == 0:
            ax.legend(fontsize=8)
    fig.tight_layout()
    save(fig, "estimate_vs_truth")

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), squeeze=False)
    for ax, key in zip(axes[0], ("pdis", "wpdis")):
        for j, t in enumerate(names):
            v = np.asarray(tg[t]["truth"]["truncated"])
            e = np.asarray(tg[t]["truncated"][key])
            h = min(len(v), len(e))
            if h == 0:
                continue
            err = np.abs(e[:h] - v[:h]) / np.maximum(np.abs(v[:h]), 1e-12)
            ax.plot(np.arange(1, h + 1), err, color=colours(j), label=t)
        ax.set_yscale("symlog", linthresh=0.01)
        ax.set_xlabel("horizon h (steps)")
        ax.set_ylabel("relative error of the value truncated at h")
        ax.set_title(key.upper())
        ax.legend(fontsize=8)
    fig.tight_layout()
    save(fig, "horizon")

    fig, ax = plt.subplots(figsize=(7, 4))
    ess = [max(tg[t]["effective_sample_size"], 1e-3) for t in names]
    ax.bar(names, ess, color=[colours(j) for j in range(len(names))])
    ax.axhline(tg[names[0]]["n_episodes"], color="k", ls="--", lw=1, label="episodes in the log")
    ax.set_yscale("log")
    ax.set_ylabel("effective sample size (mean over logs)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save(fig, "ess")
    return written


def parse_args(argv: list[str] | None) -> OpeBenchmarkConfig:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    d = OpeBenchmarkConfig(out="")
    parser.add_argument("--out", required=True, help="folder for results.md, results.json, plots and work/")
    parser.add_argument("--preset", default=d.preset, help=f"one of {', '.join(PRESET_ENVS)}")
    parser.add_argument("--behaviour", default=d.behaviour, help="agent made epsilon-greedy to log")
    parser.add_argument("--epsilon", type=float, default=d.epsilon)
    parser.add_argument("--users", type=int, default=d.users, help="users per log")
    parser.add_argument("--logs", type=int, default=d.logs, help="independent logs")
    parser.add_argument("--targets", default=",".join(d.targets), help="comma-separated target policies")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--truth-users", type=int, default=d.truth_users)
    parser.add_argument("--train-steps", type=int, default=d.train_steps)
    parser.add_argument("--log", help="an existing propensity log (Parquet) to evaluate instead of logging")
    parser.add_argument("--num-envs", type=int, default=d.num_envs)
    parser.add_argument("--planner-rollouts", type=int, default=d.planner_rollouts)
    parser.add_argument("--planner-candidates", type=int, default=d.planner_candidates)
    parser.add_argument("--fqe-iterations", type=int, default=d.fqe_iterations)
    parser.add_argument("--fqe-steps", type=int, default=d.fqe_steps)
    parser.add_argument("--fqe-batch", type=int, default=d.fqe_batch)
    parser.add_argument("--fqe-users", type=int, default=d.fqe_users)
    parser.add_argument("--no-fqe-memory", dest="fqe_memory", action="store_false",
                        help="FQE reads only the observation, not the whole episode so far")
    parser.add_argument("--n-bootstrap", type=int, default=d.n_bootstrap)
    parser.add_argument("--confidence", type=float, default=d.confidence)
    parser.add_argument("--max-weight", type=float, default=d.max_weight,
                        help="also report IS, WIS, PDIS, WPDIS, DR and WDR with weights clipped at this (0: not)")
    parser.add_argument("--offline-updates", type=int, default=d.offline_updates,
                        help="updates of offline CQL trained on the first log and evaluated online (0: skip)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    args = vars(parser.parse_args(argv))
    args.pop("no_progress")
    args["targets"] = tuple(t.strip() for t in args["targets"].split(",") if t.strip())
    try:
        return OpeBenchmarkConfig(**args)
    except (TypeError, ValueError) as err:  # name the option the user typed, not the field
        message = str(err).removeprefix(f"{OpeBenchmarkConfig.__name__}.")
        name = re.match(r"\w*", message).group(0)
        parser.error(f"--{name.replace('_', '-')}{message[len(name):]}")


def main(argv: list[str] | None = None) -> int:
    import sys

    cfg = parse_args(argv)
    progress = False if "--no-progress" in (sys.argv[1:] if argv is None else argv) else None
    start = time.perf_counter()
    results = run(cfg, progress=progress)
    results["seconds"]["this_invocation"] = time.perf_counter() - start
    out = Path(cfg.out)
    plot(results, out)
    text = report(results)
    write_results(out, results, text)
    print(text)
    print(f"wrote {out / 'results.md'}, results.json and plots")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
