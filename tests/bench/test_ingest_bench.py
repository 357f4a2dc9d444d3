"""bench.ingest_bench on a tiny world: the result's fields, and no files left behind."""

import json
import os
import tempfile

import pytest

from bench import ingest_bench
from simulation.simulator import simulate
from simulation.world import SimulationConfig


def test_tiny_run_reports_consistent_rates_and_cleans_up(tmp_path, monkeypatch):
    logs = str(tmp_path / "logs")
    simulated = simulate(logs, SimulationConfig(users=40, days=3, seed=4))["counts"]["impressions"]
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(work))  # where the bench makes its work directory
    out = tmp_path / "ingest.json"
    assert ingest_bench.main(["--logs", logs, "--repeats", "1", "--out", str(out)]) == 0

    result = json.loads(out.read_text())
    assert result["impressions"] == simulated
    assert sum(result["examples"].values()) == simulated  # no bad records in a simulated world
    assert len(result["ingest_seconds"]) == len(result["floor_seconds"]) == 1
    assert result["ingest_impressions_per_second"] == pytest.approx(simulated / result["ingest_seconds"][0])
    assert result["ratio_ingest_to_floor"] == pytest.approx(result["floor_seconds"][0] / result["ingest_seconds"][0])
    assert result["ingest_output_bytes"] > 0 and result["floor_output_bytes"] > 0
    assert os.listdir(work) == []  # logs it did not simulate are not its to delete; its outputs are gone
