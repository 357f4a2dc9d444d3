"""The Transform step outside TFX, for benchmarks: what the TFX Transform component's executor
runs on the ingest's examples, without its pre/post-transform statistics. The curated schema
(`schemas/schema.pbtxt`) reads the examples through tfx_bsl's TFXIO, `preprocessing_fn` is
analysed on the train split and applied to both splits with tf.Transform on Beam, and the
transformed examples are written as gzip TFRecords under `OUT/transformed_examples/Split-*/`,
the transform graph under `OUT/transform_fn/`.

Two Beam pipelines, one per pass (`analyze`, then `apply_transform`, which reads the transform
graph back and the examples again), where the TFX executor runs both passes in one: there the
train split is read once and the transform pass consumes it after the analysis, so a runner must
hold the decoded examples in between. Dataflow spills them to its shuffle; the local
DirectRunner keeps them in its main process, which the kernel's OOM killer stopped at 14.5 GB
RSS on this 24 GB machine with 5.1M train examples (`make bench-scale`). Two pipelines stream.
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


def _sources(examples_dir: str) -> Dict[str, tfxio.TFExampleRecord]:
    schema = load_schema()
    return {split: tfxio.TFExampleRecord(
        file_pattern=os.path.join(examples_dir, f"Split-{split}", "*"), schema=schema,
        telemetry_descriptors=["funnel", "bench"]) for split in (features.TRAIN_SPLIT, features.EVAL_SPLIT)}


def analyze(examples_dir: str, out_dir: str, custom_config: Optional[Dict[str, Any]] = None,
            beam_args: Optional[List[str]] = None) -> None:
    """The analysis pass: `preprocessing_fn`'s analyzers (vocabularies, quantiles, means) over the
    train split; the transform graph goes to `OUT/transform_fn/`."""
    train = _sources(examples_dir)[features.TRAIN_SPLIT]
    preprocessing = functools.partial(preprocessing_fn, custom_config=custom_config)
    with beam.Pipeline(options=beam_options(beam_args)) as pipeline, \
            tft_beam.Context(temp_dir=os.path.join(out_dir, "tmp")):
        transform_fn = ((pipeline | "ReadTrain" >> train.BeamSource(), train.TensorAdapterConfig())
                        | "Analyze" >> tft_beam.AnalyzeDataset(preprocessing))
        _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(os.path.join(out_dir, TRANSFORM_FN_DIR))


def apply_transform(examples_dir: str, out_dir: str, beam_args: Optional[List[str]] = None) -> None:
    """The transform pass: the graph of `analyze` applied to both splits, written as the TFX
    executor writes its transformed examples."""
    with beam.Pipeline(options=beam_options(beam_args)) as pipeline, \
            tft_beam.Context(temp_dir=os.path.join(out_dir, "tmp")):
        transform_fn = pipeline | "ReadTransformFn" >> tft_beam.ReadTransformFn(os.path.join(out_dir, TRANSFORM_FN_DIR))
        for split, source in _sources(examples_dir).items():
            raw = (pipeline | f"Read{split.title()}" >> source.BeamSource(), source.TensorAdapterConfig())
            transformed, _ = ((raw, transform_fn)
                              | f"Transform{split.title()}" >> tft_beam.TransformDataset(output_record_batches=True))
            _ = (transformed
                 | f"Encode{split.title()}" >> beam.ParDo(_EncodeExamples())
                 | f"Write{split.title()}" >> beam.io.WriteToTFRecord(
                     os.path.join(out_dir, TRANSFORMED_EXAMPLES_DIR, f"Split-{split}", "transformed_examples"),
                     file_name_suffix=".gz"))

