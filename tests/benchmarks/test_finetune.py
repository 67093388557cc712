"""The fine-tuning benchmark: the command end to end on a tiny budget, resuming, refusals, the curve-measuring
DQN training exactly like the plain one, and the steps-to-match rule."""

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

import recsim_env  # noqa: F401  (registers the env ids)
from agents.dqn import DQNAgent, DQNConfig
from agents.training import run
from benchmarks import finetune

TINY_ARGS = ["--seeds", "2", "--steps", "2000", "--pretrain-users", "40", "--pretrain-epochs", "1", "--eval-users", "16",
             "--curve-users", "8", "--curve-points", "2", "--train-users", "32", "--encoder", "mlp"]


def test_command_end_to_end_writes_resumes_and_refuses_other_settings(tmp_path, capsys):
    out = tmp_path / "ft"
    assert finetune.main([*TINY_ARGS, "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert {"returns", "gaps", "steps_to_match", "findings", "seeds"} <= set(results)
    assert set(results["returns"]) == {"scratch", "finetuned", "frozen"}
    for record in results["seeds"]:
        for arm in ("scratch", "finetuned"):
            assert record[arm]["curve_steps"][0] == 0 and len(record[arm]["curve_steps"]) == 3
            assert record[arm]["train_steps"] >= 2000 and len(record[arm]["returns"]) == 16
        assert record["finetuned"]["copied"] == ["encoder", "item_in", "user_in", "pair.1"]
        assert record["scratch"]["copied"] == []
    report = (out / "results.md").read_text()
    scratch = results["returns"]["scratch"]
    assert f"{scratch['estimate']:.2f} [{scratch['low']:.2f}, {scratch['high']:.2f}]" in report  # sentences from numbers
    assert all(line in report for line in results["findings"])
    assert (out / "learning_curves.png").stat().st_size > 0 and (out / "learning_curves.svg").exists()
    assert not [p for p in out.rglob(".*")]  # atomic writes left no temporary files
    printed = capsys.readouterr().out
    assert results["findings"][0] in printed

    stored = {p.name: p.stat().st_mtime_ns for p in (out / "seeds").iterdir()}
    assert finetune.main([*TINY_ARGS, "--out", str(out)]) == 0  # resumes: the finished seeds are not redone
    assert {p.name: p.stat().st_mtime_ns for p in (out / "seeds").iterdir()} == stored
    assert json.loads((out / "results.json").read_text())["returns"] == results["returns"]

    with pytest.raises(SystemExit, match=r"seed0.json was made with other settings \(pair differ\)"):
        finetune.main([*TINY_ARGS, "--pair", "none", "--out", str(out)])


@pytest.mark.parametrize("args,message", [(["--encoder", "cnn"], "--encoder='cnn' is out of range: allowed mlp, gru"),
                                          (["--steps", "10"], "--steps=10 is out of range"),
                                          (["--pair", "x"], "--pair='x' is out of range")])
def test_cli_errors_are_one_line(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit):
        finetune.main([*args, "--out", str(tmp_path)])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert message in error
    assert not (tmp_path / "results.json").exists()


def test_curve_measuring_dqn_trains_exactly_like_the_plain_dqn(one_thread_finetune):
    """Evaluating the greedy policy during training draws nothing from training's generators."""
    def vec(n):
        return gym.make_vec("recsim_env/InterestDrift-v0", num_envs=n, vectorization_mode="vector_entry_point")

    config = DQNConfig(total_steps=1_200, hidden=16, batch_size=64, learning_starts=256, buffer_size=4096, seed=4)
    curve = finetune.CurveDQN(vec(16), config, vec(8), curve_seed=9, at=np.array([0, 400, 800]))
    run(curve, vec(16), progress=False, resume=False)
    plain = DQNAgent(vec(16), config=config)
    run(plain, vec(16), progress=False, resume=False)
    assert [step for step, _ in curve.curve] == [0, 400, 800]
    for name, value in plain.online.state_dict().items():
        assert torch.equal(value, curve.online.state_dict()[name]), name


def test_steps_to_reach_is_the_first_point_at_or_above_the_target():
    assert finetune.steps_to_reach([0, 10, 20, 30], [1.0, 5.0, 3.0, 6.0], 5.0) == 10
    assert finetune.steps_to_reach([0, 10], [1.0, 2.0], 2.5) == float("inf")


@pytest.fixture
def one_thread_finetune():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
