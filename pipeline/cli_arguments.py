"""Argument groups the `funnel` commands share: the logs and ingest options, `serve`'s and
`score`'s, and the helpers that read them. Defined here, not in serving/, so that building the
parser imports no TensorFlow."""

import argparse


def add_ingest_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--logs", required=True, help="logs directory (see README: the raw-log contract)")
    parser.add_argument("--config", help="YAML configuration (see pipeline/config.yaml); for ingest, its `ingest:` section")
    parser.add_argument("--eval-days", type=int, help="last N UTC days are the eval split (default 1)")
    parser.add_argument("--num-shards", type=int, help="user shards of the join (default 16)")
    parser.add_argument("--max-quarantine-fraction", type=float, help="fail above this fraction (default 0.01)")
    parser.add_argument("--click-attribution", choices=["request_id", "time_window"],
                        help="how clicks label impressions (default request_id)")
    parser.add_argument("--end-date", metavar="YYYY-MM-DD|yesterday",
                        help="a daily run: evaluate on this UTC day (the last eval_days ending on it), "
                             "train on the --train-days before; later logs are not read")
    parser.add_argument("--train-days", type=int, metavar="N", help="with --end-date: days of training examples")


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-base-path", required=True, help="directory of <integer version>/ SavedModels")
    parser.add_argument("--model-name", default="funnel", help="model name clients ask for (default funnel)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1, loopback only; 0.0.0.0 = every interface)")
    parser.add_argument("--port", type=int, default=8500, help="gRPC port (default 8500; 0 = any free port)")
    parser.add_argument("--poll-seconds", type=float, default=2.0,
                        help="seconds between scans of the base path for new versions (default 2; 0 = once)")
    parser.add_argument("--workers", type=int, default=8, help="request threads (default 8)")
    parser.add_argument("--max-message-bytes", type=int, default=64 << 20,
                        help="largest request/response; larger ones get RESOURCE_EXHAUSTED (default 64 MiB)")
    parser.add_argument("--max-candidates", type=int, default=10_000,
                        help="most candidates one Predict may score (tf.Examples, or `rank` item_ids); more get "
                             "INVALID_ARGUMENT (default 10000; 0 = no cap)")
    parser.add_argument("--tls-cert", metavar="PEM", help="TLS: the server's certificate chain (with --tls-key)")
    parser.add_argument("--tls-key", metavar="PEM", help="TLS: the server's private key")
    parser.add_argument("--tls-client-ca", metavar="PEM",
                        help="TLS: require client certificates signed by this CA (mutual TLS)")
    parser.add_argument("--num-versions", type=int, default=2,
                        help="newest versions kept loaded (default 2: labels canary = newest, stable = the one "
                             "before, as serving/models.config)")
    parser.add_argument("--grace-seconds", type=float, default=5.0,
                        help="on SIGTERM/SIGINT, seconds in-flight requests get to finish (default 5)")


def add_score_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", required=True, help="HOST:PORT of TF Serving's (or `funnel serve`'s) gRPC API")
    parser.add_argument("--model", required=True, help="model name")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--examples", help="TFRecord file of serialized tf.Example (gzip if it ends in .gz)")
    source.add_argument("--request", help='JSON {"signature_name": ..., "inputs": {name: nested list}}')
    parser.add_argument("--signature", help="signature (default: the request's signature_name, else serving_default)")
    version = parser.add_mutually_exclusive_group()
    version.add_argument("--version", type=int, help="model version to ask for (default: the newest served)")
    version.add_argument("--version-label", metavar="LABEL",
                         help="version label to ask for, e.g. canary or stable (serving/models.config)")
    parser.add_argument("--timeout", type=float, default=30.0, help="deadline of each call in seconds (default 30)")
    parser.add_argument("--batch-size", type=int, default=256, help="examples per Predict call (default 256)")
    parser.add_argument("--out", help="output file (default: stdout)")
    parser.add_argument("--tls", action="store_true",
                        help="connect with TLS, trusting the system's CAs (implied by the --tls-* files)")
    parser.add_argument("--tls-ca", metavar="PEM", help="TLS: the CA that signed the server's certificate")
    parser.add_argument("--tls-cert", metavar="PEM", help="TLS: this client's certificate chain (mutual TLS)")
    parser.add_argument("--tls-key", metavar="PEM", help="TLS: this client's private key (with --tls-cert)")


def ingest_config(args):
    """The `ingest:` settings of the file, overridden by the flags. A command runs now, so
    `--end-date yesterday` becomes a date here (and so in the cache key of `funnel run --cache`)."""
    from components.ingest.config import IngestConfig

    return IngestConfig.from_yaml(
        args.config, eval_days=args.eval_days, num_shards=args.num_shards,
        max_quarantine_fraction=args.max_quarantine_fraction, click_attribution=args.click_attribution,
        end_date=args.end_date, train_days=args.train_days).resolve_end_date()


def no_beam_args(beam_args) -> None:
    """Only the Beam commands pass unknown arguments on (to Beam); the others refuse them."""
    if beam_args:
        raise SystemExit(f"unknown arguments: {' '.join(beam_args)}")
