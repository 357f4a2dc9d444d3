"""TF Serving warmup records (`assets.extra/tf_serving_warmup_requests`), made at push.

TF Serving replays the PredictionLog records of that file when it loads a version, before
the version is marked AVAILABLE, so the first real requests do not pay for graph
initialisation (https://www.tensorflow.org/tfx/serving/saved_model_warmup).

At push, `prepare_push` makes requests for both signatures at typical sizes
(`serving_default` batches of 1 / 32 / 256 examples, `rank` requests of 50 and 200
candidates, sequences at full length) from examples synthesised with ids of the model's own
vocabulary assets, so any pushed model gets warmup records without data plumbing; it checks
that the staged model answers every request before the version becomes visible.
"""

import os
from typing import List, Sequence

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from models import features as F
from models import preprocessing as P
from serving import rank_request

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
MODEL_NAME = "funnel"
EXAMPLE_BATCH_SIZES = (1, 32, 256)
RANK_CANDIDATES = (50, 200)


def synthetic_examples(model_dir: str, count: int = 256, seed: int = 0) -> List[bytes]:
    """Serialized raw examples with every feature the serving signatures read: ids drawn from
    the model's vocabularies (`assets/<id>_vocab`), full-length behaviour sequences, and
    non-negative dense values. For warmup and load tests, not for quality."""
    rng = np.random.default_rng(seed)
    vocab = {}
    for name in F.ITEM_ID_FEATURES + (F.SCENARIO,):
        path = os.path.join(model_dir, "assets", P.vocab_name(name))
        with tf.io.gfile.GFile(path, "rb") as f:
            tokens = [line.rstrip(b"\n") for line in f][:1000]
        vocab[name] = tokens or [b""]

    def ids(name, n):
        return [vocab[name][i] for i in rng.integers(0, len(vocab[name]), n)]

    examples = []
    for _ in range(count):
        features = {name: rank_request.to_feature(ids(name, 1)) for name in F.ITEM_ID_FEATURES + (F.SCENARIO,)}
        for s, (length, window) in F.SEQUENCES.items():
            for field in F.ITEM_ID_FEATURES:
                features[F.sequence_feature(s, field)] = rank_request.to_feature(ids(field, length))
            ages = np.sort(rng.integers(1, window, length))
            features[F.sequence_feature(s, F.SEQUENCE_AGE)] = rank_request.to_feature(ages)
        for name in F.DENSE_FEATURES:
            features[name] = rank_request.to_feature([float(rng.exponential(5.0))])
        examples.append(tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString())
    return examples


def _cycle(items: Sequence[bytes], n: int) -> List[bytes]:
    return [items[i % len(items)] for i in range(n)]


def predict_request(signature: str, inputs, model_name: str = MODEL_NAME) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return request


def build_requests(serialized_examples: Sequence[bytes], model_name: str = MODEL_NAME,
                   batch_sizes: Sequence[int] = EXAMPLE_BATCH_SIZES,
                   rank_candidates: Sequence[int] = RANK_CANDIDATES) -> List[predict_pb2.PredictRequest]:
    if not serialized_examples:
        raise ValueError("warmup needs at least one example")
    requests = [predict_request("serving_default", {"examples": np.array(_cycle(serialized_examples, n), object)},
                         model_name) for n in batch_sizes]
    for n in rank_candidates:
        ranked = rank_request.from_examples(_cycle(serialized_examples, n))
        requests.append(predict_request(rank_request.SIGNATURE, ranked, model_name))
    return requests


def write_warmup(model_dir: str, requests: Sequence[predict_pb2.PredictRequest]) -> str:
    path = os.path.join(model_dir, WARMUP_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        for request in requests:
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path


def read_warmup(model_dir: str) -> List[prediction_log_pb2.PredictionLog]:
    logs = []
    for record in tf.data.TFRecordDataset(os.path.join(model_dir, WARMUP_FILE)):
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(record.numpy())
        logs.append(log)
    return logs


def replay(model_dir: str, logs: Sequence[prediction_log_pb2.PredictionLog], loaded=None) -> None:
    """Runs every warmup request on the SavedModel in-process; raises if one fails."""
    loaded = loaded or tf.saved_model.load(model_dir)
    for log in logs:
        request = log.predict_log.request
        signature = loaded.signatures[request.model_spec.signature_name or "serving_default"]
        outputs = signature(**{name: tf.constant(tf.make_ndarray(t)) for name, t in request.inputs.items()})
        for name, value in outputs.items():
            if not np.isfinite(value.numpy()).all():
                raise ValueError(f"warmup request on {request.model_spec.signature_name}: non-finite {name}")


def prepare_push(model_dir: str, model_name: str = MODEL_NAME) -> str:
    """In a staged copy of a model: writes the warmup file and checks that the model answers
    every request in it (a model TF Serving would fail to warm up is never pushed)."""
    requests = build_requests(synthetic_examples(model_dir), model_name)
    path = write_warmup(model_dir, requests)
    replay(model_dir, read_warmup(model_dir))
    return path
