"""Multi-gate Mixture-of-Experts (DMT section 4.3, eq. 3; Ma et al., KDD 2018).

    w^k    = softmax(NN_G^k(x))
    f^k(x) = sum_i w_i^k e_i(x)
    u_k    = NN_U^k(f^k(x))          (a scalar utility logit per task)
"""

from typing import Sequence

import tensorflow as tf
import tf_keras as keras


class MLP(keras.layers.Layer):
    """Dense + ReLU layers (dropout after each when dropout > 0), then an optional linear
    output layer of `output_units` units."""

    def __init__(self, units: Sequence[int] = (), dropout: float = 0.0, output_units: int = 0,
                 **kwargs):
        super().__init__(**kwargs)
        self.units = [int(u) for u in units]
        self.dropout = float(dropout)
        self.output_units = int(output_units)
        self.hidden = [keras.layers.Dense(n, activation="relu", name=f"dense_{i}")
                       for i, n in enumerate(self.units)]
        self.drop = keras.layers.Dropout(self.dropout) if self.dropout else None
        self.out = keras.layers.Dense(self.output_units, name="output") if self.output_units else None

    def call(self, x, training=None):
        for layer in self.hidden:
            x = layer(x)
            if self.drop is not None:
                x = self.drop(x, training=training)
        return x if self.out is None else self.out(x)

    def get_config(self):
        return {**super().get_config(), "units": list(self.units), "dropout": self.dropout,
                "output_units": self.output_units}


def mlp(units: Sequence[int], name: str, dropout: float = 0.0, output_units: int = 0) -> MLP:
    return MLP(units, dropout, output_units, name=name)


class MMoE(keras.layers.Layer):
    """call(x [B, n]) -> {task: u_k [B, 1]}; with return_gates=True also {task: w^k [B, N]}."""

    def __init__(self, tasks: Sequence[str], num_experts: int = 4,
                 expert_units: Sequence[int] = (256, 128), gate_units: Sequence[int] = (),
                 tower_units: Sequence[int] = (64,), dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.tasks = list(tasks)
        self.num_experts = int(num_experts)
        self.expert_units = [int(u) for u in expert_units]
        self.gate_units = [int(u) for u in gate_units]
        self.tower_units = [int(u) for u in tower_units]
        self.dropout = float(dropout)
        # e_1(x) .. e_N(x): MLPs with ReLU
        self.experts = [mlp(self.expert_units, f"expert_{i}", self.dropout) for i in range(self.num_experts)]
        # NN_G^k: (hidden ReLU layers then) a linear layer to N logits, softmax below
        self.gates = {}
        self.towers = {}
        for task in self.tasks:
            self.gates[task] = mlp(self.gate_units, f"gate_{task}", output_units=self.num_experts)
            # NN_U^k: ReLU layers then a linear unit giving u_k
            self.towers[task] = mlp(self.tower_units, f"tower_{task}", self.dropout, output_units=1)

    def call(self, x, training=None, return_gates=False):
        experts = tf.stack([e(x, training=training) for e in self.experts], axis=1)  # [B, N, m]
        utilities, gates = {}, {}
        for task in self.tasks:
            w = tf.nn.softmax(self.gates[task](x, training=training), axis=-1)  # w^k   [B, N]
            f = tf.reduce_sum(w[:, :, tf.newaxis] * experts, axis=1)           # f^k(x) [B, m]
            utilities[task] = self.towers[task](f, training=training)          # u_k   [B, 1]
            gates[task] = w
        return (utilities, gates) if return_gates else utilities

    def get_config(self):
        return {**super().get_config(), "tasks": list(self.tasks), "num_experts": self.num_experts,
                "expert_units": list(self.expert_units), "gate_units": list(self.gate_units),
                "tower_units": list(self.tower_units), "dropout": self.dropout}
