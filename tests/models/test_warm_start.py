"""models/warm_start.py: what a Trainer saves and how the next one starts from it (the whole
daily loop through the pipeline is tests/pipeline/test_daily_e2e.py)."""

import numpy as np
import pytest
import tf_keras as keras

from models import warm_start


def _dense(units: int, seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.layers.Dense(units, name="hidden"), keras.layers.Dense(1, name="out")])
    model.build((None, 5))
    return model


def test_same_architecture_starts_from_the_saved_weights(tmp_path):
    trained = _dense(3, seed=1)
    warm_start.save(trained, None, str(tmp_path / "model" / "Format-Serving"), num_oov_buckets=10)
    fresh = _dense(3, seed=2)
    assert not np.array_equal(fresh.get_weights()[0], trained.get_weights()[0])
    assert warm_start.warm_start(fresh, str(tmp_path / "model" / "Format-Serving"), None, 10) == {}
    for started, saved in zip(fresh.get_weights(), trained.get_weights()):
        np.testing.assert_array_equal(started, saved)


def test_another_architecture_or_no_saved_weights_fails_clearly(tmp_path):
    warm_start.save(_dense(3, seed=1), None, str(tmp_path / "model" / "Format-Serving"), num_oov_buckets=10)
    with pytest.raises(warm_start.WarmStartError, match=r"hidden/kernel.*shape \[5, 3\].*\[5, 4\]"):
        warm_start.warm_start(_dense(4, seed=2), str(tmp_path / "model" / "Format-Serving"), None, 10)
    with pytest.raises(warm_start.WarmStartError, match="OOV buckets"):
        warm_start.warm_start(_dense(3, seed=2), str(tmp_path / "model" / "Format-Serving"), None, 5)
    with pytest.raises(warm_start.WarmStartError, match="no saved weights"):
        warm_start.warm_start(_dense(3, seed=2), str(tmp_path / "other" / "Format-Serving"), None, 10)


def test_embedding_rows_follow_their_tokens_and_oov_buckets():
    old = np.arange(5 * 2, dtype=np.float32).reshape(5, 2)          # tokens a, b, c + 2 OOV buckets
    new = -np.ones((6, 2), np.float32)                               # tokens c, d, a, e + 2 OOV buckets
    started = warm_start._carry_rows(new, old, [b"c", b"d", b"a", b"e"], [b"a", b"b", b"c"], 2, "t")
    np.testing.assert_array_equal(started, [old[2], new[1], old[0], new[3], old[3], old[4]])
    with pytest.raises(warm_start.WarmStartError, match="cannot start"):
        warm_start._carry_rows(np.zeros((6, 3), np.float32), old, [b"c", b"d", b"a", b"e"], [b"a", b"b", b"c"], 2, "t")


class _ShardedTable(keras.layers.Layer):
    """Weights named as ParameterServerStrategy names a ShardedVariable's shards."""

    def build(self, input_shape):
        self.part_0 = self.add_weight(name="table/part_0", shape=(3, 2), initializer="ones")
        self.part_1 = self.add_weight(name="table/part_1", shape=(2, 2), initializer="zeros")
        self.bias = self.add_weight(name="bias", shape=(2,), initializer="zeros")

    def call(self, x):
        return x


def test_the_shards_of_a_sharded_variable_are_one_weight():
    model = keras.Sequential([_ShardedTable()])
    model.build((None, 2))
    table, bias = warm_start.get_weights(model)
    assert table.shape == (5, 2) and bias.shape == (2,)
    np.testing.assert_array_equal(table, np.concatenate([np.ones((3, 2)), np.zeros((2, 2))]))
    warm_start.set_weights(model, [np.arange(10.0).reshape(5, 2), np.array([7.0, 8.0])])
    layer = model.layers[0]
    np.testing.assert_array_equal(layer.part_0.numpy(), np.arange(6.0).reshape(3, 2))
    np.testing.assert_array_equal(layer.part_1.numpy(), np.arange(6.0, 10.0).reshape(2, 2))
    np.testing.assert_array_equal(layer.bias.numpy(), [7.0, 8.0])
