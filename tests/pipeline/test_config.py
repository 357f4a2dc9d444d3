"""The pipeline configuration: user files over pipeline/config.yaml, presets, and the pipeline
built from it."""

import json

import pytest

import schemas
from components import schema_import
from pipeline import code_version
from pipeline.config import load_config
from pipeline.pipeline import CODE_KEY, check_model_sections, create_pipeline, model_tasks


def test_defaults_name_the_presets():
    config = load_config()
    assert config["model"] == {"preset": "dmt"} and config["baseline"] == {"preset": "dnn-base"}
    assert model_tasks(config) == ["click", "order"]


def test_a_section_naming_a_preset_replaces_the_default_one(tmp_path):
    (tmp_path / "a.yaml").write_text("model: {preset: esm2}\ntrainer: {epochs: 2}\n")
    config = load_config(str(tmp_path / "a.yaml"))
    assert config["model"] == {"preset": "esm2"} and config["trainer"]["epochs"] == 2
    assert config["trainer"]["batch_size"] == 512  # other sections still merge key by key
    assert model_tasks(config) == ["click", "daction", "order"]
    (tmp_path / "b.yaml").write_text("model: {mixture: {type: ple}}\n")
    config = load_config(str(tmp_path / "b.yaml"))  # no preset: merged into the default (dmt)
    assert config["model"] == {"preset": "dmt", "mixture": {"type": "ple"}}


def test_a_bad_model_section_fails_before_the_run(tmp_path, capsys):
    from pipeline import cli

    (tmp_path / "c.yaml").write_text("model: {preset: esm2, tasks: [click, order]}\n")
    with pytest.raises(ValueError, match="esm2"):
        model_tasks(load_config(str(tmp_path / "c.yaml")))
    code = cli.main(["run", "--logs", str(tmp_path / "no-logs"), "--work", str(tmp_path / "work"),
                     "--config", str(tmp_path / "c.yaml")])
    assert code == 2 and "`model:` section" in capsys.readouterr().err
    assert not (tmp_path / "work").exists()  # nothing ran


@pytest.mark.parametrize("text, message", [
    ("trainer: {epoch: 3}\n", "`trainer:` section: unknown keys ['epoch']"),
    ("model: {preset: dmt-paper, trainer: {batch_size: 0}}\n",
     "`trainer:` section (or `model: {trainer: ...}`): batch_size must be an integer >= 1"),
    ("transform: {num_buckets: 0}\n", "`transform:` section: num_buckets must be an integer >= 1"),
    ("evaluator: {min_aucc: 0.6}\n", "`evaluator:` section: unknown keys ['min_aucc']"),
    ("evaluator: {ndcg_top_k: [0]}\n", "`evaluator:` section: ndcg_top_k must be a non-empty list"),
    ("metadata: {typ: sqlite}\n", "`metadata:` section: unknown keys ['typ']"),
    ("metadata: {type: mysql, mysql: {password_env: FUNNEL_TEST_UNSET}}\n",
     "`metadata.mysql.password_env`: environment variable FUNNEL_TEST_UNSET is not set"),
])
def test_a_bad_setting_fails_before_the_run(tmp_path, capsys, text, message):
    from pipeline import cli

    (tmp_path / "c.yaml").write_text(text)
    code = cli.main(["run", "--logs", str(tmp_path / "no-logs"), "--work", str(tmp_path / "work"),
                     "--config", str(tmp_path / "c.yaml")])
    assert code == 2 and capsys.readouterr().err.startswith(f"funnel run: {message}")
    assert not (tmp_path / "work").exists()  # nothing ran


def test_an_empty_settings_section_overrides_nothing(tmp_path):
    (tmp_path / "c.yaml").write_text("trainer:\ntransform:\nbaseline:\n")
    config, defaults = load_config(str(tmp_path / "c.yaml")), load_config()
    assert config["trainer"] == defaults["trainer"] and config["transform"] == defaults["transform"]
    assert config["baseline"] is None  # `baseline:` empty: no baseline Trainer, as before
    check_model_sections(config)


@pytest.mark.parametrize("text, message", [(None, "cannot be read"), ("model: {preset: dmt", "not YAML (line 1, column 20)"),
                                           ("- model\n- trainer\n", "a mapping of configuration sections"),
                                           ("ingest: 7\n", "each section is a mapping of settings: ['ingest']")])
def test_a_config_file_that_is_not_a_yaml_mapping_is_an_error_naming_it(tmp_path, capsys, text, message):
    from pipeline import cli

    path = tmp_path / "funnel.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ValueError) as refused:
        load_config(str(path))
    assert str(refused.value).startswith(f"{path}: ") and message in str(refused.value)
    logs, work = str(tmp_path / "no-logs"), str(tmp_path / "work")
    for command in (["run", "--logs", logs, "--work", work], ["ingest", "--logs", logs, "--out", work],
                    ["ablate", "--suite", "dmt-bias", "--logs", logs, "--work", work],
                    ["compile", "--target", "airflow", "--out", str(tmp_path / "dag.py")]):
        assert cli.main(command + ["--config", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"funnel {command[0]}: {path}: ") and message in err, err
    assert not (tmp_path / "work").exists() and not (tmp_path / "dag.py").exists()


@pytest.mark.parametrize("cache", [False, True])
def test_create_pipeline_caches_only_when_asked(tmp_path, cache):
    pipeline = create_pipeline("p", str(tmp_path / "root"), str(tmp_path / "logs"), str(tmp_path / "serving"),
                               load_config(), enable_cache=cache)
    assert pipeline.enable_cache is cache
    trainers = [c for c in pipeline.components if c.id in ("Trainer", "BaselineTrainer")]
    assert len(trainers) == 2
    # With the cache each funnel step is keyed by its code too (pipeline/code_version.py);
    # without it the properties, and the compiled specs, carry no fingerprint.
    steps = {c.id: c for c in pipeline.components}
    expected = {"Ingest": code_version.INGEST_CODE, "Transform": code_version.TRANSFORM_CODE,
                "Trainer": code_version.TRAINER_CODE, "BaselineTrainer": code_version.TRAINER_CODE}
    for step, module in expected.items():
        properties = steps[step].exec_properties
        found = (properties.get("code_fingerprint") if step == "Ingest"
                 else json.loads(properties["custom_config"]).get(CODE_KEY))
        assert found == (code_version.source_fingerprint(module) if cache else None), step
    # and the imported schema by its content (components/schema_import.py)
    assert steps["ImportSchemaGen"].exec_properties.get(schema_import.CONTENT_FINGERPRINT_KEY) == (
        schema_import.content_fingerprint(schemas.path("schema.pbtxt")) if cache else None)


def test_baseline_null_leaves_the_baseline_trainer_out(tmp_path):
    (tmp_path / "a.yaml").write_text("baseline: null\n")
    config = load_config(str(tmp_path / "a.yaml"))
    assert config["baseline"] is None
    check_model_sections(config)
    pipeline = create_pipeline("p", str(tmp_path / "root"), str(tmp_path / "logs"), str(tmp_path / "serving"), config)
    ids = {c.id for c in pipeline.components}
    assert "Trainer" in ids and "Evaluator" in ids and "BaselineTrainer" not in ids
    config["model"] = None
    with pytest.raises(ValueError, match="`model:` section"):
        check_model_sections(config)


def test_transform_statistics_are_on_unless_switched_off(tmp_path):
    def transform(config):
        pipeline = create_pipeline("p", str(tmp_path / "root"), str(tmp_path / "logs"), str(tmp_path / "serving"),
                                   config)
        return next(c for c in pipeline.components if c.id == "Transform")

    config = load_config()
    assert transform(config).exec_properties["disable_statistics"] == 0
    config["transform"]["statistics"] = False
    step = transform(config)
    assert step.exec_properties["disable_statistics"] == 1
    assert "statistics" not in step.exec_properties["custom_config"]  # not preprocessing_fn's


def test_the_last_blessed_model_is_compared_only_when_a_drop_is_gated(tmp_path):
    def ids(config):
        pipeline = create_pipeline("p", str(tmp_path / "root"), str(tmp_path / "logs"), str(tmp_path / "serving"),
                                   config)
        return {c.id for c in pipeline.components}

    config = load_config()
    assert "latest_blessed_model_resolver" in ids(config)
    config["evaluator"]["max_auc_drop"] = None  # e.g. the first run of an architecture with other outputs
    assert "latest_blessed_model_resolver" not in ids(config) and "Evaluator" in ids(config)


def _component(pipeline, component_id):
    return next(c for c in pipeline.components if c.id == component_id)


def test_warm_start_feeds_the_latest_blessed_model_to_the_trainer_only(tmp_path):
    def build(config):
        return create_pipeline("p", str(tmp_path / "root"), str(tmp_path / "logs"), str(tmp_path / "serving"), config)

    cold = build(load_config())
    assert "base_model" not in _component(cold, "Trainer").inputs
    assert "warm_start" not in _component(cold, "Trainer").exec_properties["custom_config"]  # cache key as before
    config = load_config()
    config["trainer"]["warm_start"] = True
    config["evaluator"]["max_auc_drop"] = None  # no gate: the resolver is still there for the Trainer
    warm = build(config)
    resolver = _component(warm, "latest_blessed_model_resolver")
    assert _component(warm, "Trainer").inputs["base_model"].producer_component_id == resolver.id
    assert "base_model" not in _component(warm, "BaselineTrainer").inputs  # DNN(Base) starts cold


def test_the_ingest_of_a_daily_run_is_keyed_by_its_dates(tmp_path):
    def ingest_properties(**window):
        config = load_config()
        config["ingest"].update(window)
        pipeline = create_pipeline("p", str(tmp_path / "root"), str(tmp_path / "logs"), str(tmp_path / "serving"),
                                   config)
        return _component(pipeline, "Ingest").exec_properties["config_json"]

    default = ingest_properties()
    assert "end_date" not in default  # the default run's properties (and compiled specs) as before
    day_1 = ingest_properties(end_date="2026-10-03", train_days=2)
    day_2 = ingest_properties(end_date="2026-10-04", train_days=2)
    assert len({default, day_1, day_2}) == 3 and '"end_date": "2026-10-03"' in day_1
