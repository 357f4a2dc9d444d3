"""Layer normalisation over the last axis with a hand-written gradient.

    y = (x - mean(x)) / sqrt(var(x) + epsilon),   out = gamma * y + beta   (Ba et al. 2016)

The layer is Keras' `LayerNormalization` (same arguments, weights `gamma` and `beta`, config and
checkpoints), with a faster training step for the case every funnel model uses: one normalised
axis, the last, with both `scale` and `center`, in float32. Other cases run Keras' own code.

Why not Keras' layer as is: on CPU it runs as FusedBatchNormV3 over a [1, rows, d, 1] reshape
(for epsilon >= 1.001e-5) or as moments and batch_normalization ops differentiated one by one;
in DMT's training step its forward and backward took 17 % of the op time (FusedBatchNormGradV3
alone 11 %; profile of bench.train_bench's step on an AMD EPYC). TF has no layer-norm kernel for
CPU, so the gradient is written out here in closed form:

    g = dout * gamma
    dx = rstd * (g - mean(g) - y * mean(g * y)),   rstd = 1 / sqrt(var(x) + epsilon)
    dgamma = sum over rows of dout * y,   dbeta = sum over rows of dout

which reuses the forward pass's y and rstd instead of re-deriving them through each op's
gradient: forward and backward of a [512, 50, 80] batch take ~6 ms against ~40 ms (fused) and
~10 ms (unfused autodiff). The values equal Keras' to float32 rounding (tests/models/test_layer_norm.py).
"""

import tensorflow as tf
import tf_keras as keras


def _layer_norm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, epsilon: float) -> tf.Tensor:
    """gamma * (x - mean) / sqrt(var + epsilon) + beta over the last axis of x, with its gradient."""

    @tf.custom_gradient
    def forward(x, gamma, beta):
        centred = x - tf.reduce_mean(x, axis=-1, keepdims=True)
        rstd = tf.math.rsqrt(tf.reduce_mean(tf.square(centred), axis=-1, keepdims=True) + epsilon)
        y = centred * rstd

        def backward(dout):
            rows = list(range(len(dout.shape) - 1))
            g = dout * gamma
            dx = rstd * (g - tf.reduce_mean(g, axis=-1, keepdims=True)
                         - y * tf.reduce_mean(g * y, axis=-1, keepdims=True))
            return dx, tf.reduce_sum(dout * y, axis=rows), tf.reduce_sum(dout, axis=rows)

        return y * gamma + beta, backward

    return forward(x, gamma, beta)


class LayerNormalization(keras.layers.LayerNormalization):
    """keras.layers.LayerNormalization, with the closed-form gradient above for the last axis."""

    def call(self, inputs):
        inputs = tf.convert_to_tensor(inputs)
        rank = inputs.shape.rank
        # (under a mixed-precision policy the inputs are float16 / bfloat16: Keras' code)
        if (rank is None or list(self.axis) != [rank - 1] or not (self.scale and self.center)
                or inputs.dtype != tf.float32):
            return super().call(inputs)
        return _layer_norm(inputs, tf.convert_to_tensor(self.gamma), tf.convert_to_tensor(self.beta),
                           self.epsilon)
