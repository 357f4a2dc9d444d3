"""Command line of the log simulator: `funnel simulate`, or `python -m simulation.cli`."""

import argparse
import sys

from simulation.simulator import simulate
from simulation.world import SimulationConfig


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    defaults = SimulationConfig()
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="logs directory to write (one sub-directory per log)")
    parser.add_argument("--users", type=int, default=defaults.users,
                        help=f"number of users (default {defaults.users}; ~15 impressions "
                             "per user-day)")
    parser.add_argument("--days", type=int, default=defaults.days,
                        help=f"number of simulated UTC days (default {defaults.days})")
    parser.add_argument("--seed", type=int, default=defaults.seed,
                        help="random seed; same arguments give byte-identical logs")
    parser.add_argument("--start-date", default=defaults.start_date, metavar="YYYY-MM-DD",
                        help=f"first simulated UTC day (default {defaults.start_date})")
    parser.add_argument("--format", choices=("jsonl", "parquet"), default=defaults.format,
                        help="file format: JSON Lines gzip (.jsonl.gz) or Parquet")
    parser.add_argument("--items", type=int, default=defaults.n_items,
                        help=f"number of items in the catalogue (default {defaults.n_items})")
    parser.add_argument("--partition-by-day", action="store_true",
                        help="write each event log as daily partitions LOG/dt=YYYY-MM-DD/ "
                             "(for daily runs: funnel run --end-date)")
    return parser


def config_from_args(args: argparse.Namespace) -> SimulationConfig:
    return SimulationConfig(users=args.users, days=args.days, seed=args.seed,
                            start_date=args.start_date, format=args.format, n_items=args.items,
                            partition_by_day=args.partition_by_day)


def run(args: argparse.Namespace, prog: str = "simulate") -> int:
    """Simulates and prints a one-line summary; returns the process exit code. Errors are one
    line prefixed by `prog` (`funnel simulate` when the funnel command runs it)."""
    try:
        config = config_from_args(args)
    except ValueError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    try:
        s = simulate(args.out, config)
    except OSError as e:  # e.g. --out names a file, or a directory it may not write
        print(f"{prog}: cannot write {args.out}: {e.strerror or e}", file=sys.stderr)
        return 2
    print(f"simulated {s['impressions']} impressions ({config.users} users x {config.days} days) "
          f"into {args.out}: CTR {s['ctr']:.2%}, cart rate {s['cart_rate']:.3%}, "
          f"order rate {s['order_rate']:.3%}, {s['wall_seconds']:.1f} s")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="simulate", description="Simulate raw e-commerce logs.")
    return run(add_arguments(parser).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
