"""Serving under load and faults: `rank` requests at concurrency N through the official TF
Serving stubs, with malformed requests mixed in and a model version pushed during the load.

    python -m bench.load_bench --out bench/results/load.json [--model VERSION_DIR] \
        [--requests 20000] [--concurrency 16] [--malformed-fraction 0.05]

1. The model: a pushed funnel version (`--model`, default the newest under `WORK/serving`;
   without one the pipeline runs on a small simulated world first: `bench.serving_bench`).
2. The server: `funnel serve` in a subprocess on loopback, on a base path holding copies of
   the model as versions 1 and 2 (`stable` = 1, `canary` = 2), `--max-message-bytes 1 MiB` so
   the message-size cap is exercised without sending 64 MiB messages.
3. The requests: one user with 200 candidates each (`serving.warmup.synthetic_examples`, a few
   users cycled), valid ones asking in turn for the newest version, `canary` and `stable`.
   A fraction is malformed, in equal shares of `MALFORMED_KINDS` (each with the status TF
   Serving answers it with); each thread has its own channel and stub and no retries, so
   every failure counts.
4. The swap: after a quarter of the requests a copy of the model is pushed as version 3 the
   Pusher's way (staging directory, then a rename); requests past three quarters wait until
   the server reports it AVAILABLE (the wait is reported; it is 0 when the load outlasts the
   swap), so the last quarter runs on versions 2 and 3.
Reported: requests served per second, p50 / p99 latency of the valid requests, valid requests
that failed (must be 0), malformed requests answered with their expected status (must be all),
the versions each kind of request was served by, and the versions swapped during the load.
"""

import argparse
import datetime
import itertools
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import grpc  # noqa: E402
import numpy as np  # noqa: E402

from bench.results_io import quiet_bench, write_result  # noqa: E402
from pipeline import progress  # noqa: E402

with progress.held_warnings():  # import-time warnings (google-api-core's, via TensorFlow) go to the log
    import tensorflow as tf  # noqa: E402
    from tensorflow.core.framework import tensor_pb2  # noqa: E402
    from tensorflow_serving.apis import (get_model_status_pb2, model_service_pb2_grpc, predict_pb2,  # noqa: E402
                                         prediction_service_pb2_grpc)

    from bench.serving_bench import CANDIDATES, free_port, percentiles, pushed_model, run_concurrently  # noqa: E402
    from serving import rank_request, warmup  # noqa: E402

MODEL_NAME = warmup.MODEL_NAME
ITEM_ID = "item_id"  # the `rank` input whose [R, N] shape counts the candidates (serving.server)
VERSION_CHOICES = ("latest", "canary", "stable")  # what valid requests ask for, in turn
# The server's caps for the full-size run (`funnel serve --max-message-bytes --max-candidates`).
BENCH_MAX_MESSAGE_BYTES = 1 << 20
BENCH_MAX_CANDIDATES = 10_000
_AVAILABLE = get_model_status_pb2.ModelVersionStatus.State.AVAILABLE
INVALID = grpc.StatusCode.INVALID_ARGUMENT


class Outcome(NamedTuple):
    kind: str  # a version choice for a valid request, else the malformed kind
    code: grpc.StatusCode
    version: Optional[int]  # the version that answered (None for an error)
    seconds: float
    message: str


def _copy(request: predict_pb2.PredictRequest) -> predict_pb2.PredictRequest:
    out = predict_pb2.PredictRequest()
    out.CopyFrom(request)
    return out


def with_version_choice(request: predict_pb2.PredictRequest, choice: str) -> predict_pb2.PredictRequest:
    """`request` asking for the newest version ("latest") or a version label."""
    out = _copy(request)
    out.model_spec.ClearField("version_choice")
    if choice != "latest":
        out.model_spec.version_label = choice
    return out


def malformed_requests(valid: predict_pb2.PredictRequest, max_candidates: int, max_message_bytes: int
                       ) -> Dict[str, Tuple[predict_pb2.PredictRequest, grpc.StatusCode]]:
    """{kind: (request, the status TF Serving answers it with)}: variants of a valid `rank`
    request (inputs of shape [R, N] are per candidate, as `models.rank_inputs`)."""
    inputs = {name: tf.make_ndarray(proto) for name, proto in valid.inputs.items()}
    kinds = {}

    def variant(kind, code=INVALID, **replace):
        request = _copy(valid)
        for name, value in replace.items():
            if value is None:
                del request.inputs[name]
            else:
                request.inputs[name].CopyFrom(value if isinstance(value, tensor_pb2.TensorProto)
                                              else tf.make_tensor_proto(value))
        kinds[kind] = (request, code)
        return request

    numeric = next(n for n in sorted(inputs) if inputs[n].dtype != object)
    variant("wrong dtype", **{numeric: inputs[numeric].astype(np.float32 if inputs[numeric].dtype == np.int64
                                                              else np.float64)})
    variant("missing input", **{sorted(inputs)[0]: None})
    candidates = inputs[ITEM_ID].shape
    other = next(n for n in sorted(inputs) if n != ITEM_ID and inputs[n].shape == candidates)
    variant("mismatched candidate count", **{other: inputs[other][:, :-1]})
    if max_candidates > 0:  # one value declared [R, cap / R + 1]: refused from the shape, nothing decoded
        rows = candidates[0]
        too_many = tensor_pb2.TensorProto(dtype=tf.string.as_datatype_enum, string_val=[b"x"])
        too_many.tensor_shape.dim.add(size=rows)
        too_many.tensor_shape.dim.add(size=max_candidates // rows + 1)
        variant("over the candidate cap", **{ITEM_ID: too_many})
    variant("unknown signature").model_spec.signature_name = "no-such-signature"
    if max_message_bytes > 0:  # gRPC refuses it before Predict sees it
        huge = np.full(candidates, b"", dtype=object)
        huge[0, 0] = b"x" * max_message_bytes
        variant("over the message size cap", grpc.StatusCode.RESOURCE_EXHAUSTED, **{ITEM_ID: huge})
    return kinds


def schedule(total: int, malformed_fraction: float, kinds: Sequence[str], seed: int = 0) -> List[Optional[str]]:
    """The kind of each of `total` requests: None (valid) or a malformed kind; exactly
    round(total * fraction) malformed ones, the kinds in equal shares, at random positions."""
    malformed = int(round(total * malformed_fraction))
    if not 0 <= malformed <= total:
        raise ValueError(f"malformed fraction {malformed_fraction} is not in [0, 1]")
    plan: List[Optional[str]] = [kinds[i % len(kinds)] for i in range(malformed)] + [None] * (total - malformed)
    np.random.default_rng(seed).shuffle(plan)
    return plan


def loaded_versions(target: str, model_name: str = MODEL_NAME) -> List[int]:
    """The AVAILABLE versions GetModelStatus reports, oldest first ([] if it cannot tell)."""
    with grpc.insecure_channel(target) as channel:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = model_name
        try:
            reply = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=5)
        except grpc.RpcError:
            return []
    return sorted(s.version for s in reply.model_version_status if s.state == _AVAILABLE)


def wait_for_versions(target: str, versions: Sequence[int], timeout: float, model_name: str = MODEL_NAME,
                      alive: Callable[[], bool] = lambda: True) -> float:
    """Blocks until exactly `versions` are AVAILABLE; returns the seconds it took."""
    start = time.monotonic()
    while loaded_versions(target, model_name) != sorted(versions):
        if time.monotonic() - start > timeout or not alive():
            raise TimeoutError(f"{target} did not serve versions {sorted(versions)} within {timeout} s "
                               f"(serving {loaded_versions(target, model_name)})")
        time.sleep(0.05)
    return time.monotonic() - start


def push_version(model_dir: str, base_path: str, version: int) -> str:
    """Copies a SavedModel in as `version` the Pusher's way: a hidden staging directory the
    server ignores, then one rename."""
    staging = os.path.join(base_path, f".tmp-{version}")
    shutil.copytree(model_dir, staging, symlinks=False)
    final = os.path.join(base_path, str(version))
    os.rename(staging, final)
    return final


def run_load(target: str, valid: Sequence[predict_pb2.PredictRequest], total: int, concurrency: int,
             malformed_fraction: float, max_candidates: int, max_message_bytes: int,
             push: Optional[Callable[[], None]] = None, push_at: float = 0.25, settle_by: float = 0.75,
             timeout: float = 30.0, seed: int = 0) -> dict:
    """Sends `total` Predict requests from `concurrency` threads and reports what came back.
    `valid`: `rank` requests, cycled. `push`, if given, starts when `push_at` of the requests
    are sent and must return once the pushed version serves; requests past `settle_by` wait
    for it."""
    bad = malformed_requests(valid[0], max_candidates, max_message_bytes)
    plan = schedule(total, malformed_fraction, sorted(bad), seed)
    choices = [[with_version_choice(r, c) for r in valid] for c in VERSION_CHOICES]
    outcomes: List[Optional[Outcome]] = [None] * total
    counter = itertools.count()
    lock = threading.Lock()
    pushed = threading.Event()
    push_report = {}

    def do_push():
        start = time.monotonic()
        try:
            push()
        except Exception as e:  # noqa: BLE001 - reported, and the held-back requests go on
            push_report["error"] = f"{type(e).__name__}: {e}"
        finally:
            push_report["seconds_to_serve"] = time.monotonic() - start
            pushed.set()

    pusher = threading.Thread(target=do_push, name="load-push", daemon=True) if push else None
    if pusher is None:
        pushed.set()

    def worker():
        with grpc.insecure_channel(target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            while True:
                with lock:
                    i = next(counter)
                    if i >= total:
                        return
                    if pusher is not None and i == int(total * push_at):
                        push_report["after_requests"] = i
                        pusher.start()
                if i >= int(total * settle_by) and not pushed.is_set():
                    waited = time.monotonic()
                    pushed.wait()
                    with lock:
                        push_report["load_waited_seconds"] = max(push_report.get("load_waited_seconds", 0.0),
                                                                 time.monotonic() - waited)
                kind = plan[i]
                if kind is None:
                    kind = VERSION_CHOICES[i % len(VERSION_CHOICES)]
                    request = choices[VERSION_CHOICES.index(kind)][i % len(valid)]
                else:
                    request = bad[kind][0]
                start = time.perf_counter()
                try:
                    reply = stub.Predict(request, timeout=timeout)
                    code, version, message = grpc.StatusCode.OK, reply.model_spec.version.value, ""
                except grpc.RpcError as e:
                    code, version, message = e.code(), None, (e.details() or "")[:300]
                outcomes[i] = Outcome(kind, code, version, time.perf_counter() - start, message)

    wall = run_concurrently(worker, concurrency, name="load")
    if pusher is not None:
        pusher.join()
    return summarize(outcomes, {k: code for k, (_, code) in bad.items()}, wall, concurrency,
                     {**push_report, "load_waited_seconds": push_report.get("load_waited_seconds", 0.0)}
                     if push else None)


def summarize(outcomes: Sequence[Outcome], expected: Dict[str, grpc.StatusCode], wall: float, concurrency: int,
              push: Optional[dict]) -> dict:
    valid = [o for o in outcomes if o.kind in VERSION_CHOICES]
    malformed = [o for o in outcomes if o.kind not in VERSION_CHOICES]
    failed = [o for o in valid if o.code != grpc.StatusCode.OK]
    by_kind = {}
    for kind, code in sorted(expected.items()):
        mine = [o for o in malformed if o.kind == kind]
        answered: Dict[str, int] = {}
        for o in mine:
            answered[o.code.name] = answered.get(o.code.name, 0) + 1
        by_kind[kind] = {"sent": len(mine), "expected": code.name, "answered": answered,
                         "example_message": mine[0].message if mine else ""}
    unexpected = [o for o in malformed if o.code != expected[o.kind]]
    served = {choice: {} for choice in VERSION_CHOICES}
    for o in valid:
        if o.version is not None:
            served[o.kind][o.version] = served[o.kind].get(o.version, 0) + 1
    newest = sorted(served["latest"])
    paused = (push or {}).get("load_waited_seconds", 0.0)
    return {
        "requests": len(outcomes), "concurrency": concurrency, "seconds": wall,
        "requests_per_second": len(outcomes) / wall,
        "requests_per_second_without_the_wait_for_the_push": len(outcomes) / max(wall - paused, 1e-9),
        "valid": {"sent": len(valid), "ok": len(valid) - len(failed), "failed": len(failed),
                  "failures": [f"{o.kind}: {o.code.name}: {o.message}" for o in failed[:5]],
                  "latency": percentiles([o.seconds for o in valid])},
        "malformed": {"sent": len(malformed), "answered_as_expected": len(malformed) - len(unexpected),
                      "invalid_argument_kinds_sent": sum(1 for o in malformed if expected[o.kind] == INVALID),
                      "answered_invalid_argument": sum(1 for o in malformed
                                                       if expected[o.kind] == INVALID and o.code == INVALID),
                      "unexpected": [f"{o.kind}: {o.code.name}: {o.message}" for o in unexpected[:5]],
                      "by_kind": by_kind,
                      "latency": percentiles([o.seconds for o in malformed]) if malformed else None},
        "versions": {"served_by_choice": {c: {str(v): n for v, n in sorted(s.items())} for c, s in served.items()},
                     "newest_versions_seen": newest, "swaps": max(len(newest) - 1, 0)},
        "push": push,
    }


def rank_requests(model_dir: str, users: int, candidates: int = CANDIDATES) -> List[predict_pb2.PredictRequest]:
    """`users` different `rank` requests (one user and `candidates` candidates each)."""
    return [warmup.predict_request(rank_request.SIGNATURE, rank_request.from_examples(
        warmup.synthetic_examples(model_dir, candidates, seed=seed)), MODEL_NAME) for seed in range(users)]


def start_server(base: str, port: int, max_message_bytes: int, max_candidates: int, poll_seconds: float
                 ) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "serve", "--model-base-path", base, "--model-name", MODEL_NAME,
         "--port", str(port), "--poll-seconds", str(poll_seconds), "--max-message-bytes", str(max_message_bytes),
         "--max-candidates", str(max_candidates)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench/results/load.json")
    parser.add_argument("--model", help="a pushed version directory (default: newest under WORK/serving)")
    parser.add_argument("--work", default="work")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--malformed-fraction", type=float, default=0.05)
    parser.add_argument("--users", type=int, default=8, help="distinct valid requests, cycled")
    parser.add_argument("--poll-seconds", type=float, default=0.5)
    args = parser.parse_args(argv)

    # the small pipeline run when there is no pushed model logs as `funnel run` would
    with quiet_bench("load bench", os.path.join(args.work, "bench", "load.log")):
        model_dir = pushed_model(args.model, args.work)
        valid = rank_requests(model_dir, args.users)
        base = tempfile.mkdtemp(prefix="funnel-bench-load-")
        port = free_port()
        target = f"127.0.0.1:{port}"
        for version in (1, 2):
            push_version(model_dir, base, version)
        server = start_server(base, port, BENCH_MAX_MESSAGE_BYTES, BENCH_MAX_CANDIDATES, args.poll_seconds)
        try:
            started = wait_for_versions(target, [1, 2], 600, alive=lambda: server.poll() is None)

            def push():
                push_version(model_dir, base, 3)
                wait_for_versions(target, [2, 3], 600, alive=lambda: server.poll() is None)

            load = run_load(target, valid, args.requests, args.concurrency, args.malformed_fraction,
                            BENCH_MAX_CANDIDATES, BENCH_MAX_MESSAGE_BYTES, push=push)
            after = loaded_versions(target)
        finally:
            server.terminate()
            exit_code = server.wait(timeout=60)
            shutil.rmtree(base, ignore_errors=True)
    result = {
        "benchmark": "load",
        "command": " ".join(["python", "-m", "bench.load_bench"] + list(sys.argv[1:] if argv is None else argv)),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "tensorflow": tf.__version__},
        "model": {"path": os.path.abspath(model_dir), "kind": "a funnel model pushed by the pipeline (`rank` "
                  "signature, warmup records replayed at each load); versions 1, 2 and 3 are copies of it"},
        "server": {"command": "funnel serve", "loopback": True, "workers": 8, "poll_seconds": args.poll_seconds,
                   "max_message_bytes": BENCH_MAX_MESSAGE_BYTES, "max_candidates": BENCH_MAX_CANDIDATES,
                   "seconds_to_serve_versions_1_and_2": started, "versions_after": after,
                   "exit_code_after_sigterm": exit_code},
        "request": {"signature": rank_request.SIGNATURE, "candidates": CANDIDATES, "users": args.users,
                    "bytes": valid[0].ByteSize(), "malformed_fraction": args.malformed_fraction},
        **load,
    }
    result["passed"] = (load["valid"]["failed"] == 0 and load["malformed"]["unexpected"] == []
                        and load["versions"]["swaps"] >= 1 and after == [2, 3] and exit_code == 0)
    write_result(result, args.out)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
