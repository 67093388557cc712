"""What every next-item model shares: the batch it reads and the two things it must do.

A model turns a batch of right-padded item histories into next-item logits. Training calls
``loss`` on batches whose ``targets`` give the next item after each input position; evaluation and
the policy call ``score``, either over the whole catalogue or over given candidates only (cheaper
when a policy ranks ten candidates out of a large catalogue).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from recsim_env.logs import TrainingBatch


@dataclass
class Batch:
    """Histories (right-padded with 0, newest last), their lengths, and optionally per-position
    next-item targets (0 = no target) and the users' rows in the training data (-1 = unseen user)."""

    items: torch.Tensor
    lengths: torch.Tensor
    targets: torch.Tensor | None = None
    users: torch.Tensor | None = None

    @classmethod
    def from_numpy(cls, items: np.ndarray, lengths: np.ndarray, targets: np.ndarray | None = None,
                   users: np.ndarray | None = None) -> Batch:
        def t(a: np.ndarray | None) -> torch.Tensor | None:
            return None if a is None else torch.as_tensor(np.ascontiguousarray(a), dtype=torch.long)

        if len(lengths) and int(np.min(lengths)) < 1:
            raise ValueError("every history needs at least one item; score empty histories another way")
        return cls(t(items), t(lengths), t(targets), t(users))  # type: ignore[arg-type]

    @classmethod
    def for_training(cls, batch: TrainingBatch) -> Batch:
        return cls.from_numpy(batch.inputs, np.maximum(batch.lengths, 1), batch.targets, batch.rows)


def pack_histories(model_ids: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Histories of model item ids in time order (0 = no item or an unknown one, anywhere in a row) as
    the models read them: each row's last ``max_len`` items right-padded with 0, and their lengths
    (0 for a row with no item, which the models cannot score).

    A logged history is left-padded and may hold items the model never saw; a policy's own history
    skips those, so dropping them here gives both the same input.
    """
    model_ids = np.asarray(model_ids, np.int64)
    if model_ids.ndim != 2:
        raise ValueError(f"histories must be (rows, length), got shape {model_ids.shape}")
    known = model_ids > 0
    total = known.sum(axis=1)
    lengths = np.minimum(total, max_len)
    slot = np.cumsum(known, axis=1) - 1 - (total - lengths)[:, None]  # place among the kept items
    r, c = np.nonzero(known & (slot >= 0))
    items = np.zeros((len(model_ids), max(int(lengths.max(initial=0)), 1)), np.int64)
    items[r, slot[r, c]] = model_ids[r, c]
    return items, lengths.astype(np.int64)


class NextItemModel(nn.Module):
    """Base of the trainable models: ``kind`` names it in checkpoints, ``config`` rebuilds it."""

    kind: ClassVar[str] = "model"
    trainable: ClassVar[bool] = True

    def __init__(self, n_items: int, config: Any):
        super().__init__()
        if n_items < 1:
            raise ValueError(f"n_items={n_items!r} is out of range: allowed >= 1")
        self.n_items = n_items
        self.config = config

    def init_kwargs(self) -> dict[str, int]:
        """Sizes beyond ``n_items`` and ``config`` needed to rebuild the module before loading weights."""
        return {}

    def config_dict(self) -> dict[str, Any]:
        return asdict(self.config) if self.config is not None else {}

    def loss(self, batch: Batch, objective: str = "ce") -> torch.Tensor:
        """Mean next-item loss at every position with a target (see :func:`next_item_loss`)."""
        raise NotImplementedError(f"{type(self).__name__} is not trained by gradient descent")

    def score(self, batch: Batch, candidates: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of the item after each history: ``(B, n_items + 1)`` (column 0, padding, is -inf)
        or, with ``candidates`` ``(B, N)``, ``(B, N)`` for those items only."""
        raise NotImplementedError

    def represent(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The two factors of the logits: user vectors ``(B, d)`` and the item table ``(n_items + 1, d)``,
        whose dot products plus the per-item bias are :meth:`score`. A click head reads them."""
        raise NotImplementedError(f"{type(self).__name__} has no user and item vectors")


def dot_scores(states: torch.Tensor, table: torch.Tensor, bias: torch.Tensor,
               candidates: torch.Tensor | None = None) -> torch.Tensor:
    """Logits ``state . item + bias``: for every item, ``(B, n_items + 1)`` with the padding column
    at -inf, or for given candidates ``(B, N)``."""
    if candidates is None:
        return nn.functional.pad(torch.addmm(bias[1:], states, table[1:].T), (1, 0), value=float("-inf"))
    return torch.einsum("bd,bnd->bn", states, table[candidates]) + bias[candidates]


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block on torch's CPU generator seeded with ``seed``, and give the caller's state back after.

    Module initialisation and dropout draw from torch's default generator and take no generator of
    their own, so this is how a build or a fit is made repeatable without reseeding anyone else's
    stream: the state is forked, seeded inside, and restored on exit (exceptions included).
    """
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)  # the CPU generator only: accelerators' state is not forked
        yield


OBJECTIVES = ("ce", "bce", "ss")
#: Negatives per batch of the sampled softmax (``ss``) unless the caller asks for another number.
SAMPLED_NEGATIVES = 512


def other_items(targets: torch.Tensor, n_items: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """One item per target, uniform over the items ``1..n_items`` other than that target."""
    if n_items < 2:
        raise ValueError(f"n_items={n_items}: drawing an item other than the target needs at least 2 items")
    draws = torch.randint(1, n_items, targets.shape, generator=generator)
    return draws + (draws >= targets)


def shared_negatives(n_items: int, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``count`` items drawn uniformly (with replacement) from ``1..n_items``: the negatives that every
    target of one batch shares in the sampled softmax, so their logits are one matrix product."""
    if count < 1:
        raise ValueError(f"negatives={count}: allowed >= 1")
    return torch.randint(1, n_items + 1, (count,), generator=generator)


def sampled_softmax_loss(states: torch.Tensor, table: torch.Tensor, bias: torch.Tensor, targets: torch.Tensor,
                         negatives: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each target against itself and the shared ``negatives`` ``(K,)``.

    A negative that is the target itself (an accidental hit) is masked out of that target's softmax.
    The negatives are uniform, so the log-Q correction of sampled softmax is the same constant for
    every item and cancels.
    """
    positive = (states * table[targets]).sum(1, keepdim=True) + bias[targets, None]
    others = torch.addmm(bias[negatives], states, table[negatives].T)
    others = others.masked_fill(negatives[None, :] == targets[:, None], float("-inf"))
    return -torch.log_softmax(torch.cat([positive, others], dim=1), dim=1)[:, 0].mean()


def next_item_loss(states: torch.Tensor, table: torch.Tensor, bias: torch.Tensor,
                   targets: torch.Tensor, objective: str = "ce",
                   generator: torch.Generator | None = None, negatives: int = SAMPLED_NEGATIVES) -> torch.Tensor:
    """Next-item loss of the targets (items ``1..n``).

    ``ce``: full-softmax cross-entropy over every real item. The padding item is left out of the
    softmax rather than masked, which spares a copy of the ``(targets, n_items)`` logits; the bias is
    fused into the matrix product for the same reason.

    ``bce``: binary cross-entropy of the target against one negative drawn uniformly from the other
    items (from ``generator``; by default torch's generator, which the training loop forks and
    seeds, see :func:`seeded`), the objective of SASRec and of
    the S3-Rec code behind the published Beauty and LastFM tables. It trains for sampled metrics and
    ranks the whole catalogue worse than ``ce``.

    ``ss``: sampled softmax, the target against ``negatives`` uniform items shared by the batch
    (:func:`sampled_softmax_loss`). It approximates ``ce`` at a fraction of its cost on a large
    catalogue (``K`` logits per target instead of ``n_items``), so more epochs fit in a time budget.
    """
    if objective == "ce":
        logits = torch.addmm(bias[1:], states, table[1:].T)
        return nn.functional.cross_entropy(logits, targets - 1)
    if objective == "ss":
        return sampled_softmax_loss(states, table, bias, targets,
                                    shared_negatives(table.shape[0] - 1, negatives, generator))
    if objective != "bce":
        raise ValueError(f"objective={objective!r}: allowed {', '.join(OBJECTIVES)}")
    pairs = torch.stack([targets, other_items(targets, table.shape[0] - 1, generator)], dim=1)
    logits = torch.einsum("bd,bkd->bk", states, table[pairs]) + bias[pairs]
    labels = torch.zeros_like(logits)
    labels[:, 0] = 1.0
    return nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="none").sum(1).mean()


def item_embedding(n_items: int, dim: int) -> nn.Embedding:
    """Item embeddings with row 0 for padding: normal with std ``dim ** -0.5`` (dot products of unit
    scale), the padding row zero."""
    embedding = nn.Embedding(n_items + 1, dim, padding_idx=0)
    nn.init.normal_(embedding.weight, std=dim ** -0.5)
    with torch.no_grad():
        embedding.weight[0].zero_()
    return embedding
