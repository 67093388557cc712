"""Repeated retraining end to end on a tiny budget: rounds, resume, sentences that follow the numbers."""

import json
import re

import pytest

from benchmarks import feedback_loop
from benchmarks.feedback_loop import LoopConfig, findings, main, run
from recsim_env.logs.steps import steps_from_log

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


FINETUNED = {"learners": ("finetuned",), "rounds": 1, "seeds": (0,), "log_steps": 3000, "eval_users": 60,
             "accuracy_users": 30, "rl_steps": 3000, "finetune_encoder": "mlp"}


def _vec(users):
    import gymnasium as gym

    return gym.make_vec("recsim_env/InterestDrift-v0", num_envs=users, vectorization_mode="vector_entry_point")


def test_logged_steps_rebuild_the_observations_the_users_saw():
    """What ``finetuned`` pre-trains on: observations rebuilt from a stored log equal, bit for bit, those the
    env showed the same users (collect_steps from the same reset)."""
    import dataclasses

    import numpy as np

    import agents
    from recsim_env.logs import collect_log, collect_steps

    env = _vec(40)
    myopic = agents.make("myopic", env)
    # one episode of each of the env's users from the same reset: the very steps collect_steps records
    rebuilt = steps_from_log(collect_log(env, myopic, 40, seed=7), env)
    truth = collect_steps(env, myopic, seed=7)
    assert len(rebuilt) == len(truth) > 40 and truth.history.max() >= 0
    for name in ("obs", "history", "candidates", "shown", "click", "item", "user", "step"):
        np.testing.assert_array_equal(getattr(rebuilt, name), getattr(truth, name), err_msg=name)
    np.testing.assert_array_equal(rebuilt.item_features, truth.item_features)
    assert np.isnan(rebuilt.interest).all() and np.isnan(rebuilt.budget).all()  # the true state is not logged
    log = collect_log(env, myopic, 40, seed=7)
    with pytest.raises(ValueError, match="several sessions"):
        steps_from_log(dataclasses.replace(log, session=log.session + 1), env)


def test_a_finetuned_round_is_pretrained_on_the_last_log_initialised_from_it_and_deployed(tmp_path, monkeypatch):
    """Round 1 pre-trains on round 0's stored log, the DQN holds exactly the pre-trained towers before RL (a DQN
    with the same seed does not), RL then changes its weights, and that DQN is the policy round 1 measures.
    At rl_steps=1000 (four vector steps of 256 users, before the first 5-step transition is replayed) the
    "RL then changes its weights" check fails: no gradient step is taken."""
    import torch

    from agents.dqn import DQNAgent
    from recsim_env.logs import read_log

    calls = []
    real_pretrain, real_fine_tune, real_measure = (feedback_loop.pretrain_on_log, feedback_loop.fine_tune,
                                                   feedback_loop.measure)

    def pretrain_on_log(log, env, cfg, seed):
        pretrained = real_pretrain(log, env, cfg, seed)
        calls.append({"log": log, "pretrained": pretrained})
        return pretrained

    def fine_tune(agent, env):
        calls[-1].update(agent=agent, before={k: v.clone() for k, v in agent.online.state_dict().items()},
                         target_before={k: v.clone() for k, v in agent.target.state_dict().items()})
        return real_fine_tune(agent, env)

    deployed = []

    def measure(policy, *args):
        deployed.append(policy)
        return real_measure(policy, *args)

    monkeypatch.setattr(feedback_loop, "pretrain_on_log", pretrain_on_log)
    monkeypatch.setattr(feedback_loop, "fine_tune", fine_tune)
    monkeypatch.setattr(feedback_loop, "measure", measure)
    cfg = LoopConfig(out=str(tmp_path), **FINETUNED)
    result = run(cfg, progress=False)
    assert len(calls) == 1 and len(deployed) == 2  # round 1 fitted; rounds 0 and 1 measured
    (call,) = calls
    stored = read_log(tmp_path / "work" / "finetuned__seed0__round0.log.parquet")
    assert call["log"].metadata["seed"] == stored.metadata["seed"] == 20_000
    assert (call["log"].item == stored.item).all() and len(stored) <= cfg.log_steps  # round 0's log
    agent, source = call["agent"], call["pretrained"].network.state_dict()
    assert isinstance(agent, DQNAgent) and agent is deployed[1]  # the fine-tuned DQN is what round 1 deploys
    copied = [k for k in source if k.split(".")[0] in ("encoder", "item_in", "user_in") or k.startswith("pair.1.")]
    assert len(copied) >= 8
    for key in copied:  # before RL, online and target hold the pre-trained weights exactly
        assert torch.equal(call["before"][f"q.{key}"], source[key]), key
        assert torch.equal(call["target_before"][f"q.{key}"], source[key]), key
    fresh = DQNAgent(_vec(2), config=agent.config).online.state_dict()
    assert not all(torch.equal(fresh[f"q.{k}"], source[k]) for k in copied)  # the copy changed the weights
    after = agent.online.state_dict()
    assert any(not torch.equal(after[k], call["before"][k]) for k in after)  # and RL then moved them
    assert agent.config.total_steps == cfg.rl_steps and agent.config.encoder == cfg.finetune_encoder
    summary = result["summary"]["finetuned"]
    assert len(summary["return"]["rounds"]) == 2 and 0.0 < summary["coverage"]["rounds"][1]["estimate"] <= 1.0
    line = [s for s in result["findings"] if s.startswith("finetuned is a DQN")]
    assert len(line) == 1 and "3,000 user-steps" in line[0] and line[0] in (tmp_path / "results.md").read_text()
    # an interrupted round is redone from round 0's stored log, bit for bit: pre-training and RL are seeded
    (tmp_path / "work" / "finetuned__seed0__round1.json").unlink()
    assert json.dumps(run(cfg, progress=False)["summary"]) == json.dumps(result["summary"]) and len(calls) == 2
    # a second run reads every stored round: nothing is pre-trained, fine-tuned or logged again
    monkeypatch.setitem(feedback_loop.LEARNERS, "finetuned", lambda *a: pytest.fail("refitted a stored round"))
    monkeypatch.setattr(feedback_loop, "collect_log", lambda *a, **k: pytest.fail("logged a stored round"))
    assert json.dumps(run(cfg, progress=False)["summary"]) == json.dumps(result["summary"])


def test_the_finetuned_line_and_the_retraining_verdict_follow_the_numbers():
    def interval(x):
        return {"estimate": x, "low": x - 0.01, "high": x + 0.01}

    measures = {key: {"rounds": [interval(1.0)] * 3, "loop": interval(0.0), "retraining": interval(0.0)}
                for key, _, _ in feedback_loop.MEASURES}
    measures["return"].update(loop=interval(25.0), retraining=interval(-3.0))
    measures["coverage"]["retraining"] = interval(-0.2)  # narrowing between the retrained rounds only
    cfg = LoopConfig(rounds=2, rl_steps=5000, finetune_encoder="gru")
    first, own = findings({"finetuned": measures}, cfg)
    assert "So exposure does not narrow measurably" in first
    assert "Over the retraining rounds alone, exposure narrows, and users' interests do not homogenise" in first
    assert "(gru encoder)" in own and "5,000 user-steps" in own
    assert "its return rose (+25.000 [+24.990, +25.010]) from the logging policy to round 2" in own
    assert "and fell (-3.000 [-3.010, -2.990]) over the retraining rounds" in own
    assert len(findings({"lstm": measures}, cfg)) == 1  # the next-item learners have no such line


def test_the_finetuning_settings_are_validated_and_recorded(tmp_path):
    for field, value, allowed in (("rl_steps", 10, "allowed [1000, "), ("finetune_encoder", "cnn", "allowed 'mlp'")):
        with pytest.raises(ValueError, match=rf"LoopConfig\.{field}=.*{re.escape(allowed)}"):
            LoopConfig(**{field: value})
    cfg = LoopConfig(out=str(tmp_path), **{**TINY, "rounds": 1, "seeds": (0,)})
    run(cfg, progress=False)
    record = tmp_path / "config.json"
    saved = json.loads(record.read_text())
    assert (saved["rl_steps"], saved["finetune_encoder"]) == (cfg.rl_steps, "transformer")  # finetune.py's default
    # a record written before these settings existed was made at their defaults: it resumes, and refuses others
    record.write_text(json.dumps({k: v for k, v in saved.items() if k not in ("rl_steps", "finetune_encoder")}))
    run(cfg, progress=False)
    with pytest.raises(ValueError, match=r"other settings \(rl_steps\)"):
        run(LoopConfig(out=str(tmp_path), **{**TINY, "rounds": 1, "seeds": (0,), "rl_steps": 2000}), progress=False)
