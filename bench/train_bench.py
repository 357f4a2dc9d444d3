"""DMT training throughput and the achieved fraction of this machine's dense matmul FLOP/s.

    python -m bench.train_bench --out bench/results/train.json

1. Builds the default DMT (and DNN(Base) for comparison) with realistic vocabulary sizes and
   compiles it with the Trainer's default optimizer (`--optimizer` another), as the Trainer does.
2. Fabricates a few synthetic *transformed* batches (what the Transform outputs: vocabulary
   indices, SparseTensor behaviour sequences, z-scored dense features, buckets, bias features,
   labels) once, as an in-memory `tf.data.Dataset` that is repeated: the input pipeline
   (parsing, Transform) is excluded from the measurement.
3. Counts training FLOPs per example on the graph of the traced training step (`train_step`:
   forward, losses, gradients, Adam) at the benchmark batch size, and forward FLOPs on the graph
   of `model.call(training=False)`: the TF profiler (tfprof `float_operation`) plus the `Einsum`
   ops the profiler has no FLOP statistics for (e.g. DIN's pooling), with BatchMatMuls counted
   from their shapes where tfprof's statistic ignores `adj_x` (bench/flops.py). So any
   architecture is counted without a formula; the analytical matmul count of DMT and the
   3 x forward convention are kept as cross-checks (`training_over_forward`).
4. Measures the dense float32 matmul peak (square `tf.matmul` in a tf.function, TF default threads).
5. Measures `model.fit` throughput after a warm-up fit (graph building excluded), and the
   serving module's inference throughput.
Matmul peak, training and serving are measured in the same run, interleaved per repeat, and
reported as medians, so that load from other processes hits all of them alike.
"""

import argparse
import datetime
import math
import os
import platform
import statistics
import sys
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from bench.results_io import quiet_bench, write_result  # noqa: E402
from pipeline import progress  # noqa: E402

with progress.held_warnings():  # import-time warnings (google-api-core's, via TensorFlow) go to the log
    import tensorflow as tf  # noqa: E402
    import tf_keras as keras  # noqa: E402

    from bench.flops import TRAINING_FLOPS_MULTIPLIER, analytical_forward_flops, count_flops  # noqa: E402,F401
    from models import features as F  # noqa: E402
    from models import preprocessing as P  # noqa: E402
    from models.config import ModelConfig  # noqa: E402
    from models import presets  # noqa: E402
    from models.export import export_serving_module  # noqa: E402
    from models.model import build_model, compile_model  # noqa: E402
    from models import optimizers  # noqa: E402

# Vocabulary sizes including the Transform's 10 OOV buckets (users and scenario as given).
DEFAULT_VOCAB_SIZES = {F.ITEM_ID: 5000 + 10, F.CATEGORY_ID: 60 + 10, F.BRAND_ID: 400 + 10,
                       F.SHOP_ID: 300 + 10, F.USER_ID: 30000, F.SCENARIO: 4 + 10}
# Label rates (Bernoulli) of the synthetic batches.
LABEL_RATES = {F.CLICK: 0.05, F.CART: 0.01, F.WISH: 0.005, F.ORDER: 0.003, F.DACTION: 0.015}
MAX_BIAS_POSITION = 40
ITEMS_PER_PAGE = 10  # positions 1..40 -> pages 1..4
REQUEST_SIZE = MAX_BIAS_POSITION  # a request: the 40 positions of one list


# ----------------------------------------------------------------------------- models

def model_config(model_type: str = "dmt", overrides: Optional[Mapping[str, Any]] = None) -> ModelConfig:
    """The preset `model_type` (models/presets.yaml) with `overrides` applied (a `preset` key
    in them is ignored: the model type names the preset)."""
    section = {k: v for k, v in dict(overrides or {}).items() if k != "preset"}
    return ModelConfig.from_dict({"preset": model_type, **section}, P.transform_config(None))


def build(model_type: str, vocab_sizes: Mapping[str, int], overrides: Optional[Mapping[str, Any]] = None,
          learning_rate: float = 1e-3, optimizer: str = optimizers.DEFAULT):
    """The preset compiled as the Trainer compiles it (its default optimizer unless `optimizer`)."""
    model = build_model(model_config(model_type, overrides), vocab_sizes)
    return compile_model(model, optimizer=optimizers.create(optimizer, learning_rate))


# ----------------------------------------------------------------------------- inputs

def _sequence_sparse(rng, lengths: np.ndarray, width: int, high: int) -> tf.SparseTensor:
    """[B, width] SparseTensor, row b holding lengths[b] ids uniform in [0, high) at columns 0.."""
    rows = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    cols = np.concatenate([np.arange(n, dtype=np.int64) for n in lengths])
    values = rng.integers(0, high, int(lengths.sum()), dtype=np.int64)
    return tf.SparseTensor(np.stack([rows, cols], axis=1), values, [len(lengths), width])


def _age_buckets(window_seconds: int) -> int:
    """Number of log2 age buckets (preprocessing.age_bucket) an element of the window can fall in."""
    return min(int(math.floor(math.log2(window_seconds + 1))) + 1, P.AGE_BUCKETS)


def make_batch(config: ModelConfig, vocab_sizes: Mapping[str, int], batch_size: int, seed: int = 0,
               full_length: bool = False) -> Tuple[Dict[str, Any], Dict[str, tf.Tensor]]:
    """One synthetic transformed batch (features, labels), shaped like the Transform's output.

    Ids uniform in their vocabulary; sequences SparseTensor [B, max length] with U[0, max length]
    elements per row (every row full with `full_length`), ages in the log2 buckets their window
    allows; dense features N(0, 1); buckets uniform; position 1..40, page 1..4, neighbour
    categories uniform; `request_key` one per REQUEST_SIZE consecutive rows; labels
    Bernoulli(LABEL_RATES) for the config's tasks.
    """
    rng = np.random.default_rng(seed)

    def ids(vocab: int, width: int = 1) -> tf.Tensor:
        return tf.constant(rng.integers(0, vocab, (batch_size, width), dtype=np.int64))

    features: Dict[str, Any] = {f: ids(vocab_sizes[f]) for f in F.ITEM_ID_FEATURES + (F.USER_ID, F.SCENARIO)}
    for s, max_length in config.sequences.items():
        lengths = (np.full(batch_size, max_length, np.int64) if full_length
                   else rng.integers(0, max_length + 1, batch_size, dtype=np.int64))
        for field in F.SEQUENCE_ELEMENT_FIELDS:
            high = _age_buckets(F.SEQUENCES[s][1]) if field == F.SEQUENCE_AGE else vocab_sizes[field]
            features[F.sequence_feature(s, field)] = _sequence_sparse(rng, lengths, max_length, high)
    position = rng.integers(1, MAX_BIAS_POSITION + 1, (batch_size, 1), dtype=np.int64)
    features[F.POSITION] = tf.constant(position)
    features[F.PAGE] = tf.constant((position - 1) // ITEMS_PER_PAGE + 1)
    features[F.NEIGHBOR_CATEGORIES] = ids(vocab_sizes[F.CATEGORY_ID], F.NUM_NEIGHBORS)
    for name in F.DENSE_FEATURES:
        features[name] = tf.constant(rng.standard_normal((batch_size, 1)), tf.float32)
    for name in config.bucketized_features:
        features[P.bucket_feature(name)] = ids(config.num_buckets)
    # as the Trainer's request-grouped blocks (models/trainer.py `_dataset`): consecutive rows,
    # REQUEST_SIZE to a request; the fusion network's per-request loss reads it, the rest ignore it
    features[F.REQUEST_KEY] = tf.constant((np.arange(batch_size) // REQUEST_SIZE)[:, None], tf.int64)
    labels = {t: tf.constant((rng.random((batch_size, 1)) < LABEL_RATES[t]).astype(np.float32))
              for t in config.tasks}
    return features, labels


def make_dataset(batches: Sequence[Tuple[Dict[str, Any], Dict[str, tf.Tensor]]]) -> tf.data.Dataset:
    """The batches, in memory, repeated forever: the input pipeline costs (almost) nothing.

    tf.data autotuning is off: with it on, the end of every `fit` waits for the autotune
    thread's next wake-up when the iterator is torn down (its period starts at 10 ms and
    doubles: 10-step fits with ~3 s / ~5.5 s of steps took 5.12 s / 10.24 s) - not training time.
    """
    dataset = tf.data.Dataset.from_tensors(batches[0])
    for batch in batches[1:]:
        dataset = dataset.concatenate(tf.data.Dataset.from_tensors(batch))
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.repeat().prefetch(2).with_options(options)


# ----------------------------------------------------------------------------- timing

@tf.function
def _matmul(a, b):
    return tf.matmul(a, b)


def matmul_flops_per_second(n: int, min_seconds: float = 0.5, min_iterations: int = 3, seed: int = 0) -> float:
    """float32 n x n matmul FLOP/s (2 n^3 per product) over >= min_seconds, after one warm-up call."""
    rng = np.random.default_rng(seed)
    a = tf.constant(rng.standard_normal((n, n)), tf.float32)
    b = tf.constant(rng.standard_normal((n, n)) / math.sqrt(n), tf.float32)
    _matmul(a, b).numpy()
    iterations, start = 0, time.perf_counter()
    while True:
        out = _matmul(a, b)
        iterations += 1
        elapsed = time.perf_counter() - start
        if iterations >= min_iterations and elapsed >= min_seconds:
            break
    out.numpy()
    elapsed = time.perf_counter() - start
    return 2.0 * n ** 3 * iterations / elapsed


class _StepTimer(keras.callbacks.Callback):
    """Wall time from the start of the first training step to the end of the last one."""

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0:
            self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.end = time.perf_counter()


def fit_seconds(model, dataset: tf.data.Dataset, steps: int) -> Tuple[float, float]:
    """(wall time of `model.fit(dataset, steps_per_epoch=steps, epochs=1)`, of its steps only)."""
    timer = _StepTimer()
    start = time.perf_counter()
    model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[timer])
    return time.perf_counter() - start, timer.end - timer.start


def serving_seconds(module, features: Mapping[str, Any], min_calls: int = 1,
                    min_seconds: float = 0.0) -> Tuple[int, float]:
    """(calls, seconds): calls of the serving module on `features`, >= min_calls and >= min_seconds."""
    calls, start = 0, time.perf_counter()
    while True:
        out = module(features)
        calls += 1
        if calls >= min_calls and time.perf_counter() - start >= min_seconds:
            break
    out["score"].numpy()
    return calls, time.perf_counter() - start


def _median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


# ----------------------------------------------------------------------------- benchmark

def run_benchmark(batch_size: int = 512, steps: int = 10, dnn_steps: int = 100, repeats: int = 7,
                  warmup_steps: int = 3, num_batches: int = 4, full_length: bool = False,
                  matmul_sizes: Sequence[int] = (1024, 2048), matmul_seconds: float = 0.5,
                  serving_calls: int = 3, serving_seconds_min: float = 0.5,
                  vocab_sizes: Optional[Mapping[str, int]] = None,
                  model_types: Sequence[str] = ("dmt", "dnn-base"),
                  overrides: Optional[Mapping[str, Mapping[str, Any]]] = None, seed: int = 0,
                  optimizer: str = optimizers.DEFAULT, log=print) -> Dict[str, Any]:
    """The whole benchmark; returns the JSON-able result (see the module docstring).

    `overrides`: model type -> model config keys applied to it (tests use small models).
    """
    vocab_sizes = dict(DEFAULT_VOCAB_SIZES if vocab_sizes is None else vocab_sizes)
    keras.utils.set_random_seed(seed)
    started = time.perf_counter()
    load_before = os.getloadavg()

    setups: Dict[str, Dict[str, Any]] = {}
    for model_type in model_types:
        t0 = time.perf_counter()
        model = build(model_type, vocab_sizes, (overrides or {}).get(model_type), optimizer=optimizer)
        batches = [make_batch(model.model_config, vocab_sizes, batch_size, seed + i, full_length)
                   for i in range(num_batches)]
        flops = count_flops(model, *batches[0])
        dataset = make_dataset(batches)
        t1 = time.perf_counter()
        fit_seconds(model, dataset, warmup_steps)  # builds and traces the train step: excluded
        t2 = time.perf_counter()
        module = export_serving_module(model)
        serving_seconds(module, batches[0][0])  # traces `serve`: excluded
        setups[model_type] = dict(
            model=model, dataset=dataset, module=module, features=batches[0][0], flops=flops,
            steps=dnn_steps if not model.model_config.sequences else steps, fit=[], fit_steps=[], serving=[],
            setup_seconds={"build_and_count_flops": t1 - t0, "warmup_fit": t2 - t1,
                           "serving_trace": time.perf_counter() - t2})
        log(f"{model_type}: forward {flops['forward_flops_per_example'] / 1e6:.3f} MFLOP/example, "
            f"setup {time.perf_counter() - t0:.1f} s")

    peaks: Dict[int, List[float]] = {n: [] for n in matmul_sizes}
    for n in matmul_sizes:  # warm-up: oneDNN primitives, thread pools
        matmul_flops_per_second(n, min_seconds=0.1, min_iterations=1)
    for repeat in range(repeats):  # interleaved: every repeat measures everything once
        for n in matmul_sizes:
            peaks[n].append(matmul_flops_per_second(n, matmul_seconds, seed=repeat))
        for s in setups.values():
            total, steps_only = fit_seconds(s["model"], s["dataset"], s["steps"])
            s["fit"].append(total)
            s["fit_steps"].append(steps_only)
            s["serving"].append(serving_seconds(s["module"], s["features"], serving_calls, serving_seconds_min))
        log(f"repeat {repeat}: matmul " + ", ".join(f"{n}: {peaks[n][-1] / 1e9:.1f}" for n in matmul_sizes)
            + " GFLOP/s; " + ", ".join(f"{m} fit {s['steps'] * batch_size / s['fit'][-1]:.0f} ex/s"
                                        for m, s in setups.items()))

    peak_median = {n: _median(v) for n, v in peaks.items()}
    best_size = max(peak_median, key=peak_median.get)
    peak = peak_median[best_size]
    # each repeat's best size, to pair each repeat's training with the peak measured next to it
    peak_per_repeat = [max(peaks[n][r] for n in matmul_sizes) for r in range(repeats)]

    result: Dict[str, Any] = {
        "batch_size": batch_size,
        "repeats": repeats,
        "warmup_steps": warmup_steps,
        "sequence_lengths": ("full: every row at its sequence's max length" if full_length else
                             "uniform U[0, max length] per row (default: click 0..50, cart/order 0..10); "
                             "the model pads to max length, so FLOPs do not depend on it"),
        "input_pipeline": ("excluded: %d synthetic transformed batches in memory, "
                           "tf.data.Dataset.from_tensors(...).concatenate(...).repeat().prefetch(2), "
                           "tf.data autotune off" % num_batches),
        "vocab_sizes": vocab_sizes,
        "optimizer": optimizer,
        "matmul_peak": {
            "flops_per_second": peak,
            "best_size": best_size,
            "spread_flops_per_second": [min(peak_per_repeat), max(peak_per_repeat)],
            "median_flops_per_second_by_size": {str(n): v for n, v in peak_median.items()},
            "all_flops_per_second_by_size": {str(n): v for n, v in peaks.items()},
            "method": ("float32 tf.matmul of n x n matrices in a tf.function, 2 n^3 FLOPs per product, "
                       f">= {matmul_seconds} s of calls per measurement, TF default threads; median over "
                       "repeats per size, flops_per_second = the best size's median"),
        },
    }
    for model_type, s in setups.items():
        examples = s["steps"] * batch_size
        eps_all = [examples / t for t in s["fit"]]
        eps = _median(eps_all)
        eps_steps_all = [examples / t for t in s["fit_steps"]]
        serving_all = [calls * batch_size / t for calls, t in s["serving"]]
        training_flops = s["flops"]["training_flops_per_example"]
        matmul_training_flops = s["flops"].get("matmul_training_flops_per_example",
                                               TRAINING_FLOPS_MULTIPLIER * s["flops"]["matmul_forward_flops_per_example"])
        result[model_type] = {
            "steps": s["steps"],
            "examples_per_second": eps,
            "examples_per_second_all": eps_all,
            "examples_per_second_definition": "steps * batch_size / wall time of model.fit(...)",
            "examples_per_second_steps_only": _median(eps_steps_all),
            "examples_per_second_steps_only_all": eps_steps_all,
            "forward_flops_per_example": s["flops"]["forward_flops_per_example"],
            "training_flops_per_example": training_flops,
            "flops_method": s["flops"]["method"],
            "flops": s["flops"],
            "achieved_flops_per_second": eps * training_flops,
            "achieved_fraction": eps * training_flops / peak,
            "achieved_fraction_matmul_flops_only": eps * matmul_training_flops / peak,
            "achieved_fraction_per_repeat": [e * training_flops / p for e, p in zip(eps_all, peak_per_repeat)],
            # the spread: each repeat's training against the peak measured next to it
            "achieved_fraction_spread": [min(e * training_flops / p for e, p in zip(eps_all, peak_per_repeat)),
                                         max(e * training_flops / p for e, p in zip(eps_all, peak_per_repeat))],
            "serving_examples_per_second": _median(serving_all),
            "serving_examples_per_second_all": serving_all,
            "serving_calls_all": [calls for calls, _ in s["serving"]],
            "serving_method": ("export_serving_module(model)(batch) (utility network only, no bias "
                               "tower), batch %d, after one tracing call" % batch_size),
            "setup_seconds": s["setup_seconds"],
        }
    result["serving_examples_per_second"] = result[model_types[0]]["serving_examples_per_second"]
    result.update({
        "tf_version": tf.__version__,
        "tf_keras_version": keras.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": _cpu_model(),
        "tf_threads": {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                       "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
                       "note": "0 = TF default (all cores)"},
        "load_average_before": list(load_before),
        "load_average_after": list(os.getloadavg()),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": time.perf_counter() - started,
    })
    return result


def _cpu_model() -> Optional[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench/results/train.json")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=10, help="DMT training steps per repeat")
    parser.add_argument("--dnn-steps", type=int, default=100, help="DNN(Base) training steps per repeat")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--num-batches", type=int, default=4, help="distinct synthetic batches")
    parser.add_argument("--full-length", action="store_true", help="every sequence at its max length")
    parser.add_argument("--matmul-sizes", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--matmul-seconds", type=float, default=0.5)
    parser.add_argument("--serving-calls", type=int, default=3, help="min serving calls per repeat")
    parser.add_argument("--serving-seconds", type=float, default=0.5, help="min serving seconds per repeat")
    parser.add_argument("--models", nargs="+", default=["dmt", "dnn-base"], choices=presets.names(),
                        help="presets to measure (default: dmt dnn-base)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--optimizer", default=optimizers.DEFAULT, choices=sorted(optimizers.OPTIMIZERS),
                        help=f"the Trainer's `trainer.optimizer` (default: {optimizers.DEFAULT}, the Trainer's)")
    parser.add_argument("--log", default=os.path.join("work", "bench", "train.log"),
                        help="where library messages go (TensorFlow's profiler, warnings)")
    for name, size in DEFAULT_VOCAB_SIZES.items():
        parser.add_argument(f"--vocab-{name.replace('_id', '').replace('_', '-')}", dest=f"vocab_{name}",
                            type=int, default=size, help=f"{name} vocabulary size (with OOV buckets)")
    args = parser.parse_args(argv)
    vocab_sizes = {name: getattr(args, f"vocab_{name}") for name in DEFAULT_VOCAB_SIZES}
    with quiet_bench("train bench", args.log):
        result = run_benchmark(batch_size=args.batch_size, steps=args.steps, dnn_steps=args.dnn_steps,
                               repeats=args.repeats, warmup_steps=args.warmup_steps, num_batches=args.num_batches,
                               full_length=args.full_length, matmul_sizes=args.matmul_sizes,
                               matmul_seconds=args.matmul_seconds, serving_calls=args.serving_calls,
                               serving_seconds_min=args.serving_seconds, vocab_sizes=vocab_sizes,
                               model_types=args.models, seed=args.seed, optimizer=args.optimizer,
                               log=lambda message: print(message, flush=True))
    write_result(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
