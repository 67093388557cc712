"""Repeated retraining: deploy a model, log what users did under it, retrain on that log, redeploy.

    python -m benchmarks.feedback_loop [--learners lstm] [--rounds 5] [--seeds 0,1,2,3,4]
                                       [--log-steps 40000] [--eval-users 500] [--rl-steps 100000]
                                       [--finetune-encoder transformer] [--out results/feedback_loop]

Round 0 is the logging policy (``myopic``) that produced the first log. In round ``r >= 1`` the
learner is fitted on the log of round ``r - 1`` (fresh users each round, never the held-out ones),
deployed, and measured on the same held-out users every round: long-term return, catalogue-wide log
accuracy on a fixed held-out log (HR@10), the share of the catalogue shown (coverage), the Gini of
item exposure, and how alike the held-out users' interests are by the end of their episodes
(``recsim_env.diversity.interest_summary``). Then it logs the next round's users. A model trained on
what it caused sees only what it showed, so a narrowing loop shows up as falling coverage, rising
Gini and users whose interests converge.

The ``finetuned`` learner is the RL recommender in the same loop: each round it pre-trains the DQN's
choice model (:mod:`agents.pretrain`) on the previous round's log, with the observations rebuilt from
the log (:func:`recsim_env.logs.steps.steps_from_log`), copies its towers into a DQN as :mod:`benchmarks.finetune` does, fine-tunes
that DQN by RL for ``--rl-steps`` user-steps on training users of its own seed stream (never the logged or
held-out ones) and deploys its greedy policy.

Every (learner, seed, round) is stored in ``OUT/work`` as it finishes (atomically), so an interrupted
run resumes where it stopped. ``OUT/results.md`` (sentences computed from the numbers),
``OUT/results.json`` and ``OUT/rounds.png``/``.svg`` follow.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

import agents
import recsim_env  # noqa: F401  (registers the env ids)
from agents.base import Recommender
from agents.dqn import DQNAgent, DQNConfig
from agents.evaluation import evaluate
from agents.log_accuracy import log_accuracy
from agents.pretrain import PretrainConfig, Pretrained, init_from_pretrained, pretrain
from agents.q_networks import ENCODERS
from benchmarks.finetune import FinetuneConfig
from benchmarks.results import write_results
from benchmarks.stats import Interval, bootstrap_interval
from recsim_env.config import Validated, bounded
from recsim_env.diversity import coverage, exposure_counts, gini, interest_summary
from recsim_env.io import atomic_write_text, progress_enabled
from recsim_env.logs import InteractionLog, LoggedSteps, collect_log, collect_steps, leave_last_out, read_log, write_log
from recsim_env.logs.steps import steps_from_log

#: The per-round measures, in the order tables and plots show them: (key, label, decimals).
MEASURES = (("return", "return", 1), ("log_HR@10", "log HR@10", 4), ("coverage", "coverage", 3),
            ("gini", "exposure Gini", 3), ("favourite_topic_entropy", "favourite-topic entropy", 3),
            ("mean_cosine", "interest cosine", 3))
#: The policy that logs round 0.
LOGGING_POLICY = "myopic"
#: What ``finetuned`` takes from the fine-tuning benchmark: its default encoder, pair layers copied,
#: pre-training epochs and the users a DQN steps together.
FINETUNE_DEFAULTS = FinetuneConfig()
#: Root of the seed stream of the fine-tuned DQNs' training users (and initial weights).
RL_SEED = 4_000_000


@dataclass(frozen=True)
class LoopConfig(Validated):
    """How many rounds, seeds and users; every learner gets the same logs' budget."""

    learners: tuple[str, ...] = ("lstm",)
    rounds: int = bounded(5, ge=1, le=100, doc="retraining rounds after the logging policy's")
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    log_steps: int = bounded(40_000, ge=100, le=10**9, doc="user-steps in each round's training log")
    eval_users: int = bounded(500, ge=2, le=1_000_000, doc="held-out users measured every round")
    accuracy_users: int = bounded(300, ge=2, le=1_000_000, doc="held-out users of the fixed accuracy log")
    epochs: int = bounded(3, ge=1, le=1000, doc="most epochs of each fit of a next-item model")
    rl_steps: int = bounded(100_000, ge=1_000, le=10**10, doc="RL user-steps of each fine-tuning (finetuned)")
    finetune_encoder: str = FINETUNE_DEFAULTS.encoder
    env_id: str = "recsim_env/InterestDrift-v0"
    out: str = "results/feedback_loop"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.finetune_encoder not in ENCODERS:
            raise ValueError(f"LoopConfig.finetune_encoder={self.finetune_encoder!r}: allowed "
                             f"{', '.join(map(repr, ENCODERS))}")
        unknown = [name for name in self.learners if name not in LEARNERS]
        if not self.learners or unknown:
            raise ValueError(f"LoopConfig.learners={self.learners!r}: allowed {', '.join(LEARNERS)}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ValueError(f"LoopConfig.seeds={self.seeds!r} must be distinct non-negative integers")


def _env(cfg: LoopConfig, users: int) -> gym.vector.VectorEnv:
    return gym.make_vec(cfg.env_id, num_envs=users, vectorization_mode="vector_entry_point")


def fit_next_item_model(kind: str) -> Callable[[InteractionLog, gym.vector.VectorEnv, LoopConfig, int], Recommender]:
    """A learner that fits next-item model ``kind`` on a log as the benchmark suite does, then acts with it."""
    def fit(log: InteractionLog, env: gym.vector.VectorEnv, cfg: LoopConfig, seed: int) -> Recommender:
        from agents.sequential.checkpoint import fit as fit_model
        from agents.sequential.policy import SequentialPolicy
        from agents.sequential.training import TrainConfig
        from benchmarks.runner import SEQUENTIAL_MODELS, SEQUENTIAL_TRAINING

        split = leave_last_out(log.to_sequences())
        train_config = TrainConfig(**{**SEQUENTIAL_TRAINING, "epochs": cfg.epochs, "seed": seed,
                                      "exclude_history": False})
        trained, _ = fit_model(kind, split.train, split.valid, SEQUENTIAL_MODELS.get(kind), train_config,
                               progress=False)
        return SequentialPolicy(env, trained)

    return fit


def pretrain_on_log(log: InteractionLog, env: gym.vector.VectorEnv, cfg: LoopConfig, seed: int) -> Pretrained:
    """The DQN's choice model fitted on what the logged users did (the architecture of the DQN it seeds)."""
    config = PretrainConfig(hidden=DQNConfig().hidden, encoder=cfg.finetune_encoder,
                            epochs=FINETUNE_DEFAULTS.pretrain_epochs, seed=seed)
    return pretrain(steps_from_log(log, env), env.unwrapped.layout, config, progress=False)


def initialised_dqn(env: gym.vector.VectorEnv, pretrained: Pretrained, cfg: LoopConfig, rl_seed: int) -> DQNAgent:
    """A DQN configured as :mod:`benchmarks.finetune` trains one, its towers copied from ``pretrained``."""
    config = DQNConfig(total_steps=cfg.rl_steps, seed=rl_seed, learning_starts=min(20_000, cfg.rl_steps // 4),
                       checkpoint_replay=False, encoder=cfg.finetune_encoder)
    agent = DQNAgent(env, config=config)
    init_from_pretrained(agent, pretrained, FINETUNE_DEFAULTS.pair)
    return agent


def fine_tune(agent: DQNAgent, env: gym.vector.VectorEnv) -> DQNAgent:
    """Train ``agent`` by RL on ``env`` for its config's user-steps, from where its weights are now."""
    from agents.training import run as train

    train(agent, env, None, progress=False, resume=False)
    return agent


def fit_finetuned(log: InteractionLog, env: gym.vector.VectorEnv, cfg: LoopConfig, seed: int) -> Recommender:
    """Pre-train on the log, initialise a DQN from it, fine-tune it by RL, deploy it greedy.

    The DQN's users (and initial weights) come from a stream keyed by the seed and the log's own seed,
    so every round trains on fresh users, none of them logged or held out.
    """
    rl_seed = int(np.random.SeedSequence([RL_SEED, seed, int(log.metadata.get("seed", 0))]).generate_state(1)[0])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small networks: threads add overhead, and the numbers stay the same everywhere
    try:
        pretrained = pretrain_on_log(log, env, cfg, seed)
        train_env = _env(cfg, FINETUNE_DEFAULTS.train_users)
        return fine_tune(initialised_dqn(train_env, pretrained, cfg, rl_seed), train_env)
    finally:
        torch.set_num_threads(threads)


#: Learners the loop retrains: a function of the previous round's log.
LEARNERS: dict[str, Callable[[InteractionLog, gym.vector.VectorEnv, LoopConfig, int], Recommender]] = {
    **{kind: fit_next_item_model(kind) for kind in ("lstm", "gcn", "transformer", "popularity")},
    "finetuned": fit_finetuned,
}


def measure(policy: Recommender, cfg: LoopConfig, seed: int, accuracy_steps: LoggedSteps) -> dict[str, float]:
    """Every per-round measure of ``policy`` on the held-out users of ``seed``."""
    env = _env(cfg, cfg.eval_users)
    eval_seed = 1_000_000 + seed
    stats = evaluate(policy, env, seed=eval_seed)
    steps = collect_steps(env, policy, seed=eval_seed)
    last = np.flatnonzero(np.r_[steps.user[1:] != steps.user[:-1], True])  # each user's final step
    counts = exposure_counts(steps.shown, steps.n_items)
    out = {"return": float(stats.returns.mean()), "coverage": coverage(counts), "gini": gini(counts),
           **interest_summary(steps.interest[last])}
    try:
        out["log_HR@10"] = log_accuracy(policy, accuracy_steps).metrics["HR@10"]
    except NotImplementedError:
        out["log_HR@10"] = float("nan")
    return out


def _cell(work: Path, learner: str, seed: int, round_: int) -> Path:
    return work / f"{learner}__seed{seed}__round{round_}.json"


def _log_path(work: Path, learner: str, seed: int, round_: int) -> Path:
    return work / f"{learner}__seed{seed}__round{round_}.log.parquet"


def run_learner(cfg: LoopConfig, learner: str, seed: int, work: Path, bar: tqdm) -> list[dict[str, float]]:
    """Rounds ``0..cfg.rounds`` of one learner and seed. Each round's measures and log are stored as they
    are made, so a resumed run refits only the round it stopped in (from the stored log before it)."""
    accuracy_env = _env(cfg, cfg.accuracy_users)
    accuracy_steps = collect_steps(accuracy_env, agents.make(LOGGING_POLICY, accuracy_env), seed=2_000_000 + seed)
    log_env = _env(cfg, min(cfg.log_steps, 1000))

    def deployed(round_: int) -> Recommender:
        if round_ == 0:
            return agents.make(LOGGING_POLICY, log_env)
        return LEARNERS[learner](read_log(_log_path(work, learner, seed, round_ - 1)), log_env, cfg, seed)

    rows = []
    for round_ in range(cfg.rounds + 1):
        cell, log_path = _cell(work, learner, seed, round_), _log_path(work, learner, seed, round_)
        needs_log = round_ < cfg.rounds and not log_path.exists()
        policy = deployed(round_) if needs_log or not cell.exists() else None
        if cell.exists():
            rows.append(json.loads(cell.read_text(encoding="utf-8")))
        else:
            rows.append(measure(policy, cfg, seed, accuracy_steps))
            atomic_write_text(cell, json.dumps(rows[-1]))
        if needs_log:  # the users of the next round's training log: fresh, never the held-out ones
            log = collect_log(log_env, policy, None, seed=20_000 + 1_000 * seed + round_, progress=False,
                              n_steps=cfg.log_steps)
            write_log(log_path, log)
        bar.update(1)
    return rows


def summarise(cells: dict[str, list[list[dict[str, float]]]]) -> dict[str, Any]:
    """Per learner, round and measure: the mean over seeds with a bootstrap interval over seeds, and two
    changes with their intervals: over the whole loop (the logging policy's round 0 to the last round)
    and over the retraining alone (round 1, the first fitted model, to the last)."""
    out: dict[str, Any] = {}
    for learner, per_seed in cells.items():
        table = {key: np.array([[row[key] for row in rows] for rows in per_seed]) for key, _, _ in MEASURES}
        out[learner] = {}
        for key, values in table.items():
            last = values.shape[1] - 1
            out[learner][key] = {
                "rounds": [asdict(_interval(values[:, r])) for r in range(values.shape[1])],
                "loop": asdict(_interval(values[:, last] - values[:, 0])),
                "retraining": asdict(_interval(values[:, last] - values[:, 1])) if last >= 2 else None}
    return out


def _interval(values: np.ndarray) -> Interval:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    if values.size == 1:  # one seed: nothing to resample
        return Interval(float(values[0]), float("nan"), float("nan"))
    return bootstrap_interval(values)


def _trend(change: dict[str, float] | None, up: str, down: str) -> str:
    if change is None:
        return "not measured (fewer than two retrained rounds)"
    if not np.isfinite(change["low"]):
        return f"moved by {change['estimate']:+.3f} (one seed: no interval)"
    if change["low"] > 0:
        return f"{up} ({change['estimate']:+.3f} [{change['low']:+.3f}, {change['high']:+.3f}])"
    if change["high"] < 0:
        return f"{down} ({change['estimate']:+.3f} [{change['low']:+.3f}, {change['high']:+.3f}])"
    return f"did not move beyond its interval ({change['estimate']:+.3f} [{change['low']:+.3f}, {change['high']:+.3f}])"


def _moves(measures: dict[str, Any], span: str) -> str:
    return ", ".join(f"{label} {_trend(measures[key][span], 'rose', 'fell')}" for key, label in
                     (("coverage", "coverage"), ("gini", "exposure Gini"),
                      ("favourite_topic_entropy", "the entropy of users' favourite topics"),
                      ("mean_cosine", "the mean cosine of their interests")))


def _verdict(measures: dict[str, Any], span: str) -> str:
    """Narrowing is coverage falling or Gini rising, homogenising the favourite-topic entropy falling or the
    interest cosine rising, each with its interval over seeds clear of zero."""
    narrows = measures["gini"][span]["low"] > 0 or measures["coverage"][span]["high"] < 0
    alike = measures["mean_cosine"][span]["low"] > 0 or measures["favourite_topic_entropy"][span]["high"] < 0
    return ("exposure narrows" if narrows else "exposure does not narrow measurably") + \
        (" and users' interests homogenise" if alike else ", and users' interests do not homogenise measurably")


def findings(summary: dict[str, Any], cfg: LoopConfig) -> list[str]:
    """Sentences computed from the summary: does each learner's loop narrow exposure or homogenise users?

    The first verdict reads the whole loop (round 0 to the last), the second the retraining rounds alone
    (round 1 to the last), where the change of policy from the logging one is left out. The fine-tuned
    learner gets a line of its own: it also learns from fresh users by RL, so its return can move for
    reasons a next-item model's cannot."""
    sentences = []
    for learner, m in summary.items():
        returns = [m["return"]["rounds"][i]["estimate"] for i in (0, 1, -1)]
        text = (f"{learner}: return {returns[0]:.1f} under the logging policy, {returns[1]:.1f} in round 1 and "
                f"{returns[2]:.1f} in round {cfg.rounds}. From the logging policy to round {cfg.rounds}, "
                f"{_moves(m, 'loop')}.")
        if m["coverage"]["retraining"] is not None:
            text += f" Over the retraining rounds alone (1 to {cfg.rounds}), {_moves(m, 'retraining')}."
        text += f" So {_verdict(m, 'loop')}."
        if m["coverage"]["retraining"] is not None:
            text += f" Over the retraining rounds alone, {_verdict(m, 'retraining')}."
        sentences.append(text)
        if learner == "finetuned":
            text = (f"finetuned is a DQN ({cfg.finetune_encoder} encoder) initialised each round from a choice model "
                    f"pre-trained on the previous round's log, then trained by RL for {cfg.rl_steps:,} user-steps on "
                    f"fresh users, so each round it also sees items its log never showed: its return "
                    f"{_trend(m['return']['loop'], 'rose', 'fell')} from the logging policy to round {cfg.rounds}")
            if m["return"]["retraining"] is not None:
                text += f" and {_trend(m['return']['retraining'], 'rose', 'fell')} over the retraining rounds"
            sentences.append(text + ".")
    return sentences


def report(summary: dict[str, Any], cfg: LoopConfig) -> str:
    lines = [f"# Repeated retraining on {cfg.env_id}", "",
             (f"Round 0 is the `{LOGGING_POLICY}` logging policy; each later round refits the learner on the "
              f"previous round's log ({cfg.log_steps:,} user-steps of fresh users) and measures it on the same "
              f"{cfg.eval_users:,} held-out users. Mean over seeds {', '.join(map(str, cfg.seeds))} "
              "[95% bootstrap interval over seeds]."), ""]
    lines += [f"- {s}" for s in findings(summary, cfg)] + [""]
    for learner, measures in summary.items():
        lines += [f"## {learner}", "", "| round | " + " | ".join(label for _, label, _ in MEASURES) + " |",
                  "|---|" + "---|" * len(MEASURES)]
        for r in range(cfg.rounds + 1):
            cells = []
            for key, _, decimals in MEASURES:
                i = measures[key]["rounds"][r]
                interval = f" [{i['low']:.{decimals}f}, {i['high']:.{decimals}f}]" if np.isfinite(i["low"]) else ""
                cells.append(f"{i['estimate']:.{decimals}f}{interval}")
            lines.append(f"| {r}{' (logging policy)' if r == 0 else ''} | " + " | ".join(cells) + " |")
        lines.append("")
    lines.append("![rounds](rounds.png)")
    return "\n".join(lines) + "\n"


def plot_rounds(summary: dict[str, Any], out: Path) -> None:
    import matplotlib.pyplot as plt

    from benchmarks.plots import save_png_svg

    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5))
    for ax, (key, label, _) in zip(axes.ravel(), MEASURES):
        for learner, measures in summary.items():
            rounds = measures[key]["rounds"]
            x = np.arange(len(rounds))
            est = np.array([i["estimate"] for i in rounds])
            ax.plot(x, est, marker="o", label=learner)
            ax.fill_between(x, [i["low"] for i in rounds], [i["high"] for i in rounds], alpha=0.2)
        ax.set_title(label)
        ax.set_xlabel("round (0 = logging policy)")
        ax.set_xticks(x)
    axes[0, 0].legend()
    fig.tight_layout()
    save_png_svg(fig, out, "rounds")


def run(cfg: LoopConfig, progress: bool | None = None) -> dict[str, Any]:
    out = Path(cfg.out)
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    record = out / "config.json"
    saved = json.loads(record.read_text(encoding="utf-8")) if record.exists() else None
    mine = {k: v for k, v in asdict(cfg).items() if k not in ("out", "learners", "seeds")}
    if saved is not None:  # a record from before a setting existed was made at that setting's default
        defaults = {f.name: f.default for f in fields(LoopConfig)}
        changed = sorted(k for k in mine if saved.get(k, defaults[k]) != mine[k])
        if changed:
            raise ValueError(f"{out} holds rounds made with other settings ({', '.join(changed)}); use another --out")
    atomic_write_text(record, json.dumps(mine, indent=2))
    total = len(cfg.learners) * len(cfg.seeds) * (cfg.rounds + 1)
    with tqdm(total=total, desc="rounds", disable=not progress_enabled(progress)) as bar:
        cells = {learner: [run_learner(cfg, learner, seed, work, bar) for seed in cfg.seeds] for learner in cfg.learners}
    summary = summarise(cells)
    result = {"config": asdict(cfg), "summary": summary, "findings": findings(summary, cfg)}
    write_results(out, result, report(summary, cfg))
    plot_rounds(summary, out)
    return result


def parse_args(argv: list[str] | None) -> LoopConfig:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.feedback_loop", description=__doc__.splitlines()[0])
    parser.add_argument("--learners", default="lstm", help=f"comma-separated, from {', '.join(LEARNERS)}")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--log-steps", type=int, default=40_000)
    parser.add_argument("--eval-users", type=int, default=500)
    parser.add_argument("--accuracy-users", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rl-steps", type=int, default=LoopConfig.rl_steps,
                        help="RL user-steps of each fine-tuning (learner finetuned)")
    parser.add_argument("--finetune-encoder", default=LoopConfig.finetune_encoder,
                        help=f"user encoder of the fine-tuned DQN: {', '.join(ENCODERS)}")
    parser.add_argument("--out", default="results/feedback_loop")
    args = parser.parse_args(argv)
    try:
        seeds = tuple(int(s) for s in args.seeds.split(","))
    except ValueError:
        parser.error(f"--seeds {args.seeds!r}: expected comma-separated integers")
    try:
        return LoopConfig(learners=tuple(args.learners.split(",")), rounds=args.rounds, seeds=seeds,
                          log_steps=args.log_steps, eval_users=args.eval_users, accuracy_users=args.accuracy_users,
                          epochs=args.epochs, rl_steps=args.rl_steps, finetune_encoder=args.finetune_encoder,
                          out=args.out)
    except (TypeError, ValueError) as err:
        parser.error(str(err))


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    try:
        result = run(cfg)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print("\n".join(result["findings"]))
    print(f"wrote {Path(cfg.out) / 'results.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
