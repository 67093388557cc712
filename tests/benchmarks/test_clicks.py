"""The click-prediction benchmark: its data builders, its intervals and sentences, and the command end to end."""

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("pyarrow")

from benchmarks import clicks
from recsim_env.logs import load_sequences

DATA = Path(__file__).parents[1] / "data"
# The public Beauty and Open Bandit files, when a ``shared/data`` folder lies beside the checkout (skipped otherwise).
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
BEAUTY = SHARED / "s3rec-beauty" / "Beauty.txt"
OBD = SHARED / "obd-small"
TINY = ["--users", "120", "--test-users", "60", "--seeds", "2", "--epochs", "1", "--resamples", "20",
        "--max-impressions", "3000", "--threads", "1"]


def test_beauty_impressions_pair_each_last_item_with_untouched_negatives():
    train, test, info = clicks.beauty_data(str(DATA / "toy_sequences.txt"), negatives=3, seed=0)
    seqs = load_sequences(DATA / "toy_sequences.txt")
    assert info["negatives_per_positive"] == 3 and len(train) + len(test) == 4 * seqs.n_users
    dense = {tuple(seqs.user(u) - 1) for u in range(seqs.n_users)}  # every user's items, 0-based
    for data in (train, test):
        assert data.positive_rate == pytest.approx(0.25)
        for g in np.unique(data.group)[:15]:
            rows = np.flatnonzero(data.group == g)
            history = data.history[rows[0]][data.history[rows[0]] >= 0]
            assert (data.history[rows] == data.history[rows[0]]).all()  # one history for the positive and its negatives
            sequence = (*history, data.item[rows[0]])
            assert data.clicked[rows[0]] and not data.clicked[rows[1:]].any() and sequence in dense
            assert not np.isin(data.item[rows[1:]], sequence).any()  # negatives: items the user never touched
    # the item-click feature counts the training users' histories (every item but the last), never a target
    histories = train.history[train.clicked]
    expected = np.bincount(histories[histories >= 0], minlength=seqs.n_items)
    np.testing.assert_allclose(np.expm1(train.context[:, 1]), expected[train.item], rtol=1e-5)
    np.testing.assert_allclose(np.expm1(test.context[:, 1]), expected[test.item], rtol=1e-5)


def test_summary_intervals_are_paired_and_contain_the_mean():
    rng = np.random.default_rng(0)
    cases = []
    for _ in range(3):
        group = np.repeat(np.arange(200), 5)
        clicked = rng.random(1000) < 0.3
        good = clicked + rng.normal(0, 0.8, 1000)
        case = clicks._Case(clicked, group, {"lstm": 1 / (1 + np.exp(-good)), "logistic": rng.random(1000)},
                            {"lstm": 0.5, "logistic": 0.5})
        cases.append(case)
    summary = clicks.summarise(cases, n_resamples=100)
    for model in ("lstm", "logistic"):
        for metric, (low, high) in summary[model]["interval"].items():
            assert low <= summary[model]["mean"][metric] <= high, (model, metric)
    assert summary["lstm"]["mean"]["roc_auc"] > 0.75 and abs(summary["logistic"]["mean"]["roc_auc"] - 0.5) < 0.05
    diff = summary["lstm_minus_logistic_roc_auc"]
    assert diff["seeds_lstm_ahead"] == 3 and diff["interval"][0] > 0.2
    assert diff["mean"] == pytest.approx(summary["lstm"]["mean"]["roc_auc"] - summary["logistic"]["mean"]["roc_auc"])


def fake_study(lstm_auc: float, logistic_auc: float, rate: float) -> dict:
    def model(auc):
        mean = {k: 0.1 for k in clicks.TABLE_METRICS} | {"roc_auc": auc, "accuracy": 1 - rate,
                                                        "positive_rate": rate, "always_no_accuracy": 1 - rate}
        return {"mean": mean, "interval": {k: [0.0, 1.0] for k in clicks.INTERVAL_METRICS}}

    d = lstm_auc - logistic_auc
    return {"info": {"source": "x", "train_impressions": 10, "test_impressions": 5}, "seeds": 5,
            "summary": {"lstm": model(lstm_auc), "logistic": model(logistic_auc),
                        "lstm_minus_logistic_roc_auc": {"mean": d, "interval": [d - 0.01, d + 0.01],
                                                        "seeds_lstm_ahead": 5 * (d > 0), "seeds": 5}}}


@pytest.mark.parametrize("lstm, logistic, verdict", [
    (0.70, 0.60, "the LSTM click model beats logistic regression"),
    (0.60, 0.70, "logistic regression beats the LSTM click model"),
    (0.600, 0.605, "are not told apart"),
])
def test_sentences_follow_the_numbers(lstm, logistic, verdict):
    text = "\n".join(clicks.study_markdown("obd", "T", fake_study(lstm, logistic, 0.004)))
    assert verdict in text
    assert "Positives are 0.4% of the held-out impressions, so always predicting no click is 99.6% accurate." in text
    assert "lstm, logistic are no more accurate than that: accuracy alone says nothing here" in text
    assert f"The best learnt model by ROC-AUC is {'lstm' if lstm > logistic else 'logistic'}" in text
    assert "No learnt model's ROC-AUC interval lies above 0.5" in text  # the fake intervals are [0, 1]


def check_outputs(out: Path, studies: list[str], learnt: tuple[str, ...] = clicks.MODEL_NAMES) -> dict:
    results = json.loads((out / "results.json").read_text())
    report = (out / "results.md").read_text()
    for study in studies:
        summary = results[study]["summary"]
        models = [*learnt] + (["oracle"] if study == "simulated" else [])
        assert [m for m in summary if not m.startswith("lstm_minus")] == models
        rate = summary["lstm"]["mean"]["positive_rate"]
        assert f"Positives are {rate:.1%} of the held-out impressions" in report
        for m in models:
            mean = summary[m]["mean"]
            assert 0.0 <= mean["roc_auc"] <= 1.0 and 0.0 < mean["threshold"] < 1.0
            assert f"| {m} | {mean['roc_auc']:.3f} [" in report
    assert (out / "clicks.png").stat().st_size > 1000 and (out / "clicks.svg").is_file()
    assert not list(out.glob(".*"))  # atomic writes left no temporary files
    return results


def test_cli_on_simulated_users_end_to_end(tmp_path, capsys):
    assert clicks.main([*TINY, "--out", str(tmp_path)]) == 0
    results = check_outputs(tmp_path, ["simulated"])
    oracle, logistic = (results["simulated"]["summary"][m]["mean"]["roc_auc"] for m in ("oracle", "logistic"))
    assert oracle > 0.6 and oracle > logistic  # the exact probability is the ceiling
    assert "Not run: pass `--beauty PATH`." in capsys.readouterr().out
    assert clicks.main([*TINY, "--out", str(tmp_path)]) == 0  # same seeds, same numbers
    again = json.loads((tmp_path / "results.json").read_text())
    assert again["simulated"]["summary"] == results["simulated"]["summary"]


@pytest.mark.skipif(not (BEAUTY.is_file() and (OBD / "random" / "all.csv").is_file()),
                    reason="the Beauty and Open Bandit files are not in shared/data")
def test_cli_on_beauty_and_obd(tmp_path):
    argv = [*TINY, "--seeds", "1", "--beauty", str(BEAUTY), "--obd", str(OBD), "--studies", "beauty,obd",
            "--models", "lstm,logistic", "--out", str(tmp_path)]
    assert clicks.main(argv) == 0
    results = check_outputs(tmp_path, ["beauty", "obd"], ("lstm", "logistic"))
    assert results["obd"]["info"]["reader"] == "recsim_env.logs.obd.read_obd"
    obd = results["obd"]["summary"]["logistic"]["mean"]
    assert obd["positive_rate"] < 0.01 and obd["always_no_accuracy"] > 0.99
    assert results["beauty"]["summary"]["logistic"]["mean"]["positive_rate"] == pytest.approx(0.2)
    assert "Not run: not among `--studies`." in (tmp_path / "results.md").read_text()


@pytest.mark.skipif(not (OBD / "random" / "all.csv").is_file(), reason="the Open Bandit files are not in shared/data")
def test_obd_history_is_the_affinity_items_strongest_last():
    data, _info = clicks.obd_data(str(OBD))
    assert len(data) == 10_000 and int(data.clicked.sum()) == 38 and data.n_items == 80
    assert data.context.shape[1] == data.features.shape[1] - 2
    has = np.flatnonzero((data.history >= 0).any(1))
    assert 0 < len(has) < len(data) and (data.history[has, -1] >= 0).all()  # right-aligned, left-padded


@pytest.mark.parametrize("argv, message", [
    (["--models", "sasrec"], "--models='sasrec': allowed a comma-separated subset of lstm, transformer, logistic"),
    (["--seeds", "0"], "--seeds=0 is out of range: allowed >= 1"),
    (["--studies", "movielens"], "--studies='movielens'"),
    (["--beauty", "no/such/Beauty.txt"], "--beauty=no/such/Beauty.txt: no such file"),
    (["--obd", "no/such/dir"], "--obd=no/such/dir: no all.csv there"),
    (["--users", "many"], "argument --users: invalid int value: 'many'"),
])
def test_bad_options_stop_with_one_line(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        clicks.main([*argv, "--out", str(tmp_path)])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]
    assert not list(tmp_path.iterdir())


def test_out_is_required(capsys):
    with pytest.raises(SystemExit):
        clicks.main(["--seeds", "1"])
    assert "--out" in capsys.readouterr().err
