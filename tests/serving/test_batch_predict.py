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
