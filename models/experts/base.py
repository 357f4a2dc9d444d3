"""What every expert shares: the input it reads and its output width.

An expert maps the mixture's input to one representation [B, output_units]. Plain MLP experts
read only the flat input x [B, n] (the concatenation the mixture sees); feature-interaction
experts also need the per-field view of the same example, which the builder passes beside it
(models/network.py `field_inputs`):

    {"x":      [B, n] float,                  the flat mixture input
     "fields": [[B, k_1], ..., [B, k_F]] float, the per-field embeddings x is made of
                                               (each sequence's interest vector, the target's id
                                               embeddings, the dense features as one field, ...)
     "ids":    {name: [B] int64},              the categorical fields' ids (for hashing crosses)}

`output_units` is a context argument (models/registry.py): the mixture sets it so that every
expert it mixes has the same width.
"""

from typing import Dict, List

import tensorflow as tf
import tf_keras as keras

from models.registry import EXPERTS

X, FIELDS, IDS = "x", "fields", "ids"


class Expert(keras.layers.Layer):
    CONTEXT_ARGS = ("output_units",)
    # whether the expert reads `fields` / `ids` (the builder only assembles them when needed)
    uses_fields = False
    uses_ids = False

    def __init__(self, output_units: int, **kwargs):
        super().__init__(**kwargs)
        if int(output_units) < 1:
            raise ValueError(f"{type(self).__name__} needs output_units >= 1")
        self.output_units = int(output_units)

    def call(self, inputs: Dict, training=None) -> tf.Tensor:
        raise NotImplementedError

    def params(self) -> dict:
        raise NotImplementedError

    def get_config(self):
        return {**super().get_config(), "output_units": self.output_units, **self.params()}


def reads_fields(section: Dict) -> bool:
    """Whether the expert a config section names needs the builder's per-field view."""
    kind = EXPERTS.get(section["type"])
    return kind.uses_fields or kind.uses_ids


def expert_inputs(x: tf.Tensor, fields=None) -> Dict:
    """The dict an expert reads: x, and the builder's per-field view when it has one."""
    return {X: x, **(fields or {})}


def fields_of(inputs: Dict, who: str) -> List[tf.Tensor]:
    if not inputs.get(FIELDS):
        raise ValueError(f"{who} needs the per-field embeddings (the builder's `fields`)")
    return list(inputs[FIELDS])


def ids_of(inputs: Dict, who: str) -> Dict[str, tf.Tensor]:
    if not inputs.get(IDS):
        raise ValueError(f"{who} needs the categorical fields' ids (the builder's `ids`)")
    return dict(inputs[IDS])
