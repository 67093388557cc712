"""Off-policy estimates of Bernoulli TS's click rate from the Open Bandit Dataset's random log.

    python -m benchmarks.obd --data DIR [--behaviour-log random] [--target-log bts] --out OUT
        [--campaign all] [--target-policy bts|random] [--prior FILE] [--seed S] [--n-bootstrap B]
        [--confidence C] [--n-draws N] [--prior-impressions M]

The dataset paper's protocol: estimate the click-through rate (CTR) of one logging policy from the
other policy's log, and compare with the CTR it got in its own log (an on-policy ground truth from
the A/B test). ``DIR/<behaviour-log>/`` and ``DIR/<target-log>/`` each hold ``<campaign>.csv`` and
``item_context.csv`` (``recsim_env.logs.obd``); ``--prior`` (default ``DIR/prior_bts.yaml``) holds
Bernoulli TS's Beta parameters. The target policy is Bernoulli TS (its probability of each item at
each slot from ``--n-draws`` sampled rankings) or, with ``--target-policy random``, the uniform
ranking, for the reverse direction.

Each logged row is one (item, slot) of an impression and one one-step episode, evaluated
position-wise: IPS and SNIPS (``agents.ope``'s ``is`` and ``wis``) reweight its click by the target's
over the logging policy's probability of that item at that slot; DR adds a reward model, the
per-(item, slot) CTR of the behaviour log smoothed toward the slot's CTR with the weight of
``--prior-impressions`` impressions, fitted once on the whole behaviour log (the bootstrap does not
refit it). Intervals are percentile bootstraps over rows, on the same resamples for all three; the
on-policy CTR's own interval is the bootstrap of a mean of 0/1 clicks, drawn as its binomial.

Writes ``OUT/results.json`` and ``OUT/results.md`` (atomically); the sentences of the report are
computed from the numbers. A missing folder or a malformed file stops with one line naming it.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents.bandit_policies import BernoulliTS, BernoulliTSConfig, read_prior
from agents.ope import EstimatorConfig, estimate_all
from benchmarks.results import write_results
from recsim_env.config import Validated, bounded
from recsim_env.logs.obd import ObdLog, per_impression, read_obd, to_propensity_log

#: Reported name -> ``agents.ope`` estimator.
ESTIMATORS = {"IPS": "is", "SNIPS": "wis", "DR": "dr"}
TARGET_POLICIES = ("bts", "random")


@dataclass(frozen=True)
class ObdBenchmarkConfig(Validated):
    """Command-line options, validated on construction."""

    data: str
    out: str
    behaviour_log: str = "random"
    target_log: str = "bts"
    campaign: str = "all"
    target_policy: str = "bts"
    prior: str | None = None
    seed: int = bounded(0, ge=0, lt=2 ** 63, doc="seed of the policy's Monte Carlo and of the bootstrap")
    n_bootstrap: int = bounded(1000, ge=10, le=1_000_000, doc="bootstrap resamples of the rows")
    confidence: float = bounded(0.95, gt=0.0, lt=1.0, doc="coverage of the intervals")
    n_draws: int = bounded(100_000, ge=1, le=100_000_000, doc="sampled rankings of Bernoulli TS")
    prior_impressions: float = bounded(100.0, gt=0.0, lt=float("inf"),
                                       doc="weight of the position's CTR in DR's reward model")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.target_policy not in TARGET_POLICIES:
            raise ValueError(f"ObdBenchmarkConfig.target_policy={self.target_policy!r}: allowed "
                             f"{', '.join(TARGET_POLICIES)}")


def smoothed_ctr(obd: ObdLog, prior_impressions: float) -> np.ndarray:
    """``(n_items, n_positions)`` click rate per (item, slot), shrunk toward the slot's click rate.

    ``(clicks + m * slot_ctr) / (shown + m)``: with a few dozen impressions per cell and well under
    one click, the raw cell rates are mostly 0; ``m`` pseudo-impressions at the slot's rate keep the
    model from claiming an item never gets clicked.
    """
    cells = obd.item * obd.n_positions + obd.position
    size = obd.n_items * obd.n_positions
    shown = np.bincount(cells, minlength=size).reshape(obd.n_items, obd.n_positions)
    clicks = np.bincount(cells, obd.click.astype(np.float64), minlength=size).reshape(shown.shape)
    slot_shown = shown.sum(axis=0)
    slot_ctr = np.where(slot_shown > 0, clicks.sum(axis=0) / np.maximum(slot_shown, 1), obd.ctr)
    return (clicks + prior_impressions * slot_ctr) / (shown + prior_impressions)


def _seeds(seed: int) -> tuple[int, int]:
    """Independent seeds for the policy's Monte Carlo and for the bootstrap, from one seed."""
    state = np.random.SeedSequence(seed).generate_state(2, np.uint64) >> np.uint64(1)
    return int(state[0]), int(state[1])


def _read(cfg: ObdBenchmarkConfig, log: str) -> ObdLog:
    try:
        return read_obd(Path(cfg.data) / log, cfg.campaign)
    except (OSError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None


def target_distribution(cfg: ObdBenchmarkConfig, n_items: int, n_positions: int, seed: int) -> np.ndarray:
    """The target policy's ``(n_items, n_positions)`` probability of each item at each slot."""
    if cfg.target_policy == "random":
        return np.full((n_items, n_positions), 1.0 / n_items)
    prior = Path(cfg.prior) if cfg.prior else Path(cfg.data) / "prior_bts.yaml"
    try:
        params = read_prior(prior)
        if cfg.campaign not in params:
            raise ValueError(f"campaign={cfg.campaign!r} is not in {prior}: allowed {', '.join(params)}")
        alpha, beta = params[cfg.campaign]["alpha"], params[cfg.campaign]["beta"]
        if len(alpha) != n_items:
            raise ValueError(f"{prior} has {len(alpha)} items for campaign {cfg.campaign!r}, the logs {n_items}")
        policy = BernoulliTS(alpha, beta, BernoulliTSConfig(n_positions=n_positions, n_draws=cfg.n_draws, seed=seed))
    except (OSError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None
    return policy.action_distribution()


def run(cfg: ObdBenchmarkConfig) -> dict[str, Any]:
    """The estimates, the on-policy CTR and what they were computed from, as ``results.json`` holds them."""
    if not Path(cfg.data).is_dir():
        raise SystemExit(f"error: {cfg.data}: no such data folder")
    behaviour, target_log = _read(cfg, cfg.behaviour_log), _read(cfg, cfg.target_log)
    if behaviour.n_items != target_log.n_items:
        raise SystemExit(f"error: the {cfg.behaviour_log} log has {behaviour.n_items} items, the {cfg.target_log} "
                         f"log {target_log.n_items}")
    n_positions = max(behaviour.n_positions, target_log.n_positions)
    behaviour = dataclasses.replace(behaviour, n_positions=n_positions)
    policy_seed, bootstrap_seed = _seeds(cfg.seed)
    pi = target_distribution(cfg, behaviour.n_items, n_positions, policy_seed)
    log = to_propensity_log(behaviour, policy_name=cfg.behaviour_log)
    q = smoothed_ctr(behaviour, cfg.prior_impressions)
    estimates = estimate_all(log, per_impression(behaviour, pi), per_impression(behaviour, q),
                             config=EstimatorConfig(confidence=cfg.confidence, n_bootstrap=cfg.n_bootstrap,
                                                    seed=bootstrap_seed),
                             estimators=tuple(ESTIMATORS.values()))
    truth = target_log.ctr
    rng = np.random.default_rng(bootstrap_seed)
    resampled = rng.binomial(len(target_log), truth, size=cfg.n_bootstrap) / len(target_log)
    alpha = (1.0 - cfg.confidence) / 2.0
    on_low, on_high = np.quantile(resampled, [alpha, 1.0 - alpha])
    rows = {}
    for name, key in ESTIMATORS.items():
        e = estimates[key]
        rows[name] = {"estimator": key, "estimate": e.estimate, "low": e.low, "high": e.high,
                      "covers_on_policy": bool(e.low <= truth <= e.high),
                      "relative_error": (e.estimate - truth) / truth if truth > 0 else None}
    ess = estimates["is"].effective_sample_size

    def describe(obd: ObdLog, name: str) -> dict[str, Any]:
        return {"log": name, "path": obd.metadata["path"], "sha256": obd.metadata["sha256"], "rows": len(obd),
                "clicks": int(obd.click.sum()), "ctr": obd.ctr}

    return {
        "config": dataclasses.asdict(cfg),
        "behaviour": describe(behaviour, cfg.behaviour_log),
        "target": {**describe(target_log, cfg.target_log), "on_policy_ctr": truth, "low": float(on_low),
                   "high": float(on_high)},
        "target_policy": {"name": "bernoulli_ts" if cfg.target_policy == "bts" else "uniform_random",
                          "n_draws": cfg.n_draws if cfg.target_policy == "bts" else None, "seed": policy_seed},
        "reward_model": {"name": "smoothed_ctr_per_item_position", "prior_impressions": cfg.prior_impressions},
        "n_items": behaviour.n_items, "n_positions": n_positions, "confidence": cfg.confidence,
        "bootstrap_seed": bootstrap_seed, "effective_sample_size": ess,
        "estimates": rows, "n_covering": sum(r["covers_on_policy"] for r in rows.values()),
    }


def _sentence(name: str, row: dict[str, Any], truth: float, confidence: float) -> str:
    where = "covers" if row["covers_on_policy"] else "does not cover"
    if row["relative_error"] is None:
        relation = "while the on-policy CTR is 0"
    else:
        gap = row["relative_error"]
        relation = f"{abs(gap):.0%} {'above' if gap >= 0 else 'below'} the on-policy CTR of {truth:.4f}"
    return (f"{name} puts the target's CTR at {row['estimate']:.4f} ({confidence:.0%} interval "
            f"{row['low']:.4f} to {row['high']:.4f}), {relation}; the interval {where} it.")


def report(results: dict[str, Any]) -> str:
    """``results.md``: the table and sentences made from ``results`` (nothing in it is fixed text about a result)."""
    b, t, conf = results["behaviour"], results["target"], results["confidence"]
    truth = t["on_policy_ctr"]
    policy = "Bernoulli TS" if results["target_policy"]["name"] == "bernoulli_ts" else "the uniform random ranking"
    lines = [f"# Off-policy CTR of {policy} from the `{b['log']}` log", "",
             (f"Behaviour log `{b['path']}`: {b['rows']} rows, {b['clicks']} clicks (CTR {b['ctr']:.4f}). "
              f"Target log `{t['path']}`: {t['rows']} rows, {t['clicks']} clicks, so the on-policy CTR is "
              f"{truth:.4f} ({conf:.0%} bootstrap interval {t['low']:.4f} to {t['high']:.4f})."), "",
             f"| estimator | estimate | {conf:.0%} interval | relative error | covers on-policy CTR |",
             "|---|---|---|---|---|"]
    for name, row in results["estimates"].items():
        rel = "-" if row["relative_error"] is None else f"{row['relative_error']:+.0%}"
        lines.append(f"| {name} | {row['estimate']:.4f} | [{row['low']:.4f}, {row['high']:.4f}] | {rel} | "
                     f"{'yes' if row['covers_on_policy'] else 'no'} |")
    lines += ["", *(_sentence(name, row, truth, conf) for name, row in results["estimates"].items()), "",
              (f"{results['n_covering']} of {len(results['estimates'])} intervals cover the on-policy CTR. "
               f"The reweighted log is worth {results['effective_sample_size']:.0f} rows of the target policy "
               f"(effective sample size) out of {b['rows']}."), "",
              f"DR's reward model: the behaviour log's CTR per (item, position), smoothed toward the position's "
              f"CTR with {results['reward_model']['prior_impressions']:g} pseudo-impressions. Seed "
              f"{results['config']['seed']}, {results['config']['n_bootstrap']} bootstrap resamples"
              + (f", {results['target_policy']['n_draws']} sampled rankings." if results["target_policy"]["n_draws"]
                 else ".")]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> ObdBenchmarkConfig:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = ObdBenchmarkConfig(data="", out="")
    parser.add_argument("--data", required=True, help="folder with one sub-folder per logging policy (a local path)")
    parser.add_argument("--out", required=True, help="folder for results.md and results.json")
    parser.add_argument("--behaviour-log", default=defaults.behaviour_log, help="sub-folder of the log to reweight")
    parser.add_argument("--target-log", default=defaults.target_log,
                        help="sub-folder of the target policy's own log (its mean click is the ground truth)")
    parser.add_argument("--campaign", default=defaults.campaign, help="campaign: reads <log>/<campaign>.csv")
    parser.add_argument("--target-policy", choices=TARGET_POLICIES, default=defaults.target_policy)
    parser.add_argument("--prior", help="Bernoulli TS prior (default: DATA/prior_bts.yaml)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--n-bootstrap", type=int, default=defaults.n_bootstrap)
    parser.add_argument("--confidence", type=float, default=defaults.confidence)
    parser.add_argument("--n-draws", type=int, default=defaults.n_draws, help="sampled rankings of Bernoulli TS")
    parser.add_argument("--prior-impressions", type=float, default=defaults.prior_impressions,
                        help="weight of the position's CTR in DR's reward model, in impressions")
    args = parser.parse_args(argv)
    try:
        return ObdBenchmarkConfig(**vars(args))
    except (TypeError, ValueError) as err:  # name the option the user typed, not the field
        message = str(err).removeprefix(f"{ObdBenchmarkConfig.__name__}.")
        name = re.match(r"\w*", message).group(0)
        parser.error(f"--{name.replace('_', '-')}{message[len(name):]}")


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    results = run(cfg)
    out = Path(cfg.out)
    text = report(results)
    write_results(out, results, text)
    print(text)
    print(f"wrote {out / 'results.md'} and results.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
