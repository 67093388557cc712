"""Building, fitting, saving and loading next-item models, under one name per kind.

A :class:`TrainedModel` is what a policy needs besides the weights: the original id of each dense
item (to map a simulator's item ids, or a data set's, to the model's) and the training item counts
(the fallback score for a user with no history yet). A checkpoint stores all of it as tensors and
plain values only, so it loads with ``torch.load(..., weights_only=True)``: no pickled code runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.sequential.base import NextItemModel, seeded
from agents.sequential.lightgcn import LightGCN, LightGCNConfig
from agents.sequential.popularity import Popularity
from agents.sequential.recurrent import RecurrentConfig, RecurrentRecommender
from agents.sequential.srgnn import SRGNN, SRGNNConfig
from agents.sequential.training import TrainConfig, TrainResult, train
from agents.sequential.transformer import TransformerConfig, TransformerRecommender
from recsim_env.io import atomic_write
from recsim_env.logs import EvalSet, Sequences

MODELS: dict[str, tuple[type[NextItemModel], type | None]] = {
    "popularity": (Popularity, None),
    "lstm": (RecurrentRecommender, RecurrentConfig),
    "gcn": (SRGNN, SRGNNConfig),
    "lightgcn": (LightGCN, LightGCNConfig),
    "transformer": (TransformerRecommender, TransformerConfig),
}
CHECKPOINT_FORMAT = "recsim_env.sequential/1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or does not match what it is loaded into."""


def _kind(kind: str) -> tuple[type[NextItemModel], type | None]:
    if kind not in MODELS:
        raise ValueError(f"unknown model kind {kind!r}; allowed: {', '.join(MODELS)}")
    return MODELS[kind]


def model_config(kind: str, config: Any = None) -> Any:
    """The kind's config dataclass from a dataclass, a dict of fields, or None (defaults)."""
    _, config_cls = _kind(kind)
    if config_cls is None or isinstance(config, config_cls):
        return config
    return config_cls(**(config or {}))


def build_model(kind: str, n_items: int, config: Any = None, train_seqs: Sequences | None = None,
                seed: int = 0) -> NextItemModel:
    """A freshly initialised model (seeded), LightGCN built on the graph of ``train_seqs``.

    The initialisation draws from a forked, seeded torch generator (:func:`~agents.sequential.base.seeded`),
    so one seed gives the same weights bit for bit and torch's global random state is left as it was.
    """
    cls, _ = _kind(kind)
    config = model_config(kind, config)
    if cls is LightGCN and train_seqs is None:
        raise ValueError("LightGCN needs the training sequences (its graph)")
    with seeded(seed):
        return LightGCN(n_items, config, train=train_seqs) if cls is LightGCN else cls(n_items, config)


@dataclass
class TrainedModel:
    """A fitted model with the item mapping and counts a policy needs."""

    model: NextItemModel
    item_ids: np.ndarray
    item_counts: np.ndarray
    max_len: int

    @property
    def kind(self) -> str:
        return self.model.kind

    def save(self, path: str | Path) -> Path:
        """Write the checkpoint atomically."""
        ids = self.item_ids
        payload = {
            "format": CHECKPOINT_FORMAT, "kind": self.model.kind, "n_items": self.model.n_items,
            "config": self.model.config_dict(), "init": self.model.init_kwargs(),
            "state_dict": self.model.state_dict(), "max_len": int(self.max_len),
            "item_ids": torch.as_tensor(ids) if ids.dtype.kind in "iu" else [str(x) for x in ids],
            "item_counts": torch.as_tensor(np.asarray(self.item_counts, np.int64)),
        }
        return atomic_write(path, lambda tmp: torch.save(payload, tmp))

    @classmethod
    def load(cls, path: str | Path, kind: str | None = None) -> TrainedModel:
        """Read a checkpoint written by :meth:`save`.

        Raises:
            FileNotFoundError: no such file.
            CheckpointError: unreadable (corrupt, truncated, not a torch file), not a recsim_env
                checkpoint, of another ``kind`` than asked, or weights that do not fit the model.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such checkpoint")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises many types for a damaged file; all mean "unreadable"
            raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__}: {err})") from err
        if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{path}: not a recsim_env sequential-model checkpoint "
                                  f"(expected format {CHECKPOINT_FORMAT!r})")
        if kind is not None and payload["kind"] != kind:
            raise CheckpointError(f"{path}: holds a {payload['kind']!r} model, expected {kind!r}")
        try:
            model_cls, _ = _kind(payload["kind"])
            config = model_config(payload["kind"], payload["config"])
            model = model_cls(payload["n_items"], config, **payload["init"])
            model.load_state_dict(payload["state_dict"])
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise CheckpointError(f"{path}: does not match its model ({type(err).__name__}: {err})") from err
        ids = payload["item_ids"]
        item_ids = ids.numpy() if isinstance(ids, torch.Tensor) else np.array(ids)
        return cls(model, item_ids, payload["item_counts"].numpy(), int(payload["max_len"]))


def fit(kind: str, train_seqs: Sequences, valid: EvalSet, config: Any = None,
        train_config: TrainConfig | None = None, checkpoint: str | Path | None = None,
        popularity_counts: np.ndarray | None = None, progress: bool | None = None) -> tuple[TrainedModel, TrainResult]:
    """Build and train a model of ``kind`` (popularity: count; others: :func:`train`).

    Args:
        popularity_counts: counts the popularity model uses instead of the training counts (the
            S3-Rec protocol counts over the whole file).
        checkpoint: written at each new best validation epoch, and at the end.
    """
    train_config = train_config or TrainConfig()
    model = build_model(kind, train_seqs.n_items, config, train_seqs, train_config.seed)
    trained = TrainedModel(model, train_seqs.item_ids, train_seqs.item_counts(), train_config.max_len)
    if isinstance(model, Popularity):
        model.fit(train_seqs.item_counts() if popularity_counts is None else popularity_counts)
        result = TrainResult()
    else:
        result = train(model, train_seqs, valid, train_config,
                       on_best=None if checkpoint is None else lambda: trained.save(checkpoint), progress=progress)
    if checkpoint is not None:
        trained.save(checkpoint)
    return trained, result
