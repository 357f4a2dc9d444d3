import json

import numpy as np
import pytest
import tensorflow as tf

from models.mixtures.hmoe import HMoE, IMMoE
from models.mixtures.mmoe import MMoE
from models.mixtures.ple import PLE
from models.mixtures.shared_bottom import SharedBottom

B, N_IN = 8, 12


def _x(seed=0):
    return tf.constant(np.random.default_rng(seed).normal(size=(B, N_IN)), tf.float32)


def test_mmoe_gates_sum_to_one():
    layer = MMoE(["click", "order", "cart"], num_experts=3, expert_units=[8, 4], tower_units=[4])
    utilities, gates = layer(_x(), return_gates=True)
    assert set(utilities) == {"click", "order", "cart"}
    for task in utilities:
        assert utilities[task].shape == (B, 1) and gates[task].shape == (B, 3)
        np.testing.assert_allclose(gates[task].numpy().sum(-1), 1.0, rtol=1e-6)
    assert not np.allclose(utilities["click"], utilities["order"])


def test_shared_bottom_shares_one_mlp():
    layer = SharedBottom(["click", "order"], bottom_units=[8, 4], tower_units=[])
    out = layer(_x())
    assert {k: v.shape for k, v in out.items()} == {"click": (B, 1), "order": (B, 1)}
    # the bottom's variables plus one linear unit per tower
    assert len(layer.trainable_variables) == 4 + 2 * 2


def test_ple_gate_widths_per_level():
    towers = ["click", "order"]
    layer = PLE(towers, levels=3, task_experts=2, shared_experts=1, expert_units=[6], tower_units=[4])
    logits, gates = layer(_x(), return_gates=True)
    assert set(logits) == set(towers) and all(v.shape == (B, 1) for v in logits.values())
    # a task's gate mixes its own experts and the shared ones (CGC): 2 + 1 at every level
    for j in range(2):
        for t in towers:
            assert gates[f"level_{j}_{t}"].shape == (B, 3)
        # the inner levels' shared gate mixes every expert of the level: 2 tasks x 2 + 1
        assert gates[f"level_{j}_shared"].shape == (B, 5)
    assert "level_2_shared" not in gates  # the last level has no shared gate
    for t in towers:  # the last level's task gates feed the towers, named by the tower
        assert gates[t].shape == (B, 3)
    for g in gates.values():
        np.testing.assert_allclose(g.numpy().sum(-1), 1.0, rtol=1e-6)
    assert len(layer.shared_gates[0].out.kernel.shape) == 2
    assert layer.shared_gates[2] is None


def test_ple_one_level_is_cgc():
    layer = PLE(["a", "b", "c"], levels=1, task_experts=1, shared_experts=2, expert_units=[4])
    _, gates = layer(_x(), return_gates=True)
    assert set(gates) == {"a", "b", "c"} and all(g.shape == (B, 3) for g in gates.values())


SCENARIOS = 3


def _hmoe(stop_gradient=True):
    layer = HMoE(["click"], num_scenarios=SCENARIOS, num_experts=2, expert_units=[6], gate_units=[4],
                 scenario_gate_units=[4], tower_units=[4], stop_gradient=stop_gradient)
    layer(_x(), scenario=tf.zeros([B], tf.int64))
    return layer


def _tower_gradients(layer, scenario: int):
    """Gradients of example 0's H (its scenario `scenario`) w.r.t. each scenario tower's variables."""
    x = _x()[:1]
    with tf.GradientTape() as tape:
        h = layer(x, scenario=tf.constant([scenario], tf.int64))["click"]
    towers = layer.scenario_towers["click"]
    grads = tape.gradient(h, [t.trainable_variables for t in towers])
    return [sum(float(tf.reduce_sum(tf.abs(g))) for g in per_tower if g is not None) for per_tower in grads]


def test_hmoe_stop_gradient_keeps_other_scenarios_towers_untouched():
    layer = _hmoe(stop_gradient=True)
    grads = _tower_gradients(layer, scenario=1)
    assert grads[1] > 0 and grads[0] == 0 and grads[2] == 0  # eq. 7
    # an unknown scenario (an OOV bucket) has no own tower: every tower is stopped
    assert _tower_gradients(layer, scenario=SCENARIOS) == [0, 0, 0]


def test_nostopgrad_hmoe_trains_every_scenario_tower():
    layer = _hmoe(stop_gradient=False)
    grads = _tower_gradients(layer, scenario=1)
    assert all(g > 0 for g in grads)


def test_hmoe_forward_is_the_gated_mix_either_way():
    with_stop, without = _hmoe(True), _hmoe(False)
    without.set_weights(with_stop.get_weights())
    x, scenario = _x(), tf.constant([0, 1, 2, 3, 0, 1, 2, 3], tf.int64)
    a, gates = with_stop(x, scenario=scenario, return_gates=True)
    np.testing.assert_allclose(a["click"], without(x, scenario=scenario)["click"], rtol=1e-6)
    scores, _ = with_stop.scenario_logits(x, None)
    w = gates["click_scenario"].numpy()
    assert w.shape == (B, SCENARIOS)
    np.testing.assert_allclose(a["click"].numpy()[:, 0], (w * scores["click"].numpy()).sum(-1), rtol=1e-5)


def test_immoe_reads_the_own_scenario_tower():
    layer = IMMoE(["click", "order"], num_scenarios=SCENARIOS, num_experts=2, expert_units=[6],
                  gate_units=[4], tower_units=[4])
    x, scenario = _x(), tf.constant([0, 1, 2, 3, 0, 1, 2, 3], tf.int64)
    out = layer(x, scenario=scenario)
    scores, _ = layer.scenario_logits(x, None)
    for k in ("click", "order"):
        s = scores[k].numpy()
        expected = np.array([s[i, c] if c < SCENARIOS else s[i].mean() for i, c in enumerate(scenario.numpy())])
        np.testing.assert_allclose(out[k].numpy()[:, 0], expected, rtol=1e-5)
    assert not layer.scenario_gates


def test_scenario_mixtures_need_scenarios():
    with pytest.raises(ValueError):
        HMoE(["click"], num_scenarios=0)
    layer = _hmoe()
    with pytest.raises(ValueError):
        layer(_x())


@pytest.mark.parametrize("layer", [
    SharedBottom(["click", "order"], bottom_units=[4], tower_units=[2], dropout=0.1),
    PLE(["click", "order"], levels=2, expert_units=[4], gate_units=[3], tower_units=[2]),
    HMoE(["click"], num_scenarios=2, num_experts=2, expert_units=[4], gate_units=[2], scenario_gate_units=[2],
         tower_units=[2], stop_gradient=False),
    IMMoE(["click"], num_scenarios=2, num_experts=2, expert_units=[4], gate_units=[2], tower_units=[2]),
], ids=lambda layer: type(layer).__name__)
def test_get_config_round_trips(layer):
    x, scenario = _x(), tf.constant([0, 1] * (B // 2), tf.int64)
    config = json.loads(json.dumps(layer.get_config()))
    clone = type(layer).from_config(config)
    out = layer(x, scenario=scenario)
    clone(x, scenario=scenario)
    clone.set_weights(layer.get_weights())
    tf.nest.map_structure(np.testing.assert_array_equal, clone(x, scenario=scenario), out)
    assert clone.get_config() == layer.get_config()
