"""Paired tests of a suite's variants against its first (`funnel ablate`).

One training's logged AUC on the default world's eval day rests on ~66 orders: one order AUC
alone carries a standard error near 0.027, larger than most differences a suite measures. Two
variants scored on the same eval impressions share most of that noise, so each variant's AUC is
tested against the first variant's by DeLong's paired test (`models.metrics.paired_auc`), per
task, for the served network and, where both saved one, the training-time network. The scores
are kept per variant (`EVAL_SCORES_FILE`, written by `pipeline.ablate.evaluate_variant`).
"""

import os
from typing import Any, Dict, List, Optional

import pandas as pd

from models import features as F
from models import metrics

EVAL_SCORES_FILE = "eval_scores.csv.gz"
TRAINING_TIME = "{task} (training-time)"  # the column and test name of a training-time output


def write_eval_scores(out_dir: str, scored: pd.DataFrame, logged: Optional[pd.DataFrame], tasks: List[str]) -> None:
    """The eval impressions' labels and the variant's outputs: the served network's per task and,
    when saved, the training-time network's."""
    kept = scored[[F.IMPRESSION_ID] + [f"label_{t}" for t in tasks] + tasks]
    if logged is not None:
        outputs = {t: TRAINING_TIME.format(task=t) for t in tasks if t in logged}
        kept = kept.merge(logged[[F.IMPRESSION_ID] + list(outputs)].rename(columns=outputs), on=F.IMPRESSION_ID,
                          how="left")
    kept.to_csv(os.path.join(out_dir, EVAL_SCORES_FILE), index=False)


def _read(path: str) -> Optional[pd.DataFrame]:
    return pd.read_csv(path, dtype={F.IMPRESSION_ID: str}) if os.path.exists(path) else None


def against_first(rows: List[Dict[str, Any]], score_files: List[str]) -> None:
    """Adds row["paired"] to every row after the first: per output (`click`, `order`, and
    `click (training-time)` ...) the test of its logged AUC against the first row's on the
    impressions both scored. A variant without kept scores is left out."""
    first = _read(score_files[0]) if score_files else None
    if first is None:
        return
    outputs = {o: f"label_{t}" for t in F.LABELS for o in (t, TRAINING_TIME.format(task=t))}
    for row, path in zip(rows[1:], score_files[1:]):
        scores = _read(path)
        if scores is None:
            continue
        tests = metrics.paired_auc_on_shared_rows(scores, first, outputs, F.IMPRESSION_ID)
        row["paired"] = {o: {"auc_difference": t["difference"], "standard_error": t["standard_error"],
                             "p_value": t["p_value"]} for o, t in tests.items()}


def markdown(rows: List[Dict[str, Any]]) -> List[str]:
    """The paired tests as a table (no lines when no row has them)."""
    tested = [r for r in rows if r.get("paired")]
    if not tested:
        return []
    outputs = list(dict.fromkeys(o for r in tested for o in r["paired"]))
    lines = ["", f"Paired against `{rows[0]['variant']}` (DeLong's test on the same eval impressions): each "
             "variant's logged AUC minus the first's, ± the standard error of that difference (p: two-sided).", "",
             "| variant | " + " | ".join(f"{o} AUC difference | p" for o in outputs) + " |",
             "|---|" + "---:|---:|" * len(outputs)]
    for row in tested:
        cells = []
        for output in outputs:
            test = row["paired"].get(output)
            cells += (["-", "-"] if test is None else
                      [f"{test['auc_difference']:+.4f} ±{test['standard_error']:.4f}", f"{test['p_value']:.3f}"])
        lines.append(f"| {row['variant']} | " + " | ".join(cells) + " |")
    return lines
