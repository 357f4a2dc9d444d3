"""What every set of heads shares.

Heads turn the mixture's tower logits into the probabilities the model is trained on (its
`tasks`, one loss each) and serves (its `outputs`: the tasks and any extra, e.g. `cvr`).
The bias tower's logit y_b (DMT eq. 4-5) is added to the logits of `bias_towers` only: every
task's for independent heads (DMT eq. 5), the click tower's for ESMM / ESM², whose later
stages are conditional on a click and so not on where the item was shown.
"""

from typing import Dict, Sequence

import tensorflow as tf
import tf_keras as keras

# Supplied by the builder (models/registry.py).
CONTEXT_ARGS = ("tasks",)


class Heads(keras.layers.Layer):
    CONTEXT_ARGS = CONTEXT_ARGS
    # The tasks these heads are defined for, in order (None: any tasks).
    TASKS = None
    EXTRA_OUTPUTS = ()

    def __init__(self, tasks: Sequence[str], **kwargs):
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        self.tasks = list(tasks)
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
        if bias is not None:
            logits = {t: (u + bias if t in self.bias_towers else u) for t, u in logits.items()}
        return self.compose({t: tf.sigmoid(u) for t, u in logits.items()})

    def compose(self, y: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        raise NotImplementedError

    def get_config(self):
        return {**super().get_config(), "tasks": list(self.tasks)}
