"""Ranking metrics against hand-computed values and reference implementations."""

import math

import numpy as np
import pytest

from models import metrics


def brute_auc(labels, scores):
    pos = [s for l, s in zip(labels, scores) if l]
    neg = [s for l, s in zip(labels, scores) if not l]
    pairs = [(1.0 if p > n else 0.5 if p == n else 0.0) for p in pos for n in neg]
    return sum(pairs) / len(pairs)


def test_auc_matches_pairwise_definition_with_ties():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = rng.integers(0, 10, 200) / 10  # many ties
    assert metrics.auc(labels, scores) == pytest.approx(brute_auc(labels, scores))
    assert math.isnan(metrics.auc([1, 1], [0.2, 0.3]))


def brute_delong(labels, scores_a, scores_b):
    """DeLong's 1988 statistic from its pairwise kernel, O(positives x negatives)."""
    def kernel(p, n):
        return 1.0 if p > n else 0.5 if p == n else 0.0

    v10, v01 = [], []
    for scores in (scores_a, scores_b):
        pos = [s for l, s in zip(labels, scores) if l]
        neg = [s for l, s in zip(labels, scores) if not l]
        v10.append([np.mean([kernel(p, n) for n in neg]) for p in pos])
        v01.append([np.mean([kernel(p, n) for p in pos]) for n in neg])
    s10, s01 = np.cov(v10), np.cov(v01)
    m, n = len(v10[0]), len(v01[0])
    variance = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    return np.mean(v10[0]) - np.mean(v10[1]), math.sqrt(variance)


def test_paired_auc_is_delongs_statistic_with_ties():
    rng = np.random.default_rng(3)
    labels = rng.random(300) < 0.2
    truth = rng.normal(size=300) + labels
    scores_a = np.round(truth + rng.normal(scale=0.5, size=300), 1)  # ties within and across classes
    scores_b = np.round(truth + rng.normal(scale=1.5, size=300), 1)
    got = metrics.paired_auc(labels, scores_a, scores_b)
    difference, error = brute_delong(labels, scores_a, scores_b)
    assert got["difference"] == pytest.approx(difference)
    assert got["difference"] == pytest.approx(metrics.auc(labels, scores_a) - metrics.auc(labels, scores_b))
    assert got["standard_error"] == pytest.approx(error)
    assert got["p_value"] == pytest.approx(math.erfc(abs(difference) / error / math.sqrt(2)))


def test_pairing_shrinks_the_error_of_two_networks_that_agree():
    rng = np.random.default_rng(4)
    labels = rng.random(5000) < 0.01  # ~50 positives, as an eval day's orders
    shared = rng.normal(size=5000) + 1.5 * labels
    scores_a, scores_b = shared + rng.normal(scale=0.1, size=5000), shared + rng.normal(scale=0.1, size=5000)
    got = metrics.paired_auc(labels, scores_a, scores_b)
    assert got["standard_error"] < 0.25 * min(got["standard_error_a"], got["standard_error_b"])
    assert got["p_value"] > 0.01  # the same network up to noise
    better = metrics.paired_auc(labels, shared + 2.0 * labels, scores_b)
    assert better["difference"] > 0 and better["p_value"] < 1e-3
    same = metrics.paired_auc(labels, scores_a, scores_a)
    assert same["difference"] == 0 and same["standard_error"] == 0 and same["p_value"] == 1.0
    assert math.isnan(metrics.paired_auc([1, 0, 0], [0.3, 0.2, 0.1], [0.1, 0.2, 0.3])["p_value"])  # one positive


def test_gauc_weights_users_by_impressions_and_skips_single_class_users():
    labels = [1, 0, 0, 1, 0, 1, 1]
    scores = [0.9, 0.1, 0.5, 0.2, 0.8, 0.3, 0.4]
    users = ["a", "a", "a", "b", "b", "c", "c"]  # c has only positives
    auc_a = brute_auc([1, 0, 0], [0.9, 0.1, 0.5])
    auc_b = brute_auc([1, 0], [0.2, 0.8])
    assert metrics.gauc(labels, scores, users) == pytest.approx((3 * auc_a + 2 * auc_b) / 5)


def test_request_metrics_by_hand():
    # request r1: scores rank items as [neg, pos, neg, neg, pos]; r2: [pos, neg]; r3: no positive.
    labels = [0, 1, 0, 0, 1, 1, 0, 0, 0]
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.3, 0.2, 0.9, 0.1]
    requests = ["r1"] * 5 + ["r2"] * 2 + ["r3"] * 2
    got = metrics.request_metrics(labels, scores, requests)
    dcg1 = 1 / math.log2(3) + 1 / math.log2(6)
    idcg1 = 1 / math.log2(2) + 1 / math.log2(3)
    assert got["ndcg@10"] == pytest.approx((dcg1 / idcg1 + 1.0) / 2)
    assert got["mrr@4"] == pytest.approx((1 / 2 + 1) / 2)
    assert got["precision@4"] == pytest.approx((1 / 4 + 1 / 4) / 2)


def test_mrr_is_zero_when_the_first_hit_is_below_k():
    got = metrics.request_metrics([0, 0, 0, 0, 1], [5, 4, 3, 2, 1], ["r"] * 5)
    assert got["mrr@4"] == 0.0 and got["precision@4"] == 0.0


def test_log_loss_calibration_efficiency_relaimpr():
    assert metrics.log_loss([1, 0], [0.8, 0.2]) == pytest.approx(-math.log(0.8))
    assert metrics.calibration([1, 0, 0, 0], [0.5, 0.5, 0.0, 0.0]) == pytest.approx(1.0)
    assert metrics.calibration([1, 0, 0, 0], [0.5] * 4) == pytest.approx(2.0)
    assert metrics.efficiency(0.7, 0.75) == pytest.approx(0.8)
    assert metrics.rela_impr(0.6624, 0.6132) == pytest.approx(0.4346, abs=1e-3)  # DMT Table 1


def test_task_metrics_with_truth_reports_oracle():
    rng = np.random.default_rng(1)
    truth = rng.uniform(0, 0.3, 2000)
    labels = rng.uniform(size=2000) < truth
    result = metrics.task_metrics(labels, truth + rng.normal(0, 0.05, 2000), rng.integers(0, 50, 2000),
                                  rng.integers(0, 200, 2000), truth)
    assert result["oracle_auc"] > result["auc"] > 0.5
    assert 0 < result["efficiency"] < 1


def test_calibration_at_position_one():
    labels = np.array([1, 0, 0, 0, 1, 0, 0, 0])
    probabilities = np.array([0.2, 0.2, 0.1, 0.1, 0.9, 0.9, 0.9, 0.9])
    positions = np.array([1, 1, 1, 1, 2, 2, 3, 4])
    result = metrics.task_metrics(labels, probabilities, np.zeros(8), np.arange(8) // 4, positions=positions)
    assert result["calibration@1"] == pytest.approx(0.15 / 0.25)  # rows at position 1 only
    assert result["positives@1"] == 1
    assert "calibration@1" not in metrics.task_metrics(labels, probabilities, np.zeros(8), np.arange(8) // 4)
    truth = np.linspace(0.1, 0.5, 8)
    with_truth = metrics.task_metrics(labels, probabilities, np.zeros(8), np.arange(8) // 4, truth, positions=positions)
    assert with_truth["truth_calibration@1"] == pytest.approx(0.15 / truth[:4].mean())


def brute_expected_auc(relevance, scores):
    numerator = denominator = 0.0
    for i, (ri, si) in enumerate(zip(relevance, scores)):
        for j, (rj, sj) in enumerate(zip(relevance, scores)):
            if i != j:
                weight = ri * (1 - rj)
                denominator += weight
                numerator += weight * (1.0 if si > sj else 0.5 if si == sj else 0.0)
    return numerator / denominator


def test_expected_auc_is_the_pairwise_expectation_and_auc_on_binary_relevance():
    rng = np.random.default_rng(1)
    relevance = rng.uniform(size=120)
    scores = rng.integers(0, 8, 120) / 8  # ties count half
    assert metrics.expected_auc(relevance, scores) == pytest.approx(brute_expected_auc(relevance, scores))
    labels = rng.integers(0, 2, 200)
    binary_scores = rng.normal(size=200) + labels
    assert metrics.expected_auc(labels, binary_scores) == pytest.approx(metrics.auc(labels, binary_scores))
    # ranking by the relevance itself beats a noisy copy of it, which beats chance
    noisy = relevance + rng.normal(scale=0.3, size=120)
    assert metrics.expected_auc(relevance, relevance) > metrics.expected_auc(relevance, noisy) > 0.5


def test_gain_ndcg_uses_real_valued_gains_per_request():
    gains = [0.5, 0.1, 0.0, 0.2, 0.2]
    scores = [0.1, 0.9, 0.5, 0.3, 0.4]
    requests = ["a", "a", "a", "b", "b"]
    # request a ranks 0.1, 0.0, 0.5; ideal 0.5, 0.1, 0.0. Request b: equal gains, NDCG 1.
    dcg = 0.1 / math.log2(2) + 0.0 / math.log2(3) + 0.5 / math.log2(4)
    idcg = 0.5 / math.log2(2) + 0.1 / math.log2(3)
    assert metrics.gain_ndcg(gains, scores, requests) == pytest.approx((dcg / idcg + 1.0) / 2)
    # only the top k count; a request with no gain at all is left out
    assert metrics.gain_ndcg([0.0, 1.0, 0.0, 0.0], [0.9, 0.1, 0.5, 0.4], ["a", "a", "b", "b"], k=1) == 0.0


def test_truth_ranking_metrics_of_the_truth_itself_are_perfect():
    rng = np.random.default_rng(2)
    click, order = rng.uniform(size=300), rng.uniform(size=300) * 0.1
    requests = np.repeat(np.arange(30), 10)
    perfect = metrics.truth_ranking_metrics(click, requests, click, order)
    assert perfect["click_efficiency"] == pytest.approx(1.0) and perfect["click_ndcg@10"] == pytest.approx(1.0)
    assert metrics.truth_ranking_metrics(order, requests, click, order)["purchase_ndcg@10"] == pytest.approx(1.0)
    reversed_ = metrics.truth_ranking_metrics(-click, requests, click, order)
    assert reversed_["click_efficiency"] == pytest.approx(-1.0)
