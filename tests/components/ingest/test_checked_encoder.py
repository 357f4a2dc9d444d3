"""The ingest's checked encoder (components/ingest/checked_encoder.py): the NumPy encoder's
self-check against tfx_bsl, and the fallback when it fails."""

import numpy as np
import pyarrow as pa
import pytest

from components.ingest import checked_encoder, example_encoder
from tests.components.ingest.test_example_encoder import _assert_same, _lists, _random_batch



class _ReversedWrites(np.ndarray):
    """Windows whose fancy assignments write the last index first: what the NumPy encoder would
    see if NumPy ever changed the (undocumented) order of a 1-d fancy assignment."""

    def __setitem__(self, index, values):
        if isinstance(index, np.ndarray) and index.ndim == 1 and index.dtype.kind in "iu":
            index, values = index[::-1], np.broadcast_to(values, index.shape)[::-1]
        super().__setitem__(index, values)


@pytest.fixture
def fresh_self_check():
    checked_encoder._numpy_encoder_trusted.cache_clear()
    yield
    checked_encoder._numpy_encoder_trusted.cache_clear()


def test_the_self_check_passes_with_this_numpy(fresh_self_check):
    assert checked_encoder.self_check()
    assert checked_encoder._numpy_encoder_trusted()


def test_another_write_order_fails_the_self_check_and_falls_back_to_tfx_bsl(monkeypatch, caplog, fresh_self_check):
    batch = _random_batch(5, 30)
    groups = _random_batch(6, 4)
    groups = pa.RecordBatch.from_arrays(groups.columns, [f"shared_{name}" for name in groups.schema.names])
    rows = np.arange(30) % 4
    shared = example_encoder.SharedColumns(groups, rows, 3)
    expected = checked_encoder.encode_examples(batch, shared)  # the NumPy encoder, trusted
    windows = example_encoder._windows
    monkeypatch.setattr(example_encoder, "_windows", lambda buf, width: windows(buf, width).view(_ReversedWrites))
    assert example_encoder.encode_examples(batch, shared) != expected  # the order matters: garbage wins
    assert not checked_encoder.self_check()
    checked_encoder._numpy_encoder_trusted.cache_clear()
    with caplog.at_level("WARNING", logger=checked_encoder.__name__):
        fallback = checked_encoder.encode_examples(batch, shared)
    assert "encoding with tfx_bsl" in caplog.text
    _assert_same(fallback, expected)  # the same messages, by tfx_bsl


def test_the_fallback_casts_values_and_empties_null_lists_as_the_numpy_encoder_does():
    values = pa.array([b"a", b"skipped", b"b"])
    batch = pa.RecordBatch.from_arrays([
        pa.ListArray.from_arrays(pa.array([0, 1, 2, 3], pa.int32()), values, mask=pa.array([False, True, False])),
        _lists([["\u00e9", ""], [], ["abc"]], pa.string()),
        _lists([[1, -2], None, []], pa.int32()),
        _lists([[0.1, np.nan], [1e300], [-0.0]], pa.float64()),
    ], ["b", "s", "i32", "f64"])
    _assert_same(checked_encoder._encode_with_tfx_bsl(batch), example_encoder.encode_examples(batch))
