"""The Census-Income (KDD) multi-task benchmark through funnel's own mixture layers.

The public benchmark of MMoE (Ma et al., KDD 2018, 4.3) and DTN (Deep Multiple Task-specific
Feature Interactions Network for Multi-Task Recommendation, Table 3): two tasks on the 1994 US
census, `income` (> 50K) and `marital` (never married), from the other 39 attributes. Each
mixture of `models/mixtures` (shared-bottom, MMoE, PLE; built by the same registry as the
ranker) sits on one shared input, the concatenation of an embedding per categorical attribute
and the standardised numeric ones, with a logit per task.

The data: `../shared/data/census-income.test.gz`, the UCI test split (99,762 rows), the only
split here. It is split once, stratified by (income, marital) with a fixed seed, into train /
validation / test (80 / 10 / 10); the papers train on the UCI train split (199,523 rows) and
test on this one, so the figures are comparable in kind, not to the digit. Each variant trains
with early stopping on the validation split's mean AUC, for each of SEEDS, and reports the
test AUC per task (mean and standard deviation over the seeds) beside the DTN paper's Table 3.

Peers (`--variants` names starting "deepctr", bench-only: `make bench-deps`): DeepCTR's feature-crossing
DCN-M (`DCNMix`) and EDCN, single-task CTR models, so one network per task, trained side by side
in one Keras model on the same inputs, split and early stopping. EDCN takes categorical inputs
only (DeepCTR builds its inputs from the deep part's columns, which may not be dense): it reads the
numeric attributes as 10 quantile buckets each, fitted on the train split.

    python -m bench.census_bench --out bench/results/census.json [--seeds 0,1,2,3,4]
"""

import argparse
import gzip
import shlex
import sys
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from bench.results_io import quiet_bench, write_result
from pipeline import progress

with progress.held_warnings():  # import-time warnings (google-api-core's, via TensorFlow) go to the log
    import tensorflow as tf
    import tf_keras as keras

    from bench.deepctr_crossing import crossing_network
    from models import metrics
    from models.experts.base import FIELDS, IDS
    from models.registry import MIXTURES
    import models.mixtures  # noqa: F401  (registers the mixtures)

DATA = "../shared/data/census-income.test.gz"
TASKS = ("income", "marital")
# Column indices of the UCI file (census-income.names): the numeric attributes (money amounts
# log-scaled), the marital status (task 2, not an input), the instance weight (a sampling
# weight, not an attribute) and the income label (task 1).
NUMERIC = {0: "age", 5: "wage_per_hour", 16: "capital_gains", 17: "capital_losses", 18: "dividends",
           30: "num_persons_worked_for_employer", 38: "weeks_worked"}
MONEY = ("wage_per_hour", "capital_gains", "capital_losses", "dividends")
MARITAL, INSTANCE_WEIGHT, INCOME = 7, 24, 41
SPLIT = (0.8, 0.1, 0.1)
SPLIT_SEED = 2020
SEEDS = (0, 1, 2, 3, 4)
EMBEDDING_DIM = 4
# Each variant's mixture section (models/mixtures): small, as the tasks are (15.6k, 25.5k and 30.2k weights
# with the embeddings).
VARIANTS = {
    "shared-bottom": {"type": "shared_bottom", "bottom_units": [64, 32], "tower_units": [16]},
    "mmoe": {"type": "mmoe", "num_experts": 4, "expert_units": [32, 16], "tower_units": [16]},
    "ple": {"type": "ple", "levels": 2, "task_experts": 1, "shared_experts": 2, "expert_units": [32, 16],
            "tower_units": [16]},
    # DTN's three feature-interaction methods per module (shared, income, marital), each 16 wide;
    # MemoNet crosses a chosen subset of the fields, as the paper does (its "MemoNet" paragraph):
    # class of worker, education, major industry and occupation, sex, full/part time, tax filer
    # status and household status (28 pairs)
    "dtn": {"type": "dtn", "interaction_units": 16, "tower_units": [16], "task_sensitive": True,
            "interactions": [{"type": "gdcn", "layers": 2, "projection_dim": 16},
                             {"type": "masknet", "mode": "parallel", "blocks": 2, "block_units": 16,
                              "mask_hidden": 32},
                             {"type": "memonet", "codebook_size": 5000, "codebook_dim": 4, "hashes": 2,
                              "id_fields": ["c1", "c4", "c8", "c9", "c12", "c15", "c19", "c22"]}]},
}
# DeepCTR's models (bench.peers_bench's peers on the default world): name -> DeepCTR model
PEERS = {"deepctr DCN-M": "DCNMix", "deepctr EDCN": "EDCN"}
# every `--variants` name: funnel's mixtures and the peers
ALL_VARIANTS = {**VARIANTS, **{name: {"peer": model} for name, model in PEERS.items()}}
# DTN paper, Table 3 (AUC, Census task 1 / task 2), on the UCI train / test splits.
PUBLISHED = {"shared-bottom": (0.9361, 0.9915), "mmoe": (0.9410, 0.9926), "ple": (0.9521, 0.9945),
             "dtn": (0.9560, 0.9952)}


def load(path: str = DATA, rows: Optional[int] = None) -> pd.DataFrame:
    """The UCI file as a frame: one column per attribute (`c<index>`), labels `income` and
    `marital`; the marital status and instance weight are dropped from the attributes."""
    with gzip.open(path, "rt") as f:
        frame = pd.read_csv(f, header=None, skipinitialspace=True, nrows=rows, dtype=str, na_filter=False)
    if frame.shape[1] != INCOME + 1:
        raise ValueError(f"{path}: {frame.shape[1]} columns, the Census-Income (KDD) file has {INCOME + 1}")
    labels = pd.DataFrame({"income": (frame[INCOME].str.strip() == "50000+.").astype(np.float32),
                           "marital": (frame[MARITAL].str.strip() == "Never married").astype(np.float32)})
    attributes = frame.drop(columns=[MARITAL, INSTANCE_WEIGHT, INCOME])
    attributes.columns = [NUMERIC.get(c, f"c{c}") for c in attributes.columns]
    for name in NUMERIC.values():
        attributes[name] = pd.to_numeric(attributes[name], errors="raise").astype(np.float32)
    return pd.concat([attributes, labels], axis=1)


def split(frame: pd.DataFrame, seed: int = SPLIT_SEED) -> Dict[str, pd.DataFrame]:
    """train / validation / test, stratified by the (income, marital) pair."""
    rng = np.random.default_rng(seed)
    parts = {"train": [], "validation": [], "test": []}
    for _, group in frame.groupby(["income", "marital"]):
        index = rng.permutation(group.index.to_numpy())
        bounds = np.round(np.cumsum(SPLIT)[:2] * len(index)).astype(int)
        for name, rows in zip(parts, np.split(index, bounds)):
            parts[name].append(rows)
    return {name: frame.loc[np.sort(np.concatenate(rows))].reset_index(drop=True) for name, rows in parts.items()}


class Encoder:
    """Attribute columns -> model inputs, fitted on the train split: an id per categorical value
    (0: unseen), numeric attributes log-scaled (money) and standardised."""

    def __init__(self, train: pd.DataFrame):
        self.categorical = [c for c in train.columns if c.startswith("c")]
        self.vocabularies = {c: {v: i + 1 for i, v in enumerate(sorted(train[c].unique()))} for c in self.categorical}
        numeric = self._numeric(train)
        self.mean, self.std = numeric.mean(axis=0), numeric.std(axis=0) + 1e-6
        # deciles per numeric attribute, for models without dense inputs (EDCN)
        self.boundaries = [np.unique(np.quantile(column, np.linspace(0.1, 0.9, 9))) for column in numeric.T]

    @staticmethod
    def _numeric(frame: pd.DataFrame) -> np.ndarray:
        return np.stack([np.log1p(np.maximum(frame[n].to_numpy(), 0)) if n in MONEY else frame[n].to_numpy()
                         for n in NUMERIC.values()], axis=1).astype(np.float32)

    def inputs(self, frame: pd.DataFrame) -> Dict[str, np.ndarray]:
        found = {c: frame[c].map(self.vocabularies[c]).fillna(0).to_numpy(np.int64) for c in self.categorical}
        found["numeric"] = (self._numeric(frame) - self.mean) / self.std
        return found


def build(encoder: Encoder, mixture: dict) -> keras.Model:
    """Embeddings and numeric attributes -> the registry's mixture -> a probability per task."""
    inputs = {c: keras.Input((), dtype=tf.int64, name=c) for c in encoder.categorical}
    inputs["numeric"] = keras.Input((len(NUMERIC),), name="numeric")
    parts = [keras.layers.Embedding(len(encoder.vocabularies[c]) + 1, EMBEDDING_DIM, name=f"embed_{c}")(inputs[c])
             for c in encoder.categorical]
    x = keras.layers.Concatenate()(parts + [inputs["numeric"]])
    layer = MIXTURES.build(mixture, towers=list(TASKS), num_scenarios=0, name="mixture")
    # feature-interaction experts also read x per field (models/experts/base.py): an embedding
    # per categorical attribute, the numeric ones together, and the categorical ids
    fields = ({FIELDS: parts + [inputs["numeric"]], IDS: {c: inputs[c] for c in encoder.categorical}}
              if layer.uses_fields else None)
    logits = layer(x, fields=fields)
    outputs = {t: keras.layers.Activation("sigmoid", name=t)(logits[t]) for t in TASKS}
    return keras.Model(inputs, outputs)


def build_peer(encoder: Encoder, model: str) -> keras.Model:
    """One DeepCTR `model` per task on the encoded attributes -> a probability per task."""
    from deepctr.feature_column import DenseFeat, SparseFeat

    sparse = [SparseFeat(c, len(encoder.vocabularies[c]) + 1, EMBEDDING_DIM, dtype="int64")
              for c in encoder.categorical]
    buckets = [SparseFeat(bucket_name(n), len(b) + 1, EMBEDDING_DIM, dtype="int64")
               for n, b in zip(NUMERIC.values(), encoder.boundaries)]
    columns = sparse + [DenseFeat("numeric", len(NUMERIC))]
    inputs = {c.name: keras.Input((1,), dtype=tf.int64, name=c.name) for c in sparse + buckets}
    inputs["numeric"] = keras.Input((len(NUMERIC),), name="numeric")
    outputs = {}
    for task in TASKS:  # EDCN reads the numeric attributes' buckets (it takes no dense input)
        network = crossing_network(model, columns if model == "DCNMix" else sparse + buckets)
        outputs[task] = keras.layers.Activation("linear", name=task)(network(inputs))
    return keras.Model(inputs, outputs)


def bucket_name(numeric: str) -> str:
    return f"{numeric}_bucket"


def peer_inputs(encoder: Encoder, frame: pd.DataFrame) -> Dict[str, np.ndarray]:
    """DeepCTR's inputs: [N, 1] per categorical attribute and per numeric attribute's bucket,
    and the standardised numeric attributes together."""
    found = encoder.inputs(frame)
    numeric = encoder._numeric(frame)
    for i, name in enumerate(NUMERIC.values()):
        found[bucket_name(name)] = np.searchsorted(encoder.boundaries[i], numeric[:, i], side="right")
    return {name: value.reshape(-1, 1) if name != "numeric" else value for name, value in found.items()}


class _BestOnValidation(keras.callbacks.Callback):
    """Keeps the weights of the epoch with the best mean validation AUC (early stopping)."""

    def __init__(self, inputs, labels: pd.DataFrame, patience: int):
        super().__init__()
        self.inputs, self.labels, self.patience = inputs, labels, patience
        self.best, self.best_weights, self.best_epoch, self.waited = -1.0, None, 0, 0

    def on_epoch_end(self, epoch, logs=None):
        score = float(np.mean(list(evaluate(self.model, self.inputs, self.labels).values())))
        if score > self.best:
            self.best, self.best_weights, self.best_epoch, self.waited = score, self.model.get_weights(), epoch + 1, 0
        else:
            self.waited += 1
            self.model.stop_training = self.waited >= self.patience


def evaluate(model: keras.Model, inputs, labels: pd.DataFrame) -> Dict[str, float]:
    predictions = model.predict(inputs, batch_size=8192, verbose=0)
    return {t: metrics.auc(labels[t].to_numpy(), np.ravel(predictions[t])) for t in TASKS}


def train_variant(parts: Dict[str, pd.DataFrame], mixture: dict, seed: int, epochs: int, batch_size: int,
                  patience: int = 3) -> dict:
    """One training of one mixture (or a peer: `{"peer": DeepCTR model}`): test AUC per task at
    the best validation epoch."""
    keras.utils.set_random_seed(seed)
    encoder = Encoder(parts["train"])
    if "peer" in mixture:
        inputs = {name: peer_inputs(encoder, frame) for name, frame in parts.items()}
        model = build_peer(encoder, mixture["peer"])
    else:
        inputs = {name: encoder.inputs(frame) for name, frame in parts.items()}
        model = build(encoder, mixture)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss={t: "binary_crossentropy" for t in TASKS})
    best = _BestOnValidation(inputs["validation"], parts["validation"], patience)
    start = time.perf_counter()
    model.fit(inputs["train"], {t: parts["train"][t].to_numpy() for t in TASKS}, batch_size=batch_size,
              epochs=epochs, shuffle=True, verbose=0, callbacks=[best])
    model.set_weights(best.best_weights)
    return {"test_auc": evaluate(model, inputs["test"], parts["test"]), "best_epoch": best.best_epoch,
            "seconds": time.perf_counter() - start, "parameters": int(model.count_params())}


def run_benchmark(path: str = DATA, seeds: Sequence[int] = SEEDS, epochs: int = 10, batch_size: int = 512,
                  variants: Optional[Dict[str, dict]] = None, rows: Optional[int] = None, log=print) -> dict:
    parts = split(load(path, rows))
    variants = variants or ALL_VARIANTS
    result = {"data": {"path": path, "rows": sum(len(p) for p in parts.values()),
                       "split": {name: len(p) for name, p in parts.items()}, "split_seed": SPLIT_SEED,
                       "positive_rate": {t: float(pd.concat(parts.values())[t].mean()) for t in TASKS}},
              "settings": {"epochs": epochs, "batch_size": batch_size, "seeds": list(seeds),
                           "embedding_dim": EMBEDDING_DIM, "early_stopping": "best mean validation AUC, patience 3"},
              "variants": {}}
    for name, mixture in variants.items():
        runs = []
        for seed in seeds:
            runs.append(train_variant(parts, mixture, seed, epochs, batch_size))
            log(f"census {name} seed {seed}: " + ", ".join(f"{t} {v:.4f}" for t, v in runs[-1]["test_auc"].items()))
        aucs = {t: [r["test_auc"][t] for r in runs] for t in TASKS}
        result["variants"][name] = {
            "mixture": mixture, "parameters": runs[0]["parameters"],
            "auc": {t: {"mean": float(np.mean(v)), "std": float(np.std(v)), "runs": v} for t, v in aucs.items()},
            "best_epoch": [r["best_epoch"] for r in runs], "seconds": [r["seconds"] for r in runs],
            "published": dict(zip(TASKS, PUBLISHED[name])) if name in PUBLISHED else None}
    return result


def table(result: dict) -> str:
    split_sizes = result["data"]["split"]
    lines = ["| model | income AUC (mean ± std) | marital AUC (mean ± std) | DTN Table 3 income / marital | parameters |",
             "|---|---:|---:|---:|---:|"]
    for name, variant in result["variants"].items():
        published = variant["published"]
        cells = [f"{variant['auc'][t]['mean']:.4f} ± {variant['auc'][t]['std']:.4f}" for t in TASKS]
        lines.append(f"| {name} | {cells[0]} | {cells[1]} | "
                     + (f"{published['income']:.4f} / {published['marital']:.4f}" if published else "-")
                     + f" | {variant['parameters']} |")
    lines.append(f"\nTest AUC over seeds {result['settings']['seeds']}; split of the UCI test file stratified by "
                 f"(income, marital), seed {result['data']['split_seed']}: train {split_sizes['train']}, validation "
                 f"{split_sizes['validation']}, test {split_sizes['test']}. The paper trains on the UCI train split "
                 "(199,523 rows) and tests on the test split: comparable in kind, not to the digit.")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=DATA)
    parser.add_argument("--out", default="bench/results/census.json")
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--variants", default=",".join(ALL_VARIANTS),
                        help="comma-separated, of: " + ", ".join(ALL_VARIANTS))
    parser.add_argument("--log", default="work/bench/census.log",
                        help="where library messages go (TensorFlow, DeepCTR, warnings)")
    args = parser.parse_args(argv)
    names = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(names) - set(ALL_VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {', '.join(ALL_VARIANTS)}")
    with quiet_bench("census bench", args.log):
        result = run_benchmark(args.data, [int(s) for s in args.seeds.split(",")], args.epochs,
                               variants={v: ALL_VARIANTS[v] for v in names},
                               log=lambda message: print(message, flush=True))
    given = argv if argv is not None else sys.argv[1:]
    result["command"] = "python -m bench.census_bench " + " ".join(shlex.quote(a) for a in given)
    write_result(result, args.out, table(result))


if __name__ == "__main__":
    main()
