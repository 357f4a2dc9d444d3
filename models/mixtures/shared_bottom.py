"""Shared-bottom multi-task network (Caruana, 1997; the "Shared-Bottom" baseline of MMoE and
PLE): one MLP over x shared by all towers, then one MLP and linear logit per tower.

DNN(Base) of the DMT paper (section 5.2) is this with bottom 256-128-64, dropout and linear
towers (`tower_units: []`) over the target embedding and dense features only.
"""

from typing import Sequence

from models.mixtures.base import Mixture
from models.mlp import mlp
from models.registry import MIXTURES


@MIXTURES.register("shared_bottom")
class SharedBottom(Mixture):
    def __init__(self, towers: Sequence[str], num_scenarios: int = 0,
                 bottom_units: Sequence[int] = (256, 128), tower_units: Sequence[int] = (64,),
                 dropout: float = 0.0, **kwargs):
        super().__init__(towers, num_scenarios, **kwargs)
        if not bottom_units:
            raise ValueError("shared_bottom needs bottom_units")
        self.bottom_units = [int(u) for u in bottom_units]
        self.tower_units = [int(u) for u in tower_units]
        self.dropout = float(dropout)
        self.bottom = mlp(self.bottom_units, "shared_mlp", self.dropout)
        self.tower_nets = {t: mlp(self.tower_units, f"tower_{t}", self.dropout, output_units=1)
                           for t in self.towers}

    def mix(self, x, scenario, training, fields=None):
        hidden = self.bottom(x, training=training)
        return {t: self.tower_nets[t](hidden, training=training) for t in self.towers}, {}

    def params(self):
        return {"bottom_units": list(self.bottom_units), "tower_units": list(self.tower_units),
                "dropout": self.dropout}
