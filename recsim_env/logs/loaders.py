"""Real interaction data from a local file, into :class:`~recsim_env.logs.sequences.Sequences`.

Nothing is downloaded: the caller passes a path. Formats:

| name        | content                                                                   |
|-------------|---------------------------------------------------------------------------|
| ``lines``   | one user per line, ``user item item ...`` in time order (S3-Rec, SASRec's preprocessed files) |
| ``pairs``   | one interaction per line, ``user item``, in time order (SASRec's ``data/*.txt``) |
| ``movielens`` | ``u.data`` (tab separated ``user item rating timestamp``) or ``ratings.dat`` (``::`` separated) |
| ``csv``     | a CSV or Parquet table with named user, item and (optional) time columns   |
| ``log``     | an interaction log written by :func:`recsim_env.logs.write_log` (clicked items) |

Ids in ``lines``, ``pairs`` and ``movielens`` files must be integers; CSV columns may hold any ids.
Every rating counts as an interaction (implicit feedback), as in the published protocols. Blank lines
are skipped. A malformed file raises :class:`DataFormatError` naming the file, the line and what was
expected there.
"""

from __future__ import annotations

import csv as _csv
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from recsim_env.logs.sequences import Sequences

FORMATS: tuple[str, ...] = ("lines", "pairs", "movielens", "csv", "log")


class DataFormatError(ValueError):
    """A data file that does not match its format; the message names file, line and expectation.

    For a Parquet table the "line" is the 1-based row; for a CSV file it counts the header as line 1.
    """

    def __init__(self, path: str | Path, line: int, expected: str, got: str):
        self.path, self.line = Path(path), line
        super().__init__(f"{path}, line {line}: expected {expected}, got {got!r}")


def infer_format(path: str | Path) -> str:
    """Guess a format from the file name: ``.csv``/``.parquet`` -> ``csv`` (a Parquet file with a
    recsim_env log signature -> ``log``), ``u.data``/``ratings.dat`` -> ``movielens``, else ``lines``
    (pass ``pairs`` explicitly: a two-column file is also a valid ``lines`` file)."""
    path = Path(path)
    if path.suffix == ".parquet":
        from recsim_env.logs.simulated import is_log

        return "log" if is_log(path) else "csv"
    if path.suffix in (".csv", ".tsv"):
        return "csv"
    if path.name in ("u.data", "ratings.dat"):
        return "movielens"
    return "lines"


def load_sequences(path: str | Path, format: str | None = None, *, kcore: int = 0, user_col: str = "user",
                   item_col: str = "item", time_col: str | None = "time") -> Sequences:
    """Read a data file into sequences (ids remapped to dense ids, see ``Sequences.from_interactions``).

    Args:
        path: the file.
        format: one of ``FORMATS``; inferred from the file name when None.
        kcore: when > 1, keep the ``kcore``-core (users and items with at least ``kcore`` interactions).
        user_col: the user column for ``csv``.
        item_col: the item column for ``csv``.
        time_col: the time column for ``csv`` (None: file order is time order).

    Raises:
        FileNotFoundError: no such file.
        DataFormatError: the file does not match the format.
        ValueError: an unknown format, or a file with no interactions.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such data file")
    format = infer_format(path) if format is None else format
    if format == "lines":
        seqs = _read_lines(path)
    elif format == "pairs":
        seqs = Sequences.from_interactions(*_read_columns(path, 2, "'user item' (two integers)"))
    elif format == "movielens":
        seqs = _read_movielens(path)
    elif format == "csv":
        seqs = _read_table(path, user_col, item_col, time_col)
    elif format == "log":
        from recsim_env.logs.simulated import read_log

        seqs = read_log(path).to_sequences()
    else:
        raise ValueError(f"format={format!r}: allowed {', '.join(FORMATS)}")
    if len(seqs) == 0:
        raise ValueError(f"{path}: no interactions found")
    if kcore > 1:
        seqs = seqs.kcore(kcore)
        if len(seqs) == 0:
            raise ValueError(f"{path}: no interactions left after the {kcore}-core")
    return seqs


def _numbered_lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            fields = line.split()
            if fields:
                yield number, fields


def _ints(path: Path, number: int, fields: list[str]) -> list[int]:
    try:
        return [int(x) for x in fields]
    except ValueError:
        bad = next(x for x in fields if not x.lstrip("+-").isdigit())
        raise DataFormatError(path, number, "integer ids", bad) from None


def _read_lines(path: Path) -> Sequences:
    users: list[int] = []
    lengths: list[int] = []
    items: list[int] = []
    seen: dict[int, int] = {}
    for number, fields in _numbered_lines(path):
        if len(fields) < 2:
            raise DataFormatError(path, number, "'user item [item ...]' (a user and at least one item)",
                                  " ".join(fields))
        user, *row = _ints(path, number, fields)
        if user in seen:
            raise DataFormatError(path, number, f"each user on one line (user {user} is already on line "
                                  f"{seen[user]})", str(user))
        seen[user] = number
        users.append(user)
        lengths.append(len(row))
        items.extend(row)
    return Sequences.from_interactions(np.repeat(np.array(users, np.int64), lengths), np.array(items, np.int64))


def _read_columns(path: Path, n: int, expected: str, sep: str | None = None) -> list[np.ndarray]:
    rows: list[list[int]] = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            fields = line.split(sep) if sep else line.split()
            fields = [x.strip() for x in fields]
            if not any(fields):
                continue
            if len(fields) != n:
                raise DataFormatError(path, number, expected, line.rstrip("\n"))
            rows.append(_ints(path, number, fields))
    arr = np.array(rows, np.int64).reshape(-1, n)
    return [arr[:, j] for j in range(n)]


def _read_movielens(path: Path) -> Sequences:
    with open(path, encoding="utf-8") as f:
        first = f.readline()
    sep = "::" if "::" in first else None
    expected = f"'user{sep or ' '}item{sep or ' '}rating{sep or ' '}timestamp' (four integers)"
    user, item, _rating, timestamp = _read_columns(path, 4, expected, sep)
    return Sequences.from_interactions(user, item, timestamp)


def _read_table(path: Path, user_col: str, item_col: str, time_col: str | None) -> Sequences:
    import pyarrow as pa
    import pyarrow.compute as pc

    wanted = [c for c in (user_col, item_col, time_col) if c is not None]
    parquet = path.suffix == ".parquet"
    if parquet:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
    else:
        import pyarrow.csv as pcsv

        delimiter = "\t" if path.suffix == ".tsv" else ","
        try:
            table = pcsv.read_csv(path, parse_options=pcsv.ParseOptions(delimiter=delimiter))
        except pa.ArrowInvalid as err:
            number, got = _bad_csv_line(path, delimiter)
            raise DataFormatError(path, number, "as many fields as the header", got) from err
    missing = [c for c in wanted if c not in table.column_names]
    if missing:
        raise DataFormatError(path, 1, f"columns {wanted} in the header", ", ".join(table.column_names))
    first_row = 1 if parquet else 2  # CSV line numbers count the header

    def column(name: str) -> np.ndarray:
        col = table.column(name)
        if col.null_count:
            row = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
            raise DataFormatError(path, row + first_row, f"a value in column {name!r}", "null")
        return col.to_numpy(zero_copy_only=False)

    times = None
    if time_col is not None:
        col = table.column(time_col)
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            try:
                col = pc.cast(col, pa.timestamp("ns"))
            except pa.ArrowInvalid:
                values = col.to_pylist()
                row = next(i for i, v in enumerate(values) if v is not None and not _is_time(v))
                raise DataFormatError(path, row + first_row, f"a time in column {time_col!r} "
                                      "(a number or an ISO 8601 date)", values[row]) from None
            table = table.set_column(table.column_names.index(time_col), time_col, col)
        times = column(time_col)
        if times.dtype.kind == "M":
            times = times.astype("datetime64[ns]").astype(np.int64)
    return Sequences.from_interactions(column(user_col), column(item_col), times)


def _is_time(value: str) -> bool:
    try:
        np.datetime64(value)
        return True
    except ValueError:
        return False


def _bad_csv_line(path: Path, delimiter: str) -> tuple[int, str]:
    """The first line whose field count differs from the header's (pyarrow does not name it)."""
    with open(path, encoding="utf-8", newline="") as f:
        reader = _csv.reader(f, delimiter=delimiter)
        header = next(reader, [])
        for row in reader:
            if row and len(row) != len(header):
                return reader.line_num, delimiter.join(row)
    return 1, delimiter.join(header)
