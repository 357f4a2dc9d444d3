"""Progressive Layered Extraction and its one-level form, Customized Gate Control (Tang et al.,
"Progressive Layered Extraction (PLE): A Novel Multi-Task Learning (MTL) Model for
Personalized Recommendations", RecSys 2020, sections 4.2-4.3).

Each level j has `task_experts` experts per tower (task) and `shared_experts` shared ones.
Tower k's gate at level j mixes its own experts and the shared ones (CGC, eq. 2-4):

    g^{k,j}(x) = w^{k,j}(x) S^{k,j}(x),  w^{k,j} = softmax(W_g^{k,j} x^{k,j-1}),
    S^{k,j} = [E_{k,1} .. E_{k,m_k}, E_{s,1} .. E_{s,m_s}] applied to x^{k,j-1}

and, at every level but the last, the shared gate mixes all experts of the level (the tasks'
and the shared ones) over the shared input x^{s,j-1} (eq. 5). Level 1's inputs are all x; the
last level's g^k feed the towers: u_k = t^k(g^{k,L}(x)).
"""

from typing import Sequence

import tensorflow as tf

from models.mixtures.base import Mixture, mixture_of_experts
from models.mlp import mlp
from models.registry import MIXTURES


@MIXTURES.register("ple")
class PLE(Mixture):
    ZERO_ALLOWED_ARGS = ("task_experts", "shared_experts")  # CGC without one kind (at least one expert)

    def __init__(self, towers: Sequence[str], num_scenarios: int = 0, levels: int = 2,
                 task_experts: int = 1, shared_experts: int = 1, expert_units: Sequence[int] = (256, 128),
                 gate_units: Sequence[int] = (), tower_units: Sequence[int] = (64,), dropout: float = 0.0,
                 **kwargs):
        super().__init__(towers, num_scenarios, **kwargs)
        if int(levels) < 1 or int(task_experts) < 0 or int(shared_experts) < 0 or not expert_units:
            raise ValueError("ple needs levels >= 1, expert counts >= 0 and expert_units")
        if int(task_experts) + int(shared_experts) < 1:
            raise ValueError("ple needs at least one expert per gate")
        self.levels = int(levels)
        self.task_experts = int(task_experts)
        self.shared_experts = int(shared_experts)
        self.expert_units = [int(u) for u in expert_units]
        self.gate_units = [int(u) for u in gate_units]
        self.tower_units = [int(u) for u in tower_units]
        self.dropout = float(dropout)
        n_tasks = len(self.towers)
        self.experts, self.shared, self.task_gates, self.shared_gates = [], [], [], []
        for j in range(self.levels):
            self.experts.append({t: [mlp(self.expert_units, f"level_{j}_{t}_expert_{i}", self.dropout)
                                     for i in range(self.task_experts)] for t in self.towers})
            self.shared.append([mlp(self.expert_units, f"level_{j}_shared_expert_{i}", self.dropout)
                                for i in range(self.shared_experts)])
            self.task_gates.append({t: mlp(self.gate_units, f"level_{j}_{t}_gate",
                                           output_units=self.task_experts + self.shared_experts)
                                    for t in self.towers})
            # the shared gate of inner levels selects among every expert of the level (eq. 5)
            self.shared_gates.append(
                mlp(self.gate_units, f"level_{j}_shared_gate",
                    output_units=n_tasks * self.task_experts + self.shared_experts)
                if j < self.levels - 1 else None)
        self.tower_nets = {t: mlp(self.tower_units, f"tower_{t}", self.dropout, output_units=1)
                           for t in self.towers}

    def mix(self, x, scenario, training, fields=None):
        inputs = {t: x for t in self.towers}
        shared_input = x
        gates = {}
        for j in range(self.levels):
            own = {t: [e(inputs[t], training=training) for e in self.experts[j][t]] for t in self.towers}
            shared = [e(shared_input, training=training) for e in self.shared[j]]
            outputs = {}
            for t in self.towers:
                outputs[t], w = mixture_of_experts(self.task_gates[j][t](inputs[t], training=training),
                                                   tf.stack(own[t] + shared, axis=1))
                gates[t if j == self.levels - 1 else f"level_{j}_{t}"] = w
            if self.shared_gates[j] is not None:
                every = [e for t in self.towers for e in own[t]] + shared
                shared_input, gates[f"level_{j}_shared"] = mixture_of_experts(
                    self.shared_gates[j](shared_input, training=training), tf.stack(every, axis=1))
            inputs = outputs
        return {t: self.tower_nets[t](inputs[t], training=training) for t in self.towers}, gates

    def params(self):
        return {"levels": self.levels, "task_experts": self.task_experts, "shared_experts": self.shared_experts,
                "expert_units": list(self.expert_units), "gate_units": list(self.gate_units),
                "tower_units": list(self.tower_units), "dropout": self.dropout}
