"""`rank` requests as NumPy arrays (layout: `models.rank_inputs`), and their conversions.

- `from_examples`: one request from training-format tf.Examples (the user context of one of
  them, every example as a candidate): for warmup files, benchmarks and tests;
- `to_examples`: the inverse, one serialized tf.Example per candidate carrying the request's
  context, so `serving_default` can score exactly what `rank` scores;
- `stack`: several requests of equal N and sequence lengths into one batch (R > 1);
- `to_json` / `from_json`: TF Serving's REST columnar format,
  `{"signature_name": "rank", "inputs": {name: nested lists}}`, what `funnel score --request` reads.
"""

import json
from typing import Any, Dict, Iterable, List, Sequence

import numpy as np
import tensorflow as tf

from models import features as F
from models import rank_inputs

SIGNATURE = "rank"
# input name -> NumPy dtype of its array
_DTYPES = {name: {tf.string: object, tf.int64: np.int64, tf.float32: np.float32}[spec.dtype]
           for name, spec in rank_inputs.input_signature().items()}


def _dtype(name: str):
    return _DTYPES[name]


def _values(example: tf.train.Example, name: str) -> list:
    feature = example.features.feature.get(name)
    if feature is None:
        return []
    kind = feature.WhichOneof("kind")
    return list(getattr(feature, kind).value) if kind else []


def _scalar(example: tf.train.Example, name: str, default=None):
    values = _values(example, name)
    if not values:
        if default is None:
            raise ValueError(f"example has no feature {name!r}")
        return default
    return values[0]


def from_examples(serialized: Sequence[bytes], context_index: int = 0,
                  pad_sequences: bool = True) -> Dict[str, np.ndarray]:
    """One request (R = 1): the context of example `context_index`, all examples as candidates.

    With `pad_sequences`, every behaviour sequence is padded to its maximum length
    (`features.SEQUENCES`) with item_id "": padded elements change no score, and requests of
    one shape can share a TF Serving batch (batching concatenates requests along the request
    dimension only; serving/batching_parameters.pbtxt)."""
    if not serialized:
        raise ValueError("a rank request needs at least one candidate")
    examples = [tf.train.Example.FromString(s) for s in serialized]
    context = examples[context_index]
    request = {F.SCENARIO: np.array([_scalar(context, F.SCENARIO, F.DEFAULT_SCENARIO.encode())], object)}
    for s in F.SEQUENCES:
        for field in F.SEQUENCE_ELEMENT_FIELDS:
            name = F.sequence_feature(s, field)
            request[name] = np.array([_values(context, name)], _dtype(name)).reshape(1, -1)
            if pad_sequences:
                fill = 0 if field == F.SEQUENCE_AGE else b""
                request[name] = _pad(request[name][:, :F.SEQUENCES[s][0]], F.SEQUENCES[s][0], fill)
    for name in F.USER_DENSE_FEATURES:
        request[name] = np.array([_scalar(context, name)], np.float32)
    for name in rank_inputs.CANDIDATE_FEATURES:
        request[name] = np.array([[_scalar(e, name) for e in examples]], _dtype(name))
    return request


def num_candidates(request: Dict[str, np.ndarray]) -> int:
    return int(np.shape(request[F.ITEM_ID])[1])


def to_feature(values) -> tf.train.Feature:
    """A tf.train.Feature of any array-like: bytes / str -> bytes_list, floats -> float_list,
    integers -> int64_list."""
    values = np.asarray(values).reshape(-1)
    if values.dtype == object or values.dtype.kind in "SU":
        return tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[v if isinstance(v, bytes) else str(v).encode() for v in values]))
    if values.dtype.kind == "f":
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def to_examples(request: Dict[str, np.ndarray]) -> List[bytes]:
    """Serialized tf.Examples, request-major: candidate j of request r carries r's context."""
    arrays = {name: np.asarray(value, _dtype(name)) for name, value in request.items()}
    out = []
    for r in range(arrays[F.ITEM_ID].shape[0]):
        context = {name: to_feature(arrays[name][r]) for name in rank_inputs.CONTEXT_FEATURES}
        for s in F.SEQUENCES:
            item_ids = arrays[F.sequence_feature(s, F.ITEM_ID)][r]
            present = (item_ids != b"") & (item_ids != "")
            for field in F.SEQUENCE_ELEMENT_FIELDS:
                name = F.sequence_feature(s, field)
                context[name] = to_feature(arrays[name][r][present])
        for j in range(arrays[F.ITEM_ID].shape[1]):
            feature = dict(context)
            for name in rank_inputs.CANDIDATE_FEATURES:
                feature[name] = to_feature(arrays[name][r, j])
            out.append(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return out


def _pad(values: np.ndarray, width: int, fill) -> np.ndarray:
    pad = width - values.shape[1]
    return values if pad == 0 else np.concatenate([values, np.full((values.shape[0], pad), fill, values.dtype)], 1)


def stack(requests: Iterable[Dict[str, np.ndarray]]) -> Dict[str, np.ndarray]:
    """Requests with equal N -> one batch of R requests (sequences padded with "" / 0)."""
    requests = list(requests)
    if len({num_candidates(r) for r in requests}) != 1:
        raise ValueError("requests of one batch must have the same number of candidates")
    out = {}
    for name in requests[0]:
        parts = [np.asarray(r[name]) for r in requests]
        if name in F.SEQUENCE_FEATURES:
            width = max(p.shape[1] for p in parts)
            fill = 0 if name.endswith(F.SEQUENCE_AGE) else b""
            parts = [_pad(p, width, fill) for p in parts]
        out[name] = np.concatenate(parts, axis=0)
    return out


def jsonable(value: Any) -> Any:
    """An array (or value) as nested JSON lists; bytes as UTF-8 text."""
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value] if value.dtype == object else value.tolist()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    if isinstance(value, np.generic):
        return value.item()
    return value


def to_json(request: Dict[str, np.ndarray]) -> str:
    return json.dumps({"signature_name": SIGNATURE,
                       "inputs": {name: jsonable(np.asarray(value)) for name, value in request.items()}})


def from_json(text: str) -> Dict[str, np.ndarray]:
    body = json.loads(text)
    inputs = body.get("inputs")
    if not isinstance(inputs, dict):
        raise ValueError('a rank request needs an "inputs" object')
    specs = rank_inputs.input_signature()
    unknown = sorted(set(inputs) - set(specs))
    missing = sorted(set(specs) - set(inputs))
    if unknown or missing:
        raise ValueError(f"rank request inputs: unknown {unknown}, missing {missing}")
    out = {}
    for name, value in inputs.items():
        dtype = _dtype(name)
        array = np.array(value, dtype=object if dtype is object else dtype)
        out[name] = np.vectorize(lambda v: v.encode() if isinstance(v, str) else v, otypes=[object])(array) \
            if dtype is object and array.size else array
    return out
