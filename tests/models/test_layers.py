import json

import numpy as np
import pytest
import tensorflow as tf

from models import features as F
from models import preprocessing as P
from models.bias import BiasTower
from models.embedding import ContextInput, ItemEmbedding, SequenceInput
from models.din import DINAttention
from models.mixtures.mmoe import MMoE
from models.mlp import MLP
from models.transformer import (AttentionBlock, DeepInterestTransformer, EncoderBlock, MultiHeadAttention,
                                PositionalEmbedding, TargetAttentionDecoder, sincos_table)
from tests.models.batch import SEQUENCE_LENGTHS, VOCAB_SIZES, make_batch, row_lengths

B, L, D, H = 6, 5, 8, 2
DIMS = {F.ITEM_ID: 4, F.CATEGORY_ID: 2, F.BRAND_ID: 1, F.SHOP_ID: 1}


def _seq(seed=0):
    rng = np.random.default_rng(seed)
    lengths = np.array([0, 5, 3, 1, 2, 4])
    mask = np.arange(L)[None, :] < lengths[:, None]
    x = rng.normal(size=(B, L, D)).astype(np.float32)
    ages = rng.integers(0, P.AGE_BUCKETS, (B, L))
    return tf.constant(x), tf.constant(ages, tf.int64), tf.constant(mask)


def _scramble_padding(x, mask, seed=5, scale=100.0):
    """Replace values at padded positions with large noise (ids: arbitrary ints)."""
    noise = np.random.default_rng(seed).normal(size=x.shape) * scale
    m = mask.numpy().reshape(mask.shape + (1,) * (len(x.shape) - len(mask.shape)))
    if x.dtype.is_integer:
        noise = np.abs(noise).astype(np.int64) % P.AGE_BUCKETS
    return tf.constant(np.where(m, x.numpy(), noise.astype(x.dtype.as_numpy_dtype)))


def test_item_embedding_is_shared_by_target_and_sequences():
    layer = ItemEmbedding(VOCAB_SIZES, DIMS)
    features, _ = make_batch()
    target = layer.embed_target(features)
    ids, _ = SequenceInput("click", 6)(features)
    sequence = layer({f: ids[f] for f in F.ITEM_ID_FEATURES})
    assert target.shape == (6, 8) and sequence.shape == (6, 6, 8) and layer.output_dim == 8
    same = {f: tf.reshape(features[f], [-1]) for f in F.ITEM_ID_FEATURES}
    np.testing.assert_array_equal(layer(same), target)
    assert len(layer.trainable_variables) == 4


def test_sequence_input_pads_truncates_and_masks():
    features, _ = make_batch(tail_extra=2)
    for s, max_length in SEQUENCE_LENGTHS.items():
        ids, mask = SequenceInput(s, max_length)(features)
        lengths = np.minimum(row_lengths(6, max_length), max_length)
        np.testing.assert_array_equal(mask.numpy().sum(1), lengths)
        assert not mask.numpy()[0].any()  # the empty row
        for field in F.SEQUENCE_ELEMENT_FIELDS:
            dense = tf.sparse.to_dense(features[F.sequence_feature(s, field)]).numpy()
            assert ids[field].shape == (6, max_length)
            for r, n in enumerate(lengths):
                np.testing.assert_array_equal(ids[field].numpy()[r, :n], dense[r, :n])
                assert (ids[field].numpy()[r, n:] == 0).all()


def test_sequence_input_all_rows_empty():
    features, _ = make_batch(lengths={s: [0] * 6 for s in SEQUENCE_LENGTHS})
    ids, mask = SequenceInput("click", 6)(features)
    assert ids[F.ITEM_ID].shape == (6, 6) and not mask.numpy().any()


@pytest.mark.parametrize("mode", ["none", "sincos", "learned"])
def test_positional_embedding(mode):
    x, ages, _ = _seq()
    layer = PositionalEmbedding(L, mode, recency=True)
    out = layer(x, ages)
    assert out.shape == (B, L, D)
    if mode == "sincos":
        no_recency = PositionalEmbedding(L, mode, recency=False)(x, ages)
        np.testing.assert_allclose(no_recency - x, np.broadcast_to(sincos_table(L, D), (B, L, D)), atol=1e-6)
    if mode == "none":
        plain = PositionalEmbedding(L, mode, recency=False)
        np.testing.assert_array_equal(plain(x, ages), x)
    # recency: the age bucket changes the output
    assert not np.allclose(layer(x, (ages + 1) % P.AGE_BUCKETS), out)


@pytest.mark.parametrize("self_attention", [True, False])
def test_multi_head_attention_equals_keras_layer(self_attention):
    """funnel's attention (fused projections) computes eq. 1 exactly as Keras' layer does with
    the same weights: outputs and per-head weights, self- and cross-attention, masked keys."""
    import tf_keras as keras

    x, _, mask = _seq()
    query = x if self_attention else tf.constant(np.random.default_rng(3).normal(size=(B, 2, D)), tf.float32)
    ours = MultiHeadAttention(H, 0.0)
    out, weights = ours(query, x, mask)
    reference = keras.layers.MultiHeadAttention(H, key_dim=D // H)
    reference(query, x, x, attention_mask=mask[:, tf.newaxis, :])
    kernels = {name: getattr(ours, f"{name}_kernel").numpy() for name in ("query", "key", "value", "output")}
    biases = {name: getattr(ours, f"{name}_bias").numpy() for name in ("query", "key", "value", "output")}
    reference.set_weights([  # Keras' order: query, key, value, output; each kernel then bias
        *[w for name in ("query", "key", "value") for w in
          (kernels[name].reshape(D, H, D // H), biases[name].reshape(H, D // H))],
        kernels["output"].reshape(H, D // H, D), biases["output"]])
    expected, expected_weights = reference(query, x, x, attention_mask=mask[:, tf.newaxis, :],
                                           return_attention_scores=True)
    nonempty = mask.numpy().any(axis=1)  # all-masked rows: callers zero them
    np.testing.assert_allclose(out.numpy()[nonempty], expected.numpy()[nonempty], atol=1e-5)
    np.testing.assert_allclose(weights.numpy()[nonempty], expected_weights.numpy()[nonempty], atol=1e-6)
    assert (weights.numpy()[nonempty][~np.broadcast_to(mask.numpy()[nonempty][:, None, None, :],
                                                        weights.numpy()[nonempty].shape)] == 0).all()


def test_multi_head_attention_initialises_like_keras_per_head_kernels():
    d, h = 80, 4
    layer = MultiHeadAttention(h)
    layer(tf.zeros((2, 3, d)), tf.zeros((2, 3, d)), tf.ones((2, 3), bool))
    # Glorot over [d, h, d_k] (fans h * d and d_k * d) and over [h, d_k, d] for W^O
    limit_in, limit_out = np.sqrt(6 / (h * d + d // h * d)), np.sqrt(6 / (d // h * h + d * h))
    for kernel in (layer.query_kernel, layer.key_kernel, layer.value_kernel):
        assert limit_in * 0.9 < np.abs(kernel.numpy()).max() <= limit_in
    assert limit_out * 0.9 < np.abs(layer.output_kernel.numpy()).max() <= limit_out


def test_residual_dropout_is_optional():
    block = AttentionBlock(H, 16, 0.3, residual_dropout=False)
    x, _, mask = _seq()
    block(x, x, mask)
    assert block.attention.dropout == 0.3  # the attention weights' dropout stays
    assert block.attention_dropout.rate == block.ffn_dropout.rate == 0.0
    with_residual = AttentionBlock(H, 16, 0.3)
    with_residual(x, x, mask)
    assert with_residual.attention_dropout.rate == with_residual.ffn_dropout.rate == 0.3


def test_encoder_block_ignores_padding():
    x, _, mask = _seq()
    block = EncoderBlock(H, 16, 0.0)
    out = block(x, mask)
    assert out.shape == (B, L, D)
    np.testing.assert_array_equal(block(_scramble_padding(x, mask), mask), out)
    assert (out.numpy()[~mask.numpy()] == 0).all()
    assert np.isfinite(out.numpy()).all()


def test_decoder_uses_target_as_query_and_masks_keys():
    memory, _, mask = _seq()
    target = tf.constant(np.random.default_rng(1).normal(size=(B, D)), tf.float32)
    decoder = TargetAttentionDecoder(H, 16, 0.0, num_blocks=1)
    interest, weights = decoder(target, memory, mask, return_attention_scores=True)
    assert interest.shape == (B, D) and weights.shape == (B, H, L)
    m = mask.numpy()
    w = weights.numpy()
    nonempty = m.any(1)
    np.testing.assert_allclose(w[nonempty].sum(-1), 1.0, rtol=1e-5)
    assert (w.transpose(0, 2, 1)[~m] == 0).all()
    assert (w[~nonempty] == 0).all() and (interest.numpy()[~nonempty] == 0).all()
    # padded memory never matters; the target (query) does
    np.testing.assert_array_equal(decoder(target, _scramble_padding(memory, mask), mask), interest)
    other = decoder(target + 1.0, memory, mask).numpy()
    assert not np.allclose(other[nonempty], interest.numpy()[nonempty])
    assert np.isfinite(interest.numpy()).all()


def test_decoder_with_two_blocks():
    memory, _, mask = _seq()
    target = tf.ones((B, D))
    out = TargetAttentionDecoder(H, 16, 0.0, num_blocks=2)(target, memory, mask)
    assert out.shape == (B, D) and np.isfinite(out.numpy()).all()


@pytest.mark.parametrize("positional", ["none", "sincos", "learned"])
def test_deep_interest_transformer_ignores_padding(positional):
    x, ages, mask = _seq()
    target = tf.constant(np.random.default_rng(2).normal(size=(B, D)), tf.float32)
    layer = DeepInterestTransformer(L, H, 16, 0.1, encoder_blocks=2, positional=positional)
    out = layer(x, ages, mask, target)
    assert out.shape == (B, D) and np.isfinite(out.numpy()).all()
    assert (out.numpy()[0] == 0).all()  # empty row
    scrambled = layer(_scramble_padding(x, mask), _scramble_padding(ages, mask), mask, target)
    np.testing.assert_array_equal(scrambled, out)


@pytest.mark.parametrize("kind,reads", [
    ("position_index", {F.POSITION}), ("position_page", {F.PAGE}), ("neighboring", {F.NEIGHBOR_CATEGORIES}),
    ("all", {F.POSITION, F.PAGE, F.NEIGHBOR_CATEGORIES})])
def test_bias_tower(kind, reads):
    features, _ = make_batch()
    tower = BiasTower(kind, [8, 4], 4, VOCAB_SIZES[F.CATEGORY_ID], name="something_else")
    y = tower(features)
    assert tower.name == "bias_tower" and y.shape == (6, 1)
    assert tower.variables and all("bias_tower" in v.name for v in tower.variables)
    for name in (F.POSITION, F.PAGE, F.NEIGHBOR_CATEGORIES):  # y_b depends on exactly its features
        changed = dict(features)
        changed[name] = (features[name] + 1) % 7
        assert np.allclose(tower(changed), y) == (name not in reads), name


def test_observation_dropout_zeroes_whole_bias_logits_in_training_only():
    features, _ = make_batch(batch_size=400)
    tower = BiasTower("all", [8, 4], 4, VOCAB_SIZES[F.CATEGORY_ID], output_dropout=0.5)
    tower(features)
    tower.logit.bias.assign([1.0])  # no logit of exactly 0 (dead ReLUs and a zero bias give some)
    full = tower(features, training=False).numpy()
    assert (full != 0).all()
    np.testing.assert_array_equal(tower(features).numpy(), full)  # evaluation: every logit
    tf.random.set_seed(0)
    dropped = tower(features, training=True).numpy()
    zeroed = dropped == 0
    assert 0.4 < zeroed.mean() < 0.6  # about half of the examples
    np.testing.assert_allclose(dropped[~zeroed], full[~zeroed], rtol=1e-6)  # the kept ones not rescaled
    assert tower.get_config()["output_dropout"] == 0.5
    with pytest.raises(ValueError, match="output_dropout must be in"):
        BiasTower("all", [4], 2, 10, output_dropout=1.0)


def test_examination_tower_gives_log_p_seen_and_drops_to_seen_for_sure():
    features, _ = make_batch(batch_size=400)
    logit_tower = BiasTower("all", [8, 4], 4, VOCAB_SIZES[F.CATEGORY_ID])
    tower = BiasTower("all", [8, 4], 4, VOCAB_SIZES[F.CATEGORY_ID], output_dropout=0.5, combine="examination")
    logit_tower(features), tower(features)
    tower.set_weights(logit_tower.get_weights())
    full = tower(features, training=False).numpy()
    np.testing.assert_allclose(full, tf.math.log_sigmoid(logit_tower(features)).numpy(), rtol=1e-5)
    assert (full < 0).all()
    tf.random.set_seed(0)
    dropped = tower(features, training=True).numpy()
    assert 0.4 < (dropped == 0).mean() < 0.6  # dropped: log p_seen = 0, seen for sure
    with pytest.raises(ValueError, match="combine must be one of"):
        BiasTower("all", [4], 2, 10, combine="product")


def test_same_category_bias_reads_only_which_neighbours_share_the_target_category():
    features, _ = make_batch()
    tower = BiasTower("neighboring", [8, 4], 4, neighbors="same_category")
    y = tower(features).numpy()
    neighbors = features[F.NEIGHBOR_CATEGORIES].numpy().reshape(6, F.NUM_NEIGHBORS)
    target = features[F.CATEGORY_ID].numpy().reshape(6, 1)
    # a relabelling of every category (target and neighbours alike) keeps who shares it: same y_b
    relabelled = dict(features)
    relabelled[F.CATEGORY_ID] = features[F.CATEGORY_ID] + 100
    relabelled[F.NEIGHBOR_CATEGORIES] = features[F.NEIGHBOR_CATEGORIES] + 100
    np.testing.assert_allclose(tower(relabelled), y, rtol=1e-6)
    # a neighbour moved into the target's category changes it
    moved = neighbors.copy()
    moved[:, 0] = target[:, 0]
    changed = dict(features)
    changed[F.NEIGHBOR_CATEGORIES] = tf.constant(moved.reshape(features[F.NEIGHBOR_CATEGORIES].shape),
                                                 features[F.NEIGHBOR_CATEGORIES].dtype)
    differs = (neighbors[:, 0] != target[:, 0])
    assert differs.any()
    assert not np.allclose(tower(changed).numpy()[differs], y[differs])
    np.testing.assert_allclose(tower(changed).numpy()[~differs], y[~differs], rtol=1e-6)
    with pytest.raises(ValueError, match="neighbors must be one of"):
        BiasTower("neighboring", [4], 2, 10, neighbors="brands")


def test_context_input():
    features, _ = make_batch()
    layer = ContextInput(F.DENSE_FEATURES, ["item_price"], 10, 3, VOCAB_SIZES[F.SCENARIO], 2)
    out = layer(features)
    assert out.shape == (6, len(F.DENSE_FEATURES) + 3 + 2) == (6, layer.output_dim)


def _roundtrip(layer, *args, **kwargs):
    config = json.loads(json.dumps(layer.get_config()))
    clone = type(layer).from_config(config)
    out = layer(*args, **kwargs)
    clone(*args, **kwargs)
    clone.set_weights(layer.get_weights())
    tf.nest.map_structure(np.testing.assert_array_equal, clone(*args, **kwargs), out)
    assert clone.get_config() == layer.get_config()


def test_get_config_round_trips():
    features, _ = make_batch()
    x, ages, mask = _seq()
    target = tf.ones((B, D))
    _roundtrip(ItemEmbedding(VOCAB_SIZES, DIMS), {f: tf.reshape(features[f], [-1]) for f in F.ITEM_ID_FEATURES})
    _roundtrip(SequenceInput("cart", 3), features)
    _roundtrip(ContextInput(F.DENSE_FEATURES[:3], ["item_price"], 10, 2), features)
    _roundtrip(PositionalEmbedding(L, "learned", True), x, ages)
    _roundtrip(MultiHeadAttention(H, 0.1), x, x, mask)
    _roundtrip(AttentionBlock(H, 16, 0.1), x, x, mask)
    _roundtrip(AttentionBlock(H, 16, 0.1, residual_dropout=False), x, x, mask)
    _roundtrip(EncoderBlock(H, 16, 0.1), x, mask)
    _roundtrip(TargetAttentionDecoder(H, 16, 0.1, 2), target, x, mask)
    _roundtrip(DeepInterestTransformer(L, H, 16, 0.1, 1, 1, "sincos", False), x, ages, mask, target)
    _roundtrip(MLP([4], 0.1, 2), x[:, 0])
    _roundtrip(MMoE(["click", "order"], num_experts=2, expert_units=[4], gate_units=[3], tower_units=[2]), x[:, 0])
    _roundtrip(DINAttention(L, [6, 3]), x, ages, mask, target)
    _roundtrip(DINAttention(L, [6, 3], normalize=True), x, ages, mask, target)
    _roundtrip(DeepInterestTransformer(L, H, 16, 0.1, pooling="din", attention_units=[6]), x, ages, mask, target)
    _roundtrip(BiasTower("neighboring", [4], 2, VOCAB_SIZES[F.CATEGORY_ID]), features)
    _roundtrip(BiasTower("all", [4], 2, VOCAB_SIZES[F.CATEGORY_ID], neighbors="same_category"), features)
    _roundtrip(BiasTower("all", [4], 2, VOCAB_SIZES[F.CATEGORY_ID], combine="examination"), features)


def test_din_attention_pools_real_elements_and_shares_targets():
    x, ages, mask = _seq()
    layer = DINAttention(L, [6, 3])
    target = tf.constant(np.random.default_rng(2).normal(size=(B, D)), tf.float32)
    out = layer(x, ages, mask, target)
    assert out.shape == (B, D) and (out.numpy()[0] == 0).all()  # empty row
    np.testing.assert_array_equal(layer(_scramble_padding(x, mask), ages, mask, target), out)
    targets = tf.stack([target, target * 2.0], axis=1)  # two candidates per row
    shared = layer.call_shared(x, ages, mask, targets).numpy()
    np.testing.assert_allclose(shared[:, 0], out, atol=1e-6)
    np.testing.assert_allclose(shared[:, 1], layer(x, ages, mask, target * 2.0), atol=1e-6)


def test_normalized_din_attention_is_a_softmax_over_real_elements():
    x, ages, mask = _seq()
    target = tf.constant(np.random.default_rng(2).normal(size=(B, D)), tf.float32)
    _, weights = DINAttention(L, [6, 3], normalize=True).pool(x, mask, target[:, tf.newaxis, :])
    weights = weights.numpy()[:, 0, :]
    real = mask.numpy()
    assert (weights[~real] == 0).all() and (weights[real] > 0).all()
    np.testing.assert_allclose(weights.sum(axis=1), real.any(axis=1).astype(np.float32), atol=1e-6)  # empty row: 0


@pytest.mark.parametrize("encoder_blocks", [0, 1])
def test_transformer_with_din_pooling_ignores_padding_and_shares_targets(encoder_blocks):
    x, ages, mask = _seq()
    target = tf.constant(np.random.default_rng(2).normal(size=(B, D)), tf.float32)
    layer = DeepInterestTransformer(L, H, 16, 0.0, encoder_blocks=encoder_blocks, pooling="din")
    out, weights = layer(x, ages, mask, target, return_attention_scores=True)
    assert out.shape == (B, D) and (out.numpy()[0] == 0).all()  # empty row
    assert weights.shape == (B, 1, L)
    np.testing.assert_allclose(weights.numpy().sum(axis=-1)[:, 0], mask.numpy().any(axis=1), atol=1e-6)
    scrambled = layer(_scramble_padding(x, mask), _scramble_padding(ages, mask), mask, target)
    np.testing.assert_allclose(scrambled, out, atol=1e-6)
    targets = tf.stack([target, target * 2.0], axis=1)
    shared = layer.call_shared(x, ages, mask, targets).numpy()
    np.testing.assert_allclose(shared[:, 0], out, atol=1e-5)
    np.testing.assert_allclose(shared[:, 1], layer(x, ages, mask, target * 2.0), atol=1e-5)
    assert not any("decoder" in w.name for w in layer.weights)  # the decoder is replaced, not kept


def test_transformer_rejects_an_unknown_pooling():
    with pytest.raises(ValueError, match="pooling"):
        DeepInterestTransformer(L, H, 16, pooling="mean")
