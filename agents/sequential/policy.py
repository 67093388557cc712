"""Any trained next-item model as a :class:`~agents.base.Recommender` in the simulator.

Each step the policy scores the step's candidates (``info["candidates"]``) by the model's
next-item logit given the user's clicked items so far, and shows the best (or the best slate).
It keeps one history per env row, built only from what a deployed system would see: the clicked
item ids in ``info["item"]`` where ``info["click"]`` holds. A row's history is cleared when that
row starts a new user (``info["autoreset"]`` in the vector env), and every row's is cleared when
``info`` has no ``"click"`` (the info of ``env.reset``).

Two cases the model cannot score: a user with no click yet gets the training popularity of the
candidates, and a candidate the model never saw in training gets ``-inf`` (shown only if no
candidate is known). Clicks on unknown items are not added to the history.

For accuracy on logged steps (:class:`~recsim_env.logs.LoggedSteps`) the same scores are given for
the whole catalogue (``catalogue_scores``), from each step's logged click history instead of the
policy's own; with a :class:`~agents.sequential.click.ClickHead` the policy also predicts clicks on
the shown items (``click_probability``). The head is not part of the checkpoint: ``save`` writes
the next-item model only, and ``load`` drops the head, whose features came from the old weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from agents.base import Recommender
from agents.sequential.base import Batch, pack_histories
from agents.sequential.checkpoint import TrainedModel
from agents.sequential.click import ClickHead
from agents.sequential.popularity import Popularity
from recsim_env.logs.steps import LoggedSteps


def _catalogue_size(env: gym.Env | gym.vector.VectorEnv) -> tuple[int, int]:
    config = getattr(env.unwrapped, "config", None)
    if config is None or not hasattr(config, "catalog"):
        raise TypeError(f"{type(env.unwrapped).__name__} is not a recsim_env environment (no config.catalog)")
    return config.catalog.n_items, config.slate_size


class SequentialPolicy(Recommender):
    """Ranks candidates by a trained next-item model over each user's click history."""

    def __init__(self, env: gym.Env | gym.vector.VectorEnv, trained: TrainedModel, click_head: ClickHead | None = None,
                 score_batch_size: int = 1024):
        super().__init__(env)
        if score_batch_size < 1:
            raise ValueError(f"score_batch_size={score_batch_size!r} is out of range: allowed >= 1")
        if click_head is not None and click_head.trained is not trained:
            raise ValueError("click_head was fitted on another model than trained")
        self.n_env_items, self.slate_size = _catalogue_size(env)
        self.score_batch_size = score_batch_size
        self._set_model(trained)
        self.click_head = click_head

    def _set_model(self, trained: TrainedModel) -> None:
        if trained.item_ids.dtype.kind not in "iu":
            raise TypeError("the model's item ids are not integers, so they cannot be simulator item ids")
        self.trained, self.name = trained, trained.kind
        self.max_len = trained.max_len
        ids = trained.item_ids[1:].astype(np.int64)
        known = (ids >= 0) & (ids < self.n_env_items)
        self.index = np.zeros(self.n_env_items, np.int64)  # env item id -> model item (0 = unknown)
        self.index[ids[known]] = np.flatnonzero(known) + 1
        self.prior = np.asarray(trained.item_counts, np.float64)
        self.history = np.zeros((0, self.max_len), np.int64)  # sized on the first observe
        self.lengths = np.zeros(0, np.int64)

    def reset_history(self, rows: np.ndarray | None = None) -> None:
        """Forget the histories of ``rows`` (all when None)."""
        if rows is None:
            self.lengths[:] = 0
        else:
            self.lengths[rows] = 0
        self.history[self.lengths == 0] = 0

    def observe(self, info: dict[str, Any]) -> None:
        """Update the histories from the info of the step just taken (see the module docstring)."""
        n = len(np.atleast_2d(info["candidates"]))
        if len(self.lengths) != n:
            self.history = np.zeros((n, self.max_len), np.int64)
            self.lengths = np.zeros(n, np.int64)
        if "click" not in info:
            self.reset_history()
            return
        if "autoreset" in info:
            self.reset_history(np.flatnonzero(np.asarray(info["autoreset"], bool)))
        item = np.asarray(info["item"], np.int64).reshape(n)
        clicked = np.asarray(info["click"], bool).reshape(n) & (item >= 0) & (item < self.n_env_items)
        rows = np.flatnonzero(clicked)
        model_item = self.index[item[rows]]
        rows, model_item = rows[model_item > 0], model_item[model_item > 0]
        full = self.lengths[rows] == self.max_len
        shift = rows[full]
        self.history[shift, :-1] = self.history[shift, 1:]  # drop the oldest item of full rows
        self.lengths[shift] -= 1
        self.history[rows, self.lengths[rows]] = model_item
        self.lengths[rows] += 1

    def scores(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        """Scores of the candidates ``(B, N)`` under the current histories."""
        candidates = self.index[np.atleast_2d(np.asarray(info["candidates"], np.int64))]
        model = self.trained.model
        if isinstance(model, Popularity):
            return np.where(candidates > 0, model.ranked.double().numpy()[candidates], -np.inf)
        scores = self.prior[candidates]
        rows = np.flatnonzero(self.lengths > 0)
        if len(rows):
            width = int(self.lengths[rows].max())
            batch = Batch.from_numpy(self.history[rows, :width], self.lengths[rows], users=np.full(len(rows), -1))
            model.eval()
            with torch.no_grad():
                scores[rows] = model.score(batch, torch.as_tensor(candidates[rows])).double().numpy()
        return np.where(candidates > 0, scores, -np.inf)

    def catalogue_scores(self, steps: LoggedSteps) -> np.ndarray:
        """Scores ``(S, n_items)`` of every env item at each logged step, as :meth:`scores` gives them
        for a user whose history holds the step's logged clicks (unknown items -inf, popularity
        without a click yet); the model reads ``score_batch_size`` histories at a time."""
        self._check_catalogue(steps)
        known = self.index > 0
        model = self.trained.model
        if isinstance(model, Popularity):
            row = np.where(known, model.ranked.double().numpy()[self.index], -np.inf)
            return np.repeat(row[None, :], len(steps), axis=0)
        out = np.empty((len(steps), self.n_env_items))
        out[:] = np.where(known, self.prior[self.index], -np.inf)
        items, lengths = pack_histories(self._model_items(steps.history), self.max_len)
        rows = np.flatnonzero(lengths > 0)
        model.eval()
        with torch.no_grad():
            for start in range(0, len(rows), self.score_batch_size):
                chunk = rows[start:start + self.score_batch_size]
                width = int(lengths[chunk].max())
                batch = Batch.from_numpy(items[chunk, :width], lengths[chunk], users=np.full(len(chunk), -1))
                out[chunk] = np.where(known, model.score(batch).double().numpy()[:, self.index], -np.inf)
        return out

    def click_probability(self, steps: LoggedSteps) -> np.ndarray:
        """The click head's probability ``(S, K)`` of a click on each shown item, given the logged history."""
        if self.click_head is None:
            return super().click_probability(steps)
        self._check_catalogue(steps)
        return self.click_head.probability(steps.history, steps.shown)

    def _check_catalogue(self, steps: LoggedSteps) -> None:
        if steps.n_items != self.n_env_items:
            raise ValueError(f"the steps' catalogue has {steps.n_items} items, the policy's env {self.n_env_items}")

    def _model_items(self, env_items: np.ndarray) -> np.ndarray:
        """Model ids of env item ids, 0 for -1, out-of-catalogue and never-seen items."""
        env_items = np.asarray(env_items, np.int64)
        inside = (env_items >= 0) & (env_items < self.n_env_items)
        return np.where(inside, self.index[np.where(inside, env_items, 0)], 0)

    def act(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        self.observe(info)
        order = np.argsort(-self.scores(obs, info), axis=1, kind="stable")[:, :self.slate_size]
        actions = order[:, 0] if self.slate_size == 1 else order
        return actions[0] if np.ndim(info["candidates"]) == 1 else actions

    def save(self, path: str | Path) -> None:
        self.trained.save(path)

    def load(self, path: str | Path) -> None:
        self._set_model(TrainedModel.load(path, kind=self.trained.kind))
        self.click_head = None  # fitted on the previous weights
