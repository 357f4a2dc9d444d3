"""Batch inference: score a logs directory's impressions with a pushed SavedModel.

The logs go through the same ingest (so features are built exactly as for training)
and every example through the model's `serving_default` signature (which applies the
Transform graph itself): no training/serving skew by construction.
"""

import glob
import gzip
import os
import tempfile
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd
import tensorflow as tf

from components.ingest.config import IngestConfig
from components.ingest.runner import run_ingest
from models import features as F

BATCH_SIZE = 4096
_STRING_FEATURES = {F.IMPRESSION_ID, F.REQUEST_ID, F.USER_ID, F.SCENARIO} | set(F.ITEM_ID_FEATURES)
_FLOAT_FEATURES = set(F.DENSE_FEATURES)


def _scalar_type(name: str) -> tf.dtypes.DType:
    if name in _STRING_FEATURES:
        return tf.string
    return tf.float32 if name in _FLOAT_FEATURES else tf.int64


def check_saved_model(model_dir: str) -> None:
    """A ValueError unless `model_dir` holds a SavedModel: checked before a command ingests or
    scores anything, so a mistyped --model fails at once and says why."""
    if not tf.io.gfile.exists(os.path.join(model_dir, "saved_model.pb")):
        raise ValueError(f"{model_dir}: not a SavedModel directory (no saved_model.pb)")


def score_examples(model_dir: str, example_files: List[str], keep: Sequence[str] = ()) -> pd.DataFrame:
    """One row per example: impression_id, every model output (task probabilities, score),
    then the scalar example features named in `keep` (labels as `label_<name>`, since the
    model's outputs carry the task names)."""
    check_saved_model(model_dir)
    model = tf.saved_model.load(model_dir)
    if "serving_default" not in model.signatures:
        raise ValueError(f"{model_dir}: the SavedModel has no serving_default signature "
                         f"(it has {sorted(model.signatures) or 'none'}): not a model funnel pushed")
    serve = model.signatures["serving_default"]
    id_spec = {name: tf.io.FixedLenFeature([1], _scalar_type(name)) for name in (F.IMPRESSION_ID,) + tuple(keep)}
    columns: Dict[str, list] = {F.IMPRESSION_ID: []}
    if not example_files:
        return pd.DataFrame(columns)
    compression = "GZIP" if example_files[0].endswith(".gz") else ""
    dataset = tf.data.TFRecordDataset(example_files, compression_type=compression).batch(BATCH_SIZE)
    for batch in dataset:
        outputs = serve(examples=batch)
        for name, value in outputs.items():
            columns.setdefault(name, []).append(np.reshape(value.numpy(), [-1]))
        for name, value in tf.io.parse_example(batch, id_spec).items():
            value = value[:, 0].numpy()
            column = f"label_{name}" if name in F.LABELS else name
            columns.setdefault(column, []).append(value.astype(str) if value.dtype == object else value)
    frame = pd.DataFrame({name: np.concatenate(parts) for name, parts in columns.items()})
    kept = [f"label_{k}" if k in F.LABELS else k for k in keep]
    tasks = sorted(c for c in frame.columns if c not in [F.IMPRESSION_ID, "score"] + kept)
    return frame[[F.IMPRESSION_ID] + tasks + (["score"] if "score" in frame else []) + kept]


def check_predictions_path(path: str) -> None:
    """The predictions' format follows the extension: a ValueError for any other."""
    if not path.endswith((".jsonl", ".jsonl.gz", ".parquet")):
        raise ValueError(f"{path}: the output must end in .jsonl, .jsonl.gz or .parquet")


def check_days(days: Optional[int]) -> None:
    """`days` of `predict`: None (every day) or a count of the newest UTC days."""
    if days is not None and days < 1:
        raise ValueError(f"days must be at least 1, got {days} (leave it out to score every day)")


def write_predictions(frame: pd.DataFrame, path: str) -> None:
    """Writes `frame` to `path` on any filesystem tf.io.gfile writes (local, gs://, ...)."""
    check_predictions_path(path)
    if os.path.dirname(path):
        tf.io.gfile.makedirs(os.path.dirname(path))
    if path.endswith(".parquet"):
        data = frame.to_parquet(index=False)  # bytes: Arrow writes to no GFile
    else:
        data = frame.to_json(orient="records", lines=True).encode()
        data = gzip.compress(data) if path.endswith(".gz") else data
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(data)


def ingested_examples(logs_dir: str, work: str, config: IngestConfig, beam_args: Optional[List[str]],
                      splits: Sequence[str] = (F.EVAL_SPLIT,)) -> List[str]:
    """Ingests `logs_dir` into `work` (the ingest's own split: the last `config.eval_days` UTC
    days are eval) and returns the example files of `splits`, in a stable order."""
    run_ingest(logs_dir, work, config, beam_args)
    return sorted(f for s in splits for f in glob.glob(os.path.join(work, "examples", f"Split-{s}", "*")))


def predict(model_dir: str, logs_dir: str, out_path: str, days: Optional[int] = None,
            config: IngestConfig = IngestConfig(), beam_args: Optional[List[str]] = None) -> pd.DataFrame:
    """Scores the impressions of `logs_dir` (only the last `days` UTC days if given)."""
    check_predictions_path(out_path)
    check_days(days)
    check_saved_model(model_dir)  # before the ingest, which takes minutes on a day of logs
    # The ingested examples are this process's scratch: a local temporary directory.
    with tempfile.TemporaryDirectory(prefix="funnel-predict-") as work:
        if days is not None:
            config = IngestConfig(**{**config.__dict__, "eval_days": days})
        files = ingested_examples(logs_dir, work, config, beam_args,
                                  [F.EVAL_SPLIT] if days is not None else [F.TRAIN_SPLIT, F.EVAL_SPLIT])
        frame = score_examples(model_dir, files)
    write_predictions(frame, out_path)
    return frame
