"""TensorBoard for every pipeline run, and `funnel board` to look at them.

`write_run` fills one log directory per run, `WORK/tensorboard/<run>` (the run: TFX's
pipeline-run id of the Trainer, so a run answered from the cache keeps its directory):

* `<row>/train`, `<row>/validation`: each Trainer's Keras curves (per step: `batch_*`, every
  `trainer.summary_steps` steps (50); per epoch: `epoch_*`), copied from its model_run artifact, for the
  model and the baseline (rows named by preset as in report.json);
* `evaluation`: the figures of report.json as scalars, `<row>/<task>/<metric>` (per scenario:
  `<row>/<task>/scenario=<s>/<metric>`; the truth-based rankings: `ranking/<ranked by>/<metric>`),
  a PR curve per row and task (`<row>/<task>`), a reliability diagram per task (image
  `calibration/<task>`, every row a line), the run's HParams (the Trainer's settings, so the
  HParams dashboard compares runs by their per-task AUC and GAUC) and a custom-scalars layout
  that groups each task's curves.

Everything is written with TensorBoard's own summary APIs (scalars, pr_curve, hparams,
custom_scalar); nothing here parses or re-implements event files.
"""

import os
import re
from typing import Dict, Optional

import numpy as np
import pandas as pd
import tensorflow as tf
from tensorflow.io import gfile

TENSORBOARD_DIR = "tensorboard"
EVALUATION_RUN = "evaluation"
PR_THRESHOLDS = 101
DEFAULT_PORT = 6006
HPARAM_METRICS = ("auc", "gauc")  # the HParams table's columns, per row and task


def run_name(pipeline_run: Optional[str]) -> str:
    """A directory name for TFX's pipeline-run id (an ISO time): characters kept portable."""
    return re.sub(r"[^A-Za-z0-9._-]", "", (pipeline_run or "run").replace(":", "").replace("T", "-")) or "run"


def _copy_tree(source: str, target: str) -> None:
    for directory, _, names in gfile.walk(source):
        relative = os.path.relpath(directory, source)
        gfile.makedirs(os.path.join(target, relative))
        for name in names:
            gfile.copy(os.path.join(directory, name), os.path.join(target, relative, name), overwrite=True)


def _flat(settings: dict, prefix: str = "") -> Dict[str, object]:
    """Nested settings as HParams values (str, bool, int, float); lists become strings."""
    flat = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flat(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        elif value is not None:
            flat[name] = str(value)
    return flat


def _number(value) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        return None
    return float(value)


def evaluation_scalars(result: dict) -> Dict[str, float]:
    """report.json's figures as TensorBoard scalar tags -> values (NaN and missing left out)."""
    scalars = {}

    def add(prefix: str, values: dict) -> None:
        scalars.update((f"{prefix}/{metric}", _number(v)) for metric, v in values.items() if _number(v) is not None)

    for row, tasks in result.get("models", {}).items():
        for task, values in tasks.items():
            add(f"{row}/{task}", values)
    for row, slices in result.get("slices", {}).items():
        for slice_name, tasks in slices.items():
            for task, values in tasks.items():
                add(f"{row}/{task}/{slice_name}", values)
    rows = result.get("rows", {})
    for role, key in (("logged", "rela_impr"), ("model", "rela_impr_served")):
        for task, value in (result.get(key) or {}).items() if role in rows else ():
            add(f"{rows[role]}/{task}", {"rela_impr": value})
    for ranker, values in result.get("ranking", {}).items():
        add(f"ranking/{ranker}", values)
    # the Evaluator's own (TFMA) figures of the candidate, per task and slice
    for slice_name, tasks in result.get("evaluator", {}).get("candidate", {}).items():
        for task, values in tasks.items():
            add(f"evaluator/{task}/{slice_name}", values)
    for metric, lift in result.get("abtest", {}).get("lift", {}).items():
        add("abtest/lift", {metric: lift["relative"]})
    return scalars


def _layout(result: dict):
    """Custom scalars: per task, its training loss and AUC curves and its evaluation figures."""
    from tensorboard.plugins.custom_scalar import layout_pb2

    tasks = sorted({t for tasks in result.get("models", {}).values() for t in tasks})
    categories = []
    for task in tasks:
        charts = [
            layout_pb2.Chart(title=f"{task}: training loss per step",
                             multiline=layout_pb2.MultilineChartContent(tag=[rf"^batch_{task}_loss$"])),
            layout_pb2.Chart(title=f"{task}: AUC per epoch (train and validation)",
                             multiline=layout_pb2.MultilineChartContent(tag=[rf"^epoch_{task}_auc$"])),
            layout_pb2.Chart(title=f"{task}: evaluation AUC and GAUC per model",
                             multiline=layout_pb2.MultilineChartContent(tag=[rf"/{task}/(auc|gauc)$"])),
        ]
        categories.append(layout_pb2.Category(title=task, chart=charts))
    return layout_pb2.Layout(category=categories)


def write_run(work_dir: str, pipeline_run: Optional[str], result: dict, training_logs: Dict[str, str],
              scored: Dict[str, pd.DataFrame], hparams: Dict[str, object]) -> str:
    """Writes the run's TensorBoard directory (see the module docstring) and returns it.
    `training_logs`: row -> a Trainer's Keras log directory; `scored`: row -> the eval split
    scored by that row's model (task columns and `label_<task>`); `hparams`: nested settings."""
    from tensorboard.plugins.custom_scalar import summary as custom_scalar_summary
    from tensorboard.plugins.hparams import api as hp
    from tensorboard.plugins.pr_curve import summary as pr_curve_summary

    from pipeline import report_page

    root = os.path.join(work_dir, TENSORBOARD_DIR, run_name(pipeline_run))
    for row, logs in training_logs.items():
        if gfile.isdir(logs):
            _copy_tree(logs, os.path.join(root, row))
    writer = tf.summary.create_file_writer(os.path.join(root, EVALUATION_RUN))
    with writer.as_default(step=0):
        hp.hparams(_flat(hparams), trial_id=run_name(pipeline_run))
        for tag, value in evaluation_scalars(result).items():
            tf.summary.scalar(tag, value)
        for row, frame in scored.items():
            for task in (c[len("label_"):] for c in frame.columns if c.startswith("label_")):
                if task not in frame:
                    continue
                summary = pr_curve_summary.pb(f"{row}/{task}", frame[f"label_{task}"].to_numpy() > 0,
                                              frame[task].to_numpy().astype(np.float32),
                                              num_thresholds=PR_THRESHOLDS)
                tf.summary.experimental.write_raw_pb(summary.SerializeToString(), step=0)
        # per task a reliability diagram of every row (the report page's, drawn by matplotlib)
        for task in report_page.tasks_of(scored):
            figure = report_page.task_figure(task, scored, precision_recall_panel=False)
            tf.summary.image(f"calibration/{task}", tf.image.decode_png(report_page.png(figure))[tf.newaxis])
        layout = custom_scalar_summary.pb(_layout(result))
        tf.summary.experimental.write_raw_pb(layout.SerializeToString(), step=0)
    writer.flush()
    writer.close()
    return root


def launch(logdir: str, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> str:
    """Starts TensorBoard on `logdir` in a background thread of this process; returns its URL.
    Binds to loopback unless another host is given. OSError when it cannot listen (a port in
    use, or outside 0..65535), naming the reason."""
    from tensorboard import program

    if not 0 <= port <= 65535:  # TensorBoard itself ends in an OverflowError for a negative one
        raise OSError(f"--port must be between 0 (any free port) and 65535, got {port}")
    board = program.TensorBoard()
    board.configure(argv=[None, "--logdir", logdir, "--host", host, "--port", str(port), "--reload_interval", "5",
                          "--load_fast", "false"])  # the Python loader: no separate data-server process
    try:
        return board.launch()
    except program.TensorBoardServerException as e:  # e.g. TensorBoardPortInUseError
        raise OSError(e.msg) from None
