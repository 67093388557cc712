"""The one training loop and the ranking evaluation shared by every next-item model.

Training: Adam on full-softmax cross-entropy (or the one-negative binary cross-entropy of the
published baselines, ``loss="bce"``), shuffled padded batches from a seeded numpy generator,
dropout and ``bce`` negatives from a forked copy of torch's generator seeded with the run's seed
(``base.seeded``), so a run is repeatable on CPU and leaves torch's global random state untouched.
After each epoch the model ranks the validation targets against the whole catalogue; the epoch with
the best validation NDCG@10 is kept, training stops after ``patience`` epochs without improvement
(or, with ``max_seconds``, before an epoch that would overrun the time budget: on a shared machine
the epoch count then depends on the load, and ``TrainResult.stopped_by`` says so), and a hook runs
on each new best (the checkpoint writer uses it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from agents.sequential.base import OBJECTIVES, Batch, NextItemModel, seeded
from recsim_env.config import Validated, bounded
from recsim_env.io import progress_enabled
from recsim_env.logs import EvalSet, Sequences, training_batches
from recsim_env.metrics import Ranks, full_ranks, ranking_metrics, sampled_ranks

SELECTION_METRIC = "NDCG@10"


@dataclass(frozen=True)
class TrainConfig(Validated):
    """Optimisation and early stopping."""

    epochs: int = bounded(200, ge=1, le=100_000, doc="most epochs")
    batch_size: int = bounded(256, ge=1, le=1_000_000, doc="users per batch")
    lr: float = bounded(1e-3, gt=0.0, le=10.0, doc="Adam learning rate")
    weight_decay: float = bounded(0.0, ge=0.0, le=1.0, doc="L2 penalty (Adam weight_decay)")
    max_len: int = bounded(50, ge=1, le=100_000, doc="most recent items a model reads")
    patience: int = bounded(5, ge=1, le=100_000, doc="epochs without a better validation NDCG@10 before stopping")
    seed: int = bounded(0, ge=0, le=2**32 - 1, doc="seed of batch order, dropout and initialisation")
    eval_batch_size: int = bounded(1024, ge=1, le=1_000_000, doc="cases scored at once in evaluation")
    max_seconds: float = bounded(0.0, ge=0.0, le=1e9, doc="stop before an epoch that would end past this "
                                 "many seconds of training (0: no limit)")
    exclude_history: bool = True
    loss: str = "ce"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.loss not in OBJECTIVES:
            raise ValueError(f"TrainConfig.loss={self.loss!r}: allowed {', '.join(map(repr, OBJECTIVES))}")


@dataclass
class TrainResult:
    """What training did: the best epoch, its validation NDCG@10, and every epoch's numbers."""

    best_epoch: int = 0
    best_valid: float = float("-inf")
    epochs: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    stopped_by: str = "epochs"


@torch.no_grad()
def rank_cases(model: NextItemModel, cases: EvalSet, max_len: int, negatives: np.ndarray | None = None,
               exclude_history: bool = True, batch_size: int = 1024) -> Ranks:
    """Rank every case's target: against the whole catalogue, or against its ``negatives`` ``(C, m)``.

    In full ranking the padding column never competes, and with ``exclude_history`` neither do the
    items of the case's history (the S3-Rec protocol; a target that repeats a history item then
    counts as a miss, see :func:`recsim_env.metrics.full_ranks`).
    """
    model.eval()
    parts = []
    for start in range(0, len(cases), batch_size):
        rows = np.arange(start, min(start + batch_size, len(cases)))
        items, lengths = cases.history.pad(rows, max_len)
        users = cases.users[rows]
        batch = Batch.from_numpy(items, lengths, users=users)
        targets = cases.targets[rows]
        if negatives is not None:
            candidates = torch.as_tensor(np.concatenate([targets[:, None], negatives[rows]], axis=1))
            scores = model.score(batch, candidates).numpy()
            parts.append(sampled_ranks(scores[:, 0], scores[:, 1:]))
            continue
        scores = model.score(batch).numpy()
        exclude = np.zeros(scores.shape, bool)
        exclude[:, 0] = True
        if exclude_history:
            exclude[cases.history.history_mask(rows)] = True
        parts.append(full_ranks(scores, targets, exclude))
    return Ranks.concat(parts)


def train(model: NextItemModel, train_seqs: Sequences, valid: EvalSet, config: TrainConfig | None = None,
          on_best: Callable[[], object] | None = None, progress: bool | None = None) -> TrainResult:
    """Fit ``model`` on ``train_seqs``, select the epoch on ``valid`` (NDCG@10, full ranking).

    Args:
        model: a trainable :class:`NextItemModel` (``checkpoint.build_model`` initialises it seeded).
        train_seqs: training sequences (rows are the ``users`` of ``valid``).
        valid: validation cases.
        config: optimisation settings.
        on_best: called after each epoch that improves validation NDCG@10 (to write a checkpoint).
        progress: show a progress bar (default: only on a terminal).

    Returns:
        The training record; the model is left with the best epoch's weights.
    """
    config = config or TrainConfig()
    if not model.trainable:
        raise TypeError(f"{type(model).__name__} is not trained by gradient descent")
    with seeded(config.seed):  # dropout and bce negatives: a seeded fork, the caller's stream untouched
        return _train(model, train_seqs, valid, config, on_best, progress)


def _train(model: NextItemModel, train_seqs: Sequences, valid: EvalSet, config: TrainConfig,
           on_best: Callable[[], object] | None, progress: bool | None) -> TrainResult:
    """The loop of :func:`train`, run inside its seeded fork of torch's generator."""
    rng = np.random.default_rng(config.seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    result = TrainResult()
    best_state: dict[str, torch.Tensor] | None = None
    start = time.perf_counter()
    bar = tqdm(range(1, config.epochs + 1), desc=f"training {model.kind}", disable=not progress_enabled(progress))
    for epoch in bar:
        model.train()
        losses = []
        for chunk in training_batches(train_seqs, config.batch_size, config.max_len, rng):
            loss = model.loss(Batch.for_training(chunk), config.loss)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
        ranks = rank_cases(model, valid, config.max_len, exclude_history=config.exclude_history,
                           batch_size=config.eval_batch_size)
        score = ranking_metrics(ranks, (10,))[SELECTION_METRIC]
        result.epochs.append({"epoch": epoch, "loss": float(np.mean(losses)), SELECTION_METRIC: score,
                              "seconds": time.perf_counter() - start})
        bar.set_postfix(loss=f"{np.mean(losses):.3f}", valid_ndcg10=f"{score:.4f}")
        if score > result.best_valid:
            result.best_epoch, result.best_valid = epoch, score
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if on_best is not None:
                on_best()
        elif epoch - result.best_epoch >= config.patience:
            result.stopped_by = "patience"
            break
        elapsed = time.perf_counter() - start
        if config.max_seconds and epoch < config.epochs and elapsed * (epoch + 1) / epoch > config.max_seconds:
            result.stopped_by = "time budget"  # the next epoch, at the mean pace so far, would overrun
            break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    result.seconds = time.perf_counter() - start
    return result


def evaluate(model: NextItemModel, cases: EvalSet, max_len: int, negatives: np.ndarray | None = None,
             exclude_history: bool = True, ks: tuple[int, ...] = (1, 5, 10, 20),
             batch_size: int = 1024) -> dict[str, float]:
    """HR@k, NDCG@k and MRR of ``model`` on ``cases`` (pessimistic ties)."""
    return ranking_metrics(rank_cases(model, cases, max_len, negatives, exclude_history, batch_size), ks)
