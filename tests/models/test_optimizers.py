"""models.optimizers: Keras' Adam, and lazy Adam, whose embedding updates touch the batch's rows only."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from models import optimizers


def _table_and_kernel(seed=0):
    rng = np.random.default_rng(seed)
    return (tf.Variable(rng.normal(size=(6, 3)).astype(np.float32), name="table"),
            tf.Variable(rng.normal(size=(3, 1)).astype(np.float32), name="kernel"))


def _train(optimizer, ids_per_step, seed=0):
    """Steps of a lookup-then-dense loss; the table's gradient is a tf.IndexedSlices of the ids
    looked up (repeated ids included). Returns the two variables and the optimizer."""
    table, kernel = _table_and_kernel(seed)
    optimizer.build([table, kernel])

    @tf.function
    def step(ids):
        with tf.GradientTape() as tape:
            rows = tf.nn.embedding_lookup(table, ids)
            loss = tf.reduce_sum(tf.sin(rows @ kernel) * tf.cast(tf.range(tf.size(ids)) + 1, tf.float32)[:, None])
        gradients = tape.gradient(loss, [table, kernel])
        optimizer.apply_gradients(zip(gradients, [table, kernel]))
        return gradients[0]

    for ids in ids_per_step:
        assert isinstance(step(tf.constant(ids)), tf.IndexedSlices)
    return table, kernel, optimizer


def _slots(optimizer, variable):
    key = optimizer._index_dict[optimizer._var_key(variable)]
    return optimizer._momentums[key].numpy(), optimizer._velocities[key].numpy()


def test_with_every_row_in_every_batch_it_is_adam():
    """Every row in each batch, some twice: the same weights and moments as Keras' Adam (to float32
    rounding: Keras' sparse update decays the whole table, then adds the batch's rows)."""
    steps = [[0, 1, 2, 3, 4, 5, 2], [5, 4, 3, 2, 1, 0, 0, 1]] * 3
    adam = _train(keras.optimizers.Adam(0.05), steps)
    lazy = _train(optimizers.LazyAdam(0.05), steps)
    for a, b in zip(adam[:2], lazy[:2]):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-5, atol=2e-5)
    for a, b in zip(_slots(adam[2], adam[0]), _slots(lazy[2], lazy[0])):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * np.abs(a).max())


def test_rows_outside_the_batch_keep_their_weights_and_moments():
    first, second = [0, 1, 2, 3, 4, 5], [1, 3]  # the second step sees rows 1 and 3 only
    lazy_table, _, lazy = _train(optimizers.LazyAdam(0.05), [first])
    weights, (m, v) = lazy_table.numpy(), _slots(lazy, lazy_table)
    lazy_table, _, lazy = _train(optimizers.LazyAdam(0.05), [first, second])
    adam_table, _, _ = _train(keras.optimizers.Adam(0.05), [first, second])
    absent = [0, 2, 4, 5]
    np.testing.assert_array_equal(lazy_table.numpy()[absent], weights[absent])
    np.testing.assert_array_equal(_slots(lazy, lazy_table)[0][absent], m[absent])
    np.testing.assert_array_equal(_slots(lazy, lazy_table)[1][absent], v[absent])
    assert not np.allclose(lazy_table.numpy()[[1, 3]], weights[[1, 3]])
    # Keras' Adam moves the absent rows by their momentum: what this optimizer is for
    assert np.abs(adam_table.numpy()[absent] - weights[absent]).min() > 1e-4


def test_one_step_by_hand():
    """t = 1: m = (1 - b1) g, v = (1 - b2) g^2, w -= lr sqrt(1 - b2) / (1 - b1) m / (sqrt(v) + eps)."""
    table = tf.Variable(np.zeros((4, 2), np.float32))
    optimizer = optimizers.LazyAdam(0.1, epsilon=1e-3)
    optimizer.build([table])
    g = np.array([[0.5, -2.0]], np.float32)
    optimizer.apply_gradients([(tf.IndexedSlices(tf.constant(g), tf.constant([2]), tf.constant([4, 2])), table)])
    m, v = 0.1 * g, 0.001 * g ** 2
    expected = np.zeros((4, 2), np.float32)
    expected[2] = -0.1 * np.sqrt(1 - 0.999) / (1 - 0.9) * m[0] / (np.sqrt(v[0]) + 1e-3)
    np.testing.assert_allclose(table.numpy(), expected, rtol=1e-5)
    assert int(optimizer.iterations.numpy()) == 1


def test_dense_gradients_train_exactly_as_adam():
    x = tf.constant(np.random.default_rng(3).normal(size=(16, 3)).astype(np.float32))

    def fitted(optimizer):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.layers.Dense(4, activation="relu", input_shape=(3,)), keras.layers.Dense(1)])
        model.compile(optimizer, "mse")
        model.fit(x, tf.reduce_sum(x, 1, keepdims=True), epochs=3, batch_size=4, verbose=0, shuffle=False)
        return model.get_weights()

    for a, b in zip(fitted(keras.optimizers.Adam(0.01)), fitted(optimizers.LazyAdam(0.01))):
        np.testing.assert_array_equal(b, a)


def test_create_by_name():
    assert type(optimizers.create("adam", 0.01)) is keras.optimizers.Adam
    lazy = optimizers.create("lazy_adam", 0.01, use_ema=True, ema_momentum=0.9)
    assert isinstance(lazy, optimizers.LazyAdam) and lazy.use_ema and lazy.ema_momentum == 0.9
    assert float(lazy.learning_rate.numpy()) == pytest.approx(0.01)
    with pytest.raises(ValueError, match=r"optimizer must be one of \['adam', 'lazy_adam'\], got 'sgd'"):
        optimizers.create("sgd", 0.01)
    with pytest.raises(ValueError, match="amsgrad"):
        optimizers.LazyAdam(0.01, amsgrad=True)
