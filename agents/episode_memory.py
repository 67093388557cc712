"""What the observation's window of history forgets: every earlier step of a logged episode.

The observation shows the last ``history_length`` steps, but part of a user's hidden state is a sum
over the whole episode. InterestDrift's time budget, which ends the episode when it runs out, is the
initial budget minus every step's cost and every click's engagement plus every consumed item's refill,
which grows with the item's hidden quality. A network that reads only the window cannot tell two
users apart whose budgets differ, and a value fitted on a behaviour policy's log then carries that
policy's budgets into every target's estimate: FQE underestimates the targets that keep users longer.

:class:`EpisodeMemory` encodes, for each logged step, the steps of its episode before it: the sum of a
learnt embedding of every clicked item (an item's hidden quality can be learnt from what followed its
clicks) and the running totals of steps, clicks and engagement. An additive (DeepSets) encoder is
enough for any state that is a sum over the episode, and it is built from the log's columns alone.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from agents.ope import _check_order
from recsim_env.logs.propensity import PropensityLog

#: Divisor of the running totals and of the summed item embeddings: keeps the inputs near 1 over
#: episodes of tens of steps.
TOTAL_SCALE = 10.0


class EpisodeSoFar:
    """Where each logged step's earlier clicks sit, and its episode's running totals before it.

    The clicked items of the whole log, in row order, form one array; the clicks before row ``r`` in its
    episode are the ``count[r]`` entries from ``offset[r]``: each row's bag is a prefix of its episode's,
    so the index is as long as the log, not quadratic in the episode length.

    Raises:
        ValueError: rows out of user-then-step order.
    """

    def __init__(self, log: PropensityLog):
        start = _check_order(log)
        rows = np.arange(len(log))
        click = np.asarray(log.click, bool)
        first = np.maximum.accumulate(np.where(start, rows, 0))  # each row's episode start
        clicks_before = np.cumsum(click) - click
        self.items = torch.as_tensor(np.asarray(log.item, np.int64)[click])
        self.offset = torch.as_tensor(clicks_before[first])
        self.count = torch.as_tensor(clicks_before - clicks_before[first])
        steps = np.stack([np.ones(len(log)), click, np.where(click, log.engagement, 0.0)], axis=1)
        before = np.cumsum(steps, axis=0) - steps
        self.totals = torch.as_tensor((before - before[first]) / TOTAL_SCALE, dtype=torch.float32)
        self.n_items = int(max(np.max(log.item, initial=0), np.max(log.candidates, initial=0))) + 1

    def __len__(self) -> int:
        return len(self.totals)

    def bags(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The clicked items before ``rows`` as ``nn.EmbeddingBag`` input: flat ids and each bag's offset."""
        count = self.count[rows]
        starts = torch.cumsum(count, 0) - count
        within = torch.arange(int(count.sum())) - torch.repeat_interleave(starts, count)
        return self.items[torch.repeat_interleave(self.offset[rows], count) + within], starts


class EpisodeMemory(nn.Module):
    """Rows of a log -> ``(B, hidden)``: the episode so far, to add to a pair network's user side.

    Args:
        n_items: Item ids the embedding covers (``EpisodeSoFar.n_items`` of the log it is fitted on).
        dim: Width of the item embedding.
        hidden: Width of the output (the pair network's).
    """

    def __init__(self, n_items: int, dim: int, hidden: int):
        super().__init__()
        self.items = nn.EmbeddingBag(n_items, dim, mode="sum")
        nn.init.normal_(self.items.weight, std=0.1)
        self.out = nn.Linear(dim + 3, hidden)

    def forward(self, episode: EpisodeSoFar, rows: torch.Tensor) -> torch.Tensor:
        ids, offsets = episode.bags(rows)
        if len(ids) and int(ids.max()) >= self.items.num_embeddings:
            raise ValueError(f"item id {int(ids.max())} is beyond the {self.items.num_embeddings} items the memory "
                             "was built for")
        summed = self.items(ids, offsets) / TOTAL_SCALE
        return self.out(torch.cat([summed, episode.totals[rows]], dim=1))
