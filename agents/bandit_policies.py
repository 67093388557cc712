"""Bernoulli Thompson Sampling as an evaluation policy: its probability of every (item, position).

The Open Bandit Dataset's Bernoulli TS ranks items by one draw per item from its Beta posterior and
fills the slots in that order. Off-policy evaluation needs the probability of each item landing in
each slot, which has no closed form beyond a few items, so it is estimated the way the dataset's
authors do: many seeded rankings, counted. The policy is context-free, so one
``(n_items, n_positions)`` matrix serves every impression.

``read_prior`` parses the ``prior_bts.yaml`` shipped with the dataset (campaign -> ``alpha``/``beta``
lists) with a small parser for that one layout, so no YAML library is needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recsim_env.config import Validated, bounded


@dataclass(frozen=True)
class BernoulliTSConfig(Validated):
    """Slots, Monte Carlo size and seed of Bernoulli TS's action distribution."""

    n_positions: int = bounded(3, ge=1, le=1000, doc="slots per impression (the k best items are shown)")
    n_draws: int = bounded(100_000, ge=1, le=100_000_000, doc="sampled rankings (Monte Carlo size)")
    chunk: int = bounded(10_000, ge=1, le=10_000_000, doc="rankings per batch (bounds memory only)")
    seed: int = bounded(0, ge=0, lt=2 ** 63, doc="seed of the sampling generator")


def read_prior(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """``{campaign: {"alpha": (n_items,), "beta": (n_items,)}}`` from a ``prior_bts.yaml`` file.

    The layout: ``campaign:`` at column 0, ``alpha:``/``beta:`` indented, then ``- number`` lines.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a line outside that layout, a parameter that is not a positive number, or a
            campaign whose ``alpha`` and ``beta`` differ in length or are missing; names file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such prior file")
    prior: dict[str, dict[str, list[float]]] = {}
    campaign = key = None
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.split("#", 1)[0].rstrip()
        text = line.strip()
        if not text:
            continue
        if not line[0].isspace() and text.endswith(":"):
            campaign, key = text[:-1].strip(), None
            prior[campaign] = {}
        elif campaign is not None and text in ("alpha:", "beta:"):
            key = text[:-1]
            prior[campaign][key] = []
        elif key is not None and text.startswith("-"):
            try:
                value = float(text[1:])
            except ValueError:
                value = float("nan")
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"{path}, line {number}: expected a positive number, got {text[1:].strip()!r}")
            prior[campaign][key].append(value)
        else:
            raise ValueError(f"{path}, line {number}: expected 'campaign:', 'alpha:', 'beta:' or '- number', "
                             f"got {text!r}")
    out = {}
    for name, params in prior.items():
        if set(params) != {"alpha", "beta"} or len(params["alpha"]) != len(params["beta"]) or not params["alpha"]:
            raise ValueError(f"{path}: campaign {name!r} needs 'alpha' and 'beta' lists of the same positive length")
        out[name] = {k: np.array(v, np.float64) for k, v in params.items()}
    if not out:
        raise ValueError(f"{path}: no campaign found")
    return out


class BernoulliTS:
    """Bernoulli Thompson Sampling with fixed Beta(alpha, beta) posteriors per item, as a ranking policy."""

    name = "bernoulli_ts"

    def __init__(self, alpha: np.ndarray, beta: np.ndarray, config: BernoulliTSConfig | None = None):
        self.alpha = np.asarray(alpha, np.float64)
        self.beta = np.asarray(beta, np.float64)
        self.config = BernoulliTSConfig() if config is None else config
        if self.alpha.ndim != 1 or self.alpha.shape != self.beta.shape:
            raise ValueError(f"alpha and beta must be vectors of one length, got shapes {self.alpha.shape} "
                             f"and {self.beta.shape}")
        for label, values in (("alpha", self.alpha), ("beta", self.beta)):
            if not (np.isfinite(values) & (values > 0)).all():
                raise ValueError(f"BernoulliTS.{label} is out of range: allowed (0, inf) for every item")
        if self.config.n_positions > self.n_items:
            raise ValueError(f"BernoulliTSConfig.n_positions={self.config.n_positions} is out of range: allowed "
                             f"[1, {self.n_items}] (the number of items)")

    @classmethod
    def from_prior(cls, path: str | Path, campaign: str = "all",
                   config: BernoulliTSConfig | None = None) -> BernoulliTS:
        """The policy of one campaign of a ``prior_bts.yaml`` file (see :func:`read_prior`)."""
        prior = read_prior(path)
        if campaign not in prior:
            raise ValueError(f"campaign={campaign!r} is not in {path}: allowed {', '.join(prior)}")
        return cls(prior[campaign]["alpha"], prior[campaign]["beta"], config)

    @property
    def n_items(self) -> int:
        return len(self.alpha)

    def sample_rankings(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``(n, n_positions)`` item ids: per row, the items of the highest Beta draws, best first."""
        k = self.config.n_positions
        theta = rng.beta(self.alpha, self.beta, size=(n, self.n_items))
        if k < self.n_items:
            top = np.argpartition(-theta, k - 1, axis=1)[:, :k]
        else:
            top = np.broadcast_to(np.arange(self.n_items), (n, self.n_items))
        order = np.argsort(-np.take_along_axis(theta, top, axis=1), axis=1, kind="stable")
        return np.take_along_axis(top, order, axis=1)

    def action_distribution(self) -> np.ndarray:
        """``(n_items, n_positions)``: the share of ``n_draws`` sampled rankings with item i in slot k.

        Each column sums to 1 (one item per slot) and each row to at most 1 (an item fills one slot at
        most). The draws come in chunks from one generator seeded by ``config.seed``, so the matrix does
        not depend on ``config.chunk``.
        """
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        counts = np.zeros((cfg.n_positions, self.n_items), np.int64)
        offsets = np.arange(cfg.n_positions)[None, :] * self.n_items
        for done in range(0, cfg.n_draws, cfg.chunk):
            ranking = self.sample_rankings(min(cfg.chunk, cfg.n_draws - done), rng)
            counts += np.bincount((ranking + offsets).ravel(),
                                  minlength=cfg.n_positions * self.n_items).reshape(cfg.n_positions, self.n_items)
        return counts.T / cfg.n_draws
