"""What the target-attention decoders look at, for TensorBoard and the report page: for a few
sample eval impressions, each behaviour sequence's decoder weights over its elements (DMT,
Deep Multifaceted Transformers for Multi-objective Ranking in Large-Scale E-commerce
Recommender Systems, 4.2.2: the target item attends over the encoded click, cart and order
sequences), averaged over the heads of the last decoder block.

Hand-written: the weights live inside the decoder layers (`interest_vectors(...,
return_attention_scores=True)`), which no TensorBoard or Keras callback reads.
"""

import inspect
from typing import Dict, List

import numpy as np
import tensorflow as tf

from models.gate_summary import CELL_PIXELS

SAMPLE_IMPRESSIONS = 8  # rows of each image: the first impressions of an eval batch


def _decoders_report_weights(network) -> bool:
    """Whether every sequence's interest layer can return its attention weights (a transformer
    decoder can; DIN's activation unit and mean pooling cannot)."""
    return bool(network.sequence_names) and all(
        "return_attention_scores" in inspect.signature(network.interest[s].call).parameters
        for s in network.sequence_names)


def sample_attention(model, features: Dict[str, tf.Tensor], samples: int = SAMPLE_IMPRESSIONS
                     ) -> Dict[str, Dict[str, List[List[float]]]]:
    """sequence -> {"weights": [impression][element] (mean over heads; 0 on padding), "mask":
    [impression][element] (1 where the sequence has an element)} for the first `samples`
    impressions of `features` (transformed features of one batch); {} when the model has no
    attention decoders."""
    network = model.network
    if not _decoders_report_weights(network):
        return {}
    # the whole batch through the decoders (its sequences are sparse: slicing them first costs more)
    _, weights = network.interest_vectors(features, training=False, return_attention_scores=True)
    found = {}
    for sequence in network.sequence_names:
        _, _, mask = network._sequence(sequence, features)  # pylint: disable=protected-access
        mask = tf.cast(mask[:samples], tf.float32).numpy()
        per_element = tf.reduce_mean(weights[sequence][:samples], axis=1).numpy() * mask  # [B, h, L] -> [B, L]
        found[sequence] = {"weights": per_element.tolist(), "mask": mask.tolist()}
    return found


def attention_image(weights: np.ndarray) -> np.ndarray:
    """[1, rows * CELL_PIXELS, columns * CELL_PIXELS, 1] grey levels: each impression's row scaled
    to its own largest weight (rows attend over different numbers of elements)."""
    scaled = weights / np.maximum(weights.max(axis=1, keepdims=True), 1e-12)
    image = np.kron(scaled, np.ones((CELL_PIXELS, CELL_PIXELS)))
    return image[np.newaxis, :, :, np.newaxis].astype(np.float32)


def write_attention_images(log_dir: str, attention: Dict[str, Dict[str, List[List[float]]]]) -> None:
    """One TensorBoard image per sequence, `attention/<sequence>`: rows the sample impressions,
    columns the sequence's elements (most recent first), brightest the largest weight of a row."""
    if not attention:
        return
    writer = tf.summary.create_file_writer(log_dir)
    with writer.as_default(step=0):
        for sequence, values in attention.items():
            weights = np.asarray(values["weights"], dtype=np.float64)
            lengths = np.asarray(values["mask"]).sum(axis=1).astype(int).tolist()
            tf.summary.image(f"attention/{sequence}", attention_image(weights), step=0,
                             description=f"decoder attention (mean over heads) of {len(lengths)} sample eval "
                                         f"impressions (rows) over {sequence} (columns, padding black); "
                                         f"elements per row: {lengths}")
    writer.flush()
    writer.close()
