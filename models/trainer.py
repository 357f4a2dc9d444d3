"""TFX Trainer module (`module_path="models.trainer"`): `run_fn` trains DMT (or DNN(Base)).

The exported SavedModel has two signatures, both over serialized `tf.Example`:
- `serving_default` (input `examples`): parses the raw features, applies the Transform
  graph itself and returns {task: sigmoid(u_k), "score": eq. 6} without the bias tower;
- `transform_features` (input `examples`): the transformed features, for the Evaluator.
"""

import os
from typing import Any, Dict, Optional

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from models import features as F
from models import preprocessing as P
from models.config import ModelConfig
from models.dmt import build_model, compile_model, export_serving_module

DEFAULT_TRAINER_CONFIG = {
    "batch_size": 512,
    "epochs": 1,
    "learning_rate": 1e-3,
    "eval_batches": 200,
    "seed": 0,
}


def trainer_config(custom_config: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    config = dict(DEFAULT_TRAINER_CONFIG)
    config.update((custom_config or {}).get("trainer", {}))
    return config


def model_config(custom_config: Optional[Dict[str, Any]]) -> ModelConfig:
    return ModelConfig.from_dict((custom_config or {}).get("model", {}), P.transform_config(custom_config))


def vocab_sizes(tf_transform_output: tft.TFTransformOutput, custom_config) -> Dict[str, int]:
    oov = P.transform_config(custom_config)["num_oov_buckets"]
    return {name: tf_transform_output.vocabulary_size_by_name(P.vocab_name(name)) + oov
            for name in P.ID_VOCABULARIES}


def _dataset(file_pattern, data_accessor, tf_transform_output, tasks, batch_size: int, shuffle: bool, seed: int):
    dataset = data_accessor.tf_dataset_factory(
        file_pattern,
        tfxio.TensorFlowDatasetOptions(batch_size=batch_size, shuffle=shuffle, shuffle_seed=seed, num_epochs=1),
        tf_transform_output.transformed_metadata.schema)

    def split(features):
        labels = {task: features.pop(task) for task in tasks}
        for name in F.LABELS + (F.IMPRESSION_ID,):
            features.pop(name, None)
        return features, labels

    return dataset.map(split, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


class ExportModule(tf.Module):
    """What is saved: the Transform layer and the serving module (no bias tower)."""

    def __init__(self, tf_transform_output: tft.TFTransformOutput, serving_module: tf.Module):
        super().__init__(name="funnel_export")
        self.tft_layer = tf_transform_output.transform_features_layer()
        self.serving = serving_module
        spec = tf_transform_output.raw_feature_spec()
        self._raw_spec = {k: v for k, v in spec.items() if k not in F.LABELS}
        examples = tf.TensorSpec([None], tf.string, name="examples")
        self.serve_examples = tf.function(self._serve_examples, input_signature=[examples])
        self.transform_examples = tf.function(self._transform_examples, input_signature=[examples])

    def _transform_examples(self, examples):
        return self.tft_layer(tf.io.parse_example(examples, self._raw_spec))

    def _serve_examples(self, examples):
        return self.serving(self._transform_examples(examples))

    def signatures(self):
        return {"serving_default": self.serve_examples.get_concrete_function(),
                "transform_features": self.transform_examples.get_concrete_function()}


def export(model, tf_transform_output: tft.TFTransformOutput, path: str) -> None:
    module = ExportModule(tf_transform_output, export_serving_module(model))
    tf.saved_model.save(module, path, signatures=module.signatures())


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    custom = fn_args.custom_config or {}
    settings = trainer_config(custom)
    keras.utils.set_random_seed(settings["seed"])
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    config = model_config(custom)
    model = build_model(config, vocab_sizes(tf_transform_output, custom))
    compile_model(model, optimizer=keras.optimizers.Adam(settings["learning_rate"]))

    train = _dataset(fn_args.train_files, fn_args.data_accessor, tf_transform_output, config.tasks,
                     settings["batch_size"], shuffle=True, seed=settings["seed"])
    evaluation = _dataset(fn_args.eval_files, fn_args.data_accessor, tf_transform_output, config.tasks,
                          settings["batch_size"], shuffle=False, seed=settings["seed"])
    # Per-epoch losses and per-task AUC go to the model_run artifact for TensorBoard.
    tensorboard = keras.callbacks.TensorBoard(log_dir=os.path.join(fn_args.model_run_dir, "logs"),
                                              update_freq="epoch")
    model.fit(train, epochs=settings["epochs"], validation_data=evaluation.take(settings["eval_batches"]),
              callbacks=[tensorboard], verbose=2)
    export(model, tf_transform_output, fn_args.serving_model_dir)
