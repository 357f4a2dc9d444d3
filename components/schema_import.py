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
