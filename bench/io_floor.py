"""The I/O floor of the ingest: read the same files with the same reader and write every
record back as a tf.Example TFRecord with the same encoder and sink; no join, no features.
(A module of its own so Beam workers import these functions rather than unpickle them.)"""

import os

import apache_beam as beam
import pyarrow as pa

from components.ingest import reader
from components.ingest.example_encoder import encode_examples
from components.ingest.contract import list_log_files
from components.ingest.runner import beam_options
from components.ingest.tfrecord_sink import WriteTFRecords, batches


def _encode_file(log_file):
    """Read + encode one file's records as they are (the floor's only work)."""
    frame = reader.read_log_file(log_file).rows
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if not len(frame):
        return []
    offsets = pa.array(range(len(frame) + 1), pa.int32())
    columns = [pa.ListArray.from_arrays(offsets, c.combine_chunks()) for c in table.columns]
    batch = pa.RecordBatch.from_arrays(columns, table.column_names)
    return batches(encode_examples(batch))  # lists of records, as the ingest hands them to the same sink


def run_floor(logs_dir: str, out_dir: str, compression_level: int) -> None:
    files = list_log_files(logs_dir)
    with beam.Pipeline(options=beam_options(None)) as p:
        _ = (p | beam.Create(files) | beam.FlatMap(_encode_file)
             | WriteTFRecords(os.path.join(out_dir, "records"), compression_level))
