"""Does pre-training a sequence model on a log make DQN learn faster? Scratch vs fine-tuned at equal RL steps.

Per seed: a choice model with the DQN's own architecture (:mod:`agents.pretrain`) is fitted on the
logged steps of other users under the ``myopic`` policy; then, at the same RL budget of ``--steps``
user-steps, a DQN from scratch and a DQN whose user encoder and item tower start from the
pre-trained model are trained, and the frozen pre-trained model acts on its own (the candidate with
the highest click logit). All three are evaluated on the same held-out users. The greedy policy of
each DQN is also evaluated on validation users at regular points of training (exploration off), so
the learning curves say how many user-steps the fine-tuned DQN needs to reach the scratch DQN's
final return. ``--compare-encoders`` adds DQNs from scratch with the other user encoders.

    python -m benchmarks.finetune [--seeds 5] [--steps 500000] [--pretrain-users 5000]
        [--encoder transformer|gru|mlp] [--pair first] [--compare-encoders] --out DIR

Users never overlap: the pre-training log is the users of ``10_000 + seed`` (as the suite's logs),
the choice model's held-out log those of ``2_000_000 + seed``, the learning-curve users those of
``3_000_000 + seed``, the DQNs' own training users come from their seed, and every agent of a seed
is evaluated on the users of ``1_000_000 + seed``, as in :mod:`benchmarks.runner`. Each finished
seed is stored in ``DIR/seeds/`` and not redone; writes are atomic. Writes ``DIR/results.md``
(sentences computed from the numbers), ``results.json`` and ``learning_curves.png`` / ``.svg``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import agents
import recsim_env  # noqa: F401  (registers the env ids)
from agents.dqn import DQNAgent, DQNConfig
from agents.evaluation import evaluate
from agents.pretrain import (
    PAIR_LAYERS,
    ChoicePolicy,
    PretrainConfig,
    build_network,
    choice_metrics,
    init_from_pretrained,
    pretrain,
)
from agents.q_networks import ENCODERS
from benchmarks.stats import Interval, interval_of, seeds_and_users_samples, stratified_iqm
from recsim_env.io import atomic_write_text, progress_enabled
from recsim_env.logs.steps import collect_steps

PLOT_NAME = "learning_curves"
#: Seeds of each kind of user, offset by the run seed (the held-out users are the suite's).
PRETRAIN_SEED, CHOICE_SEED, EVAL_SEED, CURVE_SEED = 10_000, 2_000_000, 1_000_000, 3_000_000
#: Users of the choice model's held-out log.
CHOICE_USERS = 500
#: Colours of the other encoders' scratch curves in the plot.
ENCODER_COLORS = {"mlp": "#2ca02c", "gru": "#9467bd", "transformer": "#ff7f0e"}


@dataclass(frozen=True)
class FinetuneConfig:
    """Command-line options; validated on construction so that library callers get the same errors."""

    seeds: int = 5
    first_seed: int = 0
    steps: int = 500_000
    pretrain_users: int = 5_000
    pretrain_epochs: int = 5
    encoder: str = "transformer"
    pair: str = "first"
    eval_users: int = 2_000
    curve_users: int = 500
    curve_points: int = 10
    train_users: int = 256
    compare_encoders: bool = False
    env_id: str = "recsim_env/InterestDrift-v0"
    out: str = "results/finetune"

    def __post_init__(self) -> None:
        checks = {"seeds": (2 <= self.seeds <= 1000, "[2, 1000] (the intervals need two seeds)"), "first_seed": (self.first_seed >= 0, ">= 0"),
                  "steps": (1_000 <= self.steps <= 10**10, "[1000, 10000000000]"),
                  "pretrain_users": (2 <= self.pretrain_users <= 1_000_000, "[2, 1000000]"),
                  "pretrain_epochs": (1 <= self.pretrain_epochs <= 10_000, "[1, 10000]"),
                  "encoder": (self.encoder in ENCODERS, ", ".join(ENCODERS)),
                  "pair": (self.pair in PAIR_LAYERS, ", ".join(PAIR_LAYERS)),
                  "eval_users": (2 <= self.eval_users <= 1_000_000, "[2, 1000000]"),
                  "curve_users": (2 <= self.curve_users <= 1_000_000, "[2, 1000000]"),
                  "curve_points": (1 <= self.curve_points <= 1000, "[1, 1000]"),
                  "train_users": (1 <= self.train_users <= self.steps, f"[1, steps={self.steps}]")}
        for name, (ok, allowed) in checks.items():
            if not ok:
                raise ValueError(f"{name}={getattr(self, name)!r} is out of range: allowed {allowed}")

    def run_key(self) -> dict[str, Any]:
        """What a stored seed must agree on to be reused (everything but the seed count and the folder)."""
        return {k: v for k, v in asdict(self).items() if k not in ("seeds", "first_seed", "out")}


def _vec(cfg: FinetuneConfig, users: int) -> gym.vector.VectorEnv:
    return gym.make_vec(cfg.env_id, num_envs=users, vectorization_mode="vector_entry_point")


class CurveDQN(DQNAgent):
    """A DQN that evaluates its greedy policy on fixed validation users at given user-steps of training.

    The evaluation runs in a separate env and draws no random numbers of training, so the agent
    trains exactly as a plain :class:`~agents.dqn.DQNAgent` with the same config does.
    """

    def __init__(self, env: gym.vector.VectorEnv, config: DQNConfig, curve_env: gym.vector.VectorEnv,
                 curve_seed: int, at: np.ndarray):
        super().__init__(env, config=config)
        self._curve_env, self._curve_seed, self._at = curve_env, curve_seed, list(at)
        self._users, self._done = env.num_envs, 0
        self.curve: list[tuple[int, float]] = []

    def measure(self, steps: int | None = None) -> None:
        """Record the greedy policy's mean return on the validation users now (after ``steps`` user-steps,
        by default those this agent has explored)."""
        if steps is not None:
            self._done = steps
        stats = evaluate(self, self._curve_env, seed=self._curve_seed)
        self.curve.append((self._done, float(stats.returns.mean())))

    def explore(self, obs: np.ndarray, epsilon: float, rng: np.random.Generator) -> np.ndarray:
        while self._at and self._done >= self._at[0]:
            self._at.pop(0)
            self.measure()
        self._done += self._users
        return super().explore(obs, epsilon, rng)


def _train_dqn(cfg: FinetuneConfig, seed: int, encoder: str, pretrained: Any = None) -> dict[str, Any]:
    """Train one DQN (fine-tuned when ``pretrained`` is given) and return its curve, returns and time."""
    from agents.training import run

    config = DQNConfig(total_steps=cfg.steps, seed=seed, learning_starts=min(20_000, cfg.steps // 4),
                       checkpoint_replay=False, encoder=encoder)
    train_env = _vec(cfg, cfg.train_users)
    at = np.linspace(0, cfg.steps, cfg.curve_points + 1)[:-1]
    agent = CurveDQN(train_env, config, _vec(cfg, cfg.curve_users), CURVE_SEED + seed, at)
    copied = init_from_pretrained(agent, pretrained, cfg.pair) if pretrained is not None else []
    start = time.perf_counter()
    result = run(agent, train_env, None, progress=False, resume=False)
    agent.measure(result.steps)
    wall = time.perf_counter() - start
    eval_env = _vec(cfg, cfg.eval_users)
    returns = evaluate(agent, eval_env, seed=EVAL_SEED + seed).returns
    steps, values = zip(*agent.curve)
    return {"curve_steps": list(steps), "curve_return": list(values), "returns": returns.tolist(),
            "train_steps": result.steps, "train_seconds": wall, "copied": copied}


def run_seed(cfg: FinetuneConfig, seed: int, progress: bool = False) -> dict[str, Any]:
    """One seed: pre-train, evaluate the frozen model, train scratch and fine-tuned DQNs (and the encoders)."""
    log_env = _vec(cfg, cfg.pretrain_users)
    start = time.perf_counter()
    steps = collect_steps(log_env, agents.make("myopic", log_env), seed=PRETRAIN_SEED + seed, policy_name="myopic")
    layout = log_env.unwrapped.layout
    pre_config = PretrainConfig(hidden=DQNConfig().hidden, encoder=cfg.encoder, epochs=cfg.pretrain_epochs, seed=seed)
    pretrained = pretrain(steps, layout, pre_config, progress=progress)
    choice_env = _vec(cfg, CHOICE_USERS)
    held_out = collect_steps(choice_env, agents.make("myopic", choice_env), seed=CHOICE_SEED + seed)
    pre_seconds = time.perf_counter() - start
    eval_env = _vec(cfg, cfg.eval_users)
    frozen = evaluate(ChoicePolicy(eval_env, pretrained), eval_env, seed=EVAL_SEED + seed).returns
    record: dict[str, Any] = {
        "seed": seed, "config": cfg.run_key(),
        "pretrain": {"log_steps": len(steps), "log_users": cfg.pretrain_users, "epochs_loss": pretrained.losses,
                     "seconds": pre_seconds, "held_out": choice_metrics(pretrained.network, held_out),
                     "held_out_untrained": choice_metrics(build_network(layout, pre_config), held_out)},
        "frozen": {"returns": frozen.tolist()},
        "scratch": _train_dqn(cfg, seed, cfg.encoder),
        "finetuned": _train_dqn(cfg, seed, cfg.encoder, pretrained),
    }
    if cfg.compare_encoders:
        record["encoders"] = {e: (record["scratch"] if e == cfg.encoder else _train_dqn(cfg, seed, e))
                              for e in ENCODERS}
    return record


def steps_to_reach(curve_steps: list[int], curve_return: list[float], target: float) -> float:
    """The first user-step count at which the curve reaches ``target`` (``inf`` if it never does)."""
    for step, value in zip(curve_steps, curve_return):
        if value >= target:
            return float(step)
    return float("inf")


def _returns_interval(runs: list[list[float]]) -> tuple[Interval, np.ndarray]:
    point, samples = seeds_and_users_samples(np.asarray(runs))
    return interval_of(point, samples), samples


def summarize(cfg: FinetuneConfig, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Intervals over seeds (and held-out users) of every return, the paired gap, and steps-to-match."""
    arms = {"scratch": [r["scratch"]["returns"] for r in records], "finetuned": [r["finetuned"]["returns"] for r in records],
            "frozen": [r["frozen"]["returns"] for r in records]}
    intervals, samples = {}, {}
    for name, runs in arms.items():
        intervals[name], samples[name] = _returns_interval(runs)
    # The same users and seeds give the same bootstrap draws, so the samples are paired.
    gaps = {"finetuned_minus_scratch": interval_of(intervals["finetuned"].estimate - intervals["scratch"].estimate,
                                                   samples["finetuned"] - samples["scratch"]),
            "finetuned_minus_frozen": interval_of(intervals["finetuned"].estimate - intervals["frozen"].estimate,
                                                  samples["finetuned"] - samples["frozen"])}
    reach = [steps_to_reach(r["finetuned"]["curve_steps"], r["finetuned"]["curve_return"],
                            r["scratch"]["curve_return"][-1]) for r in records]
    # The scratch DQN's own first arrival at its final return: the curves are not monotone, so this says
    # what "steps to match" can mean at all on them.
    own = [steps_to_reach(r["scratch"]["curve_steps"], r["scratch"]["curve_return"], r["scratch"]["curve_return"][-1])
           for r in records]
    reached = [s for s in reach if np.isfinite(s)]
    to_match = stratified_iqm(np.asarray(reached)) if len(reached) == len(reach) and len(reach) > 1 else None
    summary: dict[str, Any] = {
        "returns": {k: asdict(v) for k, v in intervals.items()}, "gaps": {k: asdict(v) for k, v in gaps.items()},
        "steps_to_match": {"per_seed": reach, "interval": asdict(to_match) if to_match else None,
                           "scratch_own_per_seed": own, "scratch_own": asdict(stratified_iqm(np.asarray(own)))
                           if len(own) > 1 else None},
        "pretrain": {key: _mean_of(records, "pretrain", key) for key in ("log_steps", "seconds")},
        "held_out_choice": {which: {m: float(np.mean([r["pretrain"][which][m] for r in records]))
                                    for m in ("cross_entropy", "accuracy")}
                            for which in ("held_out", "held_out_untrained")},
        "wall_seconds": {arm: _mean_of(records, arm, "train_seconds") for arm in ("scratch", "finetuned")},
    }
    if all("encoders" in r for r in records):
        summary["encoders"] = {}
        for e in ENCODERS:
            iv, _ = _returns_interval([r["encoders"][e]["returns"] for r in records])
            summary["encoders"][e] = {"return": asdict(iv), "train_seconds": float(np.mean(
                [r["encoders"][e]["train_seconds"] for r in records]))}
    summary["findings"] = findings(cfg, summary, len(records))
    return summary


def _mean_of(records: list[dict[str, Any]], arm: str, key: str) -> float:
    return float(np.mean([r[arm][key] for r in records]))


def _steps(iv: Interval) -> str:
    return f"{iv.estimate:,.0f} [{iv.low:,.0f}, {iv.high:,.0f}]"


def findings(cfg: FinetuneConfig, s: dict[str, Any], n_seeds: int) -> list[str]:
    """Sentences that state what the numbers say, including whether the bar is met."""
    ret = {k: Interval(**v) for k, v in s["returns"].items()}
    gap, gap_frozen = (Interval(**s["gaps"][k]) for k in ("finetuned_minus_scratch", "finetuned_minus_frozen"))

    def verdict(iv: Interval) -> str:
        if iv.low > 0:
            return "ahead, with the interval of the paired difference above 0"
        if iv.high < 0:
            return "behind, with the interval of the paired difference below 0"
        return "not separated: the interval of the paired difference contains 0"

    lines = [(f"At {cfg.steps:,} RL user-steps each ({n_seeds} seeds, {cfg.eval_users} held-out users per seed, "
              f"{cfg.encoder} encoder), the fine-tuned DQN earns {ret['finetuned']} per user and the DQN from "
              f"scratch {ret['scratch']}: fine-tuned minus scratch is {gap}, {verdict(gap)}."),
             (f"The frozen pre-trained model acting on its own (highest click logit) earns {ret['frozen']}; "
              f"fine-tuned minus frozen is {gap_frozen}, {verdict(gap_frozen)}.")]
    reach = s["steps_to_match"]
    hits = [x for x in reach["per_seed"] if np.isfinite(x)]
    if reach["interval"]:
        iv = Interval(**reach["interval"])
        lines.append(f"On the learning curves (greedy policy on {cfg.curve_users} validation users every "
                     f"{cfg.steps // cfg.curve_points:,} user-steps), the fine-tuned DQN first reaches the scratch "
                     f"DQN's final return after {_steps(iv)} user-steps (IQM over seeds), {iv.estimate / cfg.steps:.2f} of "
                     f"the budget; the scratch DQN itself first reaches it after "
                     f"{_steps(Interval(**reach['scratch_own']))} user-steps ({Interval(**reach['scratch_own']).estimate / cfg.steps:.2f}).")
    else:
        lines.append(f"On the learning curves the fine-tuned DQN reaches the scratch DQN's final return within the "
                     f"budget in {len(hits)} of {n_seeds} seeds.")
    # Half the user-steps the scratch DQN itself needed for its final return (not half the budget: a
    # curve that peaks early would make that trivial), intervals apart.
    half = bool(reach["interval"]) and bool(reach["scratch_own"]) and \
        Interval(**reach["interval"]).high <= 0.5 * Interval(**reach["scratch_own"]).low
    met = (gap.low > 0 or half) and gap_frozen.low > 0
    lines.append("The bar (fine-tuned ahead of scratch at equal user-steps, or at scratch's final return within half "
                 "the user-steps scratch itself needed for it, intervals apart, and ahead of the frozen model) is "
                 + ("met." if met else "not met: " + ", ".join(
                     [part for part, ok in (("not ahead of scratch at equal user-steps", gap.low > 0),
                                            ("not twice as fast to scratch's final return", half),
                                            ("not ahead of the frozen model", gap_frozen.low > 0)) if not ok]) + "."))
    held, untrained = s["held_out_choice"]["held_out"], s["held_out_choice"]["held_out_untrained"]
    lines.append(f"The choice model, pre-trained on {s['pretrain']['log_steps']:,.0f} logged steps of "
                 f"{cfg.pretrain_users:,} myopic-policy users, has held-out cross-entropy {held['cross_entropy']:.4f} "
                 f"(untrained twin {untrained['cross_entropy']:.4f}) and accuracy {held['accuracy']:.3f} "
                 f"({untrained['accuracy']:.3f}).")
    if "encoders" in s:
        parts = [f"{e} {Interval(**v['return'])} ({v['train_seconds']:.0f} s)" for e, v in s["encoders"].items()]
        lines.append("DQN from scratch by user encoder: " + ", ".join(parts) + ".")
    return lines


def plot_curves(cfg: FinetuneConfig, records: list[dict[str, Any]], out: Path) -> Path:
    """Greedy return on the validation users against RL user-steps: mean over seeds, thin lines per seed."""
    from benchmarks.plots import plt, save_png_svg

    fig, ax = plt.subplots(figsize=(7, 4.5))
    arms = [("scratch", "DQN from scratch", "#1f77b4"), ("finetuned", "DQN fine-tuned from the pre-trained model",
                                                         "#d62728")]
    for arm, label, color in arms:
        x = np.asarray(records[0][arm]["curve_steps"])
        ys = np.array([r[arm]["curve_return"] for r in records])
        for y in ys:
            ax.plot(x, y, color=color, alpha=0.25, lw=0.8)
        ax.plot(x, ys.mean(axis=0), color=color, lw=2, label=f"{label} (mean of {len(ys)} seeds)")
    if "encoders" in records[0]:
        for e in ENCODERS:
            if e != cfg.encoder:
                ys = np.array([r["encoders"][e]["curve_return"] for r in records])
                ax.plot(records[0]["encoders"][e]["curve_steps"], ys.mean(axis=0), lw=1.4, ls=":",
                        color=ENCODER_COLORS[e], label=f"DQN from scratch, {e} encoder")
    frozen = float(np.mean([np.mean(r["frozen"]["returns"]) for r in records]))
    ax.axhline(frozen, color="#555555", ls="--", lw=1.2, label="frozen pre-trained model (held-out users)")
    ax.set(xlabel="RL user-steps", ylabel="return per validation user (greedy)",
           title=f"Scratch vs fine-tuned DQN ({cfg.encoder} encoder)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_png_svg(fig, out, PLOT_NAME)


def report_markdown(cfg: FinetuneConfig, summary: dict[str, Any], records: list[dict[str, Any]]) -> str:
    ret = summary["returns"]
    lines = ["# Pre-trained sequence model vs DQN from scratch", "",
             f"`python -m benchmarks.finetune --seeds {cfg.seeds} --steps {cfg.steps} --pretrain-users "
             f"{cfg.pretrain_users} --encoder {cfg.encoder} --pair {cfg.pair}"
             + (" --compare-encoders" if cfg.compare_encoders else "") + f"` on `{cfg.env_id}`.", "",
             *[f"- {line}" for line in summary["findings"]], "",
             "| agent | return (IQM over seeds [95% CI resampling seeds and users]) | RL user-steps | train s per seed |",
             "|---|---|---|---|"]
    for arm in ("scratch", "finetuned"):
        lines.append(f"| DQN {arm} | {Interval(**ret[arm])} | {cfg.steps:,} | {summary['wall_seconds'][arm]:.0f} |")
    lines.append(f"| frozen pre-trained model | {Interval(**ret['frozen'])} | 0 (pre-trained on "
                 f"{summary['pretrain']['log_steps']:,.0f} logged steps) | {summary['pretrain']['seconds']:.0f} "
                 "(log + pre-training) |")
    lines += ["", "| seed | scratch | fine-tuned | frozen | fine-tuned reaches scratch's final return at |",
              "|---|---|---|---|---|"]
    for r, reach in zip(records, summary["steps_to_match"]["per_seed"]):
        lines.append(f"| {r['seed']} | {np.mean(r['scratch']['returns']):.1f} | {np.mean(r['finetuned']['returns']):.1f} "
                     f"| {np.mean(r['frozen']['returns']):.1f} | "
                     + (f"{reach:,.0f}" if np.isfinite(reach) else "not within the budget") + " |")
    lines += ["", f"![learning curves]({PLOT_NAME}.png)", ""]
    return "\n".join(lines)


def run(cfg: FinetuneConfig, progress: bool | None = None) -> dict[str, Any]:
    """Every seed (reusing those already stored under ``out/seeds``), then the summary, report and plot.

    Raises:
        ValueError: a stored seed was made with another configuration.
    """
    out = Path(cfg.out)
    show = progress_enabled(progress)
    records = []
    for seed in range(cfg.first_seed, cfg.first_seed + cfg.seeds):
        path = out / "seeds" / f"seed{seed}.json"
        if path.exists():
            record = json.loads(path.read_text(encoding="utf-8"))
            if record.get("config") != cfg.run_key():
                diff = sorted(k for k, v in cfg.run_key().items() if record.get("config", {}).get(k) != v)
                raise ValueError(f"{path} was made with other settings ({', '.join(diff)} differ); "
                                 "use another --out or remove it")
        else:
            if show:
                print(f"seed {seed}: pre-training and training...", flush=True)
            record = run_seed(cfg, seed, progress=show)
            atomic_write_text(path, json.dumps(record))
        records.append(record)
    summary = summarize(cfg, records)
    plot_curves(cfg, records, out)
    atomic_write_text(out / "results.md", report_markdown(cfg, summary, records))
    atomic_write_text(out / "results.json", json.dumps({"config": asdict(cfg), **summary, "seeds": [
        {k: v for k, v in r.items() if k != "config"} for r in records]}, indent=1))
    return summary


def parse_args(argv: list[str] | None) -> FinetuneConfig:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    d = FinetuneConfig()
    parser.add_argument("--seeds", type=int, default=d.seeds, help="training seeds (>= 2)")
    parser.add_argument("--first-seed", type=int, default=d.first_seed, help="the seeds are consecutive from here")
    parser.add_argument("--steps", type=int, default=d.steps, help="RL user-steps of every DQN")
    parser.add_argument("--pretrain-users", type=int, default=d.pretrain_users,
                        help="users of the pre-training log (one myopic-policy episode each)")
    parser.add_argument("--pretrain-epochs", type=int, default=d.pretrain_epochs)
    parser.add_argument("--encoder", default=d.encoder, help=f"user encoder: {', '.join(ENCODERS)}")
    parser.add_argument("--pair", default=d.pair, help=f"pair layers copied besides the towers: {', '.join(PAIR_LAYERS)}")
    parser.add_argument("--eval-users", type=int, default=d.eval_users, help="held-out users per seed")
    parser.add_argument("--curve-users", type=int, default=d.curve_users, help="validation users of the curves")
    parser.add_argument("--curve-points", type=int, default=d.curve_points, help="greedy evaluations per DQN")
    parser.add_argument("--train-users", type=int, default=d.train_users, help="users the DQNs step together")
    parser.add_argument("--compare-encoders", action="store_true", help="also train DQNs from scratch with each encoder")
    parser.add_argument("--env-id", default=d.env_id)
    parser.add_argument("--out", required=True, help="folder for results.md, results.json and the plot")
    args = parser.parse_args(argv)
    try:
        return FinetuneConfig(**vars(args))
    except ValueError as err:
        name, rest = str(err).split("=", 1)
        parser.error(f"--{name.replace('_', '-')}={rest}")


def main(argv: list[str] | None = None) -> int:
    import torch

    cfg = parse_args(argv)
    torch.set_num_threads(1)  # small networks: threads add overhead, and the numbers stay the same everywhere
    try:
        summary = run(cfg)
    except (ValueError, gym.error.Error) as err:
        raise SystemExit(f"error: {err}") from None
    for line in summary["findings"]:
        print(line)
    print(f"wrote {cfg.out}/results.md, results.json, {PLOT_NAME}.png and {PLOT_NAME}.svg")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
