"""One loaded SavedModel version of the development server (`serving.server`): its
SignatureDefs as TF Serving reads them, Predict with TF Serving's input checks and status
codes, and warmup replay."""

import logging
import os
from typing import Dict, Tuple

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import message, text_format
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import predict_pb2

from serving import warmup

LOG = logging.getLogger("funnel.serving")

DEFAULT_MAX_MESSAGE_BYTES = 64 << 20
DEFAULT_SIGNATURE = "serving_default"
_WARMUP_MAX_RECORDS = 1000  # TF Serving's limit
_CODES = {code.value[0]: code for code in grpc.StatusCode}  # tf.errors codes are gRPC's


class RequestError(Exception):
    """A request the server refuses: a gRPC status code and TF Serving's message."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message: str) -> RequestError:
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, message)


def read_signature_defs(model_dir: str) -> Dict[str, meta_graph_pb2.SignatureDef]:
    """The SignatureDefs of the `serve` MetaGraphDef, as TF Serving reads them."""
    saved_model = saved_model_pb2.SavedModel()
    binary = os.path.join(model_dir, "saved_model.pb")
    if tf.io.gfile.exists(binary):
        with tf.io.gfile.GFile(binary, "rb") as f:
            try:
                saved_model.ParseFromString(f.read())
            except message.DecodeError as e:  # e.g. truncated by an interrupted copy
                raise tf.errors.DataLossError(None, None, f"{binary} does not parse as a SavedModel "
                                                          f"(truncated or corrupt?): {e}") from None
    else:
        with tf.io.gfile.GFile(os.path.join(model_dir, "saved_model.pbtxt")) as f:
            text_format.Parse(f.read(), saved_model)
    for meta_graph in saved_model.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return dict(meta_graph.signature_def)
    raise ValueError(f"{model_dir}: no MetaGraphDef tagged 'serve'")


def _dtype_name(enum: int) -> str:
    try:
        return tf.dtypes.as_dtype(enum).name
    except TypeError:
        return f"DT_{enum}"


def _shape_text(dims) -> str:
    return "[" + ",".join("?" if d is None or d < 0 else str(d) for d in dims) + "]"


def _tensor_from_proto(name: str, proto, info: meta_graph_pb2.TensorInfo, max_elements: int) -> np.ndarray:
    if proto.dtype != info.dtype:
        raise invalid(f"Expects arg '{name}' to be {_dtype_name(info.dtype)} but {_dtype_name(proto.dtype)} "
                       "is provided")
    dims = [d.size for d in proto.tensor_shape.dim]
    if proto.tensor_shape.unknown_rank or any(d < 0 for d in dims):
        raise invalid(f"tensor parsing error: {name} (the shape must be fully defined)")
    # A single value broadcasts to the whole shape, so the declared size is not bounded by
    # the message size: refuse what could not have been sent element by element.
    if int(np.prod(dims, dtype=np.float64)) > max_elements:
        raise invalid(f"tensor parsing error: {name} (shape {_shape_text(dims)} is too large)")
    try:
        array = tf.make_ndarray(proto)
    except Exception as e:  # noqa: BLE001 - any malformed TensorProto
        raise invalid(f"tensor parsing error: {name} ({e})") from None
    expected = info.tensor_shape
    if not expected.unknown_rank:
        want = [d.size for d in expected.dim]
        if len(want) != array.ndim or any(w >= 0 and w != a for w, a in zip(want, array.shape)):
            raise invalid(f"input '{name}': shape {_shape_text(array.shape)} is not compatible with the "
                           f"signature's {_shape_text(want)}")
    return array


def status_from_exception(e: BaseException) -> Tuple[grpc.StatusCode, str]:
    if isinstance(e, RequestError):
        return e.code, e.message
    if isinstance(e, tf.errors.OpError):
        return _CODES.get(e.error_code, grpc.StatusCode.UNKNOWN), e.message.strip()
    if isinstance(e, FileNotFoundError):  # e.g. a version directory without its variables
        return grpc.StatusCode.NOT_FOUND, str(e).strip()
    return grpc.StatusCode.UNKNOWN, f"{type(e).__name__}: {e}"


class Servable:
    """One loaded version: the TF runtime's signatures and the SavedModel's SignatureDefs."""

    def __init__(self, version: int, path: str, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES):
        self.version = version
        self.path = path
        self.max_elements = max_message_bytes if max_message_bytes > 0 else 1 << 31
        self.signature_defs = read_signature_defs(path)
        self.model = tf.saved_model.load(path, tags=["serve"])
        self.functions = dict(self.model.signatures)

    def predict(self, request: predict_pb2.PredictRequest, model_name: str) -> predict_pb2.PredictResponse:
        signature_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
        signature = self.signature_defs.get(signature_name)
        function = self.functions.get(signature_name)
        if signature is None or function is None:
            raise invalid(f'Serving signature name: "{signature_name}" not found in signature def')
        sent, expected = set(request.inputs), set(signature.inputs)
        if sent != expected:
            raise invalid(
                f"input size does not match signature: {len(sent)}!={len(expected)} "
                f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(expected))}}}). "
                f"Sent extra: {{{','.join(sorted(sent - expected))}}}. "
                f"Missing but required: {{{','.join(sorted(expected - sent))}}}.")
        outputs = list(request.output_filter) or list(signature.outputs)
        seen = set()
        for name in outputs:
            if name not in signature.outputs:
                raise invalid(f"output tensor alias not found in signature: {name} Outputs expected to be in "
                               f"the set {{{','.join(sorted(signature.outputs))}}}.")
            if name in seen:
                raise invalid(f"duplicate output tensor alias: {name}")
            seen.add(name)
        inputs = {name: _tensor_from_proto(name, proto, signature.inputs[name], self.max_elements)
                  for name, proto in request.inputs.items()}
        try:
            results = function(**inputs)  # an OpError goes up as it is: callers map it like TF Serving
        except UnicodeDecodeError:  # TF's error message quoted input bytes that are not UTF-8
            raise invalid("the model rejected an input (the runtime's message quotes non-UTF-8 input bytes); "
                           "e.g. a serialized tf.Example that does not parse") from None
        except (TypeError, ValueError) as e:  # rejected by the function's own input signature
            raise invalid(str(e)) from None
        response = predict_pb2.PredictResponse()
        response.model_spec.name = model_name
        response.model_spec.version.value = self.version
        response.model_spec.signature_name = signature_name
        for name in outputs:
            response.outputs[name].CopyFrom(tf.make_tensor_proto(results[name].numpy()))
        return response

    def warm_up(self, model_name: str) -> int:
        """Replays the version's warmup PredictionLogs, as TF Serving does before serving it;
        a failing request fails the load. Returns the number of requests replayed."""
        path = os.path.join(self.path, warmup.WARMUP_FILE)
        if not tf.io.gfile.exists(path):
            return 0
        count = 0
        for log in warmup.read_warmup(self.path)[:_WARMUP_MAX_RECORDS]:
            if log.WhichOneof("log_type") != "predict_log":
                LOG.warning("%s: skipping a %s warmup record (only Predict is implemented)", path,
                            log.WhichOneof("log_type"))
                continue
            self.predict(log.predict_log.request, model_name)
            count += 1
        return count
