"""DIN's attention pooling as a sequence encoder (Zhou et al., "Deep Interest Network for
Click-Through Rate Prediction", KDD 2018, section 4.3, eq. 3):

    v_U(A) = sum_j a(e_j, v_A) e_j,   a(e_j, v_A) = MLP([e_j, v_A, e_j - v_A, e_j * v_A])

the local activation unit's weights are not normalised by a softmax (DIN keeps the intensity
of the user's interest), unless `normalize` (DeepCTR's `weight_normalization`, which its BST
uses to pool the transformer's output: a softmax over the real elements). Padded elements get
weight 0. The attention MLP is DIN's 80-40 with
ReLU (the paper's PReLU/Dice is an activation detail left out). Recency and positions are not
used (DIN has neither).
"""

from typing import Sequence

import tensorflow as tf
import tf_keras as keras

from models.mlp import mlp
from models.registry import SEQUENCE_ENCODERS


@SEQUENCE_ENCODERS.register("din")
class DINAttention(keras.layers.Layer):
    """call(sequence [B, L, d], ages, mask [B, L], target [B, d]) -> [B, d];
    call_shared(..., targets [B, T, d]) -> [B, T, d] (T candidates over one sequence)."""

    CONTEXT_ARGS = ("max_length",)

    def __init__(self, max_length: int, attention_units: Sequence[int] = (80, 40), normalize: bool = False,
                 **kwargs):
        super().__init__(**kwargs)
        self.max_length = int(max_length)
        self.attention_units = [int(u) for u in attention_units]
        self.normalize = bool(normalize)
        self.activation_unit = mlp(self.attention_units, "activation_unit", output_units=1)

    def pool(self, sequence, mask, targets):
        """sequence [B, L, d], targets [B, T, d] -> (pooled [B, T, d], activation weights
        [B, T, L]: 0 at padding; with `normalize`, a softmax over the real elements, all 0 in an
        empty row)."""
        length = tf.shape(sequence)[1]
        t = tf.shape(targets)[1]
        e = tf.repeat(sequence[:, tf.newaxis, :, :], t, axis=1)                  # [B, T, L, d]
        v = tf.repeat(targets[:, :, tf.newaxis, :], length, axis=2)             # [B, T, L, d]
        a = self.activation_unit(tf.concat([e, v, e - v, e * v], axis=-1))[..., 0]  # [B, T, L]
        real = mask[:, tf.newaxis, :]
        if self.normalize:
            a = tf.nn.softmax(tf.where(real, a, a.dtype.min), axis=-1)
        a = tf.where(real, a, 0.0)
        return tf.einsum("btl,bld->btd", a, sequence), a

    def call(self, sequence, ages, mask, target, training=None):
        del ages, training
        return self.pool(sequence, mask, target[:, tf.newaxis, :])[0][:, 0, :]

    def call_shared(self, sequence, ages, mask, targets, training=None):
        del ages, training
        return self.pool(sequence, mask, targets)[0]

    def get_config(self):
        return {**super().get_config(), "max_length": self.max_length,
                "attention_units": list(self.attention_units), "normalize": self.normalize}
