"""The `orchestration:` configuration section and the orchestration extra's lock file."""

import ast
import os
import re

import pytest
from packaging.requirements import Requirement

from pipeline.config import load_config
from pipeline.orchestration import CompileError, output_format, settings

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Pins the orchestration extra forces away from requirements.lock's (requirements-orchestration.in
# says why); every other package both lock files pin has the same version in both.
FORCED = {"urllib3", "werkzeug", "rich"}


def _pins(name):
    with open(os.path.join(REPO, name)) as f:
        return {m.group(1).lower(): m.group(2) for m in re.finditer(r"^([A-Za-z0-9_.\-]+)==(\S+)", f.read(), re.M)}


def test_the_default_section_describes_both_schedules():
    section = settings(load_config())
    assert len(section["kubeflow"]["cron"].split()) == 6
    assert section["airflow"]["catchup"] is False and section["airflow"]["max_active_runs"] == 1
    assert section["image"] and section["pipeline_root"].startswith("gs://")


def test_a_user_file_overrides_the_section_key_by_key(tmp_path):
    (tmp_path / "c.yaml").write_text("orchestration: {image: my/funnel:2, airflow: {schedule: '@daily'}}\n")
    section = load_config(str(tmp_path / "c.yaml"))["orchestration"]
    assert section["image"] == "my/funnel:2" and section["airflow"]["schedule"] == "@daily"
    assert section["airflow"]["max_active_runs"] == 1 and section["kubeflow"]["cron"] == "0 0 3 * * *"


@pytest.mark.parametrize("change, message", [
    ({"kubeflow": {"cron": "0 3 * * *"}}, "6 fields"),
    ({"image": ""}, "orchestration.image"),
    ({"beam_args": "--runner=DataflowRunner"}, "beam_args"),
    ({"imagee": "x"}, r"`orchestration:` section: unknown keys \['imagee'\]"),
    ({"airflow": {"scheduel": "@daily"}}, r"`orchestration.airflow:` section: unknown keys \['scheduel'\]"),
    ({"kubeflow": {"crn": "0 0 3 * * *"}}, r"`orchestration.kubeflow:` section: unknown keys \['crn'\]"),
    ({"kubeflow": {"vertex": {"projet": "p"}}}, r"`orchestration.kubeflow.vertex:` section: unknown keys \['projet'\]"),
])
def test_a_bad_section_is_refused(change, message):
    config = load_config()
    for key, value in change.items():  # nested sections merged key by key, as a user file is
        merge = isinstance(value, dict) and isinstance(config["orchestration"].get(key), dict)
        config["orchestration"][key] = {**config["orchestration"][key], **value} if merge else value
    with pytest.raises(CompileError, match=message):
        settings(config)


def test_the_output_format_follows_the_extension():
    assert [output_format("kubeflow", p) for p in ("a.yaml", "b.YML", "c.json")] == ["yaml", "yaml", "json"]
    assert output_format("airflow", "dags/funnel.py") == "py"
    for target, path in [("kubeflow", "a.txt"), ("kubeflow", "a.py"), ("airflow", "a.yaml"), ("argo", "a.yaml")]:
        with pytest.raises(CompileError):
            output_format(target, path)


def test_the_orchestration_lock_agrees_with_requirements_lock():
    base, extra = _pins("requirements.lock"), _pins("requirements-orchestration.lock")
    assert set(base) <= set(extra), "requirements-orchestration.lock must pin every package of requirements.lock"
    differ = {name for name in base if base[name] != extra[name]}
    assert differ <= FORCED, f"re-run `make lock`: {sorted(differ - FORCED)} differ between the lock files"
    assert extra["tfx"] == "1.16.0" and extra["apache-airflow"].startswith("2.10.")
    assert extra["kfp"].startswith("2.") and "kfp-pipeline-spec" in extra


def test_the_setup_py_extra_is_what_the_lock_pins():
    tree = ast.parse(open(os.path.join(REPO, "setup.py")).read())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    extras = ast.literal_eval(next(k.value for k in call.keywords if k.arg == "extras_require"))
    pins = _pins("requirements-orchestration.lock")
    with open(os.path.join(REPO, "requirements-orchestration.in")) as f:
        declared = {Requirement(line).name for line in f.read().splitlines()
                    if line.strip() and not line.startswith(("#", "-r"))}
    assert {Requirement(r).name for r in extras["orchestration"]} == declared
    for requirement in map(Requirement, extras["orchestration"]):
        assert requirement.specifier.contains(pins[requirement.name], prereleases=True), requirement


def test_a_daily_schedule_resolves_its_date_when_it_runs_and_refuses_the_cache():
    from pipeline.orchestration import scheduled_pipeline

    config = load_config()
    config["ingest"].update(end_date="yesterday", train_days=7)
    pipeline = scheduled_pipeline(config)
    ingest = next(c for c in pipeline.components if c.id == "Ingest")
    assert '"end_date": "yesterday"' in ingest.exec_properties["config_json"]  # compiled as it is
    config["orchestration"]["enable_cache"] = True
    with pytest.raises(CompileError, match="enable_cache"):
        scheduled_pipeline(config)
