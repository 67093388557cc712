"""A GRU4Rec-style recurrent recommender (LSTM cell by default, GRU as an option).

Items are embedded, a recurrent encoder reads the history, and the state after each item is
projected back into the item-embedding space, where a dot product with every item (plus a per-item
bias) gives next-item logits trained with full-softmax cross-entropy (by default; ``TrainConfig.loss``
``"bce"`` gives the one-negative objective of the published baselines). Sharing the input and output
item embeddings halves the parameters, which matters on sparse data where most items are seen a
handful of times.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from agents.sequential.base import Batch, NextItemModel, dot_scores, item_embedding, next_item_loss
from recsim_env.config import Validated, bounded


@dataclass(frozen=True)
class RecurrentConfig(Validated):
    """Architecture of :class:`RecurrentRecommender`."""

    cell: str = "lstm"
    embedding_dim: int = bounded(64, ge=1, le=4096, doc="item embedding size")
    hidden_dim: int = bounded(128, ge=1, le=8192, doc="recurrent state size")
    num_layers: int = bounded(1, ge=1, le=8, doc="stacked recurrent layers")
    dropout: float = bounded(0.3, ge=0.0, lt=1.0, doc="dropout on embeddings and on the encoder output")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.cell not in ("lstm", "gru"):
            raise ValueError(f"RecurrentConfig.cell={self.cell!r}: allowed 'lstm', 'gru'")


class RecurrentRecommender(NextItemModel):
    """Embedding -> LSTM/GRU -> projection -> dot product with the item embeddings."""

    kind = "lstm"

    def __init__(self, n_items: int, config: RecurrentConfig | None = None):
        config = config or RecurrentConfig()
        super().__init__(n_items, config)
        rnn = nn.LSTM if config.cell == "lstm" else nn.GRU
        self.embedding = item_embedding(n_items, config.embedding_dim)
        self.rnn = rnn(config.embedding_dim, config.hidden_dim, config.num_layers, batch_first=True,
                       dropout=config.dropout if config.num_layers > 1 else 0.0)
        self.project = nn.Linear(config.hidden_dim, config.embedding_dim)
        self.bias = nn.Parameter(torch.zeros(n_items + 1))
        self.dropout = nn.Dropout(config.dropout)

    def states(self, items: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The encoder's prediction vector after every position, ``(B, L, embedding_dim)``."""
        x = self.dropout(self.embedding(items))
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=items.shape[1])
        return self.project(self.dropout(out))

    def loss(self, batch: Batch, objective: str = "ce") -> torch.Tensor:
        assert batch.targets is not None, "a training batch needs targets"
        states = self.states(batch.items, batch.lengths)
        mask = batch.targets > 0
        return next_item_loss(states[mask], self.embedding.weight, self.bias, batch.targets[mask], objective)

    def represent(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        states = self.states(batch.items, batch.lengths)
        return states[torch.arange(len(batch.lengths)), batch.lengths - 1], self.embedding.weight

    def score(self, batch: Batch, candidates: torch.Tensor | None = None) -> torch.Tensor:
        return dot_scores(*self.represent(batch), self.bias, candidates)
