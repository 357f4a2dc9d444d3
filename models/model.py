"""The training-time ranking model and its one builder.

    training (DMT eq. 5):  {task: p} = heads(network logits, y_b),  y_b = NN_B(bias features)
    loss:                  sum_k lambda_k BCE(p_k, label_k)   (ESM² eq. 11 with ESM² heads)

With a trained fusion (`fusion: {type: network}`, models/fusion_network.py) training alternates:
every batch the main network takes its step on that loss (the fusion's variables left out), and
every `period` batches the fusion network takes a step of its own optimizer on its own loss, on
the batch's bias-free predictions (sigmoid(u), eq. 6) with the gradients stopped there.

`build_model(config, vocab_sizes)` composes every architecture (models/presets.yaml) from the
registered parts; the served network is `model.network` (models/export.py), without the bias
tower, whose variables all live under the name "bias_tower".
"""

from typing import Dict, Mapping, Optional

import tensorflow as tf
import tf_keras as keras

from models import features as F
from models.bias import BiasTower
from models.config import ModelConfig
from models.network import RankingNetwork, as_config, no_autograph


class RankingModel(keras.Model):
    """call -> {task: probability} with the bias tower's logit added per the heads (eq. 5)."""

    def __init__(self, network: RankingNetwork, bias_tower: Optional[BiasTower],
                 model_config: ModelConfig, vocab_sizes: Mapping[str, int], **kwargs):
        super().__init__(**kwargs)
        self.network = network
        self.bias_tower = bias_tower
        self.model_config = model_config
        self.vocab_sizes = {k: int(v) for k, v in vocab_sizes.items()}
        self.tasks = list(model_config.tasks)

    def call(self, inputs, training=None):
        return self._probabilities(inputs, training)

    @no_autograph
    def _probabilities(self, inputs, training):
        logits = self.network(inputs, training=training)
        y_b = self.bias_tower(inputs, training=training) if self.bias_tower is not None else None
        outputs = self.network.heads(logits, bias=y_b)
        return {task: outputs[task] for task in self.tasks}

    def _task_labels(self, y):
        """Labels dicts may carry every label (click, cart, ...): keep the model's tasks."""
        return {t: y[t] for t in self.tasks} if isinstance(y, Mapping) else y

    # tf_keras internals are written for graph mode without autograph (TF's autograph skips the
    # `keras` package but not `tf_keras`); converting them per variable costs ~20 s per trace.
    def train_step(self, data):
        step = self._alternating_train_step if self.network.fusion.TRAINS else super().train_step
        return no_autograph(step)(data)

    def build_for_training(self, x, y) -> None:
        """Creates, before `fit`, the variables its first step would: the network's and the bias
        tower's (one inference call on `x`), the optimizer's slots, and the compiled loss and
        metric trackers (from `y`'s structure; nothing is updated). A tf.function that creates
        variables is traced twice, and tracing is most of a short training's time: on the small
        test DMT, building and 6 steps of `fit` took 47.1 s with two traces, 33.6 s with this
        and one, to the same weights. Keras has no single call for it; `compiled_loss` and
        `compiled_metrics` are tf_keras' containers. A trained fusion's gate and optimizer slots
        are built here too: under a strategy with several replicas `fit` cannot create them."""
        y_pred = self(x, training=False)
        self.optimizer.build(self.main_variables())
        self.compiled_loss.build(y_pred)
        self.compiled_metrics.build(y_pred, self._task_labels(y))
        fusion = self.network.fusion
        if fusion.TRAINS:  # the fusion network's gate and its optimizer's slots
            fusion.gate({k: x[k] for k in fusion.input_features})
            self.fusion_optimizer.build(fusion.trainable_variables)

    def compile(self, *args, **kwargs):
        super().compile(*args, **kwargs)
        fusion = self.network.fusion
        # the fusion network's own optimizer: its steps never touch the main network's state
        self.fusion_optimizer = keras.optimizers.Adam(fusion.learning_rate) if fusion.TRAINS else None
        if getattr(self.optimizer, "use_ema", False):
            # fit() ends by swapping the optimizer's moving averages into every trainable
            # variable; the main optimizer averages the main network's only (the fusion network
            # has its own optimizer), so only those are swapped.
            finalize = self.optimizer.finalize_variable_values
            self.optimizer.finalize_variable_values = lambda var_list: finalize(self.main_variables())

    def main_variables(self):
        """The trainable variables but the fusion network's."""
        fusion = {v.ref() for v in self.network.fusion.trainable_variables}
        return [v for v in self.trainable_variables if v.ref() not in fusion]

    def _alternating_train_step(self, data):
        """Keras' train_step for the main network, then the fusion network's (`_fusion_step`)."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        logits, y_pred = self._main_step(x, y, sample_weight)
        stepped, fusion_loss = self._fusion_step(x, y, logits)
        logs = self.compute_metrics(x, y, y_pred, sample_weight)
        with tf.control_dependencies([stepped]):
            logs["fusion_loss"] = tf.identity(fusion_loss)
        return logs

    def _main_step(self, x, y, sample_weight):
        """One step of the main network (the fusion network's variables left out):
        (tower logits, {task: p})."""
        with tf.GradientTape() as tape:
            logits = self.network(x, training=True)
            y_b = self.bias_tower(x, training=True) if self.bias_tower is not None else None
            outputs = self.network.heads(logits, bias=y_b)
            y_pred = {task: outputs[task] for task in self.tasks}
            loss = self.compute_loss(x, y, y_pred, sample_weight)
        self.optimizer.minimize(loss, self.main_variables(), tape=tape)
        return logits, y_pred

    def _fusion_step(self, x, y, logits):
        """The fusion network's loss on the bias-free predictions of `logits` (gradients stopped
        there), and its optimizer's step when the main optimizer's iterations are a multiple of
        `period` (after batches k, 2k, ...): (whether it stepped, the loss).

        Under a tf.distribute strategy an optimizer step aggregates over the replicas with a
        merge_call, which TF refuses inside a conditional branch; so the gradients are summed over
        the replicas every batch (`aggregate_gradients`, in replica context) and the conditional
        step runs in cross-replica context, as tf_keras' own EMA overwrite does: one merge_call
        around a tf.cond whose branch updates each replica's copy (`extended.update` with the
        optimizer's public `update_step`). Without a strategy the same code runs in the default
        replica context. The gate's Adam has no clipping or weight decay for `apply_gradients`
        to add (`compile` makes it)."""
        fusion = self.network.fusion
        # the gate's variables exist (build_for_training) unless fit runs without it, then the
        # first trace builds them: with one replica, or under parameter_server (the Trainer does
        # not prebuild there: variables go to the ps tasks as the coordinator traces)
        with tf.GradientTape() as tape:
            served = self.network.heads({k: tf.stop_gradient(u) for k, u in logits.items()})
            loss = fusion.loss(served, x, self._task_labels(y))
        variables = fusion.trainable_variables
        optimizer = self.fusion_optimizer
        optimizer.build(variables)  # its slots, outside any branch (a no-op once built)
        # each replica's loss is the mean over its share of the batch: the sum over the replicas
        # of 1/N of it is the global mean, as Keras scales the main loss
        context = tf.distribute.get_replica_context()
        replicas = context.num_replicas_in_sync
        gradients = tape.gradient(loss, variables, output_gradients=tf.constant(1.0 / replicas, loss.dtype))
        # dense: the scenario table's IndexedSlices repeat rows, which Adam's sparse update would
        # square one by one (apply_gradients sums them first); the gate's tables are a few rows
        gradients = [tf.convert_to_tensor(g) for g in gradients]
        gradients = optimizer.aggregate_gradients(list(zip(gradients, variables)))

        def cross_replica(strategy, gradients):
            # the main optimizer's iterations: one mirrored value, read here in cross-replica context
            due = tf.equal(self.optimizer.iterations % fusion.period, 0)

            def step():
                # Adam's update_step returns nothing; tf.function's automatic control dependencies
                # run its assignments in program order, before the step count it reads advances
                for gradient, variable in gradients:
                    strategy.extended.update(variable, lambda v, g: optimizer.update_step(g, v), args=(gradient,))
                optimizer.iterations.assign_add(1)
                return tf.constant(True)

            return tf.cond(due, step, lambda: tf.constant(False))

        stepped = context.merge_call(cross_replica, args=(gradients,))
        return stepped, loss

    def test_step(self, data):
        return no_autograph(super().test_step)(data)

    def predict_step(self, data):
        return no_autograph(super().predict_step)(data)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None):
        return super().compute_loss(x, self._task_labels(y), y_pred, sample_weight)

    def compute_metrics(self, x, y, y_pred, sample_weight):
        return super().compute_metrics(x, self._task_labels(y), y_pred, sample_weight)

    def utility_logits(self, inputs, training=False) -> Dict[str, tf.Tensor]:
        """{tower: u [B, 1]} without the bias tower."""
        return self.network(inputs, training=training)

    def bias_logit(self, inputs, training=False) -> tf.Tensor:
        """y_b [B, 1] (eq. 4); zeros without a bias tower."""
        if self.bias_tower is None:
            return tf.zeros_like(flat_float(inputs[F.ITEM_ID]))
        return self.bias_tower(inputs, training=training)

    def serving_outputs(self, inputs, bias=None) -> Dict[str, tf.Tensor]:
        """The bias-free network's outputs and "score" (eq. 6), at a constant bias logit `bias`
        (the reference context's, models/calibration.py; None: eq. 6's sigmoid(u))."""
        return self.network.outputs(self.utility_logits(inputs), bias=bias, features=inputs)

    def gate_weights(self, inputs) -> Dict[str, tf.Tensor]:
        """The mixture's gate outputs per gate (MMoE: w^k [B, N] per tower; DMT Figure 3)."""
        return self.network(inputs, training=False, return_gates=True)[1]

    def get_config(self):
        return {"name": self.name, "model_config": self.model_config.to_dict(),
                "vocab_sizes": dict(self.vocab_sizes)}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return build_model(ModelConfig.from_dict(config["model_config"]), config["vocab_sizes"],
                           name=config.get("name"))


def flat_float(ids: tf.Tensor) -> tf.Tensor:
    return tf.cast(tf.reshape(ids, [-1, 1]), tf.float32)


def build_bias_tower(config: ModelConfig, vocab_sizes: Mapping[str, int]) -> Optional[BiasTower]:
    if config.bias_features == "none":
        return None
    return BiasTower(config.bias_features, config.bias_units, config.bias_embedding_dim,
                     int(vocab_sizes.get(F.CATEGORY_ID, 0)), dropout=config.bias_dropout,
                     neighbors=config.bias_neighbors, output_dropout=config.bias_output_dropout,
                     combine=config.bias_combine)


def build_model(config, vocab_sizes: Mapping[str, int], name: Optional[str] = None) -> RankingModel:
    """Any architecture: the config's parts composed into a network, plus its bias tower."""
    config = as_config(config)
    name = name or (config.preset or "ranker").replace("-", "_")
    return RankingModel(RankingNetwork(config, vocab_sizes), build_bias_tower(config, vocab_sizes),
                        config, vocab_sizes, name=name)


def compile_model(model: RankingModel, optimizer="adam", **kwargs) -> RankingModel:
    """compile with eq. 5 / eq. 11: per-task BCE, loss weights lambda_k, an AUC per task."""
    tasks, weights = model.tasks, model.model_config.loss_weights
    model.compile(optimizer=optimizer,
                  loss={t: keras.losses.BinaryCrossentropy() for t in tasks},
                  loss_weights={t: weights[t] for t in tasks},
                  metrics={t: [keras.metrics.AUC(name="auc")] for t in tasks}, **kwargs)
    return model
