"""Kubeflow Pipelines V2: the spec compiled offline from create_pipeline and the `orchestration:`
section (tests/pipeline/conftest.py's SCHEDULED), against a committed golden file.

The golden file, tests/pipeline/golden/kubeflow_pipeline.yaml, is the compiled YAML spec
normalised by `normalise` (comments and the SDK version dropped, keys sorted, temporary paths
replaced). After an intended change of the pipeline, regenerate it and review its diff:

    FUNNEL_UPDATE_GOLDEN=1 TF_USE_LEGACY_KERAS=1 .venv/bin/python -m pytest -q tests/pipeline/test_kubeflow_runner.py
"""

import copy
import importlib
import json
import os

import pytest
import yaml

from components.ingest.executor import WINDOW_FIELDS
from pipeline import data_gate, kubeflow_runner
from pipeline.config import load_config
from pipeline.orchestration import CompileError, scheduled_pipeline
from pipeline.pipeline import PREPROCESSING_FN, RUN_FN
from tests.pipeline.conftest import SCHEDULED
from tests.test_secrets import assert_no_secrets, plant_credentials

GOLDEN = os.path.join(os.path.dirname(__file__), "golden", "kubeflow_pipeline.yaml")
GOLDEN_HEADER = ("# Normalised KFP pipeline spec of tests/pipeline/conftest.py's SCHEDULED configuration.\n"
                 "# Regenerate: FUNNEL_UPDATE_GOLDEN=1 pytest tests/pipeline/test_kubeflow_runner.py\n")
# Fields that change with the environment, not with the pipeline.
VOLATILE = ("sdkVersion",)


def normalise(spec: dict, tmp_dir: str) -> str:
    """The spec without volatile fields, temporary paths replaced by <TMP>, as sorted YAML."""
    spec = copy.deepcopy(spec)
    for key in VOLATILE:
        spec.pop(key, None)
    spec = json.loads(json.dumps(spec).replace(tmp_dir, "<TMP>"))
    return yaml.safe_dump(spec, sort_keys=True, width=100)


def _compile(config_file, tmp_path, name="pipeline.yaml"):
    out = str(tmp_path / name)
    assert kubeflow_runner.compile_spec(load_config(config_file), out) == out
    with open(out) as f:
        return out, f.read()


def _parameter(task, name):
    value = task["inputs"]["parameters"][name]["runtimeValue"]["constantValue"]
    return next(iter(value.values()))


def test_the_spec_matches_the_golden_file(scheduled_config_file, tmp_path, monkeypatch):
    planted = plant_credentials(monkeypatch, tmp_path)  # nothing of the compiling environment gets in
    _, text = _compile(scheduled_config_file, tmp_path)
    assert_no_secrets(text, planted, "the compiled Kubeflow spec")
    assert text.startswith("# PIPELINE DEFINITION\n# Name: funnel-daily\n")
    compiled = normalise(yaml.safe_load(text), str(tmp_path))
    if os.environ.get("FUNNEL_UPDATE_GOLDEN"):
        with open(GOLDEN, "w") as f:
            f.write(GOLDEN_HEADER + compiled)
    with open(GOLDEN) as f:
        golden = f.read()
    assert golden.startswith(GOLDEN_HEADER)
    assert compiled == golden[len(GOLDEN_HEADER):], "the compiled spec differs from the golden file (see docstring)"


def test_every_component_runs_in_the_configured_image_with_its_arguments(scheduled_config_file, tmp_path):
    config = load_config(scheduled_config_file)
    section = config["orchestration"]
    _, text = _compile(scheduled_config_file, tmp_path)
    spec = yaml.safe_load(text)
    assert spec["defaultPipelineRoot"] == "gs://funnel-test/tfx"
    assert spec["pipelineInfo"]["name"] == "funnel-daily"
    tasks = spec["root"]["dag"]["tasks"]
    executors = spec["deploymentSpec"]["executors"]
    ids = [c.id for c in scheduled_pipeline(config, drift_reference_uri=kubeflow_runner.drift_reference_uri(config)).components]
    assert {"Ingest", "Transform", "Trainer", "BaselineTrainer", "Evaluator", "Pusher"} <= set(ids)
    for node in ids:
        if node == "latest_blessed_model_resolver":  # a resolver: two KFP tasks, no container
            assert {node + "-model-blessing-resolver", node + "-model-resolver"} <= set(tasks)
            continue
        container = executors[spec["components"][tasks[node]["componentRef"]["name"]]["executorLabel"]]["container"]
        assert container["image"] == "registry.example.com/ranking/funnel:1.2.3", node
        assert container["command"] == list(kubeflow_runner.STEP_COMMAND), node
        args = container["args"]
        assert args[-len(section["beam_args"]):] == section["beam_args"], node
        # The image runs the executor class by import path: it must exist in the package / TFX.
        module, _, name = args[args.index("--executor_class_path") + 1].rpartition(".")
        assert callable(getattr(importlib.import_module(module), name)), node
    assert set(tasks) == {i for i in ids if i != "latest_blessed_model_resolver"} | {
        "latest_blessed_model_resolver-model-blessing-resolver", "latest_blessed_model_resolver-model-resolver"}
    # The step arguments come from the configuration.
    assert _parameter(tasks["Ingest"], "logs_dir") == "gs://funnel-test/logs"
    # (a daily run's window settings only when it is one: none in this configuration)
    cold = {k: v for k, v in config["ingest"].items() if k not in WINDOW_FIELDS}
    assert json.loads(_parameter(tasks["Ingest"], "config_json")) == cold | {"click_window_seconds": 1800}
    assert _parameter(tasks["ImportSchemaGen"], "schema_file") == "/opt/funnel/schemas/schema.pbtxt"
    assert "gs://funnel-test/serving" in _parameter(tasks["Pusher"], "push_destination")
    assert json.loads(_parameter(tasks["Trainer"], "custom_config"))["trainer"]["epochs"] == 2
    # Trainer and Transform name their code by module path in the image: no user-module wheel.
    assert _parameter(tasks["Trainer"], "run_fn") == RUN_FN == "models.trainer.run_fn"
    assert _parameter(tasks["Transform"], "preprocessing_fn") == PREPROCESSING_FN
    assert "module_file" not in text and "module_path" not in text and ".whl" not in text
    for path in (RUN_FN, PREPROCESSING_FN):
        module, _, name = path.rpartition(".")
        assert callable(getattr(importlib.import_module(module), name))


def test_the_gate_checks_the_drift_itself_against_a_known_uri(scheduled_config_file, tmp_path):
    """KFP V2 compiles a Resolver into a query by artifact type only, which would pick any step's
    statistics (kubeflow_runner.drift_reference_uri): the spec has no drift step or resolver;
    DataGate compares with, and replaces, the statistics accepted under the pipeline root
    (tests/pipeline/test_gates.py runs that executor)."""
    config = load_config(scheduled_config_file)
    _, text = _compile(scheduled_config_file, tmp_path)
    tasks = yaml.safe_load(text)["root"]["dag"]["tasks"]
    assert data_gate.DRIFT_ID not in tasks and data_gate.PREVIOUS_RESOLVER_ID not in tasks
    assert 'schema_title="tfx.ExampleStatistics"' not in text
    gate = tasks[data_gate.GATE_ID]
    assert set(gate["inputs"]["artifacts"]) == {"schema", "skew", "statistics"} and data_gate.SKEW_ID in tasks
    assert _parameter(gate, "drift_reference_uri") == "gs://funnel-test/tfx/funnel-daily/accepted_statistics"
    assert json.loads(_parameter(gate, "drift_comparators")) == config[data_gate.SECTION]["drift"]
    off = tmp_path / "drift-off.yaml"
    off.write_text(open(scheduled_config_file).read() + "data_gate: {drift: null}\n")
    assert kubeflow_runner.drift_reference_uri(load_config(str(off))) is None
    _, without = _compile(str(off), tmp_path, "drift-off.yaml")
    assert "drift_reference_uri" not in yaml.safe_load(without)["root"]["dag"]["tasks"][data_gate.GATE_ID]["inputs"].get(
        "parameters", {})


def test_json_is_a_vertex_pipeline_job_holding_the_same_spec(scheduled_config_file, tmp_path):
    _, text = _compile(scheduled_config_file, tmp_path)
    out, job = _compile(scheduled_config_file, tmp_path, "pipeline.json")
    assert_no_secrets(job, {}, "the compiled Vertex PipelineJob")
    job = json.loads(job)
    assert job["displayName"] == "funnel-daily"
    assert job["runtimeConfig"]["gcsOutputDirectory"] == "gs://funnel-test/tfx"
    assert normalise(job["pipelineSpec"], str(tmp_path)) == normalise(yaml.safe_load(text), str(tmp_path))


def test_the_recurring_run_uses_the_configured_6_field_cron(scheduled_config_file):
    class Client:  # records the call a kfp.Client would send
        def create_recurring_run(self, **kwargs):
            self.kwargs = kwargs
            return "scheduled"

    client = Client()
    config = load_config(scheduled_config_file)
    assert kubeflow_runner.create_recurring_run(client, config, "funnel.yaml", "exp-1") == "scheduled"
    assert client.kwargs == dict(
        experiment_id="exp-1", job_name="funnel-daily-scheduled", cron_expression="0 30 2 * * *",
        pipeline_package_path="funnel.yaml", max_concurrency=1, no_catchup=True, pipeline_root="gs://funnel-test/tfx")
    import inspect

    import kfp

    assert set(client.kwargs) <= set(inspect.signature(kfp.Client.create_recurring_run).parameters)


# `orchestration.kubeflow` keys that move the Trainers' training to a Vertex AI CustomJob.
VERTEX = {"trainer": "vertex", "vertex": {
    "project": "funnel-test", "region": "europe-west4", "worker_pool_specs": [
        {"machine_spec": {"machine_type": "n1-highmem-8", "accelerator_type": "NVIDIA_TESLA_T4",
                          "accelerator_count": 1}, "replica_count": 1},
        {"machine_spec": {"machine_type": "n1-highmem-8"}, "replica_count": 2}]}}


def _vertex_config(tmp_path, distribution=None):
    """SCHEDULED with VERTEX (and `trainer.distribution`), through load_config as a --config file."""
    override = yaml.safe_load(SCHEDULED)
    override["orchestration"]["kubeflow"].update(copy.deepcopy(VERTEX))
    if distribution:
        override["trainer"]["distribution"] = distribution
    path = tmp_path / "vertex_config.yaml"
    path.write_text(yaml.safe_dump(override))
    return load_config(str(path))


def test_the_vertex_trainer_submits_the_configured_custom_job(scheduled_config_file, tmp_path):
    """`orchestration.kubeflow.trainer: vertex`: both Trainers run TFX's Vertex AI training
    executor with the configured CustomJob (the pipeline's image in every pool); every other
    step is the default spec's."""
    default = yaml.safe_load(_compile(scheduled_config_file, tmp_path, "default.yaml")[1])
    out = str(tmp_path / "vertex.yaml")
    kubeflow_runner.compile_spec(_vertex_config(tmp_path, {"strategy": "multi_worker_mirrored"}), out)
    with open(out) as f:
        spec = yaml.safe_load(f)
    executors, tasks = spec["deploymentSpec"]["executors"], spec["root"]["dag"]["tasks"]
    for trainer in ("Trainer", "BaselineTrainer"):
        args = executors[f"{trainer}_executor"]["container"]["args"]
        assert args[args.index("--executor_class_path") + 1] == (
            "tfx.extensions.google_cloud_ai_platform.trainer.executor.GenericExecutor")
        custom = json.loads(_parameter(tasks[trainer], "custom_config"))
        assert custom["ai_platform_enable_vertex"] is True
        assert custom["ai_platform_vertex_region"] == "europe-west4"
        job = custom["ai_platform_training_args"]
        assert job["project"] == "funnel-test"
        assert [(p["machine_spec"]["machine_type"], p["replica_count"], p["container_spec"]["image_uri"])
                for p in job["worker_pool_specs"]] == [
            ("n1-highmem-8", 1, "registry.example.com/ranking/funnel:1.2.3"),
            ("n1-highmem-8", 2, "registry.example.com/ranking/funnel:1.2.3")]
        assert job["worker_pool_specs"][0]["machine_spec"]["accelerator_count"] == 1
        # (a cold start's Trainer settings leave `warm_start` out: pipeline/pipeline.py)
        cold = {k: v for k, v in load_config()["trainer"].items() if k != "warm_start"}
        assert custom["trainer"] == {**cold, "epochs": 2, "distribution": {"strategy": "multi_worker_mirrored"}}
        assert _parameter(tasks[trainer], "run_fn") == RUN_FN
    assert set(executors) == set(default["deploymentSpec"]["executors"])
    for name, executor in default["deploymentSpec"]["executors"].items():
        if "Trainer" not in name:
            assert executors[name] == executor, name


def test_the_vertex_trainer_is_checked_before_compiling(tmp_path):
    out = str(tmp_path / "pipeline.yaml")
    with pytest.raises(CompileError, match="several replicas but `trainer.distribution.strategy` is 'default'"):
        kubeflow_runner.compile_spec(_vertex_config(tmp_path), out)
    config = _vertex_config(tmp_path, {"strategy": "multi_worker_mirrored"})
    config["orchestration"]["kubeflow"]["trainer"] = "sagemaker"
    with pytest.raises(CompileError, match="unknown value 'sagemaker'; one of: kubeflow, vertex"):
        kubeflow_runner.compile_spec(config, out)
    config["orchestration"]["kubeflow"]["trainer"] = "vertex"
    del config["orchestration"]["kubeflow"]["vertex"]["worker_pool_specs"][1]["machine_spec"]["machine_type"]
    with pytest.raises(CompileError, match=r"worker_pool_specs\[1\].machine_spec.machine_type"):
        kubeflow_runner.compile_spec(config, out)
