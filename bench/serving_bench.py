"""Per-request ranking latency: one user, 200 candidates, through the pushed model's `rank`.

    python -m bench.serving_bench --out bench/results/serving.json [--model VERSION_DIR]

1. The model: a pushed version (`--model`, default the newest under `work/serving`, i.e. what
   `make run` pushed); without one, the pipeline runs on a small simulated world first.
2. The request: one user with full-length behaviour sequences (50 clicks, 10 carts,
   10 orders) and 200 candidates, from examples synthesised with the model's own
   vocabularies (`serving.warmup.synthetic_examples`).
3. In-process: `rank` on the request and `serving_default` on the same 200 candidates as
   serialized tf.Examples (`serving.rank_request.to_examples`), interleaved, after warm-up;
   the shared-encoder speed-up is the ratio of their medians (and their outputs are checked
   equal).
4. gRPC: the development server (`funnel serve`, a subprocess) called with the official
   TF Serving stubs, at concurrency 1 and 8 (threads, each with its own channel).
Latencies are per request (p50 / p99, ms); throughput is requests/second over the run.
"""

import argparse
import datetime
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable, Dict, List

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from bench.results_io import quiet_bench, write_result  # noqa: E402
from pipeline import progress  # noqa: E402

with progress.held_warnings():  # import-time warnings (google-api-core's, via TensorFlow) go to the log
    import tensorflow as tf  # noqa: E402

    from serving import rank_request, warmup  # noqa: E402

CANDIDATES = 200
P99_TARGET_MS = 15.0
SPEEDUP_TARGET = 3.0


def newest_version(base: str) -> str:
    versions = sorted((v for v in os.listdir(base) if v.isdigit()), key=int) if os.path.isdir(base) else []
    if not versions:
        raise FileNotFoundError(f"no pushed version under {base}")
    return os.path.join(base, versions[-1])


def pushed_model(model: str, work: str) -> str:
    if model:
        return model
    try:
        return newest_version(os.path.join(work, "serving"))
    except FileNotFoundError:
        pass
    from pipeline import local_runner
    from pipeline.config import load_config
    from simulation.simulator import simulate
    from simulation.world import SimulationConfig

    root = os.path.join(work, "bench-serving")
    print(f"no pushed model under {work}/serving: running the pipeline on a small world in {root}", flush=True)
    simulate(os.path.join(root, "logs"), SimulationConfig(users=300, days=4, seed=3))
    config = load_config()
    config["evaluator"]["min_auc"] = 0.0
    local_runner.run_local(os.path.join(root, "logs"), os.path.join(root, "work"), config)
    return newest_version(os.path.join(root, "work", "serving"))


def run_concurrently(worker, concurrency: int, name: str = "bench") -> float:
    """Runs `worker()` on `concurrency` threads at once; returns the wall seconds until all end."""
    threads = [threading.Thread(target=worker, name=f"{name}-{n}") for n in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def percentiles(seconds: List[float]) -> Dict[str, float]:
    ms = np.asarray(seconds) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean()), "requests": int(len(ms))}


def timed(fn: Callable[[], object], repeats: int) -> List[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def concurrent(fn: Callable[[], object], concurrency: int, requests_per_worker: int) -> Dict[str, float]:
    latencies: List[float] = []
    lock = threading.Lock()

    def worker():
        mine = timed(fn, requests_per_worker)
        with lock:
            latencies.extend(mine)

    wall = run_concurrently(worker, concurrency)
    return {**percentiles(latencies), "concurrency": concurrency,
            "requests_per_second": len(latencies) / wall}


def in_process(model_dir: str, request: Dict[str, np.ndarray], examples: List[bytes], repeats: int) -> dict:
    loaded = tf.saved_model.load(model_dir)
    rank_fn, default_fn = loaded.signatures["rank"], loaded.signatures["serving_default"]
    rank_inputs = {name: tf.constant(value) for name, value in request.items()}
    serialized = tf.constant(examples)

    def rank():
        return rank_fn(**rank_inputs)

    def serving_default():
        return default_fn(examples=serialized)

    ranked, default = rank(), serving_default()
    max_difference = max(float(np.abs(ranked[k].numpy().reshape(-1) - default[k].numpy().reshape(-1)).max())
                         for k in ranked)
    for _ in range(10):
        rank(), serving_default()
    rank_times, default_times = [], []
    for _ in range(repeats // 10):  # interleaved, so machine noise hits both alike
        rank_times += timed(rank, 10)
        default_times += timed(serving_default, 10)
    result = {"rank": percentiles(rank_times), "serving_default_same_candidates": percentiles(default_times),
              "max_abs_difference_rank_vs_serving_default": max_difference}
    result["shared_encoder_speedup_p50"] = result["serving_default_same_candidates"]["p50_ms"] / result["rank"]["p50_ms"]
    result["rank_concurrency_8"] = concurrent(rank, 8, max(repeats // 8, 10))
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def through_grpc(model_dir: str, request: Dict[str, np.ndarray], repeats: int) -> dict:
    import grpc
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc, prediction_service_pb2_grpc

    base = tempfile.mkdtemp(prefix="funnel-bench-serving-")
    version = os.path.basename(os.path.normpath(model_dir))
    os.symlink(os.path.abspath(model_dir), os.path.join(base, version if version.isdigit() else "1"))
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "serve", "--model-base-path", base,
                               "--model-name", "funnel", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = f"127.0.0.1:{port}"
    try:
        channel = grpc.insecure_channel(target)
        status = model_service_pb2_grpc.ModelServiceStub(channel)
        deadline = time.time() + 180
        while True:
            try:
                reply = status.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(
                    model_spec={"name": "funnel"}), timeout=2)
                if reply.model_version_status and reply.model_version_status[0].state == \
                        get_model_status_pb2.ModelVersionStatus.AVAILABLE:
                    break
            except grpc.RpcError:
                pass
            if time.time() > deadline or server.poll() is not None:
                raise RuntimeError(f"the development server at {target} did not become AVAILABLE")
            time.sleep(0.5)
        message = warmup.predict_request(rank_request.SIGNATURE, request, "funnel")

        local = threading.local()

        def call():
            if not hasattr(local, "stub"):
                local.stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(target))
            return local.stub.Predict(message, timeout=10)

        for _ in range(20):
            call()
        return {"request_bytes": message.ByteSize(),
                "concurrency_1": concurrent(call, 1, repeats),
                "concurrency_8": concurrent(call, 8, max(repeats // 8, 10))}
    finally:
        server.terminate()
        server.wait(timeout=30)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench/results/serving.json")
    parser.add_argument("--model", help="a pushed version directory (default: newest under WORK/serving)")
    parser.add_argument("--work", default="work")
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--skip-grpc", action="store_true")
    args = parser.parse_args(argv)

    # the small pipeline run when there is no pushed model logs as `funnel run` would
    with quiet_bench("serving bench", os.path.join(args.work, "bench", "serving.log")):
        model_dir = pushed_model(args.model, args.work)
        examples = warmup.synthetic_examples(model_dir, CANDIDATES, seed=11)
        request = rank_request.from_examples(examples)
        same_candidates = rank_request.to_examples(request)
        result = {
            "benchmark": "serving",
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "tensorflow": tf.__version__},
            "model": os.path.abspath(model_dir),
            "request": {"candidates": CANDIDATES, "sequence_lengths": {
                k: int(v.shape[1]) for k, v in request.items() if k.endswith("_sequence_item_id")}},
            "in_process": in_process(model_dir, request, same_candidates, args.repeats),
        }
        if not args.skip_grpc:
            result["grpc"] = through_grpc(model_dir, request, args.repeats)
    p99, speedup = result["in_process"]["rank"]["p99_ms"], result["in_process"]["shared_encoder_speedup_p50"]
    result["targets"] = {"rank_p99_ms_at_most": P99_TARGET_MS, "rank_p99_met": p99 <= P99_TARGET_MS,
                         "shared_encoder_speedup_at_least": SPEEDUP_TARGET, "speedup_met": speedup >= SPEEDUP_TARGET}
    write_result(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
