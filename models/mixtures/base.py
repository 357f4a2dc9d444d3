"""What every mixture shares: the tower names it serves and the call interface.

A mixture maps the shared input x [B, n] (the encoders' concatenation) to one logit per tower,
{tower: u [B, 1]}. The towers are named by the heads (`models/heads`): the tasks for
independent heads, ctr / cvr for ESMM, the four ESM² sub-tasks for ESM².
"""

from typing import Dict, Optional, Sequence, Tuple

import tensorflow as tf
import tf_keras as keras


class Mixture(keras.layers.Layer):
    # Supplied by the builder, not by the YAML section (see models/registry.py).
    CONTEXT_ARGS = ("towers", "num_scenarios")
    # True when `call` needs the example's scenario index (HMoE, IMMoE).
    uses_scenario = False
    # True when `call` needs the per-field view of x (`fields`, models/experts/base.py): DTN
    # and mixtures of feature-interaction experts.
    uses_fields = False

    def __init__(self, towers: Sequence[str], num_scenarios: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.towers = list(towers)
        self.num_scenarios = int(num_scenarios)

    # Mixtures only loop over Python lists; without autograph's conversion of every nested layer
    # a functional model around one builds in seconds (models/network.py does the same).
    @tf.autograph.experimental.do_not_convert
    def call(self, x: tf.Tensor, scenario: Optional[tf.Tensor] = None, training=None,
             return_gates: bool = False, fields: Optional[dict] = None):
        logits, gates = self.mix(x, scenario, training, fields)
        return (logits, gates) if return_gates else logits

    def mix(self, x, scenario, training, fields=None) -> Tuple[Dict[str, tf.Tensor], Dict[str, tf.Tensor]]:
        """({tower: logit [B, 1]}, {gate name: softmax weights [B, n]})."""
        raise NotImplementedError

    def params(self) -> dict:
        """The constructor arguments beyond the context ones (for get_config)."""
        raise NotImplementedError

    def get_config(self):
        return {**super().get_config(), "towers": list(self.towers), "num_scenarios": self.num_scenarios,
                **self.params()}


def mixture_of_experts(gate_logits: tf.Tensor, experts: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """w = softmax(gate logits) [B, N]; sum_i w_i e_i over experts [B, N, m] -> ([B, m], w)."""
    w = tf.nn.softmax(gate_logits, axis=-1)
    return tf.reduce_sum(w[:, :, tf.newaxis] * experts, axis=1), w
