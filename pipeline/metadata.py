"""ML Metadata: the store's connection from the `metadata:` section of the configuration, and
the lookups that find a run's artifacts in it (the report, `funnel ablate`).

SQLite (a file; the default, beside the pipeline root on one machine) or MySQL (a store shared
by schedulers and workers: Airflow, several hosts). The MySQL password is never in the YAML: the
section names the environment variable that holds it (`password_env`).
"""

import os
from typing import Any, Dict, Optional

from ml_metadata.proto import metadata_store_pb2

from pipeline.config import check_keys

KINDS = ("sqlite", "mysql")
# The SQLite store's name in a pipeline root laid out on one machine (`funnel run`, `funnel ablate`).
SQLITE_FILE = "metadata.sqlite"
MYSQL_KEYS = ("host", "port", "database", "user")
# Executions whose outputs are a step's result: run now, or answered from TFX's cache.
_DONE = (metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED)


def connection_config(section: Optional[Dict[str, Any]],
                      sqlite_path: Optional[str] = None) -> Optional[metadata_store_pb2.ConnectionConfig]:
    """The ConnectionConfig the `metadata:` section asks for. SQLite: at `sqlite_path` in the
    section, else at the runner's default `sqlite_path`, else None (the orchestrator's own
    store, e.g. Vertex AI's). ValueError naming the key on a bad section."""
    section = section or {}
    kind = check(section)
    if kind == "sqlite":
        path = section.get("sqlite_path") or sqlite_path
        if not path:
            return None
        from tfx.orchestration import metadata

        return metadata.sqlite_metadata_connection_config(path)  # creates the file's directory
    return _mysql_config(section.get("mysql") or {})


def check(section: Optional[Dict[str, Any]], environment: bool = True) -> str:
    """The store kind of the `metadata:` section; ValueError naming a misspelt or missing key (a
    command checks it before it runs anything). `environment`: also require the MySQL password's
    environment variable (not when compiling a pipeline that runs elsewhere)."""
    section = section or {}
    check_keys(section, ("type", "sqlite_path", "mysql"), "metadata")
    kind = section.get("type", "sqlite")
    if kind not in KINDS:
        raise ValueError(f"`metadata.type` must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind != "mysql":
        return kind
    mysql = section.get("mysql") or {}
    if "password" in mysql:
        raise ValueError("`metadata.mysql.password`: name the environment variable holding it "
                         "(`password_env`), never the password itself")
    check_keys(mysql, MYSQL_KEYS + ("password_env",), "metadata.mysql")
    for key in MYSQL_KEYS:
        if not mysql.get(key):
            raise ValueError(f"`metadata.mysql.{key}` is not set")
    if not isinstance(mysql["port"], int):
        raise ValueError(f"`metadata.mysql.port` must be an integer, got {mysql['port']!r}")
    variable = mysql.get("password_env")
    if environment and variable and variable not in os.environ:
        raise ValueError(f"`metadata.mysql.password_env`: environment variable {variable} is not set")
    return kind


def _mysql_config(mysql: Dict[str, Any]) -> metadata_store_pb2.ConnectionConfig:
    variable = mysql.get("password_env")
    from tfx.orchestration import metadata

    return metadata.mysql_metadata_connection_config(
        host=mysql["host"], port=mysql["port"], database=mysql["database"], username=mysql["user"],
        password=os.environ[variable] if variable else "")


def open_store(config: metadata_store_pb2.ConnectionConfig):
    from ml_metadata.metadata_store import metadata_store

    return metadata_store.MetadataStore(config)


def _node_context(store, producer: str, pipeline_name: Optional[str]):
    """The step's context (TFX names it `<pipeline>.<node id>`); without a pipeline name the
    store must hold a single pipeline with that step."""
    if pipeline_name:
        context = store.get_context_by_type_and_name("node", f"{pipeline_name}.{producer}")
        return [context] if context else []
    return [c for c in store.get_contexts_by_type("node") if c.name.rsplit(".", 1)[-1] == producer]


def _finished_executions(store, producer: str, pipeline_name: Optional[str]) -> list:
    """Step `producer`'s executions that finished (run or answered from the cache)."""
    contexts = _node_context(store, producer, pipeline_name)
    if len(contexts) > 1:
        raise ValueError(f"several pipelines have a step {producer}: name the pipeline")
    return [e for c in contexts for e in store.get_executions_by_context(c.id) if e.last_known_state in _DONE]


def _newest_execution(store, producer: str, pipeline_name: Optional[str]):
    """Step `producer`'s newest finished execution; None when it has none."""
    return max(_finished_executions(store, producer, pipeline_name), key=lambda e: e.id, default=None)


def latest_output(store, producer: str, output_key: str,
                  pipeline_name: Optional[str] = None) -> metadata_store_pb2.Artifact:
    """The live artifact of output `output_key` of step `producer`'s newest finished execution
    (run or answered from the cache), as recorded in ML Metadata; its `uri` is where it is.
    FileNotFoundError when the step has none."""
    for execution in sorted(_finished_executions(store, producer, pipeline_name), key=lambda e: e.id, reverse=True):
        ids = [event.artifact_id for event in store.get_events_by_execution_ids([execution.id])
               if event.type == metadata_store_pb2.Event.OUTPUT and event.path.steps
               and event.path.steps[0].key == output_key]
        live = [a for a in store.get_artifacts_by_id(ids) if a.state == metadata_store_pb2.Artifact.LIVE]
        if live:
            return live[0]
    raise FileNotFoundError(f"ML Metadata records no {output_key} output of step {producer}")


def latest_run(store, producer: str, pipeline_name: Optional[str] = None) -> Optional[str]:
    """The pipeline run (TFX's `pipeline_run` context name) of step `producer`'s newest finished
    execution; None when it has none."""
    newest = _newest_execution(store, producer, pipeline_name)
    if newest is None:
        return None
    runs = [c.name for c in store.get_contexts_by_execution(newest.id) if c.type == "pipeline_run"]
    return runs[0] if runs else None


def latest_execution_property(store, producer: str, name: str, pipeline_name: Optional[str] = None) -> Optional[str]:
    """A property of step `producer`'s newest finished execution as text (TFX records a
    component's parameters there, e.g. the Trainer's `custom_config` JSON); None when absent."""
    newest = _newest_execution(store, producer, pipeline_name)
    if newest is None:
        return None
    for properties in (newest.properties, newest.custom_properties):
        if name in properties:
            value = properties[name]
            return value.string_value if value.HasField("string_value") else str(value)
    return None
