"""`funnel importance`: permutation feature importance per task, after the DTN paper (DTN: Deep
Multiple Task-specific Feature Interactions Network for Multi-Task Recommendation, section
"Divergence Phenomenon of Feature Importance"):

    FI(X_i)   = AUC_base   - AUC_p(X_i)        (eq. 1)
    FI^k(X_i) = AUC^k_base - AUC^k_p(X_i)      (eq. 2, per task k)

AUC^k_base is task k's AUC on the eval day as it is, AUC^k_p(X_i) the same with feature X_i
permuted; Rank^k_FI(X_i) orders the features by FI^k, largest first (rank 1). The paper's
Fig. 2 plots each feature's CTR importance against its CVR importance ("divergence"): here the
click task against the order task.

What is permuted: every raw input of the pushed model's `rank` signature (`models.rank_inputs`:
the scenario, the target item's ids, the dense features), and each behaviour sequence as a whole
(`click_sequence`: all its element fields, item / category / brand / shop ids and ages, moved
together, so a permuted row is another impression's whole sequence). A permutation moves a
feature's values across the eval examples: row i takes the value of row perm[i], every other
feature stays. perm comes from `numpy.random.default_rng(seed)` (seed 0 unless told), the same
permutation(s) for every feature, so two features' drops differ by the feature alone; with
`repeats` > 1 each feature is permuted that many times (successive permutations of that
generator) and the drops are averaged.

The eval day is the ingest's own eval split (the last `eval_days` UTC days; or the eval split a
`funnel run` ingested). Scores come from the pushed SavedModel's `rank` signature, one request
per impression (N = 1), which takes the raw features as tensors; the unpermuted scores are
checked against `serving_default` on the same examples (serving/batch_predict.py), so the
importance is that of the served model. AUC: `models.metrics.auc`.
"""

import json
import os
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from models import features as F
from models import rank_inputs
from models.metrics import auc

DEFAULT_SEED = 0
JSON_FILE, MARKDOWN_FILE, PNG_FILE, LOG_FILE = "importance.json", "importance.md", "importance.png", "importance.log"
TENSORBOARD_DIR = "logs"  # under OUT: the scatter as a TensorBoard image
IMAGE_TAG = "importance/divergence"
TABLE_TAG = "importance/table"
LABELED_POINTS = 8  # the scatter names the top features of either task (the rest are dots)
SERVING_TOLERANCE = 1e-4  # |rank - serving_default| allowed on the unpermuted eval day

Columns = Dict[str, np.ndarray]
Scorer = Callable[[Columns], Dict[str, np.ndarray]]


class ImportanceError(ValueError):
    """A model or eval day the importance cannot be computed on; the message says why."""


def feature_groups(names: Sequence[str]) -> Dict[str, Tuple[str, ...]]:
    """The permuted units among the input `names`: each input on its own, but a behaviour
    sequence's fields together under the sequence's name (`click_sequence`)."""
    groups: Dict[str, Tuple[str, ...]] = {}
    fields = {F.sequence_feature(s, f): F.sequence_name(s) for s in F.SEQUENCES for f in F.SEQUENCE_ELEMENT_FIELDS}
    for name in names:
        key = fields.get(name, name)
        groups[key] = groups.get(key, ()) + (name,)
    return groups


def selected_groups(names: Optional[Sequence[str]] = None) -> Dict[str, Tuple[str, ...]]:
    """The permuted units of the `rank` signature's inputs, or only those named (in the
    signature's order); ImportanceError naming an unknown one."""
    groups = feature_groups(rank_inputs.input_signature())
    if not names:
        return groups
    unknown = [n for n in names if n not in groups]
    if unknown:
        raise ImportanceError(f"unknown feature(s) {', '.join(unknown)}; the model's inputs: {', '.join(groups)}")
    return {name: group for name, group in groups.items() if name in names}


def permuted(columns: Columns, group: Sequence[str], permutation: np.ndarray) -> Columns:
    """`columns` with the group's columns' rows reordered by `permutation` (whole rows: a
    sequence's elements stay together and aligned across its fields), the rest as they are."""
    return {**columns, **{name: columns[name][permutation] for name in group}}


def _ranks(drops: Dict[str, float]) -> Dict[str, Optional[int]]:
    """1 for the largest drop; ties share the best rank (1, 2, 2, 4); NaN has no rank."""
    known = [v for v in drops.values() if not np.isnan(v)]
    return {name: None if np.isnan(v) else 1 + sum(other > v for other in known) for name, v in drops.items()}


def permutation_importance(columns: Columns, labels: Dict[str, np.ndarray], score: Scorer,
                           groups: Dict[str, Tuple[str, ...]], seed: int = DEFAULT_SEED, repeats: int = 1,
                           progress: Optional[Callable[[str, dict], None]] = None,
                           base_scores: Optional[Dict[str, np.ndarray]] = None) -> dict:
    """FI^k of each group for each task of `labels` (DTN eq. 2). `score(columns)` -> {task:
    probability per row}; `base_scores` saves scoring the unpermuted columns again. `progress(
    group, {task: drop})` is called after each group."""
    if repeats < 1:
        raise ImportanceError("repeats must be at least 1")
    rows = {len(v) for v in columns.values()} | {len(v) for v in labels.values()}
    if len(rows) != 1:
        raise ImportanceError(f"the columns and labels must have one row count, not {sorted(rows)}")
    n = rows.pop()
    base = base_scores if base_scores is not None else score(columns)
    tasks = list(labels)
    base_auc = {task: auc(labels[task], base[task]) for task in tasks}
    rng = np.random.default_rng(seed)
    permutations = [rng.permutation(n) for _ in range(repeats)]
    drops: Dict[str, Dict[str, float]] = {task: {} for task in tasks}
    for name, group in groups.items():
        per_task = {task: [] for task in tasks}
        for permutation in permutations:
            scores = score(permuted(columns, group, permutation))
            for task in tasks:
                per_task[task].append(base_auc[task] - auc(labels[task], scores[task]))
        for task in tasks:
            drops[task][name] = float(np.mean(per_task[task]))
        if progress:
            progress(name, {task: drops[task][name] for task in tasks})
    result = {"tasks": {}, "base_auc": {t: _number(v) for t, v in base_auc.items()}, "examples": n,
              "positives": {t: int((np.asarray(labels[t]) > 0).sum()) for t in tasks},
              "seed": seed, "repeats": repeats}
    for task in tasks:
        ranks = _ranks(drops[task])
        result["tasks"][task] = {name: {"auc_drop": _number(drops[task][name]), "rank": ranks[name]}
                                 for name in groups}
    return result


def _number(value: float) -> Optional[float]:
    return None if value is None or np.isnan(value) else float(value)


# --- The pushed model ---------------------------------------------------------------------------

def eval_requests(example_files: List[str]) -> Columns:
    """The eval examples as `rank` inputs, one request per impression (R = examples, N = 1),
    in file order (serving/rank_request.py's conversion, sequences padded to full length)."""
    import tensorflow as tf

    from serving import rank_request

    compression = "GZIP" if example_files and example_files[0].endswith(".gz") else ""
    serialized = [record.numpy() for record in tf.data.TFRecordDataset(example_files, compression_type=compression)]
    if not serialized:
        raise ImportanceError("the eval split has no examples")
    return rank_request.stack(rank_request.from_examples([s]) for s in serialized)


def rank_scorer(model_dir: str, batch_size: int = 4096) -> Scorer:
    """Scores `rank` inputs of R requests of one candidate with the SavedModel's `rank`
    signature: {output: [R]}."""
    import tensorflow as tf

    loaded = tf.saved_model.load(model_dir)
    if "rank" not in loaded.signatures:
        raise ImportanceError(f"{model_dir}: the model has no `rank` signature (a pushed funnel model has one)")
    rank = loaded.signatures["rank"]

    def score(columns: Columns) -> Dict[str, np.ndarray]:
        parts: Dict[str, list] = {}
        n = len(columns[F.ITEM_ID])
        for start in range(0, n, batch_size):
            inputs = {name: tf.constant(value[start:start + batch_size]) for name, value in columns.items()}
            for name, value in rank(**inputs).items():
                parts.setdefault(name, []).append(np.reshape(value.numpy(), [-1]))
        return {name: np.concatenate(values) for name, values in parts.items()}

    score.model = loaded  # the signature lives as long as the scorer
    return score


def importance(model_dir: str, example_files: List[str], seed: int = DEFAULT_SEED, repeats: int = 1,
               features: Optional[Sequence[str]] = None, step: Optional[Callable[[str], Callable[[], None]]] = None,
               progress: Optional[Callable[[str, dict], None]] = None) -> dict:
    """permutation_importance of the pushed model on the eval examples, per task the model
    outputs and the examples label; every input and sequence, or only `features`. `step(text)`
    announces a step and returns its end."""
    from serving.batch_predict import score_examples

    groups = selected_groups(features)
    step = step or (lambda text: (lambda: None))
    done = step("reading the eval examples")
    requests = eval_requests(example_files)
    done()
    done = step(f"scoring {len(requests[F.ITEM_ID])} examples with serving_default and rank")
    served = score_examples(model_dir, example_files, keep=F.LABELS)
    tasks = [c for c in served.columns if c in F.LABELS]
    if not tasks:
        raise ImportanceError(f"{model_dir}: the model outputs none of the tasks {', '.join(F.LABELS)}")
    score = rank_scorer(model_dir)
    base = score(requests)
    gap = max(float(np.max(np.abs(base[t] - served[t].to_numpy()))) for t in tasks)
    if gap > SERVING_TOLERANCE:
        raise ImportanceError(f"{model_dir}: `rank` and `serving_default` disagree by {gap:.2g} on the eval day")
    done()
    labels = {task: served[f"label_{task}"].to_numpy() for task in tasks}
    result = permutation_importance(requests, labels, score, groups, seed, repeats, progress, base_scores=base)
    result["model"] = model_dir
    return result


# --- Reports ------------------------------------------------------------------------------------

def divergence_tasks(result: dict) -> Tuple[str, str]:
    """(x, y) of the scatter: click and order (the paper's CTR and CVR), else the first and
    last tasks."""
    tasks = list(result["tasks"])
    x = F.CLICK if F.CLICK in tasks else tasks[0]
    y = F.ORDER if F.ORDER in tasks else tasks[-1]
    return x, y


def _by_rank(result: dict, task: str) -> List[str]:
    table = result["tasks"][task]
    return sorted(table, key=lambda name: (table[name]["rank"] is None, table[name]["rank"] or 0))


def markdown(result: dict) -> str:
    """The importance table: a row per feature (by the first task's rank), per task its AUC
    drop and rank."""
    tasks = list(result["tasks"])
    lines = [f"Permutation feature importance per task (DTN eq. 2: FI^k = AUC^k_base - AUC^k_permuted), "
             f"{result['examples']} eval examples, seed {result['seed']}, {result['repeats']} permutation(s) "
             "per feature; rank 1 = the largest AUC drop.", ""]
    if result.get("command"):
        lines += [f"Made by `{result['command']}`" + (f" on `{result['model']}`" if result.get("model") else "")
                  + ".", ""]
    base = ", ".join(f"{t} {_fmt(result['base_auc'][t], '.4f')} ({result['positives'][t]} positives)" for t in tasks)
    lines += [f"Base AUC: {base}.", ""]
    lines.append("| feature | " + " | ".join(f"{t} AUC drop | {t} rank" for t in tasks) + " |")
    lines.append("|---|" + "---:|---:|" * len(tasks))
    for name in _by_rank(result, tasks[0]):
        cells = []
        for task in tasks:
            entry = result["tasks"][task][name]
            cells += [_fmt(entry["auc_drop"], "+.5f"), _fmt(entry["rank"], "d")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def divergence_figure(result: dict):
    """The paper's Fig. 2: each feature's importance for one task against another's."""
    from matplotlib.figure import Figure

    x_task, y_task = divergence_tasks(result)
    names = list(result["tasks"][x_task])
    x = np.array([_or_nan(result["tasks"][x_task][n]["auc_drop"]) for n in names])
    y = np.array([_or_nan(result["tasks"][y_task][n]["auc_drop"]) for n in names])
    figure = Figure(figsize=(7.5, 6))
    axes = figure.subplots()
    axes.axhline(0, color="grey", linewidth=0.8)
    axes.axvline(0, color="grey", linewidth=0.8)
    sequences = np.array([n.endswith("_sequence") for n in names])
    axes.scatter(x[~sequences], y[~sequences], s=18, label="feature")
    axes.scatter(x[sequences], y[sequences], s=36, marker="s", label="behaviour sequence (as a whole)")
    shown = set(_by_rank(result, x_task)[:LABELED_POINTS]) | set(_by_rank(result, y_task)[:LABELED_POINTS])
    for name, xi, yi in zip(names, x, y):
        if name in shown and np.isfinite(xi) and np.isfinite(yi):
            axes.annotate(name, (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points")
    axes.set(xlabel=f"{x_task}: AUC drop when permuted (FI)", ylabel=f"{y_task}: AUC drop when permuted (FI)",
             title=f"Feature importance, {x_task} vs {y_task} ({result['examples']} eval examples)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="best")
    return figure


def _or_nan(value) -> float:
    return float("nan") if value is None else value


def write(result: dict, out_dir: str) -> Dict[str, str]:
    """OUT/importance.json, .md, .png and the scatter (and table) in a TensorBoard event file
    under OUT/logs; returns {kind: path}."""
    import tensorflow as tf

    from pipeline import report_page

    tf.io.gfile.makedirs(out_dir)
    paths = {kind: os.path.join(out_dir, name) for kind, name in
             (("json", JSON_FILE), ("markdown", MARKDOWN_FILE), ("png", PNG_FILE))}
    with tf.io.gfile.GFile(paths["json"], "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    table = markdown(result)
    with tf.io.gfile.GFile(paths["markdown"], "w") as f:
        f.write(table)
    image = report_page.png(divergence_figure(result))
    with tf.io.gfile.GFile(paths["png"], "wb") as f:
        f.write(image)
    paths["tensorboard"] = os.path.join(out_dir, TENSORBOARD_DIR)
    writer = tf.summary.create_file_writer(paths["tensorboard"])
    with writer.as_default(step=0):
        tf.summary.image(IMAGE_TAG, tf.image.decode_png(image)[tf.newaxis])
        tf.summary.text(TABLE_TAG, table)
    writer.flush()
    writer.close()
    return paths


def table(result: dict, top: int = 10) -> str:
    """The console's closing table: per task its base AUC and top features."""
    tasks = list(result["tasks"])
    ranked = {t: _by_rank(result, t)[:top] for t in tasks}
    width = max([len(n) for names in ranked.values() for n in names] + [8])
    lines = ["  rank  " + "  ".join(f"{t + ' (AUC ' + _fmt(result['base_auc'][t], '.4f') + ')':<{width + 11}}"
                                   for t in tasks)]
    for i in range(max(len(v) for v in ranked.values())):
        cells = []
        for t in tasks:
            name = ranked[t][i] if i < len(ranked[t]) else ""
            drop = _fmt(result["tasks"][t][name]["auc_drop"], "+.5f") if name else ""
            cells.append(f"{name:<{width}} {drop:>10}")
        lines.append(f"  {i + 1:>4}  " + "  ".join(cells))
    return "\n".join(lines)


class Steps:
    """Console progress: one line per finished step, with its seconds."""

    def __init__(self, total_features: int, out=None):
        self.total = total_features
        self.count = 0
        self.out = out
        self.started = time.monotonic()

    def _print(self, text: str) -> None:
        import sys

        print(text, file=self.out or sys.stdout, flush=True)

    def step(self, text: str) -> Callable[[], None]:
        started = time.monotonic()

        def done() -> None:
            self.started = time.monotonic()  # the next feature's clock starts here
            self._print(f"  {text:<60} {self.started - started:6.1f} s")

        return done

    def feature(self, name: str, drops: dict) -> None:
        self.count += 1
        now = time.monotonic()
        cells = ", ".join(f"{t} {_fmt(_number(v), '+.5f')}" for t, v in drops.items())
        self._print(f"  [{self.count:>{len(str(self.total))}}/{self.total}] {name:<32} AUC drop {cells}  ({now - self.started:6.1f} s)")
        self.started = now
