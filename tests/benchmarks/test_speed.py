"""The speed benchmark runs end to end and writes a well-formed report (no timing assertions)."""

import json

from benchmarks import speed


def test_quick_run_writes_the_report(tmp_path, capsys):
    out = tmp_path / "speed.json"
    assert speed.main(["--quick", "--out", str(out)]) == 0
    assert "user-steps/s" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert set(report) >= {"config", "machine", "memory", "single", "vector", "best_vector"}
    assert report["machine"]["cpu_count"] >= 1 and report["machine"]["numpy"]
    single = report["single"]
    assert single["steps_per_s"] > 0 and len(single["runs"]) == report["config"]["repeats"]
    assert [row["num_envs"] for row in report["vector"]] == list(report["config"]["batch_sizes"])
    for row in report["vector"]:
        assert row["user_steps_per_s"] > 0 and row["steps"] > 0 and row["peak_memory_bytes"] > 0
        assert all(rate > 0 for rate in row["runs"])
    assert report["best_vector"]["num_envs"] in report["config"]["batch_sizes"]
    assert not list(tmp_path.glob(".*"))  # the temporary file was renamed into place
