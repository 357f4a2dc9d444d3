"""Input and embedding layers (DMT section 4.1).

- `ItemEmbedding`: e_i = concat(e_p, e_c, e_b, e_s) (4.1.1), one table per id kind. The same
  instance embeds the target item and every sequence element (the Transform maps both through
  the same vocabulary per id kind).
- `SequenceInput`: the Transform's SparseTensors of one behaviour sequence -> dense [B, L] ids
  and ages, padded with 0 and truncated to the first L (newest) elements, plus a bool mask.
- `ContextInput`: z-scored dense features (4.1.2), embeddings of their quantile buckets and,
  optionally, of the scenario, concatenated into one [B, n] tensor.
"""

from typing import Dict, List, Optional, Sequence

import tensorflow as tf
import tf_keras as keras

from models import features as F
from models import preprocessing as P


def flat_ids(x: tf.Tensor) -> tf.Tensor:
    """[B, 1] (or [B]) int ids -> [B]."""
    return tf.reshape(x, [-1])


def as_sparse(x) -> tf.SparseTensor:
    if isinstance(x, tf.RaggedTensor):
        return x.to_sparse()
    if isinstance(x, tf.SparseTensor):
        return x
    raise TypeError(f"a behaviour sequence must be a SparseTensor or RaggedTensor, got {type(x)}")


class ItemEmbedding(keras.layers.Layer):
    """Four embedding tables (item, category, brand, shop); output e_i = concat (4.1.1).

    call(ids) with ids a dict id_feature -> int tensor of any shape S gives [*S, d].
    """

    def __init__(self, vocab_sizes: Dict[str, int], embedding_dims: Dict[str, int], **kwargs):
        super().__init__(**kwargs)
        self.vocab_sizes = {f: int(vocab_sizes[f]) for f in F.ITEM_ID_FEATURES}
        self.embedding_dims = {f: int(embedding_dims[f]) for f in F.ITEM_ID_FEATURES}
        self.tables = {
            f: keras.layers.Embedding(self.vocab_sizes[f], self.embedding_dims[f], name=f"{f}_embedding")
            for f in F.ITEM_ID_FEATURES}

    @property
    def output_dim(self) -> int:
        return sum(self.embedding_dims.values())

    def call(self, ids: Dict[str, tf.Tensor]) -> tf.Tensor:
        return tf.concat([self.tables[f](ids[f]) for f in F.ITEM_ID_FEATURES], axis=-1)

    def embed_target(self, inputs: Dict[str, tf.Tensor]) -> tf.Tensor:
        """The target item's e_i: [B, d]."""
        return self({f: flat_ids(inputs[f]) for f in F.ITEM_ID_FEATURES})

    def get_config(self):
        return {**super().get_config(), "vocab_sizes": dict(self.vocab_sizes),
                "embedding_dims": dict(self.embedding_dims)}


class SequenceInput(keras.layers.Layer):
    """One behaviour sequence's SparseTensors -> ({field: [B, L] int64}, mask [B, L] bool).

    Element j of a row is column j of its SparseTensor (0 = newest). Elements at columns >= L
    are dropped; padded positions hold 0 and mask False. All fields share the sparsity pattern
    of `{sequence}_sequence_item_id`, which defines the mask. No weights.
    """

    def __init__(self, sequence: str, max_length: int, **kwargs):
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        self.sequence = sequence
        self.max_length = int(max_length)

    def _dense(self, st: tf.SparseTensor, batch_size) -> tf.Tensor:
        keep = st.indices[:, 1] < self.max_length
        indices = tf.boolean_mask(st.indices, keep)
        values = tf.boolean_mask(st.values, keep)
        dense = tf.scatter_nd(indices, values, tf.stack([batch_size, tf.constant(self.max_length, tf.int64)]))
        return tf.ensure_shape(dense, [None, self.max_length])

    def call(self, inputs: Dict[str, tf.Tensor]):
        reference = as_sparse(inputs[F.sequence_feature(self.sequence, F.ITEM_ID)])
        batch_size = reference.dense_shape[0]
        ones = tf.SparseTensor(reference.indices, tf.ones_like(reference.values, tf.int32),
                               reference.dense_shape)
        mask = self._dense(ones, batch_size) > 0
        ids = {}
        for field in F.SEQUENCE_ELEMENT_FIELDS:
            st = as_sparse(inputs[F.sequence_feature(self.sequence, field)])
            ids[field] = tf.where(mask, tf.cast(self._dense(st, batch_size), tf.int64), tf.zeros([], tf.int64))
        return ids, mask

    def get_config(self):
        return {**super().get_config(), "sequence": self.sequence, "max_length": self.max_length}


class ContextInput(keras.layers.Layer):
    """concat(dense features [B, n_d], bucket embeddings [B, n_b * k], scenario embedding)."""

    def __init__(self, dense_features: Sequence[str] = F.DENSE_FEATURES,
                 bucketized_features: Sequence[str] = (), num_buckets: int = 10,
                 bucket_embedding_dim: int = 8, scenario_vocab_size: int = 0,
                 scenario_embedding_dim: int = 8, **kwargs):
        super().__init__(**kwargs)
        self.dense_features = list(dense_features)
        self.bucketized_features = list(bucketized_features)
        self.num_buckets = int(num_buckets)
        self.bucket_embedding_dim = int(bucket_embedding_dim)
        self.scenario_vocab_size = int(scenario_vocab_size)
        self.scenario_embedding_dim = int(scenario_embedding_dim)
        self.bucket_tables = {
            name: keras.layers.Embedding(self.num_buckets, self.bucket_embedding_dim, name=f"{name}_bucket_embedding")
            for name in self.bucketized_features}
        self.scenario_table = (
            keras.layers.Embedding(self.scenario_vocab_size, self.scenario_embedding_dim, name="scenario_embedding")
            if self.scenario_vocab_size > 0 else None)
        if not self.output_dim:
            raise ValueError("ContextInput with no features")

    @property
    def output_dim(self) -> int:
        return (len(self.dense_features) + len(self.bucketized_features) * self.bucket_embedding_dim
                + (self.scenario_embedding_dim if self.scenario_table is not None else 0))

    def call(self, inputs: Dict[str, tf.Tensor]) -> tf.Tensor:
        return tf.concat(self.fields(inputs), axis=-1)

    def fields(self, inputs: Dict[str, tf.Tensor]) -> List[tf.Tensor]:
        """The output's fields, in order: the dense features together [B, n_d] (one field: a
        single scalar is no embedding), each bucket embedding, the scenario embedding."""
        parts = []
        if self.dense_features:
            parts.append(tf.concat([tf.reshape(tf.cast(inputs[name], tf.float32), [-1, 1])
                                    for name in self.dense_features], axis=-1))
        parts += [self.bucket_tables[name](flat_ids(inputs[P.bucket_feature(name)]))
                  for name in self.bucketized_features]
        if self.scenario_table is not None:
            parts.append(self.scenario_table(flat_ids(inputs[F.SCENARIO])))
        return parts

    def field_ids(self, inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        """The categorical fields' ids [B]: each bucketized feature's bucket, the scenario."""
        ids = {P.bucket_feature(name): flat_ids(inputs[P.bucket_feature(name)]) for name in self.bucketized_features}
        if self.scenario_table is not None:
            ids[F.SCENARIO] = flat_ids(inputs[F.SCENARIO])
        return ids

    def get_config(self):
        return {**super().get_config(), "dense_features": list(self.dense_features),
                "bucketized_features": list(self.bucketized_features), "num_buckets": self.num_buckets,
                "bucket_embedding_dim": self.bucket_embedding_dim,
                "scenario_vocab_size": self.scenario_vocab_size,
                "scenario_embedding_dim": self.scenario_embedding_dim}


def context_input_from_config(config, vocab_sizes: Dict[str, int], name: str = "context") -> Optional[ContextInput]:
    """The ContextInput a ModelConfig asks for, or None when it asks for none."""
    dense = list(F.DENSE_FEATURES) if config.use_dense_features else []
    buckets = list(config.bucketized_features) if config.uses_buckets else []
    scenario = int(vocab_sizes[F.SCENARIO]) if config.use_scenario else 0
    if not dense and not buckets and not scenario:
        return None
    return ContextInput(dense, buckets, config.num_buckets, config.bucket_embedding_dim,
                        scenario, config.scenario_embedding_dim, name=name)
