"""TFX Trainer module (`module_path="models.trainer"`): `run_fn` trains the configured
architecture (`model:` section; models/presets.yaml).

The exported SavedModel's signatures (all apply the Transform graph themselves):
- `serving_default` (input `examples`, serialized `tf.Example`): the heads' outputs (the
  tasks' probabilities and extras such as `cvr`) and "score" (the fusion), without the bias
  tower, at the calibration's reference context (models/calibration.py);
- `rank`: one user's context and N candidates per request (`models.rank_inputs`), the same
  outputs as [R, N], with each behaviour sequence encoded once per request;
- `transform_features` (input `examples`): the transformed features, for the Evaluator.
"""

import dataclasses
import json
import logging
import os
import time
from typing import Any, Dict, Optional

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from models import attention_summary
from models import distribution as D
from models import gate_summary
from models import features as F
from models import preprocessing as P
from models import rank_inputs
from models import warm_start
from models.calibration import reference_bias
from models.config import ModelConfig
from models import export as E
from models.mixtures import dtn_trim
from models import optimizers
from models.model import build_model, compile_model
from models.progress import TrainingProgress
from models.validation import is_integer, is_number

DEFAULT_TRAINER_CONFIG = {
    "batch_size": 512,
    "epochs": 2,
    "learning_rate": [1e-3, 1e-4],  # per epoch (pipeline/config.yaml says why)
    "eval_batches": 200,
    "seed": 0,
    "warm_start": False,
    "summary_steps": 50,  # per-step TensorBoard curves: one point every this many steps
    "optimizer": optimizers.DEFAULT,  # adam | lazy_adam (embedding rows updated only when in the batch)
}


def trainer_config(custom_config: Optional[Dict[str, Any]], model: Optional[ModelConfig] = None) -> Dict[str, Any]:
    """The `trainer:` section over the defaults, then the architecture's own settings
    (`model: {trainer: ...}`, e.g. the dmt-paper preset's batch 2048 and two epochs)."""
    config = dict(DEFAULT_TRAINER_CONFIG)
    config.update((custom_config or {}).get("trainer", {}))
    if model is not None:
        config.update(model.trainer)
    return config


# Keys of the `trainer:` section besides the defaults' (README "Distributed training").
# `ema_momentum`: the exported weights are the exponential moving average of the training
# iterates (Keras' optimizer EMA, swapped in when fit ends), not the last iterate.
OPTIONAL_TRAINER_KEYS = ("steps_per_epoch", "ema_momentum", D.SECTION_KEY)


def check_trainer_settings(settings: Dict[str, Any]) -> None:
    """ValueError naming the `trainer:` key that is unknown (a typo would silently train with the
    default) or whose value the Trainer would fail on only after ingest and Transform."""
    unknown = set(settings) - set(DEFAULT_TRAINER_CONFIG) - set(OPTIONAL_TRAINER_KEYS)
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}; keys: "
                         f"{sorted(DEFAULT_TRAINER_CONFIG) + list(OPTIONAL_TRAINER_KEYS)}")
    for key in ("batch_size", "epochs", "eval_batches", "summary_steps"):
        if not (is_integer(settings[key]) and settings[key] >= 1):
            raise ValueError(f"{key} must be an integer >= 1, got {settings[key]!r}")
    steps = settings.get("steps_per_epoch")
    if steps is not None and not (is_integer(steps) and steps >= 1):
        raise ValueError(f"steps_per_epoch must be null or an integer >= 1, got {settings['steps_per_epoch']!r}")
    ema = settings.get("ema_momentum")
    if ema is not None and not (is_number(ema) and 0 < ema < 1):
        raise ValueError(f"ema_momentum must be null or a number in (0, 1), got {ema!r}")
    seed = settings["seed"]
    if not (is_integer(seed) and 0 <= seed < 2 ** 32):  # numpy's seed range
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    optimizers.check_name(settings["optimizer"])
    if not isinstance(settings["warm_start"], bool):
        raise ValueError(f"warm_start must be true or false, got {settings['warm_start']!r}")
    rates = settings["learning_rate"]
    rates = rates if isinstance(rates, list) else [rates]
    if not rates or not all(is_number(r) and r > 0 for r in rates):
        raise ValueError("learning_rate must be a number > 0 or a non-empty list of them (one per epoch, "
                         f"the last repeating), got {settings['learning_rate']!r}")


def learning_rates(settings: Dict[str, Any]):
    """The learning rate of each epoch: a number for all, or a list (the last one repeats)."""
    rates = settings["learning_rate"]
    rates = list(rates) if isinstance(rates, (list, tuple)) else [rates]
    return [float(rates[min(e, len(rates) - 1)]) for e in range(int(settings["epochs"]))]


def rate_schedule(rates) -> list:
    """The callbacks that give each epoch its rate of `learning_rates` (none for a constant rate)."""
    if len(set(rates)) == 1:
        return []
    return [keras.callbacks.LearningRateScheduler(lambda epoch, _: rates[epoch])]


def example_weight(labels: Dict[str, tf.Tensor], weights: Dict[str, float]) -> tf.Tensor:
    """Per example: the largest weight among its positive labels in `weights`, else 1 (the
    authors' class weights: an ordered example weighs 400, a clicked one 15, the rest 1)."""
    weight = None
    for name, w in weights.items():
        positive = tf.reshape(tf.cast(labels[name], tf.float32) > 0, [-1])
        term = tf.where(positive, tf.constant(w, tf.float32), tf.constant(1.0, tf.float32))
        weight = term if weight is None else tf.maximum(weight, term)
    return weight


def model_config(custom_config: Optional[Dict[str, Any]]) -> ModelConfig:
    return ModelConfig.from_dict((custom_config or {}).get("model", {}), P.transform_config(custom_config))


def vocab_sizes(tf_transform_output: tft.TFTransformOutput, custom_config) -> Dict[str, int]:
    oov = P.transform_config(custom_config)["num_oov_buckets"]
    return {name: tf_transform_output.vocabulary_size_by_name(P.vocab_name(name)) + oov
            for name in P.ID_VOCABULARIES}


# Request-grouped reading (`by_request`, for the fusion network's per-request loss): the ingest
# writes a request's impressions next to each other and Transform keeps the order within its
# shards, so the files are read one at a time in order, in blocks of REQUEST_BLOCK examples; the
# blocks are shuffled in a buffer of REQUEST_BLOCK_BUFFER (64k examples, a few hundred users' days)
# and regrouped into batches. A request cut by a block's edge only loses lists from the loss; a
# split in another order trains all the same, with fewer lists.
REQUEST_BLOCK = 64
REQUEST_BLOCK_BUFFER = 1024


def _dataset(file_pattern, data_accessor, tf_transform_output, tasks, batch_size: int, shuffle: bool, seed: int,
             weights: Optional[Dict[str, float]] = None, by_request: bool = False):
    """(features, labels) batches, or (features, labels, example weights) with `weights`;
    `by_request`: features keep `request_key`, and shuffled batches hold whole requests (above)."""
    grouped = by_request and shuffle
    options = (tfxio.TensorFlowDatasetOptions(batch_size=REQUEST_BLOCK, shuffle=False, num_epochs=1,
                                              reader_num_threads=1)
               if grouped else
               tfxio.TensorFlowDatasetOptions(batch_size=batch_size, shuffle=shuffle, shuffle_seed=seed, num_epochs=1))
    dataset = data_accessor.tf_dataset_factory(file_pattern, options, tf_transform_output.transformed_metadata.schema)
    if grouped:
        dataset = dataset.shuffle(REQUEST_BLOCK_BUFFER, seed=seed).unbatch().batch(batch_size)

    def split(features):
        labels = {task: features.pop(task) for task in tasks}
        weight = example_weight({**features, **labels}, weights) if weights else None
        for name in F.LABELS + (F.IMPRESSION_ID,) + (() if by_request else (F.REQUEST_KEY,)):
            features.pop(name, None)
        return (features, labels) if weight is None else (features, labels, weight)

    return dataset.map(split, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def raw_spec_without_labels(tf_transform_output: tft.TFTransformOutput) -> Dict[str, Any]:
    """Every raw feature but the labels: what the evaluation-time signatures parse."""
    return {k: v for k, v in tf_transform_output.raw_feature_spec().items() if k not in F.LABELS}


def serving_raw_spec(tf_transform_output: tft.TFTransformOutput) -> Dict[str, Any]:
    """What `serving_default` parses: the raw features the served network depends on. Labels,
    ids kept for joins and the bias features are not needed (the Transform layer prunes what
    its outputs do not use); `scenario` defaults to "default" like the ingest's."""
    spec = tf_transform_output.raw_feature_spec()
    out = {name: spec[name] for name in rank_inputs.input_signature()}  # what `rank` takes too
    out[F.SCENARIO] = tf.io.FixedLenFeature(spec[F.SCENARIO].shape, tf.string, default_value=[F.DEFAULT_SCENARIO])
    return out


_EXAMPLES = tf.TensorSpec([None], tf.string, name="examples")


class _ExamplesModule(tf.Module):
    """The Transform layer, and serialized tf.Examples (every raw feature but the labels)
    through it."""

    def __init__(self, tf_transform_output: tft.TFTransformOutput, name: str):
        super().__init__(name=name)
        self.tft_layer = tf_transform_output.transform_features_layer()
        self._raw_spec = raw_spec_without_labels(tf_transform_output)

    def _transform_examples(self, examples):
        return self.tft_layer(tf.io.parse_example(examples, self._raw_spec))


class ExportModule(_ExamplesModule):
    """What is saved: the Transform layer and the serving module (no bias tower).

    Signatures:
    - `serving_default(examples)`: serialized tf.Example [B] -> {task, score} [B, 1];
    - `rank(...)`: R requests of N candidates (`models.rank_inputs`) -> {task, score} [R, N],
      each behaviour sequence encoded once per request;
    - `transform_features(examples)`: the transformed features, for the Evaluator.
    """

    def __init__(self, tf_transform_output: tft.TFTransformOutput, serving_module: tf.Module):
        super().__init__(tf_transform_output, name="funnel_export")
        self.serving = serving_module
        self._serving_spec = serving_raw_spec(tf_transform_output)
        self.serve_examples = tf.function(self._serve_examples, input_signature=[_EXAMPLES])
        self.transform_examples = tf.function(self._transform_examples, input_signature=[_EXAMPLES])
        self.rank = tf.function(self._rank, input_signature=[rank_inputs.input_signature()])

    def _serve_examples(self, examples):
        return self.serving(self.tft_layer(tf.io.parse_example(examples, self._serving_spec)))

    def _rank(self, inputs):
        num_candidates = tf.shape(inputs[F.ITEM_ID])[1]
        transformed = rank_inputs.regroup(self.tft_layer(rank_inputs.flatten(inputs)), num_candidates)
        features = {name: transformed[name] for name in self.serving.input_signature()}
        return self.serving.serve_rank(features, num_candidates)

    def signatures(self):
        return {"serving_default": self.serve_examples.get_concrete_function(),
                "rank": self.rank.get_concrete_function(),
                "transform_features": self.transform_examples.get_concrete_function()}


def export(model, tf_transform_output: tft.TFTransformOutput, path: str,
           reference_bias: Optional[float] = None) -> None:
    module = ExportModule(tf_transform_output, E.export_serving_module(model, reference_bias))
    E.save(module, path, module.signatures())


LOGGED_MODEL_DIR = "logged_model"
GATES_FILE = "gates.json"  # in model_run: the mixture's mean gate weights (models/gate_summary.py)
ATTENTION_FILE = "attention.json"  # in model_run: the decoders' attention (models/attention_summary.py)
GATE_SUMMARY_BATCHES = 20
TRIM_FILE = "trim.json"  # in model_run: DTN-trim's mean gate weights and the modules it cut
TRIM_BATCHES = 50  # train batches DTN-trim averages the gate weights over
TRIMMED_LOGS = "trimmed"  # under model_run's logs: the retrained (trimmed) DTN's training curves


class LoggedBehaviourModule(_ExamplesModule):
    """The training-time model of eq. 5, bias tower included: `serving_default(examples)` ->
    {task: heads(u, y_b)}, the probability of the event as logged (at its position, next
    to its neighbours). Saved to the model_run artifact for offline evaluation against logged
    labels and the simulator's logged-click oracle; never pushed."""

    def __init__(self, tf_transform_output: tft.TFTransformOutput, model):
        super().__init__(tf_transform_output, name="funnel_logged")
        self.model = model
        self.serve_examples = tf.function(self._serve_examples, input_signature=[_EXAMPLES])

    def _serve_examples(self, examples):
        return self.model(self._transform_examples(examples), training=False)


def export_logged_model(model, tf_transform_output: tft.TFTransformOutput, path: str) -> None:
    module = LoggedBehaviourModule(tf_transform_output, model)
    E.save(module, path, {"serving_default": module.serve_examples.get_concrete_function()})


CALIBRATION_FILE = "calibration.json"
FIT_FILE = "fit.json"


def _warm_start(model, train, fn_args, tf_transform_output, custom, strategy) -> dict:
    """Builds the model on one batch, then takes the base model's weights; the chief records
    them in the model_run artifact. Returns what fit.json records about it."""
    features = next(iter(train.take(1)))[0]
    model(features, training=False)
    model.serving_outputs(features)  # builds the fusion network's gate too: its weights are carried over
    carried = warm_start.warm_start(model, fn_args.base_model, tf_transform_output,
                                    P.transform_config(custom)["num_oov_buckets"])
    if D.is_chief(strategy):
        warm_start.save_initial_weights(model, fn_args.model_run_dir)
    return {"base_model": fn_args.base_model, "tokens_carried": carried}


def _summarise_network(model, evaluation: tf.data.Dataset, tf_transform_output, model_run_dir: str) -> None:
    """The mixture's mean gate weights on GATE_SUMMARY_BATCHES eval batches, overall and per
    scenario (models/gate_summary.py): `gates.json` in model_run and TensorBoard heat maps in
    its `logs/gates`; and the decoders' attention for sample eval impressions
    (models/attention_summary.py): `attention.json` and `logs/attention`. Dashboards: a failure
    is logged, never fails the training."""
    def gates():
        names = [v.decode() if isinstance(v, bytes) else str(v)
                 for v in tf_transform_output.vocabulary_by_name(P.vocab_name(F.SCENARIO))]
        return gate_summary.mean_gate_weights(model, evaluation.take(GATE_SUMMARY_BATCHES), names)

    def attention():
        return attention_summary.sample_attention(model, next(iter(evaluation.take(1)))[0])

    for name, compute, file_name, write_images in (
            ("gates", gates, GATES_FILE, gate_summary.write_gate_images),
            ("attention", attention, ATTENTION_FILE, attention_summary.write_attention_images)):
        try:
            found = compute()
            if found:  # {}: a mixture without gates, a network without attention decoders
                with tf.io.gfile.GFile(os.path.join(model_run_dir, file_name), "w") as f:
                    json.dump(found, f)
                write_images(os.path.join(model_run_dir, "logs", name), found)
        except Exception:  # noqa: BLE001 -- see the docstring
            logging.getLogger(__name__).warning("%s summary failed", name, exc_info=True)


def _trimmed(model, config: ModelConfig, train: tf.data.Dataset, model_run_dir: str,
             chief: bool) -> Optional[ModelConfig]:
    """The config of the trimmed DTN: the modules whose mean gate weight over TRIM_BATCHES
    train batches is under `trim_threshold` in every gate (models/mixtures/dtn_trim.py) are
    left out; None when no module is, and the trained DTN is kept. The decision goes to
    TRIM_FILE in model_run."""
    weights = gate_summary.mean_gate_weights(model, train.take(TRIM_BATCHES), [])
    mixture = config.mixture
    members = model.network.mixture.gate_members
    names = dtn_trim.modules_to_trim({g: weights[g][gate_summary.OVERALL] for g in members}, members,
                                     mixture["trim_threshold"])
    logging.getLogger(__name__).info("DTN-trim: cutting %s", names or "nothing; the trained DTN is kept")
    if chief:
        tf.io.gfile.makedirs(model_run_dir)
        with tf.io.gfile.GFile(os.path.join(model_run_dir, TRIM_FILE), "w") as f:
            json.dump({"threshold": mixture["trim_threshold"], "batches": TRIM_BATCHES, "trimmed": names,
                       "retrained": bool(names),
                       "mean_gate_weights": {g: dict(zip(members[g], weights[g][gate_summary.OVERALL]))
                                             for g in members}}, f, indent=1)
    return dataclasses.replace(config, mixture=dtn_trim.trimmed_mixture(mixture, names)) if names else None


def run_fn(fn_args: tfx.components.FnArgs) -> Optional[keras.Model]:
    """Trains and exports; returns the trained model (TFX ignores it), None on a parameter
    server task (which serves until the job ends)."""
    custom = fn_args.custom_config or {}
    config = model_config(custom)
    settings = trainer_config(custom, config)
    # `trainer.distribution` (models/distribution.py): the strategy comes first (multi-worker
    # strategies start their servers before any other TensorFlow work).
    distribution = D.settings(settings)
    if D.serve_if_not_coordinator(distribution):
        return None
    strategy = D.create_strategy(distribution)
    keras.utils.set_random_seed(settings["seed"])
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    rates = learning_rates(settings)
    ema = settings.get("ema_momentum")

    def built(config: ModelConfig):
        with strategy.scope():
            return compile_model(build_model(config, vocab_sizes(tf_transform_output, custom)),
                                 optimizer=optimizers.create(settings["optimizer"], rates[0],
                                                             use_ema=ema is not None, ema_momentum=ema or 0.99))

    model = built(config)

    def train_batches(batch_size: int) -> tf.data.Dataset:
        return _dataset(fn_args.train_files, fn_args.data_accessor, tf_transform_output, config.tasks,
                        batch_size, shuffle=True, seed=settings["seed"], weights=config.example_weights,
                        by_request=model.network.fusion.TRAINS)

    train = train_batches(settings["batch_size"])
    # how many files each split has: multi-worker input sharding by file needs one per worker
    train_files, eval_files = (sum(len(tf.io.gfile.glob(p)) for p in patterns)
                               for patterns in (fn_args.train_files, fn_args.eval_files))

    def eval_dataset(batch_size: int) -> tf.data.Dataset:
        return _dataset(fn_args.eval_files, fn_args.data_accessor, tf_transform_output, config.tasks,
                        batch_size, shuffle=False, seed=settings["seed"])

    evaluation = eval_dataset(settings["batch_size"])
    # after each epoch, on the first `eval_batches` batches (under parameter_server the workers run it)
    validation, validation_steps = D.validation_input(evaluation, eval_dataset, settings["batch_size"],
                                                      settings["eval_batches"], distribution, strategy, eval_files)
    logs = os.path.join(fn_args.model_run_dir, "logs")

    def fit(network, label: str, log_dir: str) -> Dict[str, Any]:
        """Warm-starts (when asked and there is a blessed model) and trains `network`; returns
        what fit.json records of the training. Losses and per-task AUC go to `log_dir` for
        TensorBoard, every `summary_steps` steps and per epoch (Keras writes from the chief only)."""
        progress = TrainingProgress(label, settings["epochs"])
        callbacks = [keras.callbacks.TensorBoard(log_dir=log_dir, update_freq=int(settings["summary_steps"])),
                     progress]
        callbacks += rate_schedule(rates)
        warm_started = None
        if settings["warm_start"] and fn_args.base_model:  # no blessed model yet: a cold start
            with strategy.scope():
                warm_started = _warm_start(network, train, fn_args, tf_transform_output, custom, strategy)
        started = time.perf_counter()
        if not D.is_parameter_server(strategy):  # there the coordinator traces per worker
            with strategy.scope():  # one unshuffled batch: the training order stays as it was
                network.build_for_training(*next(iter(evaluation.take(1))))
        network.fit(D.training_input(train, train_batches, settings["batch_size"], distribution, strategy,
                                     train_files),
                    epochs=settings["epochs"], steps_per_epoch=settings.get("steps_per_epoch"),
                    validation_data=validation, validation_steps=validation_steps, callbacks=callbacks, verbose=0)
        return {"fit_seconds": time.perf_counter() - started, "train_steps": progress.steps,
                "validation_auc": progress.validation_auc,  # the last epoch's, on `eval_batches` batches
                "final_learning_rate": float(keras.backend.get_value(network.optimizer.learning_rate)),
                "warm_started_from": warm_started}

    name = config.preset or "model"
    trims = dtn_trim.trims(config.mixture)
    fitted = fit(model, f"{name} (before trimming)" if trims else name, logs)
    if trims:  # DTN-trim: the full DTN trained, cut its unused modules, retrain (when it cut any)
        trimmed = _trimmed(model, config, train, fn_args.model_run_dir, D.is_chief(strategy))
        if trimmed is not None:  # the retrained network's curves: a TensorBoard run of their own
            config = trimmed
            keras.utils.set_random_seed(settings["seed"])
            model = built(config)
            fitted = fit(model, f"{name} (trimmed)", os.path.join(logs, TRIMMED_LOGS))
    bias = reference_bias(model, train.map(lambda *batch: batch[:2]), config.calibration)
    # Every worker exports (saving may need all of them); only the chief where it belongs.
    export(model, tf_transform_output, D.write_path(fn_args.serving_model_dir, strategy), bias)
    D.remove_worker_temp(fn_args.serving_model_dir, strategy)
    if model.bias_tower is not None:
        logged = os.path.join(fn_args.model_run_dir, LOGGED_MODEL_DIR)
        export_logged_model(model, tf_transform_output, D.write_path(logged, strategy))
        D.remove_worker_temp(logged, strategy)
    if D.is_chief(strategy):
        tf.io.gfile.makedirs(fn_args.model_run_dir)
        with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, CALIBRATION_FILE), "w") as f:
            json.dump({"calibration": config.calibration, "reference_bias_logit": bias, "preset": config.preset}, f)
        with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, FIT_FILE), "w") as f:
            # training speed as logged: steps x batch size over the wall time of `fit` (with the
            # input pipeline and the per-epoch validation on `eval_batches` batches)
            examples = fitted["train_steps"] * settings["batch_size"]
            json.dump({**fitted, "batch_size": settings["batch_size"],
                       "examples_per_second": examples / fitted["fit_seconds"],
                       # the fusion network's own steps (every `period` batches; models/fusion_network.py)
                       "fusion_steps": (int(model.fusion_optimizer.iterations.numpy())
                                        if model.fusion_optimizer is not None else None)}, f)
        # what tomorrow's run warm-starts from, if this model is blessed
        warm_start.save(model, tf_transform_output, fn_args.serving_model_dir,
                        P.transform_config(custom)["num_oov_buckets"])
        _summarise_network(model, evaluation, tf_transform_output, fn_args.model_run_dir)
    D.wait_for_all_workers(strategy)
    return model
