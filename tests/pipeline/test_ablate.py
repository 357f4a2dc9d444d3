"""`funnel ablate`: the suites are valid architectures, and a suite trains, evaluates and
reuses its variants on the e2e pipeline's examples."""

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import tf_keras as keras
import yaml

from models import features as F
from models import preprocessing as P
from models.config import ModelConfig
from models.model import build_model, compile_model
from pipeline import ablate, ablate_paired, ablate_scoring, code_version
from pipeline.config import load_config
from pipeline.pipeline import create_pipeline
from tests.models.batch import NO_SEQUENCES, VOCAB_SIZES, make_batch, small_config

SUITES = ablate.load_suites()
# the issue's suites (DMT Tables 3-5, ESM², HMoE, mixtures, baselines)
REQUIRED = {"fusion", "dmt-positional", "dmt-behaviours", "dmt-bias", "esm2", "hmoe", "mixtures", "baselines", "dtn"}
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VARIANTS = [(suite, name) for suite in SUITES for name in SUITES[suite]["variants"]]


def test_the_issue_suites_exist_with_their_columns():
    assert REQUIRED <= set(SUITES)
    assert "logged" in SUITES["dmt-bias"]["columns"] and "cvr" in SUITES["esm2"]["columns"]
    assert "per_scenario" in SUITES["hmoe"]["columns"]
    assert list(SUITES["dmt-positional"]["variants"]) == ["none", "none+recency", "sincos", "sincos+recency",
                                                          "learned", "learned+recency"]


@pytest.mark.parametrize("suite,variant", VARIANTS)
def test_every_variant_is_a_valid_architecture(suite, variant):
    section = ablate.variant_section(SUITES[suite], SUITES[suite]["variants"][variant])
    config = ModelConfig.from_dict(section, P.transform_config(load_config()))
    assert config.preset == section["preset"]


# One variant per kind of change the suites make to a preset (presets themselves are trained
# in tests/models/test_presets.py); the others differ from these only in a value.
BUILT = [("dmt-positional", "none"), ("dmt-positional", "sincos+recency"), ("dmt-behaviours", "click"),
         ("dmt-behaviours", "single-task click"), ("dmt-behaviours", "single-task order"),
         ("dmt-bias", "none"), ("dmt-bias", "position_page"), ("baselines", "dmt-no-encoder"),
         ("click-network", "din pooling"), ("bias-combine", "examination")]


@pytest.mark.parametrize("suite,variant", BUILT)
def test_the_suites_own_variants_build_and_train_a_step(suite, variant):
    section = ablate.variant_section(SUITES[suite], SUITES[suite]["variants"][variant])
    overrides = {k: v for k, v in section.items() if k != "preset"}
    keras.utils.set_random_seed(0)
    config = small_config(section["preset"], **overrides)
    # eagerly, as in test_presets.py: tracing the training step would be most of the test's time
    model = compile_model(build_model(config, VOCAB_SIZES), keras.optimizers.Adam(1e-2), run_eagerly=True)
    features, labels = make_batch(8, seed=1)
    labels = {t: labels[t] for t in config.tasks}
    history = model.fit(tf.data.Dataset.from_tensors((features, labels)), verbose=0).history
    assert np.isfinite(history["loss"][0])


def test_variant_section_merges_over_the_suite_base_unless_it_names_a_preset():
    assert ablate.variant_section({"base": "dmt"}, {"bias_features": "none"}) == {"preset": "dmt",
                                                                                 "bias_features": "none"}
    assert ablate.variant_section({"base": "dmt"}, {"preset": "esmm"}) == {"preset": "esmm"}


def test_a_network_spelled_two_ways_has_one_variant_directory(tmp_path):
    from pipeline.config import load_config

    config = load_config()
    data = {"key": "d"}

    def directory(model, trainer=None):
        return ablate.variant_dir(str(tmp_path), data, {"transform": config["transform"], "model": model,
                                                        "trainer": trainer or config["trainer"]})

    dmt = directory({"preset": "dmt"})
    # a suite's {} over the dmt base, and the default spelled out, are the same network
    assert directory(ablate.variant_section({"base": "dmt"}, {})) == dmt
    assert directory({"preset": "dmt", "bias_features": "all", "bias_output_dropout": 0.8}) == dmt
    assert directory({"preset": "dmt"}, {**config["trainer"], "summary_steps": 7}) == dmt
    # what changes the trained network changes the directory
    assert directory({"preset": "dmt", "bias_features": "neighboring"}) != dmt
    assert directory({"preset": "dmt"}, {**config["trainer"], "seed": 1}) != dmt
    assert ablate.variant_dir(str(tmp_path), {"key": "other data"}, {"transform": config["transform"],
                              "model": {"preset": "dmt"}, "trainer": config["trainer"]}) != dmt


def test_unknown_suite_columns_are_refused(tmp_path):
    path = tmp_path / "suites.yaml"
    path.write_text(yaml.safe_dump({"s": {"columns": ["speed"], "variants": {"a": {}}}}))
    with pytest.raises(ValueError, match="columns"):
        ablate.load_suites(str(path))


@pytest.mark.parametrize("against", [["c"], "a"])
def test_paired_against_must_list_variants_of_the_suite(tmp_path, against):
    path = tmp_path / "suites.yaml"
    path.write_text(yaml.safe_dump({"s": {"paired_against": against, "variants": {"a": {}, "b": {}}}}))
    with pytest.raises(ValueError, match="paired_against"):
        ablate.load_suites(str(path))


def test_the_claims_suites_pair_against_the_papers_baselines():
    assert SUITES["esm2"]["paired_against"][0] == "esmm"
    assert SUITES["hmoe"]["paired_against"] == ["immoe", "hmoe"]
    assert SUITES["mixtures"]["paired_against"] == ["shared-bottom", "mmoe"]
    assert SUITES["dmt-positional"]["paired_against"] == ["none", "none+recency"]
    assert SUITES["dmt-behaviours"]["paired_against"] == ["click", "click+cart+order"]


def test_the_data_pipeline_stops_after_transform():
    config = load_config()
    pipeline = create_pipeline("p", "/tmp/root", "/tmp/logs", "/tmp/serving", config, data_only=True)
    assert sorted(c.id for c in pipeline.components) == ["ExampleValidator", "ImportSchemaGen", "Ingest",
                                                         "StatisticsGen", "Transform"]


def test_markdown_has_the_suite_columns():
    row = {"variant": "a", "train_seconds": 3.0,
           "metrics": {"click": {"auc": 0.7, "gauc": 0.6, "logged_auc": 0.75}, "order": {"auc": 0.8, "cvr_auc": 0.65}},
           "per_scenario": {"NL": {"click": {"gauc": 0.61}, "order": {"gauc": 0.7}}},
           "ranking": {"click": {"click_efficiency": 0.9}, "score": {"purchase_ndcg@10": 0.8}}}
    text = ablate.markdown({"suite": "s", "columns": ["logged", "cvr", "per_scenario"], "rows": [row], "logs": "L"})
    assert "| a | 0.7000 | 0.6000 | 0.8000 | - | 0.7500 | - | 0.6500 | 0.6100 | 0.7000 | 0.9000 |" in text
    assert "logged labels of the eval day." in text  # a result without eval_days: the default, one day
    seven_days = ablate.markdown({"suite": "s", "columns": [], "rows": [row], "logs": "L", "eval_days": 7})
    assert "logged labels of the eval split, 7 UTC days." in seven_days and "eval day" not in seven_days


def _fake_figures(seed, click_efficiency):
    return {"metrics": {"click": {"auc": 0.70 + seed / 100, "gauc": 0.6}, "order": {"auc": 0.8}},
            "per_scenario": {"NL": {"click": {"auc": 0.7, "gauc": 0.6 + seed / 100}}},
            "ranking": {"click": {"click_efficiency": click_efficiency}}, "fusion": {},
            "eval_examples": 10, "evaluation_version": ablate_scoring.EVALUATION_VERSION, "train_seconds": 2.0}


def test_an_unguarded_script_fails_with_the_reason_instead_of_waiting(tmp_path):
    """A script without `if __name__ == "__main__":` runs again in the variant's child (spawn
    imports the main module): the child refuses, and the script fails with the reason."""
    config = load_config()
    custom = {"transform": config["transform"], "model": {"preset": "dnn-base"}, "trainer": config["trainer"]}
    script = tmp_path / "unguarded.py"
    script.write_text("import json, sys\n"
                      f"sys.path.insert(0, {ROOT!r})\n"
                      "from pipeline import ablate\n"
                      f"ablate.variant_figures({{'key': 'k'}}, json.loads({json.dumps(custom)!r}), {str(tmp_path)!r}, [], None)\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": ROOT})
    assert done.returncode != 0
    assert "put its work under `if __name__" in done.stderr and "BrokenProcessPool" in done.stderr


def test_each_variant_is_trained_and_scored_in_a_child_process(tmp_path, monkeypatch):
    """One process per training (memory does not pile up over a suite); a variant trained
    before is reused without one."""
    calls = []

    def child(fn, *args):
        calls.append(fn)
        return {"metrics": {F.CLICK: {"auc": 0.7}}, "train_seconds": 1.0,
                "evaluation_version": ablate_scoring.EVALUATION_VERSION}

    monkeypatch.setattr(ablate, "in_child_process", child)
    config = load_config()
    custom = {"transform": config["transform"], "model": {"preset": "dnn-base"}, "trainer": config["trainer"]}
    for _ in range(2):
        figures = ablate.variant_figures({"key": "k"}, custom, str(tmp_path), [], None, say=lambda m: None)
        assert figures["metrics"][F.CLICK]["auc"] == 0.7
    assert calls == [ablate.train_and_evaluate]


def test_with_seeds_each_variant_trains_once_per_seed_and_reports_mean_and_spread(tmp_path, monkeypatch):
    trained = []

    def figures(data, custom, work_dir, eval_files, truth, say=print):
        seed = custom["trainer"]["seed"]
        trained.append((custom["model"]["preset"], seed))
        say("trained")
        return _fake_figures(seed, {0: 0.80, 1: 0.82, 2: 0.84}[seed])

    monkeypatch.setattr(ablate, "prepare_data", lambda *args, **kwargs: {"key": "k", "examples": str(tmp_path)})
    monkeypatch.setattr(ablate, "variant_figures", figures)
    monkeypatch.setattr("pipeline.report.read_truth", lambda logs: None)
    suites = {"s": {"variants": {"a": {"preset": "dnn-base"}, "b": {"preset": "din"}}}}
    lines = []
    config = load_config()
    config.setdefault("ingest", {})["eval_days"] = 7  # `funnel ablate --eval-days 7`
    result = ablate.run_suite("s", str(tmp_path / "logs"), str(tmp_path / "work"), config, log=lines.append,
                              suites=suites, seeds=[0, 1, 2])
    assert trained == [("dnn-base", 0), ("dnn-base", 1), ("dnn-base", 2), ("din", 0), ("din", 1), ("din", 2)]
    assert lines[1:4] == [f"[ablate s] 1/2 a (seed {s}): trained" for s in (0, 1, 2)]
    row = result["rows"][0]
    assert row["seeds"] == [0, 1, 2] and [r["metrics"]["click"]["auc"] for r in row["runs"]] == [0.70, 0.71, 0.72]
    assert row["metrics"]["click"]["auc"] == pytest.approx(0.71)
    assert row["spread"]["metrics"]["click"]["auc"] == pytest.approx(0.01)  # sample standard deviation
    assert row["metrics"]["order"]["auc"] == pytest.approx(0.8) and row["spread"]["metrics"]["order"]["auc"] == pytest.approx(0.0, abs=1e-12)
    assert row["ranking"]["click"]["click_efficiency"] == pytest.approx(0.82)
    assert row["per_scenario"]["NL"]["click"]["gauc"] == pytest.approx(0.61)
    assert row["train_seconds"] == 6.0 and result["seeds"] == [0, 1, 2]
    text = (tmp_path / "work" / "ablations" / "s.md").read_text()
    assert "| a | 0.7100 ±0.0100 | 0.6000 ±0.0000 | 0.8000 ±0.0000 | - | 0.8200 ±0.0200 |" in text
    assert "over seeds 0, 1, 2" in text
    per_seed = text.split("Per seed:")[1]  # each training's own figures, in seed order
    assert [line.split(" | ")[:3] for line in per_seed.splitlines() if line.startswith("| a |")] == [
        ["| a", "0", "0.7000"], ["| a", "1", "0.7100"], ["| a", "2", "0.7200"]]
    assert result["eval_days"] == 7 and "logged labels of the eval split, 7 UTC days." in text


def test_seeds_are_refused_for_a_variant_that_fixes_its_own_seed(tmp_path, monkeypatch):
    monkeypatch.setattr(ablate, "prepare_data", lambda *args, **kwargs: {"key": "k", "examples": str(tmp_path)})
    monkeypatch.setattr(ablate, "variant_figures", lambda *args, **kwargs: _fake_figures(0, 0.8))
    monkeypatch.setattr("pipeline.report.read_truth", lambda logs: None)
    suites = {"s": {"variants": {"a": {"preset": "dnn-base", "trainer": {"seed": 7}}}}}
    with pytest.raises(ValueError, match="fixes the trainer seed"):
        ablate.run_suite("s", str(tmp_path / "logs"), str(tmp_path / "work"), load_config(), log=lambda m: None,
                         suites=suites, seeds=[0, 1])
    # one training per variant without seeds: the row is that training's figures, as before
    result = ablate.run_suite("s", str(tmp_path / "logs"), str(tmp_path / "work"), load_config(), log=lambda m: None,
                              suites=suites)
    assert "spread" not in result["rows"][0] and result["rows"][0]["metrics"]["click"]["auc"] == 0.70


@pytest.mark.e2e
@pytest.mark.heavy
def test_the_data_steps_run_once_per_logs_and_data_config(e2e_examples):
    """The fixture's examples are prepare_data's own; asked again for the same logs and data
    config, it finds every step in its cache: the same artifacts, none made again."""
    from tests.conftest import IN_PROCESS_BEAM

    root, pipeline_root = e2e_examples
    first = ablate.data_artifacts(os.path.join(pipeline_root, "metadata.sqlite"))
    again = ablate.prepare_data(str(root / "logs"), str(root / "work"), load_config(), IN_PROCESS_BEAM)
    assert os.path.basename(pipeline_root) == again.pop("key")
    assert again == first


@pytest.mark.e2e
@pytest.mark.heavy
def test_a_suite_trains_each_variant_once_on_the_pipeline_examples(e2e_examples, tmp_path, monkeypatch):
    """Two variants on the examples of the e2e world's data-only run (its Ingest and Transform
    found in its ML Metadata, as `funnel ablate` finds its own); a second run reuses both."""
    root, pipeline_root = e2e_examples
    data = ablate.data_artifacts(os.path.join(pipeline_root, "metadata.sqlite"))
    assert os.sep + "Transform" + os.sep in data["transform_graph"]
    monkeypatch.setattr(ablate, "prepare_data", lambda *args, **kwargs: {"key": "e2e", **data})
    suites = tmp_path / "suites.yaml"
    suites.write_text(yaml.safe_dump({"tiny": {
        "base": "dnn-base", "columns": ["cvr", "per_scenario"],
        "variants": {"dnn": {}, "dmt-small": {"preset": "dmt", "mixture": {"expert_units": [16], "tower_units": [8]},
                                               **NO_SEQUENCES}}}}, sort_keys=False))
    config = load_config()
    config["trainer"].update(batch_size=256, epochs=1, learning_rate=0.001)
    work = tmp_path / "work"
    lines = []
    result = ablate.run_suite("tiny", str(root / "logs"), str(work), config, log=lines.append,
                              suites_file=str(suites))
    canonical = lambda value: json.dumps(value, sort_keys=True)  # noqa: E731 (NaN == NaN as text)
    with open(work / "ablations" / "tiny.json") as f:
        assert canonical(json.load(f)) == canonical(result)
    assert [r["variant"] for r in result["rows"]] == ["dnn", "dmt-small"]
    assert result["rows"][0]["config"] == {"preset": "dnn-base"}
    scenarios = set()
    for row in result["rows"]:
        for task in (F.CLICK, F.ORDER):
            assert 0.0 <= row["metrics"][task]["auc"] <= 1.0 and "gauc" in row["metrics"][task]
        assert 0.0 <= row["metrics"][F.ORDER]["cvr_auc"] <= 1.0 or np.isnan(row["metrics"][F.ORDER]["cvr_auc"])
        assert set(row["ranking"]) == {"score", F.CLICK, F.ORDER}
        assert set(row["fusion"]) == {ablate_scoring.fusion_name(k, w) for k, w in ablate_scoring.FUSION_GRID}
        # the product fusion with all weight on order ranks exactly as the order output does
        assert row["fusion"]["product click=0 order=1"] == pytest.approx(row["ranking"][F.ORDER])
        assert -1.0 <= row["ranking"][F.CLICK]["click_efficiency"] <= 1.0
        scenarios |= set(row["per_scenario"])
    # the bias-tower model also reports its training-time network on logged labels
    assert "logged_auc" in result["rows"][1]["metrics"][F.CLICK]
    assert "logged_auc" not in result["rows"][0]["metrics"][F.CLICK]
    assert scenarios and all(f"{s} click GAUC" in (work / "ablations" / "tiny.md").read_text() for s in scenarios)
    # the second variant's AUCs tested against the first's on the same eval impressions (the first,
    # DNN(Base), has no training-time network to test against)
    assert result["paired_against"] == ["dnn"] and "paired" not in result["rows"][0]
    paired = result["rows"][1]["paired"]["dnn"]
    assert set(paired) == {F.CLICK, F.ORDER, ablate_paired.CVR_CLICKED}
    for task in (F.CLICK, F.ORDER):
        assert paired[task]["auc_difference"] == pytest.approx(
            result["rows"][1]["metrics"][task]["auc"] - result["rows"][0]["metrics"][task]["auc"])
    cvr_aucs = [row["metrics"][F.ORDER]["cvr_auc"] for row in result["rows"]]
    if not np.isnan(cvr_aucs).any():  # CVR AUC on clicked impressions: the same rows as the table's
        assert paired[ablate_paired.CVR_CLICKED]["auc_difference"] == pytest.approx(cvr_aucs[1] - cvr_aucs[0])
    assert "Paired against `dnn`" in (work / "ablations" / "tiny.md").read_text()
    assert "cvr (clicked) AUC difference" in (work / "ablations" / "tiny.md").read_text()
    # logs without a truth log: the logged-label figures, no truth rankings
    dnn_dir = ablate.variant_dir(str(work), {"key": "e2e"}, {"transform": config["transform"],
                                                             "model": {"preset": "dnn-base"}, "trainer": config["trainer"]})
    eval_files = sorted(glob.glob(os.path.join(data["examples"], "Split-eval", "*")))
    untruthed = ablate_scoring.evaluate_variant(dnn_dir, eval_files, None, {"type": "product", "weights": None})
    assert untruthed["ranking"] == {} and untruthed["fusion"] == {}
    assert untruthed["metrics"][F.CLICK]["auc"] == pytest.approx(result["rows"][0]["metrics"][F.CLICK]["auc"])
    assert sum("trained in" in line for line in lines) == 2

    again = []
    second = ablate.run_suite("tiny", str(root / "logs"), str(work), config, log=again.append,
                              suites_file=str(suites))
    assert sum("reused" in line for line in again) == 2
    assert canonical([r["metrics"] for r in second["rows"]]) == canonical([r["metrics"] for r in result["rows"]])
    # a variant whose section now resolves to other settings (e.g. its preset was edited) retrains
    custom = {"transform": config["transform"], "model": {"preset": "dnn-base"}, "trainer": config["trainer"]}
    record = os.path.join(ablate.variant_dir(str(work), {"key": "e2e"}, custom), "variant.json")
    with open(record) as f:
        recorded = json.load(f)
    assert recorded["resolved"] == ablate.resolved_settings(custom)
    recorded["resolved"]["model"]["mixture"]["bottom_units"] = [7]
    with open(record, "w") as f:
        json.dump(recorded, f)
    third = []
    ablate.run_suite("tiny", str(root / "logs"), str(work), config, log=third.append, suites_file=str(suites))
    assert ["trained in" in line for line in third[1:]] == [True, False]


@pytest.mark.parametrize("text", ["[a, b]", "s: [1]", "s: {variants: [a]}", "s: {variants: {a: [1, 2]}}",
                                  "s: {variants: {a: {preset: dmt}}", "s: [unclosed"])
def test_malformed_suite_files_are_refused(tmp_path, text):
    path = tmp_path / "suites.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match="suites.yaml"):
        ablate.load_suites(str(path))


def test_a_mistyped_variant_fails_the_suite_before_any_step(tmp_path, monkeypatch):
    """A setting the model config refuses, in the suite's last variant: the suite stops before
    the data steps and the first variant's training, and says which variant."""
    steps = []
    monkeypatch.setattr(ablate, "prepare_data", lambda *args, **kwargs: steps.append("data"))
    monkeypatch.setattr(ablate, "variant_figures", lambda *args, **kwargs: steps.append("train"))
    suites = {"s": {"base": "dmt", "variants": {"a": {}, "b": {"sequence_encoder": {"positional": "learnt"}}}}}
    for seeds in (None, [0, 1]):
        with pytest.raises(ValueError, match="suite 's', variant 'b': .*positional must be one of"):
            ablate.run_suite("s", str(tmp_path / "logs"), str(tmp_path / "work"), load_config(), log=lambda m: None,
                             suites=suites, seeds=seeds)
    assert steps == []
    config = load_config()
    for section, settings, message in (("trainer", {"epoch": 3}, r"variant 'a': trainer settings: unknown keys \['epoch'\]"),
                                       ("transform", {"num_buckets": 0}, "`transform:` section: num_buckets")):
        with pytest.raises(ValueError, match=message):
            ablate.planned_variants("s", suites["s"], {**config, section: {**config[section], **settings}})
    planned = ablate.planned_variants("s", {"variants": {"a": {}}}, load_config(), [3, 4])
    assert [(v, [c["trainer"]["seed"] for c in customs]) for v, _, customs in planned] == [("a", [3, 4])]


def _logs(root) -> str:
    from tests.components.ingest.logs import ITEMS, T0, event, impression, write_logs

    return write_logs(str(root), {"items": ITEMS, "impressions": [impression("m1", "u1", "i1", T0, 1)],
                                  **{log: [event("u1", "i1", T0 + 10)] for log in ("clicks", "carts", "orders")}})


def test_the_data_key_fills_in_defaults_and_follows_the_logs_and_data_settings(tmp_path):
    import dataclasses

    from components.ingest.config import IngestConfig

    logs, other = _logs(tmp_path / "logs"), _logs(tmp_path / "other")
    config = load_config()
    spelled_out = {**config, "ingest": dataclasses.asdict(IngestConfig(**config["ingest"]))}
    assert ablate.data_key(logs, config) == ablate.data_key(logs, spelled_out)
    assert ablate.data_key(logs, config) != ablate.data_key(other, config)
    assert ablate.data_key(logs, config) != ablate.data_key(
        logs, {**config, "transform": {**config["transform"], "num_buckets": 5}})


def test_the_data_key_follows_the_logs_files_not_only_their_directory(tmp_path):
    """Logs written again into the same directory (another simulated world) are other data: a
    suite must not score networks trained on the first world against the second's truth."""
    from tests.components.ingest.logs import T0, event, write_logs

    logs = _logs(tmp_path / "logs")
    config = load_config()
    before = ablate.data_key(logs, config)
    assert ablate.data_key(logs, config) == before
    write_logs(logs, {"clicks": [event("u1", "i1", T0 + 10), event("u1", "i1", T0 + 20)]})
    assert ablate.data_key(logs, config) != before
    with pytest.raises(ValueError, match="holds no log files"):
        ablate.data_key(str(tmp_path / "missing"), config)


def test_the_data_key_follows_the_ingest_and_transform_code(monkeypatch, tmp_path):
    logs = _logs(tmp_path / "logs")
    config = load_config()
    before = ablate.data_key(logs, config)
    seen = []

    def fingerprint(*modules):
        seen.append(modules)
        return "edited"

    monkeypatch.setattr(ablate.code_version, "source_fingerprint", fingerprint)
    assert ablate.data_key(logs, config) != before
    assert seen == [(code_version.INGEST_CODE, code_version.TRANSFORM_CODE)]


def test_a_variant_recorded_before_a_setting_existed_matches_the_setting_that_reproduces_it():
    # a network whose settings are those its code trained before each setting existed
    custom = {"model": {"preset": "dmt", **ablate.LEGACY_MODEL_SETTINGS}}
    resolved = ablate.resolved_settings(custom)
    for key, legacy in ablate.LEGACY_MODEL_SETTINGS.items():
        old = json.loads(json.dumps(resolved))
        del old["model"][key]
        assert ablate._with_legacy_settings(old)["model"][key] == legacy
    old = json.loads(json.dumps(resolved))
    for key in ablate.LEGACY_MODEL_SETTINGS:
        del old["model"][key]
    assert ablate._with_legacy_settings(old) == ablate.resolved_settings(custom)
    changed = ablate.resolved_settings({"model": {**custom["model"], "bias_neighbors": "same_category"}})
    assert ablate._with_legacy_settings(old) != changed


def test_score_ranking_gives_the_scores_request_level_ndcg_and_mrr_on_orders():
    # request r1: the order ranked 2nd (MRR 1/2); r2: ranked 1st (1); r3: no order (left out)
    scored = pd.DataFrame({F.REQUEST_ID: ["r1", "r1", "r1", "r2", "r2", "r3"],
                           "score": [0.9, 0.5, 0.1, 0.2, 0.8, 0.3],
                           "label_order": [0, 1, 0, 0, 1, 0], "label_click": [1, 1, 0, 0, 1, 1]})
    got = ablate_scoring.score_ranking(scored)
    assert got[F.ORDER]["mrr@4"] == pytest.approx((1 / 2 + 1) / 2)
    assert got[F.ORDER]["ndcg@10"] == pytest.approx((1 / np.log2(3) + 1) / 2)
    assert got[F.CLICK]["mrr@4"] == pytest.approx(1.0)
    text = ablate.markdown({"suite": "fusion", "columns": ["score"], "logs": "L", "rows": [
        {"variant": "a", "metrics": {}, "per_scenario": {}, "ranking": {}, "score_ranking": got}]})
    assert "order mrr@4 (score)" in text and "| a | 0.8155 | 0.7500 | 1.0000 |" in text


def test_a_static_fusion_is_re_scored_but_the_fusion_network_is_served_and_trained():
    scored = pd.DataFrame({"click": [0.1, 0.4], "order": [0.02, 0.001], "score": [7.0, 8.0]})
    static = ablate_scoring.scored_with_fusion(scored, {"type": "product", "weights": {"click": 1, "order": 1}}, ["click"])
    np.testing.assert_allclose(static["score"], np.log([0.1 * 0.02, 0.4 * 0.001]))
    network = ModelConfig.from_dict({"preset": "dmt-fusion"}).fusion
    assert list(ablate_scoring.scored_with_fusion(scored, network, ["click"])["score"]) == [7.0, 8.0]
    # another static fusion is re-scored on the trained network; the fusion network retrains
    product = ablate.resolved_settings({"model": {"preset": "dmt"}})
    weighted = ablate.resolved_settings({"model": {"preset": "dmt", "fusion": {"type": "weighted"}}})
    fused = ablate.resolved_settings({"model": {"preset": "dmt-fusion"}})
    assert ablate._without_fusion(product) == ablate._without_fusion(weighted)
    assert ablate._without_fusion(product) != ablate._without_fusion(fused)
    slower = ablate.resolved_settings({"model": {"preset": "dmt-fusion", "fusion": {"period": 20}}})
    assert ablate._without_fusion(slower) != ablate._without_fusion(fused)
