"""Ingest + Transform on a simulated world of millions of impressions (`make bench-scale`).

1. Simulates `--users` x `--days` (default ~5.3M impressions) into `WORK/logs-u<users>-d<days>-s<seed>/`,
   once: a later run reuses the logs when their `simulation_summary.json` (written last) exists.
2. Ingest (`run_ingest`), then Transform (`bench.transform_stage`: preprocessing_fn on
   tf.Transform) as two stages: `transform_analysis` (analysed on train) and `transform` (both
   splits transformed and written), each on Beam's DirectRunner in multi-processing mode with
   `--workers` worker processes.
Per stage: wall time, impressions per second (and per worker), peak RSS of the process tree
(the workers summed, the largest worker, the main process, which buffers Beam's shuffles) and
bytes written. One run (no repeats: the stages take minutes). Results go to a JSON file.
"""

import argparse
import os
import shutil
import sys
import time

import psutil

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench.process_memory import PeakRss  # noqa: E402
from bench.results_io import quiet_bench, write_result  # noqa: E402
from pipeline import progress  # noqa: E402

with progress.held_warnings():  # import-time warnings (google-api-core's, via Beam) go to the log
    from components.ingest.config import IngestConfig  # noqa: E402
    from components.ingest.runner import run_ingest  # noqa: E402
    from pipeline.config import load_config  # noqa: E402

SUMMARY_FILE = "simulation_summary.json"


def simulated_logs(work: str, users: int, days: int, seed: int) -> tuple:
    """(logs directory, simulation summary, whether it simulated them now); simulates only when
    no complete copy exists."""
    import json

    from simulation.simulator import simulate
    from simulation.world import SimulationConfig

    logs = os.path.join(work, f"logs-u{users}-d{days}-s{seed}")
    summary_path = os.path.join(logs, SUMMARY_FILE)
    simulated = not os.path.exists(summary_path)
    if simulated:
        shutil.rmtree(logs, ignore_errors=True)  # a run stopped half-way
        simulate(logs, SimulationConfig(users=users, days=days, seed=seed))
    with open(summary_path) as f:
        return logs, json.load(f), simulated


def bytes_under(root: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(root) for f in files)


def cpu_seconds(before, after) -> dict:
    """CPU time between two `psutil.Process().cpu_times()`: this process's, and its workers'
    (children's times count once the runner has waited for them, as it does when a pipeline
    ends). Unlike wall time, it does not grow when other jobs share the cores."""
    return {"main": (after.user - before.user) + (after.system - before.system),
            "workers": (after.children_user - before.children_user)
            + (after.children_system - before.children_system)}


def measure(stage, out_dir: str, impressions: int, workers: int) -> dict:
    """Runs `stage()` and returns its wall time, CPU time, rates, peak RSS and bytes under `out_dir`."""
    process = psutil.Process()
    cpu_before = process.cpu_times()
    start = time.perf_counter()
    with PeakRss() as rss:
        stage()
    seconds = time.perf_counter() - start
    cpu = cpu_seconds(cpu_before, process.cpu_times())
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "impressions_per_second": impressions / seconds,
        "impressions_per_second_per_worker": impressions / seconds / workers,
        "impressions_per_cpu_second": impressions / max(cpu["main"] + cpu["workers"], 0.01),  # 10 ms ticks
        "peak_rss_bytes": {
            "workers": rss.peaks["workers"],  # all worker processes together, at one moment
            "largest_worker": rss.peaks["largest_worker"],
            "main": rss.peaks["main"],
            "total": rss.peaks["total"],
        },
        "rss_samples": rss.samples,
        "bytes_written": bytes_under(out_dir),
        # The machine may be shared: its 1, 5 and 15 min load averages when the stage ended.
        "load_average_after": list(os.getloadavg()),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench/results/scale.json")
    parser.add_argument("--work", default="work/bench-scale", help="cached logs and the stages' outputs")
    parser.add_argument("--users", type=int, default=26_000)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--min-impressions", type=int, default=5_000_000,
                        help="fail when the simulated world has fewer impressions")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="Beam worker processes")
    parser.add_argument("--num-shards", type=int, default=64,
                        help="the ingest's user shards (the default config's 16 is sized for ~1M impressions)")
    parser.add_argument("--keep", action="store_true", help="keep the stages' outputs")
    parser.add_argument("--log", default=os.path.join("work", "bench", "scale.log"),
                        help="where library messages go (Beam, TF Transform, warnings)")
    args = parser.parse_args(argv)
    try:
        with quiet_bench("scale bench", args.log):
            return _run(args)
    except TooFewImpressions as error:  # after quiet_bench: the console again, not the log
        print(error, file=sys.stderr)
        return 2


class TooFewImpressions(Exception):
    """The simulated world is smaller than `--min-impressions`."""


def _run(args) -> int:
    logs, summary, simulated = simulated_logs(args.work, args.users, args.days, args.seed)
    impressions = summary["counts"]["impressions"]
    if impressions < args.min_impressions:
        raise TooFewImpressions(f"{impressions} simulated impressions < --min-impressions {args.min_impressions}: "
                                f"raise --users")
    run_dir = os.path.join(args.work, "run")
    shutil.rmtree(run_dir, ignore_errors=True)
    beam_args = ["--direct_running_mode=multi_processing", f"--direct_num_workers={args.workers}"]
    config = load_config()
    ingest_config = IngestConfig(**dict(config["ingest"], num_shards=args.num_shards))
    ingest_out, transform_out = os.path.join(run_dir, "ingest"), os.path.join(run_dir, "transform")
    reports = {}

    def ingest():
        reports["ingest"] = run_ingest(logs, ingest_out, ingest_config, beam_args)

    def transform_analysis():
        from bench.transform_stage import analyze
        analyze(os.path.join(ingest_out, "examples"), transform_out, {"transform": config["transform"]}, beam_args)

    def transform():
        from bench.transform_stage import apply_transform
        apply_transform(os.path.join(ingest_out, "examples"), transform_out, beam_args)

    result = {
        "cpus": os.cpu_count(),
        "workers": args.workers,
        "num_shards": args.num_shards,
        "simulation": {"users": args.users, "days": args.days, "seed": args.seed, "impressions": impressions,
                       "seconds": summary["wall_seconds"], "reused": not simulated},
        "impressions": impressions,
        "stages": {},
        "complete": False,  # written after each stage, so a stage that fails leaves the earlier ones
    }
    stages = result["stages"]
    try:
        for name, stage, out_dir in (("ingest", ingest, ingest_out),
                                     ("transform_analysis", transform_analysis, transform_out),
                                     ("transform", transform, transform_out)):
            stages[name] = measure(stage, out_dir, impressions, args.workers)
            if name == "ingest":
                result.update(records_read=reports["ingest"]["records_read"], examples=reports["ingest"]["examples"])
            write_result(result, args.out)
    finally:
        if not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
    total_seconds = sum(s["seconds"] for s in stages.values())
    result["total"] = {"seconds": total_seconds, "impressions_per_second": impressions / total_seconds,
                       "impressions_per_second_per_worker": impressions / total_seconds / args.workers}
    result["complete"] = True
    write_result(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
