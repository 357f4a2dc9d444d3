"""bench.position_free_labels: the train split's labels redrawn from the truth."""

import logging
import os

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from bench import position_free_labels as B
from models import features as F


def _write(path, ids, extra=1.5):
    with tf.io.TFRecordWriter(str(path), "GZIP") as writer:
        for i in ids:
            example = tf.train.Example()
            example.features.feature[F.IMPRESSION_ID].bytes_list.value.append(i.encode())
            example.features.feature[F.CLICK].float_list.value.append(1.0)
            example.features.feature[F.ORDER].float_list.value.append(0.0)
            example.features.feature["item_price"].float_list.value.append(extra)
            writer.write(example.SerializeToString())


def _read(path):
    return [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(str(path), "GZIP")]


def test_labels_follow_the_truth_and_everything_else_is_kept(tmp_path):
    _write(tmp_path / "part-0.gz", ["a", "b", "c"])
    truth = pd.DataFrame({F.IMPRESSION_ID: ["c", "b", "a", "z"], B.CLICK_TRUTH: [1.0, 0.0, 1.0, 0.5],
                          B.ORDER_TRUTH: [1.0, 0.0, 0.0, 0.1]})
    counts = B.relabel([str(tmp_path / "part-0.gz")], truth, str(tmp_path / "out"))
    assert counts == {"examples": 3, "clicks": 2, "orders": 1}
    examples = _read(tmp_path / "out" / "part-0.gz")
    labels = [(e.features.feature[F.CLICK].float_list.value[0], e.features.feature[F.ORDER].float_list.value[0])
              for e in examples]
    assert labels == [(1.0, 0.0), (0.0, 0.0), (1.0, 1.0)]  # a, b, c in file order
    assert all(e.features.feature["item_price"].float_list.value[0] == 1.5 for e in examples)


def test_drawn_rates_match_the_probabilities_and_orders_follow_clicks(tmp_path):
    ids = [f"i{k}" for k in range(20000)]
    _write(tmp_path / "part-0.gz", ids)
    truth = pd.DataFrame({F.IMPRESSION_ID: ids, B.CLICK_TRUTH: 0.3, B.ORDER_TRUTH: 0.06})
    counts = B.relabel([str(tmp_path / "part-0.gz")], truth, str(tmp_path / "out"), seed=3)
    assert counts["clicks"] / 20000 == pytest.approx(0.3, abs=0.015)
    assert counts["orders"] / 20000 == pytest.approx(0.06, abs=0.006)
    examples = _read(tmp_path / "out" / "part-0.gz")
    clicks = np.array([e.features.feature[F.CLICK].float_list.value[0] for e in examples])
    orders = np.array([e.features.feature[F.ORDER].float_list.value[0] for e in examples])
    assert not np.any((orders > 0) & (clicks == 0))
    again = B.relabel([str(tmp_path / "part-0.gz")], truth, str(tmp_path / "again"), seed=3)
    assert again == counts  # seeded


def test_an_example_without_truth_is_refused(tmp_path):
    _write(tmp_path / "part-0.gz", ["a", "b"])
    truth = pd.DataFrame({F.IMPRESSION_ID: ["a"], B.CLICK_TRUTH: [0.5], B.ORDER_TRUTH: [0.1]})
    with pytest.raises(ValueError, match="1 examples have no truth"):
        B.relabel([str(tmp_path / "part-0.gz")], truth, str(tmp_path / "out"))


def test_the_console_shows_the_benchs_lines_and_the_log_file_the_libraries(tmp_path, monkeypatch, capfd):
    seen = {}

    def run(logs, work, variants, seed=0, log=print):
        seen.update(variants=variants, seed=seed)
        log("dmt (position-free labels): trained, 600 s")
        logging.getLogger("absl").warning("Tables initialized inside a tf.function")  # TF Transform's
        os.write(2, b"I0000 cuda_dnn.cc: Unable to register cuDNN factory\n")  # a C++ runtime's line
        return {"rows": []}

    monkeypatch.setattr(B, "run_benchmark", run)
    work = tmp_path / "work"
    B.main(["--logs", "L", "--work", str(work), "--out", str(tmp_path / "free.json"), "--label-seed", "3"])
    shown = capfd.readouterr()
    console = shown.out + shown.err
    assert "dmt (position-free labels): trained" in console
    assert str(work / "position_free" / "position_free.log") in console
    assert "Tables initialized" not in console and "cuDNN" not in console
    logged = (work / "position_free" / "position_free.log").read_text()
    assert "Tables initialized inside a tf.function" in logged and "Unable to register cuDNN factory" in logged
    assert seen == {"variants": {"dmt": {}}, "seed": 3}
