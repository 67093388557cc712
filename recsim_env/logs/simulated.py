"""Interaction logs of simulated users under a behaviour policy, stored as Parquet.

A log is what a deployed recommender would have recorded: for every step of every user, the
candidates it was offered, what it showed, what was clicked and how long it was watched. The
behaviour policy is any object with ``act(obs, info)`` (every recommender in ``agents/`` qualifies);
this module does not import ``agents``, so the dependency still points one way.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
from tqdm import tqdm

from recsim_env.io import atomic_write, progress_enabled
from recsim_env.logs.episodes import UserRows, sorted_columns
from recsim_env.logs.sequences import Sequences

#: Parquet schema-metadata key holding the log's JSON metadata (config, seed, policy).
METADATA_KEY = b"recsim_env.log"
FORMAT_VERSION = 1
_COLUMNS = ("user", "step", "session", "item", "click", "engagement", "reward", "candidates", "slate")


class BehaviourPolicy(Protocol):
    def act(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray: ...


@dataclass(frozen=True)
class InteractionLog:
    """One row per (user, step), sorted by user then step.

    Attributes:
        user: user id, 0..n_users-1 in the order users started.
        step: 0-based step within the user's episode.
        session: the session the step belongs to (cross-session presets count several).
        item: the clicked item id, or -1 for no click.
        click, engagement, reward: the response.
        candidates: ``(T, n_candidates)`` item ids offered at the step.
        slate: ``(T, slate_size)`` item ids shown, best position first.
        metadata: env id, env config, policy name, seed, user count.
    """

    user: np.ndarray
    step: np.ndarray
    session: np.ndarray
    item: np.ndarray
    click: np.ndarray
    engagement: np.ndarray
    reward: np.ndarray
    candidates: np.ndarray
    slate: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.user)

    def to_sequences(self) -> Sequences:
        """Each user's clicked items in order (dense ids, ``item_ids`` holding the env's item ids)."""
        clicked = self.click & (self.item >= 0)
        return Sequences.from_interactions(self.user[clicked], self.item[clicked])


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, np.generic):
        return value.item()
    return repr(value)  # e.g. a reward callable: recorded, not restorable


def collect_log(env: gym.vector.VectorEnv, policy: BehaviourPolicy, n_users: int | None, seed: int,
                policy_name: str | None = None, max_steps: int = 1_000_000,
                progress: bool | None = None, n_steps: int | None = None) -> InteractionLog:
    """Run ``policy`` on ``env`` until ``n_users`` users have each finished one episode.

    Each env row serves a fresh user after every autoreset, so ``n_users`` may exceed
    ``env.num_envs``. Autoreset steps (NEXT_STEP mode) are not interactions and are skipped; users
    started beyond the first ``n_users`` are dropped, so the log holds complete episodes only.

    With ``n_steps`` instead of ``n_users`` the log is sized in user-steps (the budget a learner that
    interacts is given): it holds the first users, in the order they started, whose episodes add up
    to at most ``n_steps`` steps, and no user beyond the first that would exceed it.

    Raises:
        ValueError: not exactly one of ``n_users`` and ``n_steps``, or either < 1.
        RuntimeError: the users did not finish within ``max_steps`` env steps.
    """
    if (n_users is None) == (n_steps is None):
        raise ValueError("collect_log needs exactly one of n_users and n_steps")
    if n_steps is not None:
        if n_steps < 1:
            raise ValueError(f"n_steps={n_steps!r} is out of range: allowed >= 1")
        return _log_of_steps(env, policy, n_steps, seed, policy_name, max_steps, progress)
    if n_users < 1:
        raise ValueError(f"n_users={n_users!r} is out of range: allowed >= 1")
    obs, info = env.reset(seed=seed)
    b = env.num_envs
    rows_of = UserRows(b, n_users)
    parts: list[dict[str, np.ndarray]] = []
    bar = tqdm(total=n_users, desc="simulating users", disable=not progress_enabled(progress))
    for _ in range(max_steps):
        candidates = np.atleast_2d(info["candidates"])
        session = np.asarray(info["user_state"]["session"]).reshape(b)
        obs, reward, terminated, truncated, info = env.step(policy.act(obs, info))
        keep, user, step, done = rows_of.after_step(info, terminated, truncated)
        slate = np.asarray(info["slate"]).reshape(b, -1)
        parts.append({"user": user[keep], "step": step[keep], "session": session[keep],
                      "item": np.asarray(info["item"]).reshape(b)[keep],
                      "click": np.asarray(info["click"], bool).reshape(b)[keep],
                      "engagement": np.asarray(info["engagement"], np.float64).reshape(b)[keep],
                      "reward": np.asarray(reward, np.float64)[keep],
                      "candidates": candidates[keep], "slate": slate[keep]})
        bar.update(int(np.count_nonzero(done)))
        if rows_of.all_finished:
            break
    else:
        raise rows_of.unfinished(max_steps)
    bar.close()
    columns = sorted_columns(parts)
    spec = getattr(env, "spec", None)
    metadata = {"format_version": FORMAT_VERSION, "env_id": getattr(spec, "id", None),
                "config": _jsonable(getattr(env.unwrapped, "config", None)), "policy": policy_name,
                "seed": seed, "n_users": n_users, "num_envs": b}
    return InteractionLog(**columns, metadata=metadata)


def _log_of_steps(env: gym.vector.VectorEnv, policy: BehaviourPolicy, n_steps: int, seed: int,
                  policy_name: str | None, max_steps: int, progress: bool | None) -> InteractionLog:
    """``collect_log`` sized in user-steps: enough users for ``n_steps``, then the prefix that fits.

    An episode lasts at least one step, so ``n_steps`` users always suffice; fewer are simulated
    first (twice the estimate from a pilot), and more only if those fall short.
    """
    users = max(1, min(n_steps, 2 * n_steps // 10))
    while True:
        log = collect_log(env, policy, users, seed, policy_name, max_steps, progress)
        lengths = np.bincount(log.user, minlength=users)
        total = np.cumsum(lengths)
        if total[-1] > n_steps or users == n_steps:
            keep = int(np.searchsorted(total, n_steps, side="right"))
            rows = log.user < keep
            metadata = {**log.metadata, "n_users": keep, "n_steps_budget": n_steps}
            return InteractionLog(**{f.name: getattr(log, f.name)[rows] for f in dataclasses.fields(log)
                                     if f.name != "metadata"}, metadata=metadata)
        users = min(n_steps, 2 * users * n_steps // max(int(total[-1]), 1) + 1)


def write_log(path: str | Path, log: InteractionLog) -> Path:
    """Write ``log`` to Parquet atomically, with its metadata as JSON in the schema metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def fixed_list(matrix: np.ndarray) -> pa.Array:
        width = matrix.shape[1]
        return pa.FixedSizeListArray.from_arrays(pa.array(matrix.ravel().astype(np.int64)), width)

    arrays = {"user": log.user.astype(np.int64), "step": log.step.astype(np.int32),
              "session": log.session.astype(np.int32), "item": log.item.astype(np.int64),
              "click": log.click.astype(bool), "engagement": log.engagement.astype(np.float32),
              "reward": log.reward.astype(np.float32)}
    table = pa.table({**{k: pa.array(v) for k, v in arrays.items()},
                      "candidates": fixed_list(log.candidates), "slate": fixed_list(log.slate)})
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(log.metadata).encode()})
    return atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def is_log(path: str | Path) -> bool:
    """Whether ``path`` is a Parquet file written by :func:`write_log`."""
    import pyarrow.parquet as pq

    try:
        return METADATA_KEY in (pq.read_schema(path).metadata or {})
    except (OSError, ValueError):  # missing, unreadable or not Parquet (pyarrow's errors subclass these)
        return False


def read_log(path: str | Path) -> InteractionLog:
    """Read a log written by :func:`write_log`.

    Raises:
        ValueError: the file is not such a log (wrong columns or no log metadata).
    """
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    missing = [c for c in _COLUMNS if c not in table.column_names]
    if raw is None or missing:
        raise ValueError(f"{path}: not a recsim_env interaction log (missing "
                         f"{'metadata' if raw is None else 'columns ' + ', '.join(missing)})")

    def matrix(name: str) -> np.ndarray:
        col = table.column(name).combine_chunks()
        return col.flatten().to_numpy().reshape(len(col), col.type.list_size)

    columns = {c: table.column(c).to_numpy() for c in _COLUMNS[:7]}
    return InteractionLog(**columns, candidates=matrix("candidates"), slate=matrix("slate"),
                          metadata=json.loads(raw))
