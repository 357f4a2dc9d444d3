import pytest

# A scheduled-run configuration with fixed values (no temporary paths), shared by the compile tests:
# the golden Kubeflow spec (tests/pipeline/golden/) is compiled from it.
SCHEDULED = """\
orchestration:
  pipeline_name: funnel-daily
  image: registry.example.com/ranking/funnel:1.2.3
  pipeline_root: gs://funnel-test/tfx
  logs_dir: gs://funnel-test/logs
  serving_dir: gs://funnel-test/serving
  beam_args: [--runner=DataflowRunner, --project=funnel-test, --region=europe-west4,
              --temp_location=gs://funnel-test/tmp]
  kubeflow:
    cron: "0 30 2 * * *"
  airflow:
    schedule: "30 2 * * *"
    start_date: "2026-10-01"
    catchup: false
    max_active_runs: 1
    metadata_path: /srv/funnel/metadata.sqlite
trainer:
  epochs: 2
"""


@pytest.fixture
def scheduled_config_file(tmp_path):
    """A --config file for `funnel compile` (over pipeline/config.yaml)."""
    path = tmp_path / "scheduled.yaml"
    path.write_text(SCHEDULED)
    return str(path)
