"""The `funnel` command line: simulate and ingest, and clear errors for bad logs."""

import json
import os
import subprocess
import sys

import pytest

from pipeline import cli, cli_arguments, cli_model_commands


def test_simulate_then_ingest(tmp_path, capsys):
    assert cli.main(["simulate", "--out", str(tmp_path / "logs"), "--users", "80", "--days", "2", "--seed", "5"]) == 0
    assert os.path.isdir(tmp_path / "logs" / "impressions")
    code = cli.main(["ingest", "--logs", str(tmp_path / "logs"), "--out", str(tmp_path / "out"),
                     "--eval-days", "1", "--direct_running_mode=in_memory", "--direct_num_workers=1"])
    assert code == 0
    console = capsys.readouterr()
    summary = json.loads(console.out.strip().splitlines()[-1])
    assert summary["records_quarantined"] == 0
    # Beam's messages (its workers' too) go to the log beside the output, not to the console
    assert console.out.splitlines()[1] == f"funnel ingest: library messages go to {tmp_path / 'out' / 'funnel-ingest.log'}"
    assert "apache_beam" not in console.out + console.err
    assert "apache_beam" in (tmp_path / "out" / "funnel-ingest.log").read_text()
    with open(tmp_path / "logs" / "simulation_summary.json") as f:
        impressions = json.load(f)["counts"]["impressions"]
    assert summary["examples"]["train"] + summary["examples"]["eval"] == impressions
    assert os.path.exists(tmp_path / "out" / "ingest_report.json")


def test_simulate_into_a_file_fails_before_simulating(tmp_path, capsys, monkeypatch):
    from simulation import simulator
    (tmp_path / "logs").write_text("not a directory")
    # the check comes before the world is simulated, not minutes later when files are written
    monkeypatch.setattr(simulator, "_Simulator", lambda config: pytest.fail("simulated first"))
    assert cli.main(["simulate", "--out", str(tmp_path / "logs"), "--users", "5", "--days", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"funnel simulate: cannot write {tmp_path / 'logs'}:") and "Traceback" not in err
    assert (tmp_path / "logs").read_text() == "not a directory"


def test_an_output_directory_that_is_a_file_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "out").write_text("")
    for command in (["ingest", "--logs", str(tmp_path), "--out"], ["run", "--logs", str(tmp_path), "--work"]):
        assert cli.main(command + [str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err == f"funnel {command[0]}: cannot write {tmp_path / 'out'}/funnel-{command[0]}.log: " \
                      f"{tmp_path / 'out'} is a file, not a directory\n"


def test_run_stops_with_one_line_over_the_quarantine_gate_or_without_a_train_split(tmp_path, capsys):
    """The Ingest step's refusals reach the console as `funnel run: ...` and exit code 2 (the
    quarantine gate used to end in a traceback), before StatisticsGen."""
    from tests.components.ingest.logs import ITEMS, T0, event, impression, write_logs

    impressions = [impression("m1", "u1", "i1", T0, 1), impression("m2", "u1", "i2", T0 + 10, 2)]
    logs = {"items": ITEMS, "impressions": impressions,
            **{log: [event("u1", "i1", T0 + 20)] for log in ("clicks", "carts", "orders")}}
    write_logs(str(tmp_path / "one-day"), logs)
    write_logs(str(tmp_path / "bad"), {**logs, "clicks": logs["clicks"] + [{"user_id": "u1"}]})
    for name, extra, message in (
            ("one-day", [], "the train split holds no examples (eval 2, train 0): the last eval_days=1 days"),
            ("bad", ["--max-quarantine-fraction", "0"], "1 of 11 records quarantined")):
        code = cli.main(["run", "--logs", str(tmp_path / name), "--work", str(tmp_path / f"work-{name}")] + extra
                        + ["--direct_running_mode=in_memory", "--direct_num_workers=1"])
        console = capsys.readouterr()
        assert code == 2 and console.err.startswith(f"funnel run: {message}"), console.err
        assert "Traceback" not in console.err and "StatisticsGen" not in console.out


def test_run_on_missing_or_foreign_logs_stops_before_any_step(tmp_path, capsys):
    """Logs the Ingest would refuse stop `funnel run` before its first step (ImportSchemaGen
    used to run first), with the Ingest's message."""
    from tests.components.ingest.logs import ITEMS, T0, event, impression, write_logs

    write_logs(str(tmp_path / "foreign"), {"items": ITEMS, "impressions": [impression("m1", "u1", "i1", T0, 1)],
                                           **{log: [event("u1", "i1", T0 + 10)] for log in ("clicks", "carts", "orders")}})
    (tmp_path / "foreign" / "impressions" / "part-9.xlsx").write_text("")
    for name, message in (("missing", "logs directory does not exist or holds no log files"),
                          ("foreign", "unsupported file in log 'impressions'")):
        work = tmp_path / f"work-{name}"
        assert cli.main(["run", "--logs", str(tmp_path / name), "--work", str(work)]) == 2
        console = capsys.readouterr()
        assert console.err.startswith("funnel run: ") and message in console.err, console.err
        assert "Traceback" not in console.err and not (work / "tfx").exists()


def test_ingest_of_a_directory_outside_the_contract_fails_clearly(tmp_path, capsys):
    os.makedirs(tmp_path / "logs" / "items")
    (tmp_path / "logs" / "items" / "data.csv").write_text("a,b\n")
    assert cli.main(["ingest", "--logs", str(tmp_path / "logs"), "--out", str(tmp_path / "out")]) == 2
    assert "data.csv" in capsys.readouterr().err


def test_config_file_sets_ingest_options(tmp_path):
    (tmp_path / "funnel.yaml").write_text("ingest:\n  eval_days: 2\n  num_shards: 4\n")
    args = cli.build_parser().parse_args(["ingest", "--logs", "x", "--out", "y", "--config", str(tmp_path / "funnel.yaml")])
    config = cli_arguments.ingest_config(args)
    assert (config.eval_days, config.num_shards) == (2, 4)


def test_presets_lists_every_preset_with_one_line(capsys):
    from models import presets

    assert cli.main(["presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name in presets.names():
        assert sum(line.split()[0] == name for line in lines if line.strip()) == 1, name
    assert cli.main(["presets", "-v"]) == 0
    assert "eq. 7" in capsys.readouterr().out  # HMoE's stop-gradient equation


def test_ablate_refuses_an_unknown_suite_or_suites_file_before_running(tmp_path, capsys):
    base = ["ablate", "--logs", str(tmp_path / "logs"), "--work", str(tmp_path / "work")]
    assert cli.main(base + ["--suite", "dmt-bias,nope"]) == 2
    assert "unknown suite(s) nope" in capsys.readouterr().err
    assert cli.main(base + ["--suite", "x", "--suites", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err
    (tmp_path / "broken.yaml").write_text("s: {variants: [a]")
    assert cli.main(base + ["--suite", "s", "--suites", str(tmp_path / "broken.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("funnel ablate: ") and err.count("broken.yaml") == 1 and "not YAML" in err
    # the second suite's variant is mistyped: refused before the first suite's data steps
    (tmp_path / "suites.yaml").write_text("good: {variants: {a: {preset: dnn-base}}}\n"
                                          "bad: {variants: {b: {preset: dnn-base, mixture: {type: moe}}}}\n")
    assert cli.main(base + ["--suite", "good,bad", "--suites", str(tmp_path / "suites.yaml")]) == 2
    assert "suite 'bad', variant 'b': unknown mixture type 'moe'" in capsys.readouterr().err
    assert not (tmp_path / "work").exists()


def test_a_command_that_imports_tensorflow_prints_only_its_own_lines(tmp_path):
    """Run as a user runs it (no TF_CPP_MIN_LOG_LEVEL of theirs): TensorFlow's import-time C++
    lines and TFX's import-time warnings do not reach the console before funnel's own line."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "PYTHONWARNINGS")}
    env["PYTHONPATH"] = os.getcwd()
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "ablate", "--suite", "nope", "--logs",
                           str(tmp_path / "logs"), "--work", str(tmp_path / "work")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2, done.stderr
    assert done.stdout == "" and done.stderr.startswith("funnel ablate: unknown suite(s) nope;"), done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr


@pytest.mark.parametrize("seeds", ["0,x", "1,1", ""])
def test_ablate_refuses_malformed_seeds(tmp_path, capsys, seeds):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["ablate", "--logs", str(tmp_path), "--work", str(tmp_path / "work"), "--suite", "esm2",
                  "--seeds", seeds])
    assert exit_.value.code == 2 and "--seeds" in capsys.readouterr().err
    assert not (tmp_path / "work").exists()


def test_compile_kubeflow_writes_yaml_or_json_by_extension(tmp_path, scheduled_config_file, capsys):
    import yaml

    for name in ("funnel.yaml", "funnel.yml"):
        assert cli.main(["compile", "--target", "kubeflow", "--out", str(tmp_path / name),
                         "--config", scheduled_config_file]) == 0
        spec = yaml.safe_load((tmp_path / name).read_text())
        assert spec["pipelineInfo"]["name"] == "funnel-daily" and "deploymentSpec" in spec and "runtimeConfig" not in spec
    out = capsys.readouterr().out
    assert "create_recurring_run(" in out and "cron_expression='0 30 2 * * *'" in out
    assert out.count("drift reference: gs://funnel-test/tfx/funnel-daily/accepted_statistics (") == 2
    assert cli.main(["compile", "--target", "kubeflow", "--out", str(tmp_path / "vertex" / "funnel.json"),
                     "--config", scheduled_config_file]) == 0
    job = json.loads((tmp_path / "vertex" / "funnel.json").read_text())
    assert job["runtimeConfig"]["gcsOutputDirectory"] == "gs://funnel-test/tfx" and "pipelineSpec" in job


def test_compile_airflow_writes_the_module_and_its_configuration(tmp_path, scheduled_config_file, capsys):
    assert cli.main(["compile", "--target", "airflow", "--out", str(tmp_path / "dags" / "funnel_dag.py"),
                     "--config", scheduled_config_file]) == 0
    module = (tmp_path / "dags" / "funnel_dag.py").read_text()
    assert "DAG = airflow_dag(" in module and "'funnel_dag.yaml'" in module
    compile(module, "funnel_dag.py", "exec")
    assert (tmp_path / "dags" / "funnel_dag.yaml").exists()
    assert capsys.readouterr().out.splitlines() == [
        f"funnel compile: library messages go to {tmp_path / 'dags' / 'funnel-compile.log'}",
        f"written: {tmp_path / 'dags' / 'funnel_dag.py'}", f"written: {tmp_path / 'dags' / 'funnel_dag.yaml'}"]


def test_compile_sends_library_warnings_to_its_log_and_names_an_unwritable_out(tmp_path, monkeypatch, capsys):
    import warnings

    from pipeline import orchestration

    def compile_pipeline(target, out, config):  # as importing TFX does on Python 3.10
        warnings.warn("a library's import-time warning", FutureWarning)
        open(out, "w").close()
        return (out,)

    monkeypatch.setattr(orchestration, "compile_pipeline", compile_pipeline)
    with warnings.catch_warnings():  # as a command shows them (pytest records warnings otherwise)
        warnings.simplefilter("always")
        assert cli.main(["compile", "--target", "airflow", "--out", str(tmp_path / "dags" / "funnel_dag.py")]) == 0
    console = capsys.readouterr()
    assert "warning" not in console.out + console.err
    assert "a library's import-time warning" in (tmp_path / "dags" / "funnel-compile.log").read_text()
    (tmp_path / "file").write_text("")
    assert cli.main(["compile", "--target", "airflow", "--out", str(tmp_path / "file" / "dags" / "d.py")]) == 2
    assert f"{tmp_path / 'file'} is a file, not a directory" in capsys.readouterr().err
    (tmp_path / "dir.py").mkdir()  # the output itself cannot be written
    assert cli.main(["compile", "--target", "airflow", "--out", str(tmp_path / "dir.py")]) == 2
    assert capsys.readouterr().err.strip() == f"funnel compile: cannot write {tmp_path / 'dir.py'}: Is a directory"


def test_compile_refuses_an_unknown_extension_or_a_bad_section_clearly(tmp_path, scheduled_config_file, capsys):
    for target, out, message in [
            ("kubeflow", "funnel.txt", "--out funnel.txt: the Kubeflow format follows the extension: .yaml or .yml"),
            ("kubeflow", "funnel", "the Kubeflow format follows the extension"),
            ("airflow", "funnel_dag.yaml", "the Airflow DAG is a Python module: give a path ending in .py")]:
        assert cli.main(["compile", "--target", target, "--out", out]) == 2
        err = capsys.readouterr().err
        assert err.startswith("funnel compile: ") and message in err, err
    (tmp_path / "bad.yaml").write_text("orchestration: {kubeflow: {cron: '0 3 * * *'}}\n")
    assert cli.main(["compile", "--target", "kubeflow", "--out", str(tmp_path / "p.yaml"),
                     "--config", str(tmp_path / "bad.yaml")]) == 2
    assert "must have 6 fields" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="unknown arguments: --runner=x"):  # Beam args belong in the config
        cli.main(["compile", "--target", "kubeflow", "--out", str(tmp_path / "p.yaml"), "--runner=x"])
    assert not (tmp_path / "p.yaml").exists()


@pytest.mark.parametrize("orchestrator", ["local", "beam"])
def test_run_hands_the_pipeline_to_the_chosen_orchestrator(tmp_path, monkeypatch, orchestrator):
    from pipeline import beam_runner, local_runner, report

    calls = []

    def runner(name):
        def run(logs, work, config, beam_args, enable_cache=False):
            calls.append((name, logs, work, beam_args, enable_cache))
            return str(tmp_path / "root")
        return run

    monkeypatch.setattr(local_runner, "run_local", runner("local"))
    monkeypatch.setattr(beam_runner, "run_beam", runner("beam"))
    monkeypatch.setattr(report, "summarize", lambda root, logs, work, metadata: "table")
    work = str(tmp_path / "W")  # the run's library log goes there
    argv = ["run", "--logs", "L", "--work", work, "--direct_num_workers=1"]
    assert cli.main(argv + (["--orchestrator", orchestrator] if orchestrator == "beam" else [])) == 0
    assert calls == [(orchestrator, "L", work, ["--direct_num_workers=1"], False)]


def test_run_takes_a_daily_window_and_refuses_half_of_one(tmp_path, monkeypatch, capsys):
    from pipeline import local_runner, report

    configs = []
    monkeypatch.setattr(local_runner, "run_local", lambda logs, work, config, beam_args, enable_cache=False:
                        configs.append(config) or str(tmp_path / "root"))
    monkeypatch.setattr(report, "summarize", lambda root, logs, work, metadata: "table")
    work = str(tmp_path / "W")
    assert cli.main(["run", "--logs", "L", "--work", work, "--end-date", "2026-10-04", "--train-days", "7"]) == 0
    assert configs[0]["ingest"]["end_date"] == "2026-10-04" and configs[0]["ingest"]["train_days"] == 7
    assert cli.main(["run", "--logs", "L", "--work", work, "--end-date", "2026-10-04"]) == 2
    assert "end_date and train_days go together" in capsys.readouterr().err
    assert len(configs) == 1
    # `yesterday`: the command runs now, so the date is fixed when it starts (and is the cache key's)
    import datetime

    import components.ingest.config as ingest_config
    monkeypatch.setattr(ingest_config, "utc_today", lambda: datetime.date(2026, 10, 5))
    assert cli.main(["run", "--logs", "L", "--work", work, "--end-date", "yesterday", "--train-days", "7"]) == 0
    assert configs[1]["ingest"]["end_date"] == "2026-10-04"


def test_importance_parses_its_options_and_refuses_a_bad_model_or_feature(tmp_path, capsys):
    args = cli.build_parser().parse_args(["importance", "--model", "m", "--logs", "l"])
    assert (args.out, args.seed, args.repeats, args.features, args.work) == ("importance", 0, 1, None, None)
    assert args.handler is cli_model_commands.importance
    args = cli.build_parser().parse_args(["importance", "--model", "m", "--logs", "l", "--out", "o", "--seed", "3",
                                          "--repeats", "2", "--features", "item_price,click_sequence",
                                          "--eval-days", "2"])
    assert (args.out, args.seed, args.repeats, args.features, args.eval_days) == (
        "o", 3, 2, ["item_price", "click_sequence"], 2)
    assert cli.main(["importance", "--model", str(tmp_path), "--logs", str(tmp_path)]) == 2
    assert "not a SavedModel" in capsys.readouterr().err
    (tmp_path / "saved_model.pb").write_bytes(b"")
    assert cli.main(["importance", "--model", str(tmp_path), "--logs", str(tmp_path), "--features", "nope",
                     "--out", str(tmp_path / "out")]) == 2
    assert "unknown feature(s) nope" in capsys.readouterr().err
    for flags, message in [(["--features", ",,"], "--features names no feature"),
                           (["--seed", "-1"], "--seed -1: the permutations' seed is a non-negative integer"),
                           (["--repeats", "0"], "--repeats must be at least 1")]:
        assert cli.main(["importance", "--model", str(tmp_path), "--logs", str(tmp_path),
                         "--out", str(tmp_path / "out"), *flags]) == 2
        assert message in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "out")  # refused before anything is written
