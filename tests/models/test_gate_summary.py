"""Tests of the gate summaries: mean weights per scenario and the TensorBoard heat maps."""

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from models import features as F
from models import gate_summary
from models.model import build_model
from tests.models.batch import VOCAB_SIZES, make_batch, small_config


class _FixedGates:
    """A model whose gates are given: two experts, weights by row."""

    def __init__(self, weights):
        self.weights = weights

    def gate_weights(self, features):
        return {"click": tf.constant(self.weights)}


def test_mean_weights_overall_and_per_scenario_by_hand():
    batch = ({F.SCENARIO: tf.constant([[0], [1], [1], [5]])}, None)
    model = _FixedGates([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0], [0.2, 0.8]])
    rows = gate_summary.mean_gate_weights(model, [batch, batch], ["NL", "DE"])["click"]
    assert list(rows) == ["all", "NL", "DE", "oov"]
    np.testing.assert_allclose(rows["all"], [1.7 / 4, 2.3 / 4])
    np.testing.assert_allclose(rows["NL"], [1.0, 0.0])
    np.testing.assert_allclose(rows["DE"], [0.25, 0.75])
    np.testing.assert_allclose(rows["oov"], [0.2, 0.8])


def test_a_model_without_gates_has_no_summary():
    class _NoGates:
        def gate_weights(self, features):
            return {}

    assert gate_summary.mean_gate_weights(_NoGates(), [({}, None)], []) == {}


def test_mmoe_gates_of_a_real_model_sum_to_one_per_row(tmp_path):
    model = build_model(small_config(tasks=["click", "order"], use_scenario=True), VOCAB_SIZES)
    batch = make_batch()
    model(batch[0])
    weights = gate_summary.mean_gate_weights(model, [batch], ["NL", "DE"])
    assert set(weights) == {"click", "order"}
    for rows in weights.values():
        for values in rows.values():
            assert len(values) == model.model_config.mixture["num_experts"]
            assert sum(values) == pytest.approx(1.0, rel=1e-5)
    gate_summary.write_gate_images(str(tmp_path), weights)
    events = event_accumulator.EventAccumulator(str(tmp_path), size_guidance={"tensors": 0})
    events.Reload()
    assert set(events.Tags()["tensors"]) == {"gates/click", "gates/order"}


def test_heat_map_scales_the_largest_weight_to_white():
    image = gate_summary.heat_map(np.array([[0.25, 0.75], [0.5, 0.5]]))
    cell = gate_summary.CELL_PIXELS
    assert image.shape == (1, 2 * cell, 2 * cell, 1)
    assert image[0, 0, cell, 0] == 1.0 and image[0, 0, 0, 0] == pytest.approx(1 / 3)
