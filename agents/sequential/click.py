"""A click head on a frozen next-item model: the probability that a user clicks a shown item.

A next-item model ranks what is clicked next; it does not say whether anything is clicked. Its logits
are defined only up to a constant per history (the softmax ignores a shift), and under a logging
policy that shows what it expects to be clicked, the shown items' next-item scores hardly separate
clicks from skips (on a myopic log the LSTM logit alone has a ROC-AUC of 0.51). So the head is a
small MLP trained with binary cross-entropy on the log's impressions, reading what the frozen model
knows about the pair rather than its score alone: the user vector, the shown item's embedding and
their product (``NextItemModel.represent``), the item's next-item logit, the history length, whether
the history is empty and the item's log click count; plus a learnt bias per item (its click-through
tendency, which the next-item model never sees because skips are not in its training data). The
model stays frozen, so its next-item accuracy is unchanged, and the head fits in seconds. The
popularity model has no vectors: its head reads the scalar features and the item bias only.

Impressions come from an :class:`~recsim_env.logs.InteractionLog`: every shown item of every step
(a repeated item of a slate once), labelled clicked or not, with the user's clicked items before
that step as the history, the same history :class:`~recsim_env.logs.LoggedSteps` records.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from agents.sequential.base import Batch, pack_histories, seeded
from agents.sequential.checkpoint import TrainedModel
from agents.sequential.popularity import Popularity
from recsim_env.config import Validated, bounded
from recsim_env.logs import InteractionLog
from recsim_env.logs.steps import HISTORY_LENGTH, NO_ITEM

#: Scalar features of an impression, in column order after the vectors.
SCALAR_FEATURES = ("logit", "log_history_length", "empty_history", "log_item_clicks")


@dataclass(frozen=True)
class ClickHeadConfig(Validated):
    """Architecture and optimisation of :class:`ClickHead`."""

    hidden_dim: int = bounded(32, ge=1, le=4096, doc="hidden units of the MLP")
    epochs: int = bounded(5, ge=0, le=10_000, doc="passes over the impressions (0: the initial head, a baseline)")
    batch_size: int = bounded(512, ge=1, le=1_000_000, doc="impressions per Adam step")
    lr: float = bounded(3e-3, gt=0.0, le=10.0, doc="Adam learning rate")
    weight_decay: float = bounded(0.0, ge=0.0, le=1.0, doc="L2 penalty (Adam weight_decay)")
    max_impressions: int = bounded(1_000_000, ge=1, le=10**9, doc="impressions fitted on; a seeded sample of "
                                   "a larger log")
    score_batch_size: int = bounded(2048, ge=1, le=1_000_000, doc="histories encoded at once")
    seed: int = bounded(0, ge=0, le=2**32 - 1, doc="seed of the initial weights, the sample and the batch order")


@dataclass(frozen=True)
class Impressions:
    """Shown items with their label and the history before the step.

    Attributes:
        history: ``(I, L)`` clicked env item ids before the step, most recent last, left-padded with -1.
        item: ``(I,)`` the shown env item id.
        clicked: ``(I,)`` whether the user clicked it.
        user: ``(I,)`` the log's user id.
    """

    history: np.ndarray
    item: np.ndarray
    clicked: np.ndarray
    user: np.ndarray

    def __len__(self) -> int:
        return len(self.item)


def log_histories(log: InteractionLog, length: int = HISTORY_LENGTH) -> np.ndarray:
    """Each log row's clicked items before it, ``(T, length)`` env ids, most recent last, left-padded with -1."""
    if length < 1:
        raise ValueError(f"length={length} is out of range: allowed >= 1")
    user, step = np.asarray(log.user), np.asarray(log.step)
    later = (np.diff(user) > 0) | ((np.diff(user) == 0) & (np.diff(step) > 0))
    if not later.all():
        raise ValueError("the log's rows must be sorted by user, then step")
    clicked = np.asarray(log.click, bool) & (np.asarray(log.item) >= 0)
    first = np.r_[True, user[1:] != user[:-1]]
    user_start = np.maximum.accumulate(np.where(first, np.arange(len(user)), 0))
    before = np.cumsum(clicked) - clicked  # clicks of the whole log before each row
    index = before[:, None] - length + np.arange(length)[None, :]
    items = np.asarray(log.item, np.int64)[clicked]
    inside = index >= before[user_start][:, None]  # this user's clicks only
    return np.where(inside, items[index.clip(0)] if len(items) else NO_ITEM, NO_ITEM)


def log_impressions(log: InteractionLog, users: np.ndarray | None = None,
                    length: int = HISTORY_LENGTH) -> Impressions:
    """Every shown item of the log's steps (of ``users`` only, when given) as an impression."""
    history = log_histories(log, length)
    slate = np.asarray(log.slate, np.int64)
    first = np.ones(slate.shape, bool)
    for k in range(1, slate.shape[1]):  # a repeated item of a slate is shown once: keep its first place
        first[:, k] = (slate[:, :k] != slate[:, k:k + 1]).all(axis=1)
    keep = first & (slate >= 0)
    if users is not None:
        keep &= np.isin(log.user, users)[:, None]
    rows, cols = np.nonzero(keep)
    clicked = np.asarray(log.click, bool)[rows] & (np.asarray(log.item)[rows] == slate[rows, cols])
    return Impressions(history[rows], slate[rows, cols], clicked, np.asarray(log.user)[rows])


def model_ids(trained: TrainedModel, env_ids: np.ndarray) -> np.ndarray:
    """The model's dense ids of env item ids; 0 for -1 and for an item the model never saw."""
    if trained.item_ids.dtype.kind not in "iu":
        raise TypeError("the model's item ids are not integers, so they cannot be simulator item ids")
    ids = trained.item_ids[1:].astype(np.int64)
    order = np.argsort(ids, kind="stable")
    env_ids = np.asarray(env_ids, np.int64)
    pos = np.searchsorted(ids[order], env_ids).clip(max=len(ids) - 1)
    return np.where((ids[order][pos] == env_ids) & (env_ids >= 0), order[pos] + 1, 0)


class ClickHead(nn.Module):
    """``P(click | history, shown item)`` from a frozen next-item model (see the module docstring)."""

    def __init__(self, trained: TrainedModel, config: ClickHeadConfig | None = None):
        super().__init__()
        self.trained = trained
        self.config = config = config or ClickHeadConfig()
        model = trained.model
        self.vectors = not isinstance(model, Popularity)
        dim = 0
        if self.vectors:
            model.eval()  # no dropout, so no draw from torch's generator
            with torch.no_grad():
                dim = model.represent(Batch.from_numpy(np.ones((1, 1), np.int64), np.ones(1, np.int64)))[0].shape[1]
        n_inputs = 3 * dim + len(SCALAR_FEATURES)
        with seeded(config.seed):
            self.mlp = nn.Sequential(nn.Linear(n_inputs, config.hidden_dim), nn.ReLU(), nn.Linear(config.hidden_dim, 1))
        self.item_bias = nn.Parameter(torch.zeros(model.n_items + 1))  # row 0: items the model never saw
        self.register_buffer("mean", torch.zeros(n_inputs))
        self.register_buffer("std", torch.ones(n_inputs))
        counts = np.asarray(trained.item_counts, np.float64)
        self.register_buffer("log_clicks", torch.as_tensor(np.log1p(counts), dtype=torch.float32))
        prior = np.log((counts + 1.0) / (counts.sum() + len(counts)))  # add-one next-item prior, unknown items too
        self.register_buffer("prior_logit", torch.as_tensor(prior, dtype=torch.float32))

    @torch.no_grad()
    def inputs(self, history: np.ndarray, shown: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Unscaled features ``(S * K, F)`` of every (step, shown item) and the shown model ids ``(S * K,)``.

        ``history`` ``(S, L)`` and ``shown`` ``(S, K)`` are env item ids (-1: no item).
        """
        history, shown = np.atleast_2d(history), np.atleast_2d(shown)
        if len(history) != len(shown):
            raise ValueError(f"{len(history)} histories for {len(shown)} slates")
        k = shown.shape[1]
        items, lengths = pack_histories(model_ids(self.trained, history), self.trained.max_len)
        item = torch.as_tensor(model_ids(self.trained, shown).reshape(-1))
        length = torch.as_tensor(np.repeat(lengths, k))
        logit = self.prior_logit[item].clone()
        n_dims = self.mean.shape[0] - len(SCALAR_FEATURES)
        vectors = torch.zeros(len(item), n_dims)
        model = self.trained.model
        model.eval()
        rows = np.flatnonzero(lengths > 0) if self.vectors else np.zeros(0, np.int64)
        for start in range(0, len(rows), self.config.score_batch_size):
            chunk = rows[start:start + self.config.score_batch_size]
            width = int(lengths[chunk].max())
            batch = Batch.from_numpy(items[chunk, :width], lengths[chunk], users=np.full(len(chunk), -1))
            user, table = model.represent(batch)
            at = torch.as_tensor((chunk[:, None] * k + np.arange(k)).reshape(-1))
            u, e = user.repeat_interleave(k, dim=0), table[item[at]]
            vectors[at] = torch.cat([u, e, u * e], dim=1)
            logit[at] = torch.where(item[at] > 0, (u * e).sum(1) + model.bias[item[at]], logit[at])
        scalars = torch.stack([logit, torch.log1p(length.float()), (length == 0).float(), self.log_clicks[item]], 1)
        return torch.cat([vectors, scalars], dim=1), item

    def forward(self, features: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """Click logits of unscaled features and shown model ids."""
        return self.mlp((features - self.mean) / self.std).squeeze(1) + self.item_bias[item]

    @torch.no_grad()
    def probability(self, history: np.ndarray, shown: np.ndarray) -> np.ndarray:
        """Predicted click probability ``(S, K)`` of each shown item (env ids) given the histories."""
        shown = np.atleast_2d(shown)
        self.eval()
        features, item = self.inputs(history, shown)
        return torch.sigmoid(self(features, item)).double().numpy().reshape(shown.shape)


def fit_click_head(trained: TrainedModel, log: InteractionLog | Impressions, config: ClickHeadConfig | None = None,
                   users: np.ndarray | None = None) -> ClickHead:
    """Train a :class:`ClickHead` on a log's impressions (of ``users`` only, when given), the model frozen.

    Adam on binary cross-entropy, the features standardised with the impressions' mean and spread;
    the initial weights, the sample (beyond ``max_impressions``) and the batch order all come from
    generators seeded with ``config.seed``, so one seed gives the same head bit for bit.
    """
    config = config or ClickHeadConfig()
    if users is not None and isinstance(log, Impressions):
        raise TypeError("users= selects from an InteractionLog; select Impressions before passing them")
    impressions = log if isinstance(log, Impressions) else log_impressions(log, users)
    if len(impressions) == 0:
        raise ValueError("the log has no impressions to fit the click head on")
    head = ClickHead(trained, config)
    generator = torch.Generator().manual_seed(config.seed)
    rows = torch.arange(len(impressions))
    if len(rows) > config.max_impressions:
        rows = torch.randperm(len(rows), generator=generator)[:config.max_impressions].sort().values
    rows = rows.numpy()
    features, item = head.inputs(impressions.history[rows], impressions.item[rows, None])
    labels = torch.as_tensor(impressions.clicked[rows], dtype=torch.float32)
    head.mean.copy_(features.mean(0))
    head.std.copy_(features.std(0, unbiased=False).clamp(min=1e-6))
    optimiser = torch.optim.Adam(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    head.train()
    for _ in range(config.epochs):
        order = torch.randperm(len(labels), generator=generator)
        for start in range(0, len(order), config.batch_size):
            chunk = order[start:start + config.batch_size]
            loss = nn.functional.binary_cross_entropy_with_logits(head(features[chunk], item[chunk]), labels[chunk])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
    head.eval()
    return head
