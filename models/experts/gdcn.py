"""GDCN, the gated cross network (Wang et al., "Towards Deeper, Lighter and Interpretable Cross
Network for CTR Prediction", CIKM 2023, eq. 1; one of DTN's feature-interaction modules, "Deep
Multiple Task-specific Feature Interactions Network for Multi-Task Recommendation", section
"Models for Comparisons"):

    c_{l+1} = c_0 ⊙ (W_l^c c_l + b_l) ⊙ σ(W_l^g c_l) + c_l

then an MLP (GDCN-S, the stacked form). TFRS's DCN-V2 layer `tfrs.layers.dcn.Cross` computes
x_0 ⊙ (W x_l + b) + x_l (with its optional low-rank W = U V); the gate is what GDCN adds, so
`GatedCross` is that layer given x_0 ⊙ σ(W^g x_l) as its x_0: the same product, and Cross's
kernel options (low rank, diagonal scale) still apply.
"""

from typing import Optional, Sequence

import tensorflow_recommenders as tfrs
import tf_keras as keras

from models.experts.base import X, Expert
from models.mlp import MLP
from models.registry import EXPERTS


class GatedCross(tfrs.layers.dcn.Cross):
    """One gated cross layer: call(x0, x) = x0 ⊙ (W x + b) ⊙ σ(W_g x) + x."""

    def build(self, input_shape):
        super().build(input_shape)
        # W_g: no bias in GDCN's information gate
        self.gate = keras.layers.Dense(input_shape[-1], use_bias=False, activation="sigmoid",
                                       kernel_initializer="glorot_uniform", name="gate")

    def call(self, x0, x=None):
        x = x0 if x is None else x
        return super().call(x0 * self.gate(x), x)


@EXPERTS.register("gdcn")
class GDCN(Expert):
    def __init__(self, output_units: int, layers: int = 2, projection_dim: Optional[int] = None,
                 units: Sequence[int] = (), dropout: float = 0.0, **kwargs):
        super().__init__(output_units, **kwargs)
        if int(layers) < 1:
            raise ValueError("gdcn needs layers >= 1")
        self.layers_count = int(layers)
        self.projection_dim = None if projection_dim is None else int(projection_dim)
        self.units = [int(u) for u in units]
        self.dropout = float(dropout)
        self.cross = [GatedCross(projection_dim=self.projection_dim, name=f"gated_cross_{i}")
                      for i in range(self.layers_count)]
        self.mlp = MLP(self.units + [self.output_units], self.dropout, name="mlp")

    def call(self, inputs, training=None):
        x = x0 = inputs[X]
        for layer in self.cross:
            x = layer(x0, x)
        return self.mlp(x, training=training)

    def params(self):
        return {"layers": self.layers_count, "projection_dim": self.projection_dim, "units": list(self.units),
                "dropout": self.dropout}
