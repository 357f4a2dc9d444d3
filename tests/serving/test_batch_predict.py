"""Predictions are written to any filesystem tf.io.gfile writes (ram:// standing in for gs://)."""

import io

import pandas as pd
import pytest
import tensorflow as tf

from serving.batch_predict import write_predictions
from tests import ramfs

FRAME = pd.DataFrame({"impression_id": ["a", "b"], "click": [0.25, 0.5], "score": [0.25, 0.5]})


@pytest.mark.parametrize("name", ["p.jsonl", "p.jsonl.gz", "p.parquet"])
def test_predictions_on_a_local_and_a_non_local_scheme(tmp_path, name):
    for directory in (str(tmp_path / "out"), "ram://predict-test/out"):
        path = f"{directory}/{name}"
        write_predictions(FRAME, path)
        with tf.io.gfile.GFile(path, "rb") as f:
            data = io.BytesIO(f.read())
        read = (pd.read_parquet(data) if name.endswith(".parquet")
                else pd.read_json(data, lines=True, compression="gzip" if name.endswith(".gz") else None))
        pd.testing.assert_frame_equal(read, FRAME)
    ramfs.remove_tree("ram://predict-test")


def test_other_suffixes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="must end in"):
        write_predictions(FRAME, str(tmp_path / "p.csv"))


def test_a_missing_model_is_refused_before_the_ingest(tmp_path, monkeypatch, capsys):
    """`funnel predict` ingests the logs (minutes on a day of logs) before it scores: a --model
    that is not a SavedModel fails first, with its name, not as a traceback after the ingest."""
    from pipeline import cli
    from serving import batch_predict

    monkeypatch.setattr(batch_predict, "ingested_examples", lambda *args, **kwargs: pytest.fail("ingested"))
    model = tmp_path / "models" / "7"  # e.g. a version that was never pushed
    with pytest.raises(ValueError, match="not a SavedModel directory"):
        batch_predict.predict(str(model), str(tmp_path / "logs"), str(tmp_path / "p.jsonl"))
    assert cli.main(["predict", "--model", str(model), "--logs", str(tmp_path / "logs"),
                     "--out", str(tmp_path / "p.jsonl")]) == 2
    assert capsys.readouterr().err == f"funnel predict: {model}: not a SavedModel directory (no saved_model.pb)\n"
    assert not (tmp_path / "p.jsonl").exists()


@pytest.mark.parametrize("days", [0, -1])
def test_days_below_one_are_refused_before_the_ingest(tmp_path, monkeypatch, capsys, days):
    """--days 0 used to score every day (0 read as "not given") and -1 failed after the ingest
    started, as an ingest setting the user never gave."""
    from pipeline import cli
    from serving import batch_predict

    monkeypatch.setattr(batch_predict, "ingested_examples", lambda *args, **kwargs: pytest.fail("ingested"))
    with pytest.raises(ValueError, match=f"days must be at least 1, got {days}"):
        batch_predict.predict(str(tmp_path / "m"), str(tmp_path / "logs"), str(tmp_path / "p.jsonl"), days=days)
    assert cli.main(["predict", "--model", str(tmp_path / "m"), "--logs", str(tmp_path / "logs"),
                     "--out", str(tmp_path / "p.jsonl"), "--days", str(days)]) == 2
    assert capsys.readouterr().err.startswith(f"funnel predict: days must be at least 1, got {days}")


def test_a_saved_model_without_serving_default_is_refused_by_name(tmp_path):
    from serving import batch_predict

    module = tf.Module()
    module.double = tf.function(lambda x: 2 * x, input_signature=[tf.TensorSpec([None], tf.float32)])
    tf.saved_model.save(module, str(tmp_path / "m"), signatures={"double": module.double})
    with pytest.raises(ValueError, match=r"no serving_default signature \(it has \['double'\]\)"):
        batch_predict.score_examples(str(tmp_path / "m"), [str(tmp_path / "examples.tfrecord")])
