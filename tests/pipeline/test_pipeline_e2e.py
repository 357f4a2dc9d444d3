"""End to end: a tiny simulated world through the TFX pipeline on LocalDagRunner."""

import glob
import json
import os

import pytest

from pipeline import local_runner, report
from simulation.simulator import simulate
from simulation.world import SimulationConfig

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def pipeline_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    simulate(str(root / "logs"), SimulationConfig(users=120, days=3, seed=3))
    return local_runner.run_local(str(root / "logs"), str(root / "work"))


def test_ingest_writes_train_and_eval_examples(pipeline_root):
    splits = sorted(os.path.basename(p) for p in glob.glob(os.path.join(pipeline_root, "Ingest", "examples", "*", "Split-*")))
    assert splits == ["Split-eval", "Split-train"]
    with open(glob.glob(os.path.join(pipeline_root, "Ingest", "ingest_report", "*", "ingest_report.json"))[0]) as f:
        ingest = json.load(f)
    assert ingest["records_quarantined"] == 0 and ingest["balanced"]
    assert ingest["examples"]["train"] > 0 and ingest["examples"]["eval"] > 0
    assert 0 < ingest["labels"]["click"] < ingest["examples"]["train"] + ingest["examples"]["eval"]


def test_statistics_and_validation_find_no_anomalies(pipeline_root):
    assert glob.glob(os.path.join(pipeline_root, "StatisticsGen", "statistics", "*", "Split-train", "FeatureStats.pb"))
    assert report.anomalies(pipeline_root) == {"eval": [], "train": []}
    assert "schema anomalies (train): none" in report.summarize(pipeline_root)
