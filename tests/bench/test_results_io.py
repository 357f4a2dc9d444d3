"""bench.results_io: a benchmark's JSON and, when given, its markdown table beside it; the
benches' console."""

import json
import logging
import os
import subprocess
import sys
import warnings

import pytest

from bench.results_io import quiet_bench, write_result


def test_the_json_and_the_markdown_beside_it(tmp_path, capsys):
    path = tmp_path / "results" / "peers.json"
    write_result({"rows": [1]}, str(path), "| a |\n")
    assert json.loads(path.read_text()) == {"rows": [1]}
    assert (tmp_path / "results" / "peers.md").read_text() == "| a |\n"
    assert '"rows"' in capsys.readouterr().out
    write_result({"rows": [2]}, str(tmp_path / "train.json"))
    assert not (tmp_path / "train.md").exists()


def test_quiet_bench_shows_the_benchs_lines_and_logs_the_libraries(tmp_path, capfd):
    log = tmp_path / "bench" / "train.log"
    with quiet_bench("train bench", str(log)):
        print("repeat 0: dmt fit 1600 ex/s", flush=True)
        logging.getLogger("tensorflow").warning("tensor_shape_from_node_def_name is deprecated")
        warnings.warn("a library's warning")
        os.write(2, b"30 ops no flops stats due to incomplete shapes.\n")  # the profiler's C++ line
    shown = capfd.readouterr()
    console = shown.out + shown.err
    assert console == f"train bench: library messages go to {log}\nrepeat 0: dmt fit 1600 ex/s\n"
    logged = log.read_text()
    assert all(line in logged for line in ("tensor_shape_from_node_def_name", "a library's warning", "30 ops no flops"))


@pytest.mark.parametrize("bench", ["train_bench", "census_bench", "serving_bench", "load_bench", "ingest_bench",
                                   "peers_bench", "position_free_labels", "scale_bench"])
def test_a_bench_module_imports_without_a_line_on_the_console(bench):
    """TensorFlow's import warns (google-api-core on Python 3.10): the benches hold it for their log."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    env.update(PYTHONPATH=os.getcwd(), TF_CPP_MIN_LOG_LEVEL="3")  # as the Makefile runs them
    done = subprocess.run([sys.executable, "-m", f"bench.{bench}", "--help"], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0 and done.stdout.startswith("usage:"), done.stderr
    assert done.stderr == ""
