"""HMoE and IMMoE (Li et al., "Improving Multi-Scenario Learning to Rank in E-commerce by
Exploiting Task Relationships in the Label Space", CIKM 2020, sections 3.2-3.4).

Per tower k (a task, or an ESMM/ESM² sub-task):
    M_k(x) = sum_i G_k,i(x) E_i(x)                  (eq. 4; experts E_i shared by the towers,
                                                     one gate G_k per tower, as in MMoE)
    S_k,t(x) = f_s^{k,t}(M_k(x))                    (eq. 5; one tower per scenario t)
IMMoE (section 3.2) predicts an example of scenario t by its own scenario's tower, S_k,t(x).
HMoE adds a scenario gate W_k(x) = softmax(f_w^k(x)) over the T scenarios and, for an example
of scenario t (eq. 7, the end-to-end optimisation of 3.4),
    H_k,t(x) = W_k,t(x) S_k,t(x) + sum_{j != t} W_k,j(x) stop_gradient(S_k,j(x)),
so another scenario's tower only receives gradient from its own scenario's examples.
`stop_gradient: false` is the paper's NoStopGrad-HMoE (eq. 6 trained jointly).

funnel's towers output logits (the heads and the bias tower work in logit space), so S and H
are logits and the mix is a convex combination of logits. Scenarios are the Transform's
`scenario` vocabulary (`num_scenarios` known values). An example whose scenario is not in it
(an out-of-vocabulary bucket) has no own tower: HMoE gives it sum_j W_k,j(x) S_k,j(x) with every
S stopped (the scenario gate decides), IMMoE the mean of the scenario towers.

Defaults are the paper's training details (4.1): 5 experts of one 128 layer, both gates with
one 64 hidden layer, scenario towers 64-32.
"""

from typing import Sequence

import tensorflow as tf

from models.mixtures.base import Mixture, mixture_of_experts
from models.mlp import mlp
from models.registry import MIXTURES


@MIXTURES.register("hmoe")
class HMoE(Mixture):
    uses_scenario = True
    has_scenario_gate = True  # IMMoE: False

    def __init__(self, towers: Sequence[str], num_scenarios: int = 0, num_experts: int = 5,
                 expert_units: Sequence[int] = (128,), gate_units: Sequence[int] = (64,),
                 scenario_gate_units: Sequence[int] = (64,), tower_units: Sequence[int] = (64, 32),
                 dropout: float = 0.0, stop_gradient: bool = True, **kwargs):
        super().__init__(towers, num_scenarios, **kwargs)
        if self.num_scenarios < 1:
            raise ValueError(f"{type(self).__name__} needs at least one known scenario")
        self.num_experts = int(num_experts)
        self.expert_units = [int(u) for u in expert_units]
        self.gate_units = [int(u) for u in gate_units]
        self.scenario_gate_units = [int(u) for u in scenario_gate_units]
        self.tower_units = [int(u) for u in tower_units]
        self.dropout = float(dropout)
        self.stop_gradient = bool(stop_gradient)
        self.experts = [mlp(self.expert_units, f"expert_{i}", self.dropout) for i in range(self.num_experts)]
        self.gates = {k: mlp(self.gate_units, f"gate_{k}", output_units=self.num_experts) for k in self.towers}
        self.scenario_towers = {k: [mlp(self.tower_units, f"tower_{k}_scenario_{t}", self.dropout, output_units=1)
                                    for t in range(self.num_scenarios)] for k in self.towers}
        self.scenario_gates = ({k: mlp(self.scenario_gate_units, f"scenario_gate_{k}", output_units=self.num_scenarios)
                                for k in self.towers} if self.has_scenario_gate else {})

    def scenario_logits(self, x, training):
        """({tower: S_k [B, T]}, {tower: G_k [B, N]})."""
        experts = tf.stack([e(x, training=training) for e in self.experts], axis=1)  # [B, N, m]
        scores, gates = {}, {}
        for k in self.towers:
            m, gates[k] = mixture_of_experts(self.gates[k](x, training=training), experts)  # M_k(x), eq. 4
            scores[k] = tf.concat([tower(m, training=training) for tower in self.scenario_towers[k]], axis=-1)
        return scores, gates

    def combine(self, k, x, s, own, training, gates):
        """H_k [B, 1] from S_k [B, T] and the one-hot own scenario [B, T] (eq. 7)."""
        w = tf.nn.softmax(self.scenario_gates[k](x, training=training), axis=-1)  # W_k(x)
        gates[f"{k}_scenario"] = w
        if self.stop_gradient:
            s = own * s + (1.0 - own) * tf.stop_gradient(s)
        return tf.reduce_sum(w * s, axis=-1, keepdims=True)

    def mix(self, x, scenario, training, fields=None):
        if scenario is None:
            raise ValueError(f"{type(self).__name__} needs the examples' scenario")
        own = tf.one_hot(tf.reshape(tf.cast(scenario, tf.int32), [-1]), self.num_scenarios)  # OOV -> zeros
        scores, gates = self.scenario_logits(x, training)
        return {k: self.combine(k, x, scores[k], own, training, gates) for k in self.towers}, gates

    def params(self):
        return {"num_experts": self.num_experts, "expert_units": list(self.expert_units),
                "gate_units": list(self.gate_units), "scenario_gate_units": list(self.scenario_gate_units),
                "tower_units": list(self.tower_units), "dropout": self.dropout,
                "stop_gradient": self.stop_gradient}


@MIXTURES.register("immoe")
class IMMoE(HMoE):
    """HMoE's base model (section 3.2): the example's own scenario tower, no scenario gate."""

    has_scenario_gate = False

    def __init__(self, towers: Sequence[str], num_scenarios: int = 0, num_experts: int = 5,
                 expert_units: Sequence[int] = (128,), gate_units: Sequence[int] = (64,),
                 tower_units: Sequence[int] = (64, 32), dropout: float = 0.0, **kwargs):
        super().__init__(towers, num_scenarios, num_experts, expert_units, gate_units, (), tower_units,
                         dropout, stop_gradient=False, **kwargs)

    def combine(self, k, x, s, own, training, gates):
        known = tf.reduce_sum(own, axis=-1, keepdims=True)  # 0 for an out-of-vocabulary scenario
        return (tf.reduce_sum(own * s, axis=-1, keepdims=True)
                + (1.0 - known) * tf.reduce_mean(s, axis=-1, keepdims=True))

    def params(self):
        params = super().params()
        for key in ("scenario_gate_units", "stop_gradient"):
            params.pop(key)
        return params
