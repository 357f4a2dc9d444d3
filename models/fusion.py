"""Score fusion: one ranking score from the served probabilities.

- `weighted` (DMT eq. 6): score = sum_k w_k p_k / sum_k w_k;
- `product` (HMoE 4.1, "we multiply the output of click models by the output of purchase
  models as the final ranking score"): score = prod_k p_k^{w_k}, e.g. weights
  {click: 1, cvr: 1} with ESMM heads gives pCTR * pCVR.

`weights` name served outputs (the heads' tasks and extras such as `cvr`); when empty, every
task weighs 1. These two are static: the same weights for every user. The `network` fusion
(models/fusion_network.py) learns per-user weights from the user's state.
"""

from typing import Dict, Mapping, Optional, Sequence

import tensorflow as tf
import tf_keras as keras

from models.registry import FUSIONS

SMALLEST_PROBABILITY = 1.1754944e-38  # np.finfo(np.float32).tiny


class Fusion(keras.layers.Layer):
    """{output: p} (and, for a fusion that reads them, the user-state `features`) -> score [B, 1]."""

    CONTEXT_ARGS = ("outputs", "tasks")
    TRAINS = False  # trained alongside the network (models/model.py), not a fixed formula

    def __init__(self, outputs: Sequence[str], tasks: Sequence[str],
                 weights: Optional[Mapping[str, float]] = None, **kwargs):
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        self.available = list(outputs)
        self.tasks = list(tasks)
        chosen = dict(weights or {t: 1.0 for t in self.tasks})
        unknown = set(chosen) - set(self.available)
        if unknown:
            raise ValueError(f"fusion weights for outputs the heads do not serve: {sorted(unknown)}; "
                             f"served: {self.available}")
        if not chosen or any(float(w) <= 0 for w in chosen.values()):
            raise ValueError("fusion weights must be positive and name at least one output")
        self.fusion_weights = {str(k): float(v) for k, v in chosen.items()}

    @classmethod
    def section_inputs(cls, section: Mapping[str, object]) -> Sequence[str]:
        """The transformed features a fusion of this config `section` reads (none: a static one)."""
        return []

    @classmethod
    def validate_section(cls, section: Mapping[str, object], tasks: Sequence[str]) -> None:
        """Raises ValueError for arguments that cannot build (beyond the weights' checks)."""

    @property
    def input_features(self) -> Sequence[str]:
        return []

    def get_config(self):
        return {**super().get_config(), "outputs": self.available, "tasks": self.tasks,
                "weights": dict(self.fusion_weights)}


@FUSIONS.register("weighted")
class WeightedFusion(Fusion):
    def call(self, probabilities: Dict[str, tf.Tensor], features=None) -> tf.Tensor:
        total = sum(self.fusion_weights.values())
        return tf.add_n([w * probabilities[k] for k, w in self.fusion_weights.items()]) / total


@FUSIONS.register("product")
class ProductFusion(Fusion):
    def call(self, probabilities: Dict[str, tf.Tensor], features=None) -> tf.Tensor:
        # in log space, so that weights are exponents; a sigmoid can underflow to 0, so clip at
        # float32's smallest normal number (any positive probability keeps its rank)
        logs = [w * tf.math.log(tf.maximum(probabilities[k], SMALLEST_PROBABILITY))
                for k, w in self.fusion_weights.items()]
        return tf.exp(tf.add_n(logs))
