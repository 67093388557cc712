"""Where runs execute: a local process pool, or Ray tasks on a cluster (or a local Ray instance).

Both engines call the same pure :func:`benchmarks.runner.execute` and yield ``(spec, result,
error)`` as runs finish, in whatever order they finish; the caller stores results, so a worker on
another machine never needs the run folder. Training logs and weights go to the worker's
``work_root`` (shared storage on a cluster, or the worker's disk).
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import traceback
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from benchmarks.runner import execute
from benchmarks.suites import RunSpec

ENGINES = ("local", "ray")
Outcome = tuple[RunSpec, dict[str, Any] | None, str | None]


def _guarded(spec: RunSpec, work_root: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """Run one spec; a failure comes back as its traceback instead of ending the suite."""
    try:
        return execute(spec, None if work_root is None else Path(work_root) / spec.run_id), None
    except Exception:  # noqa: BLE001  (any error of one run is reported, and the suite goes on)
        return None, traceback.format_exc()


def run_local(specs: list[RunSpec], work_root: str | None, jobs: int) -> Iterator[Outcome]:
    """``jobs`` worker processes (spawned: no state inherited); ``jobs=1`` runs in this process."""
    if jobs == 1:
        for spec in specs:
            yield (spec, *_guarded(spec, work_root))
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        pending = {pool.submit(_guarded, spec, work_root): spec for spec in specs}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                spec = pending.pop(future)
                try:
                    yield (spec, *future.result())
                except Exception:  # noqa: BLE001  (a worker that died: report and go on)
                    yield spec, None, traceback.format_exc()


def check_reachable(address: str | None, timeout: float = 10.0) -> None:
    """Fail fast on a cluster address nobody answers at (Ray itself keeps retrying before it gives up).

    ``None``, ``"auto"`` and ``"local"`` are left to Ray; ``HOST:PORT`` and ``ray://HOST:PORT`` are
    tried with one TCP connection.
    """
    if address is None or address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"Ray address {address!r}: expected HOST:PORT, ray://HOST:PORT, 'auto' or 'local'")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise ConnectionError(f"Ray address {address!r}: nothing answers at {host}:{port} ({err}); "
                              "start the head node with `ray start --head` or fix --address / RAY_ADDRESS") from None


def run_ray(specs: list[RunSpec], work_root: str | None, address: str | None) -> Iterator[Outcome]:
    """One Ray task per run (one CPU each) on the cluster at ``address`` / ``RAY_ADDRESS``, or locally."""
    address = address or os.environ.get("RAY_ADDRESS")
    check_reachable(address)
    try:
        import ray
    except ImportError as err:
        raise RuntimeError("--engine ray needs Ray: pip install 'recsim_env[ray]'") from err
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(_guarded)
        pending = {task.remote(spec, work_root): spec for spec in specs}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                spec = pending.pop(ref)
                try:
                    yield (spec, *ray.get(ref))
                except Exception:  # noqa: BLE001  (a lost worker or node: report and go on)
                    yield spec, None, traceback.format_exc()
    finally:
        if started:
            ray.shutdown()


def run(specs: list[RunSpec], engine: str, work_root: str | None, jobs: int = 1,
        address: str | None = None) -> Iterator[Outcome]:
    """Execute ``specs`` on ``engine``; yields each outcome as its run ends."""
    if engine == "local":
        return run_local(specs, work_root, jobs)
    if engine == "ray":
        return run_ray(specs, work_root, address)
    raise ValueError(f"unknown engine {engine!r}; allowed: {', '.join(ENGINES)}")
