"""Ingest throughput against the I/O floor, measured in one run.

1. Simulates a world of at least `--min-impressions` impressions (or uses `--logs`).
2. Ingest: the real pipeline (`run_ingest`, Beam DirectRunner, multi-processing).
3. I/O floor: the same files read by the same reader and every record written back as
   a tf.Example TFRecord by the same encoder and sink, with no join or features.
Each pipeline runs `--repeats` times, alternating; medians are reported, with the
ratio ingest / floor (impressions per second). Results go to a JSON file.
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench.results_io import quiet_bench, write_result  # noqa: E402
from pipeline import progress  # noqa: E402

with progress.held_warnings():  # import-time warnings (google-api-core's, via Beam) go to the log
    from bench.io_floor import run_floor  # noqa: E402
    from components.ingest.config import IngestConfig  # noqa: E402
    from components.ingest.runner import run_ingest  # noqa: E402


def simulate(out: str, min_impressions: int, seed: int) -> dict:
    from simulation.simulator import simulate as run_simulation
    from simulation.world import SimulationConfig

    users = 4000
    while True:
        start = time.perf_counter()
        summary = run_simulation(out, SimulationConfig(users=users, days=14, seed=seed))
        seconds = time.perf_counter() - start
        if summary["counts"]["impressions"] >= min_impressions:
            return {"users": users, "days": 14, "impressions": summary["counts"]["impressions"],
                    "seconds": seconds, "impressions_per_minute": summary["counts"]["impressions"] / seconds * 60}
        users = int(users * min_impressions / summary["counts"]["impressions"] * 1.05) + 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="bench/results/ingest.json")
    parser.add_argument("--logs", help="use this logs directory instead of simulating")
    parser.add_argument("--min-impressions", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the logs and outputs")
    parser.add_argument("--log", default=os.path.join("work", "bench", "ingest.log"),
                        help="where library messages go (Beam, warnings)")
    args = parser.parse_args(argv)

    work = tempfile.mkdtemp(prefix="funnel-bench-")
    try:
        with quiet_bench("ingest bench", args.log):
            return _run(args, work)
    finally:
        if args.keep:
            print(f"logs and outputs kept in {work}")
        else:  # ~0.5 GB of logs and outputs
            shutil.rmtree(work, ignore_errors=True)


def _run(args, work: str) -> int:
    result = {"cpus": os.cpu_count()}
    logs = args.logs
    if not logs:
        logs = os.path.join(work, "logs")
        result["simulation"] = simulate(logs, args.min_impressions, args.seed)
    config = IngestConfig()
    ingest_s, floor_s = [], []
    report = None
    for repeat in range(args.repeats):
        start = time.perf_counter()
        report = run_ingest(logs, os.path.join(work, f"ingest{repeat}"), config)
        ingest_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        run_floor(logs, os.path.join(work, f"floor{repeat}"), config.compression_level)
        floor_s.append(time.perf_counter() - start)
        print(f"repeat {repeat}: ingest {ingest_s[-1]:.1f} s, floor {floor_s[-1]:.1f} s", flush=True)
    impressions = report["logs"]["impressions"]["read"]
    ingest_rate = impressions / statistics.median(ingest_s)
    floor_rate = impressions / statistics.median(floor_s)
    result.update({
        "impressions": impressions,
        "records_read": report["records_read"],
        "examples": report["examples"],
        "ingest_seconds": ingest_s,
        "floor_seconds": floor_s,
        # gzip TFRecord bytes each writes: the ingest's examples carry sequences and features.
        "ingest_output_bytes": _bytes_under(os.path.join(work, "ingest0", "examples")),
        "floor_output_bytes": _bytes_under(os.path.join(work, "floor0")),
        "ingest_impressions_per_second": ingest_rate,
        "floor_impressions_per_second": floor_rate,
        "ratio_ingest_to_floor": ingest_rate / floor_rate,
        "target_ratio": 0.5,
    })
    write_result(result, args.out)
    return 0


def _bytes_under(root: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(root) for f in files)


if __name__ == "__main__":
    sys.exit(main())
