"""Runs the pipeline on this machine: LocalDagRunner, ML Metadata from the `metadata:` section
(SQLite in the work directory by default), Beam multi-processing."""

import dataclasses
import os
from typing import Any, Dict, List, Optional, Tuple

from tfx import v1 as tfx

import schemas
from components import schema_import
from components.ingest.config import IngestConfig
from components.ingest.contract import list_log_files
from components.ingest.runner import DEFAULT_BEAM_ARGS, files_fingerprint
from components.ingest.window import date_window
from pipeline import metadata as metadata_lib
from pipeline import paths
from pipeline.config import load_config
from pipeline.pipeline import create_pipeline

PIPELINE_NAME = "funnel"


def metadata_config(config: Dict[str, Any], root: str):
    """The run's ML Metadata connection: the `metadata:` section's, SQLite in `root` by default."""
    return metadata_lib.connection_config(config.get("metadata"), os.path.join(root, metadata_lib.SQLITE_FILE))


def work_dir_pipeline(logs_dir: str, work_dir: str, config: Optional[Dict[str, Any]] = None,
                      beam_args: Optional[List[str]] = None, enable_cache: bool = False,
                      data_only: bool = False) -> Tuple[tfx.dsl.Pipeline, str]:
    """The pipeline laid out under `work_dir`: pipeline root (and ML Metadata, unless the
    `metadata:` section names another store) in `work_dir/tfx`, pushed models in
    `work_dir/serving`. Returns it with its pipeline root."""
    work_dir = os.path.abspath(work_dir)  # local: LocalDagRunner's SQLite store lives in it by default
    root = os.path.join(work_dir, "tfx")
    config = dict(config or load_config())
    # A run built here runs now: `end_date: yesterday` becomes its date (and so part of the cache key).
    ingest = IngestConfig(**config["ingest"]).resolve_end_date()
    config["ingest"] = dataclasses.asdict(ingest)
    # The Ingest's check of the logs before any component runs, so that logs outside the contract
    # (a missing directory, a foreign file) stop the run before ImportSchemaGen has run.
    log_files = list_log_files(logs_dir, window=date_window(ingest))
    # With the cache, the Ingest is keyed by its input files too: changed logs are ingested again.
    fingerprint = files_fingerprint(log_files) if enable_cache else None
    # The cache keys ImportSchemaGen by the schema file's path as well as its content, and the
    # packaged schema's path is the install's: a cached run from another checkout or virtualenv
    # of the same funnel would import it, validate and transform again. A copy named by content
    # in the pipeline root is the same path from any install (pipeline/ablate.py does the same).
    schema = schema_import.content_addressed_copy(schemas.path("schema.pbtxt"), root) if enable_cache else None
    return create_pipeline(
        pipeline_name=PIPELINE_NAME,
        pipeline_root=root,
        logs_dir=paths.absolute(logs_dir),
        schema_path=schema,
        serving_dir=os.path.join(work_dir, "serving"),
        config=config,
        metadata_path=os.path.join(root, metadata_lib.SQLITE_FILE),
        beam_pipeline_args=list(DEFAULT_BEAM_ARGS) + list(beam_args or []),
        enable_cache=enable_cache,
        data_only=data_only,
        input_fingerprint=fingerprint,
    ), root


def run_local(logs_dir: str, work_dir: str, config: Optional[Dict[str, Any]] = None,
              beam_args: Optional[List[str]] = None, enable_cache: bool = False, data_only: bool = False) -> str:
    """Runs the pipeline under `work_dir` (see `work_dir_pipeline`). Returns the pipeline root."""
    pipeline, root = work_dir_pipeline(logs_dir, work_dir, config, beam_args, enable_cache, data_only)
    tfx.orchestration.LocalDagRunner().run(pipeline)
    return root
