"""MaskNet (Wang, She and Zhang, "MaskNet: Introducing Feature-Wise Multiplication to CTR Ranking
Models by Instance-Guided Mask", DLP-KDD 2021; one of DTN's feature-interaction modules):

    V_emb      = concat(e_1 .. e_f)                                  the field embeddings
    V_mask     = W_d2 ReLU(W_d1 V_emb + β_d1) + β_d2                 instance-guided mask (eq. 3)
    LN_EMB     = concat(LN(e_1) .. LN(e_f))                          per-field layer norm (eq. 8)
    MaskBlock on the embedding:  ReLU(LN(W_i (V_mask ⊙ LN_EMB(V_emb))))   (eq. 9-10)
    MaskBlock on a MaskBlock:    ReLU(LN(W_i (V_mask ⊙ V_output^p)))       (eq. 11-12)

`serial`: the first block on the embedding, each next one on the previous block's output;
`parallel`: every block on the embedding, their outputs concatenated; either way a ReLU MLP
(`units`, then `output_units`) follows, as in the paper's prediction / feed-forward layers.
Every block's mask is computed from V_emb. Keras has the pieces (Dense, LayerNormalization,
here with models.layer_norm's gradient); the block is written here.
"""

from typing import Sequence

import tensorflow as tf
import tf_keras as keras

from models.experts.base import FIELDS, Expert, fields_of
from models.layer_norm import LayerNormalization
from models.mlp import MLP
from models.registry import EXPERTS

MODES = ("serial", "parallel")


class MaskBlock(keras.layers.Layer):
    """call([v_emb, v_in]) -> ReLU(LN(W_i (V_mask(v_emb) ⊙ v_in))) [B, units]."""

    def __init__(self, units: int, mask_hidden: int, **kwargs):
        super().__init__(**kwargs)
        self.units, self.mask_hidden = int(units), int(mask_hidden)
        self.aggregation = keras.layers.Dense(self.mask_hidden, activation="relu", name="mask_aggregation")  # W_d1
        self.hidden = keras.layers.Dense(self.units, use_bias=False, name="hidden")  # W_i (LN supplies the shift)
        self.norm = LayerNormalization(name="hidden_norm")  # LN_HID

    def build(self, input_shape):
        # W_d2 projects the mask back to the width of the vector it multiplies
        self.projection = keras.layers.Dense(int(input_shape[1][-1]), name="mask_projection")
        super().build(input_shape)

    def mask(self, v_emb):
        return self.projection(self.aggregation(v_emb))

    def call(self, inputs):
        v_emb, v_in = inputs
        return tf.nn.relu(self.norm(self.hidden(self.mask(v_emb) * v_in)))

    def get_config(self):
        return {**super().get_config(), "units": self.units, "mask_hidden": self.mask_hidden}


@EXPERTS.register("masknet")
class MaskNet(Expert):
    uses_fields = True

    def __init__(self, output_units: int, mode: str = "parallel", blocks: int = 2, block_units: int = 64,
                 mask_hidden: int = 128, units: Sequence[int] = (), dropout: float = 0.0, **kwargs):
        super().__init__(output_units, **kwargs)
        if mode not in MODES:
            raise ValueError(f"masknet mode {mode!r}: one of {', '.join(MODES)}")
        if int(blocks) < 1 or int(block_units) < 1 or int(mask_hidden) < 1:
            raise ValueError("masknet needs blocks, block_units and mask_hidden >= 1")
        self.mode, self.blocks = mode, int(blocks)
        self.block_units, self.mask_hidden = int(block_units), int(mask_hidden)
        self.units, self.dropout = [int(u) for u in units], float(dropout)
        self.mask_blocks = [MaskBlock(self.block_units, self.mask_hidden, name=f"mask_block_{i}")
                            for i in range(self.blocks)]
        self.mlp = MLP(self.units + [self.output_units], self.dropout, name="mlp")

    def build(self, input_shape):
        # LN_EMB: one LayerNormalization per field (a field of width 1 would normalise to 0)
        widths = [int(shape[-1]) for shape in input_shape[FIELDS]]
        if min(widths) < 2:
            raise ValueError(f"masknet: every field needs width >= 2 for its layer norm, got {widths}")
        self.field_norms = [LayerNormalization(name=f"field_norm_{i}") for i in range(len(widths))]
        super().build(input_shape)

    def embedding_norm(self, fields):
        """LN_EMB(V_emb) (eq. 8)."""
        return tf.concat([norm(e) for norm, e in zip(self.field_norms, fields)], axis=-1)

    def call(self, inputs, training=None):
        fields = fields_of(inputs, "masknet")
        v_emb = tf.concat(fields, axis=-1)
        normed = self.embedding_norm(fields)
        if self.mode == "serial":
            v = normed
            for block in self.mask_blocks:
                v = block([v_emb, v])
        else:
            v = tf.concat([block([v_emb, normed]) for block in self.mask_blocks], axis=-1)
        return self.mlp(v, training=training)

    def params(self):
        return {"mode": self.mode, "blocks": self.blocks, "block_units": self.block_units,
                "mask_hidden": self.mask_hidden, "units": list(self.units), "dropout": self.dropout}
