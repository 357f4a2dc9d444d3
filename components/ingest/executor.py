"""Beam executor of the Ingest component: the same transforms as `funnel ingest`."""

import dataclasses
import json
from typing import Any, Dict, List

from tfx import types
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils

from components.ingest import report as report_lib
from components.ingest import runner
from components.ingest.config import IngestConfig
from models import features


def config_from_json(config_json: str) -> IngestConfig:
    return IngestConfig(**json.loads(config_json or "{}"))


# Settings that only matter for a daily run: left out of the JSON without one, so that the
# default run's execution properties (its cache key, the compiled pipeline specs) stay as they were.
WINDOW_FIELDS = ("end_date", "train_days", "history_days")


def config_to_json(config: IngestConfig) -> str:
    values = dataclasses.asdict(config)
    if config.end_date is None:
        values = {k: v for k, v in values.items() if k not in WINDOW_FIELDS}
    return json.dumps(values, sort_keys=True)


class Executor(base_beam_executor.BaseBeamExecutor):
    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        # `end_date: yesterday` (a scheduled pipeline) becomes this run's date here, once
        config = config_from_json(exec_properties.get("config_json")).resolve_end_date()
        examples = artifact_utils.get_single_instance(output_dict["examples"])
        report_dir = artifact_utils.get_single_uri(output_dict["ingest_report"])
        examples.split_names = artifact_utils.encode_split_names([features.TRAIN_SPLIT, features.EVAL_SPLIT])
        examples_utils.set_payload_format(examples, example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE)
        examples_utils.set_file_format(examples, "tfrecords_gzip" if config.compression_level else "tfrecord")
        with self._make_beam_pipeline() as pipeline:
            counts_path = runner.add_ingest_steps(pipeline, exec_properties["logs_dir"], examples.uri, report_dir, config)
        report = runner.finish(counts_path, report_dir, config)
        # A pipeline trains on one split and evaluates on the other (`funnel ingest` and the
        # commands that score one split, `funnel predict --days N`, may leave the other empty).
        report_lib.check_splits(report, config.eval_days)
        examples.set_int_custom_property("train_examples", report["examples"][features.TRAIN_SPLIT])
        examples.set_int_custom_property("eval_examples", report["examples"][features.EVAL_SPLIT])
