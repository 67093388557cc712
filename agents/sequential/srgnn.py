"""An SR-GNN-style recommender: a gated graph network over each history's session graph.

Wu et al., *Session-based Recommendation with Graph Neural Networks* (AAAI 2019). Each history
becomes a small directed graph whose nodes are its distinct items and whose edges are the observed
transitions, so an item visited twice is one node with both contexts. A gated graph layer refines
the item embeddings as in the paper: messages from predecessors and from successors, each with its
own weight and mean-aggregated (SR-GNN's normalised in- and out-adjacency), concatenated and fed
to a GRU cell. A soft-attention readout conditioned on the last item gives the session vector,
combined with the last item's own vector. Logits are dot products with the item embeddings
(full-softmax cross-entropy by default, as the recurrent model; see ``TrainConfig.loss``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch_geometric.nn import MessagePassing

from agents.sequential.base import Batch, NextItemModel, dot_scores, item_embedding, next_item_loss
from recsim_env.config import Validated, bounded


@dataclass(frozen=True)
class SRGNNConfig(Validated):
    """Architecture of :class:`SRGNN`."""

    embedding_dim: int = bounded(64, ge=1, le=4096, doc="item embedding and node state size")
    steps: int = bounded(1, ge=1, le=10, doc="gated graph propagation steps")
    dropout: float = bounded(0.3, ge=0.0, lt=1.0, doc="dropout on item embeddings and the session vector")


@dataclass(frozen=True)
class SessionGraphs:
    """A batch of session graphs as one disjoint graph.

    Attributes:
        node_items: item of each node, ``(N,)``; nodes are grouped by history.
        edge_index: ``(2, E)`` distinct transitions, source -> target node.
        alias: ``(P, L)`` node of each history position (0 where padded).
    """

    node_items: np.ndarray
    edge_index: np.ndarray
    alias: np.ndarray


def session_graphs(items: np.ndarray, lengths: np.ndarray) -> SessionGraphs:
    """Build the session graphs of right-padded histories, vectorized over the batch."""
    p, width = items.shape
    valid = np.arange(width)[None, :] < lengths[:, None]
    base = int(items.max(initial=0)) + 1
    keys = (np.arange(p)[:, None] * base + items)[valid]  # (history, item): one node each
    nodes, inverse = np.unique(keys, return_inverse=True)
    alias = np.zeros((p, width), np.int64)
    alias[valid] = inverse
    step = valid[:, 1:]  # position t+1 valid implies t valid
    src, dst = alias[:, :-1][step], alias[:, 1:][step]
    pairs = np.unique(src * len(nodes) + dst)
    edge_index = np.stack([pairs // max(len(nodes), 1), pairs % max(len(nodes), 1)])
    return SessionGraphs(nodes % base, edge_index, alias)


class BidirectionalGatedGraphConv(MessagePassing):
    """SR-GNN's gated layer: ``a = [mean_in(W_in h); mean_out(W_out h)]``, then ``h = GRU(a, h)``, ``steps`` times."""

    def __init__(self, dim: int, steps: int):
        super().__init__(aggr="mean")
        self.steps = steps
        self.w_in, self.w_out = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.gru = nn.GRUCell(2 * dim, dim)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        reverse = edge_index.flip(0)
        for _ in range(self.steps):
            incoming = self.propagate(edge_index, x=self.w_in(x))  # from each node's predecessors
            outgoing = self.propagate(reverse, x=self.w_out(x))  # from its successors
            x = self.gru(torch.cat([incoming, outgoing], dim=1), x)
        return x


def prefixes(batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every prefix of a training batch that has a next item: ``(P, L)`` items, lengths, targets."""
    assert batch.targets is not None, "a training batch needs targets"
    rows, ends = torch.nonzero(batch.targets > 0, as_tuple=True)
    width = int(ends.max()) + 1 if len(ends) else 1
    cols = torch.arange(width)
    items = torch.where(cols[None, :] <= ends[:, None], batch.items[rows, :width], 0)
    return items, ends + 1, batch.targets[rows, ends]


class SRGNN(NextItemModel):
    """Gated graph layer over session graphs, attention readout, dot-product logits."""

    kind = "gcn"

    def __init__(self, n_items: int, config: SRGNNConfig | None = None):
        config = config or SRGNNConfig()
        super().__init__(n_items, config)
        d = config.embedding_dim
        self.embedding = item_embedding(n_items, d)
        self.ggnn = BidirectionalGatedGraphConv(d, config.steps)
        self.w_last = nn.Linear(d, d, bias=False)
        self.w_node = nn.Linear(d, d)
        self.q = nn.Linear(d, 1, bias=False)
        self.w_out = nn.Linear(2 * d, d, bias=False)
        self.bias = nn.Parameter(torch.zeros(n_items + 1))
        self.dropout = nn.Dropout(config.dropout)

    def session_vectors(self, items: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """One vector per history, ``(P, embedding_dim)``."""
        g = session_graphs(items.numpy(), lengths.numpy())
        x = self.dropout(self.embedding(torch.as_tensor(g.node_items)))
        h = self.ggnn(x, torch.as_tensor(g.edge_index))
        mask = (torch.arange(items.shape[1])[None, :] < lengths[:, None]).unsqueeze(-1)
        seq = h[torch.as_tensor(g.alias)] * mask
        last = seq[torch.arange(len(lengths)), lengths - 1]
        alpha = self.q(torch.sigmoid(self.w_last(last)[:, None, :] + self.w_node(seq)))
        pooled = (alpha * seq * mask).sum(dim=1)
        return self.dropout(self.w_out(torch.cat([last, pooled], dim=1)))

    def loss(self, batch: Batch, objective: str = "ce") -> torch.Tensor:
        items, lengths, targets = prefixes(batch)
        return next_item_loss(self.session_vectors(items, lengths), self.embedding.weight, self.bias, targets,
                              objective)

    def represent(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        return self.session_vectors(batch.items, batch.lengths), self.embedding.weight

    def score(self, batch: Batch, candidates: torch.Tensor | None = None) -> torch.Tensor:
        return dot_scores(*self.represent(batch), self.bias, candidates)
