"""The benchmark suite: every agent on the same held-out simulated users, over seeds, with plots.

    python -m benchmarks.run [--suite quick|full|tiny] [--out DIR] [--engine local|ray] [--jobs N]
                             [--address RAY_ADDRESS] [--agents a,b] [--presets p,q] [--seeds 0,1,2]

Runs agents x presets x seeds (see ``benchmarks.suites``), stores each finished run at once, then
writes the tidy table (``results.parquet``, ``results.csv``), ``run.json``, six plots and
``REPORT.md`` to ``--out`` (default ``results/<suite>``). Rerunning the same command skips the runs
already stored, so an interrupted suite resumes where it stopped; a failed run is reported with
its error, the others go on, and the command exits with status 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from benchmarks import engines
from benchmarks.report import write_report
from benchmarks.results import RunStore, run_record, tidy_rows, write_table
from benchmarks.suites import SUITES, RunSpec, Suite
from recsim_env.io import atomic_write_text, progress_enabled

#: Rough relative cost of one run, so the longest start first and the pool stays busy.
COST = {"dqn": 10, "sb3_dqn": 9, "dqn_myopic": 8, "planner": 7, "gcn": 6, "lstm": 4, "qlearning": 2, "popularity": 1}


@dataclass(frozen=True)
class RunConfig:
    """Command-line options of the suite."""

    suite: str = "quick"
    out: str | None = None
    engine: str = "local"
    jobs: int = 0
    address: str | None = None
    agents: tuple[str, ...] | None = None
    presets: tuple[str, ...] | None = None
    seeds: tuple[int, ...] | None = None
    progress: bool | None = None

    def __post_init__(self) -> None:
        if self.suite not in SUITES:
            raise ValueError(f"RunConfig.suite={self.suite!r} is unknown; allowed: {', '.join(SUITES)}")
        if self.engine not in engines.ENGINES:
            raise ValueError(f"RunConfig.engine={self.engine!r} is unknown; allowed: {', '.join(engines.ENGINES)}")
        if not 0 <= self.jobs <= 1024:
            raise ValueError(f"RunConfig.jobs={self.jobs} is out of range: allowed [0, 1024] (0 = one per CPU)")

    @property
    def out_dir(self) -> Path:
        return Path(self.out or f"results/{self.suite}")

    def resolved_suite(self) -> Suite:
        return SUITES[self.suite].restrict(self.agents, self.presets, self.seeds)

    def workers(self) -> int:
        return self.jobs or os.cpu_count() or 1


@dataclass
class SuiteOutcome:
    """What a call of :func:`run_suite` produced."""

    results: dict[RunSpec, dict[str, Any]]
    failed: dict[RunSpec, str]
    executed: list[RunSpec]
    out: Path


def run_suite(config: RunConfig) -> SuiteOutcome:
    """Execute the missing runs of the suite, then write the table, record, plots and report."""
    start = time.perf_counter()
    suite, store = config.resolved_suite(), RunStore(config.out_dir)
    specs = suite.runs()
    results = {spec: stored for spec in specs if (stored := store.load(spec)) is not None}
    todo = sorted((s for s in specs if s not in results), key=lambda s: -COST.get(s.agent, 0))
    failed: dict[RunSpec, str] = {}
    bar = tqdm(total=len(specs), initial=len(results), desc=f"suite {suite.name}", unit="run",
               disable=not progress_enabled(config.progress))
    if results:
        bar.write(f"resuming: {len(results)} of {len(specs)} runs already in {store.runs}")
    for spec, result, error in engines.run(todo, config.engine, str(store.work), config.workers(), config.address):
        if result is None:
            failed[spec] = error or "unknown error"
            path = store.save_error(spec, failed[spec])
            bar.write(f"FAILED {spec.run_id}: {failed[spec].strip().splitlines()[-1]} (traceback in {path})")
        else:
            store.save(spec, result)
            results[spec] = result
        status = "failed" if result is None else f"{result['seconds']:.0f}s"
        bar.set_postfix_str(f"{spec.run_id} {status}")
        bar.update()
    bar.close()
    ordered = {spec: results[spec] for spec in specs if spec in results}
    out = config.out_dir
    if ordered:
        write_table(out, tidy_rows(ordered))
        write_report(out, suite, ordered, failed)
    record = run_record({**dataclasses.asdict(config), "suite_definition": dataclasses.asdict(suite)},
                        time.perf_counter() - start, sorted(s.run_id for s in failed))
    atomic_write_text(out / "run.json", json.dumps(record, indent=2))
    return SuiteOutcome(ordered, failed, todo, out)


def _csv(kind: type) -> Any:
    def parse(text: str) -> tuple:
        try:
            return tuple(kind(x) for x in text.split(",") if x)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__} values, got {text!r}")

    return parse


def parse_args(argv: list[str] | None) -> RunConfig:
    parser = argparse.ArgumentParser(prog="recsim-bench", description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="quick", choices=sorted(SUITES))
    parser.add_argument("--out", help="run folder (default results/<suite>)")
    parser.add_argument("--engine", default="local", choices=engines.ENGINES)
    parser.add_argument("--jobs", type=int, default=0, help="local worker processes (default: one per CPU)")
    parser.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    parser.add_argument("--agents", type=_csv(str), help="only these agents")
    parser.add_argument("--presets", type=_csv(str), help="only these presets")
    parser.add_argument("--seeds", type=_csv(int), help="these seeds instead of the suite's")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar (default: only on a terminal)")
    args = parser.parse_args(argv)
    try:
        config = RunConfig(**vars(args))
        config.resolved_suite()
        if config.engine == "ray":
            engines.check_reachable(config.address or os.environ.get("RAY_ADDRESS"))
    except (ValueError, ConnectionError) as err:
        parser.error(str(err))
    return config


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    outcome = run_suite(config)
    print(f"{len(outcome.results)} runs in {outcome.out} ({len(outcome.executed) - len(outcome.failed)} executed now, "
          f"{len(outcome.failed)} failed); report: {outcome.out / 'REPORT.md'}")
    for spec, error in outcome.failed.items():
        print(f"failed: {spec.run_id}: {error.strip().splitlines()[-1]}", file=sys.stderr)
    return 1 if outcome.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
