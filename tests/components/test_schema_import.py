"""components/schema_import.py: the cached pipeline imports an edited schema again."""

import pytest
from tfx import v1 as tfx

from components import schema_import
from pipeline import metadata

SCHEMA = 'feature {{ name: "{name}" type: INT }}\n'


def _import_twice(tmp_path, component_for):
    """Runs a cached one-step pipeline on a schema file, edits the file, runs it again; returns
    the schema text each run's step output holds."""
    schema_file = tmp_path / "schema.pbtxt"
    store_path = str(tmp_path / "metadata.sqlite")
    imported = []
    for name in ("clicked", "ordered"):
        schema_file.write_text(SCHEMA.format(name=name))
        tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
            pipeline_name="schema-import", pipeline_root=str(tmp_path / "root"),
            components=[component_for(str(schema_file))], enable_cache=True,
            metadata_connection_config=metadata.connection_config(None, store_path)))
        store = metadata.open_store(metadata.connection_config(None, store_path))
        uri = metadata.latest_output(store, "ImportSchemaGen", "schema").uri
        imported.append((tmp_path / uri / "schema.pbtxt").read_text())
    return imported


def test_an_edited_schema_is_imported_again_with_the_cache(tmp_path):
    imported = _import_twice(tmp_path, lambda path: schema_import.ImportSchemaGen(
        path, content_fingerprint=schema_import.content_fingerprint(path)))
    assert ["clicked" in text for text in imported] == [True, False]
    assert "ordered" in imported[1]


def test_the_stock_component_answers_an_edited_schema_from_the_cache(tmp_path):
    # the hazard the fingerprint removes: TFX keys the stock step by the file's path only
    imported = _import_twice(tmp_path, lambda path: tfx.components.ImportSchemaGen(schema_file=path))
    assert imported[0] == imported[1] and "clicked" in imported[1]


def test_content_fingerprint_follows_the_bytes_and_names_a_missing_file(tmp_path):
    path = tmp_path / "schema.pbtxt"
    path.write_text(SCHEMA.format(name="clicked"))
    first = schema_import.content_fingerprint(str(path))
    assert schema_import.content_fingerprint(str(path)) == first and len(first) == 64
    path.write_text(SCHEMA.format(name="ordered"))
    assert schema_import.content_fingerprint(str(path)) != first
    with pytest.raises(ValueError, match="missing.pbtxt"):
        schema_import.content_fingerprint(str(tmp_path / "missing.pbtxt"))


def test_a_content_addressed_copy_gives_the_same_cached_import_from_any_checkout(tmp_path):
    """Two checkouts' schema files, same bytes: the copies are one file, and the second cached
    run reuses the first run's import; an edited schema gets a copy of its own."""
    copies, store_path = str(tmp_path / "data"), str(tmp_path / "metadata.sqlite")
    uris = []
    for checkout in ("clone-a", "clone-b"):
        (tmp_path / checkout).mkdir()
        (tmp_path / checkout / "schema.pbtxt").write_text(SCHEMA.format(name="clicked"))
        copy = schema_import.content_addressed_copy(str(tmp_path / checkout / "schema.pbtxt"), copies)
        tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
            pipeline_name="schema-import", pipeline_root=str(tmp_path / "root"), enable_cache=True,
            components=[schema_import.ImportSchemaGen(copy, schema_import.content_fingerprint(copy))],
            metadata_connection_config=metadata.connection_config(None, store_path)))
        store = metadata.open_store(metadata.connection_config(None, store_path))
        uris.append(metadata.latest_output(store, "ImportSchemaGen", "schema").uri)
    assert uris[0] == uris[1] and sorted(p.name for p in (tmp_path / "data").iterdir()) == [copy.split("/")[-1]]
    (tmp_path / "clone-b" / "schema.pbtxt").write_text(SCHEMA.format(name="ordered"))
    edited = schema_import.content_addressed_copy(str(tmp_path / "clone-b" / "schema.pbtxt"), copies)
    assert edited != copy and "ordered" in (tmp_path / "data" / edited.split("/")[-1]).read_text()
