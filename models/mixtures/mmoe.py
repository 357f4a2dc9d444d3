"""Multi-gate Mixture-of-Experts (DMT section 4.3, eq. 3; Ma et al., KDD 2018).

    w^k    = softmax(NN_G^k(x))
    f^k(x) = sum_i w_i^k e_i(x)
    u_k    = NN_U^k(f^k(x))          (a scalar logit per tower)

Defaults are DMT's (models/config.py): 4 experts 256-128, linear gates, towers 64. `expert`
makes the experts a registered expert type instead (models/experts: e.g. `{type: gdcn}`, a
feature-interaction module), each of width expert_units[-1].
"""

from typing import Optional, Sequence

import tensorflow as tf

from models.experts.base import expert_inputs, reads_fields
from models.mixtures.base import Mixture, mixture_of_experts
from models.mlp import mlp
from models.registry import EXPERTS, MIXTURES
import models.experts  # noqa: F401  (registers the experts)


@MIXTURES.register("mmoe")
class MMoE(Mixture):
    NESTED_SECTIONS = {"expert": EXPERTS}  # checked with the config (models/registry.py)

    def __init__(self, towers: Sequence[str], num_scenarios: int = 0, num_experts: int = 4,
                 expert_units: Sequence[int] = (256, 128), gate_units: Sequence[int] = (),
                 tower_units: Sequence[int] = (64,), dropout=0.0, expert: Optional[dict] = None, **kwargs):
        super().__init__(towers, num_scenarios, **kwargs)
        if int(num_experts) < 1 or not expert_units:
            raise ValueError("mmoe needs num_experts >= 1 and expert_units")
        self.num_experts = int(num_experts)
        self.expert_units = [int(u) for u in expert_units]
        self.gate_units = [int(u) for u in gate_units]
        self.tower_units = [int(u) for u in tower_units]
        self.dropout = dropout
        self.expert = None if expert is None else dict(expert)
        if self.expert is None:  # e_1(x) .. e_N(x): ReLU MLPs
            self.experts = [mlp(self.expert_units, f"expert_{i}", dropout) for i in range(self.num_experts)]
        else:
            self.experts = [EXPERTS.build(self.expert, output_units=self.expert_units[-1], name=f"expert_{i}")
                            for i in range(self.num_experts)]
        # NN_G^k: (hidden ReLU layers then) a linear layer to N logits; NN_U^k: ReLU layers then u_k
        self.gates = {t: mlp(self.gate_units, f"gate_{t}", output_units=self.num_experts) for t in self.towers}
        self.tower_nets = {t: mlp(self.tower_units, f"tower_{t}", self._tower_dropout(), output_units=1)
                           for t in self.towers}

    @property
    def uses_fields(self):
        return self.expert is not None and reads_fields(self.expert)

    def _tower_dropout(self):
        return self.dropout if not isinstance(self.dropout, (list, tuple)) else 0.0

    def mix(self, x, scenario, training, fields=None):
        given = x if self.expert is None else expert_inputs(x, fields)
        experts = tf.stack([e(given, training=training) for e in self.experts], axis=1)  # [B, N, m]
        logits, gates = {}, {}
        for t in self.towers:
            f, gates[t] = mixture_of_experts(self.gates[t](x, training=training), experts)  # f^k(x), w^k
            logits[t] = self.tower_nets[t](f, training=training)                            # u_k [B, 1]
        return logits, gates

    def params(self):
        return {"num_experts": self.num_experts, "expert_units": list(self.expert_units),
                "gate_units": list(self.gate_units), "tower_units": list(self.tower_units),
                "dropout": self.dropout, "expert": None if self.expert is None else dict(self.expert)}
