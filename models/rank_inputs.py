"""Inputs of the `rank` serving signature: R requests, each one user's context and N candidates.

Raw (pre-Transform) tensors, all with a leading request dimension R so that TF Serving's
batching can concatenate requests:

- context, once per request: `scenario` [R] string; every behaviour-sequence field
  `{s}_sequence_{f}` [R, L_s] (ids string, `age` int64 seconds; newest first, padded at the
  end with item_id "" — padded elements are ignored); the user-level dense features
  (`features.USER_DENSE_FEATURES`) [R] float32;
- candidates: the four item ids [R, N] string and `features.CANDIDATE_DENSE_FEATURES`
  [R, N] float32. No position / page / neighbours: the served model has no bias tower.

`flatten` lays these out as the Transform expects (one row per candidate, request-major; the
request's context repeated per candidate, its sequences only in the request's first row), and
`regroup` gives the transformed sequences back their request rows, so the model's encoders
run once per request.
"""

from typing import Dict

import tensorflow as tf

from models import features as F

# Inputs of `rank` with their per-request (context) or per-candidate layout.
CONTEXT_FEATURES = (F.SCENARIO,) + F.USER_DENSE_FEATURES
CANDIDATE_FEATURES = F.ITEM_ID_FEATURES + F.CANDIDATE_DENSE_FEATURES


def input_signature() -> Dict[str, tf.TensorSpec]:
    specs = {F.SCENARIO: tf.TensorSpec([None], tf.string, name=F.SCENARIO)}
    for s in F.SEQUENCES:
        for field in F.SEQUENCE_ELEMENT_FIELDS:
            name = F.sequence_feature(s, field)
            dtype = tf.int64 if field == F.SEQUENCE_AGE else tf.string
            specs[name] = tf.TensorSpec([None, None], dtype, name=name)
    for name in F.USER_DENSE_FEATURES:
        specs[name] = tf.TensorSpec([None], tf.float32, name=name)
    for name in F.ITEM_ID_FEATURES:
        specs[name] = tf.TensorSpec([None, None], tf.string, name=name)
    for name in F.CANDIDATE_DENSE_FEATURES:
        specs[name] = tf.TensorSpec([None, None], tf.float32, name=name)
    return specs


def flatten(inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """`rank` inputs -> raw features of R * N rows in the Transform's raw feature spec layout
    ([R * N, 1] scalars, sequences as SparseTensor [R * N, L] present in rows r * N only)."""
    candidates = tf.shape(inputs[F.ITEM_ID], out_type=tf.int64)
    num_requests, num_candidates = candidates[0], candidates[1]
    raw = {name: tf.reshape(inputs[name], [-1, 1]) for name in CANDIDATE_FEATURES}
    for name in CONTEXT_FEATURES:
        raw[name] = tf.reshape(tf.repeat(inputs[name], num_candidates, axis=0), [-1, 1])
    for s in F.SEQUENCES:
        item_ids = inputs[F.sequence_feature(s, F.ITEM_ID)]
        present = tf.where(tf.not_equal(item_ids, ""))  # [K, 2] (request, element)
        rows = tf.stack([present[:, 0] * num_candidates, present[:, 1]], axis=1)
        dense_shape = tf.stack([num_requests * num_candidates, tf.shape(item_ids, out_type=tf.int64)[1]])
        for field in F.SEQUENCE_ELEMENT_FIELDS:
            name = F.sequence_feature(s, field)
            raw[name] = tf.SparseTensor(rows, tf.gather_nd(inputs[name], present), dense_shape)
    return raw


def regroup(transformed: Dict[str, tf.Tensor], num_candidates) -> Dict[str, tf.Tensor]:
    """Transformed features of `flatten`'s rows -> sequences with batch R, the rest unchanged."""
    out = dict(transformed)
    n = tf.cast(num_candidates, tf.int64)
    for name in F.SEQUENCE_FEATURES:
        st = transformed[name]
        indices = tf.stack([st.indices[:, 0] // n, st.indices[:, 1]], axis=1)
        out[name] = tf.SparseTensor(indices, st.values, tf.stack([st.dense_shape[0] // n, st.dense_shape[1]]))
    return out
