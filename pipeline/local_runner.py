"""Runs the pipeline on this machine: LocalDagRunner, SQLite ML Metadata, Beam multi-processing."""

import os
from typing import List, Optional

from tfx import v1 as tfx

from components.ingest.config import IngestConfig
from components.ingest.runner import DEFAULT_BEAM_ARGS
from pipeline.pipeline import create_pipeline

PIPELINE_NAME = "funnel"


def run_local(logs_dir: str, work_dir: str, ingest_config: Optional[IngestConfig] = None,
              beam_args: Optional[List[str]] = None) -> str:
    """Runs the pipeline under `work_dir` (pipeline root `work_dir/tfx`); returns the root."""
    root = os.path.join(os.path.abspath(work_dir), "tfx")
    tfx.orchestration.LocalDagRunner().run(create_pipeline(
        pipeline_name=PIPELINE_NAME,
        pipeline_root=root,
        logs_dir=os.path.abspath(logs_dir),
        ingest_config=ingest_config,
        metadata_path=os.path.join(root, "metadata.sqlite"),
        beam_pipeline_args=list(DEFAULT_BEAM_ARGS) + list(beam_args or []),
    ))
    return root
