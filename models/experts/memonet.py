"""MemoNet's HCNet (Zhang and Zhang, "MemoNet: Memorizing All Cross Features' Representations
Efficiently via Multi-Hash Codebook Network for CTR Prediction", CIKM 2023; one of DTN's
feature-interaction modules, where it crosses a chosen subset of the fields):

- every second-order cross feature (field pair (i, j) with values (a, b)) is hashed by `hashes`
  independent hash functions into ONE codebook of `codebook_size` code vectors, shared by every
  cross feature and every hash function (the multi-hash codebook);
- its representation is a linear map of the concatenated code vectors (linear memory
  restoring), one shared map [hashes * codebook_dim -> codebook_dim];
- the cross representations, concatenated with the flat input x, go through a ReLU MLP (`units`,
  then `output_units`) -- MemoNet feeds HCNet's output to the DNN beside the embeddings.

Hashing is TensorFlow's `tf.sparse.cross_hashed` (FarmHash's Fingerprint64 of the crossed
values, keyed per hash function by `hash_key`), so the index of a cross feature is a pure
function of (field pair, a, b, hash function): deterministic across batches, processes and
exported models. The pair's index is part of the crossed values, so equal id values in
different field pairs are different cross features. What TF lacks is only the codebook lookup
around it, written here.
"""

import itertools
from typing import Optional, Sequence

import tensorflow as tf
import tf_keras as keras

from models.experts.base import X, Expert, ids_of
from models.mlp import MLP
from models.registry import EXPERTS

HASH_KEY = 0x6D656D6F  # the first hash function's key; hash function h uses HASH_KEY + h


@EXPERTS.register("memonet")
class MemoNet(Expert):
    uses_ids = True

    def __init__(self, output_units: int, codebook_size: int = 10000, codebook_dim: int = 8, hashes: int = 2,
                 id_fields: Optional[Sequence[str]] = None, units: Sequence[int] = (), dropout: float = 0.0,
                 **kwargs):
        super().__init__(output_units, **kwargs)
        if int(codebook_size) < 2 or int(codebook_dim) < 1 or int(hashes) < 1:
            raise ValueError("memonet needs codebook_size >= 2, codebook_dim >= 1 and hashes >= 1")
        self.codebook_size, self.codebook_dim, self.hashes = int(codebook_size), int(codebook_dim), int(hashes)
        self.id_fields = None if id_fields is None else [str(f) for f in id_fields]
        self.units, self.dropout = [int(u) for u in units], float(dropout)
        self.codebook = keras.layers.Embedding(self.codebook_size, self.codebook_dim, name="codebook")
        self.restore = keras.layers.Dense(self.codebook_dim, use_bias=False, name="memory_restoring")
        self.mlp = MLP(self.units + [self.output_units], self.dropout, name="mlp")

    def crossed_fields(self, ids) -> list:
        """The id fields crossed: `id_fields` in order, or every id field by name."""
        names = sorted(ids) if self.id_fields is None else self.id_fields
        missing = [n for n in names if n not in ids]
        if missing:
            raise ValueError(f"memonet: id fields {missing} not among the inputs' {sorted(ids)}")
        if len(names) < 2:
            raise ValueError(f"memonet crosses pairs of id fields; it has {names}")
        return names

    def code_indices(self, ids) -> tf.Tensor:
        """[B, P, hashes] codebook rows of the P = F(F-1)/2 second-order cross features."""
        names = self.crossed_fields(ids)
        values = tf.stack([tf.cast(tf.reshape(ids[n], [-1]), tf.int64) for n in names], axis=1)  # [B, F]
        pairs = list(itertools.combinations(range(len(names)), 2))
        first = tf.gather(values, [i for i, _ in pairs], axis=1)   # [B, P]
        second = tf.gather(values, [j for _, j in pairs], axis=1)  # [B, P]
        batch = tf.shape(values)[0]
        pair = tf.tile(tf.range(len(pairs), dtype=tf.int64)[tf.newaxis], [batch, 1])
        crossed = [tf.reshape(t, [-1, 1]) for t in (pair, first, second)]
        per_hash = [tf.reshape(tf.sparse.cross_hashed(crossed, num_buckets=self.codebook_size,
                                                      hash_key=HASH_KEY + h).values, [batch, len(pairs)])
                    for h in range(self.hashes)]
        return tf.stack(per_hash, axis=-1)

    def call(self, inputs, training=None):
        indices = self.code_indices(ids_of(inputs, "memonet"))        # [B, P, H]
        codes = self.codebook(indices)                                # [B, P, H, k]
        pairs = indices.shape[1]
        restored = self.restore(tf.reshape(codes, [-1, pairs, self.hashes * self.codebook_dim]))  # [B, P, k]
        crosses = tf.reshape(restored, [-1, pairs * self.codebook_dim])
        return self.mlp(tf.concat([inputs[X], crosses], axis=-1), training=training)

    def params(self):
        return {"codebook_size": self.codebook_size, "codebook_dim": self.codebook_dim, "hashes": self.hashes,
                "id_fields": None if self.id_fields is None else list(self.id_fields), "units": list(self.units),
                "dropout": self.dropout}
