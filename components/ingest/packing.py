"""DataFrame parts packed for a shuffle: pickled column arrays, integers narrowed.

On the local runner a GroupByKey value crosses gRPC and is copied about five times (worker
to runner, decoded, re-encoded, runner to worker), so its size is what a shuffle costs.
Packed here, a part is pickled once as plain arrays; integer columns take the smallest
type that holds their values (ids, positions, codes and Unix seconds fit in 1-4 bytes);
`unpack` concatenates the parts back into one frame with int64 columns. An impressions
part shrinks from ~86 to ~50 bytes a row (measured).

The pickles are internal: `pack` runs in the ingest's DoFn before its GroupByKey and `unpack`
after it, in the same pipeline; nothing here (or elsewhere in funnel) unpickles data read from a
file, a log or a request (README, "Exposure"; tests/test_secrets.py keeps it so).
"""

import pickle
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

_NARROW_TYPES = (np.int8, np.int16, np.int32)


def _narrow(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind != "i" or not len(values):
        return values
    low, high = values.min(), values.max()
    for dtype in _NARROW_TYPES:
        if np.iinfo(dtype).min <= low and high <= np.iinfo(dtype).max:
            return values.astype(dtype)
    return values


def pack(frame: pd.DataFrame, drop: Sequence[str] = ()) -> bytes:
    """The frame's columns, but `drop`, as one pickled dict of arrays."""
    columns = {name: _narrow(frame[name].to_numpy()) for name in frame.columns if name not in drop}
    return pickle.dumps(columns, protocol=pickle.HIGHEST_PROTOCOL)


def unpack(parts: Iterable[bytes], empty: pd.DataFrame) -> pd.DataFrame:
    """One frame from packed parts of the same columns (`empty` when there are none)."""
    columns = [pickle.loads(part) for part in parts]
    if not columns:
        return empty
    return pd.DataFrame({name: _widen(np.concatenate([c[name] for c in columns])) for name in columns[0]})


def _widen(values: np.ndarray) -> np.ndarray:
    return values.astype(np.int64) if values.dtype.kind == "i" else values
