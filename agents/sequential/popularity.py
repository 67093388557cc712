"""The popularity baseline: every user gets the most interacted-with items.

Its scores are made distinct (more interactions first, then the lower item id), so rankings have no
ties and the S3-Rec PopRec row is reproduced exactly whatever tie rule the metric uses.
"""

from __future__ import annotations

import numpy as np
import torch

from agents.sequential.base import Batch, NextItemModel


class Popularity(NextItemModel):
    """Scores items by their interaction count; fitted by counting, not by gradient descent."""

    kind = "popularity"
    trainable = False

    def __init__(self, n_items: int, config: None = None):
        super().__init__(n_items, None)
        self.register_buffer("counts", torch.zeros(n_items + 1, dtype=torch.long))
        self.register_buffer("ranked", torch.zeros(n_items + 1))

    def fit(self, counts: np.ndarray) -> Popularity:
        """Set the interaction count of each dense item (``(n_items + 1,)``, entry 0 ignored)."""
        counts = np.asarray(counts, np.int64)
        if counts.shape != (self.n_items + 1,):
            raise ValueError(f"counts must have shape ({self.n_items + 1},), got {counts.shape}")
        order = np.lexsort((np.arange(len(counts)), -counts))  # most counted first, then lower id
        ranked = np.empty(len(counts), np.float32)
        ranked[order] = np.arange(len(counts), 0, -1)  # distinct, exact in float32 below 2**24 items
        self.counts.copy_(torch.as_tensor(counts))
        self.ranked.copy_(torch.as_tensor(ranked))
        return self

    def score(self, batch: Batch, candidates: torch.Tensor | None = None) -> torch.Tensor:
        if candidates is not None:
            return self.ranked[candidates]
        scores = self.ranked.expand(len(batch.lengths), -1).clone()
        scores[:, 0] = float("-inf")
        return scores
