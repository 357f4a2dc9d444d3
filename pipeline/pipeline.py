"""The funnel TFX pipeline, built by one function; runners are thin files around it.

Ingest -> StatisticsGen -> ImportSchemaGen -> ExampleValidator -> Transform -> Trainer
(the `model:` architecture, DMT by default) and BaselineTrainer (`baseline:`, DNN(Base)) -> Resolver (latest blessed model) -> Evaluator
-> Pusher (atomic versions under `serving_dir`).
"""

from typing import Any, Dict, List, Optional

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec

import schemas
from components.ingest.component import Ingest
from components.ingest.config import IngestConfig
from components.pusher import executor as atomic_pusher
from pipeline import metadata as metadata_lib
from models import distribution
from models import features as F
from models import preprocessing as P
from models.config import ModelConfig

PREPROCESSING_FN = "models.preprocessing.preprocessing_fn"
RUN_FN = "models.trainer.run_fn"
# Slices of the evaluation: overall, per scenario, per page (the position bucket).
SLICES = ([], [F.SCENARIO], [F.PAGE])


def eval_config(tasks: List[str], min_auc: float, max_auc_drop: Optional[float]) -> tfma.EvalConfig:
    """Per-task AUC, AUC-PR, calibration and counts; AUC gates the blessing: above
    `min_auc`, and at most `max_auc_drop` below the baseline (the last blessed model;
    the first model is rubber-stamped). `max_auc_drop=None` drops the comparison."""
    auc_threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": min_auc}))
    if max_auc_drop is not None:
        auc_threshold.change_threshold.CopyFrom(tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER, absolute={"value": -max_auc_drop}))
    metrics = [
        # Gate on the overall slice only: a small slice (a scenario, a page) may have no
        # positive of a rare task, and its AUC is then meaningless.
        tfma.MetricConfig(class_name="AUC", per_slice_thresholds=[
            tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=auc_threshold)]),
        tfma.MetricConfig(class_name="AUCPrecisionRecall"),
        tfma.MetricConfig(class_name="Calibration"),
        tfma.MetricConfig(class_name="MeanLabel"),
        tfma.MetricConfig(class_name="MeanPrediction"),
    ]
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name="serving_default", label_keys={t: t for t in tasks})],
        slicing_specs=[tfma.SlicingSpec(feature_keys=keys) for keys in SLICES],
        metrics_specs=[tfma.MetricsSpec(metrics=[tfma.MetricConfig(class_name="ExampleCount")])]
        + [tfma.MetricsSpec(output_names=[task], metrics=metrics) for task in tasks],
    )


def model_tasks(config: Dict[str, Any]) -> List[str]:
    """The trained model's tasks (its preset's unless the section sets them); checks the section."""
    return ModelConfig.from_dict(config["model"], P.transform_config(config)).tasks


def check_model_sections(config: Dict[str, Any]) -> None:
    """ValueError naming the section when `model:` or `baseline:` is not a valid architecture
    (before anything runs; the Trainers would fail only after ingest and Transform)."""
    if config.get("model") is None:
        raise ValueError("`model:` section: the pipeline needs one (a preset and any overrides)")
    for section in ("model", "baseline"):
        if section == "baseline" and config.get(section) is None:
            continue  # `baseline: null`: no baseline Trainer
        try:
            ModelConfig.from_dict(config[section], P.transform_config(config))
        except ValueError as e:
            raise ValueError(f"`{section}:` section: {e}") from None


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
) -> tfx.dsl.Pipeline:
    """The pipeline. `enable_cache`: steps whose inputs and settings are unchanged since an
    earlier run on the same metadata reuse its outputs (TFX caching; the Ingest step is keyed
    by the logs directory's path and its settings, a daily run's dates included, and by the
    contents only through `input_fingerprint` (components/ingest/runner.py) when given).
    `data_only`: the data steps only, up to Transform (what `funnel ablate` trains its
    variants on). ML Metadata: the `metadata:` section (pipeline/metadata.py); `metadata_path`
    is where the runner keeps a SQLite store when the section names no file.
    `vertex_training`: the Trainers submit their training to Vertex AI
    (`tfx.extensions.google_cloud_ai_platform.Trainer`, whose custom_config carries these keys:
    pipeline/kubeflow_runner.py's `vertex_training`) instead of training in their own step."""
    distribution.settings(config["trainer"])  # a bad `trainer.distribution` fails here, not after Transform
    ingest = Ingest(logs_dir=logs_dir, config=IngestConfig(**config["ingest"]), input_fingerprint=input_fingerprint)
    statistics = tfx.components.StatisticsGen(examples=ingest.outputs["examples"])
    schema = tfx.components.ImportSchemaGen(schema_file=schema_path or schemas.path("schema.pbtxt"))
    validator = tfx.components.ExampleValidator(
        statistics=statistics.outputs["statistics"], schema=schema.outputs["schema"])
    # `transform.statistics: false` skips the step's TFDV statistics of its input and output
    # (StatisticsGen and ExampleValidator still check the ingested examples); the rest of the
    # section is preprocessing_fn's
    transform_section = {k: v for k, v in config["transform"].items() if k != "statistics"}
    transform = tfx.components.Transform(
        examples=ingest.outputs["examples"], schema=schema.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN, custom_config={"transform": transform_section},
        disable_statistics=not config["transform"].get("statistics", True))
    data_steps = [ingest, statistics, schema, validator, transform]
    metadata = metadata_lib.connection_config(config.get("metadata"), metadata_path)
    if data_only:
        return tfx.dsl.Pipeline(pipeline_name=pipeline_name, pipeline_root=pipeline_root, components=data_steps,
                                metadata_connection_config=metadata, beam_pipeline_args=beam_pipeline_args,
                                enable_cache=enable_cache)

    # The last blessed model is the Evaluator's baseline only when the blessing compares
    # against it (`max_auc_drop` set): TFMA evaluates the baseline on the candidate's outputs,
    # so a first run of an architecture with other outputs (e.g. ESM²'s daction) needs
    # `max_auc_drop: null`. With `trainer.warm_start` it is also the Trainer's base model
    # (none on the first run: a cold start).
    compare = config["evaluator"]["max_auc_drop"] is not None
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
            examples=transform.outputs["transformed_examples"],
            transform_graph=transform.outputs["transform_graph"],
            schema=schema.outputs["schema"],
            base_model=base_model,
            custom_config={"transform": transform_section, "model": config[model_section],
                           "trainer": settings, **(vertex_training or {})})

    # The blessed model is the `model:` architecture's: the baseline (DNN(Base)) starts cold.
    dmt_trainer = trainer("model", latest_blessed.outputs["model"] if warm_start else None)
    # `baseline: null` (e.g. a daily schedule that needs no RelaImpr each day): no baseline Trainer
    baseline_trainers = ([trainer("baseline").with_id("BaselineTrainer")]
                         if config.get("baseline") is not None else [])
    evaluator = tfx.components.Evaluator(
        examples=ingest.outputs["examples"],
        model=dmt_trainer.outputs["model"],
        baseline_model=latest_blessed.outputs["model"] if compare else None,
        eval_config=eval_config(model_tasks(config), config["evaluator"]["min_auc"],
                                config["evaluator"]["max_auc_drop"]))
    pusher = tfx.components.Pusher(
        model=dmt_trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=serving_dir)),
        custom_executor_spec=executor_spec.ExecutorClassSpec(atomic_pusher.Executor))
    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=data_steps + [dmt_trainer] + baseline_trainers
        + ([latest_blessed] if latest_blessed is not None else []) + [evaluator, pusher],
        metadata_connection_config=metadata,
        beam_pipeline_args=beam_pipeline_args,
        enable_cache=enable_cache,
    )
