"""The report on a non-local filesystem: a finished run's artifacts on `ram://` (TF's in-memory
filesystem, standing in for gs:// / s3://), found through ML Metadata, not by listing the
pipeline root (whose directory names here would pick the wrong execution)."""

import json

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2

from components.ingest.report import build_report
from models import features as F
from pipeline import metadata, report
from tests import ramfs  # registers ram:// for Beam: the truth log is read by the ingest's reader
from tests.pipeline.mlmd import record

ROOT = "ram://report-test"
EXAMPLES = 60


def _write(path: str, data) -> None:
    tf.io.gfile.makedirs(path.rsplit("/", 1)[0])
    with tf.io.gfile.GFile(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)


def _example(i: int) -> bytes:
    ints = {F.POSITION: i % 6 + 1, F.PAGE: 1, **{label: int(i % (3 + k) == 0) for k, label in enumerate(F.LABELS)}}
    feature = {name: tf.train.Feature(int64_list=tf.train.Int64List(value=[v])) for name, v in ints.items()}
    for name, value in ((F.IMPRESSION_ID, f"imp{i}"), (F.USER_ID, f"u{i % 7}"), (F.REQUEST_ID, f"r{i // 6}"),
                        (F.SCENARIO, "NL" if i % 2 else "DE"), (F.CATEGORY_ID, f"c{i % 3}")):
        feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
    feature[F.ITEM_PRICE] = tf.train.Feature(float_list=tf.train.FloatList(value=[10.0 + i % 4]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _save_model(path: str, weight: float) -> None:
    """A served network's interface: serialized examples in, task probabilities and score out."""
    module = tf.Module()
    module.weight = tf.Variable(weight)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(examples):
        position = tf.io.parse_example(examples, {F.POSITION: tf.io.FixedLenFeature([1], tf.int64)})[F.POSITION]
        click = tf.sigmoid(-module.weight * tf.cast(position[:, 0], tf.float32))
        return {F.CLICK: click, F.ORDER: click / 4, "score": click}

    tf.saved_model.save(module, path, signatures={"serving_default": serve})


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run's artifacts on ram:// and its ML Metadata (SQLite: MLMD has no ram:// backend)."""
    root = f"{ROOT}/tfx"
    connection = metadata.connection_config(None, str(tmp_path_factory.mktemp("md") / "metadata.sqlite"))
    store = metadata.open_store(connection)
    counts = {"impressions.read": EXAMPLES, f"examples.{F.TRAIN_SPLIT}": 0, f"examples.{F.EVAL_SPLIT}": EXAMPLES}
    # An older run wrote to a directory with a higher number: a glob by number would pick it.
    _write(f"{root}/Ingest/ingest_report/99/ingest_report.json", json.dumps(build_report({}, 0.01)))
    record(store, "Ingest", {"ingest_report": f"{root}/Ingest/ingest_report/99"})
    _write(f"{root}/Ingest/ingest_report/7/ingest_report.json", json.dumps(build_report(counts, 0.01)))
    with tf.io.TFRecordWriter(f"{root}/Ingest/examples/7/Split-eval/data.gz", "GZIP") as writer:
        for i in range(EXAMPLES):
            writer.write(_example(i))
    record(store, "Ingest", {"ingest_report": f"{root}/Ingest/ingest_report/7", "examples": f"{root}/Ingest/examples/7"})
    for split in ("train", "eval"):
        _write(f"{root}/ExampleValidator/anomalies/8/Split-{split}/SchemaDiff.pb",
               anomalies_pb2.Anomalies().SerializeToString())
    record(store, "ExampleValidator", {"anomalies": f"{root}/ExampleValidator/anomalies/8"})
    for step, weight, preset in (("Trainer", 0.5, "tiny"), ("BaselineTrainer", 0.1, "base")):
        _save_model(f"{root}/{step}/model/9/Format-Serving", weight)
        _write(f"{root}/{step}/model_run/9/calibration.json", json.dumps({"preset": preset}))
        record(store, step, {"model": f"{root}/{step}/model/9", "model_run": f"{root}/{step}/model_run/9"})
    _write(f"{root}/Evaluator/blessing/10/BLESSED", "")
    record(store, "Evaluator", {"blessing": f"{root}/Evaluator/blessing/10"})
    destination = f"{ROOT}/serving/1700000000"
    record(store, "Pusher", {"pushed_model": f"{root}/Pusher/pushed_model/11"},
           properties={"pushed_model": {"pushed": 1, "pushed_destination": destination}})
    def truth(i):  # informative about the labels of _example(i), as a simulator's truth is
        click, order = 0.2 + 0.4 * (i % 3 == 0) + i % 5 / 100, 0.01 + 0.2 * (i % 6 == 0) + i % 4 / 100
        return {"impression_id": f"imp{i}", "p_click": click, "p_click_rel": click, "p_cart": 0.1, "p_order": order}

    _write(f"{ROOT}/logs/truth/part-0.jsonl", "".join(json.dumps(truth(i)) + "\n" for i in range(EXAMPLES)))
    yield connection, destination
    ramfs.remove_tree(ROOT)


def test_report_reads_the_run_from_ml_metadata_on_a_non_local_scheme(run):
    connection, destination = run
    text = report.summarize("ram://nowhere", f"{ROOT}/logs", f"{ROOT}/work", metadata=connection)
    assert f"records read {EXAMPLES}" in text and f"eval {EXAMPLES}" in text
    assert "schema anomalies: none (" in text and "eval" in text.split("schema anomalies: none (")[1].split(")")[0]
    with tf.io.gfile.GFile(f"{ROOT}/work/report.json") as f:
        result = json.load(f)
    assert result["rows"] == {"model": "tiny", "baseline": "base"}
    assert result["eval_examples"] == EXAMPLES and result["truth"]
    assert result["blessed"] is True and result["pushed_version"] == destination
    assert np.isfinite(result["models"]["tiny"][F.CLICK]["auc"])
