"""One accuracy measure for every agent: ranking the whole catalogue at logged steps of held-out users.

Next-click accuracy in an agent's own rollouts compares agents on different users and states, and
over only the step's few candidates. Here every agent ranks every catalogue item at the very same
logged steps (:class:`~recsim_env.logs.LoggedSteps`), and the item the user actually clicked is the
target: HR@k, NDCG@k and MRR, ties counted pessimistically. Agents with a click model are also
scored on the logged impressions (each shown item, clicked or not): accuracy, precision, recall, F1
and ROC-AUC. Per-user sums are kept so that intervals can resample users as well as seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agents.base import Recommender
from recsim_env.logs.steps import LoggedSteps
from recsim_env.metrics import Ranks, click_metrics, full_ranks, ranking_metrics

#: Logged steps scored at once: each costs ``n_items`` scores.
BATCH_STEPS = 256
RANKING_METRICS = ("HR@10", "NDCG@10", "MRR")
CLICK_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")


@dataclass(frozen=True)
class LogAccuracy:
    """Catalogue-wide accuracy at the clicked logged steps, overall and summed per held-out user."""

    metrics: dict[str, float]
    per_user_sums: dict[str, np.ndarray]
    per_user_cases: np.ndarray


def clicked_steps(steps: LoggedSteps) -> LoggedSteps:
    """The logged steps with a click on a catalogue item: the cases with a target."""
    return steps.select(np.flatnonzero(steps.click & (steps.item >= 0)))


def log_accuracy(agent: Recommender, steps: LoggedSteps, k: int = 10, n_users: int | None = None) -> LogAccuracy:
    """HR@k, NDCG@k and MRR of ``agent.catalogue_scores`` against the clicked item of every clicked step.

    Raises:
        NotImplementedError: the agent cannot rank the catalogue.
        ValueError: no logged step has a click, or the agent's scores have the wrong shape.
    """
    cases = clicked_steps(steps)
    if not len(cases):
        raise ValueError("no logged step has a click: nothing to rank against")
    parts = []
    for batch in cases.batches(BATCH_STEPS):
        scores = np.asarray(agent.catalogue_scores(batch))
        if scores.shape != (len(batch), steps.n_items):
            raise ValueError(f"{agent.name}.catalogue_scores returned shape {scores.shape}, "
                             f"expected {(len(batch), steps.n_items)}")
        parts.append(full_ranks(scores, batch.item))
    per_case = ranking_metrics(Ranks.concat(parts), (k,), per_case=True)
    users = int(n_users if n_users is not None else steps.user.max() + 1)
    sums = {name: np.bincount(cases.user, per_case[name], minlength=users) for name in per_case}
    counts = np.bincount(cases.user, minlength=users).astype(np.float64)
    return LogAccuracy({name: float(values.mean()) for name, values in per_case.items()}, sums, counts)


def click_labels(steps: LoggedSteps) -> np.ndarray:
    """``(S, K)``: whether the user clicked each shown item (at most one position per step)."""
    return steps.click[:, None] & (steps.shown == steps.item[:, None])


def click_prediction(agent: Recommender, steps: LoggedSteps) -> dict[str, float]:
    """Accuracy, precision, recall, F1 (threshold 0.5) and ROC-AUC of ``agent.click_probability``.

    Raises:
        NotImplementedError: the agent has no click model.
        ValueError: the probabilities have the wrong shape or leave [0, 1].
    """
    probability = np.asarray(agent.click_probability(steps), np.float64)
    if probability.shape != steps.shown.shape:
        raise ValueError(f"{agent.name}.click_probability returned shape {probability.shape}, "
                         f"expected {steps.shown.shape}")
    if not np.all((probability >= 0.0) & (probability <= 1.0)):
        raise ValueError(f"{agent.name}.click_probability returned values outside [0, 1]")
    return click_metrics(click_labels(steps).ravel(), probability.ravel())
