"""pipeline.report's figures computed from scored frames (the pipeline's own report is checked
end to end in test_pipeline_e2e)."""

import numpy as np
import pandas as pd
import pytest

from models import features as F
from models import metrics
from pipeline import report


def scored(seed: int, labels: pd.DataFrame, separation: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = labels.copy()
    for task in ("click", "order"):
        frame[task] = separation * frame[f"label_{task}"] + rng.normal(size=len(frame))
    return frame.sample(frac=1.0, random_state=seed)  # rows in another order than the baseline's


def test_relaimpr_is_tested_on_the_impressions_both_networks_scored():
    rng = np.random.default_rng(0)
    labels = pd.DataFrame({F.IMPRESSION_ID: [f"i{k}" for k in range(3000)],
                           "label_click": (rng.random(3000) < 0.1).astype(np.int64),
                           "label_order": (rng.random(3000) < 0.02).astype(np.int64)})
    model, baseline = scored(1, labels, 2.0), scored(2, labels, 0.5)
    tests = report.auc_tests(model, baseline.iloc[:2500].drop(columns=["label_click"]))
    assert set(tests) == {"click", "order"}
    both = labels.merge(model, on=[F.IMPRESSION_ID, "label_click", "label_order"]).merge(
        baseline.iloc[:2500][[F.IMPRESSION_ID, "click"]], on=F.IMPRESSION_ID, suffixes=("", "_baseline"))
    assert len(both) == 2500
    assert tests["click"]["difference"] == pytest.approx(
        metrics.auc(both["label_click"], both["click"]) - metrics.auc(both["label_click"], both["click_baseline"]))
    assert tests["click"]["p_value"] < 1e-6 and tests["order"]["difference"] > 0
    # a network against itself: no difference
    same = report.auc_tests(model, model)
    assert same["order"]["difference"] == 0 and same["order"]["p_value"] == 1.0
