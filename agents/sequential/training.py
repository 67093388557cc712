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

Options for a model that must reach its best within a time budget (all off by default): the sampled
softmax (``loss="ss"``, ``negatives`` per batch), a learning-rate warm-up and decay over the budget
(``schedule``, ``warmup``), batches of similar lengths (``length_pool``), validation every few epochs
(``eval_every``: on a large catalogue the full ranking can cost more than an epoch), and copies of the
weights at given seconds of training (``snapshot_seconds``) for a curve of accuracy against time.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from agents.sequential.base import OBJECTIVES, SAMPLED_NEGATIVES, Batch, NextItemModel, seeded
from recsim_env.config import Validated, bounded
from recsim_env.io import progress_enabled
from recsim_env.logs import EvalSet, Sequences, TrainingBatch, training_batches
from recsim_env.metrics import Ranks, full_ranks, ranking_metrics, sampled_ranks

SELECTION_METRIC = "NDCG@10"
SCHEDULES = ("constant", "cosine", "linear")


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
    negatives: int = bounded(SAMPLED_NEGATIVES, ge=1, le=1_000_000,
                             doc="uniform negatives per batch of the sampled softmax (loss 'ss')")
    warmup: float = bounded(0.0, ge=0.0, lt=1.0, doc="share of training with the learning rate rising from 0")
    eval_every: int = bounded(1, ge=1, le=100_000, doc="epochs between validation rankings (also before a "
                              "stop by the time budget and after the last epoch)")
    length_pool: int = bounded(0, ge=0, le=1_000_000, doc="batches whose users are sorted by length together "
                               "(0: plain shuffled batches); each batch's loss is weighted by its targets")
    exclude_history: bool = True
    loss: str = "ce"
    #: learning-rate shape (:meth:`lr_factor`) over ``max_seconds`` of wall clock when there is a budget
    #: (training ends then, so the decay ends with it; the run then depends on the load), else the epochs
    schedule: str = "constant"
    #: seconds of training at which to keep a copy of the weights (``TrainResult.snapshots``)
    snapshot_seconds: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.loss not in OBJECTIVES:
            raise ValueError(f"TrainConfig.loss={self.loss!r}: allowed {', '.join(map(repr, OBJECTIVES))}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"TrainConfig.schedule={self.schedule!r}: allowed {', '.join(map(repr, SCHEDULES))}")
        times = tuple(float(t) for t in self.snapshot_seconds)
        if any(not math.isfinite(t) or t <= 0 for t in times) or list(times) != sorted(set(times)):
            raise ValueError(f"TrainConfig.snapshot_seconds={self.snapshot_seconds!r}: allowed increasing "
                             f"positive seconds")
        object.__setattr__(self, "snapshot_seconds", times)

    def lr_factor(self, progress: float) -> float:
        """The learning rate's multiplier at ``progress`` in [0, 1] of training: a linear warm-up over
        ``warmup``, then constant, or a cosine or linear decay to 0 at the end."""
        progress = min(max(progress, 0.0), 1.0)
        if progress < self.warmup:
            return progress / self.warmup
        if self.schedule == "constant":
            return 1.0
        rest = (progress - self.warmup) / (1.0 - self.warmup)
        return 0.5 * (1.0 + math.cos(math.pi * rest)) if self.schedule == "cosine" else 1.0 - rest


@dataclass
class TrainResult:
    """What training did: the best epoch, its validation NDCG@10, and every epoch's numbers."""

    best_epoch: int = 0
    best_valid: float = float("-inf")
    epochs: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    stopped_by: str = "epochs"
    #: ``{"seconds", "epoch", "state"}`` per ``TrainConfig.snapshot_seconds`` reached: the weights after
    #: the first batch that ended past that many seconds, and the (fractional) epochs trained by then.
    snapshots: list[dict] = field(default_factory=list)


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
    if config.loss == "ss" and "negatives" not in inspect.signature(model.loss).parameters:
        raise TypeError(f"{type(model).__name__}.loss takes no number of negatives: loss 'ss' is not supported")
    with seeded(config.seed):  # dropout and bce negatives: a seeded fork, the caller's stream untouched
        return _train(model, train_seqs, valid, config, on_best, progress)


def length_pooled_batches(train: Sequences, batch_size: int, max_len: int, pool: int,
                          rng: np.random.Generator) -> Iterator[TrainingBatch]:
    """One epoch of batches like :func:`~recsim_env.logs.training_batches`, but of users of similar length.

    A batch is as wide as its longest history, and a transformer's cost grows with that width: on
    Amazon Beauty almost every random batch of 256 holds a user with 50 items while the mean is 9, so
    most of the work is padding. The shuffled users are cut into pools of ``pool`` batches, sorted by
    length within each pool, batched, and the batches shuffled: every user still trains once per epoch.
    """
    rows = rng.permutation(np.flatnonzero(train.lengths >= 2))
    chunks = []
    for start in range(0, len(rows), pool * batch_size):
        part = rows[start:start + pool * batch_size]
        part = part[np.argsort(train.lengths[part], kind="stable")]
        chunks += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    for i in rng.permutation(len(chunks)):
        padded, lengths = train.pad(chunks[i], max_len + 1)
        yield TrainingBatch(chunks[i], padded[:, :-1], padded[:, 1:], lengths - 1)


def _train(model: NextItemModel, train_seqs: Sequences, valid: EvalSet, config: TrainConfig,
           on_best: Callable[[], object] | None, progress: bool | None) -> TrainResult:
    """The loop of :func:`train`, run inside its seeded fork of torch's generator."""
    rng = np.random.default_rng(config.seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    extra = {"negatives": config.negatives} if config.loss == "ss" else {}
    scheduled = config.schedule != "constant" or config.warmup > 0
    steps_per_epoch = -(-int((train_seqs.lengths >= 2).sum()) // config.batch_size)
    # a pooled batch's mean loss is scaled by its share of the targets, so each target weighs what it
    # would in a plain batch: unscaled, a batch of 256 one-target users would count as much as one of
    # 256 fifty-target users (on Beauty, pools of 100 without this: test HR@10 0.074 after 21 epochs,
    # below the 0.083 of 10 plain-batch epochs)
    targets_per_batch = float(np.maximum(np.minimum(train_seqs.lengths, config.max_len + 1) - 1, 0).sum()
                              / steps_per_epoch)
    snapshots = list(config.snapshot_seconds)
    result = TrainResult()
    best_state: dict[str, torch.Tensor] | None = None
    start, cpu_start, step = time.perf_counter(), time.process_time(), 0
    bar = tqdm(range(1, config.epochs + 1), desc=f"training {model.kind}", disable=not progress_enabled(progress))
    for epoch in bar:
        model.train()
        losses = []
        batches = training_batches(train_seqs, config.batch_size, config.max_len, rng) if not config.length_pool \
            else length_pooled_batches(train_seqs, config.batch_size, config.max_len, config.length_pool, rng)
        for done, chunk in enumerate(batches, start=1):
            if scheduled:  # over the time budget if there is one (that is when training ends), else the epochs
                elapsed = time.perf_counter() - start
                share = elapsed / config.max_seconds if config.max_seconds else step / (config.epochs * steps_per_epoch)
                for group in optimiser.param_groups:
                    group["lr"] = config.lr * config.lr_factor(share)
            loss = model.loss(Batch.for_training(chunk), config.loss, **extra)
            optimiser.zero_grad(set_to_none=True)
            (loss * (float(chunk.lengths.sum()) / targets_per_batch) if config.length_pool else loss).backward()
            optimiser.step()
            losses.append(float(loss.detach()))
            step += 1
            while snapshots and time.perf_counter() - start >= snapshots[0]:
                state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                result.snapshots.append({"seconds": snapshots.pop(0), "epoch": epoch - 1 + done / steps_per_epoch,
                                         "state": state})
        elapsed = time.perf_counter() - start
        if epoch % config.eval_every and epoch < config.epochs and not (
                config.max_seconds and elapsed * (epoch + 1) / epoch > config.max_seconds):
            result.epochs.append({"epoch": epoch, "loss": float(np.mean(losses)), SELECTION_METRIC: None,
                                  "seconds": elapsed})  # not validated: the ranking costs more than an epoch
            continue
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
    result.cpu_seconds = time.process_time() - cpu_start
    return result


def evaluate(model: NextItemModel, cases: EvalSet, max_len: int, negatives: np.ndarray | None = None,
             exclude_history: bool = True, ks: tuple[int, ...] = (1, 5, 10, 20),
             batch_size: int = 1024) -> dict[str, float]:
    """HR@k, NDCG@k and MRR of ``model`` on ``cases`` (pessimistic ties)."""
    return ranking_metrics(rank_cases(model, cases, max_len, negatives, exclude_history, batch_size), ks)
