"""Where the fusion network's loss puts its optimum, against the true purchase ranking.

    python -m bench.fusion_loss_scan --variant WORK/ablations/variants/KEY --logs LOGS \\
        --examples WORK/ablations/data/KEY/Ingest/examples/N/Split-eval --out FILE.json

The fusion network (models/fusion_network.py) learns per-request weights from logged clicks and
orders. This scan asks what those labels reward: on a trained variant's served outputs for the
eval day, it scores every request with static weightings

    s = W (a log p_click + (1 - a) log p_order),   W = 2 (the default gate's weight sum)

and gives, for each click weight a, the gate's own `list_loss` under several label gains, beside
the purchase NDCG@10 against the simulator's truth (what `funnel ablate` reports as the
`product click=a order=1-a` column). A gate cannot rank better than the weighting its loss
prefers on average, so where the two disagree the labels, not the gate, set the limit.
"""

import argparse
import json
import os
import sys
from typing import Dict, List, Sequence, Tuple

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import tensorflow as tf  # noqa: E402

from models import features as F  # noqa: E402
from models.fusion_network import label_gains, list_loss_terms  # noqa: E402
from models.preprocessing import request_key  # noqa: E402

CLICK_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0)
GAINS = ((1.0, 10.0), (1.0, 30.0), (1.0, 100.0), (0.0, 1.0))  # (click, order); (0, 1): orders only
WEIGHT_SUM = 2.0
CHUNK_ROWS = 4096  # list_loss_terms builds a [B, B] matrix: whole requests, a few thousand rows at a time


def row_gains(scored: pd.DataFrame, gains: Tuple[float, float]) -> np.ndarray:
    """Each row's gain, by the fusion network's own rule (`label_gains`)."""
    labels = {task: scored[f"label_{task}"].to_numpy() for task in (F.CLICK, F.ORDER)}
    return label_gains(labels, dict(zip((F.CLICK, F.ORDER), gains))).numpy()


def request_chunks(requests: np.ndarray, rows: int = CHUNK_ROWS) -> List[np.ndarray]:
    """Row indices in chunks of whole requests, each at most `rows` long unless one request is."""
    order = np.argsort(requests, kind="stable")
    starts = np.concatenate([[0], np.flatnonzero(np.diff(requests[order])) + 1])
    ends = np.concatenate([starts[1:], [len(order)]])
    chunks, begin = [], 0
    for start, end in zip(starts, ends):
        if end - begin > rows and start > begin:
            chunks.append(order[begin:start])
            begin = start
    if begin < len(order):
        chunks.append(order[begin:])
    return chunks


def scan_loss(scored: pd.DataFrame, click_weights: Sequence[float] = CLICK_WEIGHTS,
              gains_list: Sequence[Tuple[float, float]] = GAINS) -> Dict[str, List[float]]:
    """{"click=c order=o": [the anchor-weighted mean list_loss at each click weight]}."""
    logs = np.log(np.maximum(scored[[F.CLICK, F.ORDER]].to_numpy(np.float32), np.finfo(np.float32).tiny))
    # a request is (user_id, request_id), keyed by the Transform's rule (models/preprocessing.py)
    requests = request_key(tf.constant(scored[F.USER_ID].astype(str).to_numpy()),
                           tf.constant(scored[F.REQUEST_ID].astype(str).to_numpy())).numpy()
    chunks = request_chunks(requests)
    result = {}
    for gains in gains_list:
        g = row_gains(scored, gains)
        losses = []
        for a in click_weights:
            w = tf.constant([[WEIGHT_SUM * a, WEIGHT_SUM * (1.0 - a)]], tf.float32)
            terms = [list_loss_terms(tf.tile(w, [len(c), 1]), tf.constant(logs[c]), tf.constant(g[c]),
                                     tf.constant(requests[c])) for c in chunks]
            weighted, weight = (sum(float(t[i]) for t in terms) for i in (0, 1))
            losses.append(weighted / weight if weight > 0 else 0.0)
        result[f"click={gains[0]:g} order={gains[1]:g}"] = losses
    return result


def main(argv=None) -> int:
    import glob

    from pipeline import ablate_scoring, report
    from serving.batch_predict import score_examples

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", required=True, help="a trained variant's directory (funnel ablate)")
    parser.add_argument("--logs", required=True, help="the logs, with their truth")
    parser.add_argument("--examples", required=True, help="the ingested eval split's directory")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    scored = score_examples(os.path.join(args.variant, "serving"), sorted(glob.glob(os.path.join(args.examples, "*"))),
                            ablate_scoring.SCORED_FEATURES)
    truth = report.read_truth(args.logs)
    if truth is None:
        raise SystemExit(f"{args.logs}: no truth log; the scan needs the simulator's truth")
    scored = scored.merge(truth, how="left", on=F.IMPRESSION_ID)
    fused = {a: ablate_scoring.fused_score(scored, "product", {F.CLICK: a, F.ORDER: 1.0 - a}) for a in CLICK_WEIGHTS}
    ndcg = report.truth_rankings(scored, fused)
    losses = scan_loss(scored)
    result = {"command": " ".join(["python -m bench.fusion_loss_scan"] + (argv or sys.argv[1:])),
              "eval_examples": int(len(scored)), "clicks": int((scored["label_click"] > 0).sum()),
              "orders": int((scored["label_order"] > 0).sum()), "click_weights": list(CLICK_WEIGHTS),
              "purchase_ndcg@10": [ndcg[a]["purchase_ndcg@10"] for a in CLICK_WEIGHTS], "loss": losses,
              "loss_argmin": {k: CLICK_WEIGHTS[int(np.argmin(v))] for k, v in losses.items()}}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    lines = [("click weight a", [f"{a:g}" for a in CLICK_WEIGHTS]),
             ("purchase NDCG@10 (truth)", [f"{v:.4f}" for v in result["purchase_ndcg@10"]])]
    lines += [(f"loss, gains {k}", [f"{x:.4f}" for x in v]) for k, v in losses.items()]
    width = max(len(name) for name, _ in lines)
    for name, values in lines:
        print(f"{name:<{width}} " + " ".join(f"{v:>7}" for v in values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
