"""How much the logged labels cost a network: the same network trained on position-free labels.

    python -m bench.position_free_labels --logs DIR --work DIR --out bench/results/position_free.json

The logging policy shows an item higher the more relevant it is, so logged clicks mix relevance
with the examination of the position the old ranker gave; the bias tower (DMT 4.4) is meant to
take that part. Judged on the simulator's truth, a served network's click ranking is limited both
by that confounding and by what its features and examples let it learn. This bench separates the
two: it redraws every training example's labels from the truth without position effects,

    click ~ Bernoulli(p_click_rel),    order | click ~ Bernoulli(p_order_rel / p_click_rel)

(the `truth` log's position-free probabilities; an order only after a click, as in the logs),
trains each `--variants` model section on them with the run's `trainer:` settings, and scores the
served network on the *logged* eval day exactly as `funnel ablate` does. The same section trained
on the logged labels (`funnel ablate`, same data and settings) is the row it is compared with.

Only a simulator can do this (real logs have no truth); nothing in funnel trains on it.
"""

import argparse
import glob
import json
import os
import sys
import time
from typing import Any, Dict, List, Optional

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bench.results_io import quiet_bench, write_result  # noqa: E402
from pipeline import progress  # noqa: E402

with progress.held_warnings():  # import-time warnings (google-api-core's, via TensorFlow) go to the log
    import tensorflow as tf  # noqa: E402

    from models import features as F  # noqa: E402

CLICK_TRUTH, ORDER_TRUTH = "p_click_rel", "p_order_rel"


def relabel(files: List[str], truth: pd.DataFrame, out_dir: str, seed: int = 0) -> Dict[str, int]:
    """Writes each gzip TFRecord file of transformed examples to out_dir under its own name with
    the click and order labels redrawn from `truth` (impression_id, p_click_rel, p_order_rel).
    Refuses examples without truth. Returns the counts of examples, clicks and orders written."""
    probabilities = truth.set_index(F.IMPRESSION_ID)[[CLICK_TRUTH, ORDER_TRUTH]]
    if not probabilities.index.is_unique:
        raise ValueError("the truth log holds an impression_id twice")
    rng = np.random.default_rng(seed)
    counts = {"examples": 0, "clicks": 0, "orders": 0}
    os.makedirs(out_dir, exist_ok=True)
    for path in sorted(files):
        records = [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(path, "GZIP")]
        ids = [e.features.feature[F.IMPRESSION_ID].bytes_list.value[0].decode() for e in records]
        missing = [i for i in ids if i not in probabilities.index]
        if missing:
            raise ValueError(f"{path}: {len(missing)} examples have no truth (e.g. {missing[0]!r})")
        p = probabilities.loc[ids].to_numpy(np.float64)
        clicks = rng.random(len(ids)) < p[:, 0]
        # P(order | click) = p_order_rel / p_click_rel (an order is a clicked impression's)
        conditional = np.divide(p[:, 1], p[:, 0], out=np.zeros(len(ids)), where=p[:, 0] > 0)
        orders = clicks & (rng.random(len(ids)) < np.minimum(conditional, 1.0))
        with tf.io.TFRecordWriter(os.path.join(out_dir, os.path.basename(path)), "GZIP") as writer:
            for example, click, order in zip(records, clicks, orders):
                for name, value in ((F.CLICK, click), (F.ORDER, order)):
                    example.features.feature[name].float_list.value[:] = [float(value)]
                writer.write(example.SerializeToString())
        counts["examples"] += len(ids)
        counts["clicks"] += int(clicks.sum())
        counts["orders"] += int(orders.sum())
    return counts


def run_benchmark(logs_dir: str, work_dir: str, variants: Dict[str, Dict[str, Any]], config=None,
                  seed: int = 0, log=print) -> Dict[str, Any]:
    from pipeline import ablate, report
    from pipeline.config import load_config

    config = config or load_config()
    truth = report.read_truth(logs_dir)
    if truth is None:
        raise ValueError(f"{logs_dir}: no truth log; position-free labels need the simulator's truth")
    started = time.perf_counter()
    data = ablate.prepare_data(logs_dir, work_dir, config)
    root = os.path.join(os.path.abspath(work_dir), "position_free", data["key"], f"seed-{seed}")
    examples = os.path.join(root, "examples")
    counts_file = os.path.join(root, "counts.json")
    if not os.path.exists(counts_file):  # the relabelled train split, once per data and seed
        for split in (F.TRAIN_SPLIT, F.EVAL_SPLIT):
            files = glob.glob(os.path.join(data["transformed_examples"], f"Split-{split}", "*"))
            if split == F.TRAIN_SPLIT:
                counts = relabel(files, truth, os.path.join(examples, f"Split-{split}"), seed)
            else:  # validation during fit: the logged eval day as it is
                os.makedirs(os.path.join(examples, f"Split-{split}"), exist_ok=True)
                for path in files:
                    target = os.path.join(examples, f"Split-{split}", os.path.basename(path))
                    if not os.path.exists(target):
                        os.symlink(path, target)
        with open(counts_file, "w") as f:
            json.dump(counts, f)
    with open(counts_file) as f:
        counts = json.load(f)
    log(f"position-free train labels: {counts}")
    eval_files = sorted(glob.glob(os.path.join(data["examples"], f"Split-{F.EVAL_SPLIT}", "*")))
    relabelled = {**data, "key": f"{data['key']}-position-free-{seed}", "transformed_examples": examples}
    rows = []
    for name, given in variants.items():
        section = ablate.variant_section({"base": "dmt"}, given)
        custom = {"transform": config["transform"], "model": section, "trainer": config["trainer"]}
        logged = ablate.variant_figures(data, custom, work_dir, eval_files, truth,
                                        lambda m, n=name: log(f"{n} (logged labels): {m}"))
        free = ablate.variant_figures(relabelled, custom, work_dir, eval_files, truth,
                                      lambda m, n=name: log(f"{n} (position-free labels): {m}"))
        rows.append({"variant": name, "config": section, "logged_labels": logged, "position_free_labels": free})
    return {"logs": os.path.abspath(logs_dir), "label_seed": seed, "train_labels": counts, "rows": rows,
            "seconds": round(time.perf_counter() - started, 1)}


def markdown(result: Dict[str, Any]) -> str:
    def f(x):
        return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.4f}"

    lines = ["| variant | trained on | click AUC (logged) | order AUC (logged) | click eff. (truth) | "
             "click NDCG@10 (truth) | purchase NDCG@10 (order) | purchase NDCG@10 (score) |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in result["rows"]:
        for labels, key in (("logged labels", "logged_labels"), ("position-free labels", "position_free_labels")):
            r = row[key]
            lines.append(f"| {row['variant']} | {labels} | {f(r['metrics'].get(F.CLICK, {}).get('auc'))} | "
                         f"{f(r['metrics'].get(F.ORDER, {}).get('auc'))} | "
                         f"{f(r['ranking'].get(F.CLICK, {}).get('click_efficiency'))} | "
                         f"{f(r['ranking'].get(F.CLICK, {}).get('click_ndcg@10'))} | "
                         f"{f(r['ranking'].get(F.ORDER, {}).get('purchase_ndcg@10'))} | "
                         f"{f(r['ranking'].get('score', {}).get('purchase_ndcg@10'))} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logs", required=True, help="simulated logs (with the truth log)")
    parser.add_argument("--work", required=True, help="work directory (shares `funnel ablate`'s data and variants)")
    parser.add_argument("--out", default="bench/results/position_free.json")
    parser.add_argument("--variants", default='{"dmt": {}}',
                        help="JSON mapping of names to model sections over the dmt preset (as a suite's variants)")
    parser.add_argument("--label-seed", type=int, default=0)
    args = parser.parse_args(argv)
    variants = json.loads(args.variants)
    with progress.held_warnings():  # TFX's and Beam's import-time warnings go to the bench's log
        from pipeline import ablate, report  # noqa: F401  (imported here so that their warnings are held)
    with quiet_bench("position-free bench", os.path.join(args.work, "position_free", "position_free.log")):
        result = run_benchmark(args.logs, args.work, variants, seed=args.label_seed,
                               log=lambda message: print(message, flush=True))
    result["command"] = "python -m bench.position_free_labels " + " ".join(argv if argv is not None else sys.argv[1:])
    write_result(result, args.out, markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
