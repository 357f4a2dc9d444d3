"""models/dropout.py: Keras' Dropout with a mask from 16-bit halves of random integers."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from models.dropout import Dropout

RATE = 0.1
DROPPED = 6554 / 65536  # round(0.1 * 2^16) / 2^16: the probability an element is dropped


def _ones(shape):
    return tf.ones(shape, tf.float32)


def test_drops_at_the_rate_and_scales_the_rest_so_the_expectation_is_unchanged():
    keras.utils.set_random_seed(0)
    x = tf.random.normal([256, 4, 50, 50])
    y = Dropout(RATE)(x, training=True).numpy()
    kept = y != 0
    # 2.56 M elements: the kept fraction's sd is 1.9e-4
    assert kept.mean() == pytest.approx(1 - DROPPED, abs=1e-3)
    np.testing.assert_allclose(y[kept], x.numpy()[kept] / (1 - DROPPED), rtol=1e-6)
    # every element's expectation is x: the mean of many draws of ones is 1
    ones = Dropout(RATE)(_ones([2_000_000]), training=True).numpy()
    assert ones.mean() == pytest.approx(1.0, abs=2e-3)
    # both 16-bit halves of each draw are used, independently: neighbours are not dropped together
    pairs = kept.reshape(-1, 2)
    both = np.mean(~pairs[:, 0] & ~pairs[:, 1])
    assert both == pytest.approx(DROPPED ** 2, abs=1e-3)


def test_the_gradient_is_the_same_mask():
    keras.utils.set_random_seed(1)
    x = tf.Variable(tf.random.normal([64, 40]))
    with tf.GradientTape() as tape:
        y = Dropout(RATE)(x, training=True)
        loss = tf.reduce_sum(y * 3.0)
    gradient = tape.gradient(loss, x).numpy()
    np.testing.assert_allclose(gradient, 3.0 * (y.numpy() != 0) / (1 - DROPPED), rtol=1e-6)


def test_at_inference_and_at_rate_zero_it_is_the_identity():
    x = tf.random.normal([8, 6])
    np.testing.assert_array_equal(Dropout(RATE)(x, training=False).numpy(), x.numpy())
    np.testing.assert_array_equal(Dropout(RATE)(x).numpy(), x.numpy())  # no training flag: Keras' phase
    np.testing.assert_array_equal(Dropout(0.0)(x, training=True).numpy(), x.numpy())


def test_reproducible_under_the_global_seed_and_fresh_at_every_step():
    def masks():
        keras.utils.set_random_seed(7)
        layer = Dropout(RATE)

        @tf.function
        def step():
            return layer(_ones([32, 50]), training=True)

        return [step().numpy() != 0 for _ in range(2)]

    first, second = masks(), masks()
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert not np.array_equal(first[0], first[1])  # a new mask each step, not one frozen in the graph


@pytest.mark.parametrize("shape, noise_shape", [([500, 7], None), ([400, 6], [400, 1])])
def test_an_odd_width_or_a_noise_shape_runs_keras_dropout(shape, noise_shape):
    keras.utils.set_random_seed(3)
    y = Dropout(0.5, noise_shape=noise_shape)(_ones(shape), training=True).numpy()
    assert set(np.unique(y)) == {0.0, 2.0}  # Keras' exact scale 1 / (1 - 0.5), not the 16-bit one
    if noise_shape:  # whole rows dropped together
        assert all(len(set(row)) == 1 for row in y)
    assert (y == 0).mean() == pytest.approx(0.5, abs=0.05)


def test_its_config_is_keras_dropouts():
    layer = Dropout(0.25, noise_shape=[None, 1], seed=5, name="drop")
    reference = keras.layers.Dropout(0.25, noise_shape=[None, 1], seed=5, name="drop")
    assert layer.get_config() == reference.get_config()
    assert Dropout.from_config(layer.get_config()).rate == 0.25
