"""The `funnel` command line: simulate and ingest, and clear errors for bad logs."""

import json
import os

from pipeline import cli


def test_simulate_then_ingest(tmp_path, capsys):
    assert cli.main(["simulate", "--out", str(tmp_path / "logs"), "--users", "80", "--days", "2", "--seed", "5"]) == 0
    assert os.path.isdir(tmp_path / "logs" / "impressions")
    code = cli.main(["ingest", "--logs", str(tmp_path / "logs"), "--out", str(tmp_path / "out"),
                     "--eval-days", "1", "--direct_running_mode=in_memory", "--direct_num_workers=1"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["records_quarantined"] == 0
    with open(tmp_path / "logs" / "simulation_summary.json") as f:
        impressions = json.load(f)["counts"]["impressions"]
    assert summary["examples"]["train"] + summary["examples"]["eval"] == impressions
    assert os.path.exists(tmp_path / "out" / "ingest_report.json")


def test_ingest_of_a_directory_outside_the_contract_fails_clearly(tmp_path, capsys):
    os.makedirs(tmp_path / "logs" / "items")
    (tmp_path / "logs" / "items" / "data.csv").write_text("a,b\n")
    assert cli.main(["ingest", "--logs", str(tmp_path / "logs"), "--out", str(tmp_path / "out")]) == 2
    assert "data.csv" in capsys.readouterr().err


def test_config_file_sets_ingest_options(tmp_path):
    (tmp_path / "funnel.yaml").write_text("ingest:\n  eval_days: 2\n  num_shards: 4\n")
    args = cli.build_parser().parse_args(["ingest", "--logs", "x", "--out", "y", "--config", str(tmp_path / "funnel.yaml")])
    config = cli._ingest_config(args)
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
    assert not (tmp_path / "work").exists()


def test_library_logs_go_to_the_file_and_not_to_the_console(tmp_path, capfd):
    import logging
    import warnings

    root = logging.getLogger()
    saved = {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).propagate)
             for name in ("", "tensorflow", "apache_beam", "absl")}
    path = tmp_path / "work" / "ablations" / "ablate.log"
    try:
        with warnings.catch_warnings():  # pytest records warnings; this shows them as a run would
            warnings.simplefilter("always")
            cli.send_library_logs_to(str(path))
            logging.getLogger("apache_beam.runners.worker").warning("a beam worker warning")
            logging.getLogger("tensorflow").warning("a tensorflow warning")
            warnings.warn("a library FutureWarning", FutureWarning)
        for handler in root.handlers:
            handler.flush()
    finally:
        logging.captureWarnings(False)
        for name, (handlers, propagate) in saved.items():
            logger = logging.getLogger(name)
            for handler in logger.handlers[:]:
                logger.removeHandler(handler)
                if handler not in handlers:
                    handler.close()
            for handler in handlers:
                logger.addHandler(handler)
            logger.propagate = propagate
    text = path.read_text()
    assert "a beam worker warning" in text and "a tensorflow warning" in text and "a library FutureWarning" in text
    out, err = capfd.readouterr()
    assert "warning" not in (out + err).lower()
