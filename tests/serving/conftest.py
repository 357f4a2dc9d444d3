"""Small SavedModels with TF Serving-style signatures, shared by the server and client tests."""

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.data.experimental.ops.testing import sleep as sleep_dataset  # TF's own SleepDataset

from serving.server import serve

_FEATURES = {"x": tf.io.FixedLenFeature([], tf.float32, default_value=0.0),
             "item_id": tf.io.FixedLenFeature([], tf.string, default_value="")}


class _Ranker(tf.Module):
    def __init__(self, weight: float):
        super().__init__()
        self.w = tf.Variable(weight, dtype=tf.float32)
        self.b = tf.Variable(0.25, dtype=tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(self, examples):
        features = tf.io.parse_example(examples, _FEATURES)
        logit = self.w * features["x"] + self.b + 0.01 * tf.cast(tf.strings.length(features["item_id"]), tf.float32)
        return {"score": logit, "click": tf.sigmoid(logit), "item_id": features["item_id"]}

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.string, name="item_id"),
                                  tf.TensorSpec([None, None], tf.float32, name="price"),
                                  tf.TensorSpec([None, None], tf.int64, name="age")])
    def rank(self, item_id, price, age):
        score = self.w * price - 0.01 * tf.cast(age, tf.float32) + self.b
        return {"score": score, "bucket": tf.strings.to_hash_bucket_fast(item_id, 97)}


class _Sleeper(tf.Module):
    """A model whose `sleep` signature answers after `milliseconds` without using the CPU: a
    request that stays in flight for as long as a test needs."""

    @tf.function(input_signature=[tf.TensorSpec([], tf.int64, name="milliseconds")])
    def sleep(self, milliseconds):
        slept = tf.data.Dataset.from_tensors(milliseconds).apply(sleep_dataset(milliseconds * 1000))
        return {"slept": slept.get_single_element()}


def save_model(path: str, weight: float) -> str:
    module = _Ranker(weight)
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve_examples.get_concrete_function(),
                                                  "rank": module.rank.get_concrete_function()})
    return path


def make_example(x: float, item_id: str) -> bytes:
    return tf.train.Example(features=tf.train.Features(feature={
        "x": tf.train.Feature(float_list=tf.train.FloatList(value=[x])),
        "item_id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[item_id.encode()])),
    })).SerializeToString()


EXAMPLES = [make_example(float(i) / 3 - 1, f"item-{i}") for i in range(7)]
RANK_INPUTS = {
    "item_id": np.array([[b"a", b"bb", b"ccc"], [b"d", b"ee", b"f"]], dtype=object),
    "price": np.array([[1.5, 2.25, 9.0], [0.1, 3.3, 7.7]], dtype=np.float32),
    "age": np.array([[1, 20, 300], [4, 5, 6]], dtype=np.int64),
}


@pytest.fixture(scope="session")
def saved_models(tmp_path_factory):
    """{1: dir, 2: dir} of two versions whose outputs differ."""
    root = tmp_path_factory.mktemp("saved_models")
    return {1: save_model(str(root / "v1"), 0.5), 2: save_model(str(root / "v2"), -2.0)}


@pytest.fixture(scope="session")
def reference(saved_models):
    """The version-1 SavedModel loaded in-process: what the server must answer."""
    return tf.saved_model.load(saved_models[1])


def make_base_path(root, saved_models, versions=(1,)) -> str:
    base = os.path.join(str(root), "serving")
    os.makedirs(base, exist_ok=True)
    for version in versions:
        shutil.copytree(saved_models[version], os.path.join(base, str(version)))
    return base


@pytest.fixture(scope="session")
def model_server(tmp_path_factory, saved_models):
    """A server on a free port serving version 1 (tests must not push versions to it)."""
    base = make_base_path(tmp_path_factory.mktemp("shared"), saved_models)
    server = serve(base, port=0, poll_seconds=0.5)
    server.wait_until_available(60)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def slow_model(tmp_path_factory):
    """A SavedModel with one signature, `sleep(milliseconds)`."""
    path = str(tmp_path_factory.mktemp("slow_model") / "model")
    module = _Sleeper()
    tf.saved_model.save(module, path, signatures={"sleep": module.sleep.get_concrete_function()})
    return path
