"""The bias-free ranking network: encoders -> mixture -> tower logits, with its heads and
score fusion. Everything the served model contains (DMT eq. 6 drops only the bias tower).

    e_i (DMT 4.1) -> one encoder per behaviour sequence (4.2: Deep Interest Transformer; or DIN)
    x = concat(interest vectors, e_target, dense features, bucket / scenario embeddings)
    {tower: u} = mixture(x [, scenario] [, fields])  (shared bottom / MMoE / PLE / HMoE / IMMoE / DTN;
                                                      fields: x per field, for interaction experts)
    {output: p} = heads({tower: u}, y_b)            (independent / ESMM / ESM²)
    score = fusion({output: p} [, user state])      (eq. 6 weighted / product / network: per-user
                                                     weights, models/fusion_network.py)

The parts come from the registries (models/registry.py) by the config's nested sections.
"""

from typing import Dict, Mapping

import tensorflow as tf
import tf_keras as keras
import tensorflow_recommenders as tfrs

from models import features as F
from models import preprocessing as P
from models.config import ModelConfig
from models.embedding import ItemEmbedding, SequenceInput, context_input_from_config, flat_ids
from models.experts.base import FIELDS, IDS
from models.registry import FUSIONS, HEADS, MIXTURES, SEQUENCE_ENCODERS

SCORE = "score"
# The forward passes only loop over Python lists (no tensor-dependent control flow), so
# autograph's source conversion of every nested layer (~10 s per trace) is skipped.
no_autograph = tf.autograph.experimental.do_not_convert


def as_config(model_config) -> ModelConfig:
    return model_config if isinstance(model_config, ModelConfig) else ModelConfig.from_dict(dict(model_config))


def known_scenarios(config: ModelConfig, vocab_sizes: Mapping[str, int]) -> int:
    """Scenarios in the Transform's vocabulary (its size less the OOV buckets)."""
    return max(int(vocab_sizes.get(F.SCENARIO, 0)) - config.num_oov_buckets, 0)


def serving_input_signature(config: ModelConfig) -> Dict[str, tf.TypeSpec]:
    """Specs of the transformed features the network reads (no bias features)."""
    ids = tf.TensorSpec([None, 1], tf.int64)
    specs = {name: ids for name in F.ITEM_ID_FEATURES}
    for s in config.sequences:
        for field in F.SEQUENCE_ELEMENT_FIELDS:
            specs[F.sequence_feature(s, field)] = tf.SparseTensorSpec([None, None], tf.int64)
    if config.use_dense_features:
        specs.update({name: tf.TensorSpec([None, 1], tf.float32) for name in F.DENSE_FEATURES})
    if config.uses_buckets:
        specs.update({P.bucket_feature(name): ids for name in config.bucketized_features})
    if config.uses_scenario:
        specs[F.SCENARIO] = ids
    # what the fusion reads (the fusion network's user state): user-level dense features and the scenario
    for name in FUSIONS.get(config.fusion["type"]).section_inputs(config.fusion):
        specs[name] = ids if name == F.SCENARIO else tf.TensorSpec([None, 1], tf.float32)
    return specs


class RankingNetwork(keras.layers.Layer):
    """features dict -> {tower: logit [B, 1]}; `heads` and `fusion` turn them into outputs."""

    def __init__(self, model_config, vocab_sizes: Mapping[str, int], **kwargs):
        kwargs.setdefault("name", "network")
        super().__init__(**kwargs)
        c = self.model_config = as_config(model_config)
        self.vocab_sizes = {k: int(v) for k, v in vocab_sizes.items()}
        self.sequence_names = list(c.sequences)
        # one ItemEmbedding for the target and all sequence elements (4.1.1)
        self.item_embedding = ItemEmbedding(self.vocab_sizes, c.embedding_dims, name="item_embedding")
        self.sequence_inputs = {s: SequenceInput(s, c.sequences[s], name=f"{s}_sequence_input")
                                for s in self.sequence_names}
        # separate parameters per sequence type (4.2.1)
        encoder = c.sequence_encoder["type"]
        self.interest = {s: SEQUENCE_ENCODERS.build(c.sequence_encoder, max_length=c.sequences[s],
                                                    name=f"{s}_interest_{encoder}")
                         for s in self.sequence_names}
        self.context = context_input_from_config(c, self.vocab_sizes)
        # TFRS's DCN-V2 cross layer (tfrs.layers.dcn.Cross), full rank
        self.cross = [tfrs.layers.dcn.Cross(name=f"cross_{i}") for i in range(int(c.cross_layers))]
        self.heads = HEADS.build(c.heads, tasks=c.tasks, bias_combine=c.bias_combine, name="heads")
        self.mixture = MIXTURES.build(c.mixture, towers=self.heads.towers,
                                      num_scenarios=known_scenarios(c, self.vocab_sizes), name=c.mixture["type"])
        fusion_context = ({"scenario_vocabulary": int(self.vocab_sizes.get(F.SCENARIO, 0))}
                          if "scenario_vocabulary" in FUSIONS.get(c.fusion["type"]).CONTEXT_ARGS else {})
        self.fusion = FUSIONS.build(c.fusion, outputs=self.heads.outputs, tasks=c.tasks, name="fusion",
                                    **fusion_context)

    def _sequence(self, s: str, inputs):
        """One behaviour sequence: (e_i of its elements [B, L, d], age buckets [B, L], mask [B, L])."""
        ids, mask = self.sequence_inputs[s](inputs)
        return self.item_embedding({f: ids[f] for f in F.ITEM_ID_FEATURES}), ids[F.SEQUENCE_AGE], mask

    def _target(self, inputs):
        target = self.item_embedding.embed_target(inputs)
        if self.model_config.embedding_l2:
            # L2 on the looked-up embeddings of the batch (the authors' l2_emb_lambda)
            self.add_loss(self.model_config.embedding_l2 * tf.reduce_mean(tf.reduce_sum(tf.square(target), -1)))
        return target

    def interest_vectors(self, inputs, training=None, return_attention_scores=False, target=None):
        """{sequence: interest vector [B, d]} (and {sequence: decoder weights [B, h, L]})."""
        if target is None:
            target = self.item_embedding.embed_target(inputs)
        vectors, weights = {}, {}
        for s in self.sequence_names:
            kwargs = {"return_attention_scores": True} if return_attention_scores else {}
            out = self.interest[s](*self._sequence(s, inputs), target, training=training, **kwargs)
            vectors[s], weights[s] = out if return_attention_scores else (out, None)
        return (vectors, weights) if return_attention_scores else vectors

    def call(self, inputs, training=None, return_gates=False):
        return self._logits(inputs, training, return_gates)

    @no_autograph
    def _logits(self, inputs, training, return_gates):
        target = self._target(inputs)
        vectors = self.interest_vectors(inputs, training=training, target=target)
        return self._mix([vectors[s] for s in self.sequence_names], target, inputs, training, return_gates)

    def _mix(self, interests, target, inputs, training, return_gates=False):
        """The mixture on concat(interest vectors, e_target, context) -> {tower: u}."""
        parts = list(interests)
        if self.model_config.use_target_embedding or not parts:
            parts.append(target)
        if self.context is not None:
            parts.append(self.context(inputs))
        scenario = flat_ids(inputs[F.SCENARIO]) if self.mixture.uses_scenario else None
        x = x0 = tf.concat(parts, axis=-1)
        for layer in self.cross:
            x = layer(x0, x)  # x_{l+1} = x_0 * (W_l x_l + b_l) + x_l   (DCN-V2 eq. 1)
        fields = self.field_inputs(interests, target, inputs) if self.mixture.uses_fields else None
        return self.mixture(x, scenario=scenario, training=training, return_gates=return_gates, fields=fields)

    def field_inputs(self, interests, target, inputs) -> Dict[str, object]:
        """The per-field view of the mixture input for feature-interaction experts
        (models/experts/base.py): each sequence's interest vector, the target's id embeddings
        (item, category, brand, shop) and the context's fields; and the categorical ids (the
        target's four, the buckets', the scenario's)."""
        dims = [self.item_embedding.embedding_dims[f] for f in F.ITEM_ID_FEATURES]
        embeddings = list(interests) + tf.split(target, dims, axis=-1)
        ids = {f: flat_ids(inputs[f]) for f in F.ITEM_ID_FEATURES}
        if self.context is not None:
            embeddings += self.context.fields(inputs)
            ids.update(self.context.field_ids(inputs))
        return {FIELDS: embeddings, IDS: ids}

    @no_autograph
    def rank(self, inputs, num_candidates) -> Dict[str, tf.Tensor]:
        """{tower: u [R * N, 1]} for R requests of N candidates each, sharing each request's
        sequence encoders (the JD serving optimisation): sequence features have batch R (one user
        context per request), all other features batch R * N (request-major).

        Every behaviour sequence's encoder runs once per request; the target attention, the
        context and the mixture run per candidate. Equal to `call` on the R * N rows with each
        request's sequences repeated (up to float rounding).
        """
        target = self.item_embedding.embed_target(inputs)  # [R * N, d]
        width = target.shape[-1]
        targets = tf.reshape(target, [-1, num_candidates, width])  # [R, N, d]
        interests = [tf.reshape(self.interest[s].call_shared(*self._sequence(s, inputs), targets, training=False),
                                [-1, width])  # sequences [R, L] -> [R, N, d] -> [R * N, d]
                     for s in self.sequence_names]
        return self._mix(interests, target, inputs, training=False)

    def outputs(self, logits: Mapping[str, tf.Tensor], bias=None, features=None) -> Dict[str, tf.Tensor]:
        """{output: probability} and "score" (the fusion) from tower logits and a bias logit;
        `features` (the network's inputs): what a fusion reading the user's state needs."""
        outputs = self.heads(dict(logits), bias=bias)
        reads = self.fusion.input_features
        if reads and features is None:
            raise ValueError(f"the {self.model_config.fusion['type']} fusion reads {list(reads)}: pass `features`")
        outputs[SCORE] = (self.fusion(outputs, features={k: features[k] for k in reads}) if reads
                          else self.fusion(outputs))
        return outputs

    def input_signature(self) -> Dict[str, tf.TypeSpec]:
        return serving_input_signature(self.model_config)

    def get_config(self):
        return {**super().get_config(), "model_config": self.model_config.to_dict(),
                "vocab_sizes": dict(self.vocab_sizes)}
