"""A development model server that speaks TensorFlow Serving's gRPC protocol.

DEVELOPMENT ONLY. Production serves pushed models with TensorFlow Serving
(`tensorflow_model_server --port=8500 --model_name=funnel --model_base_path=WORK/serving`).
This server exists so that the client, `funnel score`, tests and benchmarks run where
TF Serving cannot be installed. Clients see the same services, messages and status codes
(the wording of a few error messages differs).

- `tensorflow.serving.PredictionService`: Predict and GetModelMetadata (`signature_def`);
  Classify, Regress and MultiInference answer UNIMPLEMENTED.
- `tensorflow.serving.ModelService`: GetModelStatus; HandleReloadConfigRequest answers
  UNIMPLEMENTED.

As TF Serving: the model base path holds `<integer version>/saved_model.pb`; other names
(e.g. the Pusher's `.tmp-<version>` staging directories) are ignored. The two newest
loadable versions are served (`latest { num_versions: 2 }`, as serving/models.config; see
`num_versions`); the base path is polled every `poll_seconds` and a new version is loaded
fully (and warmed up with `assets.extra/tf_serving_warmup_requests` if present) while the
old ones keep serving, then swapped in and the oldest unloaded; a request in flight finishes
on the version it started with. A version that fails to load (e.g. missing variables, a
truncated saved_model.pb, a failing warmup request) is logged once, reported as END with its
error by GetModelStatus, and not retried until its directory is removed; the loaded ones
keep serving. Deleting a served version's directory unloads it (rolls back to the newest
remaining ones). Status codes and messages follow TF Serving's. One loaded version (its
signatures, Predict's input checks, warmup replay) is `serving.servable.Servable`.

Versions: a request without a version gets the newest loaded one; `version` asks for one of
the loaded versions (else NOT_FOUND); `version_label` `canary` is the newest loaded version
and `stable` the one before it, or the only one when one is loaded: what
`serving.set_version_labels` writes into models.config for TF Serving. TF Serving takes its
labels from the config instead; other labels are INVALID_ARGUMENT ("Unrecognized servable
version label"), as TF Serving answers a label its config does not define.

Exposure: the server listens on 127.0.0.1 unless told otherwise (`host`). With a certificate
and key (`TlsConfig`, `funnel serve --tls-cert --tls-key`) it speaks TLS only; with a client
CA as well (`--tls-client-ca`) every client must present a certificate signed by that CA
(mutual TLS). Per request, besides gRPC's message-size limit (`max_message_bytes`: larger
messages get RESOURCE_EXHAUSTED), Predict refuses more than `max_candidates` candidates with
INVALID_ARGUMENT naming the cap (see `count_candidates`). Requests are protobufs: nothing
in them is unpickled or executed.

Shutdown: on SIGTERM or SIGINT `funnel serve` stops accepting requests (new calls get
UNAVAILABLE, which clients retry elsewhere; a call that races the shutdown may get CANCELLED
without having run), gives those in flight `--grace-seconds` to finish, then exits 0.

Differences: one model; labels follow the loaded versions (no config file); if every
version directory disappears the last ones keep serving; no request batching, no REST API.
"""

import logging
import signal
import sys
import threading
from concurrent import futures
from typing import List, NamedTuple, Optional, Tuple

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc,
                                     prediction_service_pb2_grpc, status_pb2)

from pipeline import paths
from serving import warmup
from serving.model_manager import DEFAULT_NUM_VERSIONS, ModelManager, list_versions  # noqa: F401 - re-exported
from serving.servable import DEFAULT_MAX_MESSAGE_BYTES, RequestError, invalid, status_from_exception
from serving.set_version_labels import labels_for

LOG = logging.getLogger("funnel.serving")

DEFAULT_MODEL_NAME = warmup.MODEL_NAME
DEFAULT_PORT = 8500
# Candidates one Predict call may score (about 50 ranking requests of 200); 0 = no cap.
DEFAULT_MAX_CANDIDATES = 10_000
# The inputs whose elements are candidates: one serialized tf.Example per candidate in
# `serving_default`, one `item_id` per candidate ([R, N]) in `rank` (models/rank_inputs.py).
CANDIDATE_INPUTS = ("examples", "item_id")
# Seconds in-flight requests get to finish after SIGTERM / SIGINT (then they are cancelled).
DEFAULT_GRACE_SECONDS = 5.0


class TlsConfig(NamedTuple):
    """PEM files: the server's certificate chain and private key, and optionally the CA that
    must have signed every client's certificate (then a client without one is refused)."""
    cert: str
    key: str
    client_ca: Optional[str] = None

    def credentials(self) -> grpc.ServerCredentials:
        def read(path: str) -> bytes:
            with open(path, "rb") as f:  # OSError (missing, unreadable) goes to the caller
                return f.read()

        client_ca = read(self.client_ca) if self.client_ca else None
        return grpc.ssl_server_credentials([(read(self.key), read(self.cert))], root_certificates=client_ca,
                                           require_client_auth=client_ca is not None)


def count_candidates(request) -> Tuple[int, str]:
    """(candidates, what was counted) of a PredictRequest, from the tensors' declared shapes
    (nothing is decoded): the elements of its `examples` or `item_id` input, else the largest
    leading dimension of its inputs (the batch of a signature funnel does not define)."""
    def shape(proto) -> Tuple[int, ...]:
        return tuple(max(d.size, 0) for d in proto.tensor_shape.dim)

    counted = [(int(np.prod(shape(request.inputs[name]), dtype=np.float64)), name)
               for name in CANDIDATE_INPUTS if name in request.inputs]
    if not counted:
        counted = [(shape(proto)[0] if shape(proto) else 1, name) for name, proto in request.inputs.items()]
    if not counted:
        return 0, "no inputs"
    count, name = max(counted)
    dims = ",".join(str(d) for d in shape(request.inputs[name]))
    return count, f"input '{name}' [{dims}]"




def _abort(context, e: BaseException) -> None:
    if isinstance(e, (RequestError, tf.errors.OpError)):
        code, message = status_from_exception(e)
    else:
        LOG.exception("unexpected error")
        code, message = grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}"
    context.abort(code, message)


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, manager: ModelManager, max_candidates: int = DEFAULT_MAX_CANDIDATES):
        self._manager = manager
        self._max_candidates = max_candidates

    def Predict(self, request, context):
        try:
            if not request.HasField("model_spec"):
                raise invalid("Missing ModelSpec")
            if self._max_candidates > 0:
                count, what = count_candidates(request)
                if count > self._max_candidates:
                    raise invalid(f"the request has {count} candidates ({what}); this server scores at most "
                                  f"{self._max_candidates} per request (--max-candidates): split it")
            return self._manager.resolve(request.model_spec).predict(request, self._manager.model_name)
        except Exception as e:  # noqa: BLE001 - every error becomes a status; the server keeps serving
            _abort(context, e)

    def GetModelMetadata(self, request, context):
        try:
            if not request.HasField("model_spec"):
                raise invalid("Missing ModelSpec")
            if not request.metadata_field:
                raise invalid("GetModelMetadataRequest must specify at least one metadata_field")
            for field in request.metadata_field:
                if field != "signature_def":
                    raise invalid(f"Metadata field {field} is not supported")
            servable = self._manager.resolve(request.model_spec)
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = self._manager.model_name
            response.model_spec.version.value = servable.version
            signature_defs = get_model_metadata_pb2.SignatureDefMap()
            for name, signature in servable.signature_defs.items():
                signature_defs.signature_def[name].CopyFrom(signature)
            response.metadata["signature_def"].Pack(signature_defs)
            return response
        except Exception as e:  # noqa: BLE001
            _abort(context, e)

    def Classify(self, request, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "Classify is not implemented by the development server")

    def Regress(self, request, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "Regress is not implemented by the development server")

    def MultiInference(self, request, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "MultiInference is not implemented by the development server")


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, manager: ModelManager):
        self._manager = manager

    def GetModelStatus(self, request, context):
        name = request.model_spec.name
        states = self._manager.states() if name == self._manager.model_name else {}
        if not states:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {name}")
        if request.model_spec.WhichOneof("version_choice") == "version":
            version = request.model_spec.version.value
            if version not in states:
                context.abort(grpc.StatusCode.NOT_FOUND, f"Could not find version {version} of model {name}")
            states = {version: states[version]}
        response = get_model_status_pb2.GetModelStatusResponse()
        for version in sorted(states, reverse=True):
            state, code, message = states[version]
            response.model_version_status.add(
                version=version, state=state, status=status_pb2.StatusProto(error_code=code, error_message=message))
        return response

    def HandleReloadConfigRequest(self, request, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "the development server serves one model from its base path")


def _check_settings(port: int, workers: int, max_message_bytes: int, max_candidates: int):
    """ValueError naming the flag: gRPC would take port -1 as 65535 and 70000 as 4464, and a zero
    worker count, message limit or candidate limit gives a server that answers nothing."""
    if not 0 <= port <= 65535:
        raise ValueError(f"--port must be between 0 (any free port) and 65535, got {port}")
    for flag, value in (("--workers", workers), ("--max-message-bytes", max_message_bytes),
                        ("--max-candidates", max_candidates)):
        if value < 1:
            raise ValueError(f"{flag} must be at least 1, got {value}")


class ModelServer:
    """A running server: `.port` (the bound one when started with port 0), `.target`,
    `.version` (None until a version is loaded), `wait_until_available()`, `stop()`.
    Plaintext unless `tls` is given (then TLS only, on the same port)."""

    def __init__(self, model_base_path: str, model_name: str = DEFAULT_MODEL_NAME, host: str = "127.0.0.1",
                 port: int = DEFAULT_PORT, poll_seconds: float = 2.0, workers: int = 8,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, max_candidates: int = DEFAULT_MAX_CANDIDATES,
                 tls: Optional[TlsConfig] = None, num_versions: int = DEFAULT_NUM_VERSIONS):
        _check_settings(port, workers, max_message_bytes, max_candidates)
        self.model_base_path = paths.absolute(model_base_path)
        self.model_name = model_name
        self.host = host
        self.tls = tls
        credentials = tls.credentials() if tls else None  # before binding: a bad file binds nothing
        self.poll_seconds = poll_seconds
        self.manager = ModelManager(model_name, self.model_base_path, max_message_bytes, num_versions)
        self._stopping = threading.Event()
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="funnel-serve"),
            options=[("grpc.max_receive_message_length", max_message_bytes),
                     ("grpc.max_send_message_length", max_message_bytes),
                     ("grpc.so_reuseport", 0)])  # a port in use is an error, not shared
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionServicer(self.manager, max_candidates), self._server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(self.manager), self._server)
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            self.port = (self._server.add_secure_port(address, credentials) if credentials
                         else self._server.add_insecure_port(address))
        except RuntimeError as e:
            raise OSError(f"cannot listen on {address}: {e}") from None
        if not self.port:
            raise OSError(f"cannot listen on {address}")
        self._poller = threading.Thread(target=self._poll_loop, name="funnel-serve-poll", daemon=True)

    @property
    def target(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def version(self) -> Optional[int]:
        """The newest loaded version (None until one is loaded)."""
        servable = self.manager.servable
        return servable.version if servable else None

    @property
    def versions(self) -> List[int]:
        """The loaded versions, oldest first (`stable` is [-2] when there are two)."""
        return sorted(self.manager.servables)

    def start(self) -> "ModelServer":
        self._server.start()
        self._poller.start()
        return self

    def _poll_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.manager.poll()
            except Exception:  # noqa: BLE001 - the poller must survive e.g. a vanished base path
                LOG.exception("polling %s failed", self.model_base_path)
            if self.poll_seconds <= 0 or self._stopping.wait(self.poll_seconds):
                return  # poll_seconds <= 0: scan once, as TF Serving's 0 does

    def wait_until_available(self, timeout: Optional[float] = None) -> int:
        """Blocks until a version is served; returns it (TimeoutError after `timeout` s)."""
        if not self.manager.wait_until_available(timeout):
            raise TimeoutError(f"no version of {self.model_name} loaded from {self.model_base_path} "
                               f"within {timeout} s")
        return self.version

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Blocks until the server stops; True if it did within `timeout`."""
        return self._server.wait_for_termination(timeout) is False

    def stop(self, grace: Optional[float] = None) -> None:
        """Refuses new RPCs at once (UNAVAILABLE) and gives those in flight `grace` seconds to
        finish before cancelling them (None: cancels them now)."""
        self._stopping.set()
        self._server.stop(grace).wait()
        if self._poller.is_alive() and self._poller is not threading.current_thread():
            self._poller.join(timeout=5)

    def __enter__(self) -> "ModelServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def serve(model_base_path: str, model_name: str = DEFAULT_MODEL_NAME, host: str = "127.0.0.1",
          port: int = DEFAULT_PORT, poll_seconds: float = 2.0, workers: int = 8,
          max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, max_candidates: int = DEFAULT_MAX_CANDIDATES,
          tls: Optional[TlsConfig] = None, num_versions: int = DEFAULT_NUM_VERSIONS) -> ModelServer:
    """Starts a server in this process (port=0 picks a free port: see `.port`) and returns
    it without waiting for a version: call `wait_until_available(timeout)`."""
    return ModelServer(model_base_path, model_name, host, port, poll_seconds, workers, max_message_bytes,
                       max_candidates, tls, num_versions).start()


def tls_config(args) -> Optional[TlsConfig]:
    """`funnel serve`'s TLS flags; ValueError when they do not go together."""
    if not (args.tls_cert or args.tls_key or args.tls_client_ca):
        return None
    if not (args.tls_cert and args.tls_key):
        raise ValueError("TLS needs both --tls-cert and --tls-key")
    return TlsConfig(args.tls_cert, args.tls_key, args.tls_client_ca)


def run(args) -> int:
    """`funnel serve`: serves until SIGINT/SIGTERM, then stops taking requests and gives those
    in flight `--grace-seconds` to finish; prints one line once the first versions are served."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.grace_seconds < 0:
            raise ValueError(f"--grace-seconds must not be negative, got {args.grace_seconds}")
        server = serve(args.model_base_path, args.model_name, args.host, args.port, args.poll_seconds,
                       args.workers, args.max_message_bytes, args.max_candidates, tls_config(args),
                       args.num_versions)
    except (OSError, ValueError) as e:
        print(f"funnel serve: {e}", file=sys.stderr)
        return 2
    stop = threading.Event()
    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    except ValueError:  # not the main thread: the caller stops us
        pass
    announced = False
    try:
        while not stop.is_set():
            if not announced and server.manager.wait_until_available(0):
                tls = " (TLS)" if server.tls else ""
                labels = ", ".join(f"{k}={v}" for k, v in labels_for(server.versions).items())
                print(f"funnel serve: serving {server.target}{tls} model {server.model_name} "
                      f"version {server.version} ({labels})", flush=True)
                announced = True
            stop.wait(0.1)
        LOG.info("stopping: no new requests; those in flight get %g s to finish", args.grace_seconds)
    finally:
        server.stop(grace=args.grace_seconds)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
