"""The benchmark suite: every agent on the same held-out simulated users, over seeds, with plots.

    python -m benchmarks.run [--suite quick|slates|offline|encoders|full|tiny|tiny_slates] [--out DIR] [--engine local|ray] [--jobs N]
                             [--address RAY_ADDRESS] [--agents a,b] [--presets p,q] [--seeds 0,1,2]
                             [--env ID [--set FIELD=VALUE ...] [--env-config FILE.json]] [--plugin MODULE]

``--env`` runs the suite on any recsim_env id with config overrides instead of its presets;
``--plugin`` imports a user module first, whose ``agents.register(name, factory)`` calls make its
recommenders available to ``--agents`` beside the zoo, on the same held-out users.

Runs agents x presets x seeds (see ``benchmarks.suites``), stores each finished run at once, then
writes the tidy table (``results.parquet``, ``results.csv``), ``run.json``, six plots and
``REPORT.md`` to ``--out`` (default ``results/<suite>``). Rerunning the same command skips the runs
already stored, so an interrupted suite resumes where it stopped; a failed run is reported with
its error, the others go on, and the command exits with status 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib
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
from benchmarks.results import RunStore, changed_choice, run_record, tidy_rows, write_table
from benchmarks.suites import SUITES, EnvChoice, RunSpec, Suite
from recsim_env.io import atomic_write_text, progress_enabled

#: Rough relative cost of one run, so the longest start first and the pool stays busy.
COST = {"dqn_transformer": 12, "dqn_gru": 11, "dqn": 10, "sb3_dqn": 9, "dqn_myopic": 8, "planner": 7, "gcn": 6, "lstm": 4, "qlearning": 2, "popularity": 1, "bcq": 5, "cql": 3, "bc": 3}


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
    env: str | None = None
    set: tuple[str, ...] = ()
    env_config: str | None = None
    plugins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.suite not in SUITES:
            raise ValueError(f"RunConfig.suite={self.suite!r} is unknown; allowed: {', '.join(SUITES)}")
        if self.engine not in engines.ENGINES:
            raise ValueError(f"RunConfig.engine={self.engine!r} is unknown; allowed: {', '.join(engines.ENGINES)}")
        if not 0 <= self.jobs <= 1024:
            raise ValueError(f"RunConfig.jobs={self.jobs} is out of range: allowed [0, 1024] (0 = one per CPU)")

    @property
    def out_dir(self) -> Path:
        """``--out``, else ``results/<suite>``; on a chosen env, named after it and a digest of the choice."""
        if self.out:
            return Path(self.out)
        choice = self.env_choice()
        if choice.env is None and not choice.plugins:
            return Path(f"results/{self.suite}")
        digest = hashlib.sha256(json.dumps(dataclasses.asdict(choice)).encode()).hexdigest()[:8]
        return Path(f"results/{self.suite}-{choice.label or 'plugins'}-{digest}")

    def env_choice(self) -> EnvChoice:
        """The env, its config overrides (``--env-config`` then ``--set``, the later winning) and plugins."""
        overrides: dict[str, Any] = {}
        if self.env_config:
            overrides.update(read_env_config(self.env_config))
        for item in self.set:
            key, sep, text = item.partition("=")
            if not sep or not key:
                raise ValueError(f"--set {item!r}: expected FIELD=VALUE")
            overrides[key] = parse_value(text)
        if overrides and self.env is None:
            raise ValueError("--set and --env-config need --env (the registered id they configure)")
        return EnvChoice(self.env, tuple(sorted(overrides.items())), tuple(self.plugins))

    def resolved_suite(self) -> Suite:
        suite = SUITES[self.suite]
        choice = self.env_choice()
        if choice.env is not None and self.presets:
            raise ValueError("--presets and --env exclude each other: --env names the env the runs use")
        return suite.on(choice).restrict(self.agents, self.presets, self.seeds)

    def workers(self) -> int:
        return self.jobs or os.cpu_count() or 1


@dataclass
class SuiteOutcome:
    """What a call of :func:`run_suite` produced."""

    results: dict[RunSpec, dict[str, Any]]
    failed: dict[RunSpec, str]
    executed: list[RunSpec]
    out: Path


def parse_value(text: str) -> Any:
    """A ``--set`` value: JSON where it parses (``5000``, ``0.5``, ``true``), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def read_env_config(path: str) -> dict[str, Any]:
    """The JSON object of config overrides in ``path``, or a ValueError naming the file and the problem."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise ValueError(f"--env-config {path}: cannot read it ({err.strerror or err})") from err
    except ValueError as err:
        raise ValueError(f"--env-config {path}: not JSON ({err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"--env-config {path}: expected a JSON object of field: value, got {type(data).__name__}")
    return data


def check_choice(choice: EnvChoice) -> None:
    """Import the plugins and build the chosen env once, so a misspelt module, id or field stops at once."""
    import gymnasium as gym

    import recsim_env

    for module in choice.plugins:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ValueError(f"--plugin {module}: cannot import it ({err})") from err
    if choice.env is None:
        return
    if choice.env not in recsim_env.ENV_IDS:
        raise ValueError(f"--env {choice.env!r} is not a recsim_env id; allowed: {', '.join(recsim_env.ENV_IDS)}")
    try:
        gym.make_vec(choice.env, num_envs=1, vectorization_mode="vector_entry_point", **dict(choice.overrides))
    except (TypeError, ValueError) as err:
        raise ValueError(f"--env {choice.env} with {dict(choice.overrides)}: {err}") from err


def run_suite(config: RunConfig) -> SuiteOutcome:
    """Execute the missing runs of the suite, then write the table, record, plots and report.

    Raises:
        ValueError: the run folder holds runs made on another env configuration.
    """
    start = time.perf_counter()
    suite, store = config.resolved_suite(), RunStore(config.out_dir)
    specs = suite.runs()
    conflict = changed_choice(store, specs)
    if conflict:
        raise ValueError(conflict)
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
    parser.add_argument("--env", help="run on this recsim_env id instead of the suite's presets")
    parser.add_argument("--set", nargs="+", default=(), metavar="FIELD=VALUE",
                        help="config overrides of --env (any EnvConfig field)")
    parser.add_argument("--env-config", help="a JSON file of config overrides of --env (--set wins)")
    parser.add_argument("--plugin", dest="plugins", action="append", default=[], metavar="MODULE",
                        help="import MODULE first (it may agents.register its own recommenders); repeatable")
    args = parser.parse_args(argv)
    try:
        config = RunConfig(**{**vars(args), "set": tuple(args.set), "plugins": tuple(args.plugins)})
        check_choice(config.env_choice())
        conflict = changed_choice(RunStore(config.out_dir), config.resolved_suite().runs())
        if conflict:
            raise ValueError(conflict)
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
