"""Dropout with a cheaper mask: Keras' `Dropout` (same arguments, config and behaviour), whose
training step draws one 32-bit random integer per two elements instead of a float per element.

    keep_j = u_j >= t,   t = round(rate * 2^16),   out_j = x_j * keep_j / (1 - t / 2^16)

u_j are the two 16-bit halves of a uniform 32-bit integer, so each element is dropped with
probability t / 2^16 (rate to within 2^-17: 0.1 is 6554 / 65536 = 0.100006) and the scale is
that probability's, so E[out] = x exactly. The mask is a multiplier, whose gradient is one
product with the same mask.

Why: in DMT's training step dropout took 16 % of the op time (profile of bench.train_bench's
step on an Intel Xeon, batch 512): Keras' `tf.nn.dropout` draws a float per element of the
click encoder's [512, 4, 50, 50] attention weights and of every sub-layer's output, then
compares, scales and selects, and selects again in the backward pass. Forward and backward of
one [512, 4, 50, 50] dropout take 7.3 ms here against 12.6 ms with Keras' layer (same process,
medians of 7). TF has no dropout kernel that draws fewer random bits, hence this layer.

The draw is stateless, seeded per call from Keras' (global-seed-derived) random stream, so
`keras.utils.set_random_seed` makes it reproducible as it does Keras' own dropout. Other cases
(a `noise_shape`, a last axis of odd or unknown width, a rate of 0 or 1, not float32) run Keras'
code.
"""

import tensorflow as tf
import tf_keras as keras

# 16-bit halves: the rate's resolution
_HALF_BITS = 16


def _mask_threshold(rate: float) -> int:
    """t of the module docstring: elements whose 16-bit draw is below t are dropped."""
    return int(round(rate * (1 << _HALF_BITS)))


def dropout(x: tf.Tensor, rate: float, seed: tf.Tensor) -> tf.Tensor:
    """x with each element zeroed with probability ~rate (t / 2^16), the rest scaled by
    1 / (1 - t / 2^16); x's last axis of even static width. `seed`: int [2], stateless."""
    threshold = _mask_threshold(rate)
    shape = tf.shape(x)
    halves_shape = tf.concat([shape[:-1], [x.shape[-1] // 2]], 0)
    bits = tf.random.stateless_uniform(halves_shape, seed=seed, minval=None, maxval=None, dtype=tf.uint32)
    draws = tf.reshape(tf.bitcast(bits, tf.uint16), shape)  # [..., d / 2, 2] -> [..., d]
    scale = 1.0 / (1.0 - threshold / float(1 << _HALF_BITS))
    mask = tf.where(draws >= tf.constant(threshold, tf.uint16), tf.constant(scale, x.dtype), tf.zeros([], x.dtype))
    return x * mask  # the gradient: dy * mask (the mask does not depend on x)


class Dropout(keras.layers.Dropout):
    """keras.layers.Dropout with the cheaper mask of the module docstring."""

    def _fast(self, inputs: tf.Tensor) -> bool:
        width = inputs.shape[-1] if inputs.shape.rank else None
        return (self.noise_shape is None and inputs.dtype == tf.float32 and width is not None
                and width % 2 == 0 and 0 < _mask_threshold(self.rate) < (1 << _HALF_BITS))

    def call(self, inputs, training=None):
        inputs = tf.convert_to_tensor(inputs)
        if not self._fast(inputs):
            return super().call(inputs, training=training)
        if training is None:
            training = keras.backend.learning_phase()

        def dropped():
            # a fresh stateless seed per call, from Keras' legacy random stream (the global seed's)
            seed = tf.random.uniform([2], maxval=tf.int64.max, dtype=tf.int64,
                                     seed=self._random_generator.make_legacy_seed())
            return dropout(inputs, self.rate, seed)

        return tf.__internal__.smart_cond.smart_cond(training, dropped, lambda: tf.identity(inputs))
