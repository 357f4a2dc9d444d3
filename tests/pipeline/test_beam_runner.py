"""BeamDagRunner: create_pipeline's data steps run with Beam as the orchestrator (a whole TFX
pipeline, about a minute: e2e)."""

import os

import pytest

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from pipeline import beam_runner
from pipeline.config import load_config
from simulation.simulator import simulate
from simulation.world import SimulationConfig

pytestmark = [pytest.mark.e2e, pytest.mark.heavy]  # `make test-all` and CI; not `make test`

DATA_STEPS = {"Ingest", "StatisticsGen", "ImportSchemaGen", "ExampleValidator", "Transform"}


def test_beam_dag_runner_runs_the_data_steps_and_records_them_in_ml_metadata(tmp_path):
    simulate(str(tmp_path / "logs"), SimulationConfig(users=40, days=2, seed=3, n_items=300))
    root = beam_runner.run_beam(str(tmp_path / "logs"), str(tmp_path / "work"), load_config(),
                                ["--direct_running_mode=in_memory", "--direct_num_workers=1"], data_only=True)
    assert root == str(tmp_path / "work" / "tfx")
    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = os.path.join(root, "metadata.sqlite")
    store = metadata_store.MetadataStore(connection)
    states = {}
    for context in store.get_contexts_by_type("node"):
        node = context.name.split(".")[-1]
        states[node] = [e.last_known_state for e in store.get_executions_by_context(context.id)]
    assert set(states) == DATA_STEPS
    assert all(s == [metadata_store_pb2.Execution.COMPLETE] for s in states.values()), states
    transformed = [a for a in store.get_artifacts_by_type("Examples") if "Transform" in a.uri]
    assert len(transformed) == 1
    assert os.listdir(os.path.join(transformed[0].uri, "Split-train"))
