"""funnel's networks side by side with DeepCTR's, trained on the same ingested examples.

    python -m bench.peers_bench --logs DIR --work DIR --out bench/results/peers.json

1. The examples: funnel's own data steps (Ingest .. Transform, `pipeline.ablate.prepare_data`,
   cached per logs and data config), so every model reads the same transformed train and eval days.
2. The peers (pip `deepctr`, a bench-only extra; DeepCTR's default settings): MMOE, PLE and ESMM
   (click and order together; ESMM's outputs are pCTR and pCTCVR), DIN and BST, and the
   feature-crossing DCNMix (DCN-M, Wang et al. 2021) and EDCN (Chen et al. 2021) (one task each,
   trained once per task), on the same features: the four target ids, a user-id embedding,
   the scenario, the bucketised and z-scored dense features, and the behaviour sequences
   (item and category ids; mean-pooled, except DIN's and BST's click sequence, which they
   attend over; EDCN takes categorical inputs only, so of the dense features it reads the
   bucketised ones), each with and without position and page.
3. funnel's networks: the presets of `--presets` trained by `pipeline.ablate` (the Trainer's
   run_fn; the served network, and for DMT its training-time network with the bias tower).
4. A peer's figures are kept in WORK/peers/ per examples, settings and DeepCTR version (as
   `funnel ablate` keeps its variants), so a second run retrains only what changed.
5. Every model: the `trainer:` settings (default: batch 512, lazy_adam, 2 epochs at 1e-3 then 1e-4 as
   funnel's Trainer, the train examples reshuffled each epoch, seed 0), scored on the eval
   day: per task the logged AUC and GAUC, and with `truth` in the logs the truth-based ranking
   metrics of the report (click output: expected AUC against position-free click labels, its
   efficiency, NDCG@10 with the true click probability as gain; order output: NDCG@10 with the
   true purchase probability as gain), plus training examples/s (steps x batch / fit seconds).
6. Every row's logged AUC per task against the first preset's served and training-time networks
   (`funnel dmt (served)`, `funnel dmt (training-time)` by default), by DeLong's paired test on
   the same eval impressions: the difference, its standard error and p-value (an eval day holds
   ~66 orders, too few for one AUC alone to rank networks whose AUCs differ by 0.01).
"""

import argparse
import datetime
import glob
import hashlib
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
from pipeline import ablate_paired, progress  # noqa: E402

with progress.held_warnings():  # import-time warnings (google-api-core's, via TensorFlow) go to the log
    import tensorflow as tf  # noqa: E402

    from bench.deepctr_crossing import crossing_network  # noqa: E402
    from models import features as F  # noqa: E402
    from models import metrics  # noqa: E402
    from models import optimizers  # noqa: E402
    from models import preprocessing as P  # noqa: E402
    from models.trainer import FIT_FILE, learning_rates, rate_schedule  # noqa: E402

PEERS = ("MMOE", "PLE", "ESMM", "DIN", "BST", "DCNMix", "EDCN")
MULTI_TASK = ("MMOE", "PLE", "ESMM")
TASKS = (F.CLICK, F.ORDER)
ID_FEATURES = F.ITEM_ID_FEATURES + (F.USER_ID, F.SCENARIO)
SEQUENCE_FIELDS = (F.ITEM_ID, F.CATEGORY_ID)  # per behaviour sequence
ATTENDED = F.SEQUENCE_CLICK  # DIN's and BST's attended sequence: hist_item_id, hist_category_id
EMBEDDING_DIM = 8  # DeepCTR examples' size; funnel's ids use 8-32 (models/config.py)


def _sequence_input(sequence: str, field: str, attended: bool) -> str:
    return f"hist_{field}" if attended else f"{sequence}_seq_{field}"


def feature_columns(vocab_sizes: Dict[str, int], num_buckets: int, bucketized: List[str], with_bias: bool,
                    attend: bool):
    """DeepCTR feature columns. Ids are shifted by one (0 pads the sequences); sequence
    elements share their id kind's embedding table with the target."""
    from deepctr.feature_column import DenseFeat, SparseFeat, VarLenSparseFeat

    columns = [SparseFeat(name, vocab_sizes[name] + 1, EMBEDDING_DIM) for name in ID_FEATURES]
    columns += [SparseFeat(P.bucket_feature(name), num_buckets + 2, EMBEDDING_DIM) for name in bucketized]
    if with_bias:
        columns += [SparseFeat(F.POSITION, F.MAX_POSITION + 2, EMBEDDING_DIM),
                    SparseFeat(F.PAGE, F.MAX_PAGE + 2, EMBEDDING_DIM)]
    columns += [DenseFeat(name, 1) for name in F.DENSE_FEATURES]
    for sequence, (max_length, _) in F.SEQUENCES.items():
        attended = attend and sequence == ATTENDED
        for field in SEQUENCE_FIELDS:
            columns.append(VarLenSparseFeat(
                SparseFeat(_sequence_input(sequence, field, attended), vocab_sizes[field] + 1, EMBEDDING_DIM,
                           embedding_name=field),
                maxlen=max_length, combiner="mean", length_name="seq_length" if attended else None))
    return columns


def to_peer_inputs(features: Dict[str, Any], bucketized: List[str], with_bias: bool, attend: bool):
    """Transformed features -> DeepCTR's dense inputs."""
    out = {name: tf.cast(features[name], tf.int32) + 1 for name in ID_FEATURES}
    out.update({P.bucket_feature(n): tf.cast(features[P.bucket_feature(n)], tf.int32) + 1 for n in bucketized})
    if with_bias:
        out[F.POSITION] = tf.cast(features[F.POSITION], tf.int32)
        out[F.PAGE] = tf.cast(features[F.PAGE], tf.int32)
    out.update({name: features[name] for name in F.DENSE_FEATURES})
    for sequence, (max_length, _) in F.SEQUENCES.items():
        attended = attend and sequence == ATTENDED
        for field in SEQUENCE_FIELDS:
            ids = features[F.sequence_feature(sequence, field)]
            ids = tf.sparse.slice(ids, [0, 0], [tf.shape(ids, tf.int64)[0], max_length])
            dense = tf.sparse.to_dense(ids, default_value=-1) + 1  # newest first, 0 = padding
            dense = tf.pad(dense, [[0, 0], [0, max_length - tf.shape(dense)[1]]])
            dense = tf.reshape(dense, [-1, max_length])  # static length (BST's position encoding)
            out[_sequence_input(sequence, field, attended)] = tf.cast(dense, tf.int32)
            if attended and field == F.ITEM_ID:
                out["seq_length"] = tf.reduce_sum(tf.cast(dense > 0, tf.int32), axis=1, keepdims=True)
    return out


def build_peer(name: str, columns, task: Optional[str]):
    from deepctr import models

    if name == "MMOE":
        return models.MMOE(columns, task_names=list(TASKS))
    if name == "PLE":
        return models.PLE(columns, task_names=list(TASKS))
    if name == "ESMM":
        return models.ESMM(columns, task_names=list(TASKS))  # click = pCTR, order = pCTCVR
    if name in ("DCNMix", "EDCN"):
        return crossing_network(name, columns)
    history = list(SEQUENCE_FIELDS)
    return models.DIN(columns, history) if name == "DIN" else models.BST(columns, history)


class _Data:
    """The transformed train and eval files of an ablate data directory, and the eval ids."""

    def __init__(self, data: Dict[str, str]):
        import tensorflow_transform as tft

        self.tft = tft.TFTransformOutput(data["transform_graph"])
        self.spec = self.tft.transformed_feature_spec()
        self.files = {split: sorted(glob.glob(os.path.join(data["transformed_examples"], f"Split-{split}", "*")))
                      for split in (F.TRAIN_SPLIT, F.EVAL_SPLIT)}
        self.vocab_sizes = {name: self.tft.vocabulary_size_by_name(P.vocab_name(name)) for name in P.ID_VOCABULARIES}
        oov = P.DEFAULT_TRANSFORM_CONFIG["num_oov_buckets"]
        self.vocab_sizes = {k: v + oov for k, v in self.vocab_sizes.items()}

    def dataset(self, split: str, batch_size: int, shuffle: bool, seed: int) -> tf.data.Dataset:
        files = self.files[split]
        records = tf.data.TFRecordDataset(files, compression_type="GZIP" if files[0].endswith(".gz") else "")
        if shuffle:
            records = records.shuffle(50_000, seed=seed, reshuffle_each_iteration=True)  # a new order each epoch
        return records.batch(batch_size).map(lambda x: tf.io.parse_example(x, self.spec),
                                             num_parallel_calls=tf.data.AUTOTUNE)


# Bumped when what a cached peer result means changes (features, metrics, training).
PEER_RESULTS_VERSION = 3  # 2: the trainer's epochs and per-epoch rates; reshuffled each epoch;
#                          3: the eval scores kept beside the figures, for the paired tests


def optimizer_name(settings: Dict[str, Any]) -> str:
    """The `trainer.optimizer` funnel's Trainer would use with these settings (unset: its default)."""
    return settings.get("optimizer", optimizers.DEFAULT)


def peer_cache_path(work_dir: str, data_key: str, name: str, with_bias: bool, task: Optional[str],
                    settings: Dict[str, Any], bucketized: List[str], num_buckets: int) -> str:
    """Where one peer run's figures are kept: like `funnel ablate`'s variants, a peer trained on
    the same examples with the same settings is not retrained when the bench runs again (e.g.
    after a funnel preset changed)."""
    import deepctr

    key = json.dumps([PEER_RESULTS_VERSION, deepctr.__version__, data_key, name, with_bias, task,
                      {**{k: settings[k] for k in ("batch_size", "epochs", "learning_rate", "seed")},
                       "optimizer": optimizer_name(settings)},
                      list(bucketized), num_buckets, EMBEDDING_DIM], sort_keys=True, default=str)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return os.path.join(os.path.abspath(work_dir), "peers", f"{name}{'+position' if with_bias else ''}"
                        f"{'-' + task if task else ''}-{digest}.json")


def train_peer(name: str, data: _Data, settings: Dict[str, Any], bucketized: List[str], num_buckets: int,
               with_bias: bool, task: Optional[str]) -> Dict[str, Any]:
    import tf_keras as keras

    keras.backend.clear_session()
    keras.utils.set_random_seed(settings["seed"])
    attend = name in ("DIN", "BST")
    columns = feature_columns(data.vocab_sizes, num_buckets, bucketized, with_bias, attend)
    model = build_peer(name, columns, task)
    tasks = [task] if task else list(TASKS)
    rates = learning_rates(settings)  # funnel's schedule: one rate per epoch, as its Trainer
    model.compile(optimizers.create(optimizer_name(settings), rates[0]), loss=["binary_crossentropy"] * len(tasks))

    def pair(features):
        labels = tuple(tf.reshape(features[t], [-1, 1]) for t in tasks)
        return to_peer_inputs(features, bucketized, with_bias, attend), labels if len(labels) > 1 else labels[0]

    train = data.dataset(F.TRAIN_SPLIT, settings["batch_size"], True, settings["seed"]).map(pair).prefetch(2)
    started = time.perf_counter()
    model.fit(train, epochs=len(rates), verbose=0, callbacks=rate_schedule(rates))
    seconds = time.perf_counter() - started
    steps = int(model.optimizer.iterations.numpy())  # no per-batch callback: it would sync every step
    ids, outputs = [], {t: [] for t in tasks}
    for features in data.dataset(F.EVAL_SPLIT, 4096, False, 0):
        predicted = model(to_peer_inputs(features, bucketized, with_bias, attend), training=False)
        predicted = predicted if isinstance(predicted, (list, tuple)) else [predicted]
        for t, p in zip(tasks, predicted):
            outputs[t].append(np.reshape(p.numpy(), [-1]))
        ids.append(np.reshape(features[F.IMPRESSION_ID].numpy(), [-1]).astype(str))
    frame = pd.DataFrame({F.IMPRESSION_ID: np.concatenate(ids), **{t: np.concatenate(v) for t, v in outputs.items()}})
    return {"scores": frame, "fit_seconds": seconds, "train_steps": steps,
            "final_learning_rate": float(keras.backend.get_value(model.optimizer.learning_rate)),
            "optimizer": type(model.optimizer).__name__, "examples_per_second": steps * settings["batch_size"] / seconds}


def eval_ids(examples_uri: str) -> pd.DataFrame:
    """impression_id, request_id, user_id, position and labels of the raw eval examples."""
    files = sorted(glob.glob(os.path.join(examples_uri, f"Split-{F.EVAL_SPLIT}", "*")))
    spec = {F.IMPRESSION_ID: tf.io.FixedLenFeature([1], tf.string), F.REQUEST_ID: tf.io.FixedLenFeature([1], tf.string),
            F.USER_ID: tf.io.FixedLenFeature([1], tf.string), F.POSITION: tf.io.FixedLenFeature([1], tf.int64),
            **{t: tf.io.FixedLenFeature([1], tf.int64) for t in TASKS}}
    columns: Dict[str, list] = {}
    for batch in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(8192):
        for name, value in tf.io.parse_example(batch, spec).items():
            value = value[:, 0].numpy()
            columns.setdefault(name if name not in TASKS else f"label_{name}", []).append(
                value.astype(str) if value.dtype == object else value)
    return pd.DataFrame({k: np.concatenate(v) for k, v in columns.items()})


def quality(scored: pd.DataFrame, outputs: Dict[str, str]) -> Dict[str, Dict[str, float]]:
    """Per task (output column named in `outputs`): logged AUC and GAUC, and the truth-based
    ranking metrics of that output."""
    from pipeline import report

    result = {}
    for task, column in outputs.items():
        labels, scores = scored[f"label_{task}"].to_numpy(), scored[column].to_numpy()
        result[task] = {"auc": metrics.auc(labels, scores), "gauc": metrics.gauc(labels, scores, scored[F.USER_ID]),
                        **report.truth_rankings(scored, {task: scores}).get(task, {})}
    return result


def run_benchmark(logs_dir: str, work_dir: str, peers=PEERS, presets=("dmt", "dnn-base"), config=None,
                  log=print) -> Dict[str, Any]:
    from models.trainer import LOGGED_MODEL_DIR
    from pipeline import ablate, report
    from pipeline.config import load_config
    from serving.batch_predict import score_examples

    config = config or load_config()
    settings = dict(config["trainer"])
    started = time.perf_counter()
    data_uris = ablate.prepare_data(logs_dir, work_dir, config)
    data = _Data(data_uris)
    ids = eval_ids(data_uris["examples"])
    truth = report.read_truth(logs_dir)
    if truth is not None:
        ids = ids.merge(truth[[c for c in truth.columns if c in (F.IMPRESSION_ID, "p_click_rel", "p_order_rel")]],
                        how="left", on=F.IMPRESSION_ID)
    transform = P.transform_config({"transform": config["transform"]})
    bucketized, num_buckets = list(transform["bucketized_features"]), int(transform["num_buckets"])
    rows = []
    eval_scores: Dict[str, pd.DataFrame] = {}  # per row: its task outputs by impression_id
    for name in peers:
        for with_bias in (False, True):
            runs = [(None, list(TASKS))] if name in MULTI_TASK else [(t, [t]) for t in TASKS]
            row = {"model": f"deepctr {name}" + (" +position" if with_bias else ""), "library": "deepctr",
                   "position_features": with_bias, "metrics": {}, "examples_per_second": {}}
            row_scores = []  # one frame per trained model (two for single-task peers)
            for task, tasks in runs:
                cached = peer_cache_path(work_dir, data_uris["key"], name, with_bias, task, settings,
                                         bucketized, num_buckets)
                scores_file = os.path.splitext(cached)[0] + ".scores.csv.gz"
                was_cached = os.path.exists(cached)
                if was_cached:
                    with open(cached) as f:
                        run = json.load(f)
                    run_scores = pd.read_csv(scores_file, dtype={F.IMPRESSION_ID: str})
                else:
                    trained = train_peer(name, data, settings, bucketized, num_buckets, with_bias, task)
                    run_scores = trained["scores"]
                    scored = ids.merge(run_scores, on=F.IMPRESSION_ID, how="inner")
                    run = {"metrics": quality(scored, {t: t for t in tasks}),
                           "examples_per_second": trained["examples_per_second"]}
                    os.makedirs(os.path.dirname(cached), exist_ok=True)
                    run_scores.to_csv(scores_file, index=False)  # before the figures, which mark the run done
                    with open(cached + ".tmp", "w") as f:
                        json.dump(run, f, default=float)
                    os.replace(cached + ".tmp", cached)
                row_scores.append(run_scores.set_index(F.IMPRESSION_ID))
                row["metrics"].update(run["metrics"])
                row["examples_per_second"][task or "all"] = run["examples_per_second"]
                log(f"[peers] {row['model']}{' (' + task + ')' if task else ''}: "
                    f"{run['examples_per_second']:.0f} examples/s, "
                    + ", ".join(f"{t} AUC {row['metrics'][t]['auc']:.4f}" for t in tasks)
                    + (" (cached)" if was_cached else ""))
            rows.append(row)
            eval_scores[row["model"]] = pd.concat(row_scores, axis=1)
    for preset in presets:
        custom = {"transform": config["transform"], "model": {"preset": preset}, "trainer": config["trainer"]}
        out_dir = ablate.variant_dir(work_dir, data_uris, custom)  # shared with `funnel ablate`
        eval_files = sorted(glob.glob(os.path.join(data_uris["examples"], f"Split-{F.EVAL_SPLIT}", "*")))
        say = lambda message: log(f"[peers] funnel {preset}: {message}")  # noqa: E731
        log(f"[peers] funnel {preset}: training (or reusing) the variant in {out_dir}")
        ablate.variant_figures(data_uris, custom, work_dir, eval_files, truth, say=say)
        if not os.path.exists(os.path.join(out_dir, "run", FIT_FILE)):  # trained before speeds were recorded
            os.remove(os.path.join(out_dir, "figures.json"))
            ablate.variant_figures(data_uris, custom, work_dir, eval_files, truth, say=say)
        with open(os.path.join(out_dir, "run", FIT_FILE)) as f:
            fit = json.load(f)
        networks = [("served", os.path.join(out_dir, "serving"))]
        if os.path.isdir(os.path.join(out_dir, "run", LOGGED_MODEL_DIR)):
            networks.append(("training-time", os.path.join(out_dir, "run", LOGGED_MODEL_DIR)))
        for kind, model_dir in networks:
            scores = score_examples(model_dir, eval_files)
            scored = ids.merge(scores.rename(columns={"score": "fused_score"}), on=F.IMPRESSION_ID, how="inner")
            outputs = {t: t for t in TASKS if t in scored}
            row = {"model": f"funnel {preset} ({kind})", "library": "funnel", "position_features": kind != "served",
                   "metrics": quality(scored, outputs), "examples_per_second": {"all": fit["examples_per_second"]}}
            if "fused_score" in scored:
                row["score"] = quality(scored, {F.ORDER: "fused_score"})[F.ORDER]
            rows.append(row)
            eval_scores[row["model"]] = scored.set_index(F.IMPRESSION_ID)[list(outputs)]
            log(f"[peers] {row['model']}: " + ", ".join(f"{t} AUC {row['metrics'][t]['auc']:.4f}" for t in outputs))
    # the acceptance's two comparisons: every row against funnel's served network and against its
    # training-time network (the one the +position peers compete with)
    references = [] if not presets else [
        r for r in (f"funnel {presets[0]} ({kind})" for kind in ("served", "training-time")) if r in eval_scores]
    for reference in references:
        against_reference(rows, eval_scores, ids, reference)
    return {"rows": rows, "settings": {k: settings[k] for k in ("batch_size", "epochs", "learning_rate", "seed")},
            "paired_references": references,
            "logs": os.path.abspath(logs_dir), "eval_days": config["ingest"]["eval_days"], "eval_examples": int(len(ids)),
            # a logged AUC rests on its positives: the default world's eval day has ~66 orders
            "eval_positives": {t: int(ids[f"label_{t}"].sum()) for t in TASKS},
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "wall_seconds": time.perf_counter() - started}


def against_reference(rows: List[Dict[str, Any]], eval_scores: Dict[str, pd.DataFrame], ids: pd.DataFrame,
                      reference: str) -> None:
    """Adds to each other row, per task, DeLong's paired test of its logged AUC against the
    reference's (`metrics.paired_auc`, on the eval impressions both scored), under
    row["against"][reference]: with ~66 orders on the eval day one order AUC has a standard
    error near 0.027, but two networks that rank most orders alike differ by much less, and the
    pairing measures by how much."""
    labelled = ids[[F.IMPRESSION_ID] + [f"label_{t}" for t in TASKS]]
    reference_scores = eval_scores[reference].reset_index()
    for row in rows:
        if row["model"] == reference:
            continue
        scored = labelled.merge(eval_scores[row["model"]].reset_index(), on=F.IMPRESSION_ID)
        tests = metrics.paired_auc_on_shared_rows(scored, reference_scores, {t: f"label_{t}" for t in TASKS},
                                                  F.IMPRESSION_ID)
        row.setdefault("against", {})[reference] = {t: ablate_paired.as_recorded(test) for t, test in tests.items()}


def markdown(result: Dict[str, Any]) -> str:
    def f(x):
        return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.4f}"

    # Self-describing: `make bench-peers` writes this file over the committed one.
    settings = result.get("settings", {})
    positives = ", ".join(f"{n:,} {task}s" for task, n in result.get("eval_positives", {}).items())
    eval_days = f" from the logs' last {result['eval_days']} day(s)" if "eval_days" in result else ""
    lines = ["# funnel beside DeepCTR on the same ingested examples", "",
             "Made by:", "", "```", result.get("command", "python -m bench.peers_bench"), "```", "",
             f"Logs `{result.get('logs', '?')}`; every model trained with batch {settings.get('batch_size')}, "
             f"{settings.get('epochs')} epoch(s), learning rate {settings.get('learning_rate')}, seed "
             f"{settings.get('seed')}; {result.get('eval_examples', 0):,} eval examples"
             f"{f' ({positives})' if positives else ''}{eval_days}; "
             f"{result.get('wall_seconds', 0.0):,.0f} s wall; {result.get('date', '')}.", "",
             "AUC/GAUC: logged labels of the eval split. Truth columns: the simulator's position-free "
             "probabilities (click eff. = (expected AUC against position-free click labels - 0.5) / (that of "
             "the true probabilities - 0.5); NDCG@10 per request with the true click / purchase probability "
             "as gain). \"+position\": the peer also reads position and page and is scored at the logged ones; "
             "funnel's training-time network keeps its bias tower and is scored at the logged positions. "
             "examples/s: steps x batch / fit seconds (one number per trained model).", "",
             "| model | click AUC | order AUC | click GAUC | click eff. (truth) | click NDCG@10 (truth) | "
             "purchase NDCG@10 (order output) | purchase NDCG@10 (score) | train examples/s |",
             "|---|" + "---:|" * 8]
    for row in result["rows"]:
        m = row["metrics"]
        eps = row["examples_per_second"]
        lines.append(f"| {row['model']} | {f(m.get('click', {}).get('auc'))} | {f(m.get('order', {}).get('auc'))} | "
                     f"{f(m.get('click', {}).get('gauc'))} | {f(m.get('click', {}).get('click_efficiency'))} | "
                     f"{f(m.get('click', {}).get('click_ndcg@10'))} | {f(m.get('order', {}).get('purchase_ndcg@10'))} | "
                     f"{f(row.get('score', {}).get('purchase_ndcg@10'))} | "
                     + " / ".join(f"{v:.0f}" for v in eps.values()) + " |")
    for reference in result.get("paired_references", []):
        lines += ["", f"Paired against {reference} (DeLong's test on the same eval impressions): each row's "
                  "logged AUC minus the reference's, ± the standard error of that difference, and the "
                  "two-sided p-value. A negative difference: the reference is ahead.", "",
                  "| model | click AUC difference | p | order AUC difference | p |", "|---|---:|---:|---:|---:|"]
        for row in result["rows"]:
            paired = row.get("against", {}).get(reference)
            if paired is None:
                continue
            cells = [cell for task in TASKS for cell in ablate_paired.paired_cells(paired.get(task))]
            lines.append(f"| {row['model']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logs", required=True)
    parser.add_argument("--work", required=True, help="work directory (shares `funnel ablate`'s data and variants)")
    parser.add_argument("--out", default="bench/results/peers.json")
    parser.add_argument("--peers", nargs="+", default=list(PEERS), choices=list(PEERS))
    parser.add_argument("--presets", nargs="+", default=["dmt", "dnn-base"])
    parser.add_argument("--seed", type=int, default=None,
                        help="every model's training seed (default: pipeline/config.yaml's trainer seed, 0); "
                             "one run per seed, each cached in --work like the rest")
    parser.add_argument("--config", metavar="FILE",
                        help="YAML over pipeline/config.yaml, as `funnel ablate --config`: e.g. an `ingest:` "
                             "section with a longer eval split (eval_days), whose extra orders narrow the "
                             "paired tests' errors")
    args = parser.parse_args(argv)
    with progress.held_warnings():  # TFX's and Beam's import-time warnings go to the bench's log
        from pipeline import ablate  # noqa: F401  (imported here so that its warnings are held)
        from pipeline.config import load_config

    try:
        config = load_config(args.config)
    except ValueError as e:  # names the file
        parser.error(str(e))
    if args.seed is not None:
        config["trainer"]["seed"] = args.seed
    with quiet_bench("peers bench", os.path.join(args.work, "peers", "peers.log")):
        result = run_benchmark(args.logs, args.work, args.peers, args.presets, config=config,
                               log=lambda message: print(message, flush=True))
    result["command"] = "python -m bench.peers_bench " + " ".join(argv if argv is not None else sys.argv[1:])
    write_result(result, args.out, markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
