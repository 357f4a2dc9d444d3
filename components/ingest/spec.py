"""ComponentSpec of the funnel Ingest component."""

from tfx.types import artifact, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter


class IngestReport(artifact.Artifact):
    """A directory with `ingest_report.json` (counts per log and reason) and the
    quarantined records as JSON Lines under `quarantine/`."""

    TYPE_NAME = "funnel.IngestReport"


class IngestSpec(ComponentSpec):
    PARAMETERS = {
        # The raw-log directory (schemas/raw_logs.yaml).
        "logs_dir": ExecutionParameter(type=str),
        # IngestConfig fields as JSON (data, not code).
        "config_json": ExecutionParameter(type=str, optional=True),
        # A digest of the input files (runner.input_fingerprint), part of the cache key; set by
        # `funnel run --cache`, where the files can be listed when the pipeline is built.
        "input_fingerprint": ExecutionParameter(type=str, optional=True),
        # A digest of the ingest's own code (pipeline/code_version.py), part of the cache key; set
        # when the pipeline runs with the cache.
        "code_fingerprint": ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {}
    OUTPUTS = {
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "ingest_report": ChannelParameter(type=IngestReport),
    }
