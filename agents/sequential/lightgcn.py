"""LightGCN on the user-item graph (He et al., SIGIR 2020), with ``torch_geometric.nn.LGConv``.

User and item embeddings are smoothed over the bipartite interaction graph by parameter-free,
symmetrically normalised propagation, and a user's score for an item is the dot product of their
layer-averaged embeddings. It ignores order, so it is the non-sequential graph baseline beside the
session-graph model. Trained here like the other models (full-softmax cross-entropy over items by default).

A user the graph has never seen (a held-out user, a fresh user in the simulator) is folded in: their
layer-0 embedding is taken as zero and each further layer aggregates their history items' embeddings
of the layer below with the same normalisation, which is what propagation would give them had they
been a node of the graph (their effect on the items themselves aside).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch_geometric.nn import LGConv

from agents.sequential.base import Batch, NextItemModel, dot_scores, next_item_loss
from recsim_env.config import Validated, bounded
from recsim_env.logs import Sequences


@dataclass(frozen=True)
class LightGCNConfig(Validated):
    """Architecture of :class:`LightGCN`."""

    embedding_dim: int = bounded(64, ge=1, le=4096, doc="user and item embedding size")
    n_layers: int = bounded(2, ge=0, le=8, doc="propagation layers")


class LightGCN(NextItemModel):
    """Layer-averaged LightGCN embeddings; the graph is the training interactions (a buffer)."""

    kind = "lightgcn"

    def __init__(self, n_items: int, config: LightGCNConfig | None = None, n_users: int = 0, n_edges: int = 0,
                 train: Sequences | None = None):
        config = config or LightGCNConfig()
        super().__init__(n_items, config)
        if train is not None:
            pairs = np.unique(train.row_of_each() * (n_items + 1) + train.items)
            edges = np.stack([pairs // (n_items + 1), pairs % (n_items + 1)])
            n_users, n_edges = train.n_users, edges.shape[1]
        else:
            edges = np.zeros((2, n_edges), np.int64)
        self.n_users = n_users
        self.register_buffer("edges", torch.as_tensor(edges, dtype=torch.long))
        d = config.embedding_dim
        self.user_embedding = nn.Embedding(max(n_users, 1), d)
        self.item_embedding = nn.Embedding(n_items + 1, d)
        nn.init.normal_(self.user_embedding.weight, std=0.1)
        nn.init.normal_(self.item_embedding.weight, std=0.1)
        self.conv = LGConv(normalize=False)
        self.bias = nn.Parameter(torch.zeros(n_items + 1))

    def init_kwargs(self) -> dict[str, int]:
        return {"n_users": self.n_users, "n_edges": int(self.edges.shape[1])}

    def _graph(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Both directions of every edge on nodes [users | items], their weights, and item degrees."""
        users, items = self.edges
        src = torch.cat([users, items + self.n_users])
        dst = torch.cat([items + self.n_users, users])
        degree = torch.bincount(src, minlength=self.n_users + self.n_items + 1).float()
        weight = (degree[src] * degree[dst]).rsqrt()
        return torch.stack([src, dst]), weight, degree[self.n_users:]

    def propagate(self) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """Layer-averaged user embeddings, every layer's item embeddings, and item degrees."""
        edge_index, weight, item_degree = self._graph()
        x = torch.cat([self.user_embedding.weight[:self.n_users], self.item_embedding.weight])
        layers = [x]
        for _ in range(self.config.n_layers):
            x = self.conv(x, edge_index, weight)
            layers.append(x)
        users = torch.stack(layers).mean(0)[:self.n_users]
        return users, [layer[self.n_users:] for layer in layers], item_degree

    def _user_vectors(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        users, item_layers, item_degree = self.propagate()
        items_final = torch.stack(item_layers).mean(0)
        known = batch.users if batch.users is not None else torch.full_like(batch.lengths, -1)
        vectors = users[known.clamp(min=0)] if self.n_users else items_final.new_zeros(len(known), items_final.shape[1])
        unseen = known < 0
        if unseen.any():
            items, lengths = batch.items[unseen], batch.lengths[unseen]
            norm = torch.where(items > 0, (lengths[:, None] * item_degree[items]).clamp(min=1).rsqrt(), 0.0)
            norm = torch.where(item_degree[items] > 0, norm, 0.0)
            folded = [torch.einsum("bl,bld->bd", norm, layer[items]) for layer in item_layers[:-1]]
            vectors[unseen] = torch.stack(folded).sum(0) / len(item_layers)
        return vectors, items_final

    def loss(self, batch: Batch, objective: str = "ce") -> torch.Tensor:
        assert batch.targets is not None and batch.users is not None, "a training batch needs targets and users"
        every = torch.cat([batch.items[:, :1], batch.targets], dim=1)  # the user's items in this batch
        rows, cols = torch.nonzero(every > 0, as_tuple=True)
        vectors, items_final = self._user_vectors(batch)
        return next_item_loss(vectors[rows], items_final, self.bias, every[rows, cols], objective)

    def represent(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        return self._user_vectors(batch)

    def score(self, batch: Batch, candidates: torch.Tensor | None = None) -> torch.Tensor:
        return dot_scores(*self.represent(batch), self.bias, candidates)
