"""Bias Deep Neural Network (DMT section 4.4, eq. 4): y_b = NN_B(x_b).

Bias features (Table 5):
- "position_index": the item's index in the list (1..400),
- "position_page": its page (1..100),
- "neighboring": the categories of the target item and of its K = 6 nearest neighbours
  (nearer first), embedded with the tower's own category table and concatenated
  (`neighbors="categories"`, the paper's input), or only which of the K neighbours share the
  target's category (`neighbors="same_category"`, the paper's motivation: "a user may less
  likely click a product if it is surrounded by many similar ones in the same category").
  The paper's input lets the tower learn each target category's own click rate, which serving
  then drops with the tower; the second form carries no identity of the target, so every
  relevance signal has to be learnt by the served network;
- "all" (not in the paper, which compares them one at a time): the three concatenated, for
  logs where examination depends on position and page as well as on the neighbours.
The embeddings feed an MLP with ReLU and a linear unit giving one bias logit per example.

`combine` says what the tower's output y_b is, for the heads (models/heads/base.py):
- "logit" (DMT eq. 5): the linear unit itself, added to the towers' logits;
- "examination" (PAL: Guo et al., "PAL: A Position-bias Aware Learning Framework for CTR
  Prediction in Live Recommender Systems", RecSys 2019): log p_seen = log sigmoid(linear unit),
  so that the heads' p = sigmoid(u) x exp(y_b) is PAL's p(seen | bias features) x p(click | seen),
  the examination hypothesis (a click needs the item seen, and seeing it is independent of its
  relevance). Both are 0 where the bias is neutral (no logit shift, seen for sure), so
  observation dropout's zeroing means the same in both.

`output_dropout` p (observation dropout; not in DMT: Zhang et al., "Towards Disentangling
Relevance and Bias in Unbiased Learning to Rank", KDD 2023): in training, each example's bias
logit is zeroed with probability p (kept ones are not rescaled: a kept logit means what it
means at evaluation), so on those examples the network alone has to explain the label. When
the logging policy placed items by relevance, a tower reading position can otherwise take part
of the relevance as "bias", which serving drops with the tower.
Used in training only (eq. 5); serving (eq. 6) drops it, so every variable lives under the
name "bias_tower" and nothing outside this layer references them.
"""

import tensorflow as tf
import tf_keras as keras

from models import features as F
from models.config import BIAS_NEIGHBOR_INPUTS, BIAS_PARTS
from models.dropout import Dropout
from models.heads.base import BIAS_COMBINE_OPTIONS
from models.embedding import flat_ids

BIAS_TOWER_NAME = "bias_tower"
BIAS_FEATURE_OPTIONS = tuple(BIAS_PARTS)


class BiasTower(keras.layers.Layer):
    """call(inputs: the features dict) -> y_b [B, 1] (a logit, or log p_seen: `combine`)."""

    def __init__(self, bias_features: str = "neighboring", units=(64, 32), embedding_dim: int = 8,
                 category_vocab_size: int = 0, num_neighbors: int = F.NUM_NEIGHBORS,
                 max_position: int = F.MAX_POSITION, max_page: int = F.MAX_PAGE,
                 dropout: float = 0.0, neighbors: str = "categories", output_dropout: float = 0.0,
                 combine: str = "logit", **kwargs):
        kwargs["name"] = BIAS_TOWER_NAME
        super().__init__(**kwargs)
        if bias_features not in BIAS_FEATURE_OPTIONS:
            raise ValueError(f"bias_features must be one of {BIAS_FEATURE_OPTIONS}, got {bias_features!r}")
        if neighbors not in BIAS_NEIGHBOR_INPUTS:
            raise ValueError(f"neighbors must be one of {BIAS_NEIGHBOR_INPUTS}, got {neighbors!r}")
        if combine not in BIAS_COMBINE_OPTIONS:
            raise ValueError(f"combine must be one of {BIAS_COMBINE_OPTIONS}, got {combine!r}")
        if not 0.0 <= float(output_dropout) < 1.0:
            raise ValueError(f"output_dropout must be in [0, 1), got {output_dropout!r}")
        if "neighbors" in BIAS_PARTS[bias_features] and neighbors == "categories" and category_vocab_size <= 0:
            raise ValueError("neighboring bias needs category_vocab_size")
        self.bias_features = bias_features
        self.units = [int(u) for u in units]
        self.embedding_dim = int(embedding_dim)
        self.category_vocab_size = int(category_vocab_size)
        self.num_neighbors = int(num_neighbors)
        self.max_position = int(max_position)
        self.max_page = int(max_page)
        self.dropout = float(dropout)
        self.neighbors = neighbors
        self.output_dropout = float(output_dropout)
        self.combine = combine
        sizes = {"position": (self.max_position + 1, "position_embedding"), "page": (self.max_page + 1, "page_embedding"),
                 # its own category table, not the item embedding's (4.4)
                 "neighbors": ((self.category_vocab_size, "category_embedding") if neighbors == "categories"
                               # slot k's "shares the target's category" (0/1) as id 2k + same
                               else (2 * self.num_neighbors, "same_category_embedding"))}
        self.tables = {part: keras.layers.Embedding(sizes[part][0], self.embedding_dim, name=sizes[part][1])
                       for part in BIAS_PARTS[bias_features]}
        self.hidden = []
        for i, n in enumerate(self.units):
            self.hidden.append(keras.layers.Dense(n, activation="relu", name=f"dense_{i}"))
            if self.dropout:
                self.hidden.append(Dropout(self.dropout, name=f"dropout_{i}"))
        self.logit = keras.layers.Dense(1, name="bias_logit")

    def _part(self, part: str, inputs) -> tf.Tensor:
        if part == "position":
            return self.tables[part](tf.clip_by_value(flat_ids(inputs[F.POSITION]), 0, self.max_position))
        if part == "page":
            return self.tables[part](tf.clip_by_value(flat_ids(inputs[F.PAGE]), 0, self.max_page))
        target = flat_ids(inputs[F.CATEGORY_ID])[:, tf.newaxis]                           # [B, 1]
        neighbors = tf.reshape(inputs[F.NEIGHBOR_CATEGORIES], [-1, self.num_neighbors])   # [B, K]
        if self.neighbors == "same_category":
            same = tf.cast(tf.equal(tf.cast(neighbors, target.dtype), target), target.dtype)  # [B, K]
            slots = 2 * tf.range(self.num_neighbors, dtype=target.dtype)[tf.newaxis, :] + same
            return tf.reshape(self.tables[part](slots), [-1, self.num_neighbors * self.embedding_dim])
        categories = tf.concat([target, tf.cast(neighbors, target.dtype)], axis=1)       # [B, K + 1]
        return tf.reshape(self.tables[part](categories), [-1, (self.num_neighbors + 1) * self.embedding_dim])

    def _bias_embedding(self, inputs) -> tf.Tensor:
        return tf.concat([self._part(part, inputs) for part in BIAS_PARTS[self.bias_features]], axis=-1)

    def call(self, inputs, training=None):
        # y_b = NN_B(x_b)   (eq. 4)
        y = self._bias_embedding(inputs)
        for layer in self.hidden:
            y = layer(y, training=training)
        y = self.logit(y)
        if self.combine == "examination":
            y = tf.math.log_sigmoid(y)  # log p_seen: stable where exp(y) would underflow
        if training and self.output_dropout:
            # Hand-written: keras' Dropout rescales what it keeps by 1 / (1 - p); y_b must not be.
            kept = tf.random.uniform(tf.shape(y)) >= self.output_dropout
            y = y * tf.cast(kept, y.dtype)
        return y

    def get_config(self):
        config = super().get_config()
        config.pop("name", None)
        return {**config, "bias_features": self.bias_features, "units": list(self.units),
                "embedding_dim": self.embedding_dim, "category_vocab_size": self.category_vocab_size,
                "num_neighbors": self.num_neighbors, "max_position": self.max_position,
                "max_page": self.max_page, "dropout": self.dropout, "neighbors": self.neighbors,
                "output_dropout": self.output_dropout, "combine": self.combine}
