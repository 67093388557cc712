"""Next-item accuracy of the sequential recommenders on a data file, or on a simulated log.

    python -m benchmarks.seqrec --data PATH [--format lines|pairs|movielens|csv|log] [--out DIR]
        [--models popularity,lstm,gcn] [--epochs N] [--seed S] [--negatives FILE] [--threads T]
        [--time-budget SECONDS] [--loss ce|bce|ss] [--ss-negatives K] [--lr LR] [--batch-size B]
        [--schedule constant|cosine|linear] [--warmup SHARE] [--eval-every N] [--dropout P]
        [--curve-minutes 2,5,10]
    python -m benchmarks.seqrec --simulate myopic [--users 10000] [--patience 8] [--out DIR] ...

Protocol (S3-Rec, CIKM 2020, as published with its Beauty and LastFM files): leave-one-out per user,
the most recent 50 items as input, model selection on the second last item (validation NDCG@10),
report on the last. ``full`` ranks the target against every item, the user's other history items
excluded; ``sampled99`` against 99 negatives drawn uniformly (seeded) from items the user never
touched, or the fixed negatives of ``--negatives`` (one line per user, ``user neg_1 ... neg_99``, in
the data file's user order). Popularity counts the whole file as in the published tables
(``--popularity-counts train`` counts the training part only); ties rank pessimistically.
Each trained model gets ``--time-budget`` seconds of training (default 13 minutes, so that fitting
and testing one model stays within 15 minutes on a 2-core machine); on a busy machine that may end
training early, which ``results.md`` reports per model. ``--loss`` picks the training objective of
the trained models: full-softmax cross-entropy (``ce``, the default), the binary cross-entropy
against one sampled negative (``bce``) that the published baselines were trained with, or the
transformer's sampled softmax over ``--ss-negatives`` uniform items per batch (``ss``). ``--lr``,
``--batch-size``, ``--schedule``, ``--warmup``, ``--eval-every`` and ``--dropout`` override the
models' defaults (dropout only where a model has one). ``--curve-minutes`` keeps a copy of each
trained model's weights at those minutes of training and ranks the test cases with each at the end
(the model itself is still the epoch chosen on validation; the curve only reports how accuracy grows
with training time).

``--simulate POLICY`` writes an interaction log of ``--users`` simulated users under that behaviour
policy to ``DIR/log.parquet`` and evaluates on held-out users instead: ``--holdout`` of the users
are never trained on, and each of their clicks after the first is predicted from the clicks before
(popularity then counts the training users only, and history items are not excluded: simulated
users may click an item again).

Writes ``DIR/results.json`` (``{model: {protocol: {metric: value}}}``, and with ``--curve-minutes``
each trained model's ``curve``: minutes, epochs, test HR@10 and NDCG@10), ``DIR/results.md`` (the
tables, wall and CPU times, hyperparameters), ``DIR/run.json`` (configuration and training record)
and, with ``--curve-minutes``, the plot ``DIR/curve.png`` and ``DIR/curve.svg``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from agents.sequential.base import OBJECTIVES, SAMPLED_NEGATIVES
from agents.sequential.training import SCHEDULES
from recsim_env.io import atomic_write_text, progress_enabled
from recsim_env.logs import (
    FORMATS,
    EvalSet,
    Sequences,
    Split,
    holdout_split,
    leave_last_out,
    load_sequences,
    sample_negatives,
)

PROTOCOLS = ("full", "sampled99")
CURVE_METRICS = ("HR@10", "NDCG@10")
#: Models whose objective can be the sampled softmax (their ``loss`` takes a number of negatives).
SAMPLED_SOFTMAX_MODELS = ("transformer",)
METRICS = ("HR@1", "HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20", "MRR")
MODEL_NAMES = ("popularity", "lstm", "gcn", "lightgcn", "transformer")

#: Hyperparameters selected on Beauty validation NDCG@10; embedding size 64 as in the published tables.
DEFAULTS: dict[str, dict[str, Any]] = {
    "popularity": {"config": None, "train": {}},
    "lstm": {"config": {"cell": "lstm", "embedding_dim": 64, "hidden_dim": 128, "dropout": 0.3},
             "train": {"lr": 1e-2, "batch_size": 256, "epochs": 20, "patience": 3}},
    "gcn": {"config": {"embedding_dim": 64, "steps": 1, "dropout": 0.3},
            "train": {"lr": 1e-2, "batch_size": 256, "epochs": 20, "patience": 3}},
    "lightgcn": {"config": {"embedding_dim": 64, "n_layers": 2},
                 "train": {"lr": 1e-2, "batch_size": 256, "epochs": 20, "patience": 3}},
    # SASRec's Beauty dropout 0.5; lr 3e-3 beat 1e-3 on validation NDCG@10 (0.064 vs 0.057). Pools of 8
    # batches sorted by length: batches 10 items wide on Beauty instead of 48 (training.length_pooled_batches).
    "transformer": {"config": {"embedding_dim": 64, "num_blocks": 2, "num_heads": 1, "dropout": 0.5},
                    "train": {"lr": 3e-3, "batch_size": 256, "epochs": 200, "patience": 5, "length_pool": 8}},
}


@dataclass
class SeqRecConfig:
    """Command-line options."""

    data: str | None = None
    format: str | None = None
    out: str = "results/seqrec"
    models: list[str] = field(default_factory=lambda: ["popularity", "lstm", "gcn"])
    epochs: int | None = None
    patience: int | None = None
    seed: int = 0
    max_len: int = 50
    negatives: str | None = None
    popularity_counts: str = "all"
    kcore: int = 0
    threads: int = 1
    time_budget: float = 780.0
    loss: str = "ce"
    ss_negatives: int = SAMPLED_NEGATIVES
    lr: float | None = None
    batch_size: int | None = None
    schedule: str | None = None
    warmup: float | None = None
    eval_every: int | None = None
    dropout: float | None = None
    curve_minutes: list[float] = field(default_factory=list)
    simulate: str | None = None
    users: int = 10_000
    holdout: float = 0.2
    env_id: str = "recsim_env/InterestDrift-v0"


def _read_negatives(path: str, seqs: Sequences, cases: EvalSet) -> np.ndarray:
    """Fixed negatives (``user neg ...`` per line) mapped to dense ids, one row per test case."""
    by_user: dict[int, list[int]] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            fields = line.split()
            if fields:
                try:
                    by_user[int(fields[0])] = [int(x) for x in fields[1:]]
                except ValueError:
                    raise ValueError(f"{path}, line {number}: expected integer ids, got {line.strip()!r}") from None
    dense = {int(v): i for i, v in enumerate(seqs.item_ids[1:], start=1)}
    rows = []
    for user in seqs.user_ids[cases.users]:
        if int(user) not in by_user:
            raise ValueError(f"{path}: no negatives for user {user}")
        rows.append([dense.get(x, 0) for x in by_user[int(user)]])
    out = np.array(rows, np.int64)
    if (out == 0).any():
        raise ValueError(f"{path}: negatives name items that are not in the data file")
    return out


def _simulated_split(cfg: SeqRecConfig, out: Path) -> tuple[Split, Sequences]:
    """A log of simulated users; held-out users' clicks become the test cases."""
    import gymnasium as gym

    import agents
    import recsim_env  # noqa: F401  (registers the env ids)
    from recsim_env.logs import collect_log, write_log

    env = gym.make_vec(cfg.env_id, num_envs=min(cfg.users, 1000), vectorization_mode="vector_entry_point")
    log = collect_log(env, agents.make(cfg.simulate, env), cfg.users, seed=cfg.seed, policy_name=cfg.simulate)
    write_log(out / "log.parquet", log)
    seqs = log.to_sequences()
    return holdout_split(seqs, cfg.holdout, np.random.default_rng(cfg.seed)), seqs


def run(cfg: SeqRecConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit and evaluate every model; returns (results, run record)."""
    import torch

    from agents.sequential.checkpoint import fit
    from agents.sequential.training import TrainConfig, rank_cases
    from recsim_env.metrics import ranking_metrics

    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    if cfg.simulate:
        split, seqs = _simulated_split(cfg, out)
        exclude_history = False  # simulated users may click an item again
    else:
        seqs = load_sequences(cfg.data, cfg.format, kcore=cfg.kcore)  # type: ignore[arg-type]
        split, exclude_history = leave_last_out(seqs), True
    if len(split.test) == 0:
        raise ValueError("no test cases: every user needs at least 3 items")
    if cfg.negatives:
        negatives = _read_negatives(cfg.negatives, seqs, split.test)
    else:
        negatives = sample_negatives(split.test.full, 99, np.random.default_rng(cfg.seed))
    # the published protocol counts popularity over the whole file; held-out users must not be counted
    counts = seqs.item_counts() if cfg.popularity_counts == "all" and not cfg.simulate else None
    results: dict[str, Any] = {}
    record: dict[str, Any] = {"config": asdict(cfg), "n_users": seqs.n_users, "n_items": seqs.n_items,
                              "n_interactions": len(seqs), "test_cases": len(split.test), "models": {}}
    progress = progress_enabled(None)
    for name in tqdm(cfg.models, desc="models", disable=not progress):
        start, cpu_start = time.perf_counter(), time.process_time()
        train_fields = {**DEFAULTS[name]["train"], "seed": cfg.seed, "max_len": cfg.max_len,
                        "exclude_history": exclude_history, "max_seconds": cfg.time_budget,
                        "loss": cfg.loss, "negatives": cfg.ss_negatives,
                        "snapshot_seconds": tuple(60.0 * m for m in cfg.curve_minutes)}
        for option in ("epochs", "patience", "lr", "batch_size", "schedule", "warmup", "eval_every"):
            if getattr(cfg, option) is not None:
                train_fields[option] = getattr(cfg, option)
        train_config = TrainConfig(**train_fields)
        model_config = DEFAULTS[name]["config"]
        if cfg.dropout is not None and model_config is not None and "dropout" in model_config:
            model_config = {**model_config, "dropout": cfg.dropout}
        trained, history = fit(name, split.train, split.valid, model_config, train_config,
                               popularity_counts=counts, progress=progress)
        fitted = time.perf_counter()
        full = rank_cases(trained.model, split.test, cfg.max_len, exclude_history=exclude_history)
        sampled = rank_cases(trained.model, split.test, cfg.max_len, negatives=negatives)
        ks = (1, 5, 10, 20)
        results[name] = {"full": {m: v for m, v in ranking_metrics(full, ks).items() if m in METRICS},
                         "sampled99": {m: v for m, v in ranking_metrics(sampled, ks).items() if m in METRICS}}
        total, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        if cfg.curve_minutes and history.epochs:
            results[name]["curve"] = _curve(trained.model, history, split.test, cfg.max_len, exclude_history)
        record["models"][name] = {"config": trained.model.config_dict(), "train": asdict(train_config),
                                  "best_epoch": history.best_epoch, "valid_ndcg10": history.best_valid,
                                  "stopped_by": history.stopped_by if history.epochs else "not trained",
                                  "epochs": history.epochs, "train_seconds": fitted - start,
                                  "train_cpu_seconds": history.cpu_seconds, "total_seconds": total,
                                  "total_cpu_seconds": cpu}
    return results, record


def _curve(model: Any, history: Any, cases: EvalSet, max_len: int, exclude_history: bool) -> list[dict[str, Any]]:
    """Test HR@10 and NDCG@10 of each weight snapshot, then of the model chosen on validation (at the
    time its epoch ended). For reporting only: nothing here feeds back into the choice of the model."""
    import copy

    from agents.sequential.training import rank_cases
    from recsim_env.metrics import ranking_metrics

    snapshot = copy.deepcopy(model)
    points = []
    for shot in history.snapshots:
        snapshot.load_state_dict(shot["state"])
        metrics = ranking_metrics(rank_cases(snapshot, cases, max_len, exclude_history=exclude_history), (10,))
        points.append({"minutes": shot["seconds"] / 60, "epoch": shot["epoch"], "selected": False,
                       **{m: metrics[m] for m in CURVE_METRICS}})
    best = history.epochs[history.best_epoch - 1]
    metrics = ranking_metrics(rank_cases(model, cases, max_len, exclude_history=exclude_history), (10,))
    points.append({"minutes": best["seconds"] / 60, "epoch": float(best["epoch"]), "selected": True,
                   **{m: metrics[m] for m in CURVE_METRICS}})
    return sorted(points, key=lambda p: p["minutes"])


def curve_table(results: dict[str, Any]) -> str:
    lines = ["| model | minutes of training | epochs | test HR@10 | test NDCG@10 |", "|---|---|---|---|---|"]
    for name, protocols in results.items():
        for p in protocols.get("curve", []):
            chosen = " (chosen on validation)" if p["selected"] else ""
            lines.append(f"| {name} | {p['minutes']:.2f}{chosen} | {p['epoch']:.1f} | {p['HR@10']:.4f} | "
                         f"{p['NDCG@10']:.4f} |")
    return "\n".join(lines)


def plot_curve(results: dict[str, Any], out: Path, title: str) -> Path:
    """Test HR@10 and NDCG@10 against minutes of training, one line per model with a curve."""
    from benchmarks.plots import plt, save_png_svg

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"wspace": 0.35})
    for ax, metric in zip(axes, CURVE_METRICS):
        for name, protocols in results.items():
            points = protocols.get("curve", [])
            if points:
                ax.plot([p["minutes"] for p in points], [p[metric] for p in points], marker="o", label=name)
        ax.set_xlabel("minutes of training")
        ax.set_ylabel(f"test {metric} (full ranking)")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(title)
    return save_png_svg(fig, out, "curve")


def table(results: dict[str, Any]) -> str:
    lines = ["| model | protocol | " + " | ".join(METRICS) + " |", "|---|---|" + "---|" * len(METRICS)]
    for name, protocols in results.items():
        for protocol in PROTOCOLS:
            values = " | ".join(f"{protocols[protocol][m]:.4f}" for m in METRICS)
            lines.append(f"| {name} | {protocol} | {values} |")
    return "\n".join(lines)


def report(results: dict[str, Any], record: dict[str, Any]) -> str:
    cfg = record["config"]
    source = f"simulated log ({cfg['simulate']} policy, {cfg['users']} users, {cfg['holdout']:.0%} held out)" \
        if cfg["simulate"] else f"`{Path(cfg['data']).name}`"
    summary = (f"{record['n_users']} users, {record['n_items']} items, {record['n_interactions']} interactions, "
               f"{record['test_cases']} test cases; seed {cfg['seed']}, max length {cfg['max_len']}.")
    lines = [f"# Next-item accuracy on {source}", "", summary, "", table(results), "",
             ("| model | best / last epoch (stopped by) | valid NDCG@10 | wall time (fit + test) | CPU time | "
              "hyperparameters |"),
             "|---|---|---|---|---|---|"]
    for name, m in record["models"].items():
        trained = m["stopped_by"] != "not trained"
        fitted = {k: m["train"][k] for k in ("lr", "batch_size", "patience", "loss")} if trained else {}
        if trained:  # the options beyond those, where this run sets them
            fitted |= {k: m["train"][k] for k in REPORTED_OPTIONS if m["train"][k] != REPORTED_OPTIONS[k]}
            if m["train"]["loss"] == "ss":
                fitted["negatives"] = m["train"]["negatives"]
        hyper = {**(m["config"] or {}), **fitted}
        valid = f"{m['valid_ndcg10']:.4f}" if m["best_epoch"] else "-"
        epochs = f"{m['best_epoch']} / {len(m['epochs'])} ({m['stopped_by']})" if m["best_epoch"] else "-"
        cpu = f"{m['total_cpu_seconds']:.0f} s" if "total_cpu_seconds" in m else "-"
        lines.append(f"| {name} | {epochs} | {valid} | {m['total_seconds']:.0f} s | {cpu} | {json.dumps(hyper)} |")
    if any("curve" in protocols for protocols in results.values()):
        lines += ["", ("Test accuracy of the weights after each span of training (full ranking; the model "
                       "reported above is the epoch chosen on validation):"), "", curve_table(results), "",
                  "![curve](curve.png)"]
    return "\n".join(lines) + "\n"


#: Training options the report names when a run sets them away from these values.
REPORTED_OPTIONS: dict[str, Any] = {"schedule": "constant", "warmup": 0.0, "eval_every": 1, "length_pool": 0}


def parse_args(argv: list[str] | None) -> SeqRecConfig:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = SeqRecConfig()
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="data file (no downloads: a local path)")
    source.add_argument("--simulate", metavar="POLICY", help="simulate a log under this registered policy")
    parser.add_argument("--format", choices=FORMATS, help="data format (default: from the file name)")
    parser.add_argument("--out", default=defaults.out, help="folder for results.md, results.json, run.json")
    parser.add_argument("--models", default=",".join(defaults.models),
                        help="comma-separated: " + ", ".join(MODEL_NAMES))
    parser.add_argument("--epochs", type=int, help="most training epochs (early stopping may end sooner)")
    parser.add_argument("--patience", type=int, help="epochs without a better validation NDCG@10 before stopping")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--max-len", type=int, default=defaults.max_len)
    parser.add_argument("--negatives", help="fixed sampled-99 negatives file (`user neg_1 ... neg_99` per line)")
    parser.add_argument("--popularity-counts", choices=("all", "train"), default=defaults.popularity_counts)
    parser.add_argument("--kcore", type=int, default=defaults.kcore, help="keep the k-core of the data (0: as is)")
    parser.add_argument("--threads", type=int, default=defaults.threads,
                        help="torch CPU threads (default 1: on a shared 2-core machine, 2 OpenMP threads measured "
                             "up to 10x slower per batch while other processes ran)")
    parser.add_argument("--time-budget", type=float, default=defaults.time_budget,
                        help="seconds of training per model; stops before an epoch would overrun (0: none)")
    parser.add_argument("--loss", choices=OBJECTIVES, default=defaults.loss,
                        help="training objective: full-softmax cross-entropy, binary cross-entropy against one "
                             "sampled negative as the published baselines, or sampled softmax (transformer)")
    parser.add_argument("--ss-negatives", type=int, default=defaults.ss_negatives,
                        help="uniform negatives per batch of the sampled softmax (--loss ss)")
    parser.add_argument("--lr", type=float, help="Adam learning rate (default: each model's)")
    parser.add_argument("--batch-size", type=int, help="users per batch (default: each model's)")
    parser.add_argument("--schedule", choices=SCHEDULES, help="learning-rate decay over the time budget "
                        "(or the epochs without one)")
    parser.add_argument("--warmup", type=float, help="share of training with a linear learning-rate warm-up")
    parser.add_argument("--eval-every", type=int, help="epochs between validation rankings")
    parser.add_argument("--dropout", type=float, help="dropout of the models that have one (default: each model's)")
    parser.add_argument("--curve-minutes", default="",
                        help="comma-separated minutes of training at which to keep the weights and report test "
                             "HR@10 / NDCG@10 (a curve of accuracy against training time)")
    parser.add_argument("--users", type=int, default=defaults.users, help="simulated users (with --simulate)")
    parser.add_argument("--holdout", type=float, default=defaults.holdout, help="share of simulated users held out")
    parser.add_argument("--env-id", default=defaults.env_id)
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODEL_NAMES]
    if not models or unknown:
        parser.error(f"--models={args.models!r}: allowed a comma-separated subset of {', '.join(MODEL_NAMES)}")
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs={args.epochs} is out of range: allowed >= 1")
    if args.negatives and args.simulate:
        parser.error("--negatives applies to a data file, not to --simulate")
    if args.threads < 1:
        parser.error(f"--threads={args.threads} is out of range: allowed >= 1")
    if args.patience is not None and args.patience < 1:
        parser.error(f"--patience={args.patience} is out of range: allowed >= 1")
    if args.time_budget < 0:
        parser.error(f"--time-budget={args.time_budget} is out of range: allowed >= 0")
    if not 0.0 < args.holdout < 1.0:
        parser.error(f"--holdout={args.holdout} is out of range: allowed (0, 1)")
    if args.loss == "ss" and set(models) - {"popularity", *SAMPLED_SOFTMAX_MODELS}:
        parser.error(f"--loss ss: only for {', '.join(SAMPLED_SOFTMAX_MODELS)} (and popularity, which is counted)")
    for option, low in (("ss_negatives", 1), ("batch_size", 1), ("eval_every", 1)):
        value = getattr(args, option)
        if value is not None and value < low:
            parser.error(f"--{option.replace('_', '-')}={value} is out of range: allowed >= {low}")
    if args.lr is not None and not 0.0 < args.lr <= 10.0:
        parser.error(f"--lr={args.lr} is out of range: allowed (0, 10]")
    if args.dropout is not None and not 0.0 <= args.dropout < 1.0:
        parser.error(f"--dropout={args.dropout} is out of range: allowed [0, 1)")
    if args.warmup is not None and not 0.0 <= args.warmup < 1.0:
        parser.error(f"--warmup={args.warmup} is out of range: allowed [0, 1)")
    try:
        minutes = [float(m) for m in args.curve_minutes.split(",") if m.strip()]
    except ValueError:
        parser.error(f"--curve-minutes={args.curve_minutes!r}: expected comma-separated minutes")
    if any(not m > 0 for m in minutes) or minutes != sorted(set(minutes)):
        parser.error(f"--curve-minutes={args.curve_minutes!r}: allowed increasing positive minutes")
    return SeqRecConfig(**{**vars(args), "models": models, "curve_minutes": minutes})


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    results, record = run(cfg)
    out = Path(cfg.out)
    atomic_write_text(out / "results.json", json.dumps(results, indent=2))
    atomic_write_text(out / "run.json", json.dumps(record, indent=2))
    if any("curve" in protocols for protocols in results.values()):
        plot_curve(results, out, f"{Path(cfg.data).name if cfg.data else 'simulated log'}: test accuracy "
                                 "against training time")
    text = report(results, record)
    atomic_write_text(out / "results.md", text)
    print(text)
    print(f"wrote {out / 'results.md'}, results.json and run.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
