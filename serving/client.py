"""A gRPC client of TensorFlow Serving (and of the development server, serving/server.py),
and `funnel score`.

`FunnelClient` uses the official stubs. Every attempt has a deadline (`timeout` seconds).
UNAVAILABLE (server down, restarting, not reachable yet) is retried `retries` times with
exponential backoff (backoff, 2*backoff, ...), and so is CANCELLED from the server: what a call
that races a server's shutdown gets (TF Serving's and `funnel serve`'s), without having run;
every call here is free of side effects, so a repeat is safe. DEADLINE_EXCEEDED is retried
only for the status and metadata calls: a timed-out Predict may still be running, and
repeating it would add load exactly when the server is slow. Other codes are not retried. Failures raise
a `ServingError` subclass carrying the gRPC code and the server's message.

Every call asks for the newest version unless the client was made with `version` (one
version) or `version_label` (e.g. `canary` / `stable`, serving/models.config's labels); the
status call ignores the label (it lists every version).

Plaintext by default; `tls=True` (or any of `tls_ca`, `tls_cert`, `tls_key`) connects with TLS,
verifying the server against `tls_ca` (PEM; default the system's CAs) and presenting
`tls_cert` / `tls_key` to a server that requires client certificates.
"""

import base64
import json
import os
import re
import sys
import threading
import time
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_service_pb2_grpc)

from serving.rank_request import jsonable
from serving.servable import DEFAULT_SIGNATURE
EXAMPLES_INPUT = "examples"
DEFAULT_BATCH_SIZE = 256
_STATE_NAMES = {v: k for k, v in get_model_status_pb2.ModelVersionStatus.State.items()}
# Until gRPC's own reconnect backoff expires (1 s at first, growing to 120 s by default), calls
# on a channel that failed to connect fail at once with UNAVAILABLE, so our retries against a
# server that is just starting would all fail: keep it on the scale of our backoff.
_RECONNECT_BACKOFF_MS = 100


class ServingError(Exception):
    """A failed call: `.code` is the gRPC status code (None for local errors), `.details` the
    server's message."""

    def __init__(self, message: str, code: Optional[grpc.StatusCode] = None, details: str = ""):
        super().__init__(message)
        self.code = code
        self.details = details


class InvalidRequestError(ServingError):
    """INVALID_ARGUMENT (or FAILED_PRECONDITION): the request does not fit the signature."""


class ModelNotFoundError(ServingError):
    """NOT_FOUND: the server does not serve that model (or version)."""


class ServerUnavailableError(ServingError):
    """UNAVAILABLE after every retry."""


class RequestTooLargeError(ServingError):
    """RESOURCE_EXHAUSTED: a message above the server's (or client's) size limit."""


class ServingTimeoutError(ServingError):
    """DEADLINE_EXCEEDED: no answer within the timeout."""


def _error(e: grpc.RpcError, what: str, attempts: int) -> ServingError:
    code, details = e.code(), e.details() or ""
    if code == grpc.StatusCode.UNAVAILABLE:
        return ServerUnavailableError(f"{what}: server unavailable after {attempts} attempt(s): {details}", code,
                                      details)
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION):
        return InvalidRequestError(f"{what}: invalid request: {details}", code, details)
    if code == grpc.StatusCode.NOT_FOUND:
        return ModelNotFoundError(f"{what}: not found: {details}", code, details)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return RequestTooLargeError(f"{what}: message too large: {details}", code, details)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return ServingTimeoutError(f"{what}: no answer within the deadline: {details}", code, details)
    return ServingError(f"{what}: {code.name}: {details}", code, details)


def _to_tensor_proto(name: str, value: Any, dtype: Optional[tf.DType]):
    """A TensorProto of `value` with the signature's dtype; refuses lossy numeric casts
    (e.g. 1.5 for an int64 input) rather than truncating silently."""
    try:
        if dtype is None:  # not in the signature: the server names the problem
            return tf.make_tensor_proto(value)
        if dtype == tf.string:
            return tf.make_tensor_proto(np.asarray(value, dtype=object), dtype=tf.string)
        array = np.asarray(value)
        target = np.dtype(dtype.as_numpy_dtype)
        if array.dtype.kind in "OSU" or not np.can_cast(array.dtype, target, casting="same_kind"):
            raise TypeError(f"{array.dtype} values cannot be sent as {dtype.name}")
        return tf.make_tensor_proto(array.astype(target, copy=False))
    except (TypeError, ValueError) as e:
        raise InvalidRequestError(f"input '{name}': {e}") from None


def channel_credentials(tls: bool = False, ca: Optional[str] = None, cert: Optional[str] = None,
                        key: Optional[str] = None) -> Optional[grpc.ChannelCredentials]:
    """TLS credentials from PEM files, or None for plaintext (no TLS asked for). ValueError for
    a certificate without its key or the reverse; OSError for a file that cannot be read."""
    if not (tls or ca or cert or key):
        return None
    if bool(cert) != bool(key):
        raise ValueError("a client certificate needs its key: give both --tls-cert and --tls-key")

    def read(path: Optional[str]) -> Optional[bytes]:
        if not path:
            return None
        with open(path, "rb") as f:
            return f.read()

    return grpc.ssl_channel_credentials(root_certificates=read(ca), private_key=read(key),
                                        certificate_chain=read(cert))


class FunnelClient:
    """Predict / GetModelMetadata / GetModelStatus against a TF Serving gRPC endpoint."""

    def __init__(self, target: str, model_name: str = "funnel", timeout: float = 5.0, retries: int = 3,
                 backoff: float = 0.1, version: Optional[int] = None, max_message_bytes: int = -1,
                 tls: bool = False, tls_ca: Optional[str] = None, tls_cert: Optional[str] = None,
                 tls_key: Optional[str] = None, version_label: Optional[str] = None):
        if version is not None and version_label:
            raise ValueError("ask for a version or a version label, not both")
        self.target = target
        self.model_name = model_name
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.version = version
        self.version_label = version_label or None
        options = [("grpc.max_send_message_length", max_message_bytes),
                   ("grpc.max_receive_message_length", max_message_bytes),
                   ("grpc.initial_reconnect_backoff_ms", _RECONNECT_BACKOFF_MS),
                   ("grpc.max_reconnect_backoff_ms", max(_RECONNECT_BACKOFF_MS, int(backoff * 1000 * 8)))]
        credentials = channel_credentials(tls, tls_ca, tls_cert, tls_key)
        self._channel = (grpc.secure_channel(target, credentials, options=options) if credentials
                         else grpc.insecure_channel(target, options=options))
        self._predictions = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)
        self._signatures: Optional[Dict[str, Dict[str, Tuple[tf.DType, Optional[Tuple]]]]] = None
        self._lock = threading.Lock()

    def _spec(self, spec, version: Optional[int] = None, signature: Optional[str] = None, label: bool = True):
        spec.name = self.model_name
        if version is not None:
            spec.version.value = version
        elif self.version is not None:
            spec.version.value = self.version
        elif self.version_label and label:
            spec.version_label = self.version_label
        if signature is not None:
            spec.signature_name = signature
        return spec

    def _describe(self, version: Optional[int] = None) -> str:
        version = self.version if version is None else version
        if version is not None:
            return f"model {self.model_name} version {version}"
        return f"model {self.model_name}" + (f" label {self.version_label}" if self.version_label else "")

    def _call(self, method, request, what: str, idempotent: bool):
        retriable = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}
        if idempotent:
            retriable.add(grpc.StatusCode.DEADLINE_EXCEEDED)
        for attempt in range(self.retries + 1):
            try:
                return method(request, timeout=self.timeout)
            except grpc.RpcError as e:
                if e.code() not in retriable or attempt == self.retries:
                    raise _error(e, f"{self.target} {what}", attempt + 1) from None
                time.sleep(self.backoff * (2 ** attempt))

    def model_status(self, version: Optional[int] = None) -> List[Tuple[int, str]]:
        """[(version, state name)] as GetModelStatus reports them, e.g. [(3, "AVAILABLE")]."""
        request = get_model_status_pb2.GetModelStatusRequest()
        self._spec(request.model_spec, version, label=False)  # a status lists every version, labelled or not
        response = self._call(self._models.GetModelStatus, request, self._describe(version), idempotent=True)
        return [(s.version, _STATE_NAMES.get(s.state, str(s.state))) for s in response.model_version_status]

    def signatures(self) -> Dict[str, Dict[str, Tuple[tf.DType, Optional[Tuple]]]]:
        """{signature: {input: (dtype, shape)}} from GetModelMetadata (cached); a shape is a
        tuple with None for unknown dimensions, or None for an unknown rank."""
        with self._lock:
            if self._signatures is not None:
                return self._signatures
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._spec(request.model_spec)
        response = self._call(self._predictions.GetModelMetadata, request, self._describe(), idempotent=True)
        signature_defs = get_model_metadata_pb2.SignatureDefMap()
        if not response.metadata["signature_def"].Unpack(signature_defs):
            raise ServingError(f"{self.target} {self._describe()}: the metadata holds no SignatureDefMap")
        signatures = {}
        for name, signature in signature_defs.signature_def.items():
            signatures[name] = {
                key: (tf.dtypes.as_dtype(info.dtype),
                      None if info.tensor_shape.unknown_rank
                      else tuple(d.size if d.size >= 0 else None for d in info.tensor_shape.dim))
                for key, info in signature.inputs.items()}
        with self._lock:
            self._signatures = signatures
        return signatures

    def signature_inputs(self, signature: str = DEFAULT_SIGNATURE) -> Dict[str, Tuple[tf.DType, Optional[Tuple]]]:
        """{input name: (dtype, shape)} of one signature."""
        signatures = self.signatures()
        if signature not in signatures:
            raise InvalidRequestError(f"{self.target} {self._describe()}: no signature {signature!r} "
                                      f"(has {', '.join(sorted(signatures))})")
        return signatures[signature]

    def predict(self, inputs: Mapping[str, Any], signature: str = DEFAULT_SIGNATURE,
                output_filter: Sequence[str] = ()) -> Dict[str, np.ndarray]:
        """{output name: array}. Each input (array or nested lists) is converted to the dtype
        the signature declares."""
        declared = self.signature_inputs(signature)
        request = predict_pb2.PredictRequest(output_filter=list(output_filter))
        self._spec(request.model_spec, signature=signature)
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(_to_tensor_proto(name, value, declared.get(name, (None,))[0]))
        return self._predict(request)

    def predict_examples(self, serialized_examples: Sequence[bytes], signature: str = DEFAULT_SIGNATURE
                         ) -> Dict[str, np.ndarray]:
        """Scores serialized tf.Examples with a signature taking `examples` (string [None])."""
        request = predict_pb2.PredictRequest()
        self._spec(request.model_spec, signature=signature)
        request.inputs[EXAMPLES_INPUT].CopyFrom(
            tf.make_tensor_proto(np.asarray(list(serialized_examples), dtype=object), dtype=tf.string))
        return self._predict(request)

    def _predict(self, request: predict_pb2.PredictRequest) -> Dict[str, np.ndarray]:
        try:
            response = self._call(self._predictions.Predict, request, self._describe(), idempotent=False)
        except InvalidRequestError:
            with self._lock:
                self._signatures = None  # a newer version may have changed the signatures
            raise
        return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "FunnelClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---- funnel score -------------------------------------------------------------------------

def _decode_b64(value: Any) -> Any:
    """TF Serving's REST encoding of binary strings: {"b64": "..."}."""
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [_decode_b64(v) for v in value]
    return value


def _read_examples(path: str, batch_size: int) -> Iterable[List[bytes]]:
    """Batches of serialized examples; a file tf.data cannot read is a ValueError naming it."""
    dataset = tf.data.TFRecordDataset(path, compression_type="GZIP" if path.endswith(".gz") else "")
    try:  # only reading raises OpError here: the consumer's errors do not enter the generator
        for batch in dataset.batch(batch_size):
            yield list(batch.numpy())
    except tf.errors.OpError as e:  # its message starts with the graph node: "{{function_node ...}} "
        reason = re.sub(r"^\{\{function_node [^}]*\}\}\s*|\s*\[Op:\w+\].*$", "", " ".join(e.message.split()))
        raise ValueError(f"{path}: {reason}") from None


def score_examples(client: FunnelClient, path: str, out, signature: str = DEFAULT_SIGNATURE,
                   batch_size: int = DEFAULT_BATCH_SIZE) -> int:
    """Writes one JSON object per example (every output's value for it); returns the count."""
    count = 0
    for chunk in _read_examples(path, batch_size):
        outputs = client.predict_examples(chunk, signature)
        for name, value in outputs.items():
            if value.ndim == 0 or value.shape[0] != len(chunk):
                raise ServingError(f"output {name!r} has shape {list(value.shape)}, not one row per example")
        for i in range(len(chunk)):
            out.write(json.dumps({name: jsonable(value[i]) for name, value in outputs.items()}) + "\n")
        count += len(chunk)
    return count


def score_request(client: FunnelClient, request: Mapping[str, Any], signature: Optional[str]) -> Dict[str, Any]:
    """A TF-Serving-REST-style columnar request -> {"outputs": {name: nested list}}."""
    signature = signature or request.get("signature_name") or DEFAULT_SIGNATURE
    inputs = request.get("inputs")
    if inputs is None:
        raise ValueError('the request has no "inputs"')
    if not isinstance(inputs, dict):  # REST's unnamed form, for a signature with one input
        names = list(client.signature_inputs(signature))
        if len(names) != 1:
            raise ValueError(f'unnamed "inputs" but signature {signature!r} has inputs {names}')
        inputs = {names[0]: inputs}
    outputs = client.predict({k: _decode_b64(v) for k, v in inputs.items()}, signature)
    return {"outputs": {name: jsonable(value) for name, value in outputs.items()}}


def read_request(path: str) -> Dict[str, Any]:
    """The JSON request of `funnel score --request`; ValueError naming the file (and where the
    parser stopped) when it is not a JSON object."""
    if not tf.io.gfile.exists(path):
        raise ValueError(f"{path}: no such file")
    with tf.io.gfile.GFile(path) as f:
        text = f.read()
    try:
        request = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON (line {e.lineno}, column {e.colno}): {e.msg}") from None
    if not isinstance(request, dict):
        raise ValueError(f'{path}: a JSON object {{"signature_name": ..., "inputs": ...}}, got {type(request).__name__}')
    return request


def _check_arguments(args) -> None:
    if not args.timeout > 0:
        raise ValueError(f"--timeout must be above 0 seconds, got {args.timeout}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.version is not None and args.version < 0:
        raise ValueError(f"--version must not be negative, got {args.version}")
    if args.examples and not tf.io.gfile.exists(args.examples):
        raise ValueError(f"{args.examples}: no such file")


def run(args) -> int:
    """`funnel score`; exit code 2 with a one-line message on a serving or input error. `--out`
    appears only whole: the scores go to a temporary file beside it, renamed on success (a
    failure half-way leaves no file that looks complete, and an existing one untouched)."""
    partial = None
    try:
        _check_arguments(args)  # before anything is written or sent
        request = read_request(args.request) if args.request else None
        if args.out:  # beside it, so that the rename stays on one filesystem; open(): the umask's mode
            directory, name = os.path.split(os.path.abspath(args.out))
            partial = open(os.path.join(directory, f".{name}.partial-{os.getpid()}"), "w")
        out = partial or sys.stdout
        with FunnelClient(args.target, args.model, timeout=args.timeout, tls=args.tls, tls_ca=args.tls_ca,
                          tls_cert=args.tls_cert, tls_key=args.tls_key, version=args.version,
                          version_label=args.version_label) as client:
            if args.examples:
                count = score_examples(client, args.examples, out, args.signature or DEFAULT_SIGNATURE,
                                       args.batch_size)
            else:
                out.write(json.dumps(score_request(client, request, args.signature)) + "\n")
        if partial is not None:
            partial.close()
            os.replace(partial.name, args.out)
            partial = None
            if args.examples:
                print(f"scored {count} examples into {args.out}", file=sys.stderr)
    except (ServingError, ValueError, OSError, tf.errors.OpError) as e:
        message = e.message if isinstance(e, tf.errors.OpError) else str(e)
        print(f"funnel score: {' '.join(message.split())}", file=sys.stderr)
        return 2
    finally:
        if partial is not None:  # failed: the scores so far are dropped
            partial.close()
            os.remove(partial.name)
    return 0
