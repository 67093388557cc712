"""A SASRec-style transformer recommender (Kang & McAuley, 2018).

Items are embedded (scaled by the square root of the size), a learned embedding of each position
is added, and pre-norm causal self-attention blocks read the history; the output at each position
is the prediction of the next item, scored by a dot product with the same item embeddings plus a
per-item bias. Training uses full-softmax cross-entropy by default (``TrainConfig.loss="bce"`` gives
SASRec's own one-negative objective, ``"ss"`` a sampled softmax over ``TrainConfig.negatives`` items). Histories arrive right-padded, so the causal mask alone keeps
every real position from seeing padding; the key-padding mask is passed as well so that padding is
never attended to whatever the layout, and the user vector is the output at the last real position.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from agents.sequential.base import (
    SAMPLED_NEGATIVES,
    Batch,
    NextItemModel,
    dot_scores,
    item_embedding,
    next_item_loss,
)
from recsim_env.config import Validated, bounded


@dataclass(frozen=True)
class TransformerConfig(Validated):
    """Architecture of :class:`TransformerRecommender`."""

    embedding_dim: int = bounded(64, ge=1, le=4096, doc="item embedding and attention size")
    num_blocks: int = bounded(2, ge=1, le=16, doc="stacked self-attention blocks")
    num_heads: int = bounded(1, ge=1, le=64, doc="attention heads (must divide embedding_dim)")
    feedforward_dim: int = bounded(256, ge=1, le=16384, doc="hidden size of each block's feed-forward layer")
    dropout: float = bounded(0.2, ge=0.0, lt=1.0, doc="dropout on embeddings, attention and feed-forward")
    max_len: int = bounded(50, ge=1, le=4096, doc="positions with an embedding: most recent items read")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.embedding_dim % self.num_heads:
            raise ValueError(f"TransformerConfig.num_heads={self.num_heads}: must divide "
                             f"embedding_dim={self.embedding_dim}")


class TransformerRecommender(NextItemModel):
    """Item + position embeddings -> causal pre-norm transformer -> dot product with the item embeddings."""

    kind = "transformer"

    def __init__(self, n_items: int, config: TransformerConfig | None = None):
        config = config or TransformerConfig()
        super().__init__(n_items, config)
        d = config.embedding_dim
        self.embedding = item_embedding(n_items, d)
        self.position = nn.Embedding(config.max_len, d)
        nn.init.normal_(self.position.weight, std=0.02)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(d, config.num_heads, config.feedforward_dim, config.dropout,
                                       activation="gelu", batch_first=True, norm_first=True)
            for _ in range(config.num_blocks))
        self.norm = nn.LayerNorm(d)  # pre-norm blocks leave their output unnormalised
        self.bias = nn.Parameter(torch.zeros(n_items + 1))
        self.dropout = nn.Dropout(config.dropout)

    def _window(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Each row's last ``max_len`` items (and their targets), still right-padded: positions past
        the embedding table are cut from the old end, as a policy's longer history would be."""
        items, lengths, targets = batch.items, batch.lengths, batch.targets
        max_len = self.config.max_len
        if items.shape[1] <= max_len:
            return items, lengths, targets
        offset = (lengths - max_len).clamp(min=0)
        index = offset[:, None] + torch.arange(max_len, device=items.device)
        cut = None if targets is None else targets.gather(1, index)
        return items.gather(1, index), lengths.clamp(max=max_len), cut

    def states(self, items: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The prediction vector after every position, ``(B, L, embedding_dim)`` (``L <= max_len``)."""
        length = items.shape[1]
        positions = torch.arange(length, device=items.device)
        x = self.embedding(items) * self.config.embedding_dim ** 0.5 + self.position(positions)
        padding = positions[None, :] >= lengths[:, None]
        x = self.dropout(x.masked_fill(padding[..., None], 0.0))
        causal = torch.ones(length, length, dtype=torch.bool, device=items.device).triu(1)  # True: blocked
        # Key 0 is always a real item (lengths >= 1), so no query has every key blocked.
        for block in self.blocks:
            x = block(x, src_mask=causal, src_key_padding_mask=padding)
        return self.norm(x)

    def loss(self, batch: Batch, objective: str = "ce", negatives: int = SAMPLED_NEGATIVES) -> torch.Tensor:
        """Mean next-item loss; ``negatives`` is the sampled softmax's count (``objective="ss"``)."""
        assert batch.targets is not None, "a training batch needs targets"
        items, lengths, targets = self._window(batch)
        states = self.states(items, lengths)
        mask = targets > 0
        return next_item_loss(states[mask], self.embedding.weight, self.bias, targets[mask], objective,
                              negatives=negatives)

    def represent(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        items, lengths, _ = self._window(batch)
        states = self.states(items, lengths)
        return states[torch.arange(len(lengths)), lengths - 1], self.embedding.weight

    def score(self, batch: Batch, candidates: torch.Tensor | None = None) -> torch.Tensor:
        return dot_scores(*self.represent(batch), self.bias, candidates)
