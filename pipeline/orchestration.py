"""Scheduled runs: the `orchestration:` section of the configuration, the pipeline it describes
(always `create_pipeline`'s), and `funnel compile`, which writes it for an orchestrator.

Runners (each a thin file around `create_pipeline`): `local_runner` (LocalDagRunner, `funnel run`),
`beam_runner` (BeamDagRunner), `kubeflow_runner` (KubeflowV2DagRunner: a KFP / Vertex AI pipeline
spec) and `airflow_runner` (AirflowDagRunner: a DAG module). Compiling needs no cloud credentials
and no network: the Trainer and Transform name their code by module path inside the image
(`models.trainer.run_fn`, `models.preprocessing.preprocessing_fn`), so TFX packages no user-module
wheel into the pipeline root.
"""

import os
from typing import Any, Dict, Optional, Tuple

from pipeline.config import check_keys

TARGETS = ("kubeflow", "airflow")
# Where the Kubeflow target's Trainers train: in their own pipeline step, or in a Vertex AI
# CustomJob the step submits and waits for (`orchestration.kubeflow.vertex`).
KUBEFLOW_TRAINERS = ("kubeflow", "vertex")
# KFP's recurring runs take a 6-field cron: second minute hour day-of-month month day-of-week.
KFP_CRON_FIELDS = 6


# The keys of the `orchestration:` section (pipeline/config.yaml describes each).
SECTION_KEYS = ("pipeline_name", "image", "pipeline_root", "logs_dir", "serving_dir", "enable_cache", "beam_args",
                "kubeflow", "airflow")
SUBSECTION_KEYS = {"kubeflow": ("schema_path", "cron", "trainer", "vertex"),
                   "airflow": ("schedule", "start_date", "catchup", "max_active_runs", "metadata_path")}
VERTEX_KEYS = ("project", "region", "worker_pool_specs")


class CompileError(ValueError):
    """A `funnel compile` request that cannot be honoured (bad path, bad section)."""


def settings(config: Dict[str, Any]) -> Dict[str, Any]:
    """The `orchestration:` section, checked: CompileError naming the key otherwise."""
    section = config.get("orchestration")
    if not isinstance(section, dict):
        raise CompileError("the configuration has no `orchestration:` section")
    try:
        check_keys(section, SECTION_KEYS, "orchestration")
        for name, known in SUBSECTION_KEYS.items():
            if isinstance(section.get(name), dict):
                check_keys(section[name], known, f"orchestration.{name}")
        vertex = (section.get("kubeflow") or {}).get("vertex")
        if isinstance(vertex, dict):
            check_keys(vertex, VERTEX_KEYS, "orchestration.kubeflow.vertex")
    except ValueError as e:
        raise CompileError(str(e)) from None
    for key in ("pipeline_name", "image", "pipeline_root", "logs_dir", "serving_dir"):
        if not isinstance(section.get(key), str) or not section[key]:
            raise CompileError(f"`orchestration.{key}` must be a non-empty string")
    beam_args = section.get("beam_args") or []
    if not isinstance(beam_args, list) or not all(isinstance(a, str) for a in beam_args):
        raise CompileError("`orchestration.beam_args` must be a list of strings")
    cron = (section.get("kubeflow") or {}).get("cron")
    if cron is not None and len(str(cron).split()) != KFP_CRON_FIELDS:
        raise CompileError(f"`orchestration.kubeflow.cron` must have {KFP_CRON_FIELDS} fields "
                           f"(second minute hour day-of-month month day-of-week), got {cron!r}")
    _check_kubeflow_trainer(section.get("kubeflow") or {})
    airflow = section.get("airflow") or {}
    for key in ("catchup",):
        if key in airflow and not isinstance(airflow[key], bool):
            raise CompileError(f"`orchestration.airflow.{key}` must be true or false")
    if "max_active_runs" in airflow and not (isinstance(airflow["max_active_runs"], int)
                                             and airflow["max_active_runs"] >= 1):
        raise CompileError("`orchestration.airflow.max_active_runs` must be an integer >= 1")
    return section


def _check_kubeflow_trainer(kubeflow: Dict[str, Any]) -> None:
    trainer = kubeflow.get("trainer", "kubeflow")
    if trainer not in KUBEFLOW_TRAINERS:
        raise CompileError(f"`orchestration.kubeflow.trainer`: unknown value {trainer!r}; "
                           f"one of: {', '.join(KUBEFLOW_TRAINERS)}")
    if trainer != "vertex":
        return
    vertex = kubeflow.get("vertex")
    if not isinstance(vertex, dict):
        raise CompileError("`orchestration.kubeflow.trainer: vertex` needs an `orchestration.kubeflow.vertex` section")
    for key in ("project", "region"):
        if not isinstance(vertex.get(key), str) or not vertex[key]:
            raise CompileError(f"`orchestration.kubeflow.vertex.{key}` must be a non-empty string")
    pools = vertex.get("worker_pool_specs")
    if not isinstance(pools, list) or not pools:
        raise CompileError("`orchestration.kubeflow.vertex.worker_pool_specs` must be a non-empty list")
    for i, pool in enumerate(pools):
        machine = pool.get("machine_spec") if isinstance(pool, dict) else None
        if not isinstance(machine, dict) or not machine.get("machine_type"):
            raise CompileError(f"`orchestration.kubeflow.vertex.worker_pool_specs[{i}].machine_spec.machine_type` "
                               "must be set")
        count = pool.get("replica_count", 1)
        if not (isinstance(count, int) and count >= 1):
            raise CompileError(f"`orchestration.kubeflow.vertex.worker_pool_specs[{i}].replica_count` "
                               "must be an integer >= 1")


def scheduled_pipeline(config: Dict[str, Any], schema_path: Optional[str] = None,
                       metadata_path: Optional[str] = None, vertex_training: Optional[Dict[str, Any]] = None,
                       drift_reference_uri: Optional[str] = None):
    """`create_pipeline` with the names, paths and Beam args of the `orchestration:` section
    (`vertex_training`, `drift_reference_uri`: see `create_pipeline`)."""
    from components.ingest.config import IngestConfig
    from pipeline.pipeline import check_model_sections, create_pipeline

    section = settings(config)
    check_model_sections(config)
    enable_cache = bool(section.get("enable_cache", False))
    if enable_cache and IngestConfig(**config["ingest"]).relative_end_date:
        # the Ingest's settings, and so its cache key, would be the same every day: every run
        # after the first would be answered with the first day's examples
        raise CompileError("`orchestration.enable_cache: true` cannot go with `ingest.end_date: yesterday` "
                           "(each day's Ingest would be answered from the first day's cache)")
    return create_pipeline(
        pipeline_name=section["pipeline_name"],
        pipeline_root=section["pipeline_root"],
        logs_dir=section["logs_dir"],
        serving_dir=section["serving_dir"],
        config=config,
        schema_path=schema_path,
        metadata_path=metadata_path,
        beam_pipeline_args=list(section.get("beam_args") or []),
        enable_cache=enable_cache,
        vertex_training=vertex_training,
        drift_reference_uri=drift_reference_uri,
    )


def output_format(target: str, out: str) -> str:
    """What `--out` asks for, from its extension: `yaml` or `json` (kubeflow), `py` (airflow)."""
    extension = os.path.splitext(out)[1].lower()
    if target == "kubeflow":
        if extension in (".yaml", ".yml"):
            return "yaml"
        if extension == ".json":
            return "json"
        raise CompileError(f"--out {out}: the Kubeflow format follows the extension: .yaml or .yml "
                           "(a KFP pipeline spec, what kfp.Client runs and schedules) or .json "
                           "(a PipelineJob for Vertex AI Pipelines)")
    if target == "airflow":
        if extension == ".py":
            return "py"
        raise CompileError(f"--out {out}: the Airflow DAG is a Python module: give a path ending in .py "
                           "(its configuration is written beside it, with .yaml)")
    raise CompileError(f"unknown target {target!r}; targets: {', '.join(TARGETS)}")


def compile_pipeline(target: str, out: str, config: Dict[str, Any]) -> Tuple[str, ...]:
    """Writes the pipeline for `target` to `out` (see `output_format`); returns the files written."""
    output_format(target, out)  # before anything heavy is imported
    settings(config)
    if target == "kubeflow":
        from pipeline import kubeflow_runner

        return (kubeflow_runner.compile_spec(config, out),)
    from pipeline import airflow_runner

    return airflow_runner.write_dag_module(config, out)
