"""models.layer_norm: Keras' LayerNormalization with a closed-form gradient."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from models.layer_norm import LayerNormalization


def _pair(shape, epsilon, axis=-1, seed=0):
    """(Keras' layer, funnel's layer) built on `shape` with the same random gamma and beta."""
    rng = np.random.default_rng(seed)
    layers = (keras.layers.LayerNormalization(axis=axis, epsilon=epsilon),
              LayerNormalization(axis=axis, epsilon=epsilon))
    gamma, beta = None, None
    for layer in layers:
        layer.build(shape)
        gamma = rng.normal(1.0, 0.5, layer.gamma.shape).astype(np.float32) if gamma is None else gamma
        beta = rng.normal(0.0, 0.5, layer.beta.shape).astype(np.float32) if beta is None else beta
        layer.gamma.assign(gamma)
        layer.beta.assign(beta)
    return layers


def _value_and_gradients(layer, x):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = layer(x)
        # a loss whose gradient differs per element, so every term of the backward pass matters
        loss = tf.reduce_sum(tf.sin(out) * out)
    grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
    return [out.numpy()] + [g.numpy() for g in grads]


@pytest.mark.parametrize("shape,epsilon", [((64, 50, 80), 1.001e-5), ((32, 17), 1e-3), ((8, 3, 5, 6), 1e-6)])
def test_values_and_gradients_equal_keras(shape, epsilon):
    keras_layer, layer = _pair(shape, epsilon)
    x = np.random.default_rng(1).normal(0.3, 2.0, shape).astype(np.float32)
    expected, actual = _value_and_gradients(keras_layer, x), _value_and_gradients(layer, x)
    for name, e, a in zip(("output", "dx", "dgamma", "dbeta"), expected, actual):
        np.testing.assert_allclose(a, e, rtol=2e-4, atol=2e-5 * np.abs(e).max(), err_msg=name)


def test_hand_computed_forward():
    layer = LayerNormalization(epsilon=0.0)
    layer.build((1, 4))
    layer.gamma.assign([1.0, 2.0, 1.0, 1.0])
    layer.beta.assign([0.0, 0.0, 0.5, 0.0])
    out = layer(tf.constant([[1.0, 2.0, 3.0, 6.0]])).numpy()
    # mean 3, variance (4 + 1 + 0 + 9) / 4 = 3.5
    y = (np.array([1.0, 2.0, 3.0, 6.0]) - 3.0) / np.sqrt(3.5)
    np.testing.assert_allclose(out[0], y * [1, 2, 1, 1] + [0, 0, 0.5, 0], rtol=1e-6)


def test_gradient_matches_finite_differences():
    layer = _pair((3, 5), 1e-3)[1]
    x = np.random.default_rng(2).normal(size=(3, 5)).astype(np.float64)
    theoretical, numerical = tf.test.compute_gradient(lambda v: layer(tf.cast(v, tf.float32)), [x])
    np.testing.assert_allclose(theoretical[0], numerical[0], atol=2e-2)


def test_training_graph_has_no_batch_norm_kernels():
    """The point of the layer: no FusedBatchNorm(Grad) in the step (and Keras' layer has them)."""
    def op_types(layer):
        @tf.function
        def step(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(layer(x) ** 2)
            return tape.gradient(loss, [x, layer.gamma, layer.beta])

        graph = step.get_concrete_function(tf.TensorSpec((16, 10, 8), tf.float32)).graph
        types = {op.type for op in graph.get_operations()}
        for function in graph.as_graph_def().library.function:
            types |= {node.op for node in function.node_def}
        return types

    keras_layer, layer = _pair((16, 10, 8), 1.001e-5)
    assert any(t.startswith("FusedBatchNorm") for t in op_types(keras_layer))
    assert not any(t.startswith("FusedBatchNorm") for t in op_types(layer))


def test_other_axes_and_options_run_keras_code():
    x = np.random.default_rng(3).normal(size=(4, 6, 5)).astype(np.float32)
    keras_layer, layer = _pair(x.shape, 1e-3, axis=1)
    np.testing.assert_allclose(layer(x).numpy(), keras_layer(x).numpy(), rtol=1e-6)
    plain = LayerNormalization(center=False, scale=False)
    np.testing.assert_allclose(plain(x).numpy(), keras.layers.LayerNormalization(center=False, scale=False)(x).numpy(),
                               rtol=1e-6)


def test_config_and_weights_are_keras_layers():
    layer = LayerNormalization(epsilon=1.001e-5, name="ffn_norm")
    layer.build((2, 7))
    assert [w.name.split("/")[-1] for w in layer.weights] == ["gamma:0", "beta:0"]
    clone = LayerNormalization.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
