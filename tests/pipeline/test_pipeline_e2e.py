"""End to end: a tiny simulated world through the whole TFX pipeline on LocalDagRunner."""

import glob
import json
import math
import os

import pytest
import tensorflow_model_analysis as tfma

from models import metrics
from pipeline import report
from serving.batch_predict import predict
from tests.saved_models import saved_variables

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def run(e2e_run):
    return e2e_run


def test_ingest_writes_train_and_eval_examples(run):
    _, pipeline_root = run
    splits = sorted(os.path.basename(p) for p in glob.glob(os.path.join(pipeline_root, "Ingest", "examples", "*", "Split-*")))
    assert splits == ["Split-eval", "Split-train"]
    with open(glob.glob(os.path.join(pipeline_root, "Ingest", "ingest_report", "*", "ingest_report.json"))[0]) as f:
        ingest = json.load(f)
    assert ingest["records_quarantined"] == 0 and ingest["balanced"]
    assert 0 < ingest["labels"]["click"] < ingest["examples"]["train"] + ingest["examples"]["eval"]


def test_statistics_and_validation_find_no_anomalies(run):
    _, pipeline_root = run
    assert report.anomalies(report.run_store(pipeline_root)) == {"eval": [], "train": []}


def test_model_is_blessed_and_pushed_as_a_complete_version(run):
    root, pipeline_root = run
    assert glob.glob(os.path.join(pipeline_root, "Evaluator", "blessing", "*", "BLESSED"))
    versions = os.listdir(root / "work" / "serving")
    assert len(versions) == 1 and versions[0].isdigit()  # no staging directory left behind
    assert os.path.exists(root / "work" / "serving" / versions[0] / "saved_model.pb")


def test_pushed_model_has_signatures_and_no_bias_tower_variables(run):
    import tensorflow as tf

    root, _ = run
    version = root / "work" / "serving" / os.listdir(root / "work" / "serving")[0]
    loaded = tf.saved_model.load(str(version))
    names = [v.name for v in saved_variables(loaded.serving.network)]  # layer-scoped names, e.g. network/immoe/...
    assert any("immoe" in n for n in names) and not [n for n in names if "bias_tower" in n]
    assert set(loaded.signatures) == {"serving_default", "rank", "transform_features"}
    assert list(loaded.signatures["serving_default"].structured_input_signature[1]) == ["examples"]


def test_serving_signature_equals_the_training_time_transform(run):
    """No training/serving skew: the Transform component's materialized (Beam) output fed to
    the exported network equals `serving_default` on the same serialized raw examples."""
    import numpy as np
    import tensorflow as tf
    import tensorflow_transform as tft

    root, pipeline_root = run
    version = root / "work" / "serving" / os.listdir(root / "work" / "serving")[0]
    loaded = tf.saved_model.load(str(version))
    transform_dir = glob.glob(os.path.join(pipeline_root, "Transform", "transform_graph", "*"))[0]
    spec = tft.TFTransformOutput(transform_dir).transformed_feature_spec()
    transformed = glob.glob(os.path.join(pipeline_root, "Transform", "transformed_examples", "*", "Split-eval", "*"))
    training_path = {}
    for batch in tf.data.TFRecordDataset(transformed, compression_type="GZIP").batch(512):
        features = tf.io.parse_example(batch, spec)
        signature = loaded.serving.serve.concrete_functions[0].structured_input_signature[0][0]
        inputs = {name: features[name] for name in signature}
        outputs = loaded.serving.serve(inputs)
        for i, impression_id in enumerate(features["impression_id"].numpy().ravel()):
            training_path[impression_id.decode()] = {k: float(v.numpy()[i, 0]) for k, v in outputs.items()}
    raw = glob.glob(os.path.join(pipeline_root, "Ingest", "examples", "*", "Split-eval", "*"))
    compared = 0
    for batch in tf.data.TFRecordDataset(raw, compression_type="GZIP").batch(512):
        outputs = loaded.signatures["serving_default"](examples=batch)
        ids = tf.io.parse_example(batch, {"impression_id": tf.io.FixedLenFeature([1], tf.string)})["impression_id"]
        for i, impression_id in enumerate(ids.numpy().ravel()):
            expected = training_path[impression_id.decode()]
            for name, value in outputs.items():
                assert np.isclose(value.numpy()[i, 0], expected[name], rtol=1e-5, atol=1e-6), (impression_id, name)
            compared += 1
    assert compared == len(training_path) > 0


def test_predict_reproduces_the_evaluator_auc(run, tmp_path):
    root, pipeline_root = run
    version = os.listdir(root / "work" / "serving")[0]
    scored = predict(str(root / "work" / "serving" / version), str(root / "logs"), str(tmp_path / "p.jsonl"),
                     days=1, beam_args=["--direct_running_mode=in_memory", "--direct_num_workers=1"])
    evaluation = tfma.load_eval_result(glob.glob(os.path.join(pipeline_root, "Evaluator", "evaluation", "*"))[0])
    overall = dict(evaluation.slicing_metrics)[()]
    truth = report.read_truth(str(root / "logs"))
    labelled = scored.merge(
        report.score_examples(str(root / "work" / "serving" / version),
                              sorted(glob.glob(os.path.join(pipeline_root, "Ingest", "examples", "*", "Split-eval", "*"))),
                              ("click",))[["impression_id", "label_click"]], on="impression_id")
    assert len(labelled) == len(scored) and truth is not None
    tfma_auc = overall["click"][""]["auc"]["doubleValue"]
    # TFMA's AUC is a 10,000-threshold approximation of the exact rank AUC.
    assert metrics.auc(labelled["label_click"], labelled["click"]) == pytest.approx(tfma_auc, abs=2e-3)
    with open(tmp_path / "p.jsonl") as f:
        first = json.loads(f.readline())
    assert list(first) == ["impression_id", "click", "order", "score"]


@pytest.fixture(scope="module")
def summary(run):
    """The run's printed summary; it also writes WORK/report.json and WORK/tensorboard/<run>."""
    root, pipeline_root = run
    return report.summarize(pipeline_root, str(root / "logs"), str(root / "work"))


def test_report_table(run, summary):
    root, pipeline_root = run
    text = summary
    assert "dnn-base" in text and "RelaImpr" in text and "cal@pos1" in text
    with open(root / "work" / "report.json") as f:
        result = json.load(f)
    logged_row = "dmt" + report.LOGGED_SUFFIX
    assert result["rows"] == {"model": "dmt", "baseline": "dnn-base", "logged": logged_row}
    # the served probabilities are the network's at the reference context (for the default
    # tower: position 1, page 1, no same-category neighbour), its bias logit folded in
    assert result["calibration"]["calibration"]["type"] == "reference"
    reference_bias_logit = result["calibration"]["reference_bias_logit"]
    assert math.isfinite(reference_bias_logit) and reference_bias_logit != 0
    for model in ("dmt", "dnn-base", logged_row):
        for task in ("click", "order"):
            assert 0.0 <= result["models"][model][task]["auc"] <= 1.0
            assert 0.0 < result["models"][model][task]["oracle_auc"] <= 1.0
    # the served models are also measured against the position-free click oracle, the
    # training-time model (with the bias tower) only against the logged one
    assert "relevance_efficiency" in result["models"]["dmt"]["click"]
    assert "relevance_efficiency" not in result["models"][logged_row]["click"]
    assert result["models"]["dmt"]["click"]["calibration@1"] > 0
    served, logged = result["models"]["dmt"]["click"], result["models"][logged_row]["click"]
    assert served["oracle_auc"] == logged["oracle_auc"] and 0.0 < served["relevance_oracle_auc"] <= 1.0
    assert set(result["rela_impr"]) == {"click", "order"}
    # each RelaImpr with DeLong's paired test of the same two AUCs
    for key, row in (("rela_impr_test", logged_row), ("rela_impr_served_test", "dmt")):
        assert set(result[key]) == {"click", "order"}
        click = result[key]["click"]
        assert click["difference"] == pytest.approx(
            result["models"][row]["click"]["auc"] - result["models"]["dnn-base"]["click"]["auc"])
        assert 0.0 <= click["p_value"] <= 1.0 and click["standard_error"] > 0
    # every report ranks the eval requests by each served network's score and outputs, by the
    # logging policy and by the truth itself, judged on the position-free probabilities
    ranking = result["ranking"]
    for name in ("dmt score", "dmt click", "dmt order", "dnn-base score", report.LOGGING_POLICY,
                 "truth (click)", "truth (order)"):
        assert set(ranking[name]) == {"purchase_ndcg@10", "click_ndcg@10", "click_expected_auc", "click_efficiency"}
    assert ranking["truth (click)"]["click_efficiency"] == pytest.approx(1.0)
    assert ranking["truth (click)"]["click_ndcg@10"] == pytest.approx(1.0)
    assert ranking["truth (order)"]["purchase_ndcg@10"] == pytest.approx(1.0)
    for name, values in ranking.items():
        assert 0.0 < values["purchase_ndcg@10"] <= 1.0 + 1e-9 and 0.0 < values["click_expected_auc"] < 1.0, name
    assert "judged on the truth" in text and report.LOGGING_POLICY in text


def test_report_slices_by_scenario_and_page(run, summary):
    root, _ = run
    with open(root / "work" / "report.json") as f:
        result = json.load(f)
    slices = result["slices"]["dmt"]
    assert "page=1" in slices and any(name.startswith("scenario=") for name in slices)
    total = sum(values["click"]["examples"] for name, values in slices.items() if name.startswith("page"))
    assert total == result["eval_examples"]


def test_tensorboard_serves_the_runs_curves_and_figures(run, summary):
    """TensorBoard on the run directory: per task the training and evaluation tags, PR curves and
    HParams, and a scalar equal to report.json's (through TensorBoard's HTTP API)."""
    from pipeline import dashboard
    from tests.pipeline.test_dashboard import board_checks
    from tests.ports import free_ports

    root, _ = run
    with open(root / "work" / "report.json") as f:
        result = json.load(f)
    [run_dir] = os.listdir(root / "work" / "tensorboard")
    assert f"tensorboard: {root / 'work' / 'tensorboard' / run_dir}" in summary
    [port] = free_ports(1)
    dashboard.launch(str(root / "work" / "tensorboard"), "127.0.0.1", port)
    board_checks(f"http://127.0.0.1:{port}/", run_dir, result, ["click", "order"], ["dmt", "dnn-base"],
                 gated_rows=["dmt"], attention_rows=["dmt"])  # DNN(Base): a shared bottom, no decoders


def test_report_reads_the_evaluators_figures_and_replays_an_ab_test(run, summary):
    """report.json carries the Evaluator's own (TFMA) figures, query metrics included, and the
    simulated A/B test of the model against the baseline; the summary prints both."""
    root, _ = run
    with open(root / "work" / "report.json") as f:
        result = json.load(f)
    evaluator = result["evaluator"]
    assert evaluator["failures"] == [] and result["blessed"]
    for task in ("click", "order"):
        overall = evaluator["candidate"]["all"][task]
        assert {"auc", "gauc", "binary_crossentropy", "calibration", "ndcg@4", "ndcg@10", "min_label_position"} <= set(overall)
        # (the tiny world's eval day has a few orders: no order in any request's top 4 is possible)
        assert 0.0 <= overall["ndcg@4"] <= overall["ndcg@10"] <= 1.0 and overall["min_label_position"] >= 1.0
        assert 0.0 <= overall["gauc"] <= 1.0
    # TFMA's AUC (10,000 thresholds) and the report's exact one, on the same eval split (the
    # order task's handful of positives among probabilities under 0.01 share thresholds: not it)
    assert evaluator["candidate"]["all"]["click"]["auc"] == pytest.approx(result["models"]["dmt"]["click"]["auc"],
                                                                          abs=2e-3)
    requests = evaluator["candidate"]["all"]["click"]
    assert requests["ndcg@4"] > 0
    assert requests["total_documents"] == result["eval_examples"] and requests["total_queries"] >= 1
    assert any(name.startswith("scenario=") for name in evaluator["candidate"])
    assert "Evaluator (TFMA" in summary
    ab = result["abtest"]
    assert ab["arms"]["A"]["model"] == "dnn-base" and ab["arms"]["B"]["model"] == "dmt"
    assert ab["impressions"] <= result["eval_examples"] and set(ab["lift"]) >= {"clicks", "orders", "gmv"}
    assert "simulated A/B on" in summary


def test_report_page_renders_in_headless_chromium(run, summary, tmp_path):
    """WORK/report.html of the run: self-contained, its tables rendered and no image broken."""
    from PIL import Image

    from tests import browser
    from tests.pipeline.test_report_page import image_counts, tables_of

    root, _ = run
    path = root / "work" / "report.html"
    assert f"report page: {path}" in summary
    page = path.read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page
    dom, screenshot = browser.render(str(path), str(tmp_path))
    assert len(Image.open(screenshot).convert("RGB").getcolors(maxcolors=1 << 20)) > 100
    tables = tables_of(dom)
    # metrics, RelaImpr, the Evaluator, truth ranking, slices, A/B
    assert len(tables) == 6 and all(table.count("<tr") >= 2 for table in tables)
    loaded, total = image_counts(dom)
    assert loaded == total >= 3  # a figure per task (click, order) and DMT's gates
