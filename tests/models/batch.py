"""Fabricated transformed-features batches (what the Transform outputs) for model tests."""

import numpy as np
import tensorflow as tf

from models import features as F
from models import preprocessing as P
from models.config import DEFAULT_MIXTURE, ModelConfig
from models.presets import preset_section
from models.registry import MIXTURES

# scenario: 2 known values and 1 OOV bucket (NUM_OOV_BUCKETS), so make_batch draws unknown ones too
NUM_OOV_BUCKETS = 1
# Model overrides for the end-to-end tests that train through the Trainer on the tiny world.
E2E_SMALL = {"embedding_dims": {F.ITEM_ID: 8, F.CATEGORY_ID: 4, F.BRAND_ID: 2, F.SHOP_ID: 2},
             "sequence_encoder": {"num_heads": 2}}
# The sequence encoders are most of a DMT's tracing and export time (a profile of `run_fn` here:
# 56 of the 65 s spent tracing the network's forward pass). The heavy tests whose subject is
# not the encoders (the heads and DTN-trim through `run_fn`, multi-worker training, daily warm
# starts, the ablation suite) train without sequences; the shared run (`e2e_run`) trains and
# serves the full DMT, and the parameter-server test shards its sequence tables.
NO_SEQUENCES = {"sequences": {}}
VOCAB_SIZES = {F.ITEM_ID: 40, F.CATEGORY_ID: 12, F.BRAND_ID: 15, F.SHOP_ID: 14, F.USER_ID: 20, F.SCENARIO: 3}
SEQUENCE_LENGTHS = {F.SEQUENCE_CLICK: 6, F.SEQUENCE_CART: 3, F.SEQUENCE_ORDER: 3}
LABEL_NAMES = (F.CLICK, F.CART, F.WISH, F.ORDER, F.DACTION)


# Small sizes for every part argument that sets a width or a count.
_SMALL_PART_SIZES = {"num_experts": 3, "expert_units": [16], "bottom_units": [16, 8], "tower_units": [8],
                     "attention_units": [8]}


def _shrink(section):
    small = dict(section)
    for key, value in _SMALL_PART_SIZES.items():
        if key in small and small[key]:
            small[key] = value
    for key in ("gate_units", "scenario_gate_units"):
        if small.get(key):
            small[key] = [4]
    if isinstance(small.get("dropout"), list):
        small["dropout"] = [0.1] * len(small.get("expert_units", []))
    return small


def small_config(preset: str = None, **overrides) -> ModelConfig:
    """A small, fast config (d = 16) of `preset` (default: the model defaults, i.e. dmt)."""
    section = preset_section(preset) if preset else {}
    mixture = section.get("mixture", dict(DEFAULT_MIXTURE))
    section["mixture"] = _shrink({**MIXTURES.defaults(mixture["type"]), **mixture})
    encoder = section.get("sequence_encoder", {"type": "transformer"})
    section["sequence_encoder"] = ({**encoder, "num_heads": 2, "dropout": 0.0}
                                   if encoder["type"] == "transformer" else _shrink(encoder))
    section.update(embedding_dims={F.ITEM_ID: 8, F.CATEGORY_ID: 4, F.BRAND_ID: 2, F.SHOP_ID: 2},
                   bias_units=[8] * len(section.get("bias_units", [1, 1])), bias_embedding_dim=4,
                   bucket_embedding_dim=2, num_oov_buckets=NUM_OOV_BUCKETS)
    if section.get("sequences", None) != {}:
        section["sequences"] = dict(SEQUENCE_LENGTHS)
    for key, value in overrides.items():
        section[key] = ({**section.get(key, {}), **value} if key in ("mixture", "sequence_encoder", "heads", "fusion",
                                                                      "calibration")
                        and "type" not in value else value)
    return ModelConfig.from_dict(section)


def row_lengths(batch_size: int, max_length: int) -> np.ndarray:
    """Row 0 empty, row 1 over-long (max + 3), row 2 exactly full, then 1, 2, ... elements."""
    base = [0, max_length + 3, max_length, 1, 2, max(max_length - 1, 1)]
    return np.array([base[i % len(base)] for i in range(batch_size)], np.int64)


def _sparse(rows):
    indices = [(r, c) for r, row in enumerate(rows) for c in range(len(row))]
    values = [v for row in rows for v in row]
    width = max([len(row) for row in rows] + [0])
    return tf.SparseTensor(np.array(indices, np.int64).reshape(-1, 2), np.array(values, np.int64),
                           [len(rows), width])


def make_batch(batch_size: int = 6, seed: int = 0, tail_seed: int = 1, tail_extra: int = 0,
               lengths=None, sequences=SEQUENCE_LENGTHS):
    """(features, labels) like the Transform output, batch `batch_size`.

    Sequence elements beyond a sequence's max length are drawn from `tail_seed`, so batches
    that differ only in `tail_seed` / `tail_extra` (extra elements appended to rows already at
    or over the max length) agree on everything the model may see.
    """
    rng, tail_rng = np.random.default_rng(seed), np.random.default_rng(tail_seed)
    features = {}
    for f in F.ITEM_ID_FEATURES + (F.USER_ID, F.SCENARIO):
        features[f] = tf.constant(rng.integers(0, VOCAB_SIZES[f], (batch_size, 1)), tf.int64)
    for s, max_length in sequences.items():
        counts = row_lengths(batch_size, max_length) if lengths is None else np.asarray(lengths[s])
        for field in F.SEQUENCE_ELEMENT_FIELDS:
            high = P.AGE_BUCKETS if field == F.SEQUENCE_AGE else VOCAB_SIZES[field]
            rows = []
            for n in counts:
                row = list(rng.integers(0, high, min(n, max_length)))
                extra = (n - max_length if n > max_length else 0) + (tail_extra if n >= max_length else 0)
                rows.append(row + list(tail_rng.integers(0, high, extra)))
            features[F.sequence_feature(s, field)] = _sparse(rows)
    features[F.POSITION] = tf.constant(rng.integers(1, F.MAX_POSITION + 1, (batch_size, 1)), tf.int64)
    features[F.PAGE] = tf.constant(rng.integers(1, F.MAX_PAGE + 1, (batch_size, 1)), tf.int64)
    features[F.NEIGHBOR_CATEGORIES] = tf.constant(
        rng.integers(0, VOCAB_SIZES[F.CATEGORY_ID], (batch_size, F.NUM_NEIGHBORS)), tf.int64)
    for name in F.DENSE_FEATURES:
        features[name] = tf.constant(rng.normal(size=(batch_size, 1)), tf.float32)
    for name in P.DEFAULT_TRANSFORM_CONFIG["bucketized_features"]:
        features[P.bucket_feature(name)] = tf.constant(
            rng.integers(0, P.DEFAULT_TRANSFORM_CONFIG["num_buckets"], (batch_size, 1)), tf.int64)
    labels = {name: tf.constant(rng.integers(0, 2, (batch_size, 1)), tf.float32) for name in LABEL_NAMES}
    return features, labels


def repeat_sequences(features, num_candidates):
    """Per-request features (batch R) with each request's sequences repeated for its N rows."""
    out = {}
    for name, value in features.items():
        if isinstance(value, tf.SparseTensor):
            indices, values = value.indices.numpy(), value.values.numpy()
            rows = [(r * num_candidates + k, c) for r, c in indices for k in range(num_candidates)]
            order = [i for i in range(len(indices)) for _ in range(num_candidates)]
            st = tf.SparseTensor(np.array(rows, np.int64).reshape(-1, 2), values[order],
                                 [value.dense_shape[0] * num_candidates, value.dense_shape[1]])
            out[name] = tf.sparse.reorder(st)
    return out


def rank_batch(requests: int, num_candidates: int):
    """(per_request, per_example) inputs of the `rank` signature and of per-example scoring:
    R requests' sequences (batch R) with R * N candidates' other features, and the same rows
    with each request's sequences repeated for its N candidates."""
    context, _ = make_batch(batch_size=requests, seed=5)
    candidates, _ = make_batch(batch_size=requests * num_candidates, seed=6)
    per_request = {n: v for n, v in candidates.items() if not isinstance(v, tf.SparseTensor)}
    per_request.update({n: v for n, v in context.items() if isinstance(v, tf.SparseTensor)})
    return per_request, {**per_request, **repeat_sequences(context, num_candidates)}
