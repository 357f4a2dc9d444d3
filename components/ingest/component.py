"""The Ingest TFX component: raw logs -> train/eval `Examples` (one per impression)."""

from typing import Optional

from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx import types
from tfx.types import standard_artifacts

from components.ingest import executor
from components.ingest.config import IngestConfig
from components.ingest.spec import IngestReport, IngestSpec


class Ingest(base_beam_component.BaseBeamComponent):
    """Joins impressions with clicks, carts, wishes, orders and the item catalog.

    Outputs `examples` (splits `train` / `eval`, gzip TFRecords of tf.Example) and
    `ingest_report` (per-reason counts and the quarantined records).
    """

    SPEC_CLASS = IngestSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, logs_dir: str, config: Optional[IngestConfig] = None, input_fingerprint: Optional[str] = None,
                 code_fingerprint: Optional[str] = None):
        super().__init__(spec=IngestSpec(
            logs_dir=logs_dir,
            config_json=executor.config_to_json(config or IngestConfig()),
            input_fingerprint=input_fingerprint,
            code_fingerprint=code_fingerprint,
            examples=types.Channel(type=standard_artifacts.Examples),
            ingest_report=types.Channel(type=IngestReport),
        ))
