"""The Open Bandit Dataset loader, its one-step propensity log, and Bernoulli TS's action distribution."""

import csv
import hashlib
import itertools
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, stats

pytest.importorskip("pyarrow")

from agents.bandit_policies import BernoulliTS, BernoulliTSConfig, read_prior
from agents.ope import estimate_all
from recsim_env.logs import DataFormatError
from recsim_env.logs.obd import ObdLog, per_impression, read_obd, to_propensity_log

FIXTURE = Path(__file__).parents[1] / "data" / "obd"
BROKEN = FIXTURE / "broken"
# The small Open Bandit Dataset, when a ``shared/data`` folder lies beside the checkout (skipped otherwise).
OBD = Path(__file__).resolve().parents[3] / "shared" / "data" / "obd-small"


def plain_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_reads_the_fixture_as_the_stdlib_csv_module_does():
    obd = read_obd(FIXTURE / "random")
    rows = plain_rows(FIXTURE / "random" / "all.csv")
    assert (len(obd), obd.n_items, obd.n_positions) == (36, 4, 3)
    np.testing.assert_array_equal(obd.item, [int(r["item_id"]) for r in rows])
    np.testing.assert_array_equal(obd.position, [int(r["position"]) - 1 for r in rows])
    np.testing.assert_array_equal(obd.click, [r["click"] == "1" for r in rows])
    np.testing.assert_array_equal(obd.propensity, [float(r["propensity_score"]) for r in rows])
    np.testing.assert_array_equal(obd.affinity, [[float(r[f"user-item_affinity_{i}"]) for i in range(4)] for r in rows])
    assert obd.timestamp.dtype == np.dtype("datetime64[us]")
    assert obd.timestamp[1] == np.datetime64("2019-11-24T00:00:11.000001")
    for j in range(4):  # codes number the sorted distinct categories
        values = [r[f"user_feature_{j}"] for r in rows]
        np.testing.assert_array_equal(obd.user_features[:, j], [sorted(set(values)).index(v) for v in values])
    assert obd.item_context_columns == ("item_feature_0", "item_feature_1", "item_feature_2", "item_feature_3")
    np.testing.assert_array_equal(obd.item_context, [[-0.5, 2, 0, 1], [-0.25, 0, 0, 1], [0.75, 0, 1, 0],
                                                     [1.5, 1, 2, 2]])
    assert obd.ctr == pytest.approx(4 / 36)
    assert obd.metadata["campaign"] == "all"
    assert obd.metadata["sha256"] == hashlib.sha256((FIXTURE / "random" / "all.csv").read_bytes()).hexdigest()


@pytest.mark.parametrize("campaign, message", [
    ("missing_column", r"missing_column.csv, line 1: expected column click in the header"),
    ("item_range", r"item_range.csv, line 5: expected an item id in column 'item_id' \(an integer in 0..3\), got '4'"),
    ("position_range", r"position_range.csv, line 4: expected a position in column 'position' .*got '0'"),
    ("click_value", r"click_value.csv, line 6: expected a click in column 'click' \(an integer in 0..1\), got '2'"),
    ("propensity_zero", (r"propensity_zero.csv, line 3: expected a propensity in column 'propensity_score' "
                         r"\(a number in \(0, 1\]\), got '0.0'")),
    ("propensity_above_one", r"propensity_above_one.csv, line 7: .*'propensity_score'.*got '1.5'"),
    ("not_a_number", r"not_a_number.csv, line 4: expected a number in column 'user-item_affinity_1', got 'many'"),
    ("header_only", r"header_only.csv, line 2: expected at least one data row"),
    ("empty", r"empty.csv, line 1: expected a header line, got 'an empty file'"),
    ("ragged", r"ragged.csv, line 5: expected as many fields as the header"),
])
def test_a_malformed_file_names_file_line_and_column(campaign, message):
    with pytest.raises(DataFormatError, match=message):
        read_obd(BROKEN, campaign)


def test_refuses_missing_paths_bad_names_and_positions_beyond_the_slots(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such data folder"):
        read_obd(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="men.csv: no such data file"):
        read_obd(FIXTURE / "random", "men")
    with pytest.raises(ValueError, match="campaign='../all'"):
        read_obd(FIXTURE, "../all")
    first_slot_3 = 2 + next(i for i, r in enumerate(plain_rows(FIXTURE / "random" / "all.csv")) if r["position"] == "3")
    with pytest.raises(DataFormatError, match=rf"line {first_slot_3}: expected a position .*1..2"):
        read_obd(FIXTURE / "random", n_positions=2)
    shutil.copy(FIXTURE / "random" / "all.csv", tmp_path / "all.csv")
    context = (FIXTURE / "random" / "item_context.csv").read_text().replace("\n3,3,", "\n3,1,")
    (tmp_path / "item_context.csv").write_text(context)
    with pytest.raises(DataFormatError, match=r"item_context.csv, line 5: expected each item id 0..3 once"):
        read_obd(tmp_path)


def test_propensity_log_rows_and_the_standard_estimators_by_hand():
    obd = read_obd(FIXTURE / "random")
    log = to_propensity_log(obd, policy_name="random")
    assert len(log) == log.n_users == 36 and (log.step == 0).all() and log.terminated.all()
    np.testing.assert_array_equal(log.probabilities, np.full((36, 4), 0.25))  # every propensity is 1/n_items
    np.testing.assert_array_equal(log.candidates[0], np.arange(4))
    np.testing.assert_array_equal(log.position, obd.item)
    np.testing.assert_array_equal(log.obs[:, 0], obd.position)
    assert log.metadata["obs_columns"][0] == "position" and log.metadata["sha256"] == obd.metadata["sha256"]
    # A target that favours item 0 on the left slot and item 3 elsewhere; a reward model per (item, slot).
    pi = np.array([[0.7, 0.1, 0.1], [0.1, 0.1, 0.1], [0.1, 0.1, 0.1], [0.1, 0.7, 0.7]])
    q = np.arange(12, dtype=np.float64).reshape(4, 3) / 100
    target, q_rows = per_impression(obd, pi), per_impression(obd, q)
    np.testing.assert_array_equal(target[5], pi[:, obd.position[5]])
    result = estimate_all(log, target, q_rows, estimators=("is", "wis", "dr"))
    w = pi[obd.item, obd.position] / obd.propensity
    c = obd.click.astype(float)
    assert result["is"].estimate == pytest.approx(np.mean(w * c))
    assert result["wis"].estimate == pytest.approx(np.sum(w * c) / np.sum(w))
    v = (pi * q).sum(axis=0)[obd.position]
    assert result["dr"].estimate == pytest.approx(np.mean(v + w * (c - q[obd.item, obd.position])))
    # Evaluating the logging policy itself gives back the log's own CTR.
    assert estimate_all(log, np.full((36, 4), 0.25), estimators=("is",))["is"].estimate == pytest.approx(obd.ctr)


def test_a_non_uniform_log_keeps_only_its_logged_entry_unless_given_the_behaviour():
    obd = read_obd(FIXTURE / "bts")
    log = to_propensity_log(obd)
    rows = np.arange(len(obd))
    np.testing.assert_array_equal(log.probabilities[rows, obd.item], obd.propensity)
    assert np.isnan(log.probabilities).sum() == len(obd) * (obd.n_items - 1)
    behaviour = np.array([[0.1, 0.2, 0.3], [0.5, 0.3, 0.1], [0.3, 0.3, 0.3], [0.1, 0.2, 0.3]])  # the fixture's
    np.testing.assert_allclose(to_propensity_log(obd, behaviour).probabilities, behaviour.T[obd.position])
    with pytest.raises(ValueError, match="where the log recorded the propensity"):
        to_propensity_log(obd, np.full((4, 3), 0.25))
    with pytest.raises(ValueError, match=r"shape \(4, 2\): expected \(4, 3\)"):
        per_impression(obd, np.full((4, 2), 0.25))


def test_reads_the_prior_and_names_a_bad_line():
    prior = read_prior(FIXTURE / "prior_bts.yaml")
    assert list(prior) == ["all", "men"]
    np.testing.assert_array_equal(prior["all"]["alpha"], [2, 5, 3, 1])
    np.testing.assert_array_equal(prior["men"]["beta"], [3, 4])
    with pytest.raises(ValueError, match=r"broken/prior_bts.yaml, line 4: expected a positive number, got '-1.0'"):
        read_prior(BROKEN / "prior_bts.yaml")
    with pytest.raises(ValueError, match="campaign='women' is not in .*allowed all, men"):
        BernoulliTS.from_prior(FIXTURE / "prior_bts.yaml", "women")


def exact_rank_probabilities(alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """``(3, 3)`` P(item i in slot k) for three Beta draws, by integrating every ordering's density."""
    pdf = [stats.beta(a, b).pdf for a, b in zip(alpha, beta)]
    cdf = [stats.beta(a, b).cdf for a, b in zip(alpha, beta)]
    exact = np.zeros((3, 3))
    for first, second, third in itertools.permutations(range(3)):
        # P(theta_first > theta_second > theta_third)
        def below(x, b=second, c=third):
            return integrate.quad(lambda y: pdf[b](y) * cdf[c](y), 0, x)[0]

        p = integrate.quad(lambda x, a=first: pdf[a](x) * below(x), 0, 1)[0]
        for slot, item in enumerate((first, second, third)):
            exact[item, slot] += p
    return exact


def test_bernoulli_ts_distribution_matches_exact_integration():
    alpha, beta = np.array([2.0, 5.0, 3.0]), np.array([6.0, 4.0, 3.0])
    exact = exact_rank_probabilities(alpha, beta)
    assert exact.sum() == pytest.approx(3.0, abs=1e-8)
    matrix = BernoulliTS(alpha, beta, BernoulliTSConfig(n_positions=3, n_draws=200_000, seed=1)).action_distribution()
    np.testing.assert_allclose(matrix, exact, atol=0.006)  # about 5 standard errors of 200,000 draws
    np.testing.assert_allclose(matrix.sum(axis=0), 1.0)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0)


def test_fewer_slots_and_chunking_reuse_the_same_draws():
    alpha, beta = np.array([2.0, 5.0, 3.0, 1.0]), np.array([8.0, 5.0, 7.0, 9.0])
    full = BernoulliTS(alpha, beta, BernoulliTSConfig(n_positions=4, n_draws=5000, chunk=5000, seed=3))
    two = BernoulliTS(alpha, beta, BernoulliTSConfig(n_positions=2, n_draws=5000, chunk=333, seed=3))
    matrix = two.action_distribution()
    np.testing.assert_array_equal(matrix, full.action_distribution()[:, :2])
    np.testing.assert_allclose(matrix.sum(axis=0), 1.0)
    assert (matrix.sum(axis=1) <= 1.0 + 1e-12).all()
    assert not np.array_equal(matrix, BernoulliTS(alpha, beta, BernoulliTSConfig(
        n_positions=2, n_draws=5000, seed=4)).action_distribution())


def test_bernoulli_ts_refuses_bad_parameters():
    with pytest.raises(ValueError, match=r"BernoulliTSConfig.n_draws=0 is out of range: allowed \[1, "):
        BernoulliTSConfig(n_draws=0)
    with pytest.raises(ValueError, match=r"n_positions=3 is out of range: allowed \[1, 2\]"):
        BernoulliTS(np.ones(2), np.ones(2))
    with pytest.raises(ValueError, match="BernoulliTS.beta is out of range"):
        BernoulliTS(np.ones(3), np.array([1.0, 0.0, 1.0]))


@pytest.mark.skipif(not (OBD / "random" / "all.csv").is_file(), reason="Open Bandit Dataset not present")
def test_the_shipped_files():
    """The small OBD as its README describes it: row and click counts, propensities, checksums."""
    random, bts = read_obd(OBD / "random"), read_obd(OBD / "bts")
    assert (len(random), int(random.click.sum()), len(bts), int(bts.click.sum())) == (10_000, 38, 10_000, 42)
    assert (random.n_items, random.n_positions, random.affinity.shape) == (80, 3, (10_000, 80))
    np.testing.assert_allclose(random.propensity, 0.0125)
    assert bts.propensity.min() == pytest.approx(4.5e-05) and bts.propensity.max() == pytest.approx(0.95424)
    assert random.metadata["sha256"] == "7168295b6e0a9eabcf3392320a5dd434e542b68e705d5cd9491499af589812f1"
    assert bts.metadata["sha256"] == "0ad874e4dbf6902f0845dd478ad8dde5ef6903583d3ffaace78411bdad064106"
    policy = BernoulliTS.from_prior(OBD / "prior_bts.yaml", config=BernoulliTSConfig(n_draws=20_000))
    matrix = policy.action_distribution()
    assert matrix.shape == (80, 3) and isinstance(random, ObdLog)
    np.testing.assert_allclose(matrix.sum(axis=0), 1.0)
