"""Slate off-policy estimators (IPS, IIPS, RIPS, PI) scored against the simulator's truth on SlateDrift-v0.

    python -m benchmarks.slate_ope --users N --targets random,myopic,heuristic,soft_heuristic[,slateq]
        --out DIR [--behaviour myopic] [--epsilon 0.5] [--truth-users M] [--seed S] [--max-weight W]

One log of ``N`` users comes from the factored epsilon-soft version of the behaviour agent
(``agents.slate_ope.EpsilonSlate``: at each position the agent's index with probability
``1 - epsilon``, else a uniform candidate, positions drawn independently). Every target acts on the
same observation and info the behaviour saw, so its per-position probabilities are recorded at every
logged step. Each target gets two truths:

* **online**: its mean reward per step, ``sum of rewards / sum of steps`` over one episode each of
  ``M`` fresh users (a seed no log uses), with a bootstrap interval over those users. This is what the
  target earns when it runs, on the states it leads users into;
* **on the logged contexts**: the exact expected slate reward of the target at every logged step, from
  the logged true user state and the simulator's closed forms (``recsim_env.slates``; every one of the
  ``N^K`` slates enumerated for a stochastic target), averaged over the steps. This is the slate-bandit
  estimand the estimators target; the gap between the two truths is the shift between the behaviour's
  and the target's state distributions, which no per-step estimator can see.

Targets: ``random`` (uniform at every position), ``myopic`` (the exact best slate), ``heuristic``
(its best items), ``soft_heuristic`` (the heuristic made epsilon-soft at 0.3, a stochastic target) and
``slateq`` (trained first on ``--train-steps`` user-steps). Writes ``DIR/results.json``,
``DIR/results.md`` and ``DIR/estimate_vs_truth.png``, each atomically.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from itertools import product
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import agents
import recsim_env  # noqa: F401  (registers the env ids)
from agents.base import Recommender
from agents.ope import EstimatorConfig
from agents.slate_ope import SLATE_ESTIMATORS, EpsilonSlate, estimate_slate
from recsim_env.config import Validated, bounded
from recsim_env.io import atomic_write, atomic_write_text
from recsim_env.logs.slate_log import SlateLog, collect_slate_log
from recsim_env.simulator import Simulator
from recsim_env.slates import _slate_values, _table_duplicates, item_terms, slate_expected_reward

ENV_ID = "recsim_env/SlateDrift-v0"
TARGETS = ("random", "myopic", "heuristic", "soft_heuristic", "slateq")
BEHAVIOURS = ("myopic", "heuristic", "random")
#: Exploration of the ``soft_heuristic`` target.
SOFT_EPSILON = 0.3
#: Logged steps x enumerated slates scored at once for the exact truth of a stochastic target.
CHUNK_STEP_SLATES = 1 << 18


@dataclass(frozen=True)
class SlateOpeConfig(Validated):
    """What the command logs, which targets it evaluates, and how it measures their truth."""

    out: str
    users: int = bounded(5000, ge=10, le=1_000_000, doc="users in the log, one episode each")
    behaviour: str = "myopic"
    epsilon: float = bounded(0.5, gt=0.0, le=1.0, doc="per-position exploration of the behaviour")
    targets: tuple[str, ...] = ("random", "myopic", "heuristic", "soft_heuristic")
    truth_users: int = bounded(2000, ge=10, le=1_000_000, doc="fresh users for each target's online truth")
    seed: int = bounded(0, ge=0, lt=2 ** 32, doc="seed of the log, the truths, the policies and the bootstrap")
    num_envs: int = bounded(1000, ge=1, le=100_000, doc="users stepped at once while logging")
    n_bootstrap: int = bounded(1000, ge=10, le=100_000, doc="bootstrap resamples of the users")
    confidence: float = bounded(0.95, gt=0.0, lt=1.0, doc="coverage of every interval")
    max_weight: float = bounded(0.0, ge=0.0, lt=float("inf"),
                                doc="also report every estimator with |weights| clipped at this (0: not)")
    train_steps: int = bounded(50_000, ge=1000, le=10 ** 9, doc="user-steps to train slateq on")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.behaviour not in BEHAVIOURS:
            raise ValueError(f"SlateOpeConfig.behaviour={self.behaviour!r} is unknown: allowed {', '.join(BEHAVIOURS)}")
        if not self.targets:
            raise ValueError(f"SlateOpeConfig.targets is empty: allowed a comma-separated subset of {', '.join(TARGETS)}")
        unknown = [t for t in self.targets if t not in TARGETS]
        if unknown:
            raise ValueError(f"SlateOpeConfig.targets has {unknown[0]!r}: allowed {', '.join(TARGETS)}")
        if len(set(self.targets)) != len(self.targets):
            raise ValueError(f"SlateOpeConfig.targets repeats a target: {','.join(self.targets)}")


def derived_seed(cfg: SlateOpeConfig, purpose: int, i: int = 0) -> int:
    """An independent seed per purpose (log, truth, behaviour, targets, bootstrap, training)."""
    return int(np.random.SeedSequence([cfg.seed, purpose, i]).generate_state(1, np.uint32)[0])


LOG, TRUTH, BEHAVIOUR, TARGET, BOOTSTRAP, TRAIN = range(6)


def make_env(users: int) -> gym.vector.VectorEnv:
    return gym.make_vec(ENV_ID, num_envs=users, vectorization_mode="vector_entry_point")


def train_slateq(cfg: SlateOpeConfig) -> Recommender:
    """SlateQ trained as the slates suite does, on ``cfg.train_steps`` user-steps (nothing written)."""
    import torch

    from agents.dqn import DQNConfig
    from agents.slateq import train

    torch.set_num_threads(1)
    config = DQNConfig(total_steps=cfg.train_steps, seed=derived_seed(cfg, TRAIN),
                       learning_starts=min(20_000, cfg.train_steps // 4), checkpoint_replay=False)
    return train(make_env(256), config, out_dir=None, progress=False, resume=False).agent


def build(name: str, env: gym.vector.VectorEnv, cfg: SlateOpeConfig, i: int,
          trained: Mapping[str, Recommender]) -> Recommender:
    """The named target for ``env``; stochastic ones draw from their own seeded generator."""
    if name == "random":
        return EpsilonSlate(agents.make("random", env, seed=derived_seed(cfg, TARGET, i)), epsilon=1.0,
                            seed=derived_seed(cfg, TARGET, 100 + i))
    if name == "soft_heuristic":
        return EpsilonSlate(agents.make("heuristic", env), epsilon=SOFT_EPSILON, seed=derived_seed(cfg, TARGET, 100 + i))
    if name == "slateq":
        return trained["slateq"]
    return agents.make(name, env)


# -- truths ----------------------------------------------------------------------------------------------
def online_truth(agent: Recommender, cfg: SlateOpeConfig) -> dict[str, Any]:
    """Mean reward per step over one episode of each of ``truth_users`` fresh users, with a bootstrap
    interval of the ratio (users resampled)."""
    env = make_env(cfg.truth_users)
    start = time.perf_counter()
    stats = agents.evaluate(agent, env, seed=derived_seed(cfg, TRUTH))
    returns, lengths = stats.returns.astype(np.float64), stats.lengths.astype(np.float64)
    rng = np.random.default_rng(derived_seed(cfg, BOOTSTRAP, 1))
    n = len(returns)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=cfg.n_bootstrap).astype(np.float64)
    resampled = np.einsum("bn,n->b", counts, returns) / np.einsum("bn,n->b", counts, lengths)
    alpha = (1.0 - cfg.confidence) / 2.0
    low, high = np.quantile(resampled, [alpha, 1.0 - alpha])
    return {"value": float(returns.sum() / lengths.sum()), "low": float(low), "high": float(high),
            "n_users": n, "user_steps": int(lengths.sum()), "seed": derived_seed(cfg, TRUTH),
            "seconds": time.perf_counter() - start}


def logged_truth(sim: Simulator, log: SlateLog, marginals: np.ndarray) -> float:
    """Exact mean over the logged steps of the target's expected slate reward, from the logged true state.

    A deterministic target (one-hot at every position) is scored on its one slate; otherwise every
    ``N^K`` slate of candidate indices is weighted by its probability ``prod_k pi_k(s_k)``, from the
    candidates' item terms computed once per step (as ``recsim_env.slates.best_slates`` does).
    """
    r, k, n = marginals.shape
    if np.isin(marginals, (0.0, 1.0)).all():
        items = np.take_along_axis(log.candidates, marginals.argmax(axis=2), axis=1)[:, None, :]
        return float(slate_expected_reward(sim, items, log.interest, log.satiation).astype(np.float64).mean())
    table = np.array(list(product(range(n), repeat=k)), np.int64)
    scores, gains = item_terms(sim, log.candidates, log.interest, log.satiation)
    step = max(1, CHUNK_STEP_SLATES // len(table))
    total = 0.0
    for start in range(0, r, step):
        rows = slice(start, min(start + step, r))
        value = _slate_values(scores[rows][:, table], gains[rows][:, table],
                              _table_duplicates(table, log.candidates[rows]), sim)
        weight = np.prod(marginals[rows][:, np.arange(k), table], axis=2)
        total += float((weight * value).sum())
    return total / r


# -- the run ---------------------------------------------------------------------------------------------
def _relative_error(estimate: float, truth: float) -> float:
    return abs(estimate - truth) / abs(truth) if truth != 0 else float("inf")


def run(cfg: SlateOpeConfig) -> dict[str, Any]:
    """Train what needs training, log, estimate every target, measure every truth."""
    seconds: dict[str, float] = {}
    begin = start = time.perf_counter()
    trained = {"slateq": train_slateq(cfg)} if "slateq" in cfg.targets else {}
    if trained:
        seconds["train_slateq"] = time.perf_counter() - start
    env = make_env(min(cfg.num_envs, cfg.users))
    behaviour = EpsilonSlate(agents.make(cfg.behaviour, env, **({"seed": derived_seed(cfg, BEHAVIOUR, 1)}
                                                                  if cfg.behaviour == "random" else {})),
                             epsilon=cfg.epsilon, seed=derived_seed(cfg, BEHAVIOUR))
    targets = {t: build(t, env, cfg, i, trained) for i, t in enumerate(cfg.targets)}
    start = time.perf_counter()
    log = collect_slate_log(env, behaviour, cfg.users, seed=derived_seed(cfg, LOG), policy_name=behaviour.name,
                            targets=targets)
    seconds["log"] = time.perf_counter() - start
    sim = env.unwrapped.simulator
    estimator_config = EstimatorConfig(confidence=cfg.confidence, n_bootstrap=cfg.n_bootstrap,
                                       seed=derived_seed(cfg, BOOTSTRAP))
    clipped_config = EstimatorConfig(confidence=cfg.confidence, n_bootstrap=cfg.n_bootstrap,
                                     seed=derived_seed(cfg, BOOTSTRAP), max_weight=cfg.max_weight) \
        if cfg.max_weight > 0 else None
    names = [*SLATE_ESTIMATORS, *([f"{e}_clip" for e in SLATE_ESTIMATORS] if clipped_config else [])]
    results: dict[str, Any] = {}
    for i, t in enumerate(cfg.targets):
        estimates = estimate_slate(log, t, estimator_config)
        if clipped_config is not None:
            estimates |= {f"{e}_clip": r for e, r in estimate_slate(log, t, clipped_config).items()}
        t0 = time.perf_counter()
        on_logged = logged_truth(sim, log, log.targets[t])
        seconds[f"logged_truth_{t}"] = time.perf_counter() - t0
        online = online_truth(build(t, make_env(cfg.truth_users), cfg, len(cfg.targets) + i, trained), cfg)
        seconds[f"online_truth_{t}"] = online["seconds"]
        rows = {}
        for e in names:
            r = estimates[e]
            rows[e] = {"estimate": r.estimate, "low": r.low, "high": r.high,
                       "relative_error_online": _relative_error(r.estimate, online["value"]),
                       "relative_error_logged": _relative_error(r.estimate, on_logged),
                       "covers_online": bool(r.low <= online["value"] <= r.high),
                       "covers_logged": bool(r.low <= on_logged <= r.high),
                       "effective_sample_size": r.effective_sample_size, "n_clipped": r.n_clipped,
                       "clipped": bool(r.clipped)}
        results[t] = {"truth": {"online": online, "logged": on_logged}, "estimators": rows}
    seconds["total"] = time.perf_counter() - begin
    summary = {e: {"median_relative_error_online": float(np.median([results[t]["estimators"][e]
                                                                     ["relative_error_online"] for t in results])),
                   "median_relative_error_logged": float(np.median([results[t]["estimators"][e]
                                                                     ["relative_error_logged"] for t in results])),
                   "covered_logged": int(sum(results[t]["estimators"][e]["covers_logged"] for t in results))}
               for e in names}
    return {"config": asdict(cfg), "env_id": ENV_ID, "behaviour": behaviour.name,
            "log": {"users": cfg.users, "steps": len(log), "seed": derived_seed(cfg, LOG),
                    "slate_size": log.slate_size, "n_candidates": int(log.candidates.shape[1]),
                    "mean_reward_per_step": float(log.reward.mean())},
            "estimators": {e: summary[e] for e in names}, "targets": results, "seconds": seconds}


# -- the report ------------------------------------------------------------------------------------------
def _fmt(x: float) -> str:
    return f"{x:.3f}" if math.isfinite(x) else str(x)


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%" if math.isfinite(x) else "inf"


def summary_lines(results: Mapping[str, Any]) -> list[str]:
    """Each estimator's median relative error and coverage, and the best of them (README and report)."""
    tg = results["targets"]
    lines = [("Median relative error over the targets (against the logged-context truth, then the online one), "
              "and how many targets' logged-context truth the interval covers:"), ""]
    for e, s in results["estimators"].items():
        lines.append(f"- {e}: {_pct(s['median_relative_error_logged'])} "
                     f"(online {_pct(s['median_relative_error_online'])}), covers {s['covered_logged']} of {len(tg)}")
    best = min(results["estimators"], key=lambda e: results["estimators"][e]["median_relative_error_logged"])
    always = [e for e, s in results["estimators"].items() if s["covered_logged"] == len(tg)]
    return lines + ["", (f"The lowest median error against the logged-context truth is {best}'s; "
                         f"{', '.join(always) if always else 'no estimator'} covered it for every target. Only IPS is "
                         "unbiased for the env's conditional-logit clicks; IIPS and PI assume additive per-position "
                         "rewards and RIPS a cascade, trading that bias for far smaller weights.")]


def report(results: Mapping[str, Any]) -> str:
    """``results.md``: the table and sentences computed from the numbers."""
    cfg, lg, tg = results["config"], results["log"], results["targets"]
    conf = _pct(cfg["confidence"])
    intro = (f"Log: {lg['users']:,} users ({lg['steps']:,} steps, seed {lg['seed']}) under {results['behaviour']}, "
             f"slates of {lg['slate_size']} positions over {lg['n_candidates']} candidates, positions drawn "
             f"independently. Online truth: mean reward per step over one episode of each of "
             f"{cfg['truth_users']:,} fresh users, {conf} bootstrap interval. Logged-context truth: the exact "
             "expected slate reward of the target at every logged step, from the logged true state.")
    header = (f"| target | estimator | estimate [{conf} CI] | online truth | logged-context truth | "
              "rel. error (online) | rel. error (logged) | ESS | clipped |")
    lines = [f"# Slate off-policy evaluation on {results['env_id']}", "", intro, "", header,
             "|---|---|---|---|---|---|---|---|---|"]
    for t, row in tg.items():
        on, logged = row["truth"]["online"], row["truth"]["logged"]
        for e, r in row["estimators"].items():
            lines.append(f"| {t} | {e} | {_fmt(r['estimate'])} [{_fmt(r['low'])}, {_fmt(r['high'])}] | "
                         f"{_fmt(on['value'])} [{_fmt(on['low'])}, {_fmt(on['high'])}] | {_fmt(logged)} | "
                         f"{_pct(r['relative_error_online'])} | {_pct(r['relative_error_logged'])} | "
                         f"{r['effective_sample_size']:,.0f} | {r['n_clipped']} |")
    lines += ["", *summary_lines(results), "",
              (f"Wall time: {results['seconds']['total']:.0f} s on one torch thread "
               f"({', '.join(f'{k} {v:.1f} s' for k, v in results['seconds'].items() if k != 'total')})."), ""]
    return "\n".join(lines)


def plot(results: Mapping[str, Any], out: Path) -> Path:
    """``estimate_vs_truth.png``: every (target, estimator) estimate with its interval against each truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tg, names = results["targets"], list(results["estimators"])
    colours, markers = plt.get_cmap("tab10"), "osD^vP*X"
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), squeeze=False)
    for ax, key, label in zip(axes[0], ("online", "logged"), ("online truth (fresh users)", "logged-context truth")):
        values = []
        for j, t in enumerate(tg):
            truth = tg[t]["truth"]["online"]["value"] if key == "online" else tg[t]["truth"]["logged"]
            for m, e in enumerate(names):
                r = tg[t]["estimators"][e]
                ax.errorbar(truth, r["estimate"], yerr=[[r["estimate"] - r["low"]], [r["high"] - r["estimate"]]],
                            fmt=markers[m % len(markers)], color=colours(j % 10), capsize=2, ms=5,
                            label=f"{e}" if j == 0 else None)
                values += [truth, r["estimate"]]
            ax.annotate(t, (truth, truth), textcoords="offset points", xytext=(4, -10), fontsize=8, color=colours(j % 10))
        lo, hi = min(0.0, min(values)), max(values) * 1.05 + 1e-9
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        ax.set_xlabel(label)
        ax.set_ylabel("estimate per step")
        ax.set_title(f"estimate vs {label}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = atomic_write(out / "estimate_vs_truth.png", lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)
    return path


# -- the command -----------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage block
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse_args(argv: list[str] | None) -> SlateOpeConfig:
    parser = _Parser(prog="python -m benchmarks.slate_ope", description=__doc__.splitlines()[0])
    d = SlateOpeConfig(out="")
    parser.add_argument("--out", required=True, help="folder for results.md, results.json and the plot")
    parser.add_argument("--users", type=int, default=d.users, help="users in the log")
    parser.add_argument("--targets", default=",".join(d.targets), help=f"comma-separated subset of {','.join(TARGETS)}")
    parser.add_argument("--behaviour", default=d.behaviour, help=f"agent made epsilon-soft to log: {', '.join(BEHAVIOURS)}")
    parser.add_argument("--epsilon", type=float, default=d.epsilon)
    parser.add_argument("--truth-users", type=int, default=d.truth_users)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--num-envs", type=int, default=d.num_envs)
    parser.add_argument("--n-bootstrap", type=int, default=d.n_bootstrap)
    parser.add_argument("--confidence", type=float, default=d.confidence)
    parser.add_argument("--max-weight", type=float, default=d.max_weight,
                        help="also report every estimator with |weights| clipped at this (0: not)")
    parser.add_argument("--train-steps", type=int, default=d.train_steps, help="user-steps to train slateq on")
    args = vars(parser.parse_args(argv))
    args["targets"] = tuple(t.strip() for t in args["targets"].split(",") if t.strip())
    try:
        return SlateOpeConfig(**args)
    except (TypeError, ValueError) as err:  # name the option the user typed, not the field
        message = str(err).removeprefix(f"{SlateOpeConfig.__name__}.")
        name = message.split("=")[0].split(" ")[0]
        parser.error(f"--{name.replace('_', '-')}{message[len(name):]}")
        raise  # unreachable: error exits


def main(argv: list[str] | None = None) -> int:
    import torch

    torch.set_num_threads(1)
    cfg = parse_args(argv)
    results = run(cfg)
    out = Path(cfg.out)
    text = report(results)
    atomic_write_text(out / "results.json", json.dumps(results, indent=2))
    atomic_write_text(out / "results.md", text)
    plot(results, out)
    print(text)
    print(f"wrote {out / 'results.md'}, results.json and estimate_vs_truth.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
