"""Click prediction: the end-to-end click models against logistic regression, on simulated and real logs.

    python -m benchmarks.clicks [--users N] [--test-users M] [--seeds 5] [--beauty PATH] [--obd DIR]
        [--models lstm,transformer,logistic] [--studies simulated,beauty,obd] [--epochs E] [--negatives 4]
        [--max-impressions 40000] [--beauty-seeds 1] [--resamples 200] [--threads 1] --out OUT

The defaults are quick: with both data sets the command takes about 4 minutes on one thread of a
shared 2-core machine (the Beauty transformer is the slowest part; ``--max-impressions`` caps what
each model trains on).

Three case studies, each model of :mod:`agents.sequential.click_models` trained on the impressions of
training users (a share of them held out for early stopping and the F1 threshold) and scored on
held-out users:

1. **simulated**: ``InterestDrift-v0`` with its default configuration under the myopic behaviour
   policy; ``--users`` training users and ``--test-users`` held-out users per seed, fresh users
   every seed (the catalogue is the config's). The oracle's exact click probability (the simulator's
   choice model on the true user state) is the ceiling; its F1 threshold is chosen on the training
   users.
2. **beauty** (``--beauty PATH``, the S3-Rec ``Beauty.txt``): purchase prediction with sampled
   negatives. Each user's next item after a history is a positive, beside ``--negatives`` items drawn
   uniformly from those the user never interacted with, all with the same history; training users
   contribute their last item, held-out users (20%) too.
3. **obd** (``--obd DIR``, the Open Bandit Dataset's small ``random`` log): click prediction on the
   ZOZOTOWN impressions read by :func:`recsim_env.logs.obd.read_obd`; 30% of the impressions held out
   per seed. A row is an impression of its own (its timestamp is almost always unique), so the
   sequence models' history is the user's affinity items (past clicks), strongest last: the file
   keeps no order of them.

Every model is reported at the decision threshold 0.5 and at the threshold that maximises F1 on its
validation users, beside the share of positives and the accuracy of always predicting no click.
Intervals are 95% two-stage bootstrap intervals (seeds, then held-out users within each seed).
Writes ``OUT/results.md``, ``OUT/results.json`` and ``OUT/clicks.png`` (+ ``.svg``).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.results import write_results

MODEL_NAMES = ("lstm", "transformer", "logistic")
STUDIES = ("simulated", "beauty", "obd")
ORACLE = "oracle"
#: Bar colours of the plot (the LSTM's as in the suite's figures; the oracle black as the planner ceiling).
COLORS = {"lstm": "#e377c2", "transformer": "#1f77b4", "logistic": "#8c564b", ORACLE: "#000000"}
#: Metrics bootstrapped for the intervals (``@t``: at the validation users' F1 threshold).
INTERVAL_METRICS = ("roc_auc", "f1@t", "precision@t", "recall@t", "f1", "accuracy")
#: Metrics in the tables, in order.
TABLE_METRICS = ("roc_auc", "log_loss", "accuracy", "f1", "threshold", "accuracy@t", "precision@t", "recall@t",
                 "f1@t")


@dataclass
class ClicksConfig:
    """Command-line options."""

    out: str = "results/clicks"
    users: int = 1000
    test_users: int = 500
    seeds: int = 5
    beauty: str | None = None
    beauty_seeds: int = 1
    obd: str | None = None
    models: list[str] = field(default_factory=lambda: list(MODEL_NAMES))
    epochs: int = 30
    negatives: int = 4
    max_impressions: int = 40_000
    resamples: int = 200
    threads: int = 1
    studies: list[str] = field(default_factory=lambda: list(STUDIES))
    env_id: str = "recsim_env/InterestDrift-v0"


@dataclass
class _Case:
    """One seed of a study: held-out labels and users, and each model's probabilities and threshold."""

    clicked: np.ndarray
    group: np.ndarray
    probability: dict[str, np.ndarray] = field(default_factory=dict)
    threshold: dict[str, float] = field(default_factory=dict)
    record: dict[str, dict[str, Any]] = field(default_factory=dict)


def _seed(*words: int) -> int:
    """A 32-bit seed for a (study, seed, purpose) triple, from numpy's SeedSequence."""
    return int(np.random.SeedSequence(list(words)).generate_state(1)[0])


def _fit_all(cfg: ClicksConfig, train: Any, test: Any, seed: int, case: _Case, **model_fields: Any) -> None:
    from agents.sequential.click_models import ClickModelConfig, fit_click_model

    for name in cfg.models:
        start = time.perf_counter()
        config = ClickModelConfig(kind=name, epochs=cfg.epochs, seed=seed, max_impressions=cfg.max_impressions,
                                  **model_fields)
        model = fit_click_model(train, config)
        case.probability[name] = model.probability(test)
        case.threshold[name] = model.threshold
        case.record[name] = {"best_epoch": model.best_epoch, "epochs": len(model.epochs),
                             "stopped_by": model.stopped_by, "seconds": time.perf_counter() - start}


def simulated_cases(cfg: ClicksConfig) -> tuple[list[_Case], dict[str, Any]]:
    """Study 1: myopic logs of fresh simulated users per seed, the oracle's exact probability beside."""
    import gymnasium as gym

    import recsim_env  # noqa: F401  (registers the env ids)
    from agents.reference import MyopicPolicy
    from agents.sequential.click_models import f1_threshold, steps_click_data
    from recsim_env.logs import collect_steps

    cases, sizes = [], []
    for s in range(cfg.seeds):
        steps = {}
        for part, n in (("train", cfg.users), ("test", cfg.test_users)):
            env = gym.make_vec(cfg.env_id, num_envs=n, vectorization_mode="vector_entry_point")
            steps[part] = collect_steps(env, MyopicPolicy(env), seed=_seed(1, s, part == "test"), policy_name="myopic")
            layout, oracle = env.unwrapped.layout, MyopicPolicy(env)
        train, test = steps_click_data(steps["train"], layout), steps_click_data(steps["test"], layout)
        case = _Case(test.clicked, test.group)
        _fit_all(cfg, train, test, _seed(1, s, 2), case, item_ids=False)
        case.probability[ORACLE] = oracle.click_probability(steps["test"]).reshape(-1)
        case.threshold[ORACLE] = f1_threshold(train.clicked, oracle.click_probability(steps["train"]).reshape(-1))
        cases.append(case)
        sizes.append((len(train), len(test)))
    info = {"source": f"{cfg.env_id} defaults, myopic behaviour", "train_users": cfg.users,
            "test_users": cfg.test_users, "train_impressions": int(np.mean([a for a, _ in sizes])),
            "test_impressions": int(np.mean([b for _, b in sizes])), "item_ids": False,
            "notes": "The sequence models read items by their catalogue features (no id embeddings) and the session "
                     "step and day; logistic regression reads the observation (the recent items with the user's "
                     "responses, the session step and day) and the shown item's features; no model has per-item weights."}
    return cases, info


def beauty_data(path: str, negatives: int, seed: int) -> tuple[Any, Any, dict[str, Any]]:
    """Study 2's impressions: each user's last item and ``negatives`` untouched items, held-out users apart."""
    from agents.sequential.click_models import ClickData
    from recsim_env.logs import load_sequences, sample_negatives, split_users

    seqs = load_sequences(path)
    rng = np.random.default_rng(seed)
    parts = []
    train_users, test_users = split_users(seqs, 0.2, rng)
    in_history = np.ones(len(train_users.items), bool)
    in_history[train_users.offsets[1:][train_users.lengths > 0] - 1] = False  # the training targets
    clicks = np.bincount(train_users.items[in_history] - 1, minlength=seqs.n_items)  # training histories only
    for users in (train_users, test_users):
        lengths = users.lengths
        keep = np.flatnonzero(lengths >= 2)
        users = users.select_users(keep)
        lengths, ends = users.lengths, users.offsets[1:]
        target = users.items[ends - 1] - 1  # dense ids 1..n -> 0..n-1
        width = 50
        index = ends[:, None] - 1 - width + np.arange(width)[None, :]
        inside = index >= users.offsets[:-1, None]
        history = np.where(inside, users.items[index.clip(0)] - 1, -1)
        negative = sample_negatives(users, negatives, rng) - 1
        k = negatives + 1
        item = np.concatenate([target[:, None], negative], axis=1).reshape(-1)
        clicked = np.tile(np.r_[True, np.zeros(negatives, bool)], len(target))
        rows = np.repeat(np.arange(len(target)), k)
        context = np.stack([np.log1p(lengths - 1)[rows], np.log1p(clicks[item])], axis=1).astype(np.float32)
        parts.append(ClickData(history=history[rows], item=item, clicked=clicked, group=rows, features=context,
                               context=context, item_features=np.zeros((seqs.n_items, 0), np.float32)))
    info = {"source": f"{Path(path).name}: {seqs.n_users} users, {seqs.n_items} items, {len(seqs)} interactions",
            "negatives_per_positive": negatives, "train_impressions": len(parts[0]), "test_impressions": len(parts[1]),
            "item_ids": True,
            "notes": f"Each user's last item against {negatives} items the user never touched, drawn uniformly; 20% "
                     "of the users held out. Items have no features here: the sequence models embed their ids, and "
                     "every model reads the history length and the item's purchase count in the training users' "
                     "histories (popularity, which uniform negatives reward)."}
    return parts[0], parts[1], info


def beauty_cases(cfg: ClicksConfig) -> tuple[list[_Case], dict[str, Any]]:
    cases = []
    for s in range(cfg.beauty_seeds):
        train, test, info = beauty_data(cfg.beauty, cfg.negatives, _seed(2, s, 0))  # type: ignore[arg-type]
        case = _Case(test.clicked, test.group)
        _fit_all(cfg, train, test, _seed(2, s, 2), case)
        cases.append(case)
    return cases, info


def obd_directory(path: str) -> Path:
    """The folder holding ``all.csv``: ``path`` itself or its ``random`` subfolder."""
    p = Path(path)
    return p / "random" if not (p / "all.csv").is_file() and (p / "random" / "all.csv").is_file() else p


def _one_hot(codes: np.ndarray) -> np.ndarray:
    """Each integer column one-hot, side by side."""
    return np.concatenate([np.eye(int(c.max()) + 1, dtype=np.float32)[c] for c in codes.T], axis=1)


def obd_data(path: str) -> tuple[Any, dict[str, Any]]:
    """Study 3's impressions: user features and slot as context, affinity items as the history."""
    from agents.sequential.click_models import ClickData
    from recsim_env.logs.obd import read_obd

    obd = read_obd(obd_directory(path))
    numeric = [i for i, name in enumerate(obd.item_context_columns) if name == "item_feature_0"]
    categorical = [i for i in range(obd.item_context.shape[1]) if i not in numeric]
    item_features = np.concatenate([obd.item_context[:, numeric].astype(np.float32),
                                    _one_hot(obd.item_context[:, categorical].astype(np.int64))], axis=1)
    context = np.concatenate([_one_hot(obd.user_features), np.eye(obd.n_positions, dtype=np.float32)[obd.position]],
                             axis=1)
    r = len(obd)
    shown_affinity = obd.affinity[np.arange(r), obd.item]
    features = np.concatenate([context, np.stack([shown_affinity, obd.affinity.sum(1)], 1).astype(np.float32)], 1)
    order = np.argsort(obd.affinity, axis=1, kind="stable")[:, -20:]  # the strongest affinities, strongest last
    strength = np.take_along_axis(obd.affinity, order, axis=1)
    history = np.where(strength > 0, order, -1)
    data = ClickData(history=history, item=obd.item, clicked=obd.click, group=np.arange(r), features=features,
                     context=context, item_features=item_features)
    csv = Path(obd.metadata["path"])  # the log's own folder and name, not where it lies on this machine
    info = {"source": f"{csv.parent.name}/{csv.name}: {r} impressions, {obd.n_items} items, {int(obd.click.sum())} clicks",
            "item_ids": True, "reader": "recsim_env.logs.obd.read_obd",
            "notes": "Each row is an impression of its own; the sequence models' history is the user's affinity "
                     "items (past clicks), strongest last, and their context the user features and the slot; "
                     "logistic regression reads those and the affinity to the shown item. With a few dozen clicks "
                     "the intervals are wide: a real-format check more than a ranking of models."}
    return data, info


def obd_cases(cfg: ClicksConfig) -> tuple[list[_Case], dict[str, Any]]:
    from agents.sequential.click_models import split_groups

    data, info = obd_data(cfg.obd)  # type: ignore[arg-type]
    cases = []
    for s in range(cfg.seeds):
        rng = np.random.default_rng(_seed(3, s, 0))
        held = split_groups(data.group, 0.3, rng)
        train, test = data.select(np.flatnonzero(~held)), data.select(np.flatnonzero(held))
        case = _Case(test.clicked, test.group)
        _fit_all(cfg, train, test, _seed(3, s, 2), case)
        cases.append(case)
    info.update(test_share=0.3, train_impressions=int(np.count_nonzero(~held)), test_impressions=int(held.sum()))
    return cases, info


def _user_draws(group: np.ndarray, n_resamples: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Row indices of ``n_resamples`` resamples of the users (with replacement)."""
    order = np.argsort(group, kind="stable")
    _, starts, counts = np.unique(group[order], return_index=True, return_counts=True)
    draws = []
    for _ in range(n_resamples):
        pick = rng.integers(0, len(starts), len(starts))
        lengths = counts[pick]
        offsets = np.repeat(starts[pick] - np.cumsum(lengths) + lengths, lengths)
        draws.append(order[offsets + np.arange(lengths.sum())])
    return draws


def summarise(cases: list[_Case], n_resamples: int, seed: int = 0) -> dict[str, Any]:
    """Per model: each metric's mean over seeds, with a two-stage bootstrap interval (seeds, then
    users within a seed; the draws shared by every model, so differences are paired)."""
    from agents.sequential.click_models import click_report

    rng = np.random.default_rng(seed)
    models = list(cases[0].probability)
    per_seed = {m: [click_report(c.clicked, c.probability[m], c.threshold[m]) for c in cases] for m in models}
    seed_draws = rng.integers(0, len(cases), size=(n_resamples, len(cases)))
    samples = {m: np.full((n_resamples, len(cases), len(INTERVAL_METRICS)), np.nan) for m in models}
    for s, case in enumerate(cases):
        for b, rows in enumerate(_user_draws(case.group, n_resamples, rng)):
            y = case.clicked[rows]
            if y.all() or not y.any():
                continue  # no click (or no skip) among the drawn users: ROC-AUC undefined
            for m in models:
                report = click_report(y, case.probability[m][rows], case.threshold[m])
                samples[m][b, s] = [report[k] for k in INTERVAL_METRICS]
    summary: dict[str, Any] = {}
    for m in models:
        seeded = np.take_along_axis(samples[m], seed_draws[:, :, None], axis=1)
        means = np.nanmean(seeded, axis=1)
        point = {k: float(np.mean([r[k] for r in per_seed[m]])) for k in per_seed[m][0]}
        summary[m] = {"mean": point, "interval": {k: [float(v) for v in np.nanquantile(means[:, i], [0.025, 0.975])]
                                                  for i, k in enumerate(INTERVAL_METRICS)},
                      "per_seed": per_seed[m]}
    if "lstm" in models and "logistic" in models:
        i = INTERVAL_METRICS.index("roc_auc")
        diff = np.nanmean(np.take_along_axis(samples["lstm"][:, :, i] - samples["logistic"][:, :, i],
                                             seed_draws, axis=1), axis=1)
        per = [a["roc_auc"] - b["roc_auc"] for a, b in zip(per_seed["lstm"], per_seed["logistic"])]
        summary["lstm_minus_logistic_roc_auc"] = {
            "mean": float(np.mean(per)), "interval": [float(v) for v in np.nanquantile(diff, [0.025, 0.975])],
            "seeds_lstm_ahead": int(np.sum(np.array(per) > 0)), "seeds": len(per)}
    return summary


def _fmt(value: float, interval: list[float] | None = None) -> str:
    return f"{value:.3f}" + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")


def study_markdown(name: str, title: str, result: dict[str, Any]) -> list[str]:
    """One study's section: the table and the sentences computed from it."""
    info, summary = result["info"], result["summary"]
    models = [m for m in summary if not m.startswith("lstm_minus")]
    first = summary[models[0]]["mean"]
    rate, always = first["positive_rate"], first["always_no_accuracy"]
    lines = [f"## {title}", "", (f"{info['source']}; {info['train_impressions']} training and "
             f"{info['test_impressions']} held-out impressions per seed, {result['seeds']} seed(s). "
             f"{info.get('notes', '')}"), "",
             "| model | " + " | ".join(TABLE_METRICS) + " |", "|---|" + "---|" * len(TABLE_METRICS)]
    for m in models:
        mean, interval = summary[m]["mean"], summary[m]["interval"]
        lines.append(f"| {m} | " + " | ".join(_fmt(mean[k], interval.get(k)) for k in TABLE_METRICS) + " |")
    lines.append(f"| always no click | 0.500 | - | {always:.3f} | 0.000 | - | {always:.3f} | 0.000 | 0.000 | 0.000 |")
    best = max((m for m in models if m != ORACLE), key=lambda m: summary[m]["mean"]["roc_auc"])
    lines += ["", (f"Positives are {rate:.1%} of the held-out impressions, so always predicting no click is "
              f"{always:.1%} accurate.")]
    beaten = [m for m in models if summary[m]["mean"]["accuracy"] <= always + 1e-12]
    if beaten:
        lines.append(f"At threshold 0.5, {', '.join(beaten)} {'is' if len(beaten) == 1 else 'are'} no more accurate "
                     "than that: accuracy alone says nothing here; ROC-AUC and F1 at the validation threshold do.")
    lines.append(f"The best learnt model by ROC-AUC is {best} ({summary[best]['mean']['roc_auc']:.3f}); "
                 f"at its F1 threshold ({summary[best]['mean']['threshold']:.3f}) it has F1 "
                 f"{summary[best]['mean']['f1@t']:.3f} against {summary[best]['mean']['f1']:.3f} at 0.5.")
    chance = [m for m in models if m != ORACLE and summary[m]["interval"]["roc_auc"][0] <= 0.5]
    if len(chance) == len([m for m in models if m != ORACLE]):
        lines.append("No learnt model's ROC-AUC interval lies above 0.5: on these impressions none is told apart "
                     "from chance.")
    elif chance:
        lines.append(f"The ROC-AUC interval of {', '.join(chance)} reaches 0.5: not told apart from chance.")
    if ORACLE in summary:
        o = summary[ORACLE]["mean"]["roc_auc"]
        lines.append(f"The oracle's exact click probability reaches ROC-AUC {o:.3f}: the ceiling of any model of "
                     f"these impressions; {best} closes {(summary[best]['mean']['roc_auc'] - 0.5) / (o - 0.5):.0%} "
                     "of the gap between chance and it.")
    d = summary.get("lstm_minus_logistic_roc_auc")
    if d:
        verdict = ("the LSTM click model beats logistic regression" if d["interval"][0] > 0 else
                   "logistic regression beats the LSTM click model" if d["interval"][1] < 0 else
                   "the LSTM click model and logistic regression are not told apart")
        lines.append(f"ROC-AUC of LSTM minus logistic regression: {_fmt(d['mean'], d['interval'])} "
                     f"(LSTM ahead in {d['seeds_lstm_ahead']} of {d['seeds']} seeds): {verdict}.")
    return lines + [""]


def study_titles(negatives: int) -> dict[str, str]:
    """The heading of each study, in report order."""
    return {"simulated": "Simulated users (InterestDrift-v0, myopic behaviour)",
            "beauty": f"Purchase prediction on Beauty (1 positive : {negatives} sampled negatives)",
            "obd": "ZOZOTOWN impressions (Open Bandit Dataset, random log)"}


def report(results: dict[str, Any], cfg: ClicksConfig) -> str:
    titles = study_titles(cfg.negatives)
    lines = ["# Click prediction", "",
             ("Models trained end to end on impressions with binary cross-entropy (`agents.sequential.click_models`), "
             "scored on held-out users. `@t`: at the threshold that maximises F1 on the validation users; plain: at 0.5. "
             "Intervals: 95% bootstrap over seeds and held-out users."), ""]
    for name, title in titles.items():
        if name in results:
            lines += study_markdown(name, title, results[name])
        else:
            flag = {"simulated": "", "beauty": "--beauty PATH", "obd": "--obd DIR"}[name]
            why = f"pass `{flag}`" if flag and not getattr(cfg, name) else "not among `--studies`"
            lines += [f"## {title}", "", f"Not run: {why}.", ""]
    lines.append(f"Total wall time {results['seconds']:.0f} s, {cfg.threads} torch thread(s).")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], out: Path) -> Path:
    """ROC-AUC and F1 at the validation threshold per model and study, with their intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from benchmarks.plots import agent_color, save_png_svg

    studies = [s for s in ("simulated", "beauty", "obd") if s in results]
    fig, axes = plt.subplots(len(studies), 2, figsize=(9, 2.2 + 1.6 * len(studies)), squeeze=False)
    for row, study in enumerate(studies):
        summary = results[study]["summary"]
        models = [m for m in summary if not m.startswith("lstm_minus")]
        for col, metric in enumerate(("roc_auc", "f1@t")):
            ax = axes[row, col]
            est = np.array([summary[m]["mean"][metric] for m in models])
            low = np.array([summary[m]["interval"][metric][0] for m in models])
            high = np.array([summary[m]["interval"][metric][1] for m in models])
            y = np.arange(len(models))[::-1]
            ax.barh(y, est, color=[COLORS.get(m, agent_color(m)) for m in models], alpha=0.85)
            ax.errorbar(est, y, xerr=np.maximum([est - low, high - est], 0), fmt="none", ecolor="black", capsize=3)
            ax.set_yticks(y, models)
            ax.set_title(f"{study}: {'ROC-AUC' if metric == 'roc_auc' else 'F1 at the validation threshold'}",
                         fontsize=10)
            if metric == "roc_auc":
                ax.axvline(0.5, color="grey", lw=0.8, ls="--")
                ax.set_xlim(min(0.45, float(low.min()) - 0.02), 1.0)
            ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return save_png_svg(fig, out, "clicks")


def run(cfg: ClicksConfig) -> dict[str, Any]:
    """Every study the options ask for; returns the results object written to ``results.json``."""
    import torch

    torch.set_num_threads(cfg.threads)
    start = time.perf_counter()
    results: dict[str, Any] = {"config": asdict(cfg)}
    studies = [("simulated", simulated_cases, cfg.seeds)]
    if cfg.beauty:
        studies.append(("beauty", beauty_cases, cfg.beauty_seeds))
    if cfg.obd:
        studies.append(("obd", obd_cases, cfg.seeds))
    studies = [study for study in studies if study[0] in cfg.studies]
    for name, cases_of, n_seeds in studies:
        t = time.perf_counter()
        cases, info = cases_of(cfg)
        results[name] = {"info": info, "seeds": n_seeds, "summary": summarise(cases, cfg.resamples),
                         "models": [c.record for c in cases], "seconds": time.perf_counter() - t}
    results["seconds"] = time.perf_counter() - start
    return results


def parse_args(argv: list[str] | None) -> ClicksConfig:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    d = ClicksConfig()
    parser.add_argument("--out", required=True, help="folder for results.md, results.json and clicks.png")
    parser.add_argument("--users", type=int, default=d.users, help="simulated training users per seed")
    parser.add_argument("--test-users", type=int, default=d.test_users, help="simulated held-out users per seed")
    parser.add_argument("--seeds", type=int, default=d.seeds, help="seeds of the simulated and OBD studies")
    parser.add_argument("--beauty", help="the S3-Rec Beauty.txt file (study 2 runs only when given)")
    parser.add_argument("--beauty-seeds", type=int, default=d.beauty_seeds)
    parser.add_argument("--obd", help="the Open Bandit Dataset folder holding all.csv and item_context.csv, or "
                        "its parent with a random/ subfolder (study 3 runs only when given)")
    parser.add_argument("--models", default=",".join(d.models), help="comma-separated: " + ", ".join(MODEL_NAMES))
    parser.add_argument("--epochs", type=int, default=d.epochs, help="most epochs (early stopping may end sooner)")
    parser.add_argument("--negatives", type=int, default=d.negatives, help="sampled negatives per Beauty positive")
    parser.add_argument("--max-impressions", type=int, default=d.max_impressions,
                        help="training impressions per model; a seeded sample of more")
    parser.add_argument("--resamples", type=int, default=d.resamples, help="bootstrap resamples of the intervals")
    parser.add_argument("--threads", type=int, default=d.threads, help="torch CPU threads")
    parser.add_argument("--studies", default=",".join(d.studies),
                        help="comma-separated: " + ", ".join(STUDIES) + " (beauty and obd also need their data)")
    args = parser.parse_args(argv)
    studies = [s.strip() for s in args.studies.split(",") if s.strip()]
    if not studies or any(s not in STUDIES for s in studies):
        parser.error(f"--studies={args.studies!r}: allowed a comma-separated subset of {', '.join(STUDIES)}")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not models or any(m not in MODEL_NAMES for m in models) or len(set(models)) != len(models):
        parser.error(f"--models={args.models!r}: allowed a comma-separated subset of {', '.join(MODEL_NAMES)}")
    for flag, value, low in (("--users", args.users, 2), ("--test-users", args.test_users, 1),
                             ("--seeds", args.seeds, 1), ("--beauty-seeds", args.beauty_seeds, 1),
                             ("--epochs", args.epochs, 0), ("--negatives", args.negatives, 1),
                             ("--max-impressions", args.max_impressions, 1), ("--resamples", args.resamples, 1),
                             ("--threads", args.threads, 1)):
        if value < low:
            parser.error(f"{flag}={value} is out of range: allowed >= {low}")
    if args.beauty and not Path(args.beauty).is_file():
        parser.error(f"--beauty={args.beauty}: no such file")
    if args.obd and not (obd_directory(args.obd) / "all.csv").is_file():
        parser.error(f"--obd={args.obd}: no all.csv there nor in its random/ subfolder")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        parser.error(f"--out={args.out}: exists and is not a folder")
    return ClicksConfig(**{**vars(args), "models": models, "studies": studies})


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    try:
        results = run(cfg)
    except (ValueError, OSError) as err:  # a data file that does not read: one line, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 1
    out = Path(cfg.out)
    plot(results, out)
    text = report(results, cfg)
    write_results(out, results, text)
    print(text)
    print(f"wrote {out / 'results.md'}, results.json and clicks.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
