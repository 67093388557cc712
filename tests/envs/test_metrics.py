"""Ranking and click metrics against rankings computed by hand, ties included."""

import itertools
import math

import numpy as np
import pytest

from recsim_env.metrics import Ranks, click_metrics, full_ranks, ranking_metrics, sampled_ranks


def test_hand_ranked_example():
    # target item 2 scores 0.5; only item 0 (0.9) is above it: 0-based rank 1
    ranks = full_ranks(np.array([[0.9, 0.1, 0.5, 0.3]]), np.array([2]))
    assert (ranks.above[0], ranks.tied[0]) == (1, 0)
    m = ranking_metrics(ranks, ks=(1, 2, 5))
    assert m["HR@1"] == 0 and m["HR@2"] == 1 and m["HR@5"] == 1
    assert m["NDCG@1"] == 0 and m["NDCG@2"] == pytest.approx(1 / math.log2(3))
    assert m["MRR"] == pytest.approx(0.5)


def test_means_over_cases():
    scores = np.array([[0.1, 0.9, 0.2], [0.8, 0.1, 0.3], [0.2, 0.3, 0.1]])
    m = ranking_metrics(full_ranks(scores, np.array([1, 2, 2])), ks=(1, 2))  # ranks 0, 1, 2
    assert m["HR@1"] == pytest.approx(1 / 3) and m["HR@2"] == pytest.approx(2 / 3)
    assert m["NDCG@2"] == pytest.approx((1 + 1 / math.log2(3)) / 3)
    assert m["MRR"] == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)


def test_ties_pessimistic_expected_optimistic():
    # target 0 ties with items 1 and 2, beats item 3: possible 0-based ranks 0, 1, 2
    ranks = full_ranks(np.array([[1.0, 1.0, 1.0, 0.0]]), np.array([0]))
    assert (ranks.above[0], ranks.tied[0]) == (0, 2)
    pess = ranking_metrics(ranks, ks=(1, 2, 3))
    assert pess["HR@1"] == 0 and pess["HR@2"] == 0 and pess["HR@3"] == 1
    assert pess["NDCG@3"] == pytest.approx(0.5) and pess["MRR"] == pytest.approx(1 / 3)
    exp = ranking_metrics(ranks, ks=(1, 2, 3), ties="expected")
    assert exp["HR@1"] == pytest.approx(1 / 3) and exp["HR@2"] == pytest.approx(2 / 3)
    assert exp["NDCG@2"] == pytest.approx((1 + 1 / math.log2(3)) / 3)
    assert exp["MRR"] == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)
    opt = ranking_metrics(ranks, ks=(1,), ties="optimistic")
    assert opt["HR@1"] == 1 and opt["MRR"] == 1


def test_expected_rule_is_the_mean_over_every_tie_order():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 3, size=(6, 7)).astype(float)  # many ties
    targets = rng.integers(0, 7, size=6)
    expected = ranking_metrics(full_ranks(scores, targets), ks=(1, 2, 4), ties="expected", per_case=True)
    for case in range(6):
        values = []
        for order in itertools.permutations(range(7)):  # every tie-break: rank by (score, order)
            key = scores[case] + 1e-3 * np.array(order) / 7
            rank = int(np.sum(key > key[targets[case]]))
            values.append([rank < 1, rank < 2, rank < 4, (rank < 4) / math.log2(rank + 2), 1 / (rank + 1)])
        brute = np.mean(values, axis=0)
        got = [expected[k][case] for k in ("HR@1", "HR@2", "HR@4", "NDCG@4", "MRR")]
        np.testing.assert_allclose(got, brute, atol=1e-12)


def test_constant_scorer_gets_nothing_pessimistically():
    ranks = full_ranks(np.zeros((3, 50)), np.array([0, 10, 49]))
    assert ranking_metrics(ranks, ks=(10,))["HR@10"] == 0
    assert ranking_metrics(ranks, ks=(10,), ties="expected")["HR@10"] == pytest.approx(10 / 50)


def test_excluded_items_do_not_compete_and_an_excluded_target_is_a_miss():
    scores = np.array([[0.9, 0.8, 0.1, 0.5], [0.9, 0.8, 0.1, 0.5]])
    exclude = np.array([[True, True, False, False], [False, False, False, True]])
    ranks = full_ranks(scores, np.array([3, 3]), exclude)
    assert ranks.above[0] == 0  # items 0 and 1 are excluded: target is first
    assert ranks.above[1] == 3  # the target itself is excluded: after all 3 competitors
    assert ranking_metrics(ranks, ks=(1,), per_case=True)["HR@1"].tolist() == [1.0, 0.0]


def test_sampled_equals_full_ranking_over_the_same_candidates():
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 5, size=(20, 11)).astype(float)
    full = full_ranks(scores, np.zeros(20, np.int64))
    sampled = sampled_ranks(scores[:, 0], scores[:, 1:])
    np.testing.assert_array_equal(full.above, sampled.above)
    np.testing.assert_array_equal(full.tied, sampled.tied)


def test_ranks_concatenate_across_batches():
    a, b = Ranks(np.array([0, 3]), np.array([0, 1])), Ranks(np.array([5]), np.array([0]))
    joined = Ranks.concat([a, b])
    assert joined.above.tolist() == [0, 3, 5] and joined.tied.tolist() == [0, 1, 0]


@pytest.mark.parametrize("call, match", [
    (lambda: full_ranks(np.array([[np.nan, 1.0]]), np.array([0])), "NaN"),
    (lambda: full_ranks(np.ones((2, 3)), np.array([0, 3])), "targets must lie"),
    (lambda: full_ranks(np.ones((2, 3)), np.array([0])), "targets"),
    (lambda: ranking_metrics(Ranks(np.zeros(1, np.int64), np.zeros(1, np.int64)), ks=(0,)), "cut-off"),
    (lambda: ranking_metrics(Ranks(np.zeros(1, np.int64), np.zeros(1, np.int64)), ties="random"), "ties"),
    (lambda: ranking_metrics(Ranks.concat([])), "empty"),
])
def test_bad_input_is_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_click_metrics_by_hand():
    clicked = np.array([1, 0, 1, 1, 0, 0])
    scores = np.array([0.9, 0.8, 0.4, 0.7, 0.2, 0.1])
    m = click_metrics(clicked, scores)  # predicted clicks: 0, 1, 3 -> tp 2, fp 1, fn 1
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    # (click, non-click) pairs won: 0.9 beats all 3; 0.4 and 0.7 each beat 0.2 and 0.1 -> 7 of 9
    assert m["roc_auc"] == pytest.approx(7 / 9)


def test_auc_counts_ties_one_half():
    assert click_metrics(np.array([1, 0, 1, 0]), np.full(4, 0.3))["roc_auc"] == 0.5
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 200)
    s = rng.integers(0, 4, 200).astype(float)
    pos, neg = s[y == 1], s[y == 0]
    brute = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg))
    assert click_metrics(y, s)["roc_auc"] == pytest.approx(brute)


def test_click_metrics_edge_cases():
    m = click_metrics(np.array([0, 1]), np.array([0.1, 0.2]))  # nothing predicted a click
    assert m["precision"] == 0 and m["recall"] == 0 and m["f1"] == 0 and m["roc_auc"] == 1
    with pytest.raises(ValueError, match="both clicks and non-clicks"):
        click_metrics(np.array([1, 1]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="0/1"):
        click_metrics(np.array([2, 0]), np.array([0.1, 0.2]))
