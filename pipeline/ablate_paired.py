"""Paired tests of a suite's variants against its reference variants (`funnel ablate`).

One training's logged AUC on the default world's eval day rests on ~66 orders: one order AUC
alone carries a standard error near 0.027, larger than most differences a suite measures. Two
variants scored on the same eval impressions share most of that noise, so each variant's AUC is
tested against each reference variant's (the suite's `paired_against`, else its first variant:
the paper's baseline of the claim, e.g. ESMM for ESM²) by DeLong's paired test
(`models.metrics.paired_auc`), per task, for the served network and, where both saved one, the
training-time network, and for CVR AUC on clicked impressions (ESM² Table 2). The scores are
kept per variant (`EVAL_SCORES_FILE`, written by `pipeline.ablate_scoring.evaluate_variant`).
"""

import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from models import features as F
from models import metrics

EVAL_SCORES_FILE = "eval_scores.csv.gz"
TRAINING_TIME = "{task} (training-time)"  # the column and test name of a training-time output
CVR_CLICKED = "cvr (clicked)"  # pCVR on clicked impressions, missing on the others: tested on label_order


def write_eval_scores(out_dir: str, scored: pd.DataFrame, logged: Optional[pd.DataFrame], tasks: List[str],
                      cvr: Optional[np.ndarray] = None) -> None:
    """The eval impressions' labels and the variant's outputs: the served network's per task,
    its pCVR on clicked impressions (`cvr`, one per row of `scored`) and, when saved, the
    training-time network's."""
    kept = scored[[F.IMPRESSION_ID] + [f"label_{t}" for t in tasks] + tasks]
    if cvr is not None and "label_click" in scored:
        kept = kept.assign(**{CVR_CLICKED: np.where(scored["label_click"].to_numpy() > 0, cvr, np.nan)})
    if logged is not None:
        outputs = {t: TRAINING_TIME.format(task=t) for t in tasks if t in logged}
        kept = kept.merge(logged[[F.IMPRESSION_ID] + list(outputs)].rename(columns=outputs), on=F.IMPRESSION_ID,
                          how="left")
    kept.to_csv(os.path.join(out_dir, EVAL_SCORES_FILE), index=False)


def _read(path: str) -> Optional[pd.DataFrame]:
    return pd.read_csv(path, dtype={F.IMPRESSION_ID: str}) if os.path.exists(path) else None


def against_references(rows: List[Dict[str, Any]], score_files: List[str], references: Sequence[str]) -> List[str]:
    """Adds row["paired"][reference] to every row but the reference, for each reference variant:
    per output (`click`, `order`, `cvr (clicked)`, `click (training-time)` ...) the test of its
    logged AUC against the reference's on the impressions both scored. A variant without kept
    scores is left out. Returns the references whose scores were found."""
    kept = {row["variant"]: _read(path) for row, path in zip(rows, score_files)}  # each file read once
    kept = {variant: scores for variant, scores in kept.items() if scores is not None}
    outputs = {o: f"label_{t}" for t in F.LABELS for o in (t, TRAINING_TIME.format(task=t))}
    outputs[CVR_CLICKED] = "label_order"
    tested = [reference for reference in references if reference in kept]
    for reference in tested:
        for row in rows:
            if row["variant"] == reference or row["variant"] not in kept:
                continue
            tests = metrics.paired_auc_on_shared_rows(kept[row["variant"]], kept[reference], outputs, F.IMPRESSION_ID)
            row.setdefault("paired", {})[reference] = {o: as_recorded(t) for o, t in tests.items()}
    return tested


def as_recorded(test: Dict[str, float]) -> Dict[str, float]:
    """A `metrics.paired_auc_on_shared_rows` test as the suites' and the peers bench's JSON
    record it: the AUC difference, its standard error, the p-value and the impressions it rests on."""
    return {"auc_difference": test["difference"], "standard_error": test["standard_error"],
            "p_value": test["p_value"], "examples": test["examples"]}


def markdown(rows: List[Dict[str, Any]], references: Sequence[str], cvr: bool = False) -> List[str]:
    """The paired tests as one table per reference (no lines when no row has them); the CVR
    test's columns only with `cvr` (the suite's `cvr` column kind)."""
    lines = []
    for reference in references:
        tested = [r for r in rows if r.get("paired", {}).get(reference)]
        if not tested:
            continue
        outputs = [o for o in dict.fromkeys(o for r in tested for o in r["paired"][reference])
                   if cvr or o != CVR_CLICKED]
        lines += ["", f"Paired against `{reference}` (DeLong's test on the same eval impressions): each variant's "
                  f"logged AUC minus `{reference}`'s, ± the standard error of that difference (p: two-sided).", "",
                  "| variant | " + " | ".join(f"{o} AUC difference | p" for o in outputs) + " |",
                  "|---|" + "---:|---:|" * len(outputs)]
        for row in tested:
            cells = [cell for output in outputs for cell in paired_cells(row["paired"][reference].get(output))]
            lines.append(f"| {row['variant']} | " + " | ".join(cells) + " |")
    return lines


def paired_cells(test: Optional[Dict[str, float]]) -> List[str]:
    """A paired test's two table cells: the difference ± its standard error, and p ("-" without
    a test). The peers bench's tables use them too."""
    if test is None:
        return ["-", "-"]
    return [f"{test['auc_difference']:+.4f} ±{test['standard_error']:.4f}", f"{test['p_value']:.3f}"]
