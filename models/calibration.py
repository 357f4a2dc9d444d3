"""What the served probabilities mean: the bias-free network at a reference context.

DMT's eq. 6 serves sigmoid(u_k), the probability for an item examined for sure; against
logged rates it is several times too high (every logged item was examined with probability
below 1). Position-aware production rankers serve instead the probability at a fixed context
(PAL: Guo et al., "PAL: A Position-bias Aware Learning Framework for CTR Prediction in Live
Recommender Systems", RecSys 2019, serves p(click | seen) at position 1). funnel folds the
bias tower's logit at a reference context into the exported network as one constant b_ref:

    served p_k = heads(u, b_ref)   (independent heads: sigmoid(u_k + b_ref))

so the served numbers are "the probability at the reference slot" and, b_ref being one
number, each task's ranking is unchanged. The reference context (config `calibration`):
position and page (default 1 and 1) and the neighbours: `distinct` (default) replaces each
neighbour of the target's own category by another category (the most frequent one that
differs), i.e. no same-category neighbours; `observed` keeps them. b_ref is the mean of the
bias tower's logit over `examples` training examples put at that context (the neighbour
categories, and the target's own category, differ per example; the mean is over them).
"""

from typing import Any, Mapping, Optional

import tensorflow as tf

from models import features as F


def reference_features(features: Mapping[str, tf.Tensor], calibration: Mapping[str, Any]):
    """The bias features of a batch moved to the reference context."""
    out = dict(features)
    position = features[F.POSITION]
    out[F.POSITION] = tf.fill(tf.shape(position), tf.constant(int(calibration["position"]), position.dtype))
    out[F.PAGE] = tf.fill(tf.shape(features[F.PAGE]), tf.constant(int(calibration["page"]), features[F.PAGE].dtype))
    if calibration["neighbors"] == "distinct":
        neighbors = features[F.NEIGHBOR_CATEGORIES]
        target = tf.cast(tf.reshape(features[F.CATEGORY_ID], [-1, 1]), neighbors.dtype)
        # vocabulary index 0 is the most frequent category (tft.vocabulary sorts by frequency)
        other = tf.where(tf.equal(target, 0), tf.ones_like(target), tf.zeros_like(target))
        out[F.NEIGHBOR_CATEGORIES] = tf.where(tf.equal(neighbors, target), other * tf.ones_like(neighbors), neighbors)
    return out


def reference_bias(model, dataset: tf.data.Dataset, calibration: Mapping[str, Any]) -> Optional[float]:
    """b_ref: the mean bias logit over up to `calibration["examples"]` examples of `dataset`
    ((features, labels) batches) at the reference context; None when the served network has
    no reference (calibration `none`, or no bias tower)."""
    if calibration["type"] == "none" or model.bias_tower is None:
        return None
    total, count = 0.0, 0
    for features, _ in dataset:
        y_b = model.bias_tower(reference_features(features, calibration), training=False)
        total += float(tf.reduce_sum(y_b))
        count += int(y_b.shape[0])
        if count >= int(calibration["examples"]):
            break
    if count == 0:
        raise ValueError("no examples to compute the calibration's reference bias from")
    return total / count
