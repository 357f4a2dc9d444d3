"""TF Transform `preprocessing_fn`: one graph for training and serving.

- ids -> vocabulary indices with OOV buckets and a frequency threshold; a sequence's
  item / category / brand / shop ids go through the same vocabulary as the target's
  (one vocabulary per id kind, computed over targets and sequence elements together);
- sequence ages -> log2 buckets; sequences stay variable-length (SparseTensor) until
  the model pads them;
- dense features -> z-score of log1p (all are non-negative and heavy-tailed counts,
  rates, prices, durations), plus quantile buckets (`tft.bucketize`) of the configured ones;
- bias features: position and page clipped to the DMT paper's maxima (400, 100),
  neighbour categories through the category vocabulary;
- labels pass through as float32, impression_id as is (for joins, not a model input), and
  request_key, a fingerprint of (user_id, request_id) (for per-request losses, not a model input).
"""

from typing import Any, Dict, Optional

import tensorflow as tf
import tensorflow_transform as tft

from models import features as F
from models.validation import is_integer

DEFAULT_TRANSFORM_CONFIG = {
    "vocab_frequency_threshold": 2,
    "num_oov_buckets": 10,
    "bucketized_features": ["item_ctr_7d", "item_impressions_7d", "item_price",
                            "user_clicks_7d", "seconds_since_last_click"],
    "num_buckets": 10,
}
AGE_BUCKETS = 27  # floor(log2(age + 1)) for ages up to 2^26 s (~2 years), clipped
# Each id kind owns one vocabulary; `vocab_name` gives its file name in the transform output.
ID_VOCABULARIES = (F.ITEM_ID, F.CATEGORY_ID, F.BRAND_ID, F.SHOP_ID, F.USER_ID, F.SCENARIO)


def vocab_name(id_feature: str) -> str:
    return f"{id_feature}_vocab"


def bucket_feature(name: str) -> str:
    return f"{name}_bucket"


def transform_config(custom_config: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    config = dict(DEFAULT_TRANSFORM_CONFIG)
    config.update((custom_config or {}).get("transform", {}))
    return config


def check_transform_config(section: Optional[Dict[str, Any]]) -> None:
    """ValueError naming the `transform:` key that is unknown (a typo would silently transform
    with the default) or whose value Transform would fail on only after the ingest. `statistics`
    is the pipeline's switch of Transform's own statistics (pipeline/pipeline.py)."""
    section = section or {}
    unknown = set(section) - set(DEFAULT_TRANSFORM_CONFIG) - {"statistics"}
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}; keys: {sorted(DEFAULT_TRANSFORM_CONFIG) + ['statistics']}")
    config = {**DEFAULT_TRANSFORM_CONFIG, **section}
    for key, least in (("vocab_frequency_threshold", 0), ("num_oov_buckets", 1), ("num_buckets", 1)):
        value = config[key]
        if not (is_integer(value) and value >= least):
            raise ValueError(f"{key} must be an integer >= {least}, got {value!r}")
    features = config["bucketized_features"]
    if not isinstance(features, list) or not set(features) <= set(F.DENSE_FEATURES):
        raise ValueError(f"bucketized_features must be a list of dense features ({', '.join(F.DENSE_FEATURES)}), "
                         f"got {features!r}")
    if not isinstance(section.get("statistics", True), bool):
        raise ValueError(f"statistics must be true or false, got {section['statistics']!r}")


def _flat(x):
    return x.values if isinstance(x, tf.SparseTensor) else tf.reshape(x, [-1])


def age_bucket(age):
    """floor(log2(age + 1)), clipped to AGE_BUCKETS - 1 (works on int64 ages)."""
    age = tf.cast(tf.maximum(age, 0), tf.float64)
    log2 = tf.math.log1p(age) / tf.math.log(tf.constant(2.0, tf.float64))
    return tf.minimum(tf.cast(tf.math.floor(log2), tf.int64), AGE_BUCKETS - 1)


def request_key(user_id, request_id):
    """int64 fingerprint of (user_id, request_id): a request belongs to one user, but ids may
    repeat across users. 63 bits: two requests of one batch collide with odds ~B^2 / 2^64."""
    joined = tf.strings.join([user_id, request_id], separator="\x1f")
    return tf.strings.to_hash_bucket_fast(joined, 2 ** 63 - 1)


def preprocessing_fn(inputs: Dict[str, Any], custom_config: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    config = transform_config(custom_config)
    outputs: Dict[str, Any] = {}

    for id_feature in ID_VOCABULARIES:
        columns = [id_feature]
        if id_feature in F.ITEM_ID_FEATURES:
            columns += [F.sequence_feature(s, id_feature) for s in F.SEQUENCES]
        if id_feature == F.CATEGORY_ID:
            columns.append(F.NEIGHBOR_CATEGORIES)
        vocabulary = tft.vocabulary(
            tf.concat([_flat(inputs[c]) for c in columns], axis=0),
            frequency_threshold=config["vocab_frequency_threshold"],
            vocab_filename=vocab_name(id_feature))
        for column in columns:
            outputs[column] = tft.apply_vocabulary(
                inputs[column], vocabulary, num_oov_buckets=config["num_oov_buckets"])

    for sequence in F.SEQUENCES:
        age = inputs[F.sequence_feature(sequence, F.SEQUENCE_AGE)]
        outputs[F.sequence_feature(sequence, F.SEQUENCE_AGE)] = tf.SparseTensor(
            age.indices, age_bucket(age.values), age.dense_shape)

    outputs[F.POSITION] = tf.clip_by_value(inputs[F.POSITION], 1, F.MAX_POSITION)
    outputs[F.PAGE] = tf.clip_by_value(inputs[F.PAGE], 1, F.MAX_PAGE)

    for name in F.DENSE_FEATURES:
        value = tf.math.log1p(tf.maximum(tf.cast(inputs[name], tf.float32), 0.0))
        outputs[name] = tft.scale_to_z_score(value)
    for name in config["bucketized_features"]:
        outputs[bucket_feature(name)] = tft.bucketize(inputs[name], config["num_buckets"])

    for label in F.LABELS:
        if label in inputs:
            outputs[label] = tf.cast(inputs[label], tf.float32)
    # Passed through (not a model input) so transformed rows can be joined back to impressions.
    outputs[F.IMPRESSION_ID] = inputs[F.IMPRESSION_ID]
    outputs[F.REQUEST_KEY] = request_key(inputs[F.USER_ID], inputs[F.REQUEST_ID])
    return outputs
