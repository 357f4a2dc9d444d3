"""The local runner's pipeline layout under a work directory."""

import os

import schemas
from components import schema_import
from pipeline import local_runner
from tests.components.ingest.logs import ITEMS, T0, event, impression, write_logs


def _imported_schema(pipeline) -> str:
    (node,) = [c for c in pipeline.components if c.id == "ImportSchemaGen"]
    return node.exec_properties["schema_file"]


def _logs(root) -> str:
    return write_logs(str(root), {"items": ITEMS, "impressions": [impression("m1", "u1", "i1", T0, 1)],
                                  **{log: [event("u1", "i1", T0 + 10)] for log in ("clicks", "carts", "orders")}})


def test_a_cached_run_imports_the_schema_by_content_whichever_install_ships_it(tmp_path, monkeypatch):
    """With the cache, ImportSchemaGen reads a copy named by the schema's bytes in the pipeline
    root: another install's schema file (another path, the same bytes) is the same import, so
    the cache answers it; an edited schema is another file. Without the cache the packaged
    schema is read where it is."""
    logs, work = _logs(tmp_path / "logs"), str(tmp_path / "work")
    pipeline, root = local_runner.work_dir_pipeline(logs, work, enable_cache=True)
    first = _imported_schema(pipeline)
    assert os.path.dirname(first) == root and os.path.basename(first).startswith("schema-")
    assert schema_import.content_fingerprint(first) == schema_import.content_fingerprint(schemas.path("schema.pbtxt"))

    other_install = tmp_path / "other-install"
    other_install.mkdir()
    text = open(schemas.path("schema.pbtxt")).read()
    (other_install / "schema.pbtxt").write_text(text)
    monkeypatch.setattr(schemas, "path", lambda name: str(other_install / name))
    assert _imported_schema(local_runner.work_dir_pipeline(logs, work, enable_cache=True)[0]) == first

    (other_install / "schema.pbtxt").write_text(text + "\n# edited\n")
    assert _imported_schema(local_runner.work_dir_pipeline(logs, work, enable_cache=True)[0]) != first
    assert _imported_schema(local_runner.work_dir_pipeline(logs, work)[0]) == str(other_install / "schema.pbtxt")
