import json

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from models import features as F
from models.export import export_serving_module, save
from models.model import RankingModel, build_model, compile_model
from models.network import SCORE, RankingNetwork
from tests.models.batch import SEQUENCE_LENGTHS, VOCAB_SIZES, make_batch, rank_batch, small_config
from tests.saved_models import saved_variables

TASKS = ["click", "cart", "order"]


def build_dmt(config, vocab_sizes):
    return build_model(config, vocab_sizes)


def build_dnn_base(config, vocab_sizes):
    return build_model(small_config("dnn-base", tasks=config.tasks), vocab_sizes)


@pytest.fixture(scope="module")
def model():
    config = small_config(tasks=TASKS, fusion={"type": "weighted", "weights": {"click": 3.0, "cart": 0.5, "order": 1.5}},
                          sequence_encoder={"dropout": 0.1}, use_scenario=True)
    m = build_dmt(config, VOCAB_SIZES)
    m(make_batch()[0])
    return m


def _numpy(outputs):
    return {k: v.numpy() for k, v in outputs.items()}


def test_outputs_shapes_and_composition(model):
    features, _ = make_batch()
    assert isinstance(model.network, RankingNetwork) and model.bias_tower.name == "bias_tower"
    probabilities = _numpy(model(features, training=False))
    logits = _numpy(model.utility_logits(features))
    y_b = model.bias_logit(features).numpy()
    serving = _numpy(model.serving_outputs(features))
    assert set(probabilities) == set(TASKS) and set(serving) == set(TASKS) | {SCORE}
    for task in TASKS:
        assert probabilities[task].shape == logits[task].shape == serving[task].shape == (6, 1)
        np.testing.assert_allclose(probabilities[task], tf.sigmoid(logits[task] + y_b), rtol=1e-6)  # eq. 5
        np.testing.assert_allclose(serving[task], tf.sigmoid(logits[task]), rtol=1e-6)  # eq. 6
    w = model.model_config.fusion["weights"]
    expected = sum(w[t] * serving[t] for t in TASKS) / sum(w.values())
    np.testing.assert_allclose(serving[SCORE], expected, rtol=1e-6)
    assert not np.allclose(y_b, 0.0)


def test_padding_and_tail_never_change_outputs(model):
    base, _ = make_batch()
    other, _ = make_batch(tail_seed=99, tail_extra=4)  # other values beyond max length, and more of them
    assert other["click_sequence_item_id"].dense_shape[1] > base["click_sequence_item_id"].dense_shape[1]
    for fn in (lambda x: model(x, training=False), model.serving_outputs,
               model.network.interest_vectors):
        tf.nest.map_structure(np.testing.assert_array_equal, _numpy(fn(other)), _numpy(fn(base)))


def test_sequences_matter_and_empty_rows_are_finite(model):
    features, _ = make_batch()
    vectors = _numpy(model.network.interest_vectors(features))
    for s, v in vectors.items():
        assert v.shape == (6, model.model_config.d_model)
        assert (v[0] == 0).all() and np.abs(v[1:]).sum(1).min() > 0  # row 0 is empty
    empty, _ = make_batch(lengths={s: [0] * 6 for s in SEQUENCE_LENGTHS})
    for outputs in (model(empty, training=False), model.serving_outputs(empty)):
        assert all(np.isfinite(v.numpy()).all() for v in outputs.values())
    # changing a real element changes the prediction
    changed, _ = make_batch(seed=0, lengths=None)
    ids = changed["click_sequence_item_id"]
    changed["click_sequence_item_id"] = tf.SparseTensor(ids.indices, (ids.values + 1) % VOCAB_SIZES[F.ITEM_ID],
                                                        ids.dense_shape)
    assert not np.allclose(model.serving_outputs(changed)[SCORE][1:], model.serving_outputs(features)[SCORE][1:])


def test_gate_weights(model):
    gates = _numpy(model.gate_weights(make_batch()[0]))
    assert set(gates) == set(TASKS)
    for g in gates.values():
        assert g.shape == (6, model.model_config.mixture["num_experts"])
        np.testing.assert_allclose(g.sum(-1), 1.0, rtol=1e-6)


def test_bias_variables_stay_in_the_bias_tower(model):
    bias_vars = model.bias_tower.variables
    assert bias_vars and all("bias_tower" in v.name for v in bias_vars)
    others = [v for v in model.variables if not any(v is b for b in bias_vars)]
    assert others and not any("bias_tower" in v.name for v in others)
    module = export_serving_module(model)
    assert module.variables and not any("bias_tower" in v.name for v in module.variables)
    assert len(module.variables) == len(model.network.variables)


def test_serving_module_matches_model(model):
    features, _ = make_batch()
    module = export_serving_module(model)
    tf.nest.map_structure(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5),
                          _numpy(module(features)), _numpy(model.serving_outputs(features)))


def _serialize(features, names):
    """tf.Examples carrying the transformed features (like a Transform-wrapping signature would)."""
    examples = []
    batch = {n: (tf.sparse.to_dense(features[n]).numpy() if isinstance(features[n], tf.SparseTensor)
                 else features[n].numpy()) for n in names}
    for r in range(features[F.ITEM_ID].shape[0]):
        feats = {}
        for n in names:
            if isinstance(features[n], tf.SparseTensor):
                cols = features[n].indices.numpy()
                values = batch[n][r, cols[cols[:, 0] == r, 1]]
                feats[n] = tf.train.Feature(int64_list=tf.train.Int64List(value=values))
            elif batch[n].dtype == np.float32:
                feats[n] = tf.train.Feature(float_list=tf.train.FloatList(value=batch[n][r]))
            else:
                feats[n] = tf.train.Feature(int64_list=tf.train.Int64List(value=batch[n][r]))
        examples.append(tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString())
    return tf.constant(examples)


def test_saved_model_round_trip_without_bias_tower(model, tmp_path):
    features, _ = make_batch()
    module = export_serving_module(model)
    specs = module.input_signature()
    parse_spec = {n: tf.io.VarLenFeature(s.dtype) if isinstance(s, tf.SparseTensorSpec)
                  else tf.io.FixedLenFeature([1], s.dtype) for n, s in specs.items()}

    class Wrapper(tf.Module):
        def __init__(self, serving):
            super().__init__()
            self.serving = serving

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def serve_examples(self, serialized):
            return self.serving(tf.io.parse_example(serialized, parse_spec))

    wrapper = Wrapper(module)
    path = str(tmp_path / "serving")
    save(wrapper, path, {"serving_default": wrapper.serve_examples})
    with open(f"{path}/saved_model.pb", "rb") as f:  # object graph, variable names, functions
        saved = f.read()
    assert b"immoe" in saved and b"bias_tower" not in saved
    # no Keras layer traces (models/export.py `save`): they cost most of the logged model's save
    assert b"call_and_return_conditional_losses" not in saved
    loaded = tf.saved_model.load(path)
    restored = saved_variables(loaded.serving.network)
    assert len(restored) == len(module.variables)
    assert all("bias_tower" not in v.name for v in restored) and any("immoe" in v.name for v in restored)
    expected = _numpy(model.serving_outputs(features))
    got = _numpy(loaded.signatures["serving_default"](_serialize(features, list(specs))))
    assert set(got) == set(expected)
    tf.nest.map_structure(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5), got, expected)
    reloaded = _numpy(loaded.serving.serve({n: features[n] for n in specs}))
    tf.nest.map_structure(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5), reloaded, expected)


def test_model_and_network_get_config(model):
    config = json.loads(json.dumps(model.get_config()))
    clone = RankingModel.from_config(config)
    assert clone.model_config == model.model_config
    network_config = json.loads(json.dumps(model.network.get_config()))
    assert RankingNetwork.from_config(network_config).model_config == model.model_config


@pytest.mark.parametrize("overrides", [
    {"sequence_encoder": {"positional": "none"}, "bias_features": "none"},
    {"sequence_encoder": {"positional": "sincos", "recency": False}, "bias_features": "position_index"},
    {"sequence_encoder": {"positional": "learned"}, "bias_features": "position_page", "sequences": {"click": 4}},
    {"sequence_encoder": {"positional": "learned", "encoder_blocks": 0, "decoder_blocks": 2},
     "bias_features": "neighboring", "use_dense_features": False, "use_target_embedding": False},
    {"sequence_encoder": {"pooling": "din", "attention_units": [8]}, "bias_features": "all"},
])
def test_options_build(overrides):
    m = build_dmt(small_config(**overrides), VOCAB_SIZES)
    features, _ = make_batch()
    out = m(features, training=True)
    assert set(out) == {"click", "order"} and all(np.isfinite(v.numpy()).all() for v in out.values())
    assert (m.bias_tower is None) == (overrides["bias_features"] == "none")
    serving = m.serving_outputs(features)
    if m.bias_tower is None:
        np.testing.assert_allclose(m(features, training=False)["click"], serving["click"], rtol=1e-6)


def _toy_dataset(n=64, batch_size=16, seed=3):
    """click = item_price > 0; order = item id even; all labels present."""
    features, labels = make_batch(n, seed=seed)
    labels[F.CLICK] = tf.cast(features[F.ITEM_PRICE] > 0, tf.float32)
    labels[F.ORDER] = tf.cast(features[F.ITEM_ID] % 2 == 0, tf.float32)
    return tf.data.Dataset.from_tensor_slices((features, labels)).batch(batch_size)


@pytest.mark.parametrize("builder", [build_dmt, build_dnn_base])
def test_fit_lowers_the_loss(builder):
    keras.utils.set_random_seed(0)
    m = compile_model(builder(small_config(), VOCAB_SIZES), keras.optimizers.Adam(1e-2))
    history = m.fit(_toy_dataset(), epochs=5, verbose=0).history  # 4 steps per epoch
    assert {"loss", "click_loss", "order_loss", "click_auc", "order_auc"} <= set(history)
    assert history["loss"][-1] < 0.8 * history["loss"][0]
    if m.bias_tower is not None:  # variables first created inside fit's tf.function
        assert all("bias_tower" in v.name for v in m.bias_tower.variables)
        assert not any("bias_tower" in v.name for v in m.network.variables)


def test_built_for_training_fit_traces_its_step_once_and_trains_the_same():
    """What the Trainer does before `fit`: without it the first step creates the optimizer's slots
    and the metric trackers, and a tf.function creating variables is traced twice."""
    results = {}
    for prebuilt in (False, True):
        keras.utils.set_random_seed(0)
        m = compile_model(build_dnn_base(small_config(), VOCAB_SIZES), keras.optimizers.Adam(1e-2))
        features, labels = make_batch(16, seed=4)
        if prebuilt:
            m.build_for_training(features, labels)
            assert m.optimizer.variables() and not any(metric.result() for metric in m.metrics)
        history = m.fit(_toy_dataset(), epochs=2, verbose=0).history
        results[prebuilt] = (m.train_function.experimental_get_tracing_count(), history["loss"],
                             [v.numpy() for v in m.trainable_variables])
    assert results[False][0] == 2 and results[True][0] == 1
    np.testing.assert_allclose(results[True][1], results[False][1], rtol=1e-6)
    for prebuilt, plain in zip(results[True][2], results[False][2]):
        np.testing.assert_allclose(prebuilt, plain, rtol=1e-5, atol=1e-7)


def test_dnn_base_has_the_same_api():
    m = build_model(small_config("dnn-base"), VOCAB_SIZES)
    features, _ = make_batch()
    assert m.network.mixture.registered_name == "shared_bottom" and m.bias_tower is None
    out, logits, serving = m(features), m.utility_logits(features), m.serving_outputs(features)
    for task in ("click", "order"):
        np.testing.assert_allclose(out[task], tf.sigmoid(logits[task]), rtol=1e-6)
    module = export_serving_module(m)
    assert not any("sequence" in name for name in module.input_signature())
    tf.nest.map_structure(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5),
                          _numpy(module(features)), _numpy(serving))
    assert RankingModel.from_config(m.get_config()).network.sequence_names == []


@pytest.mark.parametrize("builder", [build_dmt, build_dnn_base])
def test_rank_shares_the_encoder_and_equals_per_example_scoring(model, builder):
    m = model if builder is build_dmt else builder(model.model_config, VOCAB_SIZES)
    if builder is build_dnn_base:
        m(rank_batch(6, 4)[1])
    _assert_rank_equals_per_example(m, with_sequences=builder is build_dmt)


def test_din_pooling_serves_through_rank():
    m = build_dmt(small_config(sequence_encoder={"pooling": "din"}), VOCAB_SIZES)
    m(make_batch()[0])
    assert any("_interest_transformer/activation_unit/" in v.name for v in m.network.variables)
    assert not any("/decoder/" in v.name for v in m.network.variables)
    _assert_rank_equals_per_example(m, with_sequences=True)


def _assert_rank_equals_per_example(m, with_sequences):
    requests, num_candidates = 6, 4  # make_batch's rows include empty and over-long sequences
    per_request, per_example = rank_batch(requests, num_candidates)
    module = export_serving_module(m)
    ranked = _numpy(module.serve_rank({n: per_request[n] for n in module.input_signature()},
                                      tf.constant(num_candidates)))
    expected = _numpy(module(per_example))
    assert set(ranked) == set(expected)
    for name, value in ranked.items():
        assert value.shape == (requests, num_candidates)
        np.testing.assert_allclose(value.reshape(-1), expected[name].reshape(-1), atol=1e-5, rtol=0)
    # the candidates of one request differ, and so do the contexts of different requests
    assert np.ptp(ranked[SCORE], axis=1).min() > 0
    if with_sequences:
        assert not np.allclose(ranked[SCORE][0], ranked[SCORE][3])


def test_decoder_scores_many_targets_over_one_memory(model):
    transformer = model.network.interest["click"]
    features, _ = make_batch(batch_size=6)
    ids, mask = model.network.sequence_inputs["click"](features)
    sequence = model.network.item_embedding({f: ids[f] for f in F.ITEM_ID_FEATURES})
    targets = tf.random.stateless_normal([6, 5, model.model_config.d_model], seed=[1, 2])
    shared = transformer.call_shared(sequence, ids[F.SEQUENCE_AGE], mask, targets).numpy()
    for t in range(5):
        one = transformer(sequence, ids[F.SEQUENCE_AGE], mask, targets[:, t, :]).numpy()
        np.testing.assert_allclose(shared[:, t, :], one, atol=1e-5, rtol=0)
    assert (shared[0] == 0).all()  # row 0 has no click sequence


def test_cross_layers_feed_the_mixture_and_serve_through_rank():
    m = build_dmt(small_config(cross_layers=2, bias_features="none"), VOCAB_SIZES)
    features, _ = make_batch()
    out = m(features, training=False)
    assert all(any(f"/{name}/" in v.name for v in m.network.variables) for name in ("cross_0", "cross_1"))
    # the cross layers are in the path: zeroing their kernels changes the outputs (x_0 * b + x)
    cross = [layer for layer in m.network.cross]
    saved = [layer.get_weights() for layer in cross]
    for layer in cross:
        layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
    assert not np.allclose(m(features, training=False)["click"], out["click"])
    for layer, weights in zip(cross, saved):
        layer.set_weights(weights)
    requests, num_candidates = 3, 4
    per_request, per_example = rank_batch(requests, num_candidates)
    module = export_serving_module(m)
    ranked = _numpy(module.serve_rank({n: per_request[n] for n in module.input_signature()},
                                      tf.constant(num_candidates)))
    np.testing.assert_allclose(ranked[SCORE].reshape(-1), _numpy(module(per_example))[SCORE].reshape(-1),
                               atol=1e-5, rtol=0)
