"""Tests of the run's TensorBoard directory and `funnel board`, through TensorBoard's HTTP API."""

import json
import os
import time
import urllib.parse
import urllib.request

import numpy as np
import pandas as pd
import psutil
import pytest
import tensorflow as tf

from models import features as F
from models import gate_summary
from pipeline import dashboard
from tests.ports import free_ports

RESULT = {
    "rows": {"model": "dmt", "baseline": "dnn-base", "logged": "dmt+bias"},
    "models": {"dmt": {"click": {"auc": 0.71, "gauc": 0.6, "log_loss": float("nan")}, "order": {"auc": 0.85}},
               "dnn-base": {"click": {"auc": 0.69}, "order": {"auc": 0.84}}},
    "slices": {"dmt": {"scenario=NL": {"click": {"auc": 0.73}}}},
    "rela_impr": {"click": 0.2}, "rela_impr_served": {"click": 0.08, "order": 0.05},
    "ranking": {"dmt score": {"purchase_ndcg@10": 0.82}},
}


def test_report_figures_become_scalar_tags():
    scalars = dashboard.evaluation_scalars(RESULT)
    assert scalars["dmt/click/auc"] == 0.71 and scalars["dnn-base/order/auc"] == 0.84
    assert scalars["dmt/click/scenario=NL/auc"] == 0.73
    assert scalars["dmt+bias/click/rela_impr"] == 0.2 and scalars["dmt/order/rela_impr"] == 0.05
    assert scalars["ranking/dmt score/purchase_ndcg@10"] == 0.82
    assert "dmt/click/log_loss" not in scalars  # NaN is left out


def test_run_names_are_portable_directory_names():
    assert dashboard.run_name("2026-11-30T23:05:28.913651") == "2026-11-30-230528.913651"
    assert dashboard.run_name(None) == "run" and dashboard.run_name("a/../b") == "a..b"


def _keras_logs(path, gates=False):
    """What the Trainer leaves: its TensorBoard callback's train/ and validation/ event files,
    and with a gated mixture the gate heat maps in gates/."""
    if gates:
        gate_summary.write_gate_images(os.path.join(path, "gates"), {
            task: {"all": [0.5, 0.5], "NL": [0.9, 0.1]} for task in ("click", "order")})
    for split in ("train", "validation"):
        with tf.summary.create_file_writer(os.path.join(path, split)).as_default():
            for task in ("click", "order"):
                for step in range(3):
                    tf.summary.scalar(f"epoch_{task}_auc", 0.6 + 0.01 * step, step=step)
                    if split == "train":
                        tf.summary.scalar(f"batch_{task}_loss", 0.3 - 0.01 * step, step=step * 50)


def _get(url, body=None):
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json", "X-TensorBoard-Feature-Flags": "{}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _wait_for(fetch, ready, seconds=90):
    deadline = time.monotonic() + seconds
    while True:
        value = fetch()
        if ready(value) or time.monotonic() > deadline:
            return value
        time.sleep(1)


def board_checks(url: str, run: str, result: dict, tasks, rows, gated_rows=(), attention_rows=()):
    """The HTTP API's view of one run written by write_run: per task the evaluation, training
    and PR-curve tags, the gate heat maps of `gated_rows`, the decoder attention images of
    `attention_rows` (one per behaviour sequence), a scalar equal to `result`'s, and the
    HParams session of the run."""
    evaluation = f"{run}/{dashboard.EVALUATION_RUN}"
    tags = _wait_for(lambda: _get(f"{url}data/plugin/scalars/tags"), lambda t: evaluation in t)
    for row in rows:
        for task in tasks:
            assert f"{row}/{task}/auc" in tags[evaluation]
            assert f"epoch_{task}_auc" in tags[f"{run}/{row}/train"]
            assert f"epoch_{task}_auc" in tags[f"{run}/{row}/validation"]
            assert f"batch_{task}_loss" in tags[f"{run}/{row}/train"]
    row, task = rows[0], tasks[0]
    query = urllib.parse.urlencode({"run": evaluation, "tag": f"{row}/{task}/auc"})
    [[_, step, value]] = _get(f"{url}data/plugin/scalars/scalars?{query}")
    assert step == 0 and value == pytest.approx(result["models"][row][task]["auc"], rel=1e-6)
    images = _get(f"{url}data/plugin/images/tags")
    assert {f"calibration/{task}" for task in tasks} <= set(images[evaluation])
    for row in gated_rows:
        assert {f"gates/{task}" for task in tasks} <= set(images[f"{run}/{row}/gates"])
    for row in attention_rows:
        assert {f"attention/{s}" for s in F.SEQUENCES} == set(images[f"{run}/{row}/attention"])
    pr_tags = _get(f"{url}data/plugin/pr_curves/tags")
    assert {f"{r}/{t}/pr_curves" for r in rows for t in tasks} <= set(pr_tags[evaluation])
    groups = _get(f"{url}data/plugin/hparams/session_groups",
                  {"experimentName": "", "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS"],
                   "colParams": [], "startIndex": 0, "sliceSize": 100})
    sessions = [s["name"] for g in groups["sessionGroups"] for s in g["sessions"]]
    assert evaluation in sessions
    layout = _get(f"{url}data/plugin/custom_scalars/layout")
    assert {c["title"] for c in layout["category"]} >= set(tasks)


def test_a_written_run_is_served_by_tensorboard(tmp_path):
    logs = tmp_path / "trainer"
    _keras_logs(str(logs / "dmt"), gates=True)
    _keras_logs(str(logs / "dnn-base"))
    rng = np.random.default_rng(0)
    frames = {row: pd.DataFrame({"click": rng.uniform(size=200), "label_click": rng.integers(0, 2, 200),
                                 "order": rng.uniform(size=200), "label_order": rng.integers(0, 2, 200)})
              for row in ("dmt", "dnn-base")}
    work = tmp_path / "work"
    root = dashboard.write_run(str(work), "2026-11-30T23:05:28.913651", RESULT,
                               {row: str(logs / row) for row in frames}, frames,
                               {"model": {"preset": "dmt"}, "trainer": {"epochs": 1, "learning_rate": 0.001}})
    assert root == str(work / "tensorboard" / "2026-11-30-230528.913651")
    [port] = free_ports(1)
    url = dashboard.launch(str(work / "tensorboard"), "127.0.0.1", port)
    assert url.startswith(f"http://127.0.0.1:{port}/") or url.startswith(f"http://localhost:{port}/")
    assert listening_addresses(port) == {"127.0.0.1"}
    board_checks(f"http://127.0.0.1:{port}/", os.path.basename(root), RESULT, ["click", "order"], ["dmt", "dnn-base"],
                 gated_rows=["dmt"])


def listening_addresses(port: int) -> set:
    """The addresses this process listens on at `port`."""
    return {c.laddr.ip for c in psutil.Process().net_connections("inet")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port}


def test_board_binds_loopback_unless_told_otherwise(tmp_path, monkeypatch):
    from tensorboard import program

    from pipeline.cli import main

    argvs = []

    class Board:  # records how TensorBoard would be started
        def configure(self, argv):
            argvs.append(argv)

        def launch(self):
            return "http://127.0.0.1:6006/"

    def interrupt(seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(program, "TensorBoard", Board)
    monkeypatch.setattr(time, "sleep", interrupt)
    (tmp_path / "tensorboard").mkdir()
    assert main(["board", "--work", str(tmp_path)]) == 0
    assert main(["board", "--work", str(tmp_path), "--host", "0.0.0.0"]) == 0
    assert [argv[argv.index("--host") + 1] for argv in argvs] == ["127.0.0.1", "0.0.0.0"]


def test_board_refuses_a_work_dir_without_runs(tmp_path, capsys):
    from pipeline.cli import main

    assert main(["board", "--work", str(tmp_path)]) == 2
    assert "funnel run" in capsys.readouterr().err


def test_board_refuses_a_port_out_of_range_or_in_use_in_one_line(tmp_path, capsys):
    import socket

    from pipeline.cli import main

    (tmp_path / "tensorboard").mkdir()
    for port in ("-1", "99999"):  # TensorBoard itself: an OverflowError / TensorBoardServerException traceback
        assert main(["board", "--work", str(tmp_path), "--port", port]) == 2
        assert capsys.readouterr().err == f"funnel board: --port must be between 0 (any free port) and 65535, got {port}\n"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["board", "--work", str(tmp_path), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("funnel board: ") and str(port) in err and "in use" in err and len(err.splitlines()) == 1
