"""Logged steps of held-out users: what every agent is scored on for accuracy, whatever it is.

A learning agent, an oracle and a next-item model read different things about a user: the
observation, the true hidden state, the clicked items so far. :func:`collect_steps` records all of
them at every step of a behaviour policy's episodes, so that every agent ranks the whole catalogue
(and predicts clicks on the shown items) at the very same logged steps; the item the user actually
clicked is the target. The true state is there for the oracles and for checks only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from typing import Any

import gymnasium as gym
import numpy as np

from recsim_env.logs.simulated import BehaviourPolicy, InteractionLog
from recsim_env.observation import SESSION_STEP_SCALE

#: Clicked items kept per step (most recent last); older clicks are dropped.
HISTORY_LENGTH = 50
#: Padding of ``LoggedSteps.history`` before a user's first clicks.
NO_ITEM = -1


@dataclass(frozen=True)
class LoggedSteps:
    """Every step of every held-out user, in time order per user (steps first).

    Attributes:
        obs: ``(S, D)`` the observation before the step: all a learning agent may read.
        interest, satiation: ``(S, T)`` the true hidden state before the step (oracles and checks only).
        budget: ``(S,)`` the true remaining budget before the step.
        history: ``(S, L)`` the user's clicked item ids before the step in this episode, most recent
            last, left-padded with ``NO_ITEM``.
        candidates: ``(S, N)`` the item ids offered at the step.
        shown: ``(S, K)`` the item ids shown, best position first.
        click: ``(S,)`` whether the user clicked one of them.
        item: ``(S,)`` the clicked item id, ``NO_ITEM`` without a click: the accuracy target.
        user: ``(S,)`` held-out user index; ``step``: ``(S,)`` step within the episode.
        item_features: ``(n_items, item_dim)`` the catalogue's observable features (the rows an
            observation shows for an item), for agents that score items by their features.
        metadata: env id, behaviour policy, seed, user count.
    """

    obs: np.ndarray
    interest: np.ndarray
    satiation: np.ndarray
    budget: np.ndarray
    history: np.ndarray
    candidates: np.ndarray
    shown: np.ndarray
    click: np.ndarray
    item: np.ndarray
    user: np.ndarray
    step: np.ndarray
    item_features: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.user)

    @property
    def n_items(self) -> int:
        return len(self.item_features)

    def select(self, rows: np.ndarray | slice) -> LoggedSteps:
        """The steps at ``rows`` (a slice or indices), with the same catalogue and metadata."""
        per_step = {f.name: getattr(self, f.name)[rows] for f in fields(self)
                    if f.name not in ("item_features", "metadata")}
        return replace(self, **per_step)

    def batches(self, size: int) -> Iterator[LoggedSteps]:
        """Consecutive chunks of at most ``size`` steps (scoring the catalogue is ``size x n_items``)."""
        if size < 1:
            raise ValueError(f"size={size} is out of range: allowed >= 1")
        for start in range(0, len(self), size):
            yield self.select(slice(start, start + size))

    def info(self) -> dict[str, Any]:
        """The steps as an env ``info`` batch (``candidates``, ``user_state``), for oracles that read one."""
        return {"candidates": self.candidates,
                "user_state": {"interest": self.interest, "satiation": self.satiation, "budget": self.budget}}


def collect_steps(env: gym.vector.VectorEnv, policy: BehaviourPolicy, seed: int, policy_name: str | None = None,
                  history_length: int = HISTORY_LENGTH, max_steps: int = 1_000_000) -> LoggedSteps:
    """Run ``policy`` for one episode of each of the ``env.num_envs`` users reset with ``seed``.

    Steps after a user's episode ended are not recorded (the vector env's later episodes are ignored).

    Raises:
        ValueError: ``history_length`` < 1.
        RuntimeError: the users did not finish within ``max_steps`` env steps.
    """
    if history_length < 1:
        raise ValueError(f"history_length={history_length} is out of range: allowed >= 1")
    sim = getattr(env.unwrapped, "simulator", None)
    if sim is None:
        raise TypeError(f"{type(env.unwrapped).__name__} is not a recsim_env vector env (no simulator)")
    obs, info = env.reset(seed=seed)
    n = env.num_envs
    history = np.full((n, history_length), NO_ITEM, np.int64)
    step = np.zeros(n, np.int64)
    live = np.ones(n, bool)
    parts: list[dict[str, np.ndarray]] = []
    for _ in range(max_steps):
        rows = np.flatnonzero(live)
        state = info["user_state"]
        before = {"obs": obs[rows], "interest": np.asarray(state["interest"])[rows],
                  "satiation": np.asarray(state["satiation"])[rows], "budget": np.asarray(state["budget"])[rows],
                  "history": history[rows].copy(), "candidates": np.asarray(info["candidates"])[rows],
                  "user": rows, "step": step[rows].copy()}
        obs, _, terminated, truncated, info = env.step(policy.act(obs, info))
        item = np.asarray(info["item"], np.int64)
        click = np.asarray(info["click"], bool)
        parts.append({**before, "shown": np.asarray(info["slate"]).reshape(n, -1)[rows], "click": click[rows],
                      "item": item[rows]})
        clicked = live & click
        history[clicked, :-1] = history[clicked, 1:]
        history[clicked, -1] = item[clicked]
        step += 1
        live &= ~(np.asarray(terminated) | np.asarray(truncated))
        if not live.any():
            break
    else:
        raise RuntimeError(f"{np.count_nonzero(live)} of {n} users had not finished after max_steps={max_steps}")
    columns = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.lexsort((columns["step"], columns["user"]))
    spec = getattr(env, "spec", None)
    metadata = {"env_id": getattr(spec, "id", None), "policy": policy_name, "seed": seed, "n_users": n}
    return LoggedSteps(**{k: v[order] for k, v in columns.items()}, item_features=sim.catalog.observable,
                       metadata=metadata)


def steps_from_log(log: InteractionLog, env: gym.vector.VectorEnv) -> LoggedSteps:
    """The log's steps with the observation each user saw, rebuilt from what the log recorded.

    An observation is a function of the log alone in a single-session env without the user state: the
    history rows are the last steps' item (clicked, or shown first) with its click and engagement, the
    candidates are catalogue rows and the context is the step. The true state is not logged, so
    ``interest``, ``satiation`` and ``budget`` are NaN; ``history`` is the clicked ids, as in
    :func:`collect_steps`.

    Raises:
        ValueError: the env shows the user state, or the log spans several sessions (the days away are
            not logged), or the log is not sorted by user then step from step 0.
    """
    base = env.unwrapped
    layout, catalog = base.layout, base.simulator.catalog
    if layout.observe_user_state:
        raise ValueError("the env observes the user state, which an interaction log does not record")
    if np.any(log.session != 0):
        raise ValueError("the log spans several sessions: the days between them are not logged")
    user, step = np.asarray(log.user, np.int64), np.asarray(log.step, np.int64)
    s = len(user)
    first = np.r_[True, user[1:] != user[:-1]]
    if np.any(np.diff(user) < 0) or not np.array_equal(step, np.arange(s) - np.maximum.accumulate(
            np.where(first, np.arange(s), 0))):
        raise ValueError("the log must hold each user's steps in order from step 0, users one after another")
    observable = catalog.observable
    click, item, slate = np.asarray(log.click, bool), np.asarray(log.item, np.int64), np.asarray(log.slate, np.int64)
    # What each step appends to the history: the item recorded and the response, as the env encodes it.
    recorded = np.where(click, item, slate[:, 0])
    response = np.stack([click, np.minimum(np.asarray(log.engagement, np.float64) / catalog.max_length, 1.0)], 1)
    rows = np.concatenate([observable[recorded], response.astype(np.float32)], axis=1)
    rows = np.concatenate([rows, np.zeros((1, rows.shape[1]), np.float32)])  # the last row pads
    h = layout.history_length
    back = np.arange(s)[:, None] - h + np.arange(h)[None]  # the h steps before, oldest first
    history = rows[np.where(np.arange(h)[None] >= h - step[:, None], back, s)]
    candidates = observable[np.asarray(log.candidates, np.int64)]
    context = np.zeros((s, 2), np.float32)
    context[:, 0] = np.minimum(step / SESSION_STEP_SCALE, 1.0)
    obs = np.concatenate([history.reshape(s, -1), candidates.reshape(s, -1), context], axis=1)
    # The clicked ids before each step: the user's clicks so far, at most HISTORY_LENGTH, most recent last.
    clicked = click & (item >= 0)
    clicks_before = np.cumsum(clicked) - clicked
    start = np.maximum.accumulate(np.where(first, clicks_before, 0))
    count = np.minimum(clicks_before - start, HISTORY_LENGTH)
    ids = np.r_[item[clicked], NO_ITEM]
    back = clicks_before[:, None] - HISTORY_LENGTH + np.arange(HISTORY_LENGTH)[None]
    valid = np.arange(HISTORY_LENGTH)[None] >= HISTORY_LENGTH - count[:, None]
    unknown = np.full((s, layout.n_topics), np.nan, np.float32)
    return LoggedSteps(obs=obs.astype(np.float32), interest=unknown, satiation=unknown.copy(),
                       budget=np.full(s, np.nan, np.float32), history=ids[np.where(valid, back, len(ids) - 1)],
                       candidates=np.asarray(log.candidates, np.int64), shown=slate, click=click, item=item,
                       user=user, step=step, item_features=observable,
                       metadata={**log.metadata, "rebuilt_from": "interaction log"})
