"""The plain expert: ReLU layers `units`, then a ReLU layer of `output_units` (MMoE's experts)."""

from typing import Sequence

from models.experts.base import X, Expert
from models.mlp import MLP
from models.registry import EXPERTS


@EXPERTS.register("mlp")
class MLPExpert(Expert):
    def __init__(self, output_units: int, units: Sequence[int] = (), dropout: float = 0.0, **kwargs):
        super().__init__(output_units, **kwargs)
        self.units = [int(u) for u in units]
        self.dropout = float(dropout)
        self.mlp = MLP(self.units + [self.output_units], self.dropout, name="mlp")

    def call(self, inputs, training=None):
        return self.mlp(inputs[X], training=training)

    def params(self):
        return {"units": list(self.units), "dropout": self.dropout}
