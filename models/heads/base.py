"""What every set of heads shares.

Heads turn the mixture's tower logits into the probabilities the model is trained on (its
`tasks`, one loss each) and serves (its `outputs`: the tasks and any extra, e.g. `cvr`).
The bias tower's output y_b (DMT eq. 4-5) acts on `bias_towers` only: every task's for
independent heads (DMT eq. 5), the click tower's for ESMM / ESM², whose later stages are
conditional on a click and so not on where the item was shown. How it acts is `bias_combine`
(the model's, models/bias.py): "logit" adds it to the tower's logit, sigmoid(u + y_b) (DMT
eq. 5); "examination" multiplies the tower's probability by p_seen = exp(y_b), sigmoid(u) x
p_seen (PAL, Guo et al., RecSys 2019). An order needs a click, so under the examination
hypothesis the order's probability carries the same p_seen: independent heads scale both.
"""

from typing import Dict, Sequence

import tensorflow as tf
import tf_keras as keras

# How the bias tower's y_b meets the towers (the docstring; ModelConfig.bias_combine).
BIAS_COMBINE_OPTIONS = ("logit", "examination")
# Supplied by the builder (models/registry.py).
CONTEXT_ARGS = ("tasks", "bias_combine")


class Heads(keras.layers.Layer):
    CONTEXT_ARGS = CONTEXT_ARGS
    # The tasks these heads are defined for, in order (None: any tasks).
    TASKS = None
    EXTRA_OUTPUTS = ()

    def __init__(self, tasks: Sequence[str], bias_combine: str = "logit", **kwargs):
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        if bias_combine not in BIAS_COMBINE_OPTIONS:
            raise ValueError(f"bias_combine must be one of {BIAS_COMBINE_OPTIONS}, got {bias_combine!r}")
        self.tasks = list(tasks)
        self.bias_combine = bias_combine
        if self.TASKS is not None and self.tasks != list(self.TASKS):
            raise ValueError(f"heads {self.registered_name!r} need tasks {list(self.TASKS)}, got {self.tasks}")

    @property
    def towers(self) -> Sequence[str]:
        raise NotImplementedError

    @property
    def bias_towers(self) -> Sequence[str]:
        raise NotImplementedError

    @property
    def outputs(self) -> Sequence[str]:
        return list(self.tasks) + list(self.EXTRA_OUTPUTS)

    def call(self, logits: Dict[str, tf.Tensor], bias=None) -> Dict[str, tf.Tensor]:
        """{output: probability [B, 1]} from {tower: logit [B, 1]} and y_b ([B, 1], a scalar or None)."""
        return self.compose({t: self._probability(u, bias if t in self.bias_towers else None)
                             for t, u in logits.items()})

    def _probability(self, u: tf.Tensor, bias) -> tf.Tensor:
        if bias is None:
            return tf.sigmoid(u)
        if self.bias_combine == "examination":
            return tf.sigmoid(u) * tf.exp(bias)  # p(click | seen) x p_seen
        return tf.sigmoid(u + bias)  # DMT eq. 5

    def compose(self, y: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        raise NotImplementedError

    def get_config(self):
        return {**super().get_config(), "tasks": list(self.tasks), "bias_combine": self.bias_combine}
