"""pipeline.ablate_paired: each variant's AUCs against the first variant's, paired on the eval
impressions both scored (the suite's e2e test runs it on trained variants)."""

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
    logged = None
    if training_time:
        logged = scored[[F.IMPRESSION_ID]].copy()
        logged[F.CLICK] = scored[F.CLICK] + 0.5 * rng.normal(size=len(scored))
    out = tmp_path / name
    out.mkdir()
    ablate_paired.write_eval_scores(str(out), scored.sample(frac=1.0, random_state=seed), logged, [F.CLICK, F.ORDER])
    return str(out / ablate_paired.EVAL_SCORES_FILE)


@pytest.fixture
def labels():
    rng = np.random.default_rng(0)
    return pd.DataFrame({F.IMPRESSION_ID: [f"i{k}" for k in range(2000)],
                         "label_click": (rng.random(2000) < 0.1).astype(np.int64),
                         "label_order": (rng.random(2000) < 0.03).astype(np.int64)})


def test_each_variant_is_tested_against_the_first(tmp_path, labels):
    files = [variant(tmp_path, "base", labels, 0.5, True, 1), variant(tmp_path, "better", labels, 2.0, True, 2),
             variant(tmp_path, "served-only", labels, 0.5, False, 3)]
    kept = pd.read_csv(files[0], dtype={F.IMPRESSION_ID: str})
    assert list(kept.columns) == [F.IMPRESSION_ID, "label_click", "label_order", F.CLICK, F.ORDER, "click (training-time)"]
    rows = [{"variant": "base"}, {"variant": "better"}, {"variant": "served-only"}, {"variant": "not evaluated"}]
    ablate_paired.against_first(rows, files + [str(tmp_path / "missing.csv.gz")])
    assert "paired" not in rows[0] and "paired" not in rows[3]
    assert set(rows[1]["paired"]) == {F.CLICK, F.ORDER, "click (training-time)"}
    assert set(rows[2]["paired"]) == {F.CLICK, F.ORDER}  # no training-time network to test
    better = pd.read_csv(files[1], dtype={F.IMPRESSION_ID: str}).merge(kept, on=F.IMPRESSION_ID, suffixes=("", "_base"))
    click = rows[1]["paired"][F.CLICK]
    assert click["auc_difference"] == pytest.approx(
        metrics.auc(better["label_click"], better[F.CLICK]) - metrics.auc(better["label_click"], better["click_base"]))
    assert click["auc_difference"] > 0 and click["p_value"] < 1e-6
    table = "\n".join(ablate_paired.markdown(rows))
    assert "Paired against `base`" in table
    assert f"| better | {click['auc_difference']:+.4f} ±{click['standard_error']:.4f} | {click['p_value']:.3f} |" in table
    assert table.splitlines()[-1].startswith("| served-only |") and " | - | - | " in table.splitlines()[-1]


def test_nothing_is_tested_without_the_first_variants_scores(tmp_path, labels):
    rows = [{"variant": "base"}, {"variant": "other"}]
    ablate_paired.against_first(rows, [str(tmp_path / "missing.csv.gz"), variant(tmp_path, "other", labels, 1.0, False, 1)])
    assert "paired" not in rows[1] and ablate_paired.markdown(rows) == []
