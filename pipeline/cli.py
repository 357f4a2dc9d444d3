"""The `funnel` command: simulate, ingest, run, compile, ablate, predict, abtest, importance,
board, serve, score, presets.

Arguments a sub-command does not know are passed through to Beam (e.g.
`--runner=DataflowRunner --project=...`).
"""

import argparse
import json
import os
import sys
from typing import List, Optional

from pipeline import cli_model_commands as model_commands
from pipeline.cli_arguments import (add_ingest_arguments, add_score_arguments, add_serve_arguments, ingest_config,
                                    no_beam_args)

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # before anything imports TensorFlow
# 3, as the Makefile's: TF 2.16 logs three C++ ERROR lines at import on every machine (its CUDA
# plugins' factories registered twice, "Unable to register cuFFT factory"), before any run's log
# file exists to take them. TensorFlow's errors that matter reach Python as exceptions, which
# funnel reports; set TF_CPP_MIN_LOG_LEVEL=0 to see the C++ runtime's messages in the log file.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

RUN_LOG = "funnel-run.log"  # under the work directory: what the libraries said during `funnel run`


def _simulate(args, beam_args) -> int:
    from simulation import cli as simulation_cli

    no_beam_args(beam_args)
    return simulation_cli.run(args, prog="funnel simulate")


def _ingest(args, beam_args) -> int:
    from pipeline import progress

    with progress.held_warnings():  # Beam's import-time warnings go to the log
        from components.ingest.contract import ContractError
        from components.ingest.report import IngestError
        from components.ingest.runner import run_ingest
    try:
        config = ingest_config(args)
    except ValueError as e:
        print(f"funnel ingest: {e}", file=sys.stderr)
        return 2
    report, failure = progress.run_quietly("ingest", progress.command_log(args.out, "ingest"),
                                           lambda: run_ingest(args.logs, args.out, config, beam_args),
                                           (ContractError, IngestError, ValueError))
    if failure is not None:  # printed once the console is the console again
        print(f"funnel ingest: {failure}", file=sys.stderr)
        return 2
    print(json.dumps({k: report[k] for k in ("records_read", "records_quarantined", "quarantined_by_reason", "examples")}))
    return 0


def _run_config(args):
    """The run's configuration, checked before anything runs or is written (ValueError)."""
    import dataclasses

    from pipeline import metadata
    from pipeline.config import load_config
    from pipeline.pipeline import check_model_sections

    config = load_config(args.config)
    config["ingest"] = dataclasses.asdict(ingest_config(args))  # flags override the file
    check_model_sections(config)
    metadata.check(config.get("metadata"))  # the MySQL password's variable too: the run is here
    return config


def _run_quietly(args, beam_args, config):
    """The pipeline run and its summary: (summary, None), or (None, why the logs were refused)."""
    from components.ingest.contract import ContractError
    from components.ingest.report import IngestError
    from pipeline import local_runner, report
    from pipeline.data_gate import DataGateError

    if args.orchestrator == "beam":
        from pipeline.beam_runner import run_beam as run_pipeline
    else:
        run_pipeline = local_runner.run_local
    try:
        root = run_pipeline(args.logs, args.work, config, beam_args, enable_cache=args.cache)
    except (ContractError, IngestError) as e:  # logs outside the contract; over the quarantine gate
        return None, str(e)
    except DataGateError as e:  # stopped before Transform: the anomalies on the console and in the report
        return None, report.stopped(args.work, e)
    # The run's artifacts, found in its ML Metadata (a step answered from the cache included).
    return report.summarize(root, args.logs, args.work, metadata=local_runner.metadata_config(config, root)), None


def _run(args, beam_args) -> int:
    from pipeline import progress

    try:
        with progress.held_warnings():  # TFX's import-time warnings go to the run's log
            config = _run_config(args)
    except ValueError as e:
        print(f"funnel run: {e}", file=sys.stderr)
        return 2
    library_log = os.path.join(os.path.abspath(args.work), RUN_LOG)
    print(f"funnel run: {args.logs} -> {args.work}" + ("" if args.verbose else f"; library messages go to {library_log}"))
    with progress.quiet_run(library_log, verbose=args.verbose):
        summary, failure = _run_quietly(args, beam_args, config)
    if failure is not None:  # printed once the console is the console again
        print(f"funnel run: {failure}", file=sys.stderr)
        return 2
    print(summary)
    return 0


def _compile(args, beam_args) -> int:
    from pipeline import orchestration, progress
    from pipeline.config import load_config

    no_beam_args(beam_args)
    try:
        orchestration.output_format(args.target, args.out)  # a bad --out fails before any import
        with progress.held_warnings():  # the model code's import-time warnings go to the compile's log
            config = load_config(args.config)
    except ValueError as e:  # names the file
        print(f"funnel compile: {e}", file=sys.stderr)
        return 2

    def compile_pipeline():
        try:
            return orchestration.compile_pipeline(args.target, args.out, config)
        except ImportError as e:
            raise orchestration.CompileError(
                f"{e}; --target {args.target} needs the orchestration extra (`make orchestration-deps`, "
                "or `pip install -r requirements-orchestration.lock`)") from e
        except OSError as e:  # the spec, the DAG module or its configuration beside it
            raise orchestration.CompileError(
                f"cannot write {e.filename or args.out}: {progress.why_unwritable(e.filename or args.out, e)}") from e

    # Importing TFX and the schedulers' libraries warns a dozen times (google-api-core on Python
    # 3.10): those go to a log beside the output, as every command's library messages do.
    written, failure = progress.run_quietly("compile", progress.command_log(os.path.dirname(args.out), "compile"),
                                            compile_pipeline, (ValueError,))  # CompileError and bad model sections
    if failure is not None:
        print(f"funnel compile: {failure}", file=sys.stderr)
        return 2
    for path in written:
        print(f"written: {path}")
    if args.target == "kubeflow":
        from pipeline.kubeflow_runner import drift_reference_uri, recurring_run_arguments

        reference = drift_reference_uri(config)
        if reference:
            print(f"drift reference: {reference} (the last accepted run's statistics, replaced by each run "
                  "the data gate passes; remove it to start afresh)")
        if orchestration.output_format(args.target, args.out) == "yaml":
            arguments = recurring_run_arguments(config, args.out, "EXPERIMENT_ID")
            print("schedule it: kfp.Client(host=...).create_recurring_run("
                  + ", ".join(f"{k}={v!r}" for k, v in arguments.items()) + ")")
    return 0


def _seed_list(text: str):
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: integer seeds separated by commas, e.g. 0,1,2") from None
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"{text!r}: a seed is given twice")
    return seeds


def _ablate(args, beam_args) -> int:
    import dataclasses

    from pipeline import progress

    with progress.held_warnings():  # TFX's and Beam's import-time warnings go to ablate.log
        from components.ingest.contract import ContractError
        from components.ingest.report import IngestError
        from pipeline import ablate
    from pipeline.config import load_config

    try:
        config = load_config(args.config)
        config["ingest"] = dataclasses.asdict(ingest_config(args))
        suites = ablate.load_suites(args.suites)
    except (ValueError, AttributeError) as e:  # each names the file
        print(f"funnel ablate: {e}", file=sys.stderr)
        return 2
    names = list(suites) if args.suite == "all" else args.suite.split(",")
    unknown = [n for n in names if n not in suites]
    if unknown:
        print(f"funnel ablate: unknown suite(s) {', '.join(unknown)}; suites: {', '.join(suites)} or all",
              file=sys.stderr)
        return 2
    try:  # every suite's variants before the first suite's data steps and trainings
        with progress.held_warnings():  # the model code's imports
            for name in names:
                ablate.planned_variants(name, suites[name], config, args.seeds)
    except ValueError as e:
        print(f"funnel ablate: {e}", file=sys.stderr)
        return 2
    library_log = os.path.join(args.work, "ablations", "ablate.log")
    print(f"funnel ablate: library messages go to {library_log}")
    for name in names:
        try:
            with progress.quiet_run(library_log):
                result = ablate.run_suite(name, args.logs, args.work, config, beam_args, suites=suites,
                                          seeds=args.seeds)
        except (ContractError, IngestError, ValueError) as e:
            print(f"funnel ablate: {e}", file=sys.stderr)
            return 2
        print(ablate.markdown(result))
        print(f"  written: {os.path.join(args.work, 'ablations', name + '.json')} and .md")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from simulation import cli as simulation_cli

    parser = argparse.ArgumentParser(prog="funnel", description="Multi-objective e-commerce ranking on TFX.")
    commands = parser.add_subparsers(dest="command", required=True)

    simulate = commands.add_parser("simulate", help="write a simulated logs directory (with ground truth)")
    simulation_cli.add_arguments(simulate)
    simulate.set_defaults(handler=_simulate)

    ingest = commands.add_parser("ingest", help="logs -> train/eval tf.Example TFRecords (Beam)")
    add_ingest_arguments(ingest)
    ingest.add_argument("--out", required=True, help="output directory")
    ingest.set_defaults(handler=_ingest)

    run = commands.add_parser("run", help="run the TFX pipeline on a logs directory (LocalDagRunner)")
    add_ingest_arguments(run)
    run.add_argument("--work", required=True, help="working directory (pipeline root, metadata, report)")
    run.add_argument("--cache", action="store_true",
                     help="reuse the outputs of steps unchanged since an earlier run in this work directory "
                          "(e.g. ingest and Transform when only the model changes); only with unchanged logs")
    run.add_argument("--orchestrator", choices=["local", "beam"], default="local",
                     help="TFX orchestrator on this machine: LocalDagRunner (default) or BeamDagRunner")
    run.add_argument("-v", "--verbose", action="store_true",
                     help=f"library messages (TFX, Beam, TensorFlow) on the console too, not only in WORK/{RUN_LOG}")
    run.set_defaults(handler=_run)

    compile_ = commands.add_parser(
        "compile", help="write the pipeline for a scheduler: a Kubeflow Pipelines spec or an Airflow DAG (offline)")
    compile_.add_argument("--target", required=True, choices=["kubeflow", "airflow"],
                          help="kubeflow: KFP V2 / Vertex AI pipeline spec; airflow: a DAG module")
    compile_.add_argument("--out", required=True,
                          help="kubeflow: .yaml/.yml (KFP pipeline spec) or .json (Vertex AI PipelineJob); "
                               "airflow: a .py module (its configuration is written beside it as .yaml)")
    compile_.add_argument("--config", help="YAML configuration over pipeline/config.yaml (its `orchestration:` "
                                           "section holds the image, paths, Beam args and schedules)")
    compile_.set_defaults(handler=_compile)

    ablate = commands.add_parser("ablate", help="train each variant of an ablation suite on the same examples")
    add_ingest_arguments(ablate)
    ablate.add_argument("--suite", required=True,
                        help="suite name (pipeline/ablations.yaml), several separated by commas, or all")
    ablate.add_argument("--work", required=True,
                        help="working directory; writes WORK/ablations/SUITE.json and .md")
    ablate.add_argument("--suites", default=None,
                        help="YAML file of suites in the format of pipeline/ablations.yaml (default: that file)")
    ablate.add_argument("--seeds", type=_seed_list, default=None,
                        help="train each variant once per seed, e.g. 0,1,2, and report each figure's mean and "
                             "standard deviation (default: once, with the trainer's seed)")
    ablate.set_defaults(handler=_ablate)

    predict = commands.add_parser("predict", help="score a logs directory's impressions with a pushed model")
    add_ingest_arguments(predict)
    predict.add_argument("--model", required=True, help="a SavedModel directory (a pushed version)")
    predict.add_argument("--out", required=True, help="output file: .jsonl, .jsonl.gz or .parquet")
    predict.add_argument("--days", type=int, help="score only the last N UTC days, N >= 1 (default: every day)")
    predict.set_defaults(handler=model_commands.predict)

    abtest = commands.add_parser(
        "abtest", help="simulated online A/B test of two models on a simulated world's last day (DMT Table 6)")
    add_ingest_arguments(abtest)
    abtest.add_argument("--model", action="append", required=True, metavar="SAVED_MODEL",
                        help="a served SavedModel (a pushed version); give it twice: arm A, then arm B")
    abtest.add_argument("--out", help="also write the result as JSON to this file")
    abtest.add_argument("--work", help="replay the eval split a `funnel run` in this work directory ingested "
                                       "from the same logs (default: ingest the logs' last --eval-days now)")
    abtest.add_argument("--bootstrap-samples", type=int, default=2000,
                        help="paired bootstrap resamples for the 95%% intervals (default 2000)")
    abtest.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    abtest.set_defaults(handler=model_commands.abtest)

    importance = commands.add_parser(
        "importance", help="permutation feature importance per task on the eval day (DTN eq. 2)")
    add_ingest_arguments(importance)
    importance.add_argument("--model", required=True, help="a SavedModel directory (a pushed version)")
    importance.add_argument("--out", default="importance",
                            help="output directory: importance.json, .md, .png and logs/ (default ./importance)")
    importance.add_argument("--work", help="use the eval split a `funnel run` in this work directory ingested "
                                           "from the same logs (default: ingest the logs' last --eval-days now)")
    importance.add_argument("--seed", type=int, default=0,
                            help="seed of the permutations, numpy.random.default_rng(seed) (default 0)")
    importance.add_argument("--repeats", type=int, default=1,
                            help="permutations per feature, their AUC drops averaged (default 1)")
    importance.add_argument("--features", type=lambda text: [n for n in text.split(",") if n],
                            metavar="NAME[,NAME...]",
                            help="permute only these inputs / sequences, e.g. item_price,click_sequence "
                                 "(default: every input of the model and each behaviour sequence)")
    importance.set_defaults(handler=model_commands.importance)

    board = commands.add_parser("board", help="TensorBoard on every run of a work directory (loopback by default)")
    board.add_argument("--work", required=True, help="the work directory of `funnel run` (reads WORK/tensorboard)")
    board.add_argument("--port", type=int, default=6006, help="port (default 6006; 0 = any free port)")
    board.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 exposes it)")
    board.set_defaults(handler=model_commands.board)

    serve = commands.add_parser("serve", help="development gRPC model server, protocol-identical to TF Serving")
    add_serve_arguments(serve)
    serve.set_defaults(handler=model_commands.serve)

    score = commands.add_parser("score", help="score tf.Examples or a JSON request against a TF Serving endpoint")
    add_score_arguments(score)
    score.set_defaults(handler=model_commands.score)

    listing = commands.add_parser("presets", help="list the model presets (architectures) with one line each")
    listing.add_argument("-v", "--verbose", action="store_true", help="also the paper and equations of each")
    listing.set_defaults(handler=model_commands.presets)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args, passthrough = build_parser().parse_known_args(argv)
    args.argv = argv  # as given, for outputs that record the command that made them
    from pipeline.progress import UnwritableLogError

    try:
        return args.handler(args, passthrough)
    except UnwritableLogError as e:  # e.g. --out or --work names a file
        print(f"funnel {args.command}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
