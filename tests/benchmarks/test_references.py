import json

from benchmarks import references


def test_reference_comparison_writes_table_json_and_plot(tmp_path, capsys):
    assert references.main(["--users", "30", "--no-sweep", "--out", str(tmp_path)]) == 0
    assert "| heuristic |" in capsys.readouterr().out
    assert (tmp_path / "user_drift.png").stat().st_size > 10_000
    summary = json.loads((tmp_path / "results.json").read_text())
    assert set(summary["policies"]) == {"random", "myopic", "heuristic"}
    assert "user_drift.png" in (tmp_path / "results.md").read_text()
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind
