"""Deep Interest Transformer (DMT section 4.2.2) and its parts.

Shapes: B batch, L max sequence length, d model width (= width of e_i, 4.1.1).
Masks are bool [B, L], True at real elements. Padded keys get exactly zero attention weight
(every softmax is masked) and every other op is position-wise, so finite values at padded
positions never change any output; the encoder's output is zeroed there once per block (not
at every layer's input: those selects and their gradients were ~9 % of DMT's training step).
An empty row gives a zero interest vector.
"""


from typing import Optional

import numpy as np
import tensorflow as tf
import tf_keras as keras

from models import preprocessing as P
from models.din import DINAttention
from models.dropout import Dropout
from models.layer_norm import LayerNormalization
from models.registry import SEQUENCE_ENCODERS


# The epsilon DMT has been trained with (chosen as Keras' fused-kernel threshold when the blocks
# used Keras' own layer)
LAYER_NORM_EPSILON = 1.001e-5
# What turns the encoded sequence into one interest vector per target: DMT's target-attention
# decoder, or DIN's activation unit normalised by a softmax (DeepCTR's BST)
POOLINGS = ("decoder", "din")


def _zero_padding(x: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """x [B, L, d] with rows at padded positions replaced by zeros."""
    return tf.where(mask[:, :, tf.newaxis], x, tf.zeros_like(x))


def sincos_table(length: int, dim: int) -> np.ndarray:
    """Sinusoidal positional embedding (Vaswani et al.; "pos_sincos" in DMT 4.2.2)."""
    position = np.arange(length, dtype=np.float64)[:, None]
    rates = 1.0 / np.power(10000.0, (2 * (np.arange(dim) // 2)) / float(dim))
    table = position * rates[None, :]
    table[:, 0::2] = np.sin(table[:, 0::2])
    table[:, 1::2] = np.cos(table[:, 1::2])
    return table.astype(np.float32)


class PositionalEmbedding(keras.layers.Layer):
    """x + position embedding (none / sincos / learned, Table 3) + recency embedding.

    Position j = index in the newest-first sequence. Recency: an embedding of the element's
    log2 age bucket (the JD talk's time-difference encoding), added like the position.
    call(x [B, L, d], ages [B, L] int) -> [B, L, d].
    """

    def __init__(self, max_length: int, mode: str = "learned", recency: bool = True,
                 num_age_buckets: int = P.AGE_BUCKETS, **kwargs):
        super().__init__(**kwargs)
        if mode not in ("none", "sincos", "learned"):
            raise ValueError(f"positional embedding mode {mode!r}")
        self.max_length = int(max_length)
        self.mode = mode
        self.recency = bool(recency)
        self.num_age_buckets = int(num_age_buckets)

    def build(self, input_shape):
        dim = int(input_shape[-1])
        if self.mode == "learned":
            self.position_embeddings = self.add_weight(
                name="position_embeddings", shape=(self.max_length, dim), initializer="uniform")
        elif self.mode == "sincos":
            self.position_embeddings = tf.constant(sincos_table(self.max_length, dim))
        if self.recency:
            self.age_embeddings = self.add_weight(
                name="age_embeddings", shape=(self.num_age_buckets, dim), initializer="uniform")
        super().build(input_shape)

    def call(self, x: tf.Tensor, ages: tf.Tensor = None) -> tf.Tensor:
        length = tf.shape(x)[1]
        if self.mode != "none":
            x = x + self.position_embeddings[tf.newaxis, :length, :]
        if self.recency:
            ages = tf.clip_by_value(tf.cast(ages, tf.int32), 0, self.num_age_buckets - 1)
            # embedding_lookup, not tf.gather: under ParameterServerStrategy a table larger than
            # `min_shard_bytes` is a ShardedVariable, whose gather takes 1-D indices only
            x = x + tf.nn.embedding_lookup(self.age_embeddings, ages)
        return x

    def get_config(self):
        return {**super().get_config(), "max_length": self.max_length, "mode": self.mode,
                "recency": self.recency, "num_age_buckets": self.num_age_buckets}


class MultiHeadAttention(keras.layers.Layer):
    """MultiHead(Q, K, V) = Concat(head_1..head_h) W^O, head_i = Attention(Q W_i^Q, K W_i^K,
    V W_i^V), Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V (DMT eq. 1; Vaswani et al.),
    with dropout on the attention weights as in Keras' layer.

    Written here rather than using keras.layers.MultiHeadAttention, whose per-head EinsumDense
    projections run as oneDNN Einsum ops that took 30 % of DMT's CPU training step (profile of
    bench.train_bench's step). Here the projections are plain 2-D MatMuls, fused into one
    [d, 3d] product when the query is the memory (self-attention) and one [d, 2d] product for
    keys and values otherwise; the heads are BatchMatMuls.

    call(query [B, T, d], memory [B, L, d], mask [B, L] bool) ->
    (out [B, T, d], weights [B, h, T, L]); masked keys get zero weight.
    """

    def __init__(self, num_heads: int, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.dropout = float(dropout)

    def build(self, input_shape):
        dim = int(input_shape[-1])
        if dim % self.num_heads:
            raise ValueError(f"width {dim} not divisible by {self.num_heads} heads")
        self.key_dim = dim // self.num_heads

        def projection(name, per_head_shape):
            # Glorot-uniform over Keras' per-head kernel shape ([d, h, d_k] in, [h, d_k, d] out),
            # reshaped to [d, d]: the same initial scale as the Keras layer this replaces (a plain
            # [d, d] Glorot draws 3.5x larger input projections and trained worse in one epoch).
            def initializer(shape, dtype=None):
                return tf.reshape(keras.initializers.GlorotUniform()(per_head_shape, dtype=dtype), shape)

            return (self.add_weight(name=f"{name}_kernel", shape=(dim, dim), initializer=initializer),
                    self.add_weight(name=f"{name}_bias", shape=(dim,), initializer="zeros"))

        heads_in, heads_out = (dim, self.num_heads, self.key_dim), (self.num_heads, self.key_dim, dim)
        self.query_kernel, self.query_bias = projection("query", heads_in)
        self.key_kernel, self.key_bias = projection("key", heads_in)
        self.value_kernel, self.value_bias = projection("value", heads_in)
        self.output_kernel, self.output_bias = projection("output", heads_out)
        self.weights_dropout = Dropout(self.dropout)
        super().build(input_shape)

    @staticmethod
    def _project(x, kernel, bias):
        """x [B, T, d] @ kernel [d, n] + bias as one 2-D MatMul -> [B, T, n]."""
        shape = tf.shape(x)
        out = tf.nn.bias_add(tf.matmul(tf.reshape(x, [-1, x.shape[-1]]), kernel), bias)
        return tf.reshape(out, tf.concat([shape[:-1], [kernel.shape[-1]]], 0))

    def _heads(self, x, parts: int):
        """[B, T, parts * h * d_k] -> `parts` tensors [B, h, T, d_k] (one transpose for all)."""
        shape = tf.shape(x)
        x = tf.reshape(x, [shape[0], shape[1], parts, self.num_heads, self.key_dim])
        return tf.unstack(tf.transpose(x, [2, 0, 3, 1, 4]), num=parts)

    def call(self, query, memory, mask, training=None):
        # 1 / sqrt(d_k) folded into W^Q and its bias ([d, d]) rather than applied to the logits
        scale = 1.0 / float(np.sqrt(self.key_dim))
        query_kernel, query_bias = self.query_kernel * scale, self.query_bias * scale
        if query is memory:  # self-attention: Q, K and V projections in one product
            q, k, v = self._heads(self._project(
                query, tf.concat([query_kernel, self.key_kernel, self.value_kernel], 1),
                tf.concat([query_bias, self.key_bias, self.value_bias], 0)), 3)
        else:
            (q,) = self._heads(self._project(query, query_kernel, query_bias), 1)
            k, v = self._heads(self._project(memory, tf.concat([self.key_kernel, self.value_kernel], 1),
                                             tf.concat([self.key_bias, self.value_bias], 0)), 2)
        logits = tf.matmul(q, k, transpose_b=True)  # [B, h, T, L]
        # Masked keys: a large negative logit (as Keras' Softmax with a mask), so they get
        # zero weight; an all-masked row is uniform, and its callers zero it.
        logits += (1.0 - tf.cast(mask, logits.dtype))[:, tf.newaxis, tf.newaxis, :] * -1e9
        weights = tf.nn.softmax(logits, axis=-1)
        heads = tf.matmul(self.weights_dropout(weights, training=training), v)  # [B, h, T, d_k]
        shape = tf.shape(heads)
        concat = tf.reshape(tf.transpose(heads, [0, 2, 1, 3]), [shape[0], shape[2], self.num_heads * self.key_dim])
        return self._project(concat, self.output_kernel, self.output_bias), weights

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "dropout": self.dropout}


class AttentionBlock(keras.layers.Layer):
    """Self-attention block of 4.2.2: multi-head attention (eq. 1 inside MultiHead, d_k = d / h)
    and point-wise FFN (eq. 2), each followed by residual and layer norm. Dropout is on the
    attention weights (as in the authors' code) and, with `residual_dropout`, also on each
    sub-layer's output before the residual (Vaswani et al. 5.4; the authors' code has none).

    call(query [B, T_q, d], memory [B, L, d], mask [B, L]) -> ([B, T_q, d], weights [B, h, T_q, L]).
    """

    def __init__(self, num_heads: int = 4, ffn_dim: Optional[int] = 320, dropout: float = 0.1,
                 residual_dropout: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.ffn_dim = int(ffn_dim) if ffn_dim else None  # None: 4 * d, as the authors' d_ff = 320
        self.dropout = float(dropout)
        self.residual_dropout = bool(residual_dropout)

    def build(self, input_shape):
        dim = int(input_shape[-1])
        self.attention = MultiHeadAttention(self.num_heads, self.dropout, name="attention")
        # FFN(x) = ReLU(x W_1 + b_1) W_2 + b_2   (eq. 2)
        self.ffn_inner = keras.layers.Dense(self.ffn_dim or 4 * dim, activation="relu", name="ffn_1")
        self.ffn_outer = keras.layers.Dense(dim, name="ffn_2")
        # models.layer_norm: Keras' layer with a closed-form gradient (why: see that module)
        self.attention_norm = LayerNormalization(epsilon=LAYER_NORM_EPSILON, name="attention_norm")
        self.ffn_norm = LayerNormalization(epsilon=LAYER_NORM_EPSILON, name="ffn_norm")
        residual_rate = self.dropout if self.residual_dropout else 0.0
        self.attention_dropout = Dropout(residual_rate)
        self.ffn_dropout = Dropout(residual_rate)
        super().build(input_shape)

    def _attend(self, query, memory, mask, training):
        """query [B, T_q, d] attends to memory [B, L, d]; keys masked by mask [B, L]."""
        out, scores = self.attention(query, memory, mask, training=training)
        x = self.attention_norm(query + self.attention_dropout(out, training=training))
        # the FFN on [B * T_q, d] rows: on a 3-D input Keras' Dense is a Tensordot, whose reshape
        # between MatMul and BiasAdd keeps Grappler from fusing MatMul + BiasAdd (+ ReLU) into one
        # oneDNN op (TF profile of DMT's step: ffn_1's fused op 11.7 ms against 16.7 ms for the three)
        ffn = self.ffn_outer(self.ffn_inner(tf.reshape(x, [-1, x.shape[-1]])))
        ffn = tf.reshape(ffn, tf.shape(x))
        return self.ffn_norm(x + self.ffn_dropout(ffn, training=training)), scores

    def call(self, query, memory, mask, training=None):
        return self._attend(query, memory, mask, training)

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "ffn_dim": self.ffn_dim,
                "dropout": self.dropout, "residual_dropout": self.residual_dropout}


class EncoderBlock(AttentionBlock):
    """Encoder (4.2.2): each element attends over all real elements of the sequence.

    call(x [B, L, d], mask [B, L]) -> [B, L, d], zero at padded positions.
    """

    def call(self, x, mask, training=None):
        out, _ = self._attend(x, x, mask, training)
        return _zero_padding(out, mask)


class TargetAttentionDecoder(keras.layers.Layer):
    """Decoder (4.2.2): the target item e_target is the query, the encoder output is keys and
    values. `num_blocks` blocks of masked multi-head attention + FFN; the output of block i is
    the query of block i + 1.

    call(target [B, d], memory [B, L, d], mask [B, L]) -> interest [B, d]
    (and attention weights [B, h, L] of the last block with return_attention_scores=True:
    they sum to 1 over real elements and are 0 at padding). Rows without any real element
    give an all-zero interest vector and all-zero weights.
    """

    def __init__(self, num_heads: int = 4, ffn_dim: Optional[int] = 320, dropout: float = 0.1,
                 num_blocks: int = 1, residual_dropout: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.ffn_dim = int(ffn_dim) if ffn_dim else None
        self.dropout = float(dropout)
        self.num_blocks = int(num_blocks)
        self.residual_dropout = bool(residual_dropout)
        self.blocks = [AttentionBlock(num_heads, ffn_dim, dropout, residual_dropout, name=f"block_{i}")
                       for i in range(self.num_blocks)]

    def decode(self, queries, memory, mask, training=None):
        """queries [B, T, d] (T candidate targets sharing one memory) -> ([B, T, d], weights
        [B, h, T, L]). Cross-attention treats the T queries independently (no attention among
        them), so T targets over one memory give the same vectors as T rows with one target
        each, while the memory's key / value projections run once (the shared encoder of
        `rank`)."""
        query = queries
        for block in self.blocks:
            query, scores = block(query, memory, mask, training=training)
        nonempty = tf.reduce_any(mask, axis=1)[:, tf.newaxis, tf.newaxis]  # [B, 1, 1]
        # softmax over all-masked keys is uniform over padding: zero such rows instead.
        return tf.where(nonempty, query, tf.zeros_like(query)), scores

    def call(self, target, memory, mask, training=None, return_attention_scores=False):
        interest, scores = self.decode(target[:, tf.newaxis, :], memory, mask, training=training)
        interest = interest[:, 0, :]  # T_q = 1
        if not return_attention_scores:
            return interest
        weights = scores[:, :, 0, :] * tf.cast(mask, scores.dtype)[:, tf.newaxis, :]
        return interest, weights

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "ffn_dim": self.ffn_dim,
                "dropout": self.dropout, "num_blocks": self.num_blocks,
                "residual_dropout": self.residual_dropout}


@SEQUENCE_ENCODERS.register("transformer")
class DeepInterestTransformer(keras.layers.Layer):
    """One behaviour sequence -> one interest vector w.r.t. the target item (4.2.2).

    e_i + position (+ recency) -> dropout -> encoder blocks -> target-attention decoder.
    DMT (4.2.1) uses one instance per sequence type (separate parameters).
    `pooling: din` replaces the decoder by DIN's activation unit, softmax-normalised over the
    encoder's outputs (models/din.py), the pooling DeepCTR's BST puts after its transformer;
    `attention_units` are its MLP's widths.
    call(sequence [B, L, d], ages [B, L], mask [B, L], target [B, d]) -> [B, d].
    `ffn_dim` None is 4 * d (the authors' d_ff = 320 for d = 80). `residual_dropout`: see AttentionBlock.
    """

    CONTEXT_ARGS = ("max_length",)  # from the model's `sequences`
    ZERO_ALLOWED_ARGS = ("encoder_blocks",)  # 0: the decoder attends to the embeddings (DMT without its encoder)

    def __init__(self, max_length: int, num_heads: int = 4, ffn_dim: Optional[int] = None,
                 dropout: float = 0.1, encoder_blocks: int = 1, decoder_blocks: int = 1,
                 positional: str = "none", recency: bool = True,
                 num_age_buckets: int = P.AGE_BUCKETS, residual_dropout: bool = True,
                 pooling: str = "decoder", attention_units=(80, 40), **kwargs):
        super().__init__(**kwargs)
        if pooling not in POOLINGS:
            raise ValueError(f"transformer pooling must be one of {POOLINGS}, got {pooling!r}")
        self.max_length = int(max_length)
        self.num_heads = int(num_heads)
        self.ffn_dim = int(ffn_dim) if ffn_dim else None
        self.dropout = float(dropout)
        self.encoder_blocks = int(encoder_blocks)
        self.decoder_blocks = int(decoder_blocks)
        self.positional = positional
        self.recency = bool(recency)
        self.num_age_buckets = int(num_age_buckets)
        self.residual_dropout = bool(residual_dropout)
        self.pooling = pooling
        self.attention_units = [int(u) for u in attention_units]
        self.position = PositionalEmbedding(max_length, positional, recency, num_age_buckets, name="position")
        self.input_dropout = Dropout(dropout)
        self.encoder = [EncoderBlock(num_heads, ffn_dim, dropout, residual_dropout, name=f"encoder_{i}")
                        for i in range(self.encoder_blocks)]
        if pooling == "din":
            self.din_pooling = DINAttention(max_length, self.attention_units, normalize=True, name="din_pooling")
        else:
            self.decoder = TargetAttentionDecoder(num_heads, ffn_dim, dropout, decoder_blocks, residual_dropout,
                                                  name="decoder")

    def encode(self, sequence, ages, mask, training=None):
        """The encoder half: [B, L, d] -> memory [B, L, d] (zero at padding when there is an
        encoder block; the decoder masks padded keys either way)."""
        ages = tf.where(mask, ages, tf.zeros_like(ages))
        x = self.input_dropout(self.position(sequence, ages), training=training)
        for block in self.encoder:
            x = block(x, mask, training=training)
        return x

    def call(self, sequence, ages, mask, target, training=None, return_attention_scores=False):
        memory = self.encode(sequence, ages, mask, training=training)
        if self.pooling == "din":
            interest, weights = self.din_pooling.pool(memory, mask, target[:, tf.newaxis, :])  # weights [B, 1, L]
            return (interest[:, 0, :], weights) if return_attention_scores else interest[:, 0, :]
        return self.decoder(target, memory, mask, training=training,
                            return_attention_scores=return_attention_scores)

    def call_shared(self, sequence, ages, mask, targets, training=None):
        """One sequence per row, T targets per row: sequence [B, L, d], targets [B, T, d] ->
        [B, T, d]. The encoder runs once per row, not once per target."""
        memory = self.encode(sequence, ages, mask, training=training)
        if self.pooling == "din":
            return self.din_pooling.pool(memory, mask, targets)[0]
        return self.decoder.decode(targets, memory, mask, training=training)[0]

    def get_config(self):
        return {**super().get_config(), "max_length": self.max_length, "num_heads": self.num_heads,
                "ffn_dim": self.ffn_dim, "dropout": self.dropout,
                "encoder_blocks": self.encoder_blocks, "decoder_blocks": self.decoder_blocks,
                "positional": self.positional, "recency": self.recency,
                "num_age_buckets": self.num_age_buckets, "residual_dropout": self.residual_dropout,
                "pooling": self.pooling, "attention_units": list(self.attention_units)}
