"""pipeline.ablate_paired: each variant's AUCs against each reference variant's, paired on the
eval impressions both scored (the suite's e2e test runs it on trained variants)."""

import numpy as np
import pandas as pd
import pytest

from models import features as F
from models import metrics
from pipeline import ablate_paired


def variant(tmp_path, name: str, labels: pd.DataFrame, separation: float, training_time: bool, seed: int) -> str:
    rng = np.random.default_rng(seed)
    scored = labels.copy()
    for task in (F.CLICK, F.ORDER):
        scored[task] = separation * scored[f"label_{task}"] + rng.normal(size=len(scored))
    scored["user_id"] = "u"  # what evaluate_variant's frame carries beside: not kept
    cvr = separation * scored["label_order"] + rng.normal(size=len(scored))
    logged = None
    if training_time:
        logged = scored[[F.IMPRESSION_ID]].copy()
        logged[F.CLICK] = scored[F.CLICK] + 0.5 * rng.normal(size=len(scored))
    out = tmp_path / name
    out.mkdir()
    shuffled = scored.assign(cvr=cvr).sample(frac=1.0, random_state=seed)
    ablate_paired.write_eval_scores(str(out), shuffled, logged, [F.CLICK, F.ORDER], shuffled["cvr"].to_numpy())
    return str(out / ablate_paired.EVAL_SCORES_FILE)


@pytest.fixture
def labels():
    rng = np.random.default_rng(0)
    return pd.DataFrame({F.IMPRESSION_ID: [f"i{k}" for k in range(2000)],
                         "label_click": (rng.random(2000) < 0.1).astype(np.int64),
                         "label_order": (rng.random(2000) < 0.03).astype(np.int64)})


def test_each_variant_is_tested_against_each_reference(tmp_path, labels):
    files = [variant(tmp_path, "base", labels, 0.5, True, 1), variant(tmp_path, "better", labels, 2.0, True, 2),
             variant(tmp_path, "served-only", labels, 0.5, False, 3)]
    kept = pd.read_csv(files[0], dtype={F.IMPRESSION_ID: str})
    assert list(kept.columns) == [F.IMPRESSION_ID, "label_click", "label_order", F.CLICK, F.ORDER,
                                  ablate_paired.CVR_CLICKED, "click (training-time)"]
    # pCVR is kept on clicked impressions only, so its test is CVR AUC on clicked impressions
    assert kept[ablate_paired.CVR_CLICKED].notna().sum() == kept["label_click"].sum() > 0
    rows = [{"variant": "base"}, {"variant": "better"}, {"variant": "served-only"}, {"variant": "not evaluated"}]
    tested = ablate_paired.against_references(rows, files + [str(tmp_path / "missing.csv.gz")],
                                              ["base", "better", "not evaluated"])
    assert tested == ["base", "better"]  # the unevaluated reference has no scores to test against
    assert set(rows[0]["paired"]) == {"better"} and "paired" not in rows[3]
    assert set(rows[1]["paired"]) == {"base"} and set(rows[2]["paired"]) == {"base", "better"}
    assert set(rows[1]["paired"]["base"]) == {F.CLICK, F.ORDER, ablate_paired.CVR_CLICKED, "click (training-time)"}
    assert set(rows[2]["paired"]["base"]) == {F.CLICK, F.ORDER, ablate_paired.CVR_CLICKED}  # served only
    better = pd.read_csv(files[1], dtype={F.IMPRESSION_ID: str}).merge(kept, on=F.IMPRESSION_ID, suffixes=("", "_base"))
    click = rows[1]["paired"]["base"][F.CLICK]
    assert click["auc_difference"] == pytest.approx(
        metrics.auc(better["label_click"], better[F.CLICK]) - metrics.auc(better["label_click"], better["click_base"]))
    assert click["auc_difference"] > 0 and click["p_value"] < 1e-6
    clicked = better[better["label_click"] > 0]
    cvr = ablate_paired.CVR_CLICKED
    assert rows[1]["paired"]["base"][cvr]["auc_difference"] == pytest.approx(
        metrics.auc(clicked["label_order"], clicked[cvr]) - metrics.auc(clicked["label_order"], clicked[cvr + "_base"]))
    # the two tests of one pair are mirror images
    assert rows[0]["paired"]["better"][F.ORDER]["auc_difference"] == pytest.approx(
        -rows[1]["paired"]["base"][F.ORDER]["auc_difference"])
    table = "\n".join(ablate_paired.markdown(rows, tested))
    assert "Paired against `base`" in table and "Paired against `better`" in table and "cvr (clicked)" not in table
    assert f"| better | {click['auc_difference']:+.4f} ±{click['standard_error']:.4f} | {click['p_value']:.3f} |" in table
    against_base = table.split("Paired against `better`")[0].strip().splitlines()
    assert against_base[-1].startswith("| served-only |") and " | - | - |" in against_base[-1]
    assert "cvr (clicked) AUC difference" in "\n".join(ablate_paired.markdown(rows, tested, cvr=True))


def test_nothing_is_tested_without_the_references_scores(tmp_path, labels):
    rows = [{"variant": "base"}, {"variant": "other"}]
    assert ablate_paired.against_references(
        rows, [str(tmp_path / "missing.csv.gz"), variant(tmp_path, "other", labels, 1.0, False, 1)], ["base"]) == []
    assert "paired" not in rows[1] and ablate_paired.markdown(rows, ["base"]) == []
