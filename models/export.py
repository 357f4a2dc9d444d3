"""The served network (DMT eq. 6: no bias tower) as a tf.Module with fixed signatures.

The bias tower is never exported: the module tracks only `model.network`. With a reference
bias logit (models/calibration.py) the served probabilities are the network's at that context
(e.g. the top slot), folded in as a constant; ranking per task is unchanged.
"""

from typing import Dict, Optional

import tensorflow as tf
# Keras 2 offers no public switch for its layer traces when a tf.Module holding Keras layers is
# saved with tf.saved_model.save (only Model.save(save_traces=False), which sets this scope).
from tf_keras.src.saving.legacy.saved_model.utils import keras_option_scope

from models.network import RankingNetwork, no_autograph


class ServingModule(tf.Module):
    """`serve(features)` -> {output, "score"} [B, 1]; `serve_rank(features, N)` -> [R, N].

    `serve` has a fixed input signature (`input_signature()`, transformed features, ids and
    dense values [B, 1], sequences SparseTensor [B, None]); calling the module itself accepts
    any features dict and picks what it needs.
    """

    def __init__(self, network: RankingNetwork, reference_bias: Optional[float] = None, name: str = "serving"):
        super().__init__(name=name)
        self.network = network
        self.reference_bias = None if reference_bias is None else float(reference_bias)
        self.serve = tf.function(self._serve, input_signature=[network.input_signature()])
        self.serve_rank = tf.function(
            self._serve_rank, input_signature=[network.input_signature(), tf.TensorSpec([], tf.int32)])

    def input_signature(self) -> Dict[str, tf.TypeSpec]:
        return self.network.input_signature()

    @no_autograph
    def _serve(self, features):
        return self.network.outputs(self.network(features, training=False), bias=self.reference_bias,
                                    features=features)

    @no_autograph
    def _serve_rank(self, features, num_candidates):
        """The outputs for R requests x N candidates (see `RankingNetwork.rank`): {name: [R, N]}."""
        # the fusion's user state is per row here too (each request's context repeated per candidate)
        outputs = self.network.outputs(self.network.rank(features, num_candidates), bias=self.reference_bias,
                                       features=features)
        return {name: tf.reshape(value, [-1, num_candidates]) for name, value in outputs.items()}

    def __call__(self, features):
        return self.serve({name: features[name] for name in self.input_signature()})


def export_serving_module(model, reference_bias: Optional[float] = None) -> ServingModule:
    return ServingModule(model.network, reference_bias)


def save(module: tf.Module, path: str, signatures) -> None:
    """`tf.saved_model.save` without Keras' per-layer traces.

    Saving a module that holds Keras layers makes Keras trace every layer's `call` again, for
    Keras' own loader to revive them as layers. funnel's SavedModels are read through
    their signatures only (TF Serving, the Evaluator, `funnel serve`, the warm-up records), so
    the traces cost time and size and serve nothing: on the e2e run's DMT the logged model's
    save took 96 s with them and 33 s without. The variables, the signatures and the modules'
    own tf.functions are saved as before; a loaded module's Keras parts come back as plain
    objects holding their variables (`tests/saved_models.py` lists them).
    """
    with keras_option_scope(save_traces=False, in_tf_saved_model_scope=True):
        tf.saved_model.save(module, path, signatures=signatures)
