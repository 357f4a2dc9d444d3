"""Runs the pipeline with Beam as the orchestrator (BeamDagRunner): each step is an element of a
Beam pipeline, in the work-directory layout of `local_runner` (SQLite ML Metadata in WORK/tfx)."""

from typing import Any, Dict, List, Optional

from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner

from pipeline.local_runner import work_dir_pipeline


def run_beam(logs_dir: str, work_dir: str, config: Optional[Dict[str, Any]] = None,
             beam_args: Optional[List[str]] = None, enable_cache: bool = False,
             data_only: bool = False) -> str:
    """Runs the pipeline (or its data steps, `data_only`) under `work_dir`; returns the pipeline
    root. `beam_args` go to the steps' own Beam pipelines, as with `funnel run`."""
    pipeline, root = work_dir_pipeline(logs_dir, work_dir, config, beam_args, enable_cache, data_only)
    BeamDagRunner().run(pipeline)
    return root
