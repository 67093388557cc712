"""Logs with propensities: what off-policy evaluation needs from a stochastic behaviour policy.

Besides what a deployed recommender records (candidates, the chosen one, the response), every step
keeps the behaviour policy's probability of the action it took and of every other candidate, and the
observation it acted on, so that a target policy can be reweighted against it at the logged steps.
The true user state is kept in separate columns, for checks only. The policy is duck-typed (``act``
and ``action_probabilities``, as ``agents.behaviour`` provides); this module does not import
``agents``, so the dependency still points one way.

Target policies can be recorded beside the behaviour (``targets=``): each acts on the very observation
and info the behaviour saw, and its probability of every candidate is kept per row, so that a target
whose decisions need more than the log holds (the true state of a clone, a planner's rollouts) can
still be evaluated from the log. Files without target columns read back as before.

The observation each step led to is kept too (``next_obs``): within an episode it is the next row's
observation, and on the episode's last row the observation the env returned with the episode's end
(in NEXT_STEP autoreset, the one the autoreset step then discards), which offline-RL formats need to
hold ``T + 1`` observations per episode. Parquet stores only those final observations, in a column
that older readers ignore; older files read back without ``next_obs``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from recsim_env.logs.episodes import LoggedRows, UserRows, checked_collection, sorted_columns, true_state
from recsim_env.logs.parquet_tables import column_array, read_table, write_table
from recsim_env.logs.simulated import _jsonable

#: Parquet schema-metadata key holding the log's JSON metadata.
METADATA_KEY = b"recsim_env.propensity_log"
FORMAT_VERSION = 1
#: Columns every file holds; the true-state columns are present only for envs that expose the state.
_REQUIRED = ("user", "step", "session", "obs", "candidates", "position", "item", "propensity", "probabilities",
             "click", "engagement", "reward", "terminated", "truncated")
_STATE = ("interest", "satiation", "budget")
#: Parquet column holding each episode's final observation on its last row (null on the other rows).
FINAL_OBS = "final_obs"
#: Prefix of the Parquet column holding a recorded target's ``(R, N)`` probabilities.
TARGET_PREFIX = "target."
#: The info key that marks the users whose actions count (``agents.base.ACTIVE``): recorded targets
#: see it, so costly ones skip the rows the log drops.
ACTIVE_KEY = "active"


class StochasticPolicy(Protocol):
    def act(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray: ...

    def action_probabilities(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray: ...


class TargetPolicy(Protocol):
    """A recorded target: ``act`` is enough (deterministic: one-hot, per slate position on slates); its own
    probabilities if it has them."""

    def act(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray: ...


@dataclass(frozen=True)
class PropensityLog(LoggedRows):
    """One row per (user, step), sorted by user then step.

    Attributes:
        user: episode (user) id, 0..n_users-1 in the order users started.
        step: 0-based step within the episode; ``session``: the session it belongs to (0 if the env
            has no sessions).
        obs: ``(R, D)`` the observation the policy acted on (a ``Discrete`` state as one column).
        candidates: ``(R, N)`` item ids offered (the action indices for envs without candidates).
        position: the candidate index taken; ``item``: its item id.
        propensity: the behaviour probability of ``position``; ``probabilities``: ``(R, N)`` of every
            candidate, the numbers the action was drawn from.
        click, engagement, reward: the response (``engagement`` is NaN where the env reports none).
        terminated, truncated: the episode-end flags of the step.
        interest, satiation: ``(R, T)`` and ``budget`` ``(R,)``: the true state before the step, for
            checks only; ``None`` for envs whose info has no ``user_state``.
        next_obs: ``(R, D)`` the observation the step led to: the next row's ``obs`` within an episode,
            the env's final observation on the episode's last row. One row per step (not per user) so
            that row selections keep it aligned; ``None`` for logs recorded without it.
        metadata: env id, env config, policy name, seed, user count.
        targets: recorded target policies' ``(R, N)`` probability of every candidate at every row, by
            name (empty unless ``collect_propensity_log`` was given ``targets``).
    """

    user: np.ndarray
    step: np.ndarray
    session: np.ndarray
    obs: np.ndarray
    candidates: np.ndarray
    position: np.ndarray
    item: np.ndarray
    propensity: np.ndarray
    probabilities: np.ndarray
    click: np.ndarray
    engagement: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    interest: np.ndarray | None = None
    satiation: np.ndarray | None = None
    budget: np.ndarray | None = None
    next_obs: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    targets: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def episode_end(self) -> np.ndarray:
        """``(R,)`` True on each episode's last row (rows are sorted by user, then step)."""
        return _episode_ends(self.user)


def _episode_ends(user: np.ndarray) -> np.ndarray:
    """True where the next row belongs to another user, and on the last row."""
    user = np.asarray(user)
    end = np.ones(len(user), bool)
    end[:-1] = user[1:] != user[:-1]
    return end


def _columns(log: PropensityLog) -> dict[str, np.ndarray]:
    return {f.name: getattr(log, f.name) for f in fields(log)
            if f.name not in ("metadata", "targets", "next_obs") and getattr(log, f.name) is not None}


def _next_obs(obs: np.ndarray, end: np.ndarray, final: np.ndarray) -> np.ndarray:
    """Each row's next observation: the next row's ``obs``, or ``final`` (one per episode) on ``end`` rows."""
    out = np.empty_like(obs)
    out[:-1] = obs[1:]
    out[end] = final
    return out


def _target_probabilities(name: str, target: TargetPolicy, obs: np.ndarray, info: dict[str, Any],
                          n: int) -> np.ndarray:
    """``(B, n)`` probabilities of a target: its own ``action_probabilities``, else one-hot of ``act``."""
    probabilities = getattr(target, "action_probabilities", None)
    if probabilities is not None:
        out = np.asarray(probabilities(obs, info), np.float64)
    else:
        action = np.asarray(target.act(obs, info), np.int64).reshape(-1)
        if ((action < 0) | (action >= n)).any():
            raise ValueError(f"target {name!r} chose a candidate outside [0, {n})")
        out = np.zeros((len(action), n))
        out[np.arange(len(action)), action] = 1.0
    if out.ndim != 2 or out.shape[1] != n or (out < 0).any() or not np.allclose(out.sum(axis=1), 1.0, atol=1e-9):
        raise ValueError(f"target {name!r} must give a distribution over the {n} candidates of each user, "
                         f"got shape {out.shape}")
    return out


def collect_propensity_log(env: gym.vector.VectorEnv, policy: StochasticPolicy, n_users: int, seed: int,
                           policy_name: str | None = None, max_steps: int = 1_000_000,
                           targets: Mapping[str, TargetPolicy] | None = None) -> PropensityLog:
    """Run ``policy`` on the vector ``env`` until ``n_users`` users have each finished one episode.

    Each row serves a fresh user after every autoreset, so ``n_users`` may exceed ``env.num_envs``.
    The autoreset steps (NEXT_STEP mode) are not interactions and are skipped; users started beyond
    the first ``n_users`` are dropped, so the log holds complete episodes only. Envs whose info has no
    ``candidates`` (the finite MDP) offer their ``Discrete`` actions as the candidates.

    ``targets`` (name -> policy) are called after the behaviour on the same ``obs`` and ``info`` (plus
    :data:`ACTIVE_KEY`, the rows the log keeps), every step, so policies that keep a history see every
    step; their probabilities land in ``log.targets``. They never touch the env or the behaviour's
    generator, so the log is the same with or without them.

    Raises:
        ValueError: ``n_users`` or ``max_steps`` < 1, probabilities (the behaviour's or a target's) that
            are not a distribution over the candidates, or a target name that is empty.
        TypeError: an action space that is not ``Discrete`` (slates have no per-candidate propensity here).
        RuntimeError: the users did not finish within ``max_steps`` env steps.
    """
    targets = checked_collection(n_users, max_steps, targets)
    space = getattr(env, "single_action_space", env.action_space)
    if not isinstance(space, gym.spaces.Discrete):
        raise TypeError(f"propensity logs record one action per step (a Discrete action space), not {space}")
    obs, info = env.reset(seed=seed)
    b = env.num_envs
    rows_of = UserRows(b, n_users)
    parts: list[dict[str, np.ndarray]] = []
    final_obs: np.ndarray | None = None  # (n_users, D): the observation each user's episode ended on
    for _ in range(max_steps):
        candidates = np.atleast_2d(info["candidates"]) if "candidates" in info else \
            np.broadcast_to(np.arange(space.n, dtype=np.int64), (b, int(space.n)))
        state = info.get("user_state")
        before = {"session": np.asarray(state["session"], np.int64).reshape(b) if state is not None
                  else np.zeros(b, np.int64), "obs": np.asarray(obs).reshape(b, -1).copy(), **true_state(info, b)}
        action = np.asarray(policy.act(obs, info), np.int64).reshape(b)
        probabilities = np.asarray(policy.action_probabilities(obs, info), np.float64)
        if probabilities.shape != candidates.shape or (probabilities < 0).any() \
                or not np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-9):
            raise ValueError(f"action_probabilities must be a distribution over the {candidates.shape[1]} "
                             f"candidates of each user, got shape {probabilities.shape}")
        recorded = {}
        if targets:
            seen = {**info, ACTIVE_KEY: rows_of.counted()}  # the rows this step keeps (NEXT_STEP autoreset)
            recorded = {TARGET_PREFIX + name: _target_probabilities(name, target, obs, seen, candidates.shape[1])
                        for name, target in targets.items()}
        rows = np.arange(b)
        obs, reward, terminated, truncated, info = env.step(action)
        keep, user, step, done = rows_of.after_step(info, terminated, truncated)
        engagement = np.asarray(info["engagement"], np.float64).reshape(b) if "engagement" in info \
            else np.full(b, np.nan)
        part = {"user": user, "step": step, "candidates": candidates, "position": action,
                "item": candidates[rows, action], "propensity": probabilities[rows, action],
                "probabilities": probabilities, "click": np.asarray(info["click"], bool).reshape(b),
                "engagement": engagement, "reward": np.asarray(reward, np.float64).reshape(b),
                "terminated": np.asarray(terminated, bool).reshape(b),
                "truncated": np.asarray(truncated, bool).reshape(b), **before, **recorded}
        parts.append({k: np.asarray(v)[keep] for k, v in part.items()})
        if done.any():
            flat = np.asarray(obs).reshape(b, -1)
            if final_obs is None:
                final_obs = np.zeros((n_users, flat.shape[1]), flat.dtype)
            final_obs[user[done]] = flat[done]
        if rows_of.all_finished:
            break
    else:
        raise rows_of.unfinished(max_steps)
    columns = sorted_columns(parts)
    end = _episode_ends(columns["user"])
    columns["next_obs"] = _next_obs(columns["obs"], end, final_obs[columns["user"][end]])
    spec = getattr(env, "spec", None)
    metadata = {"format_version": FORMAT_VERSION, "env_id": getattr(spec, "id", None),
                "config": _jsonable(getattr(env.unwrapped, "config", None)),
                "policy": policy_name or getattr(policy, "name", None), "seed": seed, "n_users": n_users,
                "num_envs": b}
    if targets:
        metadata["targets"] = list(targets)
    recorded = {k.removeprefix(TARGET_PREFIX): columns.pop(k) for k in list(columns) if k.startswith(TARGET_PREFIX)}
    return PropensityLog(**columns, metadata=metadata, targets=recorded)


def _final_obs(log: PropensityLog) -> np.ndarray:
    """``(episodes, D)`` the final observations, after checking ``next_obs`` is restorable from them."""
    next_obs, obs, end = np.asarray(log.next_obs), np.asarray(log.obs), log.episode_end
    if next_obs.shape != obs.shape:
        raise ValueError(f"next_obs has shape {next_obs.shape}: expected the shape of obs {obs.shape}")
    inside = ~end[:-1]
    if not np.array_equal(next_obs[:-1][inside], obs[1:][inside]):
        raise ValueError("next_obs must be the next row's obs within an episode (rows sorted by user, then step)")
    return next_obs[end]


def write_propensity_log(path: str | Path, log: PropensityLog) -> Path:
    """Write ``log`` to Parquet atomically (matrices as fixed-size lists, metadata as JSON).

    Recorded targets become columns ``target.<name>``, and ``next_obs`` the column ``final_obs`` holding
    only each episode's final observation (null on the other rows, whose next observation is the next
    row's ``obs``); readers of older versions ignore both.

    Raises:
        ValueError: a target or ``next_obs`` of the wrong shape, or a ``next_obs`` that is not the next
            row's ``obs`` within an episode (it could not be restored from the file).
    """
    import pyarrow as pa

    for name, values in log.targets.items():
        if np.shape(values) != np.shape(log.probabilities):
            raise ValueError(f"target {name!r} has shape {np.shape(values)}: expected {np.shape(log.probabilities)}")
    extra = {}
    if log.next_obs is not None:  # null except on each episode's last row
        _final_obs(log)  # refuses a next_obs that the file could not restore
        values = np.ascontiguousarray(log.next_obs)
        extra[FINAL_OBS] = pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), values.shape[1],
                                                             mask=pa.array(~log.episode_end))
    columns = _columns(log) | {TARGET_PREFIX + name: np.asarray(v, np.float64) for name, v in log.targets.items()}
    return write_table(path, columns, log.metadata, METADATA_KEY, extra)


def read_propensity_log(path: str | Path) -> PropensityLog:
    """Read a log written by :func:`write_propensity_log`.

    ``next_obs`` is rebuilt from the ``final_obs`` column; files without it (written before it existed)
    read with ``next_obs=None``.

    Raises:
        ValueError: the file lacks the log metadata, a required column, or holds columns of the
            wrong shape; the message names the file and the column.
    """
    table, metadata, state = read_table(path, METADATA_KEY, "propensity log", _REQUIRED, _STATE)
    columns = {c: column_array(table, c) for c in (*_REQUIRED, *state)}
    for name in ("obs", "candidates", "probabilities", *(("interest", "satiation") if state else ())):
        if columns[name].ndim != 2:
            raise ValueError(f"{path}: column {name} must hold fixed-size lists (one row per step)")
    if columns["probabilities"].shape != columns["candidates"].shape:
        raise ValueError(f"{path}: column probabilities has width {columns['probabilities'].shape[1]}, "
                         f"column candidates {columns['candidates'].shape[1]}")
    targets = {}
    for name in table.column_names:
        if name.startswith(TARGET_PREFIX):
            values = column_array(table, name)
            if values.shape != columns["probabilities"].shape:
                raise ValueError(f"{path}: column {name} must have the shape of column probabilities "
                                 f"{columns['probabilities'].shape}, got {values.shape}")
            targets[name.removeprefix(TARGET_PREFIX)] = values
    if FINAL_OBS in table.column_names:
        col = table.column(FINAL_OBS).combine_chunks()
        end = _episode_ends(columns["user"])
        if getattr(col.type, "list_size", None) != columns["obs"].shape[1] \
                or not np.array_equal(col.is_null().to_numpy(zero_copy_only=False), ~end):
            raise ValueError(f"{path}: column {FINAL_OBS} must hold lists of the width of column obs "
                             f"({columns['obs'].shape[1]}) on each episode's last row and nulls elsewhere")
        final = col.flatten().to_numpy(zero_copy_only=False).reshape(-1, columns["obs"].shape[1])
        columns["next_obs"] = _next_obs(columns["obs"], end, final)
    return PropensityLog(**columns, metadata=metadata, targets=targets)
