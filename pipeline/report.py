"""Reads a finished pipeline's outputs (found in its ML Metadata, read with tf.io.gfile), scores
the eval split with the trained model and the baseline (DNN(Base) by default), and writes
`WORK/report.json` plus a printed table (metrics of the DMT paper's Table 1). Rows are named by
the models' presets (`dmt`, `dnn-base`, ...)."""

import json
import os
from typing import Dict, List, Optional

import numpy as np
import pandas as pd
import tensorflow_model_analysis as tfma
from tensorflow.io import gfile
from tensorflow_metadata.proto.v0 import anomalies_pb2

from components.ingest import files, reader
from components.ingest.contract import LogFile
from components.ingest.runner import REPORT_FILE
from models import features as F
from models import metrics
from models.trainer import ATTENTION_FILE, CALIBRATION_FILE, GATES_FILE, LOGGED_MODEL_DIR
from pipeline import abtest, evaluator_metrics, report_page
from pipeline import metadata as metadata_lib
from pipeline.report_columns import EVALUATOR_COLUMNS, METRIC_COLUMNS, METRIC_HEADERS, RANKING_COLUMNS
from serving.batch_predict import score_examples
from simulation.simulator import CONFIG_FILE, read_config

TRUTH_COLUMNS = {F.CLICK: "p_click", F.CART: "p_cart", F.ORDER: "p_order"}
RELEVANCE_TRUTH_COLUMNS = {F.CLICK: "p_click_rel"}
ORDER_RELEVANCE = "p_order_rel"  # the true purchase probability without position effects
LOGGING_POLICY = "logging policy"  # the old ranker: the logged positions, as a ranking
TRAINERS = {"model": "Trainer", "baseline": "BaselineTrainer"}  # role -> component
LOGGED_SUFFIX = "+bias"  # the model with its bias tower (eq. 5): predicts events as logged


def run_store(root: str, metadata=None):
    """The ML Metadata store of the run under pipeline root `root`: `metadata` (a
    ConnectionConfig, e.g. a shared MySQL store), else the local layout's SQLite file in it."""
    default = os.path.join(root, metadata_lib.SQLITE_FILE)
    return metadata_lib.open_store(metadata or metadata_lib.connection_config(None, default))


def _output(store, step: str, key: str) -> str:
    """The URI of the newest finished execution's output `key` of `step` (ML Metadata)."""
    return metadata_lib.latest_output(store, step, key).uri


def _read_text(path: str) -> str:
    with gfile.GFile(path) as f:
        return f.read()


def anomalies(store) -> Dict[str, List[str]]:
    """Split -> anomaly descriptions found by ExampleValidator (empty lists when clean)."""
    found = {}
    for path in sorted(gfile.glob(os.path.join(_output(store, "ExampleValidator", "anomalies"),
                                               "Split-*", "SchemaDiff.pb"))):
        message = anomalies_pb2.Anomalies()
        with gfile.GFile(path, "rb") as f:
            message.ParseFromString(f.read())
        split = os.path.basename(os.path.dirname(path))[len("Split-"):]
        found[split] = [f"{name}: {info.short_description}" for name, info in message.anomaly_info.items()]
    return found


def read_truth(logs_dir: str) -> Optional[pd.DataFrame]:
    paths = [p for p in files.list_files(os.path.join(logs_dir, "truth"))
             if not os.path.basename(p).startswith(".")]  # hidden files are not logs
    if not paths:
        return None
    frames = [reader.read_log_file(LogFile("truth", p, i)).rows for i, p in enumerate(paths)]
    return pd.concat(frames, ignore_index=True).drop(columns=[reader.FILE_COLUMN, reader.ROW_COLUMN])


def _trainer_run(store, component: str) -> Dict[str, object]:
    """What a Trainer execution recorded of its model (models/trainer.py CALIBRATION_FILE)."""
    try:
        path = os.path.join(_output(store, component, "model_run"), CALIBRATION_FILE)
        return json.loads(_read_text(path)) if gfile.exists(path) else {}
    except FileNotFoundError:
        return {}


def _model_dirs(store) -> Dict[str, Dict[str, str]]:
    """Role -> {"row": report row name, "dir": SavedModel}: the served networks (no bias tower)
    of the model and the baseline, and the model's training-time network with its bias tower
    (eq. 5, role "logged") when saved. Rows are named by preset."""
    dirs = {}
    for role, component in TRAINERS.items():
        if role == "baseline" and metadata_lib.latest_run(store, component) != metadata_lib.latest_run(
                store, TRAINERS["model"]):
            continue  # `baseline: null`: no baseline Trainer in this run (an earlier run's is not compared)
        name = str(_trainer_run(store, component).get("preset") or role)
        if role == "baseline" and name == dirs["model"]["row"]:
            name += " (baseline)"
        dirs[role] = {"row": name, "dir": os.path.join(_output(store, component, "model"), "Format-Serving")}
    logged = os.path.join(_output(store, TRAINERS["model"], "model_run"), LOGGED_MODEL_DIR)
    if gfile.exists(logged):  # a model without bias tower saves no training-time model
        dirs["logged"] = {"row": dirs["model"]["row"] + LOGGED_SUFFIX, "dir": logged}
    return dirs


def auc_tests(scored: pd.DataFrame, baseline: pd.DataFrame) -> Dict[str, Dict[str, float]]:
    """Per task: DeLong's paired test of the model's logged AUC against the baseline's on the
    eval impressions both scored (`metrics.paired_auc`: the difference, its standard error and
    two-sided p-value). A RelaImpr rests on the eval day's positives (the default world's has
    ~66 orders, so one order AUC alone carries a standard error near 0.027); the pairing says
    whether the two networks' difference is more than that noise."""
    tasks = {t: f"label_{t}" for t in scored.columns if f"label_{t}" in scored}
    return metrics.paired_auc_on_shared_rows(scored, baseline, tasks, F.IMPRESSION_ID)


def slices(scored: pd.DataFrame, relevance: bool = True) -> Dict[str, Dict[str, Dict[str, float]]]:
    """task_figures per scenario (`scenario=NL`) and per result page (`page=1`, `page=2`,
    `page>=3`: the position buckets), for the slices with examples."""
    found = {}
    for value in sorted(scored[F.SCENARIO].unique()) if F.SCENARIO in scored else []:
        found[f"scenario={value}"] = task_figures(scored[scored[F.SCENARIO] == value], relevance)
    if F.PAGE in scored:
        page = scored[F.PAGE].to_numpy()
        for name, mask in (("page=1", page == 1), ("page=2", page == 2), ("page>=3", page >= 3)):
            if mask.any():
                found[name] = task_figures(scored[mask], relevance)
    return found


def evaluate(store, logs_dir: str, frames: Optional[Dict[str, pd.DataFrame]] = None) -> dict:
    """The report's figures; `frames`, when given, receives each row's scored eval split."""
    eval_files = sorted(gfile.glob(os.path.join(_output(store, "Ingest", "examples"), f"Split-{F.EVAL_SPLIT}", "*")))
    truth = read_truth(logs_dir)
    keep = (F.USER_ID, F.REQUEST_ID, F.POSITION, F.PAGE, F.SCENARIO, F.CATEGORY_ID, F.ITEM_PRICE) + F.LABELS
    result = {"eval_examples": 0, "models": {}, "truth": truth is not None, "rows": {}, "ranking": {}, "slices": {}}
    frames = {} if frames is None else frames
    for role, model in _model_dirs(store).items():
        name = result["rows"][role] = model["row"]
        scored = score_examples(model["dir"], eval_files, keep)
        if truth is not None:
            scored = scored.merge(truth, how="left", on=F.IMPRESSION_ID)
        result["eval_examples"] = len(scored)
        if role != "logged" and truth is not None:
            result["ranking"].update(ranking_quality(scored, f"{name} "))
        # a position-free (served) model is also measured against the position-free oracle
        result["models"][name] = task_figures(scored, relevance=role != "logged")
        result["slices"][name] = slices(scored, relevance=role != "logged")
        frames[name] = scored
    result["calibration"] = {k: v for k, v in _trainer_run(store, TRAINERS["model"]).items() if k != "preset"}
    # RelaImpr as the paper's offline tables: the model's training-time network (eq. 5, the one
    # whose AUC on logged behaviour its Table 5 reports rising with bias features) over the
    # baseline; and the served networks (eq. 6) against each other.
    rows = result["rows"]
    base = result["models"][rows["baseline"]] if "baseline" in rows else {}  # none: no RelaImpr

    def rela_impr(model):
        return {t: metrics.rela_impr(model[t]["auc"], base[t]["auc"]) for t in model if t in base}

    result["rela_impr"] = rela_impr(result["models"][rows.get("logged", rows["model"])])
    result["rela_impr_served"] = rela_impr(result["models"][rows["model"]])
    if "baseline" in rows:  # is each RelaImpr more than the eval day's sampling noise?
        result["rela_impr_test"] = auc_tests(frames[rows.get("logged", rows["model"])], frames[rows["baseline"]])
        result["rela_impr_served_test"] = auc_tests(frames[rows["model"]], frames[rows["baseline"]])
    result["blessed"] = gfile.exists(os.path.join(_output(store, "Evaluator", "blessing"), "BLESSED"))
    result["evaluator"] = evaluator_figures(store)
    if (truth is not None and "baseline" in rows and all(c in truth for c in abtest.TRUTH_COLUMNS)
            and gfile.exists(os.path.join(logs_dir, CONFIG_FILE))):
        # a simulated world: the model (B) against the baseline (A) in its replay (pipeline/abtest.py)
        result["abtest"] = abtest.replay_scored(
            {"A": frames[rows["baseline"]], "B": frames[rows["model"]]}, truth, read_config(logs_dir),
            {"A": rows["baseline"], "B": rows["model"]})
    result["pushed_version"] = pushed_version(store)
    return result


def evaluator_figures(store) -> dict:
    """The Evaluator's own figures (TFMA, pipeline/pipeline.py's eval_config), read from its
    output: `candidate` (the run's model) and, when the blessing compared, `last_blessed`, each
    slice -> task -> metric -> value; `failures`: the blessing's failed bounds. {} when the run
    has no Evaluator output."""
    try:
        uri = _output(store, "Evaluator", "evaluation")
    except FileNotFoundError:
        return {}
    found = {"failures": evaluator_metrics.validation_failures(uri)}
    for model, by_slice in evaluator_metrics.read_metrics(uri).items():
        role = "last_blessed" if model == tfma.BASELINE_KEY else "candidate"
        found[role] = {name: {task: values for task, values in outputs.items() if task}  # "": example counts
                       for name, outputs in by_slice.items()}
    return found


def pushed_version(store) -> Optional[str]:
    """Where the run's Pusher put the model (its artifact's `pushed_destination`); None when it
    pushed nothing (not blessed) or did not run."""
    try:
        artifact = metadata_lib.latest_output(store, "Pusher", "pushed_model")
    except FileNotFoundError:
        return None
    if artifact.custom_properties["pushed"].int_value != 1:
        return None
    return artifact.custom_properties["pushed_destination"].string_value


def task_figures(scored: pd.DataFrame, relevance: bool = True) -> Dict[str, Dict[str, float]]:
    """metrics.task_metrics of each task output that has its label in `scored` (from
    score_examples, merged with the truth when there is one); `relevance`: also against the
    position-free oracle (for a served, position-free network)."""
    def column(name):
        return scored[name].to_numpy() if name in scored else None

    return {task: metrics.task_metrics(
        scored[f"label_{task}"].to_numpy(), scored[task].to_numpy(), scored[F.USER_ID].to_numpy(),
        scored[F.REQUEST_ID].to_numpy(), column(TRUTH_COLUMNS.get(task, "")),
        column(RELEVANCE_TRUTH_COLUMNS.get(task, "")) if relevance else None,
        positions=scored[F.POSITION].to_numpy())
        for task in scored.columns if f"label_{task}" in scored}


def truth_rankings(scored: pd.DataFrame, rankers: Dict[str, np.ndarray]) -> Dict[str, Dict[str, float]]:
    """metrics.truth_ranking_metrics of each ranking of the eval requests in `rankers` (name ->
    scores of the rows of `scored`); {} when `scored` has no truth."""
    click_column = RELEVANCE_TRUTH_COLUMNS[F.CLICK]
    if click_column not in scored or scored[click_column].isna().any():
        return {}
    click = scored[click_column].to_numpy()
    order = (scored[ORDER_RELEVANCE].to_numpy() if ORDER_RELEVANCE in scored and not scored[ORDER_RELEVANCE].isna().any()
             else np.full(len(scored), np.nan))
    requests = scored[F.REQUEST_ID].to_numpy()
    return {name: metrics.truth_ranking_metrics(scores, requests, click, order) for name, scores in rankers.items()}


def ranking_quality(scored: pd.DataFrame, prefix: str = "", logging_policy: bool = True) -> Dict[str, Dict[str, float]]:
    """Truth-based ranking quality of each ranking a served network gives the eval requests:
    its fused `score` and each task output, keyed PREFIX + "score", PREFIX + "click", ...;
    with `logging_policy`, also the old ranker's (the logged positions) and the truth's own
    (ranking by the true position-free probabilities)."""
    rankers = {f"{prefix}{column}": scored[column].to_numpy()
               for column in ["score"] + [t for t in F.LABELS if t in scored] if column in scored}
    if logging_policy:
        rankers[LOGGING_POLICY] = -scored[F.POSITION].to_numpy().astype(np.float64)
        rankers["truth (click)"] = scored.get(RELEVANCE_TRUTH_COLUMNS[F.CLICK])  # no truth: no rankings at all
        rankers["truth (order)"] = (scored[ORDER_RELEVANCE].to_numpy() if ORDER_RELEVANCE in scored
                                    else np.full(len(scored), np.nan))
    return truth_rankings(scored, rankers)


def _fmt(value) -> str:
    if isinstance(value, int):
        return str(value)
    return "-" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.4f}"


def table(result: dict) -> str:
    columns, headers = METRIC_COLUMNS, METRIC_HEADERS
    rows = result["rows"]
    width = max([9] + [len(name) for name in result["models"]])
    lines = [f"{'model':<{width}} {'task':<7} " + " ".join(f"{headers.get(c, c):>11}" for c in columns)
             + f" {'RelaImpr':>9} {'p':>6}"]
    rela_by_row = {rows.get("logged"): result["rela_impr"], rows["model"]: result["rela_impr_served"]}
    test_by_row = {rows.get("logged"): result.get("rela_impr_test", {}),
                   rows["model"]: result.get("rela_impr_served_test", {})}
    for name, tasks in result["models"].items():
        for task, values in tasks.items():
            rela = rela_by_row.get(name, {}).get(task)
            p_value = test_by_row.get(name, {}).get(task, {}).get("p_value")
            lines.append(f"{name:<{width}} {task:<7} " + " ".join(f"{_fmt(values.get(c)):>11}" for c in columns)
                         + f" {('-' if rela is None else f'{rela:+.2%}'):>9}"
                         + f" {('-' if p_value is None or np.isnan(p_value) else f'{p_value:.3f}'):>6}")
    served = ", ".join(rows[r] for r in ("model", "baseline") if r in rows)
    lines.append(f"  {served}: served networks (no bias tower)"
                 + (f"; {rows['logged']}: the training-time model (eq. 5) with its bias tower, i.e. the probability "
                    "of the event as logged" if "logged" in rows else "")
                 + (f". RelaImpr over {rows['baseline']}: the {LOGGED_SUFFIX} row as the paper's offline evaluation "
                    "(eq. 5 on logged behaviour), the model's row for the served networks; p: DeLong's paired test "
                    "of the two AUCs on the same eval impressions" if "baseline" in rows else ""))
    lines.append("  efficiency = (AUC - 0.5) / (oracle AUC - 0.5) against the true probability of the logged "
                 "event; rel_eff: against the true click probability without position effects (p_click_rel)")
    lines.append("  calibration = mean prediction / mean label; cal@pos1: on the eval impressions shown at position 1 "
                 "(the served probabilities are the network's at the reference context, position 1 by default), "
                 "events@pos1: the positives it rests on; tcal@pos1: mean prediction / mean true probability "
                 "of the logged event there (with truth)")
    if result.get("evaluator"):
        lines.append(evaluator_table(result["evaluator"]))
    if result.get("ranking"):
        lines.append(ranking_table(result["ranking"]))
    return "\n".join(lines)


def evaluator_table(evaluator: dict) -> str:
    """The Evaluator's overall figures per task: the candidate's and the last blessed model's."""
    rows = [(role, task, values) for role in ("candidate", "last_blessed")
            for task, values in evaluator.get(role, {}).get(evaluator_metrics.OVERALL, {}).items()]
    if not rows:
        return ""
    headers = {"auc_precision_recall": "auc_pr", "binary_crossentropy": "log_loss", "min_label_position": "min_pos"}
    columns = [c for c in EVALUATOR_COLUMNS if any(c in values for _, _, values in rows)]
    lines = ["Evaluator (TFMA; ndcg per request_id, the task's label as gain)",
             f"{'model':<12} {'task':<7} " + " ".join(f"{headers.get(c, c):>9}" for c in columns)]
    lines += [f"{role:<12} {task:<7} " + " ".join(f"{_fmt(values.get(c)):>9}" for c in columns)
              for role, task, values in rows]
    if evaluator.get("failures"):
        lines.append("  not blessed: " + "; ".join(evaluator["failures"]))
    return "\n".join(lines)


def ranking_table(ranking: Dict[str, Dict[str, float]]) -> str:
    width = max(len(name) for name in ranking)
    lines = ["ranking of the eval requests judged on the truth (position-free probabilities)",
             f"{'ranked by':<{width}} " + " ".join(f"{c:>18}" for c in RANKING_COLUMNS)]
    for name, values in ranking.items():
        lines.append(f"{name:<{width}} " + " ".join(f"{_fmt(values.get(c)):>18}" for c in RANKING_COLUMNS))
    lines.append("  purchase/click_ndcg@10: NDCG@10 per request with the true position-free purchase/click probability "
                 "as gain; click_expected_auc: AUC expected against position-free click labels "
                 "(p_click_rel); click_efficiency: (that - 0.5) / (the true probabilities' own - 0.5)")
    return "\n".join(lines)


def write_dashboard(store, work_dir: str, result: dict, frames: Dict[str, pd.DataFrame]) -> str:
    """The run's TensorBoard directory (pipeline/dashboard.py): the served rows' training curves
    and scored eval splits, the evaluation figures, and the Trainer's settings as HParams."""
    from pipeline import dashboard

    rows = result["rows"]
    training = {rows[role]: os.path.join(_output(store, TRAINERS[role], "model_run"), "logs")
                for role in TRAINERS if role in rows}
    settings = metadata_lib.latest_execution_property(store, TRAINERS["model"], "custom_config")
    hparams = {k: v for k, v in json.loads(settings or "{}").items() if k in ("model", "trainer", "transform")}
    if "baseline" in rows:
        hparams["baseline"] = rows["baseline"]
    served = {rows[role]: frames[rows[role]] for role in TRAINERS if role in rows}
    return dashboard.write_run(work_dir, metadata_lib.latest_run(store, TRAINERS["model"]), result, training,
                               served, hparams)


def _model_run_json(store, name: str) -> Optional[dict]:
    """A summary the Trainer wrote in its model_run (GATES_FILE: the mixture's mean gate weights;
    ATTENTION_FILE: the decoders' attention); None when the model has none (no gates, no decoders)."""
    path = os.path.join(_output(store, TRAINERS["model"], "model_run"), name)
    return json.loads(_read_text(path)) if gfile.exists(path) else None


def _trained(store) -> bool:
    try:
        _output(store, TRAINERS["model"], "model")
        return True
    except FileNotFoundError:
        return False


def stopped(work_dir: str, error: Exception) -> str:
    """A run the data gate stopped (pipeline/data_gate.py's DataGateError): WORK/report.json says
    so, with the anomalies (an earlier run's figures are not left there to be mistaken for this
    run's); returns the message for the console, the report's path added."""
    path = os.path.join(work_dir, "report.json")
    lines = [line.strip() for line in str(error).splitlines()]
    with gfile.GFile(path, "w") as f:
        f.write(json.dumps({"stopped": lines[0], "anomalies": lines[1:]}, indent=2, sort_keys=True))
    page = os.path.join(work_dir, "report.html")
    if gfile.exists(page):  # the previous run's page would contradict the report
        gfile.remove(page)
    return f"{error}\n  report: {path}"


def summarize(root: str, logs_dir: Optional[str] = None, work_dir: Optional[str] = None, metadata=None) -> str:
    """The run's summary, its artifacts found in ML Metadata (`metadata`: a ConnectionConfig;
    default the SQLite file under pipeline root `root`). With `logs_dir` and a trained model,
    also the evaluation, written to WORK/report.json when `work_dir` is given. Every path may be
    on any filesystem tf.io.gfile reads (gs://, s3:// with tensorflow-io, ...)."""
    store = run_store(root, metadata)
    report_path = os.path.join(_output(store, "Ingest", "ingest_report"), REPORT_FILE)
    ingest = json.loads(_read_text(report_path))
    lines = ["funnel pipeline",
             f"  records read {ingest['records_read']}, quarantined {ingest['records_quarantined']} "
             f"{json.dumps(ingest['quarantined_by_reason'], sort_keys=True)} (ingest report: {report_path})",
             f"  examples: train {ingest['examples']['train']}, eval {ingest['examples']['eval']}; labels: "
             + ", ".join(f"{k} {v}" for k, v in ingest["labels"].items())]
    found = anomalies(store)
    clean = [split for split, descriptions in found.items() if not descriptions]
    if clean:
        lines.append(f"  schema anomalies: none ({', '.join(clean)})")
    for split, descriptions in found.items():
        if descriptions:
            lines.append(f"  schema anomalies ({split}): " + "; ".join(descriptions))
    if logs_dir and _trained(store):
        frames = {}
        result = evaluate(store, logs_dir, frames)
        result["ingest"] = {k: ingest[k] for k in ("records_read", "records_quarantined", "examples", "labels")}
        if work_dir:
            path = os.path.join(work_dir, "report.json")
            with gfile.GFile(path, "w") as f:
                f.write(json.dumps(result, indent=2, sort_keys=True))
            page = report_page.write(os.path.join(work_dir, "report.html"), result, frames,
                                     _model_run_json(store, GATES_FILE), _model_run_json(store, ATTENTION_FILE))
            lines.append(f"  report: {path}, report page: {page}")
            board = write_dashboard(store, work_dir, result, frames)
            lines.append(f"  tensorboard: {board} (`funnel board --work {work_dir}`)")
        lines.append(f"  model blessed: {result['blessed']}, pushed version: {result['pushed_version']}; "
                     f"eval examples: {result['eval_examples']}")
        lines.append(table(result))
        if result.get("abtest"):
            lines.append(abtest.summary_line(result["abtest"]))
    return "\n".join(lines)
