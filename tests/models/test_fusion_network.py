"""The personalised fusion network (models/fusion_network.py): its gate and score against
hand-computed values, its per-request list loss, the alternate training (each part's steps leave
the other's weights alone; the period honoured), its config and its export into both serving
signatures."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from models import features as F
from models.config import ModelConfig
from models.export import export_serving_module
from models.fusion import ProductFusion
from models.fusion_network import NetworkFusion, UserStateGate, list_loss
from models.model import build_model, compile_model
from models.network import SCORE
from tests.models.batch import VOCAB_SIZES, make_batch, rank_batch, small_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

A, B = "user_clicks_7d", "user_orders_365d"  # two of F.USER_DENSE_FEATURES


def _state(a, b, scenario=None):
    features = {A: tf.constant([[v] for v in a], tf.float32), B: tf.constant([[v] for v in b], tf.float32)}
    if scenario is not None:
        features[F.SCENARIO] = tf.constant([[s] for s in scenario], tf.int64)
    return features


def test_untrained_gate_gives_the_initial_weights_and_the_product_fusion():
    fusion = NetworkFusion([F.CLICK, F.ORDER], [F.CLICK, F.ORDER], weights={F.CLICK: 1.0, F.ORDER: 3.0},
                           features=[A, B], scenario_vocabulary=3, hidden_units=[4])
    state = _state([0.5, -2.0], [1.0, 3.0], scenario=[0, 2])
    np.testing.assert_allclose(fusion.gate(state).numpy(), [[1.0, 3.0], [1.0, 3.0]], rtol=1e-6)
    p = {F.CLICK: tf.constant([[0.2], [0.05]]), F.ORDER: tf.constant([[0.01], [0.3]])}
    static = ProductFusion([F.CLICK, F.ORDER], [F.CLICK, F.ORDER], weights={F.CLICK: 1.0, F.ORDER: 3.0})
    np.testing.assert_allclose(fusion(p, features=state).numpy(), static(p).numpy(), rtol=1e-5)
    np.testing.assert_allclose(static(p).numpy(), [[0.2 * 0.01 ** 3], [0.05 * 0.3 ** 3]], rtol=1e-5)


def test_gate_and_score_against_hand_computed_values():
    fusion = NetworkFusion([F.CLICK, F.ORDER], [F.CLICK, F.ORDER], features=[A, B], scenario=False, hidden_units=[])
    state = _state([1.0, 0.0], [0.0, 2.0])
    fusion.gate(state)
    # logits z = x @ K + b, K = [[1, -1], [0, 0.5]], b = [0, 0]: row 1 z = [1, -1]; row 2 z = [0, 1]
    fusion.gate.logits.set_weights([np.array([[1.0, -1.0], [0.0, 0.5]], np.float32), np.zeros(2, np.float32)])
    w1 = 2 * np.exp([1.0, -1.0]) / np.exp([1.0, -1.0]).sum()  # total 2 (weights 1 and 1)
    w2 = 2 * np.exp([0.0, 1.0]) / np.exp([0.0, 1.0]).sum()
    np.testing.assert_allclose(fusion.gate(state).numpy(), [w1, w2], rtol=1e-5)
    p = {F.CLICK: tf.constant([[0.2], [0.1]]), F.ORDER: tf.constant([[0.02], [0.05]])}
    expected = [[0.2 ** w1[0] * 0.02 ** w1[1]], [0.1 ** w2[0] * 0.05 ** w2[1]]]
    np.testing.assert_allclose(fusion(p, features=state).numpy(), expected, rtol=1e-5)
    # personalised: the order-heavy second user puts the order output first where the first would not
    assert w2[1] > w2[0] and w1[0] > w1[1]


def test_list_loss_against_hand_computed_values():
    # request 7: an order (gain 10), a click (1), nothing (0); request 9: a click and nothing
    weights = tf.constant([[1.0, 1.0], [2.0, 0.0], [1.0, 1.0], [0.5, 1.5], [1.0, 1.0]])
    logs = tf.constant([[-1.0, -2.0], [-0.5, -4.0], [-2.0, -3.0], [-1.5, -1.0], [-0.1, -0.2]])
    gains = tf.constant([10.0, 1.0, 0.0, 1.0, 0.0])
    requests = tf.constant([7, 7, 7, 9, 9], tf.int64)
    s = weights.numpy() @ logs.numpy().T
    ce_order = np.log(np.exp(s[0, [0, 1, 2]]).sum()) - s[0, 0]  # its list: itself and its request's lower rows
    ce_click = np.log(np.exp(s[1, [1, 2]]).sum()) - s[1, 1]  # itself and the unclicked row of its request
    ce_other = np.log(np.exp(s[3, [3, 4]]).sum()) - s[3, 3]  # request 9's click: not request 7's rows
    expected = (10 * ce_order + 1 * ce_click + 1 * ce_other) / 12
    assert float(list_loss(weights, logs, gains, requests)) == pytest.approx(expected, rel=1e-5)
    # without a lower row in its request an example anchors nothing, whatever the rest of the batch
    assert float(list_loss(weights, logs, tf.constant([1.0, 1.0, 1.0, 0.0, 0.0]),
                           tf.constant([1, 1, 1, 2, 2]))) == 0.0
    alone = tf.constant([1, 2, 3, 4, 5], tf.int64)  # every row its own request: no lists at all
    assert float(list_loss(weights, logs, gains, alone)) == 0.0


def test_the_loss_needs_the_request_key():
    fusion = NetworkFusion([F.CLICK, F.ORDER], [F.CLICK, F.ORDER], features=[A, B], scenario=False)
    p = {F.CLICK: tf.constant([[0.2], [0.1]]), F.ORDER: tf.constant([[0.02], [0.05]])}
    labels = {F.CLICK: tf.constant([[1.0], [0.0]]), F.ORDER: tf.constant([[0.0], [0.0]])}
    with pytest.raises(ValueError, match="request_key"):
        fusion.loss(p, _state([1.0, 0.0], [0.0, 2.0]), labels)
    state = {**_state([1.0, 0.0], [0.0, 2.0]), F.REQUEST_KEY: tf.constant([[5], [5]], tf.int64)}
    assert float(fusion.loss(p, state, labels)) > 0.0


def _model(period=1, optimizer=None, **fusion):
    """DNN(Base) with the fusion network: no sequences to trace, so fit and export stay fast (the
    preset with its sequences: tests/models/test_presets.py)."""
    keras.utils.set_random_seed(0)
    config = small_config("dnn-base", fusion={"type": "network", "period": period, "learning_rate": 0.05, **fusion})
    return compile_model(build_model(config, VOCAB_SIZES), optimizer or keras.optimizers.Adam(1e-2))


def _with_requests(batch, size=4):
    """(features with `request_key`: consecutive rows, `size` to a request, as the Trainer's
    request-grouped batches have them, labels)."""
    features, labels = batch
    n = int(features[F.ITEM_ID].shape[0])
    return {**features, F.REQUEST_KEY: tf.constant((np.arange(n) // size)[:, None], tf.int64)}, labels


def _values(variables):
    return [v.numpy().copy() for v in variables]


def _changed(before, variables):
    return [not np.array_equal(a, v.numpy()) for a, v in zip(before, variables)]


def _dataset(batches):
    """`batches` as fit gets the Trainer's files: a dataset of unknown length."""
    return tf.data.Dataset.from_generator(lambda: iter(batches),
                                          output_signature=tf.data.Dataset.from_tensors(batches[0]).element_spec)


class GateWatch(keras.callbacks.Callback):
    """`changed`: per batch of fit, whether the fusion network's gate weights changed (False
    while the gate has no weights yet)."""

    def __init__(self):
        super().__init__()
        self.changed = []

    def on_train_batch_begin(self, batch, logs=None):
        self.before = _values(self.model.network.fusion.trainable_variables)

    def on_train_batch_end(self, batch, logs=None):
        variables = self.model.network.fusion.trainable_variables
        self.changed.append(bool(self.before) and any(_changed(self.before, variables)))


def test_fusion_steps_leave_the_main_network_and_main_steps_the_fusion_network_unchanged():
    model = _model()
    features, labels = _with_requests(make_batch(16, seed=3), size=8)
    labels = {t: labels[t] for t in model.tasks}
    model(features)
    logits = model.network(features, training=False)
    model._fusion_step(features, labels, logits)  # builds the gate
    fusion_vars, main_vars = model.network.fusion.trainable_variables, model.main_variables()
    assert fusion_vars and main_vars and not {v.ref() for v in fusion_vars} & {v.ref() for v in main_vars}
    # the fusion loss does not reach the main network, even without the step's own stop_gradient
    with tf.GradientTape() as tape:
        served = model.network.heads(model.network(features, training=True))
        loss = model.network.fusion.loss(served, features, labels)
    assert all(g is None for g in tape.gradient(loss, main_vars))

    main_before, fusion_before = _values(main_vars), _values(fusion_vars)
    stepped, _ = model._fusion_step(features, labels, logits)  # main iterations 0: due
    assert bool(stepped) and int(model.fusion_optimizer.iterations) == 2
    assert not any(_changed(main_before, main_vars))
    assert any(_changed(fusion_before, fusion_vars))

    main_before, fusion_before = _values(main_vars), _values(fusion_vars)
    model._main_step(features, labels, None)
    assert not any(_changed(fusion_before, fusion_vars))
    assert any(_changed(main_before, main_vars))


@pytest.fixture(scope="module")
def trained():
    """A model fitted on 7 batches with period 3, and per batch whether the gate's weights changed."""
    model = _model(period=3)
    batches = [_with_requests(make_batch(32, seed=s)) for s in range(7)]
    watch = GateWatch()
    history = model.fit(_dataset(batches), verbose=0, callbacks=[watch]).history
    return model, watch.changed, history


def test_alternation_period_is_honoured_in_fit(trained):
    model, changed, history = trained
    assert np.isfinite(history["fusion_loss"][0])
    # the gate's variables exist from the first trace on; it steps after batches 3 and 6 only
    assert changed[1:] == [False, True, False, False, True, False]
    assert int(model.fusion_optimizer.iterations) == 2


def test_config_round_trip_and_validation():
    config = ModelConfig.from_dict({"preset": "dmt-fusion"})
    assert config.fusion["type"] == "network" and config.fusion["period"] == 10
    assert ModelConfig.from_dict(config.to_dict()) == config
    assert set(config.fusion["features"]) <= set(F.USER_DENSE_FEATURES)
    for bad in ({"features": ["item_ctr_7d"]}, {"period": 0}, {"gains": {"cart": 1.0}}, {"weights": {"cvr": 1.0}}):
        with pytest.raises(ValueError):
            ModelConfig.from_dict({"preset": "dmt-fusion", "fusion": bad})
    fusion = NetworkFusion([F.CLICK, F.ORDER], [F.CLICK, F.ORDER], features=[A], period=4, scenario_vocabulary=3,
                           gains={F.ORDER: 5.0}, name="fusion")
    again = NetworkFusion.from_config(fusion.get_config())
    assert again.get_config() == fusion.get_config() and again.period == 4 and again.gains == {F.ORDER: 5.0}
    gate = UserStateGate.from_config(fusion.gate.get_config())
    assert gate.get_config() == fusion.gate.get_config() and gate.input_features == [A, F.SCENARIO]


def test_export_serves_the_personalised_score_in_both_signatures(trained, tmp_path):
    model = trained[0]
    module = export_serving_module(model, reference_bias=0.25)
    signature = module.input_signature()
    assert set(model.network.fusion.input_features) <= set(signature)
    tf.saved_model.save(module, str(tmp_path))
    loaded = tf.saved_model.load(str(tmp_path))

    requests, num_candidates = 3, 4
    per_request, per_example = rank_batch(requests, num_candidates)
    served = loaded.serve({n: per_example[n] for n in signature})
    ranked = loaded.serve_rank({n: per_request[n] for n in signature}, tf.constant(num_candidates))
    weights = model.network.fusion.gate(per_example).numpy()
    expected = np.exp(weights[:, :1] * np.log(served[F.CLICK].numpy()) + weights[:, 1:] * np.log(served[F.ORDER].numpy()))
    np.testing.assert_allclose(served[SCORE].numpy(), expected, rtol=1e-4)
    np.testing.assert_allclose(ranked[SCORE].numpy().reshape(-1), expected.reshape(-1), rtol=1e-4)
    # trained, the weights differ by user state, so the score is not the static product's
    assert np.ptp(weights[:, 0]) > 1e-4
    np.testing.assert_allclose(weights.sum(axis=1), 2.0, rtol=1e-5)


def test_a_warm_start_carries_the_gate_over(trained):
    """The Trainer's warm start builds a fresh model as models/trainer.py `_warm_start` does and
    sets the base model's weights (models/warm_start.py): the gate's are among them."""
    from models import warm_start

    model = trained[0]
    features, _ = make_batch(8, seed=9)
    fresh = _model(period=3)
    fresh(features, training=False)
    fresh.serving_outputs(features)
    warm_start.set_weights(fresh, warm_start.get_weights(model))
    np.testing.assert_allclose(fresh.network.fusion.gate(features).numpy(),
                               model.network.fusion.gate(features).numpy(), rtol=1e-6)
    np.testing.assert_allclose(fresh.serving_outputs(features)[SCORE].numpy(),
                               model.serving_outputs(features)[SCORE].numpy(), rtol=1e-5)


def test_with_ema_fit_ends_on_the_main_networks_moving_averages_and_keeps_the_fusions_weights():
    """Keras' optimizer EMA (`trainer: {ema_momentum: m}`): after fit the main network holds the
    main optimizer's moving averages, not its last iterate; the fusion network, which has its
    own optimizer and no average there, keeps its trained weights (fit's swap of every trainable
    variable would fail on them)."""
    batches = [_with_requests(make_batch(32, seed=s)) for s in range(6)]
    dataset = _dataset(batches)
    averaged = _model(period=2, optimizer=keras.optimizers.Adam(1e-2, use_ema=True, ema_momentum=0.5))
    averaged.fit(dataset, verbose=0)
    main, averages = averaged.main_variables(), averaged.optimizer._model_variables_moving_average
    assert len(averages) == len(main) and averaged.network.fusion.trainable_variables
    for variable, average in zip(main, averages):
        np.testing.assert_array_equal(variable.numpy(), average.numpy())
    last_iterate = _model(period=2)
    last_iterate.fit(dataset, verbose=0)
    assert any(not np.allclose(a, b) for a, b in zip(_values(main), _values(last_iterate.main_variables())))
    # the same trajectory (the averages only ride along), so the fusion's weights are the same
    for ours, theirs in zip(averaged.network.fusion.trainable_variables, last_iterate.network.fusion.trainable_variables):
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-4, atol=1e-6)


def test_under_a_strategy_the_gate_is_built_before_fit_and_steps_every_period_with_the_ema():
    """`trainer.distribution` with the fusion network and the optimizer EMA: `build_for_training`
    creates the gate and its optimizer's slots in the strategy's scope (`fit` cannot create them
    with several replicas), fit traces its step once, the gate steps every `period` batches (in
    cross-replica context: models/model.py `_fusion_step`), and fit ends on the main network's
    moving averages. One CPU replica here (TF fixes the devices at start-up); two in
    `test_two_replicas_step_the_gate_every_period_and_keep_its_copies_equal`."""
    batches = [_with_requests(make_batch(32, seed=s)) for s in range(4)]
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        model = _model(period=2, optimizer=keras.optimizers.Adam(1e-2, use_ema=True, ema_momentum=0.5))
        model.build_for_training(*batches[0])
    gate = model.network.fusion.trainable_variables
    assert gate and len(model.fusion_optimizer.variables()) == 1 + 2 * len(gate)  # iterations, Adam's m and v
    before = _values(gate)
    model.fit(_dataset(batches), verbose=0)
    assert model.train_function.experimental_get_tracing_count() == 1
    assert model.fusion_optimizer.iterations.numpy() == 2  # after batches 2 and 4
    assert all(_changed(before, gate))
    for variable, average in zip(model.main_variables(), model.optimizer._model_variables_moving_average):
        np.testing.assert_array_equal(variable.numpy(), average.numpy())


def test_two_replicas_step_the_gate_every_period_and_keep_its_copies_equal(tmp_path):
    """MirroredStrategy over two logical CPUs (tests/models/two_replica_fusion.py, in its own
    process), period 3: before, the periodic step failed there with a merge_call error."""
    out = tmp_path / "result.json"
    process = subprocess.run([sys.executable, "-m", "tests.models.two_replica_fusion", str(out)], cwd=REPO,
                             capture_output=True, text=True, timeout=600,
                             env={**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert process.returncode == 0, process.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["replicas"] == 2
    assert result["changed"] == [False, False, True, False, False, True, False]
    assert result["fusion_steps"] == 2 and result["replicas_agree"] and np.isfinite(result["fusion_loss"])


def test_a_fusion_step_is_adams_apply_gradients_step():
    """The step in cross-replica context (`update_step` per variable, the gradients made dense)
    moves the gate exactly as the optimizer's own `apply_gradients` does from the same state."""
    model = _model(period=1)
    features, labels = _with_requests(make_batch(16, seed=3), size=8)
    labels = {t: labels[t] for t in model.tasks}
    model.build_for_training(features, labels)
    gate = model.network.fusion.trainable_variables
    start = _values(gate)
    logits = model.network(features, training=False)
    with tf.GradientTape() as tape:
        loss = model.network.fusion.loss(model.network.heads(logits), features, labels)
    gradients = tape.gradient(loss, gate)
    assert any(isinstance(g, tf.IndexedSlices) for g in gradients)  # the scenario table's rows

    stepped, _ = model._fusion_step(features, labels, logits)
    assert bool(stepped)
    ours = _values(gate)
    for variable, value in zip(gate, start):
        variable.assign(value)
    keras.optimizers.Adam(model.network.fusion.learning_rate).apply_gradients(zip(gradients, gate))
    for a, b in zip(ours, _values(gate)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
