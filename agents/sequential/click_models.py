"""Click models trained end to end on impressions: ``P(click | history, shown item)``.

Unlike the click head of :mod:`agents.sequential.click`, which sits on a frozen next-item model, these
models learn every weight from the impressions themselves (each shown item with its click label) by
binary cross-entropy, so skips teach them as much as clicks do:

- ``lstm``: the classic LSTM click model. The user's clicked items are embedded and read by an LSTM;
  its last state, joined with the shown item's embedding, their product and the impression's
  context, feeds a small MLP with a sigmoid output.
- ``transformer``: the same head on a causal transformer encoder (``nn.TransformerEncoderLayer``,
  pre-norm, as in :mod:`agents.sequential.transformer`) over the history followed by the shown item
  as a last token (the Behavior Sequence Transformer layout): that token's output attends to the
  whole history, and the causal mask keeps every history position from seeing later ones.
- ``logistic``: logistic regression on the impression's observation features plus a one-hot of the
  shown item (a bias per item): the plain baseline.

``item_ids=False`` drops every per-item weight (embeddings and biases) from all three, so that an
item is only what its observable features say; the simulated study uses it (its catalogue rows
describe every item), so that no model is ahead by memorising items.

Items are encoded by an id embedding plus a linear map of their observable features when the data
has any (the simulator's catalogue rows), so an item seen rarely is still placed by what it looks
like. Training holds out a share of users for early stopping (validation log loss) and for the
decision threshold: 0.5 is reported, and so is the threshold that maximises F1 on the validation
users, because with a few per cent of positives accuracy at 0.5 mostly counts the negatives.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from agents.log_accuracy import click_labels
from agents.sequential.base import pack_histories, seeded
from recsim_env.config import Validated, bounded
from recsim_env.logs.steps import NO_ITEM, LoggedSteps
from recsim_env.metrics import click_metrics
from recsim_env.observation import ObservationLayout

KINDS = ("lstm", "transformer", "logistic")


@dataclass(frozen=True)
class ClickData:
    """Impressions: one row per shown item.

    Attributes:
        history: ``(I, L)`` the user's clicked item ids (``0..n_items-1``) before the impression,
            most recent last, left-padded with -1.
        item: ``(I,)`` the shown item id.
        clicked: ``(I,)`` whether the user clicked it.
        group: ``(I,)`` the user: validation holds out whole users.
        features: ``(I, F)`` the impression's observation features, read by logistic regression.
        context: ``(I, C)`` what the sequence models read beside the history and the item
            (position, session step); may have no columns.
        item_features: ``(n_items, d)`` each item's observable features; may have no columns.
    """

    history: np.ndarray
    item: np.ndarray
    clicked: np.ndarray
    group: np.ndarray
    features: np.ndarray
    context: np.ndarray
    item_features: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.item)
        for name in ("history", "clicked", "group", "features", "context"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"ClickData.{name} has {len(getattr(self, name))} rows for {n} impressions")
        for name in ("history", "features", "context", "item_features"):
            if np.ndim(getattr(self, name)) != 2:
                raise ValueError(f"ClickData.{name} must be 2-D, got shape {np.shape(getattr(self, name))}")
        if n and (self.item.min() < 0 or self.item.max() >= self.n_items):
            raise ValueError(f"ClickData.item must lie in [0, {self.n_items - 1}]")
        if self.history.size and (self.history.min() < NO_ITEM or self.history.max() >= self.n_items):
            raise ValueError(f"ClickData.history must lie in [0, {self.n_items - 1}] or be {NO_ITEM}")

    def __len__(self) -> int:
        return len(self.item)

    @property
    def n_items(self) -> int:
        return len(self.item_features)

    @property
    def positive_rate(self) -> float:
        return float(np.mean(self.clicked)) if len(self) else 0.0

    def select(self, rows: np.ndarray) -> ClickData:
        """The impressions at ``rows``, with the same catalogue."""
        return replace(self, **{name: getattr(self, name)[rows]
                                for name in ("history", "item", "clicked", "group", "features", "context")})


def steps_click_data(steps: LoggedSteps, layout: ObservationLayout) -> ClickData:
    """Every shown item of the logged steps as an impression (row-major over ``steps.shown``).

    Logistic regression reads the observation a learning agent sees (the recent items with the
    user's responses, the session step and day), the shown item's observable features and, on
    slates, its position; the sequence models read the click history, the item and the context
    (session step, day, position).
    """
    s, k = steps.shown.shape
    parts = layout.split(steps.obs)
    recent = parts["history"].reshape(s, -1)
    context = np.repeat(parts["context"].reshape(s, -1), k, axis=0)
    if k > 1:
        context = np.concatenate([context, np.tile(np.eye(k, dtype=np.float32), (s, 1))], axis=1)
    item = steps.shown.reshape(-1).astype(np.int64)
    features = np.concatenate([np.repeat(recent, k, axis=0), context, steps.item_features[item]], axis=1)
    return ClickData(history=np.repeat(steps.history, k, axis=0), item=item,
                     clicked=click_labels(steps).reshape(-1), group=np.repeat(steps.user, k),
                     features=features.astype(np.float32), context=context.astype(np.float32),
                     item_features=np.asarray(steps.item_features, np.float32))


@dataclass(frozen=True)
class ClickModelConfig(Validated):
    """Architecture and optimisation of the click models (:func:`fit_click_model`)."""

    kind: str = "lstm"
    embedding_dim: int = bounded(32, ge=1, le=1024, doc="item embedding and attention size")
    hidden_dim: int = bounded(64, ge=1, le=4096, doc="LSTM state size and MLP hidden units")
    num_blocks: int = bounded(1, ge=1, le=8, doc="transformer blocks")
    num_heads: int = bounded(2, ge=1, le=64, doc="attention heads (must divide embedding_dim)")
    dropout: float = bounded(0.1, ge=0.0, lt=1.0, doc="dropout on the embeddings and the head")
    max_len: int = bounded(50, ge=1, le=1000, doc="most recent clicked items read")
    item_ids: bool = True  # learn per-item weights (embeddings, biases); False: an item is its features only
    epochs: int = bounded(30, ge=0, le=10_000, doc="most passes over the impressions (0: the untrained model)")
    patience: int = bounded(3, ge=1, le=1000, doc="epochs without a better validation log loss before stopping")
    batch_size: int = bounded(512, ge=1, le=1_000_000, doc="impressions per Adam step")
    lr: float = bounded(3e-3, ge=0.0, le=10.0, doc="Adam learning rate (0: no learning, the check that "
                        "a learning claim can fail)")
    weight_decay: float = bounded(1e-5, ge=0.0, le=1.0, doc="L2 penalty (Adam weight_decay)")
    valid_fraction: float = bounded(0.2, gt=0.0, lt=1.0, doc="share of users held out for early stopping "
                                    "and the F1 threshold")
    max_impressions: int = bounded(500_000, ge=1, le=10**9, doc="training impressions used; a seeded sample "
                                   "of more")
    score_batch_size: int = bounded(4096, ge=1, le=1_000_000, doc="impressions scored at once")
    seed: int = bounded(0, ge=0, le=2**32 - 1, doc="seed of the weights, the split, the sample and the batches")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kind not in KINDS:
            raise ValueError(f"ClickModelConfig.kind={self.kind!r}: allowed {', '.join(map(repr, KINDS))}")
        if self.embedding_dim % self.num_heads:
            raise ValueError(f"ClickModelConfig.num_heads={self.num_heads}: must divide "
                             f"embedding_dim={self.embedding_dim}")


@dataclass
class _Inputs:
    """Tensors of a batch: right-padded history (model ids, 0 = none), lengths, item, scaled features."""

    history: torch.Tensor
    lengths: torch.Tensor
    item: torch.Tensor
    context: torch.Tensor
    features: torch.Tensor

    def rows(self, index: torch.Tensor) -> _Inputs:
        width = max(int(self.lengths[index].max()), 1) if len(index) else 1
        return _Inputs(self.history[index, :width], self.lengths[index], self.item[index], self.context[index],
                       self.features[index])


class _ItemEncoder(nn.Module):
    """Id embedding plus a linear map of the item's observable features (row 0: no item, zero)."""

    def __init__(self, item_features: np.ndarray, dim: int, ids: bool = True):
        super().__init__()
        n_items, d = item_features.shape
        if not ids and not d:
            raise ValueError("items without ids need observable features: set ClickModelConfig.item_ids=True")
        self.embedding = nn.Embedding(n_items + 1, dim, padding_idx=0)
        if ids:
            nn.init.normal_(self.embedding.weight, std=dim ** -0.5)
        else:
            nn.init.zeros_(self.embedding.weight)
            self.embedding.weight.requires_grad_(False)
        with torch.no_grad():
            self.embedding.weight[0].zero_()
        table = torch.as_tensor(item_features, dtype=torch.float32)
        if d:
            table = (table - table.mean(0)) / table.std(0, unbiased=False).clamp(min=1e-6)
        self.register_buffer("table", nn.functional.pad(table, (0, 0, 1, 0)))
        self.project = nn.Linear(d, dim, bias=False) if d else None

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out = self.embedding(ids)
        if self.project is not None:
            out = out + self.project(self.table[ids]) * (ids > 0).unsqueeze(-1)
        return out


class _SequenceClickModel(nn.Module):
    """What the LSTM and the transformer share: the item encoder and the head on (user, item, context)."""

    def __init__(self, item_features: np.ndarray, n_context: int, config: ClickModelConfig):
        super().__init__()
        d = config.embedding_dim
        self.items = _ItemEncoder(item_features, d, config.item_ids)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Sequential(nn.Linear(3 * d + n_context + 1, config.hidden_dim), nn.ReLU(),
                                  nn.Dropout(config.dropout), nn.Linear(config.hidden_dim, 1))
        self.item_bias = nn.Parameter(torch.zeros(len(item_features) + 1), requires_grad=config.item_ids)

    def user(self, x: _Inputs, shown: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: _Inputs) -> torch.Tensor:
        e = self.items(x.item)
        u = self.user(x, e)
        joined = torch.cat([u, e, u * e, x.context, torch.log1p(x.lengths.float())[:, None]], dim=1)
        return self.head(self.dropout(joined)).squeeze(1) + self.item_bias[x.item]


class LSTMClickModel(_SequenceClickModel):
    """Embedded clicked items -> LSTM -> last state, joined with the shown item -> MLP -> click logit."""

    def __init__(self, item_features: np.ndarray, n_context: int, config: ClickModelConfig):
        super().__init__(item_features, n_context, config)
        self.rnn = nn.LSTM(config.embedding_dim, config.hidden_dim, batch_first=True)
        self.project = nn.Linear(config.hidden_dim, config.embedding_dim)

    def user(self, x: _Inputs, shown: torch.Tensor) -> torch.Tensor:
        """The last LSTM state (projected); zero for an empty history."""
        h = self.dropout(self.items(x.history))
        packed = pack_padded_sequence(h, x.lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.history.shape[1])
        last = out[torch.arange(len(x.lengths)), (x.lengths - 1).clamp(min=0)]
        return self.project(last) * (x.lengths > 0).unsqueeze(1)


class TransformerClickModel(_SequenceClickModel):
    """History tokens then the shown item as a last token -> causal transformer -> that token's output."""

    def __init__(self, item_features: np.ndarray, n_context: int, config: ClickModelConfig):
        super().__init__(item_features, n_context, config)
        d = config.embedding_dim
        self.position = nn.Embedding(config.max_len + 1, d)
        nn.init.normal_(self.position.weight, std=0.02)
        self.target = nn.Parameter(torch.zeros(d))  # marks the shown item's token
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(d, config.num_heads, 2 * d, config.dropout, activation="gelu",
                                       batch_first=True, norm_first=True)
            for _ in range(config.num_blocks))
        self.norm = nn.LayerNorm(d)

    def user(self, x: _Inputs, shown: torch.Tensor) -> torch.Tensor:
        b, width = x.history.shape
        rows = torch.arange(b)
        tokens = torch.cat([self.items(x.history), torch.zeros(b, 1, shown.shape[1])], dim=1)
        tokens[rows, x.lengths] = shown + self.target  # right after the last real item
        positions = torch.arange(width + 1)
        x_in = tokens * shown.shape[1] ** 0.5 + self.position(positions)
        padding = positions[None, :] > x.lengths[:, None]
        h = self.dropout(x_in.masked_fill(padding[..., None], 0.0))
        causal = torch.ones(width + 1, width + 1, dtype=torch.bool).triu(1)  # True: blocked
        # Key 0 is always real (a history item or the shown item), so no query has every key blocked.
        for block in self.blocks:
            h = block(h, src_mask=causal, src_key_padding_mask=padding)
        return self.norm(h)[rows, x.lengths]


class LogisticClickModel(nn.Module):
    """Logistic regression on the standardised observation features and (with ``ids``) a one-hot of
    the shown item."""

    def __init__(self, n_items: int, n_features: int, ids: bool = True):
        super().__init__()
        self.linear = nn.Linear(n_features, 1)
        self.item_bias = nn.Parameter(torch.zeros(n_items + 1), requires_grad=ids)

    def forward(self, x: _Inputs) -> torch.Tensor:
        return self.linear(x.features).squeeze(1) + self.item_bias[x.item]


def f1_threshold(clicked: np.ndarray, probability: np.ndarray) -> float:
    """The threshold ``t`` (predict a click when ``p >= t``) that maximises F1; the highest such ``t``.

    Every distinct probability is a candidate, so the result is one of them.

    Raises:
        ValueError: on mismatched shapes, or when there is no click to find.
    """
    y = np.asarray(clicked, bool)
    p = np.asarray(probability, np.float64)
    if y.ndim != 1 or y.shape != p.shape or not y.size:
        raise ValueError(f"clicked and probability must be non-empty 1-D arrays of one shape, got {y.shape}, {p.shape}")
    if not y.any():
        raise ValueError("no click among the cases: F1 is 0 at every threshold")
    order = np.argsort(-p, kind="stable")
    p_sorted, tp = p[order], np.cumsum(y[order])
    last = np.r_[p_sorted[1:] != p_sorted[:-1], True]  # the last case of each run of equal scores
    predicted = np.arange(1, len(p) + 1)[last]
    f1 = 2 * tp[last] / (predicted + y.sum())
    return float(p_sorted[last][np.argmax(f1)])


def click_report(clicked: np.ndarray, probability: np.ndarray, threshold: float) -> dict[str, float]:
    """ROC-AUC, accuracy/precision/recall/F1 at 0.5 and at ``threshold`` (suffix ``@t``), and the
    positives' share with the accuracy of always predicting no click beside them."""
    at_half = click_metrics(clicked, probability, 0.5)
    at_t = click_metrics(clicked, probability, threshold)
    rate = float(np.mean(clicked))
    return {**at_half, **{f"{k}@t": v for k, v in at_t.items() if k != "roc_auc"}, "threshold": float(threshold),
            "log_loss": log_loss(clicked, probability), "positive_rate": rate, "always_no_accuracy": 1.0 - rate}


def log_loss(clicked: np.ndarray, probability: np.ndarray) -> float:
    """Mean binary cross-entropy of probabilities (clipped away from 0 and 1)."""
    p = np.clip(np.asarray(probability, np.float64), 1e-7, 1 - 1e-7)
    y = np.asarray(clicked, np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


@dataclass
class ClickModel:
    """A fitted click model: the module, the input scaling, the F1 threshold and the training record.

    ``base`` is the log-odds of a click in the training impressions, added to the module's logit, so
    that every model (untrained ones too) starts at the base rate rather than at 0.5: with 0.4%
    positives a bias would otherwise take most of training to get there.
    """

    module: nn.Module
    config: ClickModelConfig
    threshold: float
    scaling: dict[str, torch.Tensor]
    base: float = 0.0
    epochs: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    stopped_by: str = "not trained"

    def inputs(self, data: ClickData) -> _Inputs:
        """The tensors the module reads (histories packed as the models read them)."""
        items, lengths = pack_histories(np.where(data.history >= 0, data.history + 1, 0), self.config.max_len)
        s = self.scaling
        return _Inputs(torch.as_tensor(items), torch.as_tensor(lengths), torch.as_tensor(data.item + 1),
                       (torch.as_tensor(data.context, dtype=torch.float32) - s["context_mean"]) / s["context_std"],
                       (torch.as_tensor(data.features, dtype=torch.float32) - s["features_mean"]) / s["features_std"])

    @torch.no_grad()
    def _logits(self, x: _Inputs) -> torch.Tensor:
        self.module.eval()
        size = self.config.score_batch_size
        parts = [self.module(x.rows(torch.arange(i, min(i + size, len(x.item))))) for i in range(0, len(x.item), size)]
        return (torch.cat(parts) if parts else torch.zeros(0)) + self.base

    def probability(self, data: ClickData) -> np.ndarray:
        """Predicted click probability ``(I,)`` of each impression."""
        return torch.sigmoid(self._logits(self.inputs(data))).double().numpy()

    def steps_probability(self, steps: LoggedSteps, layout: ObservationLayout) -> np.ndarray:
        """Predicted click probability ``(S, K)`` of each shown item of logged steps: the form of
        ``Recommender.click_probability``, so ``agents.log_accuracy.click_prediction`` scores it."""
        return self.probability(steps_click_data(steps, layout)).reshape(steps.shown.shape)

    def evaluate(self, data: ClickData) -> dict[str, float]:
        """:func:`click_report` on ``data`` at 0.5 and at the validation users' F1 threshold."""
        return click_report(data.clicked, self.probability(data), self.threshold)


def build_module(kind: str, data: ClickData, config: ClickModelConfig) -> nn.Module:
    """A fresh module of ``kind`` for ``data``'s catalogue and feature sizes (weights from torch's
    generator: call under :func:`~agents.sequential.base.seeded`)."""
    if kind == "lstm":
        return LSTMClickModel(data.item_features, data.context.shape[1], config)
    if kind == "transformer":
        return TransformerClickModel(data.item_features, data.context.shape[1], config)
    if kind == "logistic":
        return LogisticClickModel(data.n_items, data.features.shape[1], config.item_ids)
    raise ValueError(f"kind={kind!r}: allowed {', '.join(map(repr, KINDS))}")


def split_groups(group: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A mask of the rows whose group is among a random ``fraction`` of the groups (at least one,
    and at least one left out)."""
    groups = np.unique(group)
    if len(groups) < 2:
        raise ValueError(f"cannot hold out users from {len(groups)} user(s)")
    n = int(np.clip(round(fraction * len(groups)), 1, len(groups) - 1))
    return np.isin(group, rng.permutation(groups)[:n])


def fit_click_model(data: ClickData, config: ClickModelConfig | None = None) -> ClickModel:
    """Train a click model on ``data``'s impressions by binary cross-entropy, early stopping on held-out users.

    A ``valid_fraction`` of the users is held out; after every epoch their log loss is measured and
    the best epoch's weights are kept (``patience`` epochs without improvement stop training). The
    F1-maximising threshold is then chosen on those users. The weights (and dropout) come from a
    forked copy of torch's generator seeded with ``config.seed``, the split and the sample from a
    numpy generator of that seed, the batch order from a seeded torch.Generator: one seed, one model.

    Raises:
        ValueError: fewer than two users, or the validation users lack a click or a non-click.
    """
    config = config or ClickModelConfig()
    rng = np.random.default_rng(config.seed)
    valid_rows = split_groups(data.group, config.valid_fraction, rng)
    train, valid = data.select(np.flatnonzero(~valid_rows)), data.select(np.flatnonzero(valid_rows))
    if valid.clicked.all() or not valid.clicked.any():
        raise ValueError("the validation users need both clicks and non-clicks")
    if len(train) > config.max_impressions:
        train = train.select(np.sort(rng.choice(len(train), config.max_impressions, replace=False)))

    def stats(a: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.as_tensor(a, dtype=torch.float32)
        return t.mean(0), t.std(0, unbiased=False).clamp(min=1e-6)

    (cm, cs), (fm, fs) = stats(train.context), stats(train.features)
    scaling = {"context_mean": cm, "context_std": cs, "features_mean": fm, "features_std": fs}
    generator = torch.Generator().manual_seed(config.seed)
    with seeded(config.seed):
        rate = float(np.clip(train.positive_rate, 1e-6, 1 - 1e-6))
        model = ClickModel(build_module(config.kind, data, config), config, 0.5, scaling, float(np.log(rate / (1 - rate))))
        x_train, x_valid = model.inputs(train), model.inputs(valid)
        labels = torch.as_tensor(train.clicked, dtype=torch.float32)
        best_loss = log_loss(valid.clicked, torch.sigmoid(model._logits(x_valid)).numpy())
        best_state = {k: v.clone() for k, v in model.module.state_dict().items()}
        optimiser = torch.optim.Adam(model.module.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        waited = 0
        for epoch in range(1, config.epochs + 1):
            model.module.train()
            order = torch.randperm(len(labels), generator=generator)
            total = 0.0
            for start in range(0, len(order), config.batch_size):
                chunk = order[start:start + config.batch_size]
                logits = model.module(x_train.rows(chunk)) + model.base
                loss = nn.functional.binary_cross_entropy_with_logits(logits, labels[chunk])
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                total += float(loss.detach()) * len(chunk)
            valid_loss = log_loss(valid.clicked, torch.sigmoid(model._logits(x_valid)).numpy())
            model.epochs.append({"epoch": epoch, "train_loss": total / len(labels), "valid_loss": valid_loss})
            if valid_loss < best_loss - 1e-6:
                best_loss, waited, model.best_epoch = valid_loss, 0, epoch
                best_state = {k: v.clone() for k, v in model.module.state_dict().items()}
            else:
                waited += 1
                if waited >= config.patience:
                    model.stopped_by = "patience"
                    break
        else:
            model.stopped_by = "epochs" if config.epochs else "not trained"
        model.module.load_state_dict(best_state)
    model.threshold = f1_threshold(valid.clicked, model.probability(valid))
    return model
