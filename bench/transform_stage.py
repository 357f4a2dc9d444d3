"""The Transform step outside TFX, for benchmarks: what the TFX Transform component's executor
runs on the ingest's examples, without its pre/post-transform statistics. The curated schema
(`schemas/schema.pbtxt`) reads the examples through tfx_bsl's TFXIO, `preprocessing_fn` is
analysed on the train split and applied to both splits with tf.Transform on Beam, and the
transformed examples are written as gzip TFRecords under `OUT/transformed_examples/Split-*/`,
the transform graph under `OUT/transform_fn/`.
(A module of its own so Beam workers import these functions rather than unpickle them.)"""

import functools
import os
from typing import Any, Dict, List, Optional

import apache_beam as beam
import tensorflow as tf
import tensorflow_transform.beam as tft_beam
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx_bsl.coders.example_coder import RecordBatchToExamplesEncoder
from tfx_bsl.public import tfxio

import schemas
from components.ingest.runner import beam_options
from models import features
from models.preprocessing import preprocessing_fn

TRANSFORM_FN_DIR = "transform_fn"
TRANSFORMED_EXAMPLES_DIR = "transformed_examples"


def load_schema() -> schema_pb2.Schema:
    with tf.io.gfile.GFile(schemas.path("schema.pbtxt")) as f:
        return text_format.Parse(f.read(), schema_pb2.Schema())


class _EncodeExamples(beam.DoFn):
    """Transformed RecordBatches -> serialized tf.Examples (as the TFX executor encodes them)."""

    def setup(self):
        self._encoder = RecordBatchToExamplesEncoder()

    def process(self, batch_and_passthrough):
        record_batch, _ = batch_and_passthrough
        yield from self._encoder.encode(record_batch)


def run_transform(examples_dir: str, out_dir: str, custom_config: Optional[Dict[str, Any]] = None,
                  beam_args: Optional[List[str]] = None) -> None:
    schema = load_schema()
    sources = {split: tfxio.TFExampleRecord(
        file_pattern=os.path.join(examples_dir, f"Split-{split}", "*"), schema=schema,
        telemetry_descriptors=["funnel", "bench"]) for split in (features.TRAIN_SPLIT, features.EVAL_SPLIT)}
    preprocessing = functools.partial(preprocessing_fn, custom_config=custom_config)
    with beam.Pipeline(options=beam_options(beam_args)) as pipeline, \
            tft_beam.Context(temp_dir=os.path.join(out_dir, "tmp")):
        raw = {split: (pipeline | f"Read{split.title()}" >> source.BeamSource(), source.TensorAdapterConfig())
               for split, source in sources.items()}
        (train, _), transform_fn = (raw[features.TRAIN_SPLIT]
                                    | "AnalyzeAndTransform" >> tft_beam.AnalyzeAndTransformDataset(
                                        preprocessing, output_record_batches=True))
        evaluation, _ = ((raw[features.EVAL_SPLIT], transform_fn)
                         | "TransformEval" >> tft_beam.TransformDataset(output_record_batches=True))
        _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(os.path.join(out_dir, TRANSFORM_FN_DIR))
        for split, transformed in ((features.TRAIN_SPLIT, train), (features.EVAL_SPLIT, evaluation)):
            _ = (transformed
                 | f"Encode{split.title()}" >> beam.ParDo(_EncodeExamples())
                 | f"Write{split.title()}" >> beam.io.WriteToTFRecord(
                     os.path.join(out_dir, TRANSFORMED_EXAMPLES_DIR, f"Split-{split}", "transformed_examples"),
                     file_name_suffix=".gz"))
