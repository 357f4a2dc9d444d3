"""The funnel TFX pipeline, built by one function; runners are thin files around it.

Ingest -> StatisticsGen -> ImportSchemaGen -> ExampleValidator (and the drift and skew
DistributionValidators) -> DataGate (pipeline/data_gate.py) -> Transform -> Trainer
(the `model:` architecture, DMT by default) and BaselineTrainer (`baseline:`, DNN(Base)) -> Resolver (latest blessed model) -> Evaluator
-> Pusher (atomic versions under `serving_dir`).
"""

import json
from typing import Any, Dict, List, Optional

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec
from tfx.utils import io_utils

import schemas
from components import schema_import
from components.ingest.component import Ingest
from components.ingest.config import IngestConfig
from components.pusher import executor as atomic_pusher
from pipeline import code_version, data_gate, evaluator_metrics
from pipeline import metadata as metadata_lib
from pipeline.config import check_keys
from models import distribution
from models import features as F
from models import preprocessing as P
from models.config import ModelConfig
from models.trainer import check_trainer_settings, trainer_config
from models.validation import is_integer

PREPROCESSING_FN = "models.preprocessing.preprocessing_fn"
CODE_KEY = "code_fingerprint"  # in the Transform's and Trainers' custom_config with the cache
RUN_FN = "models.trainer.run_fn"
# Slices of the evaluation: overall, per scenario, per page (the position bucket).
SLICES = ([], [F.SCENARIO], [F.PAGE])


# Every task output's metrics (TFMA metric class names), per slice. BinaryCrossEntropy is the
# log loss; Calibration is mean prediction / mean label.
TASK_METRICS = ("AUC", "AUCPrecisionRecall", "Calibration", "BinaryCrossEntropy", "MeanLabel", "MeanPrediction")
# TFMA's query (ranking) metrics, on each request's examples grouped by request_id: NDCG with the
# task's own label as gain and the best rank of a positive. TFMA groups by
# request before slicing, so in a page slice a request that spans pages counts in each of them.
QUERY_METRICS = ("NDCG", "MinLabelPosition")  # and the requests' sizes, once (no thresholds)
# Over each user's examples (query key user_id): GAUC (pipeline/evaluator_metrics.py).
USER_METRICS = ("GroupAUC",)
# A threshold's bounds: `min`/`max` on the value; `max_drop` (higher is better) or `max_rise`
# (lower is better) on the change against the last blessed model.
THRESHOLD_KEYS = ("min", "max", "max_drop", "max_rise")
ALL_TASKS = "*"


# The keys of the `evaluator:` section (pipeline/config.yaml describes each).
EVALUATOR_KEYS = ("min_auc", "max_auc_drop", "ndcg_top_k", "thresholds")


def blessing_thresholds(evaluator: Dict[str, Any], tasks: List[str]) -> Dict[str, Dict[str, Dict[str, float]]]:
    """task -> metric -> bounds the blessing requires, from the `evaluator:` section: `min_auc` and
    `max_auc_drop` (every task's AUC) and `thresholds` (TASK or "*" -> METRIC -> bounds, METRIC a
    name of TASK_METRICS or QUERY_METRICS). ValueError naming an unknown task, metric or bound."""
    found = {task: {} for task in tasks}

    def add(task, metric, bounds):
        if metric not in TASK_METRICS + QUERY_METRICS + USER_METRICS:
            raise ValueError(f"evaluator.thresholds.{task}: unknown metric {metric!r} "
                             f"(one of {', '.join(TASK_METRICS + QUERY_METRICS + USER_METRICS)})")
        if not isinstance(bounds, dict) or set(bounds) - set(THRESHOLD_KEYS):
            raise ValueError(f"evaluator.thresholds.{task}.{metric}: a mapping with keys among "
                             f"{', '.join(THRESHOLD_KEYS)}, got {bounds!r}")
        if "max_drop" in bounds and "max_rise" in bounds:
            raise ValueError(f"evaluator.thresholds.{task}.{metric}: max_drop or max_rise, not both")
        for name in [task] if task != ALL_TASKS else tasks:
            found[name].setdefault(metric, {}).update({k: float(v) for k, v in bounds.items() if v is not None})

    add(ALL_TASKS, "AUC", {"min": evaluator.get("min_auc"), "max_drop": evaluator.get("max_auc_drop")})
    for task, by_metric in (evaluator.get("thresholds") or {}).items():
        if task != ALL_TASKS and task not in tasks:
            raise ValueError(f"evaluator.thresholds: {task!r} is not a task of the model ({', '.join(tasks)})")
        for metric, bounds in (by_metric or {}).items():
            add(task, metric, bounds)
    return {task: {m: b for m, b in metrics.items() if b} for task, metrics in found.items()}


def compares_with_baseline(evaluator: Dict[str, Any], tasks: List[str]) -> bool:
    """Whether a blessing threshold compares with the last blessed model."""
    return any("max_drop" in b or "max_rise" in b
               for metrics in blessing_thresholds(evaluator, tasks).values() for b in metrics.values())


def _threshold(bounds: Dict[str, float]) -> tfma.MetricThreshold:
    threshold = tfma.MetricThreshold()
    value = {k: {"value": bounds[b]} for k, b in (("lower_bound", "min"), ("upper_bound", "max")) if b in bounds}
    if value:
        threshold.value_threshold.CopyFrom(tfma.GenericValueThreshold(**value))
    if "max_drop" in bounds:
        threshold.change_threshold.CopyFrom(tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER, absolute={"value": -bounds["max_drop"]}))
    if "max_rise" in bounds:
        threshold.change_threshold.CopyFrom(tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.LOWER_IS_BETTER, absolute={"value": bounds["max_rise"]}))
    return threshold


def _metric(class_name: str, bounds: Optional[Dict[str, float]], config: Optional[dict] = None) -> tfma.MetricConfig:
    metric = tfma.MetricConfig(class_name=class_name, config=json.dumps(config) if config else "")
    if bounds:
        # Gate on the overall slice only: a small slice (a scenario, a page) may have no
        # positive of a rare task, and its figures are then meaningless.
        metric.per_slice_thresholds.append(
            tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=_threshold(bounds)))
    return metric


def eval_config(tasks: List[str], evaluator: Dict[str, Any]) -> tfma.EvalConfig:
    """Per task output: TASK_METRICS, QUERY_METRICS over each request (NDCG@k for
    `evaluator.ndcg_top_k`) and GAUC over each user; overall, per scenario and per page. The blessing requires every bound of
    blessing_thresholds; change bounds compare with the baseline (the last blessed model; the first
    model is rubber-stamped)."""
    thresholds = blessing_thresholds(evaluator, tasks)
    specs = [tfma.MetricsSpec(metrics=[tfma.MetricConfig(class_name="ExampleCount")])]
    for task in tasks:
        bounds = thresholds[task]
        specs.append(tfma.MetricsSpec(output_names=[task], metrics=[
            _metric(name, bounds.get(name)) for name in TASK_METRICS]))
        # NDCG's k as the spec's top-k sub-keys: TFMA finds a threshold's metric by them
        specs.append(tfma.MetricsSpec(
            output_names=[task], query_key=F.REQUEST_ID, binarize=tfma.BinarizationOptions(
                top_k_list={"values": list(evaluator["ndcg_top_k"])}),
            metrics=[_metric("NDCG", bounds.get("NDCG"), {"gain_key": task})]))
        specs.append(tfma.MetricsSpec(output_names=[task], query_key=F.REQUEST_ID, metrics=[
            _metric("MinLabelPosition", bounds.get("MinLabelPosition"), {"label_key": task})]))
        group_auc = _metric("GroupAUC", bounds.get("GroupAUC"))
        group_auc.module = evaluator_metrics.__name__
        specs.append(tfma.MetricsSpec(output_names=[task], query_key=F.USER_ID, metrics=[group_auc]))
    # The requests' sizes (TFMA's QueryStatistics for a multi-output model), once
    specs.append(tfma.MetricsSpec(output_names=tasks[:1], query_key=F.REQUEST_ID, metrics=[
        tfma.MetricConfig(class_name="RequestStatistics", module=evaluator_metrics.__name__)]))
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name="serving_default", label_keys={t: t for t in tasks})],
        slicing_specs=[tfma.SlicingSpec(feature_keys=keys) for keys in SLICES],
        metrics_specs=specs,
    )


def model_tasks(config: Dict[str, Any]) -> List[str]:
    """The trained model's tasks (its preset's unless the section sets them); checks the section."""
    return ModelConfig.from_dict(config["model"], P.transform_config(config)).tasks


def check_model_sections(config: Dict[str, Any]) -> None:
    """ValueError naming the section when `model:` or `baseline:` is not a valid architecture,
    `transform:` or `trainer:` has an unknown key or a bad value, or `evaluator:` names a task,
    metric or bound it has not (before anything runs; Transform, the Trainers and the Evaluator
    would fail only after the ingest, and a misspelt key would silently keep its default)."""
    if config.get("model") is None:
        raise ValueError("`model:` section: the pipeline needs one (a preset and any overrides)")
    try:
        P.check_transform_config(config.get("transform"))
    except ValueError as e:
        raise ValueError(f"`transform:` section: {e}") from None
    for section in ("model", "baseline"):
        if section == "baseline" and config.get(section) is None:
            continue  # `baseline: null`: no baseline Trainer
        try:
            model = ModelConfig.from_dict(config[section], P.transform_config(config))
        except ValueError as e:
            raise ValueError(f"`{section}:` section: {e}") from None
        try:  # the Trainer's settings: the `trainer:` section under the architecture's own
            check_trainer_settings(trainer_config({"trainer": config.get("trainer") or {}}, model))
        except ValueError as e:
            where = f"`trainer:` section (or `{section}: {{trainer: ...}}`)" if model.trainer else "`trainer:` section"
            raise ValueError(f"{where}: {e}") from None
    check_keys(config["evaluator"], EVALUATOR_KEYS, "evaluator")
    try:
        top_k = config["evaluator"].get("ndcg_top_k")
        if not (isinstance(top_k, list) and top_k and all(is_integer(k) and k >= 1 for k in top_k)):
            raise ValueError(f"ndcg_top_k must be a non-empty list of integers >= 1, got {top_k!r}")
        blessing_thresholds(config["evaluator"], model_tasks(config))
    except ValueError as e:
        raise ValueError(f"`evaluator:` section: {e}") from None
    check_data_gate(config)
    metadata_lib.check(config.get("metadata"), environment=False)  # its password: where the run runs


def check_data_gate(config: Dict[str, Any]) -> None:
    """ValueError naming the `data_gate:` section's bad key (pipeline/data_gate.py's check; the
    features are those of the shipped schema, which a compiled pipeline's image carries too)."""
    try:
        data_gate.check(config.get(data_gate.SECTION), io_utils.SchemaReader().read(schemas.path("schema.pbtxt")))
    except ValueError as e:
        raise ValueError(f"`{data_gate.SECTION}:` section: {e}") from None


def _transform_section(config: Dict[str, Any]) -> Dict[str, Any]:
    """preprocessing_fn's settings: the `transform:` section but its `statistics` switch."""
    return {k: v for k, v in config["transform"].items() if k != "statistics"}


def create_pipeline(
    pipeline_name: str,
    pipeline_root: str,
    logs_dir: str,
    serving_dir: str,
    config: Dict[str, Any],
    schema_path: Optional[str] = None,
    metadata_path: Optional[str] = None,
    beam_pipeline_args: Optional[List[str]] = None,
    enable_cache: bool = False,
    data_only: bool = False,
    vertex_training: Optional[Dict[str, Any]] = None,
    input_fingerprint: Optional[str] = None,
    drift_reference_uri: Optional[str] = None,
) -> tfx.dsl.Pipeline:
    """The pipeline. `enable_cache`: steps whose inputs and settings are unchanged since an
    earlier run on the same metadata reuse its outputs (TFX caching; the Ingest step is keyed
    by the logs directory's path and its settings, a daily run's dates included, and by the
    contents only through `input_fingerprint` (components/ingest/runner.py) when given; the
    Ingest, Transform and Trainers also by a fingerprint of the funnel code they run,
    pipeline/code_version.py, so an edited step runs again, and ImportSchemaGen by the schema
    file's content, components/schema_import.py).
    `data_only`: the data steps only, up to Transform (what `funnel ablate` trains its
    variants on). ML Metadata: the `metadata:` section (pipeline/metadata.py); `metadata_path`
    is where the runner keeps a SQLite store when the section names no file.
    `vertex_training`: the Trainers submit their training to Vertex AI
    (`tfx.extensions.google_cloud_ai_platform.Trainer`, whose custom_config carries these keys:
    pipeline/kubeflow_runner.py's `vertex_training`) instead of training in their own step.
    `drift_reference_uri`: the data gate's drift check compares with the statistics accepted at
    this URI (and the gate replaces them when it passes) instead of resolving them from ML
    Metadata, which Kubeflow Pipelines V2 cannot (pipeline/data_gate.py `drift_against`)."""
    distribution.settings(config["trainer"])  # a bad `trainer.distribution` fails here, not after Transform
    # Without the cache the properties, and so the compiled specs, stay free of code fingerprints.
    code = code_version.source_fingerprint if enable_cache else (lambda *modules: None)
    ingest = Ingest(logs_dir=logs_dir, config=IngestConfig(**config["ingest"]), input_fingerprint=input_fingerprint,
                    code_fingerprint=code(code_version.INGEST_CODE))
    statistics = tfx.components.StatisticsGen(examples=ingest.outputs["examples"])
    schema_file = schema_path or schemas.path("schema.pbtxt")
    # with the cache, keyed by the schema's content too: an edited schema is imported again
    schema = schema_import.ImportSchemaGen(
        schema_file, content_fingerprint=schema_import.content_fingerprint(schema_file) if enable_cache else None)
    validator = tfx.components.ExampleValidator(
        statistics=statistics.outputs["statistics"], schema=schema.outputs["schema"])
    # `transform.statistics: false` skips the step's TFDV statistics of its input and output
    # (StatisticsGen and ExampleValidator still check the ingested examples); the rest of the
    # section is preprocessing_fn's
    transform_section = _transform_section(config)
    transform = tfx.components.Transform(
        examples=ingest.outputs["examples"], schema=schema.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN, custom_config=with_code({"transform": transform_section},
                                                                  code(code_version.TRANSFORM_CODE)),
        disable_statistics=not config["transform"].get("statistics", True))
    data_steps = [ingest, statistics, schema, validator, transform]
    metadata = metadata_lib.connection_config(config.get("metadata"), metadata_path)
    if data_only:
        return tfx.dsl.Pipeline(pipeline_name=pipeline_name, pipeline_root=pipeline_root, components=data_steps,
                                metadata_connection_config=metadata, beam_pipeline_args=beam_pipeline_args,
                                enable_cache=enable_cache)

    # The data gate (pipeline/data_gate.py): Transform waits for it, so a run whose data broke the
    # schema, drifted or is skewed stops before Transform and training. Not in `data_only`
    # pipelines: an ablation compares variants on the same examples.
    gate_steps = data_gate.steps(config.get(data_gate.SECTION), statistics, validator, drift_reference_uri)
    transform.add_upstream_node(gate_steps[-1])
    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=data_steps + gate_steps + model_steps(
            config, ingest.outputs["examples"], transform.outputs["transformed_examples"],
            transform.outputs["transform_graph"], schema.outputs["schema"], serving_dir, vertex_training,
            code(code_version.TRAINER_CODE)),
        metadata_connection_config=metadata,
        beam_pipeline_args=beam_pipeline_args,
        enable_cache=enable_cache,
    )


def with_code(custom_config: Dict[str, Any], fingerprint: Optional[str]) -> Dict[str, Any]:
    """`custom_config` with the step's code fingerprint under CODE_KEY (a cache key part, read by
    nothing), or unchanged without one."""
    return custom_config if fingerprint is None else {**custom_config, CODE_KEY: fingerprint}


def model_steps(config: Dict[str, Any], examples, transformed_examples, transform_graph, schema, serving_dir: str,
                vertex_training: Optional[Dict[str, Any]] = None, code_fingerprint: Optional[str] = None) -> list:
    """The model gate's steps: the Trainers (on the channels `transformed_examples`,
    `transform_graph` and `schema`), the Resolver of the last blessed model, the Evaluator (on
    `examples`, the ingested examples' eval split) and the Pusher (into `serving_dir`, only a
    blessed model). `code_fingerprint`: the Trainers' code's, for the cache (see `with_code`)."""
    # The last blessed model is the Evaluator's baseline only when the blessing compares
    # against it (`max_auc_drop` or a change bound set): TFMA evaluates the baseline on the
    # candidate's outputs, so a first run of an architecture with other outputs (e.g. ESM²'s
    # daction) needs `max_auc_drop: null` and no change bounds. With `trainer.warm_start` it is also the Trainer's base model
    # (none on the first run: a cold start).
    transform_section = _transform_section(config)
    tasks = model_tasks(config)
    compare = compares_with_baseline(config["evaluator"], tasks)
    warm_start = bool(config["trainer"].get("warm_start"))
    latest_blessed = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver") if compare or warm_start else None

    def trainer(model_section: str, base_model=None) -> tfx.components.Trainer:
        # `warm_start` only in the properties of a warm-started Trainer: a cold start's cache
        # key and compiled spec stay as they were.
        settings = {k: v for k, v in config["trainer"].items() if k != "warm_start"}
        if base_model is not None:
            settings["warm_start"] = True
        component = (tfx.components.Trainer if vertex_training is None
                     else tfx.extensions.google_cloud_ai_platform.Trainer)
        return component(
            run_fn=RUN_FN,
            examples=transformed_examples,
            transform_graph=transform_graph,
            schema=schema,
            base_model=base_model,
            custom_config=with_code({"transform": transform_section, "model": config[model_section],
                                     "trainer": settings, **(vertex_training or {})}, code_fingerprint))

    # The blessed model is the `model:` architecture's: the baseline (DNN(Base)) starts cold.
    dmt_trainer = trainer("model", latest_blessed.outputs["model"] if warm_start else None)
    # `baseline: null` (e.g. a daily schedule that needs no RelaImpr each day): no baseline Trainer
    baseline_trainers = ([trainer("baseline").with_id("BaselineTrainer")]
                         if config.get("baseline") is not None else [])
    evaluator = tfx.components.Evaluator(
        examples=examples,
        model=dmt_trainer.outputs["model"],
        baseline_model=latest_blessed.outputs["model"] if compare else None,
        eval_config=eval_config(tasks, config["evaluator"]))
    pusher = tfx.components.Pusher(
        model=dmt_trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=serving_dir)),
        custom_executor_spec=executor_spec.ExecutorClassSpec(atomic_pusher.Executor))
    return [dmt_trainer] + baseline_trainers + ([latest_blessed] if latest_blessed is not None else []) + [
        evaluator, pusher]
