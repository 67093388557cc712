"""Repeated retraining end to end on a tiny budget: rounds, resume, sentences that follow the numbers."""

import json

import pytest

from benchmarks import feedback_loop
from benchmarks.feedback_loop import LoopConfig, findings, main, run

TINY = dict(learners=("popularity",), rounds=2, seeds=(0, 1), log_steps=3000, eval_users=60, accuracy_users=30,
            epochs=1)


def test_rounds_are_measured_stored_and_resumed_without_refitting(tmp_path, monkeypatch):
    cfg = LoopConfig(out=str(tmp_path), **TINY)
    first = run(cfg, progress=False)
    summary = first["summary"]["popularity"]
    assert len(summary["return"]["rounds"]) == 3  # round 0 (the logging policy) and two retrained rounds
    for key, _, _ in feedback_loop.MEASURES:
        assert all(r["low"] <= r["estimate"] <= r["high"] for r in summary[key]["rounds"]), key
    assert 0.0 < summary["coverage"]["rounds"][0]["estimate"] <= 1.0 and summary["gini"]["loop"] is not None
    assert (tmp_path / "rounds.png").stat().st_size > 5_000 and (tmp_path / "rounds.svg").exists()
    report = (tmp_path / "results.md").read_text()
    assert all(sentence in report for sentence in first["findings"])
    # a second run reads every stored round: nothing is fitted or logged again, the numbers are the same
    monkeypatch.setitem(feedback_loop.LEARNERS, "popularity", lambda *a: pytest.fail("refitted a stored round"))
    monkeypatch.setattr(feedback_loop, "collect_log", lambda *a, **k: pytest.fail("logged a stored round"))
    assert run(cfg, progress=False)["summary"] == first["summary"]


def test_an_interrupted_round_is_redone_from_the_stored_log(tmp_path):
    cfg = LoopConfig(out=str(tmp_path), **{**TINY, "seeds": (0,)})
    before = json.dumps(run(cfg, progress=False)["summary"])  # text: one seed leaves NaN bounds, and NaN != NaN
    (tmp_path / "work" / "popularity__seed0__round2.json").unlink()
    assert json.dumps(run(cfg, progress=False)["summary"]) == before  # refitted from round 1's log, bit for bit


def test_the_verdicts_follow_the_numbers():
    def interval(x):
        return {"estimate": x, "low": x - 0.01, "high": x + 0.01}

    def summary(gini_change, cosine_change):
        measures = {key: {"rounds": [interval(1.0)] * 3, "loop": interval(0.0), "retraining": interval(0.0)}
                    for key, _, _ in feedback_loop.MEASURES}
        measures["gini"]["loop"] = interval(gini_change)
        measures["mean_cosine"]["loop"] = interval(cosine_change)
        return {"lstm": measures}

    cfg = LoopConfig(rounds=2)
    narrowing = findings(summary(0.2, 0.1), cfg)[0]
    assert "exposure Gini rose (+0.200" in narrowing and "So exposure narrows and users' interests homogenise." in narrowing
    steady = findings(summary(0.0, -0.1), cfg)[0]
    assert "exposure does not narrow measurably, and users' interests do not homogenise measurably" in steady
    assert "the mean cosine of their interests fell (-0.100" in steady


def test_changed_settings_and_bad_options_are_refused(tmp_path, capsys):
    run(LoopConfig(out=str(tmp_path), **{**TINY, "rounds": 1, "seeds": (0,)}), progress=False)
    assert main(["--learners", "popularity", "--rounds", "1", "--seeds", "0", "--log-steps", "4000",
                 "--eval-users", "60", "--accuracy-users", "30", "--epochs", "1", "--out", str(tmp_path)]) == 1
    assert "other settings (log_steps)" in capsys.readouterr().err
    for argv, message in ((["--learners", "nope"], "LoopConfig.learners=('nope',): allowed"),
                          (["--rounds", "0"], "LoopConfig.rounds=0"), (["--seeds", "1,x"], "comma-separated")):
        with pytest.raises(SystemExit):
            main(argv)
        assert message in capsys.readouterr().err
    assert json.loads((tmp_path / "config.json").read_text())["rounds"] == 1
