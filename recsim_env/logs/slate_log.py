"""Slate logs with per-position propensities: what slate off-policy evaluation needs.

The behaviour policy is *factored*: at each position ``k`` of the slate it gives a distribution over
the ``N`` candidates, and the positions are drawn independently of one another. The env allows that
(a repeated index is shown once, at its first position), so a drawn slate may show fewer than ``K``
items. Each row records, for every position, the probability of the candidate drawn there
(``propensity``, ``(R, K)``) and the full per-position marginals it was drawn from
(``probabilities``, ``(R, K, N)``); the probability of the whole slate is the product over positions.
Those are exactly the numbers the slate estimators (``agents.slate_ope``) divide by.

The policy is duck-typed (``act`` returning ``(B, K)`` positions and ``position_probabilities``
returning ``(B, K, N)``, as ``agents.slate_ope.EpsilonSlate`` provides); this module does not import
``agents``. Target policies can be recorded beside the behaviour on the very observation and info it
saw (``targets=``), so that targets reading the true user state can be evaluated from the log.
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
from recsim_env.logs.propensity import ACTIVE_KEY, TARGET_PREFIX, TargetPolicy
from recsim_env.logs.simulated import _jsonable

#: Parquet schema-metadata key holding the log's JSON metadata.
METADATA_KEY = b"recsim_env.slate_log"
FORMAT_VERSION = 1
_REQUIRED = ("user", "step", "obs", "candidates", "slate", "propensity", "probabilities", "click", "position",
             "reward", "terminated", "truncated")
_STATE = ("interest", "satiation", "budget")
#: Columns holding ``(R, K, N)`` arrays, stored flattened to ``K * N`` per row.
_CUBES = ("probabilities",)


class FactoredSlatePolicy(Protocol):
    def act(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray: ...

    def position_probabilities(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray: ...


@dataclass(frozen=True)
class SlateLog(LoggedRows):
    """One row per (user, step), sorted by user then step.

    Attributes:
        user, step: episode (user) id in the order users started, and the 0-based step within it.
        obs: ``(R, D)`` the observation the behaviour acted on; ``candidates``: ``(R, N)`` item ids.
        slate: ``(R, K)`` the candidate index drawn at each position (a repeat is shown once).
        propensity: ``(R, K)`` the behaviour's probability of the index drawn at each position;
            ``probabilities``: ``(R, K, N)`` its whole per-position distribution. Positions are drawn
            independently, so the slate's probability is ``propensity.prod(axis=1)``.
        click: ``(R, K)`` whether each position was clicked (at most one per row);
            ``position``: the clicked position, -1 for none.
        reward: the step's reward; ``terminated``, ``truncated``: the episode-end flags.
        interest, satiation: ``(R, T)`` and ``budget`` ``(R,)``: the true state before the step, for
            checks and exact truths only (``None`` when the env exposes no state).
        metadata: env id, env config, policy name, seed, user count, slate size, candidates.
        targets: recorded targets' ``(R, K, N)`` per-position probabilities, by name.
    """

    user: np.ndarray
    step: np.ndarray
    obs: np.ndarray
    candidates: np.ndarray
    slate: np.ndarray
    propensity: np.ndarray
    probabilities: np.ndarray
    click: np.ndarray
    position: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    interest: np.ndarray | None = None
    satiation: np.ndarray | None = None
    budget: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    targets: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_shapes({f.name: getattr(self, f.name) for f in fields(self)
                      if f.name not in ("metadata", "targets")}, self.targets, "SlateLog")

    @property
    def slate_size(self) -> int:
        return int(self.slate.shape[1])

    @property
    def position_reward(self) -> np.ndarray:
        """``(R, K)`` the step's reward at its clicked position, 0 elsewhere.

        The env has one click per step, so these sum to the reward of every step with a click; a
        reward earned without a click (none with the built-in rewards) belongs to no position.
        """
        return np.where(self.click, self.reward[:, None], 0.0)


def check_shapes(columns: Mapping[str, np.ndarray | None], targets: Mapping[str, np.ndarray], where: str) -> None:
    """Raise a ValueError naming the column whose shape disagrees with the log's ``(R, K, N)``."""
    r = len(columns["user"])
    if np.ndim(columns["candidates"]) != 2 or np.ndim(columns["slate"]) != 2:
        raise ValueError(f"{where}: columns candidates and slate must be 2-D, got shapes "
                         f"{np.shape(columns['candidates'])} and {np.shape(columns['slate'])}")
    n, k = np.shape(columns["candidates"])[1], np.shape(columns["slate"])[1]
    expected = {"user": (r,), "step": (r,), "candidates": (r, n), "slate": (r, k), "propensity": (r, k),
                "probabilities": (r, k, n), "click": (r, k), "position": (r,), "reward": (r,), "terminated": (r,),
                "truncated": (r,), "budget": (r,)}
    for name, shape in expected.items():
        value = columns.get(name)
        if value is not None and np.shape(value) != shape:
            raise ValueError(f"{where}: column {name} has shape {np.shape(value)}: expected {shape} "
                             f"(R={r} rows, K={k} positions, N={n} candidates)")
    for name in ("obs", "interest", "satiation"):
        value = columns.get(name)
        if value is not None and (np.ndim(value) != 2 or len(value) != r):
            raise ValueError(f"{where}: column {name} has shape {np.shape(value)}: expected ({r}, width)")
    for name, value in targets.items():
        if np.shape(value) != (r, k, n):
            raise ValueError(f"{where}: target {name!r} has shape {np.shape(value)}: expected {(r, k, n)}")
    slate = np.asarray(columns["slate"])
    if slate.size and (slate.min() < 0 or slate.max() >= n):
        raise ValueError(f"{where}: column slate holds indices outside [0, {n})")


def _distribution(name: str, values: np.ndarray, b: int, k: int, n: int) -> np.ndarray:
    """Check ``values`` is ``(b, k, n)`` with a distribution over the candidates at every position."""
    values = np.asarray(values, np.float64)
    if values.shape != (b, k, n) or not np.isfinite(values).all() or (values < 0).any() \
            or not np.allclose(values.sum(axis=2), 1.0, atol=1e-9):
        raise ValueError(f"{name} must give a distribution over the {n} candidates at each of the {k} positions "
                         f"of each user, shape {(b, k, n)}; got shape {values.shape}")
    return values


def _target_probabilities(name: str, target: TargetPolicy, obs: np.ndarray, info: dict[str, Any],
                          b: int, k: int, n: int) -> np.ndarray:
    """``(b, k, n)`` per-position probabilities of a target: its own, else one-hot of its slate."""
    own = getattr(target, "position_probabilities", None)
    if own is not None:
        return _distribution(f"target {name!r}", own(obs, info), b, k, n)
    slate = np.asarray(target.act(obs, info), np.int64).reshape(b, k)
    if ((slate < 0) | (slate >= n)).any():
        raise ValueError(f"target {name!r} chose a candidate outside [0, {n})")
    out = np.zeros((b, k, n))
    np.put_along_axis(out, slate[:, :, None], 1.0, axis=2)
    return out


def collect_slate_log(env: gym.vector.VectorEnv, policy: FactoredSlatePolicy, n_users: int, seed: int,
                      policy_name: str | None = None, max_steps: int = 1_000_000,
                      targets: Mapping[str, TargetPolicy] | None = None) -> SlateLog:
    """Run the factored slate ``policy`` on the vector slate ``env`` until ``n_users`` users finished one episode.

    As ``collect_propensity_log``: rows after an autoreset serve fresh users, the autoreset steps
    (NEXT_STEP mode) are skipped, users beyond the first ``n_users`` are dropped, so the log holds
    complete episodes only. ``targets`` act after the behaviour on the same ``obs`` and ``info``
    (plus ``info["active"]``, the rows kept) and never touch the env or the behaviour's generator.

    Raises:
        ValueError: ``n_users`` or ``max_steps`` < 1, probabilities that are not a distribution per
            position, a drawn index of probability 0, or an empty target name.
        TypeError: an action space that is not ``MultiDiscrete([N] * K)``.
        RuntimeError: the users did not finish within ``max_steps`` env steps.
    """
    targets = checked_collection(n_users, max_steps, targets)
    space = getattr(env, "single_action_space", env.action_space)
    if not isinstance(space, gym.spaces.MultiDiscrete) or space.nvec.ndim != 1 or len(set(space.nvec.tolist())) != 1:
        raise TypeError(f"slate logs need a MultiDiscrete([n_candidates] * slate_size) action space, not {space}")
    k, n = int(space.nvec.shape[0]), int(space.nvec[0])
    obs, info = env.reset(seed=seed)
    b = env.num_envs
    rows_of = UserRows(b, n_users)
    parts: list[dict[str, np.ndarray]] = []
    for _ in range(max_steps):
        candidates = np.atleast_2d(info["candidates"]).reshape(b, n).copy()
        before = {"obs": np.asarray(obs).reshape(b, -1).copy(), **true_state(info, b)}
        slate = np.asarray(policy.act(obs, info), np.int64).reshape(b, k)
        probabilities = _distribution("position_probabilities", policy.position_probabilities(obs, info), b, k, n)
        propensity = np.take_along_axis(probabilities, slate[:, :, None], axis=2)[:, :, 0]
        recorded = {}
        if targets:
            seen = {**info, ACTIVE_KEY: rows_of.counted()}
            recorded = {TARGET_PREFIX + name: _target_probabilities(name, t, obs, seen, b, k, n)
                        for name, t in targets.items()}
        obs, reward, terminated, truncated, info = env.step(slate)
        keep, user, step, _ = rows_of.after_step(info, terminated, truncated)
        if (propensity[keep] <= 0).any():
            raise ValueError("the behaviour drew a candidate it gave probability 0: act and "
                             "position_probabilities disagree")
        position = np.asarray(info["position"], np.int64).reshape(b)
        part = {"user": user, "step": step, "candidates": candidates, "slate": slate, "propensity": propensity,
                "probabilities": probabilities, "click": position[:, None] == np.arange(k), "position": position,
                "reward": np.asarray(reward, np.float64).reshape(b),
                "terminated": np.asarray(terminated, bool).reshape(b),
                "truncated": np.asarray(truncated, bool).reshape(b), **before, **recorded}
        parts.append({key: np.asarray(v)[keep] for key, v in part.items()})
        if rows_of.all_finished:
            break
    else:
        raise rows_of.unfinished(max_steps)
    columns = sorted_columns(parts)
    spec = getattr(env, "spec", None)
    metadata = {"format_version": FORMAT_VERSION, "env_id": getattr(spec, "id", None),
                "config": _jsonable(getattr(env.unwrapped, "config", None)),
                "policy": policy_name or getattr(policy, "name", None), "seed": seed, "n_users": n_users,
                "num_envs": b, "slate_size": k, "n_candidates": n,
                "factored": "positions drawn independently; propensity = per-position marginal of the drawn index"}
    if targets:
        metadata["targets"] = list(targets)
    recorded = {key.removeprefix(TARGET_PREFIX): columns.pop(key) for key in list(columns)
                if key.startswith(TARGET_PREFIX)}
    return SlateLog(**columns, metadata=metadata, targets=recorded)


def write_slate_log(path: str | Path, log: SlateLog) -> Path:
    """Write ``log`` to Parquet atomically: matrices as fixed-size lists, ``(R, K, N)`` arrays flattened
    to lists of ``K * N`` (the sizes are in the metadata), recorded targets as ``target.<name>``."""
    columns = {f.name: getattr(log, f.name) for f in fields(log)
               if f.name not in ("metadata", "targets") and getattr(log, f.name) is not None}
    columns |= {TARGET_PREFIX + name: np.asarray(v, np.float64) for name, v in log.targets.items()}
    metadata = {**log.metadata, "slate_size": log.slate_size, "n_candidates": int(log.candidates.shape[1])}
    return write_table(path, columns, metadata, METADATA_KEY)


def read_slate_log(path: str | Path) -> SlateLog:
    """Read a log written by :func:`write_slate_log`.

    Raises:
        ValueError: the file lacks the slate-log metadata, a required column, or holds a column of the
            wrong shape; the message names the file and the column.
    """
    table, metadata, state = read_table(path, METADATA_KEY, "slate log", _REQUIRED, _STATE)
    k, n = int(metadata.get("slate_size", 0)), int(metadata.get("n_candidates", 0))

    def column(name: str) -> np.ndarray:
        values = column_array(table, name)
        if name in _CUBES or name.startswith(TARGET_PREFIX):
            if values.ndim != 2 or values.shape[1] != k * n:
                width = values.shape[1] if values.ndim == 2 else 1
                raise ValueError(f"{path}: column {name} has width {width}: expected slate_size x "
                                 f"n_candidates = {k} x {n}")
            values = values.reshape(len(values), k, n)
        return values

    columns = {c: column(c) for c in (*_REQUIRED, *state)}
    for name in ("obs", "candidates", "slate", "propensity", "click", *(("interest", "satiation") if state else ())):
        if columns[name].ndim != 2:
            raise ValueError(f"{path}: column {name} must hold fixed-size lists (one row per step)")
    targets = {name.removeprefix(TARGET_PREFIX): column(name) for name in table.column_names
               if name.startswith(TARGET_PREFIX)}
    try:
        return SlateLog(**columns, metadata=metadata, targets=targets)
    except ValueError as err:
        raise ValueError(f"{path}: {str(err).removeprefix('SlateLog: ')}") from None
