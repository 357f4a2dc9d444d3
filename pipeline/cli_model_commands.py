"""The `funnel` commands on a trained model: predict, abtest, importance, board, serve, score
and presets (pipeline/cli.py builds the parser; the data and pipeline commands are there).
Each handler takes the parsed arguments and those left for Beam, and returns the exit code."""

import os
import shlex
import sys
import tempfile

from pipeline.cli_arguments import ingest_config, no_beam_args


def predict(args, beam_args) -> int:
    from pipeline import progress

    with progress.held_warnings():  # Beam's and TensorFlow's import-time warnings go to the log
        from components.ingest.contract import ContractError
        from components.ingest.report import IngestError
        from serving.batch_predict import check_days, check_predictions_path, check_saved_model, predict
    try:  # the arguments, before the ingest
        config = ingest_config(args)
        check_predictions_path(args.out)
        check_days(args.days)
        check_saved_model(args.model)
    except ValueError as e:
        print(f"funnel predict: {e}", file=sys.stderr)
        return 2
    frame, failure = progress.run_quietly(
        "predict", progress.command_log(os.path.dirname(args.out), "predict"),
        lambda: predict(args.model, args.logs, args.out, args.days, config, beam_args),
        (ContractError, IngestError, ValueError))
    if failure is not None:
        print(f"funnel predict: {failure}", file=sys.stderr)
        return 2
    print(f"scored {len(frame)} impressions into {args.out}")
    return 0


def abtest(args, beam_args) -> int:
    from pipeline import progress

    with progress.held_warnings():  # Beam's and TensorFlow's import-time warnings go to the log
        from components.ingest.contract import ContractError
        from components.ingest.report import IngestError
        from pipeline import abtest
    if args.bootstrap_samples < 100:
        print("funnel abtest: --bootstrap-samples must be at least 100", file=sys.stderr)
        return 2
    if args.seed < 0:  # numpy.random.default_rng's would come after the ingest
        print(f"funnel abtest: --seed {args.seed}: the bootstrap's seed is a non-negative integer", file=sys.stderr)
        return 2
    try:  # the arguments, before the ingest
        config = ingest_config(args)
        abtest.check_models(args.model)
    except ValueError as e:
        print(f"funnel abtest: {e}", file=sys.stderr)
        return 2
    # beside the result file, or in the temporary directory (the ingest's scratch is there too)
    library_log = progress.command_log(os.path.dirname(args.out) if args.out else tempfile.gettempdir(), "abtest")
    result, failure = progress.run_quietly("abtest", library_log, lambda: abtest.abtest(
        args.logs, args.model, config, beam_args, work_dir=args.work, samples=args.bootstrap_samples, seed=args.seed),
        (ContractError, IngestError, ValueError, FileNotFoundError))  # AbtestError is a ValueError
    if failure is not None:
        print(f"funnel abtest: {failure}", file=sys.stderr)
        return 2
    print(abtest.table(result))
    if args.out:
        abtest.write(result, args.out)
        print(f"  written: {args.out}")
    return 0


def _importance_quietly(args, beam_args, steps, scratch):
    """The importance result and written paths: (result, paths, None), or (None, None, why not)."""
    from components.ingest.contract import ContractError
    from components.ingest.report import IngestError
    from pipeline import abtest, importance
    from serving.batch_predict import ingested_examples

    try:
        done = steps.step("eval split of " + (args.work if args.work else f"{args.logs} (ingest)"))
        if args.work:
            files = abtest.eval_example_files(args.work)
        else:
            files = ingested_examples(args.logs, scratch, ingest_config(args), beam_args)
        done()
        result = importance.importance(args.model, files, seed=args.seed, repeats=args.repeats,
                                       features=args.features, step=steps.step, progress=steps.feature)
        result["command"] = " ".join(["funnel"] + [shlex.quote(a) for a in args.argv])
        done = steps.step("writing importance.json, .md, .png, logs/")
        paths = importance.write(result, args.out)
        done()
    except (ContractError, IngestError, ValueError, FileNotFoundError) as e:  # ImportanceError is a ValueError
        return None, None, str(e)
    return result, paths, None


def importance(args, beam_args) -> int:
    from pipeline import progress

    with progress.held_warnings():  # the libraries' import-time warnings go to the run's log
        from pipeline import importance
        from serving.batch_predict import check_saved_model

    try:  # the arguments are checked before anything runs
        if args.repeats < 1:
            raise ValueError("--repeats must be at least 1")
        if args.seed < 0:  # numpy.random.default_rng's would come after the ingest
            raise ValueError(f"--seed {args.seed}: the permutations' seed is a non-negative integer")
        if args.features == []:  # "--features ," would otherwise read as "every feature"
            raise ValueError("--features names no feature: give NAME[,NAME...], or leave it out for every feature")
        check_saved_model(args.model)
        groups = importance.selected_groups(args.features)
    except ValueError as e:
        print(f"funnel importance: {e}", file=sys.stderr)
        return 2
    library_log = os.path.join(os.path.abspath(args.out), importance.LOG_FILE)
    print(f"funnel importance: {args.model} on the eval day of {args.work or args.logs} -> {args.out}; "
          f"library messages go to {library_log}")
    steps = importance.Steps(len(groups))
    with progress.quiet_run(library_log), tempfile.TemporaryDirectory(prefix="funnel-importance-") as scratch:
        result, paths, failure = _importance_quietly(args, beam_args, steps, scratch)
    if failure is not None:  # printed once the console is the console again
        print(f"funnel importance: {failure}", file=sys.stderr)
        return 2
    print(importance.table(result))
    print(f"  written: {paths['json']}, {paths['markdown']}, {paths['png']}, TensorBoard: {paths['tensorboard']}")
    return 0


def board(args, beam_args) -> int:
    import time

    from pipeline import progress

    with progress.held_warnings():  # import-time warnings of TensorBoard's dependencies: not shown
        from pipeline import dashboard
    no_beam_args(beam_args)
    logdir = os.path.join(args.work, dashboard.TENSORBOARD_DIR)
    if not dashboard.gfile.isdir(logdir):  # TensorBoard reads gs:// and other filesystems too
        print(f"funnel board: {logdir} does not exist: `funnel run --work {args.work}` writes it", file=sys.stderr)
        return 2
    try:
        url = dashboard.launch(logdir, args.host, args.port)
    except OSError as e:
        print(f"funnel board: {e}", file=sys.stderr)
        return 2
    print(f"TensorBoard on every run of {logdir}: {url} (Ctrl-C stops it)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0


def serve(args, beam_args) -> int:
    from pipeline import progress

    no_beam_args(beam_args)
    with progress.held_warnings():  # import-time warnings (google-api-core on Python 3.10): not shown
        from serving import server
    return server.run(args)


def score(args, beam_args) -> int:
    from pipeline import progress

    no_beam_args(beam_args)
    with progress.held_warnings():  # import-time warnings (google-api-core on Python 3.10): not shown
        from serving import client
    return client.run(args)


def presets(args, beam_args) -> int:
    from models import presets

    no_beam_args(beam_args)
    rows = presets.describe()
    width = max(len(name) for name, _, _ in rows)
    for name, summary, paper in rows:
        print(f"{name:<{width}}  {summary}")
        if args.verbose:
            print(f"{'':<{width}}  {paper}")
    print(f"\nuse one with `model: {{preset: NAME}}` in a --config file (default: {presets.DEFAULT_PRESET}); "
          "-v adds papers and equations")
    return 0
