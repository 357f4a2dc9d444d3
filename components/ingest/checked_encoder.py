"""The ingest's tf.Example encoder: components/ingest/example_encoder.py's NumPy encoder,
checked once per process against tfx_bsl's.

The NumPy encoder relies on NumPy writing a 1-d fancy assignment with overlapping windows in
index order, which NumPy does not document. So the first call in a process (a Beam worker's
first batch) encodes a canary batch both ways (`self_check`); should they ever differ, this
process logs a warning and encodes with tfx_bsl (about 3x slower) instead.
"""

import functools
import logging
from typing import List, Optional, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from components.ingest import example_encoder
from components.ingest.example_encoder import SharedColumns


def encode_examples(batch: pa.RecordBatch, shared: Optional[SharedColumns] = None) -> List[bytes]:
    """example_encoder.encode_examples's messages: by it when its self-check passed in this
    process, else by tfx_bsl."""
    if not _numpy_encoder_trusted():
        return _encode_with_tfx_bsl(batch, shared)
    return example_encoder.encode_examples(batch, shared)


def _inline(batch: pa.RecordBatch, shared: Optional[SharedColumns]) -> pa.RecordBatch:
    """The batch with the shared columns expanded per row, at their position."""
    if shared is None:
        return batch
    expanded = shared.batch.take(pa.array(np.asarray(shared.rows, np.int64)))
    names, arrays = list(batch.schema.names), list(batch.columns)
    names[shared.position:shared.position] = expanded.schema.names
    arrays[shared.position:shared.position] = expanded.columns
    return pa.RecordBatch.from_arrays(arrays, names)


def _tfx_bsl_column(array: pa.Array) -> pa.Array:
    """A list column as tfx_bsl's encoder takes it: binary, int64 or float32 values, no null lists."""
    value_type = array.type.value_type
    if pa.types.is_string(value_type) or pa.types.is_large_string(value_type):
        value_type = pa.large_binary() if pa.types.is_large_string(value_type) else pa.binary()
    elif pa.types.is_integer(value_type):
        value_type = pa.int64()
    elif pa.types.is_floating(value_type):
        value_type = pa.float32()
    list_type = pa.large_list(value_type) if pa.types.is_large_list(array.type) else pa.list_(value_type)
    array = array.cast(list_type)
    return pc.fill_null(array, pa.scalar([], type=list_type)) if array.null_count else array


def _encode_with_tfx_bsl(batch: pa.RecordBatch, shared: Optional[SharedColumns] = None) -> List[bytes]:
    """The same messages by tfx_bsl's encoder (map entries in its own order)."""
    from tfx_bsl.coders import example_coder

    batch = _inline(batch, shared)
    batch = pa.RecordBatch.from_arrays([_tfx_bsl_column(c) for c in batch.columns], batch.schema.names)
    return example_coder.RecordBatchToExamplesEncoder().encode(batch)


def _canary() -> Tuple[pa.RecordBatch, SharedColumns]:
    """Rows of every value kind and awkward size (empty lists, 1-3 byte length varints, 10-byte
    varints, NaN and signed zeros, values past the windows), with shared columns."""
    words = [b"", b"i1", b"x" * 14, b"y" * 15, b"z" * 127, b"w" * 128, b"v" * 300, "\u00e9t\u00e9".encode()]
    ints = [0, 1, 127, 128, 16384, 2**63 - 1, -1, -2**63]
    floats = [0.0, -0.0, 1.5, float("nan"), float("inf"), -3.25e38, 1e-45]
    rows = 24
    columns = {
        "id": pa.array([[words[i % len(words)]] for i in range(rows)], pa.list_(pa.binary())),
        "tags": pa.array([words[:i % 6] for i in range(rows)], pa.list_(pa.binary())),
        "ints": pa.array([ints[:i % 9] for i in range(rows)], pa.list_(pa.int64())),
        "floats": pa.array([floats[:i % 8] * (1 + i // 8) for i in range(rows)], pa.list_(pa.float32())),
        "x" * 70: pa.array([[i] for i in range(rows)], pa.large_list(pa.int64())),
    }
    batch = pa.RecordBatch.from_arrays(list(columns.values()), list(columns))
    groups = pa.RecordBatch.from_arrays(
        [pa.array([words[:k] for k in range(5)], pa.list_(pa.binary())),
         pa.array([ints[:k] * 3 for k in range(5)], pa.list_(pa.int64()))], ["sequence", "ages"])
    return batch, SharedColumns(groups, np.arange(rows) % 5, 2)


def _decoded(examples: List[bytes]) -> dict:
    """Each feature's list offsets and value bytes (floats by their bits), decoded by tfx_bsl:
    equal for two encodings iff they hold the same messages, whatever their map order."""
    from tfx_bsl.coders import example_coder

    decoded = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(examples)
    found = {}
    for name, column in zip(decoded.schema.names, decoded.columns):
        values = column.flatten()
        if pa.types.is_floating(values.type):
            values = values.to_numpy(zero_copy_only=False).view(np.uint32).tolist()
        else:
            values = values.to_pylist()
        found[name] = (column.offsets.to_pylist(), column.is_null().to_pylist(), values)
    return found


def self_check() -> bool:
    """Whether the NumPy encoder's messages equal tfx_bsl's on the canary batch."""
    batch, shared = _canary()
    ours = example_encoder.encode_examples(batch, shared)
    try:
        decoded = _decoded(ours)
    except RuntimeError:  # tfx_bsl's DATA_LOSS: not even parseable messages
        return False
    return len(ours) == batch.num_rows and decoded == _decoded(_encode_with_tfx_bsl(batch, shared))


@functools.lru_cache(maxsize=None)
def _numpy_encoder_trusted() -> bool:
    """self_check, once per process; a warning when it fails (tfx_bsl encodes from then on)."""
    try:
        trusted = self_check()
    except Exception:  # noqa: BLE001 -- any failure of the NumPy path means: do not use it
        logging.getLogger(__name__).warning("NumPy example encoder self-check raised", exc_info=True)
        trusted = False
    if not trusted:
        logging.getLogger(__name__).warning(
            "the NumPy tf.Example encoder's canary differs from tfx_bsl's: encoding with tfx_bsl "
            "(about 3x slower) in this process")
    return trusted
