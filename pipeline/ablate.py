"""`funnel ablate`: the papers' ablation tables, each variant trained on the same examples.

The data steps of the pipeline (Ingest .. Transform) run once per logs and data configuration
(cached in `WORK/ablations/data/<key>`); each variant of a suite (pipeline/ablations.yaml) is
then trained by the Trainer's own `run_fn`, in a fresh child process per variant
(`in_child_process`: so a suite's memory does not grow with its trainings), its served network
(and training-time network, when it has a bias tower) scored on the eval split
(pipeline/ablate_scoring.py), and the figures written to `WORK/ablations/NAME.json` and
`NAME.md`. A variant trained once (same data, model section and trainer settings) is reused by
every suite that lists it.

The logs may be anywhere the ingest reads (gs://, s3://, ...), but the work directory is a local
one: `funnel ablate` trains on this machine, caches in files it locks with fcntl (POSIX only)
and keeps the data steps' SQLite ML Metadata there, so its file operations stay local.
"""

import fcntl
import glob
import hashlib
import json
import os
import time
from typing import Any, Dict, List, Optional

import numpy as np
import pandas as pd

from models import features as F
from models import preprocessing as P
from pipeline import ablate_paired, ablate_scoring, code_version, paths
from pipeline.child_process import in_a_child, in_child_process
from pipeline.config import read_yaml

SUITES_FILE = os.path.join(os.path.dirname(__file__), "ablations.yaml")
COLUMN_KINDS = ("logged", "cvr", "per_scenario", "fusion", "score")


def load_suites(path: Optional[str] = None) -> Dict[str, Dict[str, Any]]:
    """The suites of a YAML file (default pipeline/ablations.yaml), their layout checked; every
    error names the file (the variants' settings are checked by `planned_variants`)."""
    path = path or SUITES_FILE
    suites = read_yaml(path)
    if not isinstance(suites, dict):
        raise ValueError(f"{path}: a mapping of suite names to suites")
    for name, suite in suites.items():
        unknown = set(suite.get("columns", [])) - set(COLUMN_KINDS) if isinstance(suite, dict) else None
        if unknown is None or unknown or not isinstance(suite.get("variants"), dict):
            raise ValueError(f"{path}: suite {name!r}: needs a mapping of variants; columns among {COLUMN_KINDS}")
        sections = [v for v, given in suite["variants"].items() if not isinstance(given, (dict, type(None)))]
        if sections:
            raise ValueError(f"{path}: suite {name!r}: each variant is a `model:` section (a mapping): {sections}")
        against = suite.get("paired_against", [])
        strangers = set(against) - set(suite["variants"]) if isinstance(against, list) else {against}
        if strangers:
            raise ValueError(f"{path}: suite {name!r}: paired_against names no variant of the suite: {sorted(strangers)}")
    return suites


def variant_section(suite: Dict[str, Any], variant: Dict[str, Any]) -> Dict[str, Any]:
    """The variant's `model:` section: as given when it names a preset, else over the suite's base."""
    variant = dict(variant or {})
    return variant if "preset" in variant else {"preset": suite.get("base", "dmt"), **variant}


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


# --- data: the pipeline's own steps, once.

def data_key(logs_dir: str, config: Dict[str, Any]) -> str:
    """The data steps' cache key: the logs directory and its files (path, size and modification
    time, as `funnel run --cache` keys its Ingest: logs written again into the same directory are
    ingested again, and their variants trained again, not scored against another world's truth);
    the `ingest:` and `transform:` sections with their defaults filled in (a section spelled out
    and one left to its defaults share the data); and the fingerprint of the Ingest's and
    Transform's code (pipeline/code_version.py): data made by other code is made again."""
    from components.ingest.config import IngestConfig
    from components.ingest.executor import config_to_json
    from components.ingest.runner import input_fingerprint

    # as the Ingest step sees it: a daily run's settings only when it is one (keys unchanged otherwise)
    ingest = IngestConfig(**config["ingest"]).resolve_end_date()
    transform = P.transform_config({"transform": config["transform"]})
    code = code_version.source_fingerprint(code_version.INGEST_CODE, code_version.TRANSFORM_CODE)
    return _key(paths.absolute(logs_dir), json.loads(config_to_json(ingest)), transform, code,
                input_fingerprint(logs_dir, ingest))


def data_root(work_dir: str, key: str) -> str:
    """The data steps' pipeline root (with their SQLite ML Metadata) for `data_key` KEY."""
    return os.path.join(os.path.abspath(work_dir), "ablations", "data", key)


def prepare_data(logs_dir: str, work_dir: str, config: Dict[str, Any],
                 beam_args: Optional[List[str]] = None) -> Dict[str, str]:
    """Runs Ingest .. Transform (cached per `data_key`: a second suite on the same logs reuses
    them) and returns the artifacts' URIs."""
    from tfx import v1 as tfx

    import schemas
    from components import schema_import
    from components.ingest.runner import DEFAULT_BEAM_ARGS
    from pipeline.pipeline import create_pipeline

    logs_dir = paths.absolute(logs_dir)
    key = data_key(logs_dir, config)
    root = data_root(work_dir, key)
    metadata_path = os.path.join(root, "metadata.sqlite")
    # The data cache is local, with its own SQLite store whatever store the pipeline runs use.
    tfx.orchestration.LocalDagRunner().run(create_pipeline(
        pipeline_name="funnel-ablate", pipeline_root=root, logs_dir=logs_dir, serving_dir=os.path.join(root, "unused"),
        schema_path=schema_import.content_addressed_copy(schemas.path("schema.pbtxt"), root),  # from any checkout
        config={**config, "metadata": None}, metadata_path=metadata_path,
        beam_pipeline_args=list(DEFAULT_BEAM_ARGS) + list(beam_args or []), enable_cache=True, data_only=True))
    return {"key": key, **data_artifacts(metadata_path)}


def data_artifacts(metadata_path: str) -> Dict[str, str]:
    """URIs of the newest Ingest examples, Transform examples and Transform graph recorded in
    a pipeline's ML Metadata (SQLite)."""
    from pipeline import metadata

    store = metadata.open_store(metadata.connection_config(None, metadata_path))
    return {"examples": metadata.latest_output(store, "Ingest", "examples").uri,
            "transformed_examples": metadata.latest_output(store, "Transform", "transformed_examples").uri,
            "transform_graph": metadata.latest_output(store, "Transform", "transform_graph").uri}


# --- one variant: the Trainer's run_fn, in a child process (pipeline/child_process.py).

def train_and_evaluate(data: Dict[str, str], custom: Dict[str, Any], out_dir: str, eval_files: List[str],
                       truth: Optional[pd.DataFrame], fusion: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """train_variant, then evaluate_variant (pipeline/ablate_scoring.py; with the training's wall
    time), in one process."""
    from models import trainer  # noqa: F401  (imported before the clock starts: a fresh process)
    from tfx.components.trainer import fn_args_utils  # noqa: F401

    started = time.time()
    train_variant(data, custom, out_dir)
    trained = time.time() - started
    figures = ablate_scoring.evaluate_variant(out_dir, eval_files, truth, fusion)
    figures["train_seconds"] = round(trained, 1)
    return figures


def _tf_dataset_factory(file_pattern, options, schema):
    """The Trainer's DataAccessor.tf_dataset_factory over TFRecords of tf.Examples."""
    from tfx_bsl.public import tfxio

    return tfxio.TFExampleRecord(file_pattern=file_pattern, schema=schema,
                                 telemetry_descriptors=["funnel-ablate"]).TensorFlowDataset(options)


def train_variant(data: Dict[str, str], custom_config: Dict[str, Any], out_dir: str) -> None:
    """Trains with `models.trainer.run_fn` (what the pipeline's Trainer runs) into
    out_dir/{serving,run}."""
    import tf_keras as keras
    from tfx.components.trainer import fn_args_utils

    from models import trainer

    keras.backend.clear_session()
    split = lambda name: [os.path.join(data["transformed_examples"], f"Split-{name}", "*")]  # noqa: E731
    trainer.run_fn(fn_args_utils.FnArgs(
        working_dir=out_dir, train_files=split(F.TRAIN_SPLIT), eval_files=split(F.EVAL_SPLIT),
        transform_output=data["transform_graph"], transform_graph_path=data["transform_graph"],
        data_accessor=fn_args_utils.DataAccessor(tf_dataset_factory=_tf_dataset_factory, record_batch_factory=None,
                                                 data_view_decode_fn=None),
        serving_model_dir=os.path.join(out_dir, "serving"), model_run_dir=os.path.join(out_dir, "run"),
        custom_config=custom_config))


def resolved_settings(custom: Dict[str, Any]) -> Dict[str, Any]:
    """The architecture and trainer settings a custom config resolves to (presets expanded);
    ValueError for settings the model config or the Trainer would refuse."""
    from models.trainer import check_trainer_settings, model_config, trainer_config

    model = model_config(custom)
    settings = trainer_config(custom, model)
    try:
        check_trainer_settings(settings)
    except ValueError as e:
        raise ValueError(f"trainer settings: {e}") from None
    # out of the key: `warm_start` (variants train from scratch) and settings that leave the weights alone
    trainer = {k: v for k, v in settings.items() if k not in ("warm_start", "summary_steps")}
    return json.loads(json.dumps({"model": model.to_dict(), "trainer": trainer}))


# Model settings added after variants may have been recorded, each with the value that trains
# what the code trained before it existed: a recorded variant lacking one was trained with it.
LEGACY_MODEL_SETTINGS = {"bias_neighbors": "categories", "cross_layers": 0, "bias_output_dropout": 0.0}


def _with_legacy_settings(recorded: Dict[str, Any]) -> Dict[str, Any]:
    return {**recorded, "model": {**LEGACY_MODEL_SETTINGS, **recorded["model"]}}


def _without_fusion(resolved: Dict[str, Any]) -> Dict[str, Any]:
    """The settings that change the trained weights: a static fusion is not trained (re-scored
    only), the fusion network is."""
    if ablate_scoring.trained_fusion(resolved["model"].get("fusion")):
        return resolved
    return {**resolved, "model": {k: v for k, v in resolved["model"].items() if k != "fusion"}}


def variant_dir(work_dir: str, data: Dict[str, str], custom: Dict[str, Any]) -> str:
    """The variant's directory, keyed by the data and by what its sections resolve to (presets
    expanded, defaults filled in), not by how they are spelled: `{preset: dmt}`, a suite's `{}`
    over the dmt base and `{preset: dmt, bias_features: all}` are one network, trained
    once per work directory by every suite and bench.peers_bench that lists it."""
    return os.path.join(os.path.abspath(work_dir), "ablations", "variants",
                        _key(data["key"], resolved_settings(custom)))


def variant_figures(data: Dict[str, str], custom: Dict[str, Any], work_dir: str, eval_files: List[str],
                    truth: Optional[pd.DataFrame], say=print) -> Dict[str, Any]:
    """The variant's figures: trained and evaluated once per data, section and settings. Reused
    while what they resolve to is unchanged (a preset edited since retrains), re-scored when
    evaluated by an older EVALUATION_VERSION (pipeline/ablate_scoring.py)."""
    if in_a_child():
        raise RuntimeError("variant_figures called in a variant's own child process: the calling script ran again "
                           "there (spawn imports the main module); put its work under `if __name__ == \"__main__\":`")
    out_dir = variant_dir(work_dir, data, custom)
    os.makedirs(out_dir, exist_ok=True)
    # One process at a time per variant (two suites, or a suite and bench.peers_bench, sharing
    # a work directory): the second waits, then reuses what the first wrote.
    with open(os.path.join(out_dir, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _variant_figures(data, custom, out_dir, eval_files, truth, say)


def _variant_figures(data, custom, out_dir, eval_files, truth, say) -> Dict[str, Any]:
    done, record = os.path.join(out_dir, "figures.json"), os.path.join(out_dir, "variant.json")
    expected = resolved_settings(custom)
    fusion = expected["model"]["fusion"]
    recorded = None
    if os.path.exists(done) and os.path.exists(record):
        with open(record) as f:
            recorded = json.load(f).get("resolved")
        recorded = _with_legacy_settings(recorded) if recorded is not None else None
    if recorded is not None and _without_fusion(recorded) == _without_fusion(expected):
        with open(done) as f:
            figures = json.load(f)
        if figures.get("evaluation_version") == ablate_scoring.EVALUATION_VERSION and recorded == expected:
            say(f"reused {out_dir}")
            return figures
        # trained; re-score only (an older evaluation, or another fusion: it is not trained)
        trained = figures.get("train_seconds")
        figures = in_child_process(ablate_scoring.evaluate_variant, out_dir, eval_files, truth, fusion)
        figures["train_seconds"] = trained
        say(f"re-evaluated {out_dir}")
    else:
        figures = in_child_process(train_and_evaluate, data, custom, out_dir, eval_files, truth, fusion)
        say(f"trained in {figures['train_seconds']:.0f} s, "
            + ", ".join(f"{t} AUC {v['auc']:.4f}" for t, v in figures["metrics"].items()))
    with open(record, "w") as f:
        json.dump({"custom": custom, "resolved": expected}, f, indent=2, sort_keys=True)
    with open(done, "w") as f:
        json.dump(figures, f, indent=2, sort_keys=True)
    return figures


def _mean_and_spread(runs: List[Any]):
    """Mean and sample standard deviation over seeds of every number the runs' figures hold
    at the same place (nested dicts); what only some runs hold is left out."""
    if all(isinstance(r, dict) for r in runs):
        keys = [k for k in runs[0] if all(k in r for r in runs[1:])]
        pairs = {k: _mean_and_spread([r[k] for r in runs]) for k in keys}
        pairs = {k: v for k, v in pairs.items() if v is not None}
        return {k: v[0] for k, v in pairs.items()}, {k: v[1] for k, v in pairs.items()}
    if all(isinstance(r, (int, float)) and not isinstance(r, bool) for r in runs):
        values = np.asarray(runs, dtype=float)
        return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return None


def seeded_rows(variant: str, section: Dict[str, Any], runs: List[Dict[str, Any]], seeds: List[int]) -> Dict[str, Any]:
    """A suite row of a variant trained once per seed: each figure's mean over the seeds, its
    standard deviation under `spread`, and every seed's own figures under `runs`."""
    mean, spread = _mean_and_spread([{k: v for k, v in r.items() if k != "evaluation_version"} for r in runs])
    mean["train_seconds"] = round(sum(r.get("train_seconds") or 0.0 for r in runs), 1)
    return {"variant": variant, "config": section, **mean, "spread": spread, "seeds": list(seeds), "runs": runs}


def planned_variants(name: str, suite: Dict[str, Any], config: Dict[str, Any], seeds: Optional[List[int]] = None):
    """Each variant's name, `model:` section and run configs (one per seed), every one checked by
    the model and trainer configs before any step runs: a mistyped setting fails the suite at
    once, not after the data steps and the trainings of the variants before it."""
    from models.preprocessing import check_transform_config

    try:
        check_transform_config(config["transform"])
    except ValueError as e:
        raise ValueError(f"`transform:` section: {e}") from None
    planned = []
    for variant, given in suite["variants"].items():
        section, customs = variant_section(suite, given), []
        for seed in seeds or [None]:
            trainer = config["trainer"] if seed is None else {**config["trainer"], "seed": seed}
            custom = {"transform": config["transform"], "model": section, "trainer": trainer}
            try:
                resolved = resolved_settings(custom)
            except (ValueError, TypeError) as e:
                raise ValueError(f"suite {name!r}, variant {variant!r}: {e}") from None
            if seed is not None and resolved["trainer"]["seed"] != seed:
                raise ValueError(f"suite {name!r}, variant {variant!r}: its model section fixes the trainer seed, "
                                 "so it cannot be trained once per seed")
            customs.append(custom)
        planned.append((variant, section, customs))
    return planned


def run_suite(name: str, logs_dir: str, work_dir: str, config: Dict[str, Any],
              beam_args: Optional[List[str]] = None, log=print, suites_file: Optional[str] = None,
              suites: Optional[Dict[str, Any]] = None, seeds: Optional[List[int]] = None) -> Dict[str, Any]:
    """Trains and evaluates every variant of suite `name` (of `suites`, else of the file
    `suites_file`, default pipeline/ablations.yaml); writes ablations/NAME.{json,md}.

    With several `seeds`, each variant trains once per seed (initial weights, dropout and the
    training order all follow it) and its row gives each figure's mean and standard deviation:
    one seed's difference between two variants can be run-to-run noise (README "Ablations")."""
    from pipeline import report

    suites = suites if suites is not None else load_suites(suites_file)
    if name not in suites:
        raise ValueError(f"unknown suite {name!r}; suites: {', '.join(suites)}")
    suite = suites[name]
    planned = planned_variants(name, suite, config, seeds)
    started = time.time()
    log(f"[ablate {name}] data steps (Ingest .. Transform; cached per logs and data config)")
    data = prepare_data(logs_dir, work_dir, config, beam_args)
    eval_files = sorted(glob.glob(os.path.join(data["examples"], f"Split-{F.EVAL_SPLIT}", "*")))
    truth = report.read_truth(logs_dir)
    rows, score_files = [], []
    for i, (variant, section, customs) in enumerate(planned, 1):
        runs = []
        for seed, custom in zip(seeds or [None], customs):
            progress = f"[ablate {name}] {i}/{len(planned)} {variant}" + ("" if seed is None else f" (seed {seed})")
            runs.append(variant_figures(data, custom, work_dir, eval_files, truth,
                                        lambda message, p=progress: log(f"{p}: {message}")))
        rows.append({"variant": variant, "config": section, **runs[0]} if seeds is None
                    else seeded_rows(variant, section, runs, seeds))
        if seeds is None:  # seeded rows compare means and deviations instead of paired tests
            score_files.append(os.path.join(variant_dir(work_dir, data, custom), ablate_paired.EVAL_SCORES_FILE))
    result = {"suite": name, "paper": suite.get("paper", ""), "logs": paths.absolute(logs_dir),
              "columns": list(suite.get("columns", [])), "rows": rows,
              "eval_days": config.get("ingest", {}).get("eval_days", 1), "seconds": round(time.time() - started, 1)}
    if seeds is None:  # each variant against the claim's baseline(s): the first variant unless named
        result["paired_against"] = ablate_paired.against_references(
            rows, score_files, suite.get("paired_against") or list(suite["variants"])[:1])
    if seeds is not None:
        result["seeds"] = list(seeds)
    out = os.path.join(work_dir, "ablations")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, f"{name}.json"), "w") as f:
        json.dump(result, f, indent=2, sort_keys=True)
    with open(os.path.join(out, f"{name}.md"), "w") as f:
        f.write(markdown(result))
    return result


# --- the table for people.

def _f(value, spread=None) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    return f"{value:.4f}" if spread is None or np.isnan(spread) else f"{value:.4f} ±{spread:.4f}"


def _spread(get, row: Dict[str, Any]) -> Optional[float]:
    """A seeded row's deviation of the figure `get` reads: `spread` has the figures' layout."""
    if "spread" not in row:
        return None
    try:
        return get({"variant": row["variant"], **row["spread"]})
    except (KeyError, AttributeError, TypeError):  # a figure some seeds lack: no deviation to show
        return None


def markdown(result: Dict[str, Any]) -> str:
    rows = result["rows"]
    tasks = [t for t in F.LABELS if any(t in r["metrics"] for r in rows)]
    columns = []  # (header, getter)
    for task in tasks:
        columns += [(f"{task} AUC", lambda r, t=task: r["metrics"].get(t, {}).get("auc")),
                    (f"{task} GAUC", lambda r, t=task: r["metrics"].get(t, {}).get("gauc"))]
    if "logged" in result["columns"]:
        columns += [(f"{t} AUC (training-time)", lambda r, t=t: r["metrics"].get(t, {}).get("logged_auc"))
                    for t in tasks]
    if "cvr" in result["columns"]:
        columns += [("CVR AUC (clicked)", lambda r: r["metrics"].get(F.ORDER, {}).get("cvr_auc"))]
    scenarios = sorted({s for r in rows for s in r["per_scenario"]})
    if "per_scenario" in result["columns"]:
        columns += [(f"{s} {t} GAUC", lambda r, s=s, t=t: r["per_scenario"].get(s, {}).get(t, {}).get("gauc"))
                    for s in scenarios for t in (F.CLICK, F.ORDER) if t in tasks]
    if any(r["ranking"] for r in rows):
        columns += [
            ("click eff. (truth)", lambda r: r["ranking"].get(F.CLICK, {}).get("click_efficiency")),
            ("click NDCG@10 (truth)", lambda r: r["ranking"].get(F.CLICK, {}).get("click_ndcg@10")),
            ("purchase NDCG@10 (order)", lambda r: r["ranking"].get(F.ORDER, {}).get("purchase_ndcg@10")),
            ("purchase NDCG@10 (score)", lambda r: r["ranking"].get("score", {}).get("purchase_ndcg@10"))]
    if "fusion" in result["columns"]:
        names = [ablate_scoring.fusion_name(kind, weights) for kind, weights in ablate_scoring.FUSION_GRID]
        columns += [(f"purchase NDCG@10 ({n})", lambda r, n=n: r.get("fusion", {}).get(n, {}).get("purchase_ndcg@10"))
                    for n in names]
    if "score" in result["columns"]:
        columns += [(f"{label} {figure} (score)",
                     lambda r, lb=label, fg=figure: r.get("score_ranking", {}).get(lb, {}).get(fg))
                    for label, figure in ((F.ORDER, "ndcg@10"), (F.ORDER, "mrr@4"), (F.CLICK, "mrr@4"))]
    lines = [f"# Ablation `{result['suite']}`", "", result.get("paper", ""), "",
             "| variant | " + " | ".join(h for h, _ in columns) + " | train s |",
             "|---|" + "---:|" * (len(columns) + 1)]
    for row in rows:
        lines.append(f"| {row['variant']} | " + " | ".join(_f(get(row), _spread(get, row)) for _, get in columns)
                     + f" | {row.get('train_seconds', '-')} |")
    if result.get("seeds"):
        lines += ["", f"Each figure: the mean ± the standard deviation over seeds {', '.join(map(str, result['seeds']))} "
                      "(one training per seed; train s: their sum)."]
    if len(result.get("seeds") or []) > 1:  # a spread over a few seeds is rough: the seeds' own figures
        lines += ["", "Per seed:", "", "| variant | seed | " + " | ".join(h for h, _ in columns) + " | train s |",
                  "|---|---:|" + "---:|" * (len(columns) + 1)]
        for row in rows:
            lines += [f"| {row['variant']} | {seed} | " + " | ".join(_f(get(run)) for _, get in columns)
                      + f" | {run.get('train_seconds', '-')} |" for seed, run in zip(row["seeds"], row["runs"])]
    split = "eval day" if result.get("eval_days", 1) == 1 else f"eval split, {result['eval_days']} UTC days"
    lines += ["", f"Logs: `{result['logs']}`. AUC/GAUC: the served network (no bias tower) on logged labels of the "
              f"{split}. Truth columns: click eff. = (expected AUC of the click output against position-free click "
              "labels - 0.5) / (that of the true probabilities - 0.5); NDCG@10 per request with the true "
              "position-free click / purchase probability as gain, ranking by the click output, the order output "
              "or the fused score." + (" order ndcg@10 / mrr@4, click mrr@4 (score): the fused score's NDCG@10 and "
              "MRR@4 per eval request on the logged orders / clicks (requests with one)."
              if "score" in result["columns"] else "")]
    return "\n".join(lines + ablate_paired.markdown(rows, result.get("paired_against", []), "cvr" in result["columns"])
                     + [""])
