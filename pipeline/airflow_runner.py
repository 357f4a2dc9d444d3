"""Airflow: the pipeline as an Airflow DAG, one task per TFX step (AirflowDagRunner).

`funnel compile --target airflow --out DAGS/funnel_dag.py` writes a small module and its
configuration (`funnel_dag.yaml`, beside it); Airflow's DagBag imports the module and finds the
module-level `DAG`, built here from that configuration each time the file is parsed. Writing the
module does not import Airflow; building the DAG needs the orchestration extra.
"""

import datetime
import os
from typing import Any, Dict, Tuple

import yaml

from pipeline import orchestration

MODULE_TEMPLATE = '''"""funnel's TFX pipeline as an Airflow DAG (written by `funnel compile --target airflow`).

Copy this file and {config_name} (its configuration, read whenever Airflow parses this file)
into Airflow's dags folder. The scheduler and the workers need funnel with its orchestration
extra (the image of funnel's Dockerfile has both).
"""

import os

from pipeline.airflow_runner import airflow_dag

DAG = airflow_dag(os.path.join(os.path.dirname(os.path.abspath(__file__)), {config_name!r}))
'''


def start_date(value: Any) -> datetime.datetime:
    """`orchestration.airflow.start_date` (YYYY-MM-DD, a date or a datetime) as a UTC datetime."""
    if isinstance(value, str):
        try:
            value = datetime.datetime.fromisoformat(value)
        except ValueError:
            raise orchestration.CompileError(
                f"`orchestration.airflow.start_date` must be a date (YYYY-MM-DD), got {value!r}") from None
    if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
        value = datetime.datetime(value.year, value.month, value.day)
    if not isinstance(value, datetime.datetime):
        raise orchestration.CompileError(
            f"`orchestration.airflow.start_date` must be a date (YYYY-MM-DD), got {value!r}")
    return value.replace(tzinfo=datetime.timezone.utc) if value.tzinfo is None else value


def _airflow_section(config: Dict[str, Any]) -> Dict[str, Any]:
    section = orchestration.settings(config).get("airflow")
    if not isinstance(section, dict):
        raise orchestration.CompileError("the configuration has no `orchestration.airflow:` section")
    for key in ("start_date",) + (("metadata_path",) if _sqlite_at_metadata_path(config) else ()):
        if not section.get(key):
            raise orchestration.CompileError(f"`orchestration.airflow.{key}` is not set")
    return section


def _sqlite_at_metadata_path(config: Dict[str, Any]) -> bool:
    """Whether ML Metadata is the SQLite file `orchestration.airflow.metadata_path`: the
    `metadata:` section names no store of its own (a MySQL store, a `sqlite_path`)."""
    section = config.get("metadata") or {}
    return section.get("type", "sqlite") == "sqlite" and not section.get("sqlite_path")


def dag_arguments(config: Dict[str, Any]) -> Dict[str, Any]:
    """The DAG's arguments: schedule, start_date (UTC), catchup (default false), max_active_runs
    (default 1, so a slow run is never overlapped by the next)."""
    section = _airflow_section(config)
    return {
        "schedule": section.get("schedule"),
        "start_date": start_date(section["start_date"]),
        "catchup": section.get("catchup", False),
        "max_active_runs": section.get("max_active_runs", 1),
    }


def build_dag(config: Dict[str, Any]):
    """The Airflow DAG of `create_pipeline` with the `orchestration:` section's paths and schedule."""
    from tfx.orchestration.airflow.airflow_dag_runner import AirflowDagRunner, AirflowPipelineConfig

    arguments = dag_arguments(config)
    pipeline = orchestration.scheduled_pipeline(config, metadata_path=_airflow_section(config).get("metadata_path"))
    return AirflowDagRunner(AirflowPipelineConfig(airflow_dag_config=arguments)).run(pipeline)


def airflow_dag(config_path: str):
    """The DAG described by a configuration file (what a written DAG module calls)."""
    from pipeline.config import load_config

    return build_dag(load_config(config_path))


def write_dag_module(config: Dict[str, Any], out: str) -> Tuple[str, str]:
    """Writes the DAG module `out` (.py) and its configuration beside it (same name, .yaml);
    returns both paths."""
    orchestration.output_format("airflow", out)
    from pipeline.pipeline import check_model_sections

    dag_arguments(config)  # fails here, not in Airflow's parser, on a bad section
    check_model_sections(config)
    config_path = os.path.splitext(out)[0] + ".yaml"
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(config_path, "w") as f:
        f.write("# The configuration of the Airflow DAG module beside this file "
                "(written by `funnel compile --target airflow`).\n")
        yaml.safe_dump(config, f, sort_keys=False, default_flow_style=False)
    with open(out, "w") as f:
        f.write(MODULE_TEMPLATE.format(config_name=os.path.basename(config_path)))
    return out, config_path
