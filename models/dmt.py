"""DMT: Deep Multifaceted Transformers for multi-objective ranking (Gu et al., CIKM 2020).

    e_i (4.1) -> one Deep Interest Transformer per behaviour sequence (4.2) -> interest vectors
    x = concat(interest vectors, e_target, dense features, bucket / scenario embeddings)
    u_k = MMoE_k(x) (eq. 3);  y_b = NN_B(bias features) (eq. 4)
    training (eq. 5):  y_k = sigmoid(u_k + y_b),  L = sum_k lambda_k BCE(y_k, label_k)
    serving  (eq. 6):  yhat_k = sigmoid(u_k),  score = sum_k w_k yhat_k / sum_k w_k

The utility part (everything but the bias tower) is one layer, `DMTUtility`; the model adds the
bias tower; `export_serving_module` wraps only the utility layer, so the exported object does
not track any bias-tower variable.
"""

from typing import Dict, Mapping, Optional

import tensorflow as tf
import tf_keras as keras

from models import features as F
from models import preprocessing as P
from models.bias import BiasTower
from models.config import ModelConfig
from models.embedding import ItemEmbedding, SequenceInput, context_input_from_config
from models.mmoe import MMoE
from models.transformer import DeepInterestTransformer

SCORE = "score"
# The forward passes only loop over Python lists (no tensor-dependent control flow), so
# autograph's source conversion of every nested layer (~10 s per trace) is skipped.
no_autograph = tf.autograph.experimental.do_not_convert


def _as_config(model_config) -> ModelConfig:
    return model_config if isinstance(model_config, ModelConfig) else ModelConfig.from_dict(dict(model_config))


def serving_input_signature(config: ModelConfig, sequences: bool = True) -> Dict[str, tf.TypeSpec]:
    """Specs of the transformed features the utility network reads (no bias features)."""
    ids = tf.TensorSpec([None, 1], tf.int64)
    specs = {name: ids for name in F.ITEM_ID_FEATURES}
    if sequences:
        for s in config.sequences:
            for field in F.SEQUENCE_ELEMENT_FIELDS:
                specs[F.sequence_feature(s, field)] = tf.SparseTensorSpec([None, None], tf.int64)
    if config.use_dense_features:
        specs.update({name: tf.TensorSpec([None, 1], tf.float32) for name in F.DENSE_FEATURES})
    if config.uses_buckets:
        specs.update({P.bucket_feature(name): ids for name in config.bucketized_features})
    if config.use_scenario:
        specs[F.SCENARIO] = ids
    return specs


def serving_outputs_from_logits(logits: Mapping[str, tf.Tensor], fusion_weights: Mapping[str, float]):
    """eq. 6: {task: sigmoid(u_k)} and "score" = sum_k w_k sigmoid(u_k) / sum_k w_k, each [B, 1]."""
    outputs = {task: tf.sigmoid(u) for task, u in logits.items()}
    total = float(sum(fusion_weights[t] for t in logits))
    outputs[SCORE] = tf.add_n([fusion_weights[t] * outputs[t] for t in logits]) / total
    return outputs


class DMTUtility(keras.layers.Layer):
    """Everything of DMT but the bias tower: features dict -> {task: u_k [B, 1]}."""

    def __init__(self, model_config, vocab_sizes: Mapping[str, int], **kwargs):
        kwargs.setdefault("name", "dmt_utility")
        super().__init__(**kwargs)
        c = self.model_config = _as_config(model_config)
        self.vocab_sizes = {k: int(v) for k, v in vocab_sizes.items()}
        self.sequence_names = list(c.sequences)
        # one ItemEmbedding for the target and all sequence elements (4.1.1)
        self.item_embedding = ItemEmbedding(self.vocab_sizes, c.embedding_dims, name="item_embedding")
        self.sequence_inputs = {s: SequenceInput(s, c.sequences[s], name=f"{s}_sequence_input")
                                for s in self.sequence_names}
        # separate parameters per sequence type (4.2.1)
        self.interest = {
            s: DeepInterestTransformer(c.sequences[s], c.num_heads, c.ffn_units, c.dropout,
                                       c.encoder_blocks, c.decoder_blocks, c.positional, c.recency,
                                       name=f"{s}_interest_transformer")
            for s in self.sequence_names}
        self.context = context_input_from_config(c, self.vocab_sizes)
        self.mmoe = MMoE(c.tasks, c.num_experts, c.expert_units, c.gate_units, c.tower_units, name="mmoe")

    def _sequence(self, s: str, inputs):
        """One behaviour sequence: (e_i of its elements [B, L, d], age buckets [B, L], mask [B, L])."""
        ids, mask = self.sequence_inputs[s](inputs)
        return self.item_embedding({f: ids[f] for f in F.ITEM_ID_FEATURES}), ids[F.SEQUENCE_AGE], mask

    def interest_vectors(self, inputs, training=None, return_attention_scores=False, target=None):
        """{sequence: interest vector [B, d]} (and {sequence: decoder weights [B, h, L]})."""
        if target is None:
            target = self.item_embedding.embed_target(inputs)
        vectors, weights = {}, {}
        for s in self.sequence_names:
            out = self.interest[s](*self._sequence(s, inputs), target, training=training,
                                   return_attention_scores=return_attention_scores)
            vectors[s], weights[s] = out if return_attention_scores else (out, None)
        return (vectors, weights) if return_attention_scores else vectors

    def call(self, inputs, training=None, return_gates=False):
        return self._utilities(inputs, training, return_gates)

    @no_autograph
    def _utilities(self, inputs, training, return_gates):
        target = self.item_embedding.embed_target(inputs)
        vectors = self.interest_vectors(inputs, training=training, target=target)
        return self._towers([vectors[s] for s in self.sequence_names], target, inputs, training, return_gates)

    def _towers(self, interests, target, inputs, training, return_gates=False):
        """MMoE (eq. 3) on concat(interest vectors, e_target, context) -> {task: u_k}."""
        parts = list(interests)
        if self.model_config.use_target_embedding:
            parts.append(target)
        if self.context is not None:
            parts.append(self.context(inputs))
        return self.mmoe(tf.concat(parts, axis=-1), training=training, return_gates=return_gates)

    @no_autograph
    def rank(self, inputs, num_candidates) -> Dict[str, tf.Tensor]:
        """{task: u_k [R * N, 1]} for R requests of N candidates each, sharing each request's
        encoders (the JD serving optimisation): sequence features have batch R (one user
        context per request), all other features batch R * N (request-major).

        The encoder of every behaviour sequence runs once per request; the target-attention
        decoder, the context features and MMoE run per candidate. Equal to `call` on the R * N
        rows with each request's sequences repeated (up to float rounding).
        """
        target = self.item_embedding.embed_target(inputs)  # [R * N, d]
        width = target.shape[-1]
        targets = tf.reshape(target, [-1, num_candidates, width])  # [R, N, d]
        interests = [tf.reshape(self.interest[s].call_shared(*self._sequence(s, inputs), targets, training=False),
                                [-1, width])  # sequences [R, L] -> [R, N, d] -> [R * N, d]
                     for s in self.sequence_names]
        return self._towers(interests, target, inputs, training=False)

    def input_signature(self) -> Dict[str, tf.TypeSpec]:
        return serving_input_signature(self.model_config)

    def get_config(self):
        return {**super().get_config(), "model_config": self.model_config.to_dict(),
                "vocab_sizes": dict(self.vocab_sizes)}


class RankingModel(keras.Model):
    """Training model: call -> {task: sigmoid(u_k + y_b)} (eq. 5); y_b = 0 without bias tower."""

    def __init__(self, utility: keras.layers.Layer, bias_tower: Optional[BiasTower],
                 model_config: ModelConfig, vocab_sizes: Mapping[str, int], **kwargs):
        super().__init__(**kwargs)
        self.utility = utility
        self.bias_tower = bias_tower
        self.model_config = model_config
        self.vocab_sizes = {k: int(v) for k, v in vocab_sizes.items()}
        self.tasks = list(model_config.tasks)

    def call(self, inputs, training=None):
        return self._probabilities(inputs, training)

    @no_autograph
    def _probabilities(self, inputs, training):
        logits = self.utility(inputs, training=training)
        if self.bias_tower is None:
            return {task: tf.sigmoid(u) for task, u in logits.items()}
        y_b = self.bias_tower(inputs, training=training)
        return {task: tf.sigmoid(u + y_b) for task, u in logits.items()}  # y_k = sigma(u_k + y_b)

    def _task_labels(self, y):
        """Labels dicts may carry every label (click, cart, ...): keep the model's tasks."""
        return {t: y[t] for t in self.tasks} if isinstance(y, Mapping) else y

    # tf_keras internals are written for graph mode without autograph (TF's autograph skips the
    # `keras` package but not `tf_keras`); converting them per variable costs ~20 s per trace.
    def train_step(self, data):
        return no_autograph(super().train_step)(data)

    def test_step(self, data):
        return no_autograph(super().test_step)(data)

    def predict_step(self, data):
        return no_autograph(super().predict_step)(data)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None):
        return super().compute_loss(x, self._task_labels(y), y_pred, sample_weight)

    def compute_metrics(self, x, y, y_pred, sample_weight):
        return super().compute_metrics(x, self._task_labels(y), y_pred, sample_weight)

    def utility_logits(self, inputs, training=False) -> Dict[str, tf.Tensor]:
        """{task: u_k [B, 1]} without the bias tower."""
        return self.utility(inputs, training=training)

    def bias_logit(self, inputs, training=False) -> tf.Tensor:
        """y_b [B, 1] (eq. 4); zeros without a bias tower."""
        if self.bias_tower is None:
            return tf.zeros_like(self.utility_logits(inputs)[self.tasks[0]])
        return self.bias_tower(inputs, training=training)

    def serving_outputs(self, inputs) -> Dict[str, tf.Tensor]:
        """eq. 6: {task: sigmoid(u_k), "score": weighted mean}."""
        return serving_outputs_from_logits(self.utility_logits(inputs), self.model_config.fusion_weights)

    def get_config(self):
        return {"name": self.name, "model_config": self.model_config.to_dict(),
                "vocab_sizes": dict(self.vocab_sizes)}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return build_model(ModelConfig.from_dict(config["model_config"]), config["vocab_sizes"],
                           name=config.get("name"))


class DMTModel(RankingModel):
    def gate_weights(self, inputs) -> Dict[str, tf.Tensor]:
        """MMoE gate outputs w^k [B, N] per task (Figure 3 analysis)."""
        return self.utility(inputs, training=False, return_gates=True)[1]


def build_bias_tower(config: ModelConfig, vocab_sizes: Mapping[str, int]) -> Optional[BiasTower]:
    if config.bias_features == "none":
        return None
    return BiasTower(config.bias_features, config.bias_units, config.bias_embedding_dim,
                     int(vocab_sizes.get(F.CATEGORY_ID, 0)), dropout=config.bias_dropout)


def build_dmt(config: ModelConfig, vocab_sizes: Mapping[str, int], name: Optional[str] = None) -> DMTModel:
    config = _as_config(config)
    return DMTModel(DMTUtility(config, vocab_sizes), build_bias_tower(config, vocab_sizes),
                    config, vocab_sizes, name=name or "dmt")


def build_model(config: ModelConfig, vocab_sizes: Mapping[str, int], name: Optional[str] = None) -> RankingModel:
    """DMT or DNN(Base) according to config.model_type."""
    config = _as_config(config)
    if config.model_type == "dnn_base":
        from models.baseline import build_dnn_base
        return build_dnn_base(config, vocab_sizes, name=name)
    return build_dmt(config, vocab_sizes, name=name)


def compile_model(model: RankingModel, optimizer="adam", **kwargs) -> RankingModel:
    """compile with eq. 5: per-task BCE on y_k, loss weights lambda_k, an AUC per task."""
    tasks, weights = model.tasks, model.model_config.loss_weights
    model.compile(optimizer=optimizer,
                  loss={t: keras.losses.BinaryCrossentropy() for t in tasks},
                  loss_weights={t: weights[t] for t in tasks},
                  metrics={t: [keras.metrics.AUC(name="auc")] for t in tasks}, **kwargs)
    return model


class ServingModule(tf.Module):
    """Holds only the utility layer (not the bias tower). `serve(features)` -> eq. 6 outputs.

    `serve` has a fixed input signature (`input_signature()`, transformed features, ids and
    dense values [B, 1], sequences SparseTensor [B, None]); calling the module itself accepts
    any features dict and picks what it needs.
    """

    def __init__(self, utility: keras.layers.Layer, fusion_weights: Mapping[str, float], name: str = "serving"):
        super().__init__(name=name)
        self.utility = utility
        self._fusion = tuple((str(t), float(w)) for t, w in fusion_weights.items())
        self.serve = tf.function(self._serve, input_signature=[utility.input_signature()])
        self.serve_rank = tf.function(
            self._serve_rank, input_signature=[utility.input_signature(), tf.TensorSpec([], tf.int32)])

    def input_signature(self) -> Dict[str, tf.TypeSpec]:
        return self.utility.input_signature()

    @no_autograph
    def _serve(self, features):
        logits = self.utility(features, training=False)
        return serving_outputs_from_logits(logits, dict(self._fusion))

    @no_autograph
    def _serve_rank(self, features, num_candidates):
        """eq. 6 for R requests x N candidates (see `DMTUtility.rank`): {name: [R, N]}."""
        outputs = serving_outputs_from_logits(self.utility.rank(features, num_candidates), dict(self._fusion))
        return {name: tf.reshape(value, [-1, num_candidates]) for name, value in outputs.items()}

    def __call__(self, features):
        return self.serve({name: features[name] for name in self.input_signature()})


def export_serving_module(model: RankingModel) -> ServingModule:
    return ServingModule(model.utility, model.model_config.fusion_weights)
