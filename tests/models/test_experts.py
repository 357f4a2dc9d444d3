"""The feature-interaction experts (models/experts) against hand-computed outputs."""

import numpy as np
import pytest
import tensorflow as tf

from models.experts.base import FIELDS, IDS, X
from models.experts.gdcn import GDCN, GatedCross
from models.experts.masknet import MaskBlock, MaskNet
from models.experts.memonet import MemoNet
from models.experts.mlp import MLPExpert
from models.registry import EXPERTS


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _layer_norm(v, eps=1e-3):  # Keras LayerNormalization's default epsilon, gamma 1, beta 0
    mean, var = v.mean(-1, keepdims=True), v.var(-1, keepdims=True)
    return (v - mean) / np.sqrt(var + eps)


def test_registered_names():
    assert {"mlp", "gdcn", "masknet", "memonet"} <= set(EXPERTS.names())
    with pytest.raises(ValueError, match="output_units"):
        MLPExpert(0)


def test_gated_cross_is_x0_times_linear_times_gate_plus_x():
    x0 = np.array([[1.0, -2.0, 0.5]], np.float32)
    x = np.array([[0.3, 0.1, -1.0]], np.float32)
    layer = GatedCross(name="gc")
    layer(x0, x)  # builds
    w = np.array([[0.2, -0.1, 0.0], [0.5, 0.3, -0.2], [0.1, 0.0, 0.4]], np.float32)
    b = np.array([0.1, -0.2, 0.3], np.float32)
    wg = np.array([[1.0, 0.0, -1.0], [0.5, 2.0, 0.0], [0.0, -0.5, 1.5]], np.float32)
    layer._dense.kernel.assign(w)
    layer._dense.bias.assign(b)
    layer.gate.kernel.assign(wg)
    expected = x0 * (x @ w + b) * _sigmoid(x @ wg) + x  # GDCN eq. 1 (row vectors: x W)
    np.testing.assert_allclose(layer(x0, x).numpy(), expected, rtol=1e-5)
    # a zero gate kernel halves the cross term: sigma(0) = 1/2
    layer.gate.kernel.assign(np.zeros_like(wg))
    np.testing.assert_allclose(layer(x0, x).numpy(), 0.5 * x0 * (x @ w + b) + x, rtol=1e-5)
    assert layer.gate.bias is None


def test_gdcn_expert_stacks_gated_crosses_then_an_mlp():
    expert = GDCN(output_units=5, layers=3, units=[7])
    out = expert({X: tf.ones([4, 6])})
    assert out.shape == (4, 5) and (out.numpy() >= 0).all()  # a ReLU output layer
    names = [v.name for v in expert.trainable_variables]
    assert sum("gated_cross" in n and "gate/kernel" in n for n in names) == 3
    # the low-rank option of TFRS's Cross still applies under the gate
    low = GDCN(output_units=2, layers=1, projection_dim=2)
    low({X: tf.ones([2, 6])})
    assert low.cross[0]._dense_u.kernel.shape == (6, 2)


def _fields(batch=3, widths=(4, 2, 3), seed=0):
    rng = np.random.default_rng(seed)
    return [tf.constant(rng.normal(size=(batch, w)), tf.float32) for w in widths]


def test_mask_block_is_relu_of_layer_norm_of_masked_projection():
    v_emb = tf.constant([[1.0, -1.0, 2.0]], tf.float32)
    v_in = tf.constant([[0.5, 0.25, -1.0]], tf.float32)
    block = MaskBlock(units=2, mask_hidden=2)
    block([v_emb, v_in])
    w1, b1 = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, -0.5]], np.float32), np.array([0.1, 0.2], np.float32)
    w2, b2 = np.array([[1.0, 0.5, -1.0], [0.0, 2.0, 1.0]], np.float32), np.array([0.0, 0.1, 0.2], np.float32)
    wi = np.array([[1.0, -1.0], [2.0, 0.5], [0.0, 1.0]], np.float32)
    block.aggregation.kernel.assign(w1)
    block.aggregation.bias.assign(b1)
    block.projection.kernel.assign(w2)
    block.projection.bias.assign(b2)
    block.hidden.kernel.assign(wi)
    mask = np.maximum(v_emb.numpy() @ w1 + b1, 0) @ w2 + b2           # eq. 3
    expected = np.maximum(_layer_norm((mask * v_in.numpy()) @ wi), 0)  # eq. 9-10: LN before the ReLU
    np.testing.assert_allclose(block([v_emb, v_in]).numpy(), expected, rtol=1e-4, atol=1e-6)
    assert block.hidden.bias is None


@pytest.mark.parametrize("mode", ["serial", "parallel"])
def test_masknet_mask_widths_and_field_norms(mode):
    fields = _fields()
    net = MaskNet(output_units=6, mode=mode, blocks=3, block_units=5, mask_hidden=7)
    out = net({X: tf.concat(fields, -1), FIELDS: fields})
    assert out.shape == (3, 6)
    v_emb = tf.concat(fields, -1)
    # every mask is computed from V_emb (width 9) and has the width of what it multiplies:
    # V_emb's for the first serial block and every parallel one, block_units after a block
    widths = [b.mask(v_emb).shape[-1] for b in net.mask_blocks]
    assert widths == ([9, 5, 5] if mode == "serial" else [9, 9, 9])
    assert all(b.aggregation.kernel.shape == (9, 7) for b in net.mask_blocks)
    # LN_EMB normalises each field on its own (eq. 8)
    normed = net.embedding_norm(fields).numpy()
    start = 0
    for f in fields:
        width = f.shape[-1]
        np.testing.assert_allclose(normed[:, start:start + width], _layer_norm(f.numpy()), rtol=1e-4, atol=1e-5)
        start += width
    assert len(net.field_norms) == 3


def test_masknet_refuses_scalar_fields_and_needs_fields():
    with pytest.raises(ValueError, match="width >= 2"):
        MaskNet(output_units=2)({X: tf.ones([2, 3]), FIELDS: [tf.ones([2, 1]), tf.ones([2, 2])]})
    with pytest.raises(ValueError, match="mode"):
        MaskNet(output_units=2, mode="diagonal")


def _ids(rows):
    rows = np.asarray(rows, np.int64)
    return {name: tf.constant(rows[:, i]) for i, name in enumerate(("brand", "category", "item"))}


def test_memonet_hashing_is_deterministic_per_cross_feature():
    net = MemoNet(output_units=4, codebook_size=1000, codebook_dim=3, hashes=2)
    ids = _ids([[1, 2, 3], [4, 5, 6], [1, 2, 3]])
    first = net.code_indices(ids).numpy()
    assert first.shape == (3, 3, 2)  # 3 fields -> 3 pairs, 2 hash functions
    np.testing.assert_array_equal(first, net.code_indices(ids).numpy())
    np.testing.assert_array_equal(first[0], first[2])  # the same example, wherever it is in the batch
    # the same cross feature alone in its batch, and in another layer instance: the same rows
    np.testing.assert_array_equal(net.code_indices(_ids([[1, 2, 3]])).numpy()[0], first[0])
    np.testing.assert_array_equal(MemoNet(output_units=1, codebook_size=1000, hashes=2).code_indices(ids), first)
    assert ((first >= 0) & (first < 1000)).all()
    # the two hash functions differ, and so do equal values in different field pairs
    many = net.code_indices(_ids([[i, i, i] for i in range(50)])).numpy()
    assert (many[:, :, 0] != many[:, :, 1]).mean() > 0.9
    assert (many[:, 0, 0] != many[:, 1, 0]).mean() > 0.9
    # a value change in one field moves exactly the pairs that contain it (brand: pairs 0, 1)
    moved = net.code_indices(_ids([[9, 2, 3]])).numpy()[0] != first[0]
    assert moved[0].all() and moved[1].all() and not moved[2].any()


def test_memonet_shares_one_codebook_and_updates_only_the_looked_up_rows():
    net = MemoNet(output_units=4, codebook_size=64, codebook_dim=3, hashes=2, id_fields=["item", "brand"])
    ids = _ids([[1, 2, 3], [4, 5, 6]])
    inputs = {X: tf.ones([2, 5]), IDS: ids}
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(net(inputs))
    codebooks = [v for v in net.trainable_variables if "codebook" in v.name]
    assert len(codebooks) == 1 and codebooks[0].shape == (64, 3)  # one table for every pair and hash
    gradient = tf.convert_to_tensor(tape.gradient(loss, codebooks[0])).numpy()
    used = set(net.code_indices(ids).numpy().ravel().tolist())
    assert set(np.flatnonzero(np.abs(gradient).sum(-1))) <= used and len(used) <= 2 * 1 * 2
    assert net.restore.kernel.shape == (2 * 3, 3)  # linear memory restoring: H * k -> k
    with pytest.raises(ValueError, match="not among"):
        MemoNet(output_units=1, id_fields=["item", "shop"])({X: tf.ones([2, 1]), IDS: ids})
