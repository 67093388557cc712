"""End-to-end click models: validated config, the F1 threshold, padding-blind inputs, learning, the LSTM claim."""

from dataclasses import replace
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import recsim_env  # noqa: F401  (registers the env ids)
from agents.log_accuracy import click_labels, click_prediction
from agents.reference import MyopicPolicy, RandomPolicy
from agents.sequential.click_models import (
    KINDS,
    ClickModelConfig,
    click_report,
    f1_threshold,
    fit_click_model,
    steps_click_data,
)
from recsim_env.logs import collect_steps
from recsim_env.metrics import click_metrics

pytestmark = pytest.mark.usefixtures("one_thread")
#: Small and quick: the simulator's catalogue features place every item, so no id embeddings.
#: The learning rate of the learning test (0.0 there: the check that it can fail).
LR = 3e-3
SMALL = {"embedding_dim": 16, "hidden_dim": 32, "epochs": 8, "patience": 2, "item_ids": False}


def simulated(n_users: int, seed: int, policy=RandomPolicy):
    env = gym.make_vec("recsim_env/InterestDrift-v0", num_envs=n_users, vectorization_mode="vector_entry_point")
    steps = collect_steps(env, policy(env), seed=seed)
    return steps, steps_click_data(steps, env.unwrapped.layout), MyopicPolicy(env)


@pytest.fixture(scope="module")
def random_log():
    """Training and held-out users under the random behaviour policy (wide variety of shown items)."""
    return simulated(400, 1)[1], simulated(300, 2)[1]


def test_config_is_validated_and_names_the_field():
    assert ClickModelConfig().kind == "lstm"
    for kwargs, error, message in (
            ({"kind": "gru"}, ValueError, "ClickModelConfig.kind='gru': allowed 'lstm', 'transformer', 'logistic'"),
            ({"num_heads": 3}, ValueError, "ClickModelConfig.num_heads=3: must divide embedding_dim=32"),
            ({"lr": -1e-3}, ValueError, r"ClickModelConfig.lr=-0.001 is out of range: allowed \[0.0, 10.0\]"),
            ({"valid_fraction": 1.0}, ValueError, r"ClickModelConfig.valid_fraction=1.0 is out of range"),
            ({"epochs": 2.5}, TypeError, "ClickModelConfig.epochs must be an integer"),
            ({"item_ids": 1}, TypeError, "ClickModelConfig.item_ids must be a bool")):
        with pytest.raises(error, match=message):
            ClickModelConfig(**kwargs)


def test_click_data_checks_its_shapes_and_ids(random_log):
    data = random_log[0]
    with pytest.raises(ValueError, match="ClickData.group has 3 rows"):
        replace(data, group=data.group[:3])
    with pytest.raises(ValueError, match=r"ClickData.item must lie in \[0, 999\]"):
        replace(data, item=np.where(np.arange(len(data)) == 0, 1000, data.item))
    with pytest.raises(ValueError, match="without ids need observable features"):
        fit_click_model(replace(data, item_features=np.zeros((data.n_items, 0), np.float32)),
                        ClickModelConfig(item_ids=False, epochs=0))


def test_impressions_of_logged_steps_carry_the_logged_labels():
    steps, data, _ = simulated(50, 3)
    assert len(data) == len(steps) * steps.shown.shape[1]
    np.testing.assert_array_equal(data.clicked, click_labels(steps).ravel())
    np.testing.assert_array_equal(data.item, steps.shown.ravel())
    np.testing.assert_array_equal(data.history, steps.history)
    np.testing.assert_array_equal(data.features[:, -steps.item_features.shape[1]:], steps.item_features[data.item])
    assert 0.3 < data.positive_rate < 0.8


def test_f1_threshold_on_a_hand_made_case():
    # thresholds 0.9, 0.8, 0.7, 0.3, 0.1 give F1 2/3, 1/2, 4/5, 2/3, 4/7: the best is 0.7
    assert f1_threshold(np.array([1, 0, 1, 0, 0]), np.array([0.9, 0.8, 0.7, 0.3, 0.1])) == 0.7
    # a tie is one threshold: at 0.5 both tied cases are predicted (F1 1/2), at 0.2 all three (F1 4/5)
    assert f1_threshold(np.array([1, 0, 1]), np.array([0.5, 0.5, 0.2])) == 0.2
    with pytest.raises(ValueError, match="no click"):
        f1_threshold(np.zeros(3, bool), np.array([0.1, 0.2, 0.3]))


def test_f1_threshold_maximises_the_f1_of_click_metrics():
    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.05
    p = np.round(rng.random(300) * 0.5 + 0.3 * y, 2)  # rounded: many ties
    t = f1_threshold(y, p)
    every = max(click_metrics(y, p, float(c))["f1"] for c in np.unique(p))
    assert click_metrics(y, p, t)["f1"] == pytest.approx(every)
    report = click_report(y, p, t)
    assert report["f1@t"] == pytest.approx(every) and report["f1@t"] > report["f1"]
    assert report["always_no_accuracy"] == pytest.approx(1 - y.mean())


@pytest.mark.parametrize("kind", ["lstm", "transformer"])
def test_sequence_models_are_blind_to_the_history_padding(random_log, kind):
    """The same histories left-padded to 50 or cut to the longest one give the same probabilities."""
    data = random_log[1].select(np.arange(2000))
    model = fit_click_model(random_log[0], ClickModelConfig(kind=kind, **{**SMALL, "epochs": 1}))
    width = int((data.history >= 0).sum(1).max())
    narrow = replace(data, history=data.history[:, -width:])
    np.testing.assert_allclose(model.probability(narrow), model.probability(data), rtol=1e-5, atol=1e-6)
    longer = np.concatenate([np.full((len(data), 7), -1), data.history], axis=1)
    np.testing.assert_allclose(model.probability(replace(data, history=longer)), model.probability(data),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_each_model_learns(random_log, kind):
    """Trained beats its untrained twin (same seed, so the same initial weights: ``epochs=0``) on
    held-out users' ROC-AUC, by a margin; and ``lr=0`` is that twin bit for bit.

    Seen to fail with learning switched off: with ``LR = 0.0`` here the trained model is the twin and
    the ROC-AUC margin assertion fails for all three kinds.
    """
    train, test = random_log
    config = ClickModelConfig(kind=kind, seed=5, lr=LR, **SMALL)
    trained = fit_click_model(train, config)
    untrained = fit_click_model(train, replace(config, epochs=0))
    assert untrained.stopped_by == "not trained" and untrained.best_epoch == 0
    auc, auc0 = trained.evaluate(test)["roc_auc"], untrained.evaluate(test)["roc_auc"]
    assert auc > auc0 + 0.05, (auc, auc0)
    assert trained.best_epoch >= 1
    frozen = fit_click_model(train, replace(config, lr=0.0, epochs=1))
    np.testing.assert_array_equal(frozen.probability(test), untrained.probability(test))
    again = fit_click_model(train, config)  # one seed, one model
    np.testing.assert_array_equal(again.probability(test), trained.probability(test))


def test_logged_steps_are_scored_as_log_accuracy_scores_any_agent():
    train = simulated(200, 4)[1]
    steps, test, _ = simulated(100, 5)
    env = gym.make_vec("recsim_env/InterestDrift-v0", num_envs=1, vectorization_mode="vector_entry_point")
    model = fit_click_model(train, ClickModelConfig(kind="lstm", **SMALL))
    agent = SimpleNamespace(name="lstm", click_probability=lambda s: model.steps_probability(s, env.unwrapped.layout))
    assert click_prediction(agent, steps) == {k: v for k, v in model.evaluate(test).items()
                                              if k in ("accuracy", "precision", "recall", "f1", "roc_auc")}


def test_thresholds_are_chosen_on_validation_users_and_beat_half_on_f1(random_log):
    train, test = random_log
    model = fit_click_model(train, ClickModelConfig(kind="logistic", **SMALL))
    report = model.evaluate(test)
    assert 0.0 < model.threshold < 1.0 and report["threshold"] == model.threshold
    assert report["f1@t"] >= report["f1"] - 0.02  # chosen on other users, so not always above
    with pytest.raises(ValueError, match="validation users need both clicks and non-clicks"):
        fit_click_model(replace(train, clicked=np.zeros(len(train), bool)), ClickModelConfig(kind="logistic"))


@pytest.mark.slow
def test_lstm_beats_logistic_regression_on_simulated_myopic_logs():
    """The issue's claim, on the benchmark's setting (default env under the myopic behaviour policy):
    the LSTM click model's held-out ROC-AUC is above logistic regression's on each of two seeds, and
    the oracle's exact probability is above both."""
    for seed in (0, 1):
        _, train, _ = simulated(1500, 10 + seed, MyopicPolicy)
        test_steps, test, oracle = simulated(600, 20 + seed, MyopicPolicy)
        auc = {kind: fit_click_model(train, ClickModelConfig(kind=kind, seed=seed, item_ids=False))
               .evaluate(test)["roc_auc"] for kind in ("lstm", "logistic")}
        ceiling = click_metrics(test.clicked, oracle.click_probability(test_steps).ravel())["roc_auc"]
        assert auc["logistic"] < auc["lstm"] < ceiling, (seed, auc, ceiling)
