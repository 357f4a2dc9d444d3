"""Kubeflow Pipelines V2 (and Vertex AI Pipelines): the pipeline compiled to a pipeline spec by
KubeflowV2DagRunner, every step in the image named by `orchestration.image`.

Offline: compiling contacts nothing (no credentials, no network). Needs the orchestration extra
(`make orchestration-deps`; kfp and kfp-pipeline-spec).
"""

import os
from typing import Any, Dict, Optional

from pipeline import orchestration

# Every step starts the image with this command and TFX's arguments (the executor class, the
# step's inputs and outputs, the Beam args).
STEP_COMMAND = ("python", "-m", "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor")


def compile_spec(config: Dict[str, Any], out: str) -> str:
    """Writes the pipeline to `out`: `.yaml`/`.yml` -> the KFP pipeline spec (with the configured
    pipeline root as its default), `.json` -> a PipelineJob for Vertex AI (the pipeline root is
    its output directory). Returns `out`."""
    orchestration.output_format("kubeflow", out)  # .yaml, .yml or .json, else CompileError
    section = orchestration.settings(config)
    from tfx import v1 as tfx
    from tfx import version
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner

    # KFP and Vertex AI record runs in the cluster's own ML Metadata: the `metadata:` section is
    # not read (nor, for MySQL, its password at compile time).
    kubeflow = section.get("kubeflow") or {}
    pipeline = orchestration.scheduled_pipeline(
        {**config, "metadata": None}, schema_path=kubeflow.get("schema_path"),
        drift_reference_uri=drift_reference_uri(config),
        vertex_training=vertex_training(config) if kubeflow.get("trainer") == "vertex" else None)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            display_name=section["pipeline_name"], default_image=section["image"],
            default_commands=list(STEP_COMMAND)))
    job = runner.run(pipeline, write_out=False)
    # A YAML file holds only the pipeline spec; its default root makes it runnable as it is.
    job["pipelineSpec"]["defaultPipelineRoot"] = section["pipeline_root"]
    directory = os.path.dirname(os.path.abspath(out))
    os.makedirs(directory, exist_ok=True)
    # TFX's own writer: the format follows the extension (YAML spec for .yaml/.yml, else JSON job).
    kubeflow_v2_dag_runner._write_pipeline_spec_to_file(  # pylint: disable=protected-access
        job, f"funnel's TFX pipeline (tfx-{version.__version__}).", out)
    return out


# Where the data gate keeps the last accepted statistics, under the pipeline root.
DRIFT_REFERENCE_DIR = "accepted_statistics"


def drift_reference_uri(config: Dict[str, Any]) -> Optional[str]:
    """The URI of the statistics the drift check compares with (None: `data_gate.drift` is off).
    TFX 1.16's KFP V2 compiler turns the local pipeline's Resolver of the last accepted
    statistics into a query by schema title (`tfx.ExampleStatistics`), which matches
    StatisticsGen's and Transform's statistics as well (an artifact type of its own compiles to
    `tfx.Artifact`, which matches every custom type): the compiled gate reads and replaces them
    at this known URI instead (pipeline/data_gate.py `drift_against`), one per pipeline name."""
    from pipeline import data_gate

    if not (config.get(data_gate.SECTION) or {}).get("drift"):
        return None
    section = orchestration.settings(config)
    return "/".join([section["pipeline_root"].rstrip("/"), section["pipeline_name"], DRIFT_REFERENCE_DIR])


def vertex_training(config: Dict[str, Any]) -> Dict[str, Any]:
    """The Trainers' custom_config keys of `tfx.extensions.google_cloud_ai_platform.Trainer` for
    `orchestration.kubeflow.vertex`: a Vertex AI CustomJob in its region whose worker pools run the
    pipeline's image (TFX sets their command: the Trainer's executor on each replica). Several
    replicas need a multi-worker `trainer.distribution` (Vertex sets TF_CONFIG on each)."""
    from tfx import v1 as tfx

    from models import distribution

    section = orchestration.settings(config)
    vertex = section["kubeflow"]["vertex"]
    pools = [{**pool, "replica_count": pool.get("replica_count", 1),
              "container_spec": {**pool.get("container_spec", {}), "image_uri": section["image"]}}
             for pool in vertex["worker_pool_specs"]]
    strategy = distribution.settings(config["trainer"])["strategy"]
    if sum(pool["replica_count"] for pool in pools) > 1 and strategy not in distribution.MULTI_WORKER:
        raise orchestration.CompileError(
            f"`orchestration.kubeflow.vertex.worker_pool_specs` has several replicas but "
            f"`trainer.distribution.strategy` is {strategy!r}: use one of {', '.join(distribution.MULTI_WORKER)}")
    extensions = tfx.extensions.google_cloud_ai_platform
    return {extensions.ENABLE_VERTEX_KEY: True, extensions.VERTEX_REGION_KEY: vertex["region"],
            extensions.TRAINING_ARGS_KEY: {"project": vertex["project"], "worker_pool_specs": pools}}


def recurring_run_arguments(config: Dict[str, Any], package_path: str, experiment_id: str,
                            job_name: str = "") -> Dict[str, Any]:
    """The arguments of `kfp.Client().create_recurring_run` for the configured schedule: the
    6-field cron of `orchestration.kubeflow.cron`, one run at a time, no catch-up."""
    section = orchestration.settings(config)
    cron = (section.get("kubeflow") or {}).get("cron")
    if not cron:
        raise orchestration.CompileError("`orchestration.kubeflow.cron` is not set")
    return dict(experiment_id=experiment_id, job_name=job_name or f"{section['pipeline_name']}-scheduled",
                cron_expression=cron, pipeline_package_path=package_path, max_concurrency=1,
                no_catchup=True, pipeline_root=section["pipeline_root"])


def create_recurring_run(client, config: Dict[str, Any], package_path: str, experiment_id: str,
                         job_name: str = ""):
    """Schedules a compiled `.yaml` spec on a KFP endpoint: `client` is a `kfp.Client(host=...)`."""
    return client.create_recurring_run(**recurring_run_arguments(config, package_path, experiment_id, job_name))
