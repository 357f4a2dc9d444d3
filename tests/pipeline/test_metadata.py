"""ML Metadata from the `metadata:` section, and finding a step's outputs in the store."""

import pytest
from ml_metadata.proto import metadata_store_pb2 as mlmd

from pipeline import metadata
from pipeline.config import load_config
from pipeline.pipeline import create_pipeline
from tests.pipeline.mlmd import record

MYSQL = {"type": "mysql", "mysql": {"host": "db.internal", "port": 3306, "database": "funnel_md",
                                    "user": "funnel", "password_env": "TEST_FUNNEL_MD_PASSWORD"}}


def test_sqlite_is_the_default(tmp_path):
    path = str(tmp_path / "work" / "tfx" / "metadata.sqlite")
    config = metadata.connection_config(load_config()["metadata"], path)
    assert config.WhichOneof("config") == "sqlite"
    assert config.sqlite.filename_uri == path
    metadata.open_store(config)  # its directory is created: the first run's store opens
    assert metadata.connection_config(None, None) is None  # the orchestrator's own store
    named = metadata.connection_config({"type": "sqlite", "sqlite_path": "/md/x.sqlite"}, "/work/default")
    assert named.sqlite.filename_uri == "/md/x.sqlite"


def test_mysql_connection_reads_the_password_from_the_environment(monkeypatch):
    monkeypatch.setenv("TEST_FUNNEL_MD_PASSWORD", "s3cret")
    config = metadata.connection_config(MYSQL, "/ignored.sqlite")
    expected = mlmd.ConnectionConfig()
    expected.mysql.host, expected.mysql.port = "db.internal", 3306
    expected.mysql.database, expected.mysql.user, expected.mysql.password = "funnel_md", "funnel", "s3cret"
    assert config == expected


def test_mysql_mistakes_name_the_key(monkeypatch):
    monkeypatch.delenv("TEST_FUNNEL_MD_PASSWORD", raising=False)
    with pytest.raises(ValueError, match="TEST_FUNNEL_MD_PASSWORD is not set"):
        metadata.connection_config(MYSQL)
    with pytest.raises(ValueError, match="never the password itself"):
        metadata.connection_config({"type": "mysql", "mysql": {**MYSQL["mysql"], "password": "x"}})
    with pytest.raises(ValueError, match="metadata.mysql.host"):
        metadata.connection_config({"type": "mysql", "mysql": {**MYSQL["mysql"], "host": ""}})
    with pytest.raises(ValueError, match="metadata.type"):
        metadata.connection_config({"type": "postgres"})
    with pytest.raises(ValueError, match=r"`metadata.mysql:` section: unknown keys \['hots'\]"):
        metadata.connection_config({"type": "mysql", "mysql": {**MYSQL["mysql"], "hots": "db"}})
    with pytest.raises(ValueError, match=r"`metadata:` section: unknown keys \['typ'\]"):
        metadata.connection_config({"typ": "sqlite"})
    # compiling for a scheduler checks the section but not this machine's environment
    assert metadata.check(MYSQL, environment=False) == "mysql"


def test_create_pipeline_takes_the_store_from_the_config(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_FUNNEL_MD_PASSWORD", "s3cret")
    config = load_config()
    args = ("p", str(tmp_path / "root"), str(tmp_path / "logs"), str(tmp_path / "serving"))
    local = create_pipeline(*args, {**config}, metadata_path=str(tmp_path / "md.sqlite"), data_only=True)
    assert local.metadata_connection_config.sqlite.filename_uri == str(tmp_path / "md.sqlite")
    shared = create_pipeline(*args, {**config, "metadata": MYSQL}, metadata_path=str(tmp_path / "md.sqlite"),
                             data_only=True)
    assert shared.metadata_connection_config.mysql.host == "db.internal"
    assert shared.metadata_connection_config.mysql.password == "s3cret"


@pytest.fixture
def store(tmp_path):
    return metadata.open_store(metadata.connection_config(None, str(tmp_path / "md.sqlite")))


def test_latest_output_is_the_newest_finished_execution_of_the_step(store):
    record(store, "Trainer", {"model": "/r/Trainer/model/9", "model_run": "/r/Trainer/model_run/9"})
    # answered from the cache: TFX records the earlier artifact as this execution's output
    record(store, "Trainer", {"model": "/r/Trainer/model/3"}, state=mlmd.Execution.CACHED)
    record(store, "Trainer", {"model": "/r/Trainer/model/12"}, state=mlmd.Execution.FAILED)
    record(store, "BaselineTrainer", {"model": "/r/BaselineTrainer/model/20"})
    record(store, "Trainer", {"model": "/other/Trainer/model/30"}, pipeline="other")
    assert metadata.latest_output(store, "Trainer", "model", "funnel").uri == "/r/Trainer/model/3"
    # an output the newest execution lacks comes from the newest one that has it
    assert metadata.latest_output(store, "Trainer", "model_run", "funnel").uri == "/r/Trainer/model_run/9"
    assert metadata.latest_output(store, "BaselineTrainer", "model").uri == "/r/BaselineTrainer/model/20"
    with pytest.raises(ValueError, match="several pipelines"):
        metadata.latest_output(store, "Trainer", "model")
    with pytest.raises(FileNotFoundError, match="Pusher"):
        metadata.latest_output(store, "Pusher", "pushed_model", "funnel")
