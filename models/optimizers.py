"""The Trainer's optimizers, by name (`trainer: {optimizer: NAME}`): Keras' Adam, and Adam whose
embedding updates touch only the rows of the batch.

Why the second: given an embedding's sparse gradient (a `tf.IndexedSlices` of the looked-up rows),
Keras' Adam decays the two moments of every row of the table and moves every row, at every step
(`m.assign_add(-m * (1 - beta_1))` over the whole table, then the batch's rows added; the weight
update over the whole table too). A step then costs in proportion to the vocabularies, not to the
batch: on `bench.train_bench`'s synthetic batches DNN(Base) trains at 87k examples/s with 30k users
and 5k items, and at 6.3k examples/s with 3M users and 500k items (DMT: 2,035 against 1,473), and
a store's catalogue and users are that size and more.

`lazy_adam` updates the rows in the batch only, as TF1's `LazyAdamOptimizer` and TF Addons'
`LazyAdam` did (neither is in this stack: TF Addons is deprecated, and TF, tf_keras and TFRS have
none), for each row i of the gradient:

    m_i <- m_i + (g_i - m_i) (1 - beta_1)
    v_i <- v_i + (g_i^2 - v_i) (1 - beta_2)
    w_i <- w_i - alpha_t m_i / (sqrt(v_i) + epsilon_hat)

with Keras' alpha_t = lr sqrt(1 - beta_2^t) / (1 - beta_1^t) at the optimizer's step t and its
epsilon. A row absent from a batch keeps its moments and weights, where Adam keeps moving it by
its decaying momentum. Dense gradients get Keras' Adam unchanged, so a model without embeddings
trains identically.

It is the default: on the default world, over seeds 0-2, DMT and DNN(Base) trained with it are no
worse on any figure beyond the seeds' spread (bench/results/ablations/lazy-adam.md).
"""

from typing import Any

import tensorflow as tf
import tf_keras as keras


class LazyAdam(keras.optimizers.Adam):
    """keras.optimizers.Adam with the row-wise sparse update of the module docstring."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.amsgrad:
            raise ValueError("lazy_adam does not implement amsgrad")

    def update_step(self, gradient, variable):
        if not isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable)
        # the indices are unique: tf_keras' apply_gradients sums repeated rows first
        dtype = variable.dtype
        lr = tf.cast(self.learning_rate, dtype)
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        beta_1_power, beta_2_power = tf.pow(beta_1, step), tf.pow(beta_2, step)
        alpha = lr * tf.sqrt(1 - beta_2_power) / (1 - beta_1_power)
        epsilon = self.epsilon * tf.sqrt(1 - beta_2_power) if self.adaptive_epsilon else self.epsilon

        key = self._index_dict[self._var_key(variable)]
        m, v = self._momentums[key], self._velocities[key]
        indices, g = gradient.indices, gradient.values
        m_rows = tf.gather(m, indices)
        v_rows = tf.gather(v, indices)
        m_rows = m_rows + (g - m_rows) * (1 - beta_1)
        v_rows = v_rows + (tf.square(g) - v_rows) * (1 - beta_2)
        m.scatter_update(tf.IndexedSlices(m_rows, indices))
        v.scatter_update(tf.IndexedSlices(v_rows, indices))
        variable.scatter_sub(tf.IndexedSlices((m_rows * alpha) / (tf.sqrt(v_rows) + epsilon), indices))


OPTIMIZERS = {"adam": keras.optimizers.Adam, "lazy_adam": LazyAdam}
# The Trainer's `trainer.optimizer` when unset; the benches compile with it too, as the Trainer does
DEFAULT = "lazy_adam"


def check_name(name: str) -> None:
    """ValueError unless `name` is a key of OPTIMIZERS (the Trainer checks its settings with it)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {name!r}")


def create(name: str, learning_rate: float, **kwargs: Any) -> keras.optimizers.Optimizer:
    """The optimizer `name` (a key of OPTIMIZERS) at `learning_rate`; kwargs go to Keras' Adam
    (e.g. use_ema, ema_momentum)."""
    check_name(name)
    return OPTIMIZERS[name](learning_rate, **kwargs)
