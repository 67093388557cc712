"""The seqrec benchmark end to end: a tiny fixture, a tiny simulated log, and the LastFM smoke test."""

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("torch_geometric")
pytest.importorskip("pyarrow")

from benchmarks import seqrec

DATA = Path(__file__).parents[1] / "data"
# The public LastFM file, when a ``shared/data`` folder lies beside the checkout (skipped otherwise).
LASTFM = Path(__file__).resolve().parents[3] / "shared" / "data" / "s3rec-lastfm"


def check_structure(results: dict, models: list[str]) -> None:
    assert list(results) == models
    for protocols in results.values():
        assert set(protocols) == set(seqrec.PROTOCOLS)
        for metrics in protocols.values():
            assert list(metrics) == list(seqrec.METRICS)
            assert all(0.0 <= v <= 1.0 for v in metrics.values())


def test_cli_writes_results_in_the_documented_structure(tmp_path, capsys):
    models = ["popularity", "lstm", "gcn", "lightgcn"]
    argv = ["--data", str(DATA / "toy_sequences.txt"), "--format", "lines", "--out", str(tmp_path),
            "--models", ",".join(models), "--epochs", "2", "--seed", "1", "--threads", "1"]
    assert seqrec.main(argv) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    check_structure(results, models)
    printed = capsys.readouterr().out
    report = (tmp_path / "results.md").read_text()
    for name in models:
        assert f"| {name} | full |" in report and f"| {name} | sampled99 |" in printed
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["n_users"] == 60 and run["test_cases"] == 60
    assert run["models"]["lstm"]["best_epoch"] in (1, 2) and run["models"]["lstm"]["train"]["epochs"] == 2
    assert not list(tmp_path.glob(".*"))  # atomic writes left no temporary files
    assert seqrec.main(argv) == 0  # same seed, same numbers
    assert json.loads((tmp_path / "results.json").read_text()) == results


def test_cli_trains_identically_whatever_the_test_items(tmp_path):
    """The leak check of the published-protocol pipeline: with every user's last item changed, each
    epoch's training loss and validation NDCG@10 stay the same, and only the test scores move."""
    lines = (DATA / "toy_sequences.txt").read_text().splitlines()
    changed = tmp_path / "changed.txt"
    changed.write_text("".join(" ".join(f[:-1] + [str(int(f[-1]) % 130 + 1)]) + "\n" for f in map(str.split, lines)))
    runs = []
    for path, name in ((DATA / "toy_sequences.txt", "original"), (changed, "changed")):
        argv = ["--data", str(path), "--format", "lines", "--out", str(tmp_path / name), "--models", "lstm,gcn",
                "--epochs", "3", "--patience", "3", "--loss", "bce", "--threads", "1"]
        assert seqrec.main(argv) == 0
        runs.append([json.loads((tmp_path / name / f).read_text()) for f in ("run.json", "results.json")])
    (run, results), (changed_run, changed_results) = runs
    for model in ("lstm", "gcn"):
        assert run["models"][model]["train"]["loss"] == "bce"
        strip = [{k: e[k] for k in ("loss", "NDCG@10")} for e in run["models"][model]["epochs"]]
        assert strip == [{k: e[k] for k in ("loss", "NDCG@10")} for e in changed_run["models"][model]["epochs"]]
        assert results[model]["full"] != changed_results[model]["full"]


def _as_csv(lines_file: Path, out: Path) -> Path:
    """The ``user item item ...`` file as a ``user,item,time`` CSV (another supported format)."""
    rows = ["user,item,time"]
    for line in lines_file.read_text().splitlines():
        user, *items = line.split()
        rows += [f"{user},{item},{t}" for t, item in enumerate(items)]
    out.write_text("\n".join(rows) + "\n")
    return out


def test_cli_curve_of_the_sampled_softmax_transformer_in_two_formats(tmp_path):
    """The budgeted transformer command: a snapshot at 0.6 ms of training (past once the first batch,
    here the whole epoch, ends) is ranked on the test cases, a minute never reached is not, and the
    model chosen on validation closes the curve; the same file as CSV gives the same numbers."""
    outputs = []
    for data in (DATA / "toy_sequences.txt", _as_csv(DATA / "toy_sequences.txt", tmp_path / "toy.csv")):
        out = tmp_path / data.suffix.lstrip(".")
        argv = ["--data", str(data), "--out", str(out), "--models", "popularity,transformer", "--loss", "ss",
                "--ss-negatives", "16", "--epochs", "3", "--schedule", "cosine", "--warmup", "0.1", "--dropout", "0.3",
                "--curve-minutes", "0.00001,1000", "--threads", "1",
                "--time-budget", "0"]  # no budget: the schedule follows the steps, not the clock
        assert seqrec.main(argv) == 0
        results = json.loads((out / "results.json").read_text())
        curve = results["transformer"].pop("curve")
        check_structure(results, ["popularity", "transformer"])
        assert (curve[0]["minutes"], curve[0]["epoch"], curve[0]["selected"]) == (0.00001, 1.0, False)
        assert len(curve) == 2 and curve[1]["selected"] and curve[1]["epoch"] in (1.0, 2.0, 3.0)
        assert curve[1]["HR@10"] == results["transformer"]["full"]["HR@10"]
        run = json.loads((out / "run.json").read_text())["models"]["transformer"]
        assert run["train"]["negatives"] == 16 and run["train"]["loss"] == "ss" and run["config"]["dropout"] == 0.3
        assert run["train"]["snapshot_seconds"] == pytest.approx([0.0006, 60000.0]) and run["total_cpu_seconds"] > 0
        report = (out / "results.md").read_text()
        assert f"| transformer | 0.00 | 1.0 | {curve[0]['HR@10']:.4f} | {curve[0]['NDCG@10']:.4f} |" in report
        assert "(chosen on validation)" in report and '"negatives": 16' in report
        assert (out / "curve.png").stat().st_size > 1000 and (out / "curve.svg").stat().st_size > 1000
        outputs.append((results, curve[0], {k: v for k, v in curve[1].items() if k != "minutes"}))
    assert outputs[0] == outputs[1]  # the chosen epoch's minutes are wall-clock, the rest is repeatable


def test_cli_on_a_simulated_log(tmp_path):
    argv = ["--simulate", "random", "--users", "150", "--out", str(tmp_path), "--models", "popularity,gcn",
            "--epochs", "1", "--threads", "1"]
    assert seqrec.main(argv) == 0
    check_structure(json.loads((tmp_path / "results.json").read_text()), ["popularity", "gcn"])
    assert (tmp_path / "log.parquet").stat().st_size > 1000
    assert "held out" in (tmp_path / "results.md").read_text()


@pytest.mark.parametrize("argv, message", [
    (["--data", "x.txt", "--models", "sasrec"], "--models"),
    (["--data", "x.txt", "--epochs", "0"], "--epochs"),
    (["--data", "x.txt", "--loss", "bpr"], "--loss"),
    (["--models", "lstm"], "one of the arguments --data --simulate is required"),
    (["--simulate", "random", "--holdout", "1.5"], "--holdout"),
    (["--data", "x.txt", "--models", "lstm,transformer", "--loss", "ss"], "--loss ss: only for transformer"),
    (["--data", "x.txt", "--curve-minutes", "5,2"], "--curve-minutes"),
    (["--data", "x.txt", "--curve-minutes", "two"], "--curve-minutes"),
    (["--data", "x.txt", "--ss-negatives", "0"], "--ss-negatives"),
    (["--data", "x.txt", "--dropout", "1"], "--dropout"),
])
def test_cli_refuses_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit):
        seqrec.main(argv)
    assert message in capsys.readouterr().err


def test_cli_names_a_malformed_file(tmp_path):
    with pytest.raises(ValueError, match=r"bad_pairs.txt, line 3"):
        seqrec.main(["--data", str(DATA / "bad_pairs.txt"), "--format", "pairs", "--out", str(tmp_path)])


@pytest.mark.skipif(not (LASTFM / "LastFM.txt").is_file(), reason="LastFM data not present")
def test_lastfm_smoke(tmp_path):
    """Real data in seconds: popularity matches the published full-ranking row (HR@10 0.0440), the
    authors' fixed negatives give sampled HR@10 near the published 0.3037, and an LSTM trains."""
    argv = ["--data", str(LASTFM / "LastFM.txt"), "--negatives", str(LASTFM / "LastFM_sample.txt"),
            "--out", str(tmp_path), "--models", "popularity,lstm", "--epochs", "1", "--threads", "1"]
    assert seqrec.main(argv) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    check_structure(results, ["popularity", "lstm"])
    assert results["popularity"]["full"]["HR@10"] == pytest.approx(0.0440, abs=5e-5)
    assert results["popularity"]["full"]["NDCG@10"] == pytest.approx(0.0200, abs=5e-5)
    assert 0.29 <= results["popularity"]["sampled99"]["HR@10"] <= 0.31
    assert results["lstm"]["full"]["HR@20"] > 0
