"""Scale-out for real: a two-node Ray cluster on loopback runs the tiny suite and gets the local table.

The cluster is started the way a user starts one (``ray start --head``, then a second node joining its
address), each node with one CPU so that the suite's runs must spread over both. Every process a
``ray start`` leaves behind shares its process group, so the test tears down exactly its own cluster
(never ``ray stop``, which would stop every Ray instance on the machine).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.run import RunConfig, run_suite
from tests.benchmarks.test_run import read_table

ray = pytest.importorskip("ray")

#: The test cluster needs no token: it listens on loopback only and lives for one test.
CLUSTER_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}
START_TIMEOUT_S = 120


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _ray_start(*args: str) -> int:
    """Run ``ray start`` in a new process group and return the group id its daemons share."""
    ray_cli = str(Path(sys.executable).with_name("ray"))
    process = subprocess.Popen([ray_cli, "start", *args, "--num-cpus=1", "--node-ip-address=127.0.0.1",
                                "--disable-usage-stats"], env=os.environ | CLUSTER_ENV, start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output, _ = process.communicate(timeout=START_TIMEOUT_S)
    if process.returncode != 0:
        raise RuntimeError(f"ray start {' '.join(args)} failed:\n{output[-2000:]}")
    return process.pid


def _tear_down(groups: list[int]) -> None:
    """SIGTERM each node's process group, then SIGKILL what is left after a grace period."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 0.0)):
        for group in groups:
            try:
                os.killpg(group, sig)
            except ProcessLookupError:
                pass
        time.sleep(wait)


@pytest.fixture
def two_node_cluster(monkeypatch) -> Iterator[str]:
    # A short temp dir of its own: Ray's socket paths under it must fit AF_UNIX's 107 bytes.
    port, groups, temp_dir = _free_port(), [], tempfile.mkdtemp(prefix="ray")
    try:
        groups.append(_ray_start("--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={temp_dir}"))
        groups.append(_ray_start(f"--address=127.0.0.1:{port}"))
        for key, value in CLUSTER_ENV.items():
            monkeypatch.setenv(key, value)
        yield f"127.0.0.1:{port}"
    finally:
        _tear_down(groups)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _alive_cpu_nodes(address: str) -> list[float]:
    ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        deadline = time.monotonic() + 30
        while True:
            nodes = [n["Resources"].get("CPU", 0.0) for n in ray.nodes() if n["Alive"]]
            if len(nodes) >= 2 or time.monotonic() > deadline:
                return nodes
            time.sleep(0.5)
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_two_node_cluster_gives_the_local_engines_table_bit_for_bit(two_node_cluster, tmp_path):
    assert _alive_cpu_nodes(two_node_cluster) == [1.0, 1.0]
    kwargs = dict(suite="tiny", agents=("random", "heuristic", "dqn", "lstm"), progress=False)
    local = run_suite(RunConfig(out=str(tmp_path / "local"), jobs=2, **kwargs))
    cluster = run_suite(RunConfig(out=str(tmp_path / "cluster"), engine="ray", address=two_node_cluster, **kwargs))
    assert not local.failed and not cluster.failed
    timing = ("train_seconds", "eval_seconds")
    rows = {name: [r for r in read_table(tmp_path / name) if r["metric"] not in timing] for name in ("local", "cluster")}
    assert len(rows["local"]) > 20 and rows["cluster"] == rows["local"]  # every value, as written, identical
