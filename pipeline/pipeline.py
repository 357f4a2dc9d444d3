"""The funnel TFX pipeline, built by one function; runners are thin files around it."""

import os
from typing import List, Optional

from tfx import v1 as tfx

import schemas
from components.ingest.component import Ingest
from components.ingest.config import IngestConfig


def create_pipeline(
    pipeline_name: str,
    pipeline_root: str,
    logs_dir: str,
    ingest_config: Optional[IngestConfig] = None,
    schema_path: Optional[str] = None,
    metadata_path: Optional[str] = None,
    beam_pipeline_args: Optional[List[str]] = None,
) -> tfx.dsl.Pipeline:
    """Ingest -> StatisticsGen -> ImportSchemaGen -> ExampleValidator."""
    ingest = Ingest(logs_dir=logs_dir, config=ingest_config)
    statistics = tfx.components.StatisticsGen(examples=ingest.outputs["examples"])
    schema = tfx.components.ImportSchemaGen(schema_file=schema_path or schemas.path("schema.pbtxt"))
    validator = tfx.components.ExampleValidator(
        statistics=statistics.outputs["statistics"], schema=schema.outputs["schema"])
    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=[ingest, statistics, schema, validator],
        metadata_connection_config=(
            tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path)
            if metadata_path else None),
        beam_pipeline_args=beam_pipeline_args,
        enable_cache=False,
    )
