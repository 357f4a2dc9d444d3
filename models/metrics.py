"""Offline ranking metrics of the report (DMT paper, section 5.3 and Table 1).

TFMA computes AUC, AUC-PR and calibration inside the Evaluator; the per-request and
per-user metrics below (GAUC, NDCG@K, MRR@K, Precision@K), the oracle efficiency and
RelaImpr have no TFMA/TF counterpart over grouped rows, so they are written here,
vectorised with pandas group-bys.
"""

import math
from typing import Dict, Optional

import numpy as np
import pandas as pd


def auc(labels, scores) -> float:
    """ROC AUC by the Mann-Whitney rank statistic (ties get average ranks)."""
    labels = np.asarray(labels, dtype=np.float64)
    positives = labels.sum()
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = pd.Series(np.asarray(scores, dtype=np.float64)).rank(method="average").to_numpy()
    return float((ranks[labels > 0].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def paired_auc(labels, scores_a, scores_b) -> Dict[str, float]:
    """DeLong's test of two AUCs on the same rows (DeLong, DeLong and Clarke-Pearson, Biometrics
    1988; the midrank form of Sun and Xu, IEEE SPL 2014): `difference` = AUC(a) - AUC(b), its
    `standard_error` from the covariance of the two AUCs' placement values, and the two-sided
    normal `p_value`. Pairing counts what the two score lists share: two networks scored on the
    same 66 orders have a much smaller error of their difference than either AUC has alone (both
    are given too, `standard_error_a` / `_b`). Written by hand: sklearn, SciPy and TFMA have
    single-model AUC intervals (TFMA's bootstrap), not a paired test."""
    positive = np.asarray(labels, np.float64) > 0
    m, n = int(positive.sum()), int((~positive).sum())
    if m < 2 or n < 2:
        return {"difference": float("nan"), "standard_error": float("nan"), "p_value": float("nan"),
                "standard_error_a": float("nan"), "standard_error_b": float("nan")}
    placements_positive, placements_negative = [], []
    for scores in (scores_a, scores_b):
        scores = pd.Series(np.asarray(scores, np.float64))
        overall = scores.rank(method="average").to_numpy()
        within_positive = scores[positive].rank(method="average").to_numpy()
        within_negative = scores[~positive].rank(method="average").to_numpy()
        # A positive's share of the negatives scored below it, a negative's share of the
        # positives scored above it (ties half): the midrank differences.
        placements_positive.append((overall[positive] - within_positive) / n)
        placements_negative.append(1.0 - (overall[~positive] - within_negative) / m)
    aucs = [float(p.mean()) for p in placements_positive]
    covariance = np.cov(np.stack(placements_positive)) / m + np.cov(np.stack(placements_negative)) / n
    variance = covariance[0, 0] + covariance[1, 1] - 2.0 * covariance[0, 1]
    difference = aucs[0] - aucs[1]
    error = math.sqrt(max(variance, 0.0))
    if error > 0:
        p_value = math.erfc(abs(difference) / error / math.sqrt(2.0))
    else:  # the same ranking of every positive-negative pair
        p_value = 1.0 if difference == 0 else 0.0
    return {"difference": difference, "standard_error": error, "p_value": p_value,
            "standard_error_a": math.sqrt(covariance[0, 0]), "standard_error_b": math.sqrt(covariance[1, 1])}


def paired_auc_on_shared_rows(scored: pd.DataFrame, reference: pd.DataFrame, outputs: Dict[str, str],
                              key: str) -> Dict[str, Dict[str, float]]:
    """`paired_auc` of each output column of `scored` (output -> its label column in `scored`)
    against the same column of `reference`, on the rows both scored (joined on `key`; a row
    whose score is missing in either is left out), with the number of rows it rests on
    (`examples`). Outputs either frame lacks are skipped."""
    result = {}
    for output, label in outputs.items():
        if output not in scored or label not in scored or output not in reference:
            continue
        both = scored[[key, label, output]].merge(reference[[key, output]], on=key,
                                                  suffixes=("", " (reference)")).dropna()
        result[output] = dict(paired_auc(both[label], both[output], both[f"{output} (reference)"]),
                              examples=int(len(both)))
    return result


def gauc(labels, scores, groups) -> float:
    """Per-group AUC weighted by the group's number of rows (impressions); groups whose
    labels are all equal have no AUC and are left out (as in DIN's GAUC)."""
    frame = pd.DataFrame({"label": np.asarray(labels, np.float64), "score": np.asarray(scores, np.float64),
                          "group": np.asarray(groups)})
    frame["rank"] = frame.groupby("group")["score"].rank(method="average")
    grouped = frame.groupby("group")
    n = grouped["label"].size()
    positives = grouped["label"].sum()
    negatives = n - positives
    positive_rank_sum = frame["rank"].where(frame["label"] > 0, 0.0).groupby(frame["group"]).sum()
    usable = (positives > 0) & (negatives > 0)
    per_group = (positive_rank_sum[usable] - positives[usable] * (positives[usable] + 1) / 2) / (
        positives[usable] * negatives[usable])
    if not usable.any():
        return float("nan")
    return float((per_group * n[usable]).sum() / n[usable].sum())


def _ranked(labels, scores, groups) -> pd.DataFrame:
    """Rows sorted by group then score (descending), with their 1-based rank."""
    frame = pd.DataFrame({"label": np.asarray(labels, np.float64), "score": np.asarray(scores, np.float64),
                          "group": np.asarray(groups), "row": np.arange(len(labels))})
    frame = frame.sort_values(["group", "score", "row"], ascending=[True, False, True], kind="stable")
    frame["rank"] = frame.groupby("group").cumcount() + 1
    return frame


def request_metrics(labels, scores, requests, ndcg_k: int = 10, mrr_k: int = 4, precision_k: int = 4) -> Dict[str, float]:
    """NDCG@k, MRR@k and Precision@k averaged over requests with at least one positive."""
    frame = _ranked(labels, scores, requests)
    has_positive = frame.groupby("group")["label"].transform("max") > 0
    frame = frame[has_positive]
    if frame.empty:
        return {f"ndcg@{ndcg_k}": float("nan"), f"mrr@{mrr_k}": float("nan"), f"precision@{precision_k}": float("nan")}
    gain = (2.0 ** frame["label"] - 1.0) / np.log2(frame["rank"] + 1.0)
    dcg = gain.where(frame["rank"] <= ndcg_k, 0.0).groupby(frame["group"]).sum()
    ideal = frame.sort_values(["group", "label"], ascending=[True, False], kind="stable")
    ideal_rank = ideal.groupby("group").cumcount() + 1
    ideal_gain = ((2.0 ** ideal["label"] - 1.0) / np.log2(ideal_rank + 1.0)).where(ideal_rank <= ndcg_k, 0.0)
    idcg = ideal_gain.groupby(ideal["group"]).sum()
    first_hit = frame[frame["label"] > 0].groupby("group")["rank"].min()
    reciprocal = (1.0 / first_hit).where(first_hit <= mrr_k, 0.0)
    hits = (frame["label"] > 0) & (frame["rank"] <= precision_k)
    precision = hits.groupby(frame["group"]).sum() / precision_k
    return {f"ndcg@{ndcg_k}": float((dcg / idcg).mean()), f"mrr@{mrr_k}": float(reciprocal.mean()),
            f"precision@{precision_k}": float(precision.mean())}


def log_loss(labels, probabilities, eps: float = 1e-7) -> float:
    p = np.clip(np.asarray(probabilities, np.float64), eps, 1 - eps)
    y = np.asarray(labels, np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def calibration(labels, probabilities) -> float:
    """Mean prediction / mean label (1.0 is calibrated)."""
    mean_label = float(np.mean(labels))
    return float(np.mean(probabilities)) / mean_label if mean_label > 0 else float("nan")


def efficiency(model_auc: float, oracle_auc: float) -> float:
    """(AUC - 0.5) / (oracle AUC - 0.5): the share of the learnable signal captured."""
    return (model_auc - 0.5) / (oracle_auc - 0.5)


def rela_impr(model_auc: float, base_auc: float) -> float:
    """RelaImpr of the DMT paper (from DIN): ((AUC - 0.5) / (AUC_base - 0.5) - 1), as a fraction."""
    return (model_auc - 0.5) / (base_auc - 0.5) - 1.0


def task_metrics(labels, probabilities, users, requests, truth: Optional[np.ndarray] = None,
                 relevance_truth: Optional[np.ndarray] = None, positions: Optional[np.ndarray] = None
                 ) -> Dict[str, float]:
    """Every per-task figure of the report. `truth`: the true probability of the logged event
    (the oracle); `relevance_truth`: the true probability without position effects (the
    oracle of a position-free model, e.g. the served one); `positions`: the logged positions,
    for the calibration at position 1 (`calibration@1` against the labels and, with `truth`,
    `truth_calibration@1` against the true probabilities)."""
    result = {"auc": auc(labels, probabilities), "gauc": gauc(labels, probabilities, users)}
    result.update(request_metrics(labels, probabilities, requests))
    result["log_loss"] = log_loss(labels, probabilities)
    result["calibration"] = calibration(labels, probabilities)
    if positions is not None:
        top = np.asarray(positions) == 1
        result["calibration@1"] = (calibration(np.asarray(labels)[top], np.asarray(probabilities)[top])
                                   if top.any() else float("nan"))
        # how many events that ratio rests on (a rare task's is noisy on one eval day)
        result["positives@1"] = int(np.sum(np.asarray(labels)[top]))
        if truth is not None and top.any():
            # against the true probability of the logged event there: not limited by few events
            result["truth_calibration@1"] = float(np.mean(np.asarray(probabilities)[top]) / np.mean(truth[top]))
    result["examples"] = int(len(labels))
    result["positives"] = int(np.sum(labels))
    for prefix, oracle in (("", truth), ("relevance_", relevance_truth)):
        if oracle is not None:
            result[f"{prefix}oracle_auc"] = auc(labels, oracle)
            result[f"{prefix}efficiency"] = efficiency(result["auc"], result[f"{prefix}oracle_auc"])
    return result


# Ranking quality judged on the simulator's truth (issue 10, item 2). Logged labels are drawn
# at the position the old ranker gave each item, so a network that re-learns its position
# effects scores well on them; the position-free probabilities judge the ranking itself.

def expected_auc(relevance, scores) -> float:
    """The AUC expected when each row is a positive with probability `relevance` (e.g. the
    position-free click probability): sum_{i != j} r_i (1 - r_j) [s_i > s_j] over
    sum_{i != j} r_i (1 - r_j), ties counting half. Equals `auc` on 0/1 relevance. Written by
    hand: TFMA and sklearn take sample weights, not probabilistic labels on both sides of a pair."""
    r = np.asarray(relevance, np.float64)
    frame = pd.DataFrame({"score": np.asarray(scores, np.float64), "pos": r, "neg": 1.0 - r})
    by_score = frame.groupby("score", sort=True)[["pos", "neg"]].sum()
    negatives_below = by_score["neg"].cumsum() - by_score["neg"]  # strictly lower scores
    tied = frame["score"].map(by_score["neg"]) - frame["neg"]       # equal scores, other rows
    numerator = float((frame["pos"] * (frame["score"].map(negatives_below) + 0.5 * tied)).sum())
    denominator = float(r.sum() * (1.0 - r).sum() - (r * (1.0 - r)).sum())
    return numerator / denominator if denominator > 0 else float("nan")


def gain_ndcg(gains, scores, requests, k: int = 10) -> float:
    """NDCG@k per request with a real-valued gain (e.g. the true position-free purchase
    probability; linear gain, log2 discount), averaged over requests with a positive ideal DCG.
    Ties in score are broken by row order, as in `request_metrics`."""
    frame = _ranked(gains, scores, requests)
    discount = 1.0 / np.log2(frame["rank"].to_numpy() + 1.0)
    dcg = pd.Series(np.where(frame["rank"] <= k, frame["label"] * discount, 0.0)).groupby(
        frame["group"].to_numpy()).sum()
    ideal = frame.sort_values(["group", "label"], ascending=[True, False], kind="stable")
    ideal_rank = ideal.groupby("group").cumcount().to_numpy() + 1
    idcg = pd.Series(np.where(ideal_rank <= k, ideal["label"].to_numpy() / np.log2(ideal_rank + 1.0), 0.0)).groupby(
        ideal["group"].to_numpy()).sum()
    usable = idcg > 0
    return float((dcg[usable] / idcg[usable]).mean()) if usable.any() else float("nan")


def truth_ranking_metrics(scores, requests, click_relevance, order_relevance, k: int = 10) -> Dict[str, float]:
    """How one ranking of the eval requests (a model's score or task output, or the logging
    policy's positions negated) does against the truth: NDCG@k with the true position-free
    purchase probability and with the true position-free click probability as gains, and the
    expected AUC against position-free click labels, also relative to that of the true
    probabilities themselves (`click_efficiency`)."""
    truth_auc = expected_auc(click_relevance, click_relevance)
    result = {f"purchase_ndcg@{k}": gain_ndcg(order_relevance, scores, requests, k),
              f"click_ndcg@{k}": gain_ndcg(click_relevance, scores, requests, k),
              "click_expected_auc": expected_auc(click_relevance, scores)}
    result["click_efficiency"] = efficiency(result["click_expected_auc"], truth_auc)
    return result
