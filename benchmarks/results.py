"""The run folder: one JSON per finished run (written atomically), the tidy table, the run record.

Layout of ``--out`` (default ``results/<suite>/``)::

    runs/<run_id>.json        one finished run: its spec, metrics, learning curve, per-user results
    runs/<run_id>.error.txt   the traceback of a failed run (removed when it later succeeds)
    work/<run_id>/            training logs and weights of each run
    results.parquet, results.csv   columns agent, preset, seed, metric, value
    run.json                  suite config, package versions, git commit, machine
    REPORT.md and the plots

A run file is the unit of resumption: a rerun skips every run whose file exists with the same spec,
so an interrupted suite loses at most the runs that were in flight.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.suites import Budget, EnvChoice, RunSpec
from recsim_env.io import atomic_write, atomic_write_text

COLUMNS = ("agent", "preset", "seed", "metric", "value")
PACKAGES = ("recsim_env", "numpy", "gymnasium", "torch", "stable-baselines3", "torch_geometric", "pyarrow", "ray")


class RunStore:
    """Reads and writes the per-run files of one run folder."""

    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.runs = self.out / "runs"
        self.work = self.out / "work"

    def _path(self, spec: RunSpec, suffix: str = ".json") -> Path:
        return self.runs / f"{spec.run_id}{suffix}"

    def load(self, spec: RunSpec) -> dict[str, Any] | None:
        """The stored result of ``spec``, or None if it is missing, unreadable or from another spec."""
        path = self._path(spec)
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        try:  # through the dataclass, so a file from before a field existed reads with its default
            same = spec_from_dict(stored["spec"]) == spec
        except (KeyError, TypeError, ValueError):
            return None
        return stored if same else None

    def save(self, spec: RunSpec, result: dict[str, Any]) -> None:
        atomic_write_text(self._path(spec), json.dumps({"spec": spec_dict(spec), **result}))
        self._path(spec, ".error.txt").unlink(missing_ok=True)

    def save_error(self, spec: RunSpec, error: str) -> Path:
        return atomic_write_text(self._path(spec, ".error.txt"), error)


def spec_dict(spec: RunSpec) -> dict[str, Any]:
    """The spec as its JSON file holds it (tuples as lists), so a stored spec compares equal."""
    return json.loads(json.dumps(dataclasses.asdict(spec)))


def spec_from_dict(data: dict[str, Any]) -> RunSpec:
    choice = data.get("choice") or {}
    return RunSpec(data["agent"], data["preset"], data["seed"], Budget(**data["budget"]),
                   EnvChoice(choice.get("env"), tuple(tuple(pair) for pair in choice.get("overrides", ())),
                             tuple(choice.get("plugins", ()))))


def changed_choice(store: RunStore, specs: list[RunSpec]) -> str | None:
    """What differs between the env choice of the runs already in the folder and the one asked for now.

    Resuming into a folder made on another env, config or plugin set would mix two experiments in one
    table; a changed budget only reruns the affected runs.
    """
    for spec in specs:
        try:
            stored = json.loads(store._path(spec).read_text(encoding="utf-8")).get("spec", {})
        except (OSError, ValueError):
            continue
        before, now = stored.get("choice") or {"env": None, "overrides": [], "plugins": []}, spec_dict(spec)["choice"]
        diffs = [f"{key}: stored {before.get(key)!r}, asked {now[key]!r}" for key in now if before.get(key) != now[key]]
        if diffs:
            return f"{store.out} holds runs made with another env configuration ({'; '.join(diffs)}); " \
                   "use another --out, or delete the folder"
    return None


def tidy_rows(results: dict[RunSpec, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (agent, preset, seed, metric), in the suite's run order."""
    return [{"agent": spec.agent, "preset": spec.preset, "seed": spec.seed, "metric": metric, "value": float(value)}
            for spec, result in results.items() for metric, value in result["metrics"].items()]


def write_table(out: Path, rows: list[dict[str, Any]]) -> list[Path]:
    """``results.parquet`` and ``results.csv``, each written atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({c: [r[c] for r in rows] for c in COLUMNS},
                     schema=pa.schema([("agent", pa.string()), ("preset", pa.string()), ("seed", pa.int64()),
                                       ("metric", pa.string()), ("value", pa.float64())]))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return [atomic_write(out / "results.parquet", lambda tmp: pq.write_table(table, tmp)),
            atomic_write_text(out / "results.csv", text.getvalue())]


def _git_commit() -> str | None:
    try:
        found = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                               cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return found.stdout.strip() or None if found.returncode == 0 else None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def run_record(config: dict[str, Any], seconds: float, failed: list[str]) -> dict[str, Any]:
    """What a reader needs to reproduce the table: config, versions, commit, machine, timing."""
    import os

    return {"config": config, "packages": {p: _version(p) for p in PACKAGES}, "git_commit": _git_commit(),
            "machine": {"platform": platform.platform(), "python": platform.python_version(),
                        "processor": platform.machine(), "cpus": os.cpu_count()},
            "wall_seconds": seconds, "failed_runs": failed}


def write_results(out: str | Path, results: Any, markdown: str) -> None:
    """A command's ``results.json`` and ``results.md`` in ``out``, each written atomically."""
    out = Path(out)
    atomic_write_text(out / "results.json", json.dumps(results, indent=2))
    atomic_write_text(out / "results.md", markdown)
