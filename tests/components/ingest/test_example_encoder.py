"""`encode_examples` gives the same tf.Example messages as tfx_bsl's encoder."""

import numpy as np
import pyarrow as pa
import pytest
import tensorflow as tf
from tfx_bsl.coders import example_coder

from components.ingest import example_encoder
from components.ingest.example_encoder import encode_examples

INT_SPECIALS = [0, 1, 127, 128, 16383, 16384, 2**31, 2**62, 2**63 - 1, -1, -2**63]
FLOAT_SPECIALS = [np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-45, 3.4e38]


def _tfx(batch: pa.RecordBatch) -> list:
    return example_coder.RecordBatchToExamplesEncoder().encode(batch)


def _canonical(serialized: bytes) -> bytes:
    """The message re-serialized with sorted map keys: equal iff the messages are equal,
    NaN included (float bits survive parsing)."""
    return tf.train.Example.FromString(serialized).SerializeToString(deterministic=True)


def _assert_same(ours: list, theirs: list) -> None:
    assert len(ours) == len(theirs)
    for row, (a, b) in enumerate(zip(ours, theirs)):
        assert _canonical(a) == _canonical(b), f"row {row}"


def _lists(rows: list, value_type, list_type=pa.list_) -> pa.Array:
    return pa.array(rows, list_type(value_type))


def _random_batch(seed: int, n: int) -> pa.RecordBatch:
    """Scalar and variable-length columns of every kind, with the awkward values."""
    rng = np.random.default_rng(seed)
    words = [b"", b"i1", b"i12345", "\u00e9t\u00e9 \u2603".encode(), b"\x00\xff\n",
             b"x" * 14, b"y" * 15, b"z" * 127, b"w" * 128, b"v" * 300, b"u" * 16385]
    weights = np.array([3, 20, 20, 5, 3, 3, 3, 2, 2, 1, 0.2])

    def pick(k):
        return [words[i] for i in rng.choice(len(words), k, p=weights / weights.sum())]

    def counts(top):
        return rng.integers(0, top + 1, n)

    ints = np.array(INT_SPECIALS + list(rng.integers(-2**63, 2**63 - 1, 50)), np.int64)
    floats = np.array(FLOAT_SPECIALS + list(rng.normal(size=50)), np.float32)
    columns = {
        "id": _lists([pick(1) for _ in range(n)], pa.binary()),
        "tags": _lists([pick(k) for k in counts(8)], pa.binary()),
        "ts": _lists([[int(v)] for v in rng.choice(ints, n)], pa.int64()),
        "ages": _lists([list(rng.choice(ints, k)) for k in counts(6)], pa.int64()),
        "small": _lists([list(rng.integers(0, 300, k)) for k in counts(40)], pa.int64()),
        "score": _lists([[float(v)] for v in rng.choice(floats, n)], pa.float32()),
        "pair": _lists([list(rng.choice(floats, 2)) for _ in range(n)], pa.float32()),
        "dense": _lists([list(rng.choice(floats, k)) for k in counts(40)], pa.float32()),
        "nothing": _lists([[] for _ in range(n)], pa.float32()),
        "neighbors": _lists([pick(6) for _ in range(n)], pa.binary(), pa.large_list),
        "wide": _lists([pick(k) for k in counts(3)], pa.large_binary()),
        "a_feature_name_longer_than_the_windows_used_to_write_headers_" * 2:
            _lists([list(rng.integers(0, 2, k)) for k in counts(1)], pa.int64()),
    }
    return pa.RecordBatch.from_arrays(list(columns.values()), list(columns))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_random_batches_equal_tfx_bsl(seed):
    batch = _random_batch(seed, 61)
    _assert_same(encode_examples(batch), _tfx(batch))


def test_extreme_values_equal_tfx_bsl():
    # 2- and 3-byte length varints, a list over 16 KiB (headers computed row by row),
    # 10-byte varints, floats whose lists exceed the 64-byte windows.
    batch = pa.RecordBatch.from_arrays([
        _lists([[b"a" * 200, b""], [b"b" * 20000], [], [b"c" * 127, b"d" * 128]], pa.binary()),
        _lists([INT_SPECIALS, [], [-1] * 30, [2**63 - 1]], pa.int64()),
        _lists([FLOAT_SPECIALS * 5, [], [np.nan], list(np.arange(17.0))], pa.float32()),
    ], ["b", "i", "f"])
    _assert_same(encode_examples(batch), _tfx(batch))


def test_many_chunks_equal_tfx_bsl(monkeypatch):
    # Small chunks: header tables grow between chunks, buffers end mid-batch.
    monkeypatch.setattr(example_encoder, "_ROWS_PER_CHUNK", 7)
    batch = _random_batch(7, 100)
    _assert_same(encode_examples(batch), _tfx(batch))


def test_sliced_batch_equals_tfx_bsl_on_the_slice():
    batch = _random_batch(4, 20)
    sliced = batch.slice(3, 5)
    copied = pa.RecordBatch.from_pylist(sliced.to_pylist(), schema=batch.schema)
    _assert_same(encode_examples(sliced), _tfx(sliced))
    _assert_same(encode_examples(sliced), _tfx(copied))
    _assert_same(encode_examples(sliced), encode_examples(batch)[3:8])


def test_zero_rows():
    assert encode_examples(_random_batch(0, 5).slice(0, 0)) == []


def test_other_value_types_are_cast():
    # tfx_bsl only takes binary, int64 and float32 values: compare with the cast batch.
    batch = pa.RecordBatch.from_arrays([
        _lists([["\u00e9", ""], [], ["abc"]], pa.string()),
        _lists([["x" * 200], ["y"], []], pa.large_string()),
        _lists([[1, -2], [2**31 - 1], []], pa.int32()),
        _lists([[0.1, np.nan], [1e300], [-0.0]], pa.float64()),
    ], ["s", "ls", "i32", "f64"])
    cast = pa.RecordBatch.from_arrays([
        batch.column(0).cast(pa.list_(pa.binary())),
        batch.column(1).cast(pa.list_(pa.large_binary())),
        batch.column(2).cast(pa.list_(pa.int64())),
        batch.column(3).cast(pa.list_(pa.float32())),
    ], batch.schema.names)
    _assert_same(encode_examples(batch), _tfx(cast))


def test_null_lists_are_empty_lists():
    values = pa.array([b"a", b"skipped", b"b"])
    with_null = pa.ListArray.from_arrays(pa.array([0, 1, 2, 3], pa.int32()), values,
                                         mask=pa.array([False, True, False]))
    batch = pa.RecordBatch.from_arrays([with_null, _lists([[1], None, [2]], pa.int64())],
                                       ["b", "i"])
    expected = pa.RecordBatch.from_arrays([_lists([[b"a"], [], [b"b"]], pa.binary()),
                                           _lists([[1], [], [2]], pa.int64())], ["b", "i"])
    _assert_same(encode_examples(batch), _tfx(expected))


def _inline(batch: pa.RecordBatch, shared: example_encoder.SharedColumns) -> pa.RecordBatch:
    """The batch with the shared columns expanded per row, at their position."""
    expanded = shared.batch.take(pa.array(shared.rows, pa.int64()))
    names, arrays = list(batch.schema.names), list(batch.columns)
    names[shared.position:shared.position] = expanded.schema.names
    arrays[shared.position:shared.position] = expanded.columns
    return pa.RecordBatch.from_arrays(arrays, names)


@pytest.mark.parametrize("position", [0, 5, 15])
def test_shared_columns_give_the_bytes_of_inline_columns(position, monkeypatch):
    # Groups of every kind of column (long values, empty lists, wide entries), used by
    # runs of rows, by no row, and out of order; small chunks, so groups span chunks.
    monkeypatch.setattr(example_encoder, "_ROWS_PER_CHUNK", 9)
    batch = _random_batch(5, 40)
    groups = _random_batch(6, 12)
    groups = pa.RecordBatch.from_arrays(groups.columns, [f"shared_{n}" for n in groups.schema.names])
    rows = np.repeat([3, 0, 7, 7, 11, 1, 3, 9, 2, 5], 4)  # 4, 6, 8 and 10 are unused
    shared = example_encoder.SharedColumns(groups, rows, position)
    inline = _inline(batch, shared)
    assert encode_examples(batch, shared) == encode_examples(inline)
    _assert_same(encode_examples(batch, shared), _tfx(inline))


def test_shared_columns_need_a_group_for_every_row():
    batch = _random_batch(0, 4)
    for rows in (np.array([0, 1, 2]), np.array([0, 1, 2, 3])):  # too few; group 3 missing
        with pytest.raises(ValueError, match="group"):
            encode_examples(batch, example_encoder.SharedColumns(_random_batch(1, 3), rows, 0))


def test_wire_bytes_of_a_small_example():
    batch = pa.RecordBatch.from_arrays([
        _lists([[b"xy"]], pa.binary()), _lists([[]], pa.int64()), _lists([[1.5]], pa.float32()),
    ], ["b", "a", "c"])
    # Map entries in column order; the empty int64 list is a Feature {int64_list {}}.
    expected = bytes.fromhex("0a25" "0a0b0a016212060a040a027879" "0a070a016112021a00"
                             "0a0d0a0163120812060a040000c03f")
    assert encode_examples(batch) == [expected]


def test_parse_example_reads_our_bytes():
    batch = pa.RecordBatch.from_arrays([
        _lists([[b"i1"], [b"i22"], [b""]], pa.binary()),
        _lists([[3], [-1], [2**40]], pa.int64()),
        _lists([[0.5], [-2.0], [np.inf]], pa.float32()),
        _lists([[b"a", b"bc"], [], [b"d"]], pa.binary()),
        _lists([[1, 2, 3], [4], []], pa.int64()),
        _lists([[], [1.0, 2.0], [3.0]], pa.float32()),
    ], ["item", "ts", "score", "tags", "ages", "dense"])
    spec = {
        "item": tf.io.FixedLenFeature([], tf.string),
        "ts": tf.io.FixedLenFeature([], tf.int64),
        "score": tf.io.FixedLenFeature([], tf.float32),
        "tags": tf.io.RaggedFeature(tf.string),
        "ages": tf.io.RaggedFeature(tf.int64),
        "dense": tf.io.RaggedFeature(tf.float32),
    }
    parsed = tf.io.parse_example(tf.constant(encode_examples(batch)), spec)
    assert parsed["item"].numpy().tolist() == [b"i1", b"i22", b""]
    assert parsed["ts"].numpy().tolist() == [3, -1, 2**40]
    assert parsed["score"].numpy().tolist() == [0.5, -2.0, np.inf]
    assert parsed["tags"].to_list() == [[b"a", b"bc"], [], [b"d"]]
    assert parsed["ages"].to_list() == [[1, 2, 3], [4], []]
    assert parsed["dense"].to_list() == [[], [1.0, 2.0], [3.0]]


def test_rejects_non_list_columns():
    with pytest.raises(TypeError):
        encode_examples(pa.RecordBatch.from_arrays([pa.array([1, 2])], ["x"]))

