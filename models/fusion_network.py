"""The personalised fusion network (JD's practice talk, "Advanced Practices in E-commerce
Recommendation", section 02): a small gate network on the user's state outputs per-objective
weights that fuse the per-task predictions into the ranking score,

    w(u) = W * softmax(MLP(user state u))       [B, K], positive, summing to W = sum_k w0_k
    score = prod_k p_k^{w_k(u)}                 (in log space, as the static `product` fusion)

The user state is what the served model has once per request, in the `rank` signature's shared
context too (models/rank_inputs.py): the user-level dense features (recent activity: impressions,
clicks, ctr and time since the last click; purchase power: carts, wishes and orders over 30 and
365 days) and the scenario. Only the weights' proportions change a request's ranking; fixing their
sum leaves the fusion loss no temperature to exploit. The last layer starts at zero weights with
biases log(w0_k / W), so an untrained gate is exactly the static `product` fusion with weights w0.

Training (models/model.py `RankingModel.train_step`): the main network trains as without it; every
`period` batches the gate takes one step of its own optimizer on `list_loss`, with the predictions
and features stop-gradiented, and the main steps leave the gate's variables out.

`list_loss` is a listwise softmax loss with graded gains, per request: each example with a positive
gain g_i (order-weighted: `gains`, an order 10, a click 1) is an anchor; its list is itself and the
other candidates of its request (`request_key`, models/preprocessing.py) with a lower gain, all
scored under the request's user weights, s_ij = sum_k w_k(u_i) log p_k(j); the loss is the
gain-weighted softmax cross-entropy of the anchor in its list. An anchor with no lower-gain candidate
of its request in the batch is left out. So that a batch holds whole requests, the Trainer reads the
train split in request-grouped blocks when the fusion network trains (models/trainer.py
`_dataset`): the gate learns to rank within a request, which is all a request's weights can change.
(An earlier in-batch version compared rows of different users and lost to the static product.)
"""

from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tf_keras as keras

from models import features as F
from models.fusion import SMALLEST_PROBABILITY, Fusion
from models.registry import FUSIONS

DEFAULT_GATE_FEATURES = tuple(F.USER_DENSE_FEATURES)
ORDER_GAIN = 10.0  # an ordered impression's gain against a clicked one's 1 (`gains: null`)
DEFAULT_PERIOD = 10  # the gate takes a step every this many batches


@keras.utils.register_keras_serializable(package="funnel")
class UserStateGate(keras.layers.Layer):
    """{feature: [B, 1]} -> per-objective weights [B, K]: total * softmax(MLP(state)).

    `features`: dense features, each [B, 1] float; `scenario_vocabulary` > 0 adds an embedding
    of the `scenario` ids ([B, 1] int). `initial_weights` (K positive numbers) are the output
    of the untrained gate and fix the weights' sum."""

    def __init__(self, initial_weights: Sequence[float], features: Sequence[str] = DEFAULT_GATE_FEATURES,
                 scenario_vocabulary: int = 0, scenario_dim: int = 4, hidden_units: Sequence[int] = (16,),
                 **kwargs):
        super().__init__(**kwargs)
        self.initial_weights = [float(w) for w in initial_weights]
        if not self.initial_weights or min(self.initial_weights) <= 0:
            raise ValueError("the gate's initial weights must be positive and at least one")
        self.features = list(features)
        self.scenario_vocabulary = int(scenario_vocabulary)
        self.scenario_dim = int(scenario_dim)
        self.hidden_units = [int(u) for u in hidden_units]
        self.total = float(sum(self.initial_weights))
        self.scenario_embedding = (keras.layers.Embedding(self.scenario_vocabulary, self.scenario_dim,
                                                          name="scenario_embedding")
                                   if self.scenario_vocabulary > 0 else None)
        self.hidden = [keras.layers.Dense(u, activation="relu", name=f"hidden_{i}")
                       for i, u in enumerate(self.hidden_units)]
        self.logits = keras.layers.Dense(
            len(self.initial_weights), kernel_initializer="zeros",
            bias_initializer=keras.initializers.Constant(np.log(np.asarray(self.initial_weights) / self.total)),
            name="logits")

    @property
    def input_features(self):
        return self.features + ([F.SCENARIO] if self.scenario_embedding is not None else [])

    def call(self, features: Mapping[str, tf.Tensor]) -> tf.Tensor:
        parts = [tf.reshape(tf.cast(features[name], tf.float32), [-1, 1]) for name in self.features]
        if self.scenario_embedding is not None:
            parts.append(self.scenario_embedding(tf.reshape(features[F.SCENARIO], [-1])))
        x = tf.concat(parts, axis=-1)
        for layer in self.hidden:
            x = layer(x)
        return self.total * tf.nn.softmax(self.logits(x), axis=-1)

    def get_config(self):
        return {**super().get_config(), "initial_weights": list(self.initial_weights), "features": list(self.features),
                "scenario_vocabulary": self.scenario_vocabulary, "scenario_dim": self.scenario_dim,
                "hidden_units": list(self.hidden_units)}


def log_probabilities(probabilities: Mapping[str, tf.Tensor], objectives: Sequence[str]) -> tf.Tensor:
    """[B, K] log p_k, clipped at float32's smallest normal number like the `product` fusion."""
    return tf.concat([tf.math.log(tf.maximum(tf.reshape(probabilities[k], [-1, 1]), SMALLEST_PROBABILITY))
                      for k in objectives], axis=-1)


def list_loss_terms(weights: tf.Tensor, logs: tf.Tensor, gains: tf.Tensor,
                    requests: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """`list_loss`'s numerator and denominator: the anchors' gain-weighted cross-entropies summed,
    and their gains summed. A loss over several batches is the ratio of their sums
    (bench/fusion_loss_scan.py)."""
    scores = tf.matmul(weights, logs, transpose_b=True)  # s_ij = sum_k w_k(u_i) log p_k(j)  [B, B]
    same_request = tf.equal(requests[None, :], requests[:, None])
    lower = tf.logical_and(gains[None, :] < gains[:, None], same_request)  # j of i's request, gain below i's
    in_list = tf.logical_or(lower, tf.eye(tf.shape(gains)[0], dtype=tf.bool))
    masked = tf.where(in_list, scores, tf.fill(tf.shape(scores), tf.constant(-np.inf, scores.dtype)))
    cross_entropy = tf.reduce_logsumexp(masked, axis=1) - tf.linalg.diag_part(scores)
    anchor_weight = tf.where(tf.logical_and(gains > 0, tf.reduce_any(lower, axis=1)), gains, tf.zeros_like(gains))
    return tf.reduce_sum(anchor_weight * cross_entropy), tf.reduce_sum(anchor_weight)


def list_loss(weights: tf.Tensor, logs: tf.Tensor, gains: tf.Tensor, requests: tf.Tensor) -> tf.Tensor:
    """The per-request listwise softmax loss of the module docstring.

    weights [B, K] (the anchors' w(u_i)), logs [B, K] (log p_k(j)), gains [B], requests [B] (any
    dtype: equal values are one request); rows with gain 0 anchor nothing, an anchor with no
    lower-gain row of its request in the batch is left out; 0 without anchors. Written by hand:
    TF-Ranking's softmax loss takes padded [R, N] lists, not a batch of rows tagged by request."""
    return tf.math.divide_no_nan(*list_loss_terms(weights, logs, gains, requests))


def label_gains(labels: Mapping[str, tf.Tensor], gains: Mapping[str, float]) -> tf.Tensor:
    """[B] each row's gain in `list_loss`: the largest gain of its positive labels, 0 without one."""
    positives = [(tf.reshape(tf.cast(labels[label], tf.float32), [-1]) > 0, g) for label, g in gains.items()]
    gain = tf.zeros(tf.shape(positives[0][0]), tf.float32)
    for positive, g in positives:
        gain = tf.where(positive, tf.maximum(gain, g), gain)
    return gain


@FUSIONS.register("network")
class NetworkFusion(Fusion):
    """score = prod_k p_k^{w_k(u)} with w(u) from a `UserStateGate` (module docstring).

    `weights`: the objectives and the untrained gate's weights (default: every task, 1);
    `features` (user-level dense features) and `scenario` (its embedding, `scenario_dim` wide):
    the gate's inputs; `hidden_units`: its MLP; `period`: the gate takes a step every this many
    batches, with Adam at `learning_rate` (10x the network's default: it takes 1/period of the
    steps, ~80 in one epoch of the default world); `gains`: per label, the gain of an impression with that
    label in `list_loss` (the largest of its positive labels'; null: 1 per task, 10 for order)."""

    CONTEXT_ARGS = ("outputs", "tasks", "scenario_vocabulary")
    TRAINS = True

    def __init__(self, outputs: Sequence[str], tasks: Sequence[str], weights: Optional[Mapping[str, float]] = None,
                 features: Sequence[str] = DEFAULT_GATE_FEATURES, scenario: bool = True, scenario_dim: int = 4,
                 hidden_units: Sequence[int] = (16,), period: int = DEFAULT_PERIOD, learning_rate: float = 1e-2,
                 gains: Optional[Mapping[str, float]] = None, scenario_vocabulary: int = 0, **kwargs):
        kwargs.setdefault("trainable", True)
        super().__init__(outputs, tasks, weights, **kwargs)
        section = {"features": features, "period": period, "learning_rate": learning_rate, "gains": gains,
                   "hidden_units": hidden_units}
        self.validate_section(section, self.tasks)
        self.features, self.scenario, self.scenario_dim = list(features), bool(scenario), int(scenario_dim)
        self.hidden_units = [int(u) for u in hidden_units]
        self.period, self.learning_rate = int(period), float(learning_rate)
        self.gains = task_gains(self.tasks, gains)
        self.scenario_vocabulary = int(scenario_vocabulary)
        self.objectives = list(self.fusion_weights)
        self.gate = UserStateGate([self.fusion_weights[k] for k in self.objectives], self.features,
                                  self.scenario_vocabulary if self.scenario else 0, self.scenario_dim,
                                  self.hidden_units, name="gate")

    @classmethod
    def section_inputs(cls, section: Mapping[str, object]) -> Sequence[str]:
        return list(section.get("features", DEFAULT_GATE_FEATURES)) + ([F.SCENARIO] if section.get("scenario", True)
                                                                        else [])

    @classmethod
    def validate_section(cls, section: Mapping[str, object], tasks: Sequence[str]) -> None:
        unknown = set(section.get("features", ())) - set(F.USER_DENSE_FEATURES)
        if unknown:
            raise ValueError(f"fusion network features must be user-level dense features (the `rank` "
                             f"signature's per-request context) {F.USER_DENSE_FEATURES}; got {sorted(unknown)}")
        if int(section.get("period", 1)) < 1 or float(section.get("learning_rate", 1.0)) <= 0:
            raise ValueError("fusion network: period >= 1 and learning_rate > 0")
        if any(int(u) <= 0 for u in section.get("hidden_units", ())):
            raise ValueError("fusion network: hidden_units must be positive")
        task_gains(tasks, section.get("gains"))

    @property
    def input_features(self):
        return self.gate.input_features

    def objective_weights(self, features: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        """{objective: w_k(u) [B, 1]}."""
        weights = self.gate(features)
        return {k: weights[:, i:i + 1] for i, k in enumerate(self.objectives)}

    def call(self, probabilities: Dict[str, tf.Tensor], features: Optional[Mapping[str, tf.Tensor]] = None):
        if features is None:
            raise ValueError("the fusion network needs the user-state features " + ", ".join(self.input_features))
        weights = self.gate(features)
        return tf.exp(tf.reduce_sum(weights * log_probabilities(probabilities, self.objectives), -1, keepdims=True))

    def loss(self, probabilities: Mapping[str, tf.Tensor], features: Mapping[str, tf.Tensor],
             labels: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """`list_loss` of the batch, with nothing flowing back into the predictions or features."""
        if F.REQUEST_KEY not in features:
            raise ValueError(f"the fusion network's per-request loss needs `{F.REQUEST_KEY}` in the transformed "
                             "examples (models/preprocessing.py), which a Transform output cached by an earlier "
                             "version lacks: re-run Transform")
        requests = tf.reshape(features[F.REQUEST_KEY], [-1])
        features = {k: tf.stop_gradient(features[k]) for k in self.input_features}
        logs = tf.stop_gradient(log_probabilities(probabilities, self.objectives))
        return list_loss(self.gate(features), logs, label_gains(labels, self.gains), requests)

    def get_config(self):
        return {**super().get_config(), "features": list(self.features), "scenario": self.scenario,
                "scenario_dim": self.scenario_dim, "hidden_units": list(self.hidden_units), "period": self.period,
                "learning_rate": self.learning_rate, "gains": dict(self.gains),
                "scenario_vocabulary": self.scenario_vocabulary}


def task_gains(tasks: Sequence[str], gains: Optional[Mapping[str, float]]) -> Dict[str, float]:
    if gains is None:
        return {t: ORDER_GAIN if t == F.ORDER else 1.0 for t in tasks}
    unknown = set(gains) - set(tasks)
    if unknown or not gains or any(float(g) <= 0 for g in gains.values()):
        raise ValueError(f"fusion network gains: positive, for the model's tasks {list(tasks)}; got {dict(gains)}")
    return {str(k): float(v) for k, v in gains.items()}
