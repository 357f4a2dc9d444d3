"""How `funnel ablate` scores a trained variant on the eval split (pipeline/ablate.py trains it):
the report's per-task figures of its served network, CVR AUC on clicked impressions, the
training-time network's AUC, per-scenario AUC/GAUC, the truth-based ranking quality of its
score and outputs, and of each score fusion in FUSION_GRID computed from its served outputs
(so a static fusion changed since training needs no retraining)."""

import os
from typing import Any, Dict, List, Optional

import numpy as np
import pandas as pd

from models import features as F
from models import metrics
from models.fusion import SMALLEST_PROBABILITY
from pipeline import ablate_paired

# Bumped when evaluate_variant adds figures: variants evaluated by an older version are
# re-scored (not retrained) on the next run.
EVALUATION_VERSION = 5  # 3: score_ranking (the score's request-level NDCG@10 / MRR@4 on logged labels);
#                        4: the eval scores kept (ablate_paired) for the paired tests; 5: pCVR kept
# Score fusions measured on every variant with click and order outputs (item 4 of issue 10):
# product (log-linear) weights, and eq. 6's weighted sums of probabilities.
FUSION_GRID = ([("product", {F.CLICK: a, F.ORDER: round(1.0 - a, 2)}) for a in (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)]
               + [("weighted", {F.CLICK: 1.0, F.ORDER: w}) for w in (1.0, 10.0, 30.0, 100.0)])
SCORED_FEATURES = (F.USER_ID, F.REQUEST_ID, F.POSITION, F.SCENARIO) + F.LABELS


def cvr_of(scored: pd.DataFrame) -> Optional[np.ndarray]:
    """pCVR of each impression: the heads' `cvr` output (ESMM, ESM²), else pCTCVR / pCTR."""
    if "cvr" in scored:
        return scored["cvr"].to_numpy()
    if F.CLICK in scored and F.ORDER in scored:
        return scored[F.ORDER].to_numpy() / np.maximum(scored[F.CLICK].to_numpy(), 1e-12)
    return None


def fusion_name(kind: str, weights: Dict[str, float]) -> str:
    return f"{kind} " + " ".join(f"{k}={v:g}" for k, v in weights.items())


def fused_score(scored: pd.DataFrame, kind: str, weights: Dict[str, float]) -> np.ndarray:
    """What models/fusion.py's `weighted` / `product` layers compute, on scored outputs."""
    if kind == "product":
        return sum(w * np.log(np.maximum(scored[k].to_numpy(np.float64), SMALLEST_PROBABILITY))
                   for k, w in weights.items())
    return sum(w * scored[k].to_numpy(np.float64) for k, w in weights.items()) / sum(weights.values())


def trained_fusion(fusion: Optional[Dict[str, Any]]) -> bool:
    """Whether a model section's `fusion` is trained with the network (the fusion network), so
    that only the served model can compute its score."""
    from models import fusion_network  # noqa: F401  (registers `network`)
    from models.registry import FUSIONS

    return fusion is not None and FUSIONS.get(fusion["type"]).TRAINS


def scored_with_fusion(scored: pd.DataFrame, fusion: Optional[Dict[str, Any]], tasks: List[str]) -> pd.DataFrame:
    """`score` as the model section's `fusion` of the served outputs (fused_score, what the static
    fusion layers serve), or as served for a trained fusion (or none given)."""
    if fusion is None or trained_fusion(fusion):
        return scored
    weights = fusion.get("weights") or {t: 1.0 for t in tasks}
    return scored.assign(score=fused_score(scored, fusion["type"], weights))  # a product's logarithm: same ranking


def score_ranking(scored: pd.DataFrame) -> Dict[str, Dict[str, float]]:
    """The fused score's request-level ranking of each logged label (click, order): NDCG@10,
    MRR@4 and Precision@4 over the eval requests with at least one such event."""
    if "score" not in scored:
        return {}
    return {label: metrics.request_metrics(scored[f"label_{label}"].to_numpy(), scored["score"].to_numpy(),
                                           scored[F.REQUEST_ID].to_numpy())
            for label in (F.CLICK, F.ORDER) if f"label_{label}" in scored}


def fusion_quality(scored: pd.DataFrame) -> Dict[str, Dict[str, float]]:
    """Truth-based ranking quality of each fusion in FUSION_GRID of the variant's outputs."""
    from pipeline import report

    if not {F.CLICK, F.ORDER} <= set(scored):
        return {}
    return report.truth_rankings(scored, {fusion_name(kind, weights): fused_score(scored, kind, weights)
                                          for kind, weights in FUSION_GRID})


def evaluate_variant(out_dir: str, eval_files: List[str], truth: Optional[pd.DataFrame],
                     fusion: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The variant's figures on the eval split: per task the report's metrics (served network),
    CVR AUC on clicked impressions, the training-time network's AUC when saved, per-scenario
    AUC/GAUC and, with truth, the truth-based ranking quality of its score and outputs. With
    `fusion` (the model section's), `score` is that fusion of the served outputs (fused_score,
    what the static fusion layers serve), so a fusion changed since training needs no retraining;
    a trained fusion's (the fusion network's) `score` is the served one."""
    from models.trainer import LOGGED_MODEL_DIR
    from pipeline import report
    from serving.batch_predict import score_examples

    scored = score_examples(os.path.join(out_dir, "serving"), eval_files, SCORED_FEATURES)
    tasks = [t for t in F.LABELS if t in scored and f"label_{t}" in scored]
    scored = scored_with_fusion(scored, fusion, tasks)
    if truth is not None:
        scored = scored.merge(truth, how="left", on=F.IMPRESSION_ID)
    figures = report.task_figures(scored)
    cvr = cvr_of(scored)
    if F.ORDER in figures and cvr is not None:
        clicked = scored["label_click"].to_numpy() > 0
        figures[F.ORDER]["cvr_auc"] = metrics.auc(scored["label_order"].to_numpy()[clicked], cvr[clicked])
    logged_dir = os.path.join(out_dir, "run", LOGGED_MODEL_DIR)
    logged = None
    if os.path.isdir(logged_dir):
        logged = score_examples(logged_dir, eval_files, (F.CLICK, F.ORDER))
        for task in tasks:
            if task in logged and f"label_{task}" in logged:
                figures[task]["logged_auc"] = metrics.auc(logged[f"label_{task}"], logged[task])
    ablate_paired.write_eval_scores(out_dir, scored, logged, tasks, cvr)
    per_scenario = {
        str(scenario): {task: {"auc": metrics.auc(rows[f"label_{task}"], rows[task]),
                               "gauc": metrics.gauc(rows[f"label_{task}"], rows[task], rows[F.USER_ID])}
                        for task in tasks}
        for scenario, rows in scored.groupby(F.SCENARIO)}
    ranking = report.ranking_quality(scored, logging_policy=False)
    return {"metrics": figures, "per_scenario": per_scenario, "ranking": ranking, "fusion": fusion_quality(scored),
            "score_ranking": score_ranking(scored), "eval_examples": int(len(scored)),
            "evaluation_version": EVALUATION_VERSION}
