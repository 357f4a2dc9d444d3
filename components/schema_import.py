"""ImportSchemaGen keyed by the schema's content, for the cached pipeline.

TFX keys a cached execution by its step's properties and inputs, and the stock ImportSchemaGen's
only property is the schema file's path: with the cache, a run after the curated schema (or a
user's `--schema`) was edited was answered with the schema imported before the edit, and the
gates and Transform checked the data against it. This component is TFX's ImportSchemaGen (its
executor, its `schema` output, its node id) with one more optional property, the SHA-256 of the
file's bytes, which the pipeline sets when it runs with the cache (pipeline/pipeline.py). The
executor ignores it.

Written by hand: TFX 1.16 has no per-node cache switch and no content key for an imported file.
"""

import hashlib
import uuid
from typing import Optional

import tensorflow as tf
from tfx import types
from tfx.components.schema_gen.import_schema_gen import executor
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter

CONTENT_FINGERPRINT_KEY = "content_fingerprint"


class ImportSchemaGenSpec(standard_component_specs.ImportSchemaGenSpec):
    PARAMETERS = {
        **standard_component_specs.ImportSchemaGenSpec.PARAMETERS,
        # SHA-256 of the schema file's bytes: part of the cache key, read by nothing.
        CONTENT_FINGERPRINT_KEY: ExecutionParameter(type=str, optional=True),
    }


class ImportSchemaGen(base_component.BaseComponent):
    """TFX's ImportSchemaGen with the file's content fingerprint as a property (when given)."""

    SPEC_CLASS = ImportSchemaGenSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, schema_file: str, content_fingerprint: Optional[str] = None):
        super().__init__(spec=ImportSchemaGenSpec(
            schema_file=schema_file, content_fingerprint=content_fingerprint,
            schema=types.Channel(type=standard_artifacts.Schema)))


def content_fingerprint(path: str) -> str:
    """SHA-256 of the file's bytes (any filesystem TF reads); a clear error when it cannot be read,
    since the step would fail on it anyway."""
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except tf.errors.OpError as e:
        raise ValueError(f"schema file {path!r} cannot be read: {e.message}") from None


def content_addressed_copy(path: str, directory: str) -> str:
    """A copy of the schema file at DIRECTORY/schema-FINGERPRINT.pbtxt, written once (by a rename,
    so a concurrent run never reads half of it). The cache keys ImportSchemaGen by the file's path
    too: importing this copy, a run's data steps from another checkout of funnel are the same
    execution (`funnel ablate` re-ran Transform, ~5 min, from a second clone), and an edited
    schema gets another name."""
    copy = f"{directory.rstrip('/')}/schema-{content_fingerprint(path)[:16]}.pbtxt"
    if not tf.io.gfile.exists(copy):
        tf.io.gfile.makedirs(directory)
        partial = f"{copy}.{uuid.uuid4().hex}.partial"
        tf.io.gfile.copy(path, partial)
        tf.io.gfile.rename(partial, copy, overwrite=True)
    return copy
