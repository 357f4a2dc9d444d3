"""Runs the ingest Beam pipeline outside TFX (`funnel ingest`) and inside its executor."""

import hashlib
import os
from typing import List, Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from components.ingest import files
from components.ingest import report as report_lib
from components.ingest.config import IngestConfig
from components.ingest.contract import LogFile, list_log_files
from components.ingest.transforms import IngestLogs, WriteIngestOutputs
from components.ingest.window import date_window

# Local default: the DirectRunner on every core (pass-through args override it).
DEFAULT_BEAM_ARGS = ("--direct_running_mode=multi_processing", "--direct_num_workers=0")
REPORT_FILE = "ingest_report.json"
QUARANTINE_DIR = "quarantine"


def beam_options(beam_args: Optional[Sequence[str]]) -> PipelineOptions:
    args = list(DEFAULT_BEAM_ARGS)
    args += list(beam_args or ())
    return PipelineOptions(args)


def add_ingest_steps(pipeline: beam.Pipeline, logs_dir: str, examples_dir: str, report_dir: str, config: IngestConfig):
    """Adds the ingest to `pipeline`; returns the path the counters are written to."""
    # fails early on files outside the contract; a daily run lists only its window's partitions
    log_files = list_log_files(logs_dir, window=date_window(config))
    counts_path = os.path.join(report_dir, "counts.json")
    _ = (pipeline
         | "Ingest" >> IngestLogs(log_files, config)
         | "WriteOutputs" >> WriteIngestOutputs(
             examples_dir, os.path.join(report_dir, QUARANTINE_DIR), counts_path, config.compression_level))
    return counts_path


def input_fingerprint(logs_dir: str, config: IngestConfig) -> str:
    """A digest of the files the ingest would read (path, size, modification time): with it in
    the Ingest's properties, TFX's cache answers a re-run only while those files are unchanged
    (a daily run: the files of its window's days)."""
    return files_fingerprint(list_log_files(logs_dir, window=date_window(config)))


def files_fingerprint(log_files: Sequence[LogFile]) -> str:
    """`input_fingerprint` of log files already listed (and checked) by `list_log_files`."""
    paths = [f.path for f in log_files]
    digest = hashlib.sha256()
    for metadata in sorted(FileSystems.match(paths), key=lambda m: m.metadata_list[0].path):
        file = metadata.metadata_list[0]
        digest.update(f"{file.path}\t{file.size_in_bytes}\t{file.last_updated_in_seconds}\n".encode())
    return digest.hexdigest()


def finish(counts_path: str, report_dir: str, config: IngestConfig) -> dict:
    """Writes the report next to the counters and fails the run past the quarantine gate."""
    report = report_lib.build_report(files.read_json(counts_path), config.max_quarantine_fraction)
    window = date_window(config)
    if window is not None:
        report["window"] = window.describe()
    files.write_json(report, os.path.join(report_dir, REPORT_FILE), indent=2, sort_keys=True)
    report_lib.check_report(report)
    return report


def run_ingest(logs_dir: str, out_dir: str, config: IngestConfig = IngestConfig(),
               beam_args: Optional[List[str]] = None) -> dict:
    """`OUT/examples/Split-{train,eval}/`, `OUT/quarantine/`, `OUT/ingest_report.json`."""
    config = config.resolve_end_date()
    files.make_dirs(out_dir)
    with beam.Pipeline(options=beam_options(beam_args)) as pipeline:
        counts_path = add_ingest_steps(pipeline, logs_dir, os.path.join(out_dir, "examples"), out_dir, config)
    return finish(counts_path, out_dir, config)
