"""Parquet storage shared by the logs with propensities: columns in and out, metadata, the common checks.

Rows are steps; a column of one value per step is a plain array, a matrix per step a fixed-size
list (an ``(R, K, N)`` array is stored as lists of ``K * N``), and the log's metadata is JSON under
one schema-metadata key, which also tells one kind of log from another.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recsim_env.io import atomic_write


def write_table(path: str | Path, columns: Mapping[str, np.ndarray], metadata: Mapping[str, Any], key: bytes,
                extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``columns`` (and ready-made pyarrow ``extra`` columns) with ``metadata`` atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = {}
    for name, values in columns.items():
        values = np.ascontiguousarray(values)
        if values.ndim > 2:
            values = values.reshape(len(values), -1)
        arrays[name] = pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), values.shape[1]) \
            if values.ndim == 2 else pa.array(values)
    table = pa.table({**arrays, **(extra or {})}).replace_schema_metadata({key: json.dumps(dict(metadata)).encode()})
    return atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def read_table(path: str | Path, key: bytes, what: str, required: Sequence[str],
               state: Sequence[str]) -> tuple[Any, dict[str, Any], list[str]]:
    """The table, its metadata and which of the optional ``state`` columns it holds.

    Raises:
        ValueError: no metadata under ``key``, a ``required`` column missing, or only some of the
            ``state`` columns present; the message names the file, ``what`` it should be and the column.
    """
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(key)
    if raw is None:
        raise ValueError(f"{path}: not a recsim_env {what} (no {key.decode()} metadata)")
    missing = [c for c in required if c not in table.column_names]
    if missing:
        raise ValueError(f"{path}: not a recsim_env {what} (missing column {', '.join(missing)})")
    present = [c for c in state if c in table.column_names]
    if present and len(present) != len(state):
        raise ValueError(f"{path}: true-state columns are incomplete (missing column "
                         f"{', '.join(c for c in state if c not in present)})")
    return table, json.loads(raw), present


def column_array(table: Any, name: str) -> np.ndarray:
    """A column as numpy: a fixed-size list column as ``(R, width)``."""
    col = table.column(name).combine_chunks()
    list_size = getattr(col.type, "list_size", None)
    if list_size is None:
        return col.to_numpy(zero_copy_only=False)
    return col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), list_size)
