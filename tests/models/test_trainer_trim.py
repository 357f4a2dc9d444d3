"""The Trainer's DTN-trim decision (models/trainer.py `_trimmed`): the cut it records, and no
second training when it cuts nothing."""

import json

import tensorflow as tf
import tf_keras as keras

from models import trainer
from models.model import build_model
from tests.models.batch import VOCAB_SIZES, make_batch, small_config


def _decide(tmp_path, threshold):
    keras.utils.set_random_seed(0)
    config = small_config("dtn-trim", mixture={"trim_threshold": threshold})
    model = build_model(config, VOCAB_SIZES)
    features, labels = make_batch(16, seed=1)
    model(features, training=False)
    decided = trainer._trimmed(model, config, tf.data.Dataset.from_tensors((features, labels)).repeat(3),
                               str(tmp_path), chief=True)
    with open(tmp_path / trainer.TRIM_FILE) as f:
        return config, decided, json.load(f)


def test_a_cut_gives_the_trimmed_config_to_retrain(tmp_path):
    # above every weight but each gate's largest: all the modules no gate relies on most are cut
    config, trimmed, record = _decide(tmp_path, 0.99)
    assert record["trimmed"] and record["retrained"] is True
    assert trimmed.mixture["trimmed"] == record["trimmed"] and trimmed.mixture["trim_threshold"] == 0.0
    every = {name for members in record["mean_gate_weights"].values() for name in members}
    assert set(record["trimmed"]) < every


def test_nothing_under_the_threshold_keeps_the_trained_dtn(tmp_path):
    config, trimmed, record = _decide(tmp_path, 1e-9)
    assert trimmed is None  # run_fn serves the network it already trained
    assert record["trimmed"] == [] and record["retrained"] is False
    assert all(abs(sum(weights.values()) - 1) < 1e-5 for weights in record["mean_gate_weights"].values())
