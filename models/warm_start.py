"""Warm start of daily retraining: the Trainer begins from the weights of the latest blessed
model (`trainer.warm_start: true`; the pipeline's Resolver gives it as the Trainer's
`base_model`, as TFX does) instead of a random initialisation.

Every Trainer saves, beside its SavedModel (`<model>/Format-Serving`), the training model's
weights in `model.weights` order (bias tower included, which the SavedModel leaves out) and
the vocabularies their embedding rows are indexed by (`<model>/warm_start/`). The next day's
vocabularies differ (new items, ids that fell under the frequency threshold), so an
embedding table is carried over row by row by token, OOV buckets by bucket; a token new today
keeps its fresh initialisation. Every other weight must have the same shape: the same
architecture, or a clear error. The optimizer's state starts afresh (Keras saves no slot
variables with `get_weights`). Under ParameterServerStrategy a large variable is split into
shards over the ps tasks and Keras lists the shards; they are saved and set as one weight, so
the saved weights do not depend on the cluster that trained them.
"""

import io
import json
import os
import re
from typing import Dict, List

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from models import features as F
from models import preprocessing as P

WARM_START_DIR = "warm_start"
WEIGHTS_FILE = "weights.npz"
MANIFEST_FILE = "manifest.json"
VOCABULARY_DIR = "vocabularies"
# The initial weights of a warm-started run, in its model_run artifact (for audits and tests).
INITIAL_WEIGHTS_FILE = "initial_weights.npz"

# Embedding layers (by name, models/embedding.py and models/bias.py) whose rows are the ids of a
# Transform vocabulary; every other table (positions, pages, buckets) has fixed rows.
_EMBEDDING_VOCABULARY = {**{f"{f}_embedding": f for f in F.ITEM_ID_FEATURES},
                         "category_embedding": F.CATEGORY_ID, "scenario_embedding": F.SCENARIO}


class WarmStartError(ValueError):
    """The base model cannot start this model (another architecture, or no saved weights)."""


def model_dir(serving_model_dir: str) -> str:
    """The model artifact's directory: the parent of its `Format-Serving` SavedModel."""
    return os.path.dirname(serving_model_dir.rstrip("/"))


# A shard of a ShardedVariable (tf.distribute's naming: `<variable>/part_<k>`).
_SHARD = re.compile(r"^(.*)/part_(\d+)(:\d+)?$")


def _weights(model: keras.Model) -> List[List[tf.Variable]]:
    """`model.weights`, the shards of each ShardedVariable grouped into one weight (Keras lists
    them one after the other)."""
    groups: List[List[tf.Variable]] = []
    for variable in model.weights:
        shard = _SHARD.match(variable.name)
        previous = _SHARD.match(groups[-1][-1].name) if groups else None
        if shard and int(shard.group(2)) > 0 and previous and previous.group(1) == shard.group(1):
            groups[-1].append(variable)
        else:
            groups.append([variable])
    return groups


def _name(weight: List[tf.Variable]) -> str:
    return _SHARD.match(weight[0].name).group(1) + ":0" if len(weight) > 1 else weight[0].name


def get_weights(model: keras.Model) -> List[np.ndarray]:
    """`model.get_weights()`, a sharded variable's shards joined (along rows, as TF shards)."""
    values = iter(keras.backend.batch_get_value(model.weights))
    return [np.concatenate([next(values) for _ in weight]) if len(weight) > 1 else next(values)
            for weight in _weights(model)]


def set_weights(model: keras.Model, arrays: List[np.ndarray]) -> None:
    """`model.set_weights()` from `get_weights`' arrays (a sharded variable's split again)."""
    pairs = []
    for weight, array in zip(_weights(model), arrays):
        rows = np.cumsum([int(shard.shape[0]) for shard in weight])[:-1]
        pairs += zip(weight, np.split(array, rows) if len(weight) > 1 else [array])
    keras.backend.batch_set_value(pairs)


def _vocabulary_weights(model: keras.Model) -> Dict[int, str]:
    """Position in `get_weights` -> the id feature whose vocabulary indexes its rows."""
    position = {id(weight[0]): i for i, weight in enumerate(_weights(model))}
    found = {}
    for layer in model.submodules:
        if isinstance(layer, keras.layers.Embedding) and layer.name in _EMBEDDING_VOCABULARY and layer.built:
            table = layer.embeddings
            found[position[id(getattr(table, "variables", [table])[0])]] = _EMBEDDING_VOCABULARY[layer.name]
    return found


def _write_npz(arrays: List[np.ndarray], path: str) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, *arrays)
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(buffer.getvalue())


def read_npz(path: str) -> List[np.ndarray]:
    with tf.io.gfile.GFile(path, "rb") as f:
        loaded = np.load(io.BytesIO(f.read()), allow_pickle=False)  # arrays only, never objects
        return [loaded[f"arr_{i}"] for i in range(len(loaded.files))]


def save(model: keras.Model, tf_transform_output: tft.TFTransformOutput, serving_model_dir: str,
         num_oov_buckets: int) -> str:
    """Saves what a later run warm-starts from, beside the SavedModel; returns the directory."""
    directory = os.path.join(model_dir(serving_model_dir), WARM_START_DIR)
    tf.io.gfile.makedirs(os.path.join(directory, VOCABULARY_DIR))
    vocabularies = _vocabulary_weights(model)
    for feature in sorted(set(vocabularies.values())):
        tf.io.gfile.copy(tf_transform_output.vocabulary_file_by_name(P.vocab_name(feature)),
                         os.path.join(directory, VOCABULARY_DIR, feature), overwrite=True)
    weights = get_weights(model)
    _write_npz(weights, os.path.join(directory, WEIGHTS_FILE))
    manifest = {"num_oov_buckets": num_oov_buckets,
                "weights": [{"name": _name(w), "shape": list(value.shape), "vocabulary": vocabularies.get(i)}
                            for i, (w, value) in enumerate(zip(_weights(model), weights))]}
    with tf.io.gfile.GFile(os.path.join(directory, MANIFEST_FILE), "w") as f:
        json.dump(manifest, f, indent=1)
    return directory


def _tokens(path: str) -> List[bytes]:
    with tf.io.gfile.GFile(path, "rb") as f:
        return f.read().splitlines()


def _with_oov(tokens: List[bytes], num_oov: int) -> List[bytes]:
    """The rows' keys: the vocabulary's tokens, then one key per OOV hash bucket (tokens are
    lines of a vocabulary file, so a key holding a newline is never one)."""
    return list(tokens) + [b"\noov%d" % bucket for bucket in range(num_oov)]


def _carry_rows(new: np.ndarray, old: np.ndarray, new_tokens: List[bytes], old_tokens: List[bytes],
                num_oov: int, name: str) -> np.ndarray:
    """`new` with each row whose token (or OOV bucket) the old table had taken from it
    (Keras' `warmstart_embedding_matrix`; `new` supplies the rows of tokens new today)."""
    if new.shape[1:] != old.shape[1:] or len(new) != len(new_tokens) + num_oov or len(old) != len(old_tokens) + num_oov:
        raise WarmStartError(f"weight {name}: embedding {old.shape} (vocabulary {len(old_tokens)} + {num_oov} OOV) "
                             f"cannot start {new.shape} (vocabulary {len(new_tokens)} + {num_oov} OOV)")
    return np.asarray(keras.utils.warmstart_embedding_matrix(
        _with_oov(old_tokens, num_oov), _with_oov(new_tokens, num_oov), old,
        new_embeddings_initializer=keras.initializers.Constant(new)), dtype=new.dtype)


def warm_start(model: keras.Model, base_serving_dir: str, tf_transform_output: tft.TFTransformOutput,
               num_oov_buckets: int) -> Dict[str, int]:
    """Sets the built `model`'s weights from the base model's (see the module's doc); returns,
    per vocabulary, how many of today's tokens kept yesterday's row."""
    directory = os.path.join(model_dir(base_serving_dir), WARM_START_DIR)
    if not tf.io.gfile.exists(os.path.join(directory, WEIGHTS_FILE)):
        raise WarmStartError(f"{directory}: the base model has no saved weights to warm-start from "
                             "(trained before warm starts existed?); run once with trainer.warm_start: false")
    with tf.io.gfile.GFile(os.path.join(directory, MANIFEST_FILE)) as f:
        manifest = json.load(f)
    old_weights = read_npz(os.path.join(directory, WEIGHTS_FILE))
    if manifest["num_oov_buckets"] != num_oov_buckets:
        raise WarmStartError(f"{directory}: base model has {manifest['num_oov_buckets']} OOV buckets, "
                             f"this run {num_oov_buckets} (transform.num_oov_buckets)")
    new_weights = get_weights(model)
    if len(old_weights) != len(new_weights):
        raise WarmStartError(f"{directory}: base model has {len(old_weights)} weights, this architecture "
                             f"{len(new_weights)}: not the same architecture (set trainer.warm_start: false)")
    vocabularies = _vocabulary_weights(model)
    carried: Dict[str, int] = {}
    started = []
    for i, (weight, new, old) in enumerate(zip(_weights(model), new_weights, old_weights)):
        feature = vocabularies.get(i)
        if feature is not None and manifest["weights"][i]["vocabulary"] == feature:
            new_tokens = tf_transform_output.vocabulary_by_name(P.vocab_name(feature))
            old_tokens = _tokens(os.path.join(directory, VOCABULARY_DIR, feature))
            started.append(_carry_rows(new, old, new_tokens, old_tokens, num_oov_buckets, _name(weight)))
            carried[feature] = len(set(new_tokens) & set(old_tokens))
        elif new.shape == old.shape:
            started.append(old)
        else:
            raise WarmStartError(f"{directory}: weight {i} ({_name(weight)}) has shape {list(old.shape)} in the base "
                                 f"model ({manifest['weights'][i]['name']}), {list(new.shape)} here: not the same "
                                 "architecture (set trainer.warm_start: false)")
    set_weights(model, started)
    return carried


def save_initial_weights(model: keras.Model, model_run_dir: str) -> None:
    tf.io.gfile.makedirs(model_run_dir)
    _write_npz(get_weights(model), os.path.join(model_run_dir, INITIAL_WEIGHTS_FILE))
