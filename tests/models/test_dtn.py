"""DTN (models/mixtures/dtn.py) and DTN-trim (models/mixtures/dtn_trim.py)."""

import numpy as np
import pytest
import tensorflow as tf

from models.experts.base import FIELDS, IDS
from models.mixtures.base import mixture_of_experts
from models.mixtures.dtn import DTN
from models.mixtures.dtn_trim import modules_to_trim, trimmed_mixture
from models.mixtures.mmoe import MMoE

B = 5
MLPS = [{"type": "mlp", "units": [6]}, {"type": "mlp", "units": [3]}]


def _x(seed=0, width=8):
    return tf.constant(np.random.default_rng(seed).normal(size=(B, width)), tf.float32)


def _fields(seed=1):
    rng = np.random.default_rng(seed)
    fields = [tf.constant(rng.normal(size=(B, w)), tf.float32) for w in (4, 4)]
    ids = {"item": tf.constant(rng.integers(0, 9, B)), "shop": tf.constant(rng.integers(0, 9, B))}
    return {FIELDS: fields, IDS: ids}


def test_gate_widths_two_and_three_towers():
    dtn = DTN(["click", "order"], interactions=MLPS, modules_per_interaction=2, interaction_units=4)
    logits, gates = dtn(_x(), return_gates=True)
    assert {t: v.shape for t, v in logits.items()} == {"click": (B, 1), "order": (B, 1)}
    # own gate: the task's 2 methods x 2 modules; others: the other task's 4 and the shared 4
    assert {g: w.shape[1] for g, w in gates.items()} == {"click_own": 4, "click_others": 8,
                                                         "order_own": 4, "order_others": 8}
    for w in gates.values():
        np.testing.assert_allclose(w.numpy().sum(-1), 1.0, rtol=1e-6)
    assert dtn.members["click"] == ["click_mlp_0", "click_mlp_1", "click_mlp_2", "click_mlp_3"]
    three = DTN(["click", "cart", "order"], interactions=MLPS[:1], interaction_units=4)
    _, gates = three(_x(), return_gates=True)
    assert {g: w.shape[1] for g, w in gates.items()} == {
        "click_own": 1, "click_others": 3, "cart_own": 1, "cart_others": 3, "order_own": 1, "order_others": 3}
    # C_t = concat[S_O, S_V]: the tower's first layer reads 2 x interaction_units
    assert three.tower_nets["order"].hidden[0].kernel.shape == (8, 64)


def _by_hand(dtn, x, task_sensitive):
    """eq. 4-7 computed from the layer's own parts."""
    out = {n: fim({"x": x}).numpy() for n, fim in dtn.fims.items()}
    logits, p = {}, {}
    for k, t in enumerate(dtn.towers):
        a_o = []
        for o in dtn.towers:
            if o == t:
                continue
            scale = p[o] if (task_sensitive and dtn.towers.index(o) < k) else 1.0
            a_o += [out[n] * scale for n in dtn.members[o]]
        a_o += [out[n] for n in dtn.members["shared"]]
        s_o, _ = mixture_of_experts(dtn.gates[f"{t}_others"](x), tf.constant(np.stack(a_o, 1)))
        s_v, _ = mixture_of_experts(dtn.gates[f"{t}_own"](x), tf.constant(np.stack([out[n] for n in dtn.members[t]], 1)))
        logits[t] = dtn.tower_nets[t](tf.concat([s_o, s_v], -1)).numpy()
        p[t] = 1.0 / (1.0 + np.exp(-logits[t]))
    return logits


@pytest.mark.parametrize("task_sensitive", [True, False])
def test_task_sensitive_network_multiplies_earlier_tasks_modules_by_their_probability(task_sensitive):
    x = _x()
    dtn = DTN(["click", "order"], interactions=MLPS, interaction_units=4, task_sensitive=task_sensitive)
    got = {t: v.numpy() for t, v in dtn(x).items()}
    for t, expected in _by_hand(dtn, x, task_sensitive).items():
        np.testing.assert_allclose(got[t], expected, rtol=1e-5, atol=1e-6)
    # the other setting differs for order only: click has no earlier task
    other = _by_hand(dtn, x, not task_sensitive)
    np.testing.assert_allclose(got["click"], other["click"], rtol=1e-5, atol=1e-6)
    assert not np.allclose(got["order"], other["order"], rtol=1e-4, atol=1e-6)


def test_dtn_of_interaction_modules_reads_fields():
    interactions = [{"type": "gdcn", "layers": 1}, {"type": "masknet", "block_units": 4, "mask_hidden": 4},
                    {"type": "memonet", "codebook_size": 32, "codebook_dim": 2}]
    dtn = DTN(["ctr", "cvr"], interactions=interactions, interaction_units=4)
    assert dtn.uses_fields and not DTN(["a", "b"], interactions=MLPS).uses_fields
    logits = dtn(_x(), fields=_fields())
    assert all(v.shape == (B, 1) and np.isfinite(v.numpy()).all() for v in logits.values())
    assert sorted(dtn.fims) == sorted(f"{m}_{k}_0" for m in ("shared", "ctr", "cvr")
                                      for k in ("gdcn", "masknet", "memonet"))
    with pytest.raises(ValueError, match="per-field"):
        dtn(_x())


def test_mmoe_with_interaction_experts():
    mmoe = MMoE(["click", "order"], num_experts=2, expert_units=[6], tower_units=[3],
                expert={"type": "masknet", "block_units": 4, "mask_hidden": 4})
    assert mmoe.uses_fields and not MMoE(["click"]).uses_fields
    logits, gates = mmoe(_x(), fields=_fields(), return_gates=True)
    assert all(v.shape == (B, 1) for v in logits.values()) and gates["click"].shape == (B, 2)
    assert mmoe.experts[0].output_units == 6
    assert mmoe.get_config()["expert"]["type"] == "masknet"


def test_trim_removes_exactly_the_modules_under_the_threshold():
    members = {"click_others": ["order_a", "order_b", "shared_a", "shared_b"], "click_own": ["click_a", "click_b"],
               "order_others": ["click_a", "click_b", "shared_a", "shared_b"], "order_own": ["order_a", "order_b"]}
    weights = {"click_others": [0.04, 0.5, 0.06, 0.4], "click_own": [0.97, 0.03],
               "order_others": [0.5, 0.02, 0.03, 0.45], "order_own": [0.02, 0.98]}
    # under 0.05 in every gate that reads it: order_a (0.04, 0.02) and click_b (0.03, 0.02);
    # shared_a is 0.06 in click's gate, so it stays
    assert modules_to_trim(weights, members, 0.05) == ["click_b", "order_a"]
    assert modules_to_trim(weights, members, 0.0) == []
    # a gate's most-weighted module is never cut, whatever the threshold
    assert "click_a" not in modules_to_trim(weights, members, 0.99)
    assert "order_b" not in modules_to_trim(weights, members, 0.99)
    with pytest.raises(ValueError, match="2 weights for 4"):
        modules_to_trim({**weights, "click_others": [0.5, 0.5]}, members, 0.1)


def test_trimmed_dtn_builds_without_the_trimmed_modules():
    section = {"type": "dtn", "interactions": MLPS, "interaction_units": 4, "trim_threshold": 0.1}
    trimmed = trimmed_mixture(section, ["order_mlp_1", "shared_mlp_0"])
    assert trimmed["trimmed"] == ["order_mlp_1", "shared_mlp_0"] and trimmed["trim_threshold"] == 0.0
    params = {k: v for k, v in trimmed.items() if k != "type"}
    dtn = DTN(["click", "order"], **params)
    _, gates = dtn(_x(), return_gates=True)
    assert "order_mlp_1" not in dtn.fims and "shared_mlp_0" not in dtn.fims and len(dtn.fims) == 4
    assert {g: w.shape[1] for g, w in gates.items()} == {"click_own": 2, "click_others": 2,
                                                         "order_own": 1, "order_others": 3}
    with pytest.raises(ValueError, match="unknown modules"):
        DTN(["click", "order"], interactions=MLPS, trimmed=["cart_mlp_0"])
    with pytest.raises(ValueError, match="every module"):
        DTN(["click", "order"], interactions=MLPS[:1],
            trimmed=["click_mlp_0", "order_mlp_0", "shared_mlp_0"])
