"""The Open Bandit Dataset (ZOZOTOWN): real logged bandit feedback with the logging policy's propensities.

A campaign's log is ``<dir>/<campaign>.csv`` beside ``<dir>/item_context.csv``, one row per shown
(item, position) of an impression: an unnamed row index, ``timestamp``, ``item_id`` (0-based),
``position`` (1-based slot), ``click`` (0/1), ``propensity_score`` (the logging policy's probability
of this item at this position), ``user_feature_0..3`` (hashed categories) and
``user-item_affinity_0..n_items-1``. ``item_context.csv`` has an unnamed index, ``item_id`` and
``item_feature_*`` columns (numbers or hashed categories). Nothing is downloaded: the caller passes
the folder.

:func:`to_propensity_log` lays the rows out as one-step episodes of a
:class:`~recsim_env.logs.propensity.PropensityLog`, so the estimators of ``agents.ope`` run on a
real log unchanged: each row is evaluated position-wise, the standard protocol of the dataset's paper
(the target's probability of the logged item at the logged position over the logging policy's).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recsim_env.logs.loaders import DataFormatError
from recsim_env.logs.propensity import FORMAT_VERSION, PropensityLog

#: Number of hashed user-feature columns of the format.
N_USER_FEATURES = 4
_LOG_COLUMNS = ("timestamp", "item_id", "position", "click", "propensity_score",
                *(f"user_feature_{j}" for j in range(N_USER_FEATURES)))
_FIRST_LINE = 2  # CSV line numbers count the header as line 1
_CAMPAIGN = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class ObdLog:
    """One campaign's impressions, one row per shown (item, position).

    Attributes:
        timestamp: ``(R,)`` ``datetime64[us]`` in UTC.
        item: ``(R,)`` item id, 0..n_items-1; ``position``: ``(R,)`` 0-based slot (the file's minus 1).
        click: ``(R,)`` bool; ``propensity``: ``(R,)`` the logging policy's probability of showing
            ``item`` at ``position`` (in (0, 1]).
        user_features: ``(R, 4)`` integer codes of the hashed categories (codes are per file: the
            hashes differ between the files of different logging policies).
        affinity: ``(R, n_items)`` past clicks between the user and each item.
        item_context: ``(n_items, k)`` the item features in ``item_context.csv`` order of columns,
            numbers as they are and hashed categories as integer codes; ``item_context_columns``:
            their names.
        n_items: catalogue size (rows of ``item_context.csv``); ``n_positions``: slots per impression.
        metadata: the csv's path, campaign and sha256, and the item context's sha256.
    """

    timestamp: np.ndarray
    item: np.ndarray
    position: np.ndarray
    click: np.ndarray
    propensity: np.ndarray
    user_features: np.ndarray
    affinity: np.ndarray
    item_context: np.ndarray
    item_context_columns: tuple[str, ...]
    n_items: int
    n_positions: int
    metadata: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.item)

    @property
    def ctr(self) -> float:
        """Mean click of the log: the logging policy's own (on-policy) click-through rate."""
        return float(self.click.mean())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_csv(path: Path) -> Any:
    """The whole file as a pyarrow table; a ragged row or an empty file names the file and line."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    from recsim_env.logs.loaders import _bad_csv_line

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such data file")
    if path.stat().st_size == 0:
        raise DataFormatError(path, 1, "a header line", "an empty file")
    try:
        table = pcsv.read_csv(path)
    except pa.ArrowInvalid as err:
        number, got = _bad_csv_line(path, ",")
        raise DataFormatError(path, number, "as many fields as the header", got) from err
    if table.num_rows == 0:
        raise DataFormatError(path, _FIRST_LINE, "at least one data row", "only the header")
    return table


def _require(path: Path, table: Any, names: tuple[str, ...] | list[str]) -> None:
    missing = [c for c in names if c not in table.column_names]
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise DataFormatError(path, 1, f"column {shown} in the header", ",".join(table.column_names[:12]))


def _not_null(path: Path, table: Any, name: str) -> Any:
    col = table.column(name)
    if col.null_count:
        row = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataFormatError(path, row + _FIRST_LINE, f"a value in column {name!r}", "an empty field")
    return col


def _numbers(path: Path, table: Any, name: str) -> np.ndarray:
    """Column ``name`` as float64; a field that is not a number names its line."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = _not_null(path, table, name)
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_boolean(col.type):
        return col.to_numpy(zero_copy_only=False).astype(np.float64)
    try:
        return pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        values = col.to_pylist()
        row = next(i for i, v in enumerate(values) if not _is_number(v))
        raise DataFormatError(path, row + _FIRST_LINE, f"a number in column {name!r}", values[row]) from None


def _is_number(value: Any) -> bool:
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


def _integers(path: Path, table: Any, name: str, low: int, high: int | None, what: str) -> np.ndarray:
    """Column ``name`` as int64, every value an integer in [low, high]; else the first bad line."""
    values = _numbers(path, table, name)
    bad = (values != np.round(values)) | (values < low) | ~np.isfinite(values)
    if high is not None:
        bad |= values > high
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        allowed = f"an integer >= {low}" if high is None else f"an integer in {low}..{high}"
        raise DataFormatError(path, row + _FIRST_LINE, f"{what} in column {name!r} ({allowed})",
                              _field(table, name, row))
    return values.astype(np.int64)


def _field(table: Any, name: str, row: int) -> str:
    return str(table.column(name)[row].as_py())


def _codes(path: Path, table: Any, name: str) -> np.ndarray:
    """Integer codes of a categorical column (its sorted distinct values numbered from 0)."""
    col = _not_null(path, table, name).to_numpy(zero_copy_only=False)
    return np.unique(col.astype(str), return_inverse=True)[1].astype(np.int64).reshape(-1)


def _read_item_context(path: Path) -> tuple[np.ndarray, tuple[str, ...]]:
    import pyarrow as pa

    table = _read_csv(path)
    _require(path, table, ["item_id"])
    n = table.num_rows
    item_id = _integers(path, table, "item_id", 0, n - 1, "an item id")
    if not np.array_equal(np.sort(item_id), np.arange(n)):
        repeated = int(np.flatnonzero(np.bincount(item_id, minlength=n) > 1)[0])
        second = int(np.flatnonzero(item_id == repeated)[1])
        raise DataFormatError(path, second + _FIRST_LINE, f"each item id 0..{n - 1} once in column "
                              "'item_id'", str(repeated))
    names = tuple(c for c in table.column_names if c.startswith("item_feature_"))
    columns = []
    for name in names:
        col = table.column(name)
        numeric = pa.types.is_integer(col.type) or pa.types.is_floating(col.type)
        columns.append(_numbers(path, table, name) if numeric else _codes(path, table, name).astype(np.float64))
    context = np.stack(columns, axis=1) if columns else np.zeros((n, 0))
    order = np.argsort(item_id)
    return context[order], names


def read_obd(directory: str | Path, campaign: str = "all", n_positions: int | None = None) -> ObdLog:
    """Read ``<directory>/<campaign>.csv`` and ``<directory>/item_context.csv``.

    Args:
        n_positions: slots per impression; by default the largest ``position`` in the file.

    Raises:
        FileNotFoundError: a missing folder or file.
        DataFormatError: a missing column, an empty file, an item outside 0..n_items-1, a position
            outside 1..n_positions, a click that is not 0/1, a propensity outside (0, 1], or a field
            that is not a number; the message names the file, the line and the column.
        ValueError: a campaign name that is not a plain file name, or ``n_positions`` < 1.
    """
    directory = Path(directory)
    if not _CAMPAIGN.fullmatch(campaign) or campaign in (".", ".."):
        raise ValueError(f"campaign={campaign!r}: allowed a plain name of letters, digits, '_', '-', '.'")
    if n_positions is not None and (isinstance(n_positions, bool) or not isinstance(n_positions, int)
                                    or n_positions < 1):
        raise ValueError(f"n_positions={n_positions!r} is out of range: allowed integers >= 1 or None")
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such data folder")
    path, context_path = directory / f"{campaign}.csv", directory / "item_context.csv"
    item_context, context_columns = _read_item_context(context_path)
    n_items = len(item_context)
    table = _read_csv(path)
    _require(path, table, [*_LOG_COLUMNS, *(f"user-item_affinity_{i}" for i in range(n_items))])

    item = _integers(path, table, "item_id", 0, n_items - 1, "an item id")
    position = _integers(path, table, "position", 1, n_positions, "a position")
    n_positions = int(position.max()) if n_positions is None else n_positions
    click = _integers(path, table, "click", 0, 1, "a click")
    propensity = _numbers(path, table, "propensity_score")
    bad = ~((propensity > 0) & (propensity <= 1))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataFormatError(path, row + _FIRST_LINE, "a propensity in column 'propensity_score' (a number in "
                              "(0, 1])", _field(table, "propensity_score", row))
    timestamp = _timestamps(path, table)
    user_features = np.stack([_codes(path, table, f"user_feature_{j}") for j in range(N_USER_FEATURES)], axis=1)
    affinity = np.stack([_numbers(path, table, f"user-item_affinity_{i}") for i in range(n_items)], axis=1)
    metadata = {"path": str(path), "campaign": campaign, "sha256": _sha256(path),
                "item_context_sha256": _sha256(context_path)}
    return ObdLog(timestamp=timestamp, item=item, position=position - 1, click=click.astype(bool),
                  propensity=propensity, user_features=user_features, affinity=affinity,
                  item_context=item_context, item_context_columns=context_columns, n_items=n_items,
                  n_positions=n_positions, metadata=metadata)


def _timestamps(path: Path, table: Any) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    col = _not_null(path, table, "timestamp")
    if not pa.types.is_timestamp(col.type):
        try:
            col = pc.cast(col, pa.timestamp("us", tz="UTC"))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            values = col.to_pylist()
            row = next((i for i, v in enumerate(values) if not _is_time(str(v))), 0)
            raise DataFormatError(path, row + _FIRST_LINE, "a time in column 'timestamp' (ISO 8601)",
                                  values[row]) from None
    return col.cast(pa.timestamp("us", tz="UTC")).to_numpy(zero_copy_only=False).astype("datetime64[us]")


def _is_time(value: str) -> bool:
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        pc.cast(pa.array([value]), pa.timestamp("us", tz="UTC"))
        return True
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False


def per_impression(obd: ObdLog, probabilities_per_position: np.ndarray) -> np.ndarray:
    """``(R, n_items)``: row r is the column of ``(n_items, n_positions)`` at row r's logged position.

    This is the form ``agents.ope.estimate_all`` takes a context-free policy's distribution in (its
    probability of every item at the slot the row filled), and the form of a reward model's values.

    Raises:
        ValueError: a matrix whose shape is not ``(n_items, n_positions)`` of the log.
    """
    matrix = np.asarray(probabilities_per_position, np.float64)
    if matrix.shape != (obd.n_items, obd.n_positions):
        raise ValueError(f"probabilities_per_position has shape {matrix.shape}: expected "
                         f"{(obd.n_items, obd.n_positions)} (items x positions)")
    return matrix.T[obd.position]


def to_propensity_log(obd: ObdLog, behaviour_probabilities_per_position: np.ndarray | None = None,
                      policy_name: str | None = None) -> PropensityLog:
    """The impressions as one-step episodes (one per row) for the estimators of ``agents.ope``.

    Candidates are every item, the action is the logged item (``position`` = ``item``), ``propensity``
    the logged propensity and ``reward`` the click. ``obs`` holds the 0-based slot, the user-feature
    codes and the affinities (``metadata["obs_columns"]``), so a target given as a function of the
    log can read the slot.

    ``probabilities`` (the logging policy's distribution over items at the row's slot) is only known
    exactly where the logging policy is: pass its ``(n_items, n_positions)`` matrix when you have it;
    without one, a log whose every propensity is ``1/n_items`` gets the uniform rows, and any other log
    (Bernoulli TS) gets its logged propensity at the logged item and NaN elsewhere, since only that
    entry was recorded. ``estimate_all`` reads the behaviour only through ``propensity`` (it checks
    the shape of ``probabilities``), so its estimates are the same whichever rows are stored.

    Raises:
        ValueError: a matrix of the wrong shape, or whose entry at a logged (item, position) differs
            from the logged propensity by more than 1e-6.
    """
    r, n = len(obd), obd.n_items
    if behaviour_probabilities_per_position is not None:
        probabilities = per_impression(obd, behaviour_probabilities_per_position)
        gap = np.abs(probabilities[np.arange(r), obd.item] - obd.propensity)
        if (gap > 1e-6).any():
            row = int(np.argmax(gap))
            raise ValueError(f"behaviour_probabilities_per_position gives {probabilities[row, obd.item[row]]:.6g} "
                             f"at row {row} (item {obd.item[row]}, position {obd.position[row]}), where the log "
                             f"recorded the propensity {obd.propensity[row]:.6g}")
    elif np.allclose(obd.propensity, 1.0 / n, rtol=1e-6, atol=0.0):
        probabilities = np.full((r, n), 1.0 / n)
    else:
        probabilities = np.full((r, n), np.nan)
        probabilities[np.arange(r), obd.item] = obd.propensity
    obs = np.concatenate([obd.position[:, None].astype(np.float64), obd.user_features.astype(np.float64),
                          obd.affinity], axis=1)
    obs_columns = ["position", *(f"user_feature_{j}" for j in range(N_USER_FEATURES)),
                   *(f"user-item_affinity_{i}" for i in range(n))]
    click = obd.click.astype(bool)
    metadata = {"format_version": FORMAT_VERSION, "source": "obd", **obd.metadata, "policy": policy_name,
                "n_users": r, "n_items": n, "n_positions": obd.n_positions, "obs_columns": obs_columns}
    return PropensityLog(
        user=np.arange(r, dtype=np.int64), step=np.zeros(r, np.int64), session=np.zeros(r, np.int64), obs=obs,
        candidates=np.broadcast_to(np.arange(n, dtype=np.int64), (r, n)), position=obd.item.copy(),
        item=obd.item.copy(), propensity=obd.propensity.copy(), probabilities=probabilities, click=click,
        engagement=np.full(r, np.nan), reward=click.astype(np.float64), terminated=np.ones(r, bool),
        truncated=np.zeros(r, bool), metadata=metadata)
