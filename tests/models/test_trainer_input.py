"""The Trainer's input (models/trainer.py `_dataset`): request-grouped batches for the fusion
network's per-request loss, and the request key of the Transform (models/preprocessing.py)."""

import collections

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_transform.tf_metadata import schema_utils
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from models import features as F
from models import preprocessing as P
from models import trainer

SPEC = {F.IMPRESSION_ID: tf.io.FixedLenFeature([1], tf.string), F.REQUEST_KEY: tf.io.FixedLenFeature([1], tf.int64),
        F.CLICK: tf.io.FixedLenFeature([1], tf.float32), F.ORDER: tf.io.FixedLenFeature([1], tf.float32),
        F.ITEM_ID: tf.io.FixedLenFeature([1], tf.int64),
        F.sequence_feature(F.SEQUENCE_CLICK, F.ITEM_ID): tf.io.VarLenFeature(tf.int64)}


def _example(impression: int, request: int) -> bytes:
    def ints(*v):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=list(v)))

    def floats(v):
        return tf.train.Feature(float_list=tf.train.FloatList(value=[v]))

    return tf.train.Example(features=tf.train.Features(feature={
        F.IMPRESSION_ID: tf.train.Feature(bytes_list=tf.train.BytesList(value=[str(impression).encode()])),
        F.REQUEST_KEY: ints(request), F.CLICK: floats(float(impression % 7 == 0)), F.ORDER: floats(0.0),
        F.ITEM_ID: ints(impression), F.sequence_feature(F.SEQUENCE_CLICK, F.ITEM_ID): ints(*range(impression % 3)),
    })).SerializeToString()


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """Two gzipped TFRecord files of requests written contiguously, as the ingest writes them:
    ~1,200 examples in 160 requests of 1 to 15 candidates. -> (file pattern, {impression: request})."""
    root = tmp_path_factory.mktemp("transformed")
    rng = np.random.default_rng(0)
    request_of, impression, request = {}, 0, 0
    for part in range(2):
        with tf.io.TFRecordWriter(str(root / f"part-{part}.gz"), options="GZIP") as writer:
            for _ in range(80):
                request += 1
                for _ in range(int(rng.integers(1, 16))):
                    writer.write(_example(impression, request))
                    request_of[str(impression)] = request
                    impression += 1
    return str(root / "part-*.gz"), request_of


class _Transformed:  # what `_dataset` reads of a TFTransformOutput
    class transformed_metadata:  # noqa: N801
        schema = schema_utils.schema_from_feature_spec(SPEC)


def _accessor():
    def factory(file_pattern, options, schema):
        return tfxio.TFExampleRecord(file_pattern=file_pattern, schema=schema).TensorFlowDataset(options)

    return tfx.components.DataAccessor(tf_dataset_factory=factory, record_batch_factory=None,
                                       data_view_decode_fn=None)


def _batches(pattern, by_request, seed=0):
    dataset = trainer._dataset([pattern], _accessor(), _Transformed, [F.CLICK, F.ORDER], 128, shuffle=True,
                               seed=seed, by_request=by_request)
    return [(features, labels) for features, labels in dataset]


def _impressions(features):
    return [i.decode() for i in features[F.IMPRESSION_ID].numpy().ravel()] if F.IMPRESSION_ID in features else None


def request_grouping(key_batches):
    """Of the requests with several candidates in batches of request keys: (how many, the
    fraction whose candidates all share one batch, the fraction of their same-request pairs
    that share a batch)."""
    in_batch, sizes = collections.Counter(), collections.Counter()
    for b, keys in enumerate(key_batches):
        for key in np.ravel(keys).tolist():
            in_batch[key, b] += 1
            sizes[key] += 1
    several = [k for k, n in sizes.items() if n > 1]
    whole = sum(in_batch[k, b] == sizes[k] for k, b in in_batch if sizes[k] > 1) / len(several)
    pairs = sum(n * (n - 1) for n in in_batch.values()) / sum(n * (n - 1) for n in sizes.values())
    return len(several), whole, pairs


def _whole_request_fraction(batches):
    return request_grouping([features[F.REQUEST_KEY].numpy() for features, _ in batches])[1]


def test_request_grouped_batches_keep_requests_whole_and_read_every_example_once(split, monkeypatch):
    monkeypatch.setattr(trainer, "REQUEST_BLOCK_BUFFER", 8)  # of the 19 blocks of 64
    pattern, request_of = split
    grouped = _batches(pattern, by_request=True)
    keys = np.concatenate([f[F.REQUEST_KEY].numpy().ravel() for f, _ in grouped])
    assert len(keys) == len(request_of) and sorted(collections.Counter(keys).items()) == sorted(
        collections.Counter(request_of.values()).items())  # every example exactly once
    assert all(F.IMPRESSION_ID not in f and F.CLICK not in f for f, _ in grouped)  # ids and labels popped
    assert all(set(labels) == {F.CLICK, F.ORDER} for _, labels in grouped)
    # only a block's or a batch's edge cuts a request; an example-level shuffle scatters them
    assert _whole_request_fraction(grouped) >= 0.75
    shuffled = _batches(pattern, by_request=False)
    assert all(F.REQUEST_KEY not in f for f, _ in shuffled)
    # the blocks are shuffled: not the files' order
    first = [int(k) for k in grouped[0][0][F.REQUEST_KEY].numpy().ravel()]
    assert first != sorted(first) or first[0] != 1
    # a fixed seed gives the same order; another seed another
    again = _batches(pattern, by_request=True)
    assert all(np.array_equal(a[0][F.REQUEST_KEY].numpy(), b[0][F.REQUEST_KEY].numpy()) for a, b in zip(grouped, again))
    other = _batches(pattern, by_request=True, seed=1)
    assert not all(np.array_equal(a[0][F.REQUEST_KEY].numpy(), b[0][F.REQUEST_KEY].numpy())
                   for a, b in zip(grouped, other))


def test_an_example_level_shuffle_would_scatter_the_requests(split):
    """What the grouping is for: the usual shuffle (buffer 10,000 > the split) leaves few requests
    whole in a batch, so a per-request loss would have almost no lists."""
    pattern, request_of = split
    dataset = trainer._dataset([pattern], _accessor(), _Transformed, [F.CLICK, F.ORDER], 128, shuffle=True,
                               seed=0, by_request=False)
    keyed = []  # the same reading with the key kept, to see where each request went
    raw = _accessor().tf_dataset_factory([pattern], tfxio.TensorFlowDatasetOptions(
        batch_size=128, shuffle=True, shuffle_seed=0, num_epochs=1), _Transformed.transformed_metadata.schema)
    for features in raw:
        keyed.append((features, None))
    assert sum(1 for _ in dataset) == len(keyed)
    assert _whole_request_fraction(keyed) < 0.3


def test_request_key_tells_requests_of_different_users_apart():
    users = tf.constant([["u1"], ["u1"], ["u2"], ["u1"]])
    requests = tf.constant([["r1"], ["r1"], ["r1"], ["r2"]])
    keys = P.request_key(users, requests).numpy().ravel()
    assert keys[0] == keys[1] and len({keys[0], keys[2], keys[3]}) == 3
    assert (keys >= 0).all() and keys.dtype == np.int64
    # the separator keeps ("u1", "1r") and ("u11", "r") apart
    a, b = P.request_key(tf.constant([["u1"], ["u11"]]), tf.constant([["1r"], ["r"]])).numpy().ravel()
    assert a != b
    np.testing.assert_array_equal(P.request_key(users, requests).numpy(), P.request_key(users, requests).numpy())
