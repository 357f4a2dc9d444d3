"""Airflow: the DAG module `funnel compile --target airflow` writes, as Airflow's DagBag loads it.

The DagBag runs in a subprocess whose AIRFLOW_HOME (and HOME) are temporary directories, so
Airflow neither reads nor writes ~/airflow and its logging set-up stays out of this process.
"""

import datetime
import json
import os
import subprocess
import sys
import textwrap

import pytest

from pipeline import airflow_runner
from pipeline.config import load_config
from pipeline.orchestration import CompileError
from tests.test_secrets import assert_no_secrets, plant_credentials

# Prints what the DagBag found as JSON (the last line of its output).
DAGBAG_PROBE = textwrap.dedent("""
    import json, sys
    from airflow.models import DagBag

    bag = DagBag(dag_folder=sys.argv[1], include_examples=False)
    dags = {}
    for dag_id, dag in bag.dags.items():
        dags[dag_id] = {
            "order": [t.task_id for t in dag.topological_sort()],
            "upstream": {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks},
            "schedule": dag.schedule_interval, "start_date": dag.start_date.isoformat(),
            "catchup": dag.catchup, "max_active_runs": dag.max_active_runs,
            "operators": sorted({type(t).__name__ for t in dag.tasks}),
        }
    print(json.dumps({"import_errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": dags}))
""")


def test_the_dag_module_loads_in_a_dagbag_in_dependency_order_with_its_schedule(scheduled_config_file, tmp_path):
    dags = tmp_path / "dags"
    written = airflow_runner.write_dag_module(load_config(scheduled_config_file), str(dags / "funnel_dag.py"))
    assert written == (str(dags / "funnel_dag.py"), str(dags / "funnel_dag.yaml"))
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, HOME=str(home), AIRFLOW_HOME=str(tmp_path / "airflow"),
               AIRFLOW__CORE__LOAD_EXAMPLES="False", AIRFLOW__CORE__DAGS_FOLDER=str(dags),
               AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{tmp_path / 'airflow' / 'airflow.db'}",
               # The module imports TFX and TensorFlow: slower than Airflow's 30 s default on a busy machine.
               AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT="300",
               TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
    # Outside the checkout, so that the module imports funnel as installed, not from the cwd.
    result = subprocess.run([sys.executable, "-c", DAGBAG_PROBE, str(dags)], env=env, cwd=str(tmp_path),
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["import_errors"] == {}
    assert list(found["dags"]) == ["funnel-daily"]
    dag = found["dags"]["funnel-daily"]
    assert (dag["schedule"], dag["catchup"], dag["max_active_runs"]) == ("30 2 * * *", False, 1)
    assert datetime.datetime.fromisoformat(dag["start_date"]) == datetime.datetime(2026, 10, 1, tzinfo=datetime.timezone.utc)
    assert dag["operators"] == ["AirflowComponent"]
    order = dag["order"]
    chain = (["Ingest", "StatisticsGen", "ExampleValidator", "DataGate", "Transform"],
             ["Ingest", "Transform", "Trainer", "Evaluator", "Pusher"])
    for steps in chain:
        assert [order.index(s) for s in steps] == sorted(order.index(s) for s in steps), order
    assert order.index("ImportSchemaGen") < order.index("Transform")
    assert order.index("Transform") < order.index("BaselineTrainer")
    upstream = dag["upstream"]
    # Transform waits for the data gate (pipeline/data_gate.py), which reads the validators' anomalies
    assert upstream["Ingest"] == [] and upstream["Transform"] == ["DataGate", "ImportSchemaGen", "Ingest"]
    assert {"ExampleValidator", "StatisticsGen"} <= set(upstream["DataGate"])
    assert upstream["Trainer"] == ["ImportSchemaGen", "Transform"]
    assert upstream["Evaluator"] == ["Ingest", "Trainer", "latest_blessed_model_resolver"]
    assert upstream["Pusher"] == ["Evaluator", "Trainer"]
    assert not (home / "airflow").exists()


def test_the_written_configuration_is_the_one_compiled(scheduled_config_file, tmp_path, monkeypatch):
    planted = plant_credentials(monkeypatch, tmp_path)  # nothing of the compiling environment gets in
    config = load_config(scheduled_config_file)
    written = airflow_runner.write_dag_module(config, str(tmp_path / "funnel_dag.py"))
    for path in written:
        with open(path) as f:
            assert_no_secrets(f.read(), planted, path)
    _, config_path = written
    assert load_config(config_path) == config
    assert airflow_runner.dag_arguments(load_config(config_path)) == {
        "schedule": "30 2 * * *", "start_date": datetime.datetime(2026, 10, 1, tzinfo=datetime.timezone.utc),
        "catchup": False, "max_active_runs": 1}


def test_a_shared_metadata_store_needs_no_sqlite_path(scheduled_config_file):
    config = load_config(scheduled_config_file)
    del config["orchestration"]["airflow"]["metadata_path"]
    with pytest.raises(CompileError, match="metadata_path"):
        airflow_runner.dag_arguments(config)
    config["metadata"]["type"] = "mysql"
    assert airflow_runner.dag_arguments(config)["max_active_runs"] == 1


@pytest.mark.parametrize("airflow, message", [
    ({"start_date": "first of october"}, "start_date"),
    ({"max_active_runs": 0}, "max_active_runs"),
    ({"catchup": "no"}, "catchup"),
])
def test_a_bad_airflow_section_fails_at_compile_time(scheduled_config_file, tmp_path, airflow, message):
    config = load_config(scheduled_config_file)
    config["orchestration"]["airflow"].update(airflow)
    with pytest.raises(CompileError, match=message):
        airflow_runner.write_dag_module(config, str(tmp_path / "funnel_dag.py"))
    assert not (tmp_path / "funnel_dag.py").exists() and not (tmp_path / "funnel_dag.yaml").exists()
