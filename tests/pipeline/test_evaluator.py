"""The Evaluator's blessing (pipeline/pipeline.py's eval_config): per task and per metric
thresholds, TFMA's query metrics per request. The gate is run through TFX's own Evaluator
executor on two small SavedModels and a few hundred examples."""

import json
import os
from typing import List

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
from tfx.components.evaluator import executor as evaluator_executor
from tfx.types import standard_artifacts
from tfx.utils import path_utils, proto_utils

from models import features as F
from models import metrics
from pipeline import evaluator_metrics
from pipeline.config import load_config
from pipeline.pipeline import blessing_thresholds, check_model_sections, compares_with_baseline, eval_config

REQUESTS, ITEMS = 60, 10


def test_thresholds_merge_the_auc_shorthand_with_per_task_bounds():
    evaluator = {"min_auc": 0.5, "max_auc_drop": 0.001, "ndcg_top_k": [4],
                 "thresholds": {"*": {"NDCG": {"min": 0.1}}, "order": {"NDCG": {"max_drop": 0.0},
                                                                      "BinaryCrossEntropy": {"max_rise": 0.01}}}}
    found = blessing_thresholds(evaluator, ["click", "order"])
    assert found == {"click": {"AUC": {"min": 0.5, "max_drop": 0.001}, "NDCG": {"min": 0.1}},
                     "order": {"AUC": {"min": 0.5, "max_drop": 0.001}, "NDCG": {"min": 0.1, "max_drop": 0.0},
                               "BinaryCrossEntropy": {"max_rise": 0.01}}}
    assert compares_with_baseline(evaluator, ["click", "order"])
    assert not compares_with_baseline({"min_auc": 0.5, "max_auc_drop": None}, ["click"])
    config = eval_config(["click", "order"], evaluator)
    [order_ndcg] = [s for s in config.metrics_specs if s.output_names == ["order"] and s.metrics[0].class_name == "NDCG"]
    assert order_ndcg.query_key == F.REQUEST_ID and list(order_ndcg.binarize.top_k_list.values) == [4]
    [ndcg] = order_ndcg.metrics
    assert json.loads(ndcg.config) == {"gain_key": "order"}
    threshold = ndcg.per_slice_thresholds[0].threshold
    assert threshold.value_threshold.lower_bound.value == 0.1
    assert threshold.change_threshold.direction == tfma.MetricDirection.HIGHER_IS_BETTER
    loss = [m for s in config.metrics_specs if s.output_names == ["order"] and not s.query_key
            for m in s.metrics if m.class_name == "BinaryCrossEntropy"][0]
    assert loss.per_slice_thresholds[0].threshold.change_threshold.direction == tfma.MetricDirection.LOWER_IS_BETTER


@pytest.mark.parametrize("thresholds, message", [
    ({"dwell": {"AUC": {"min": 0.5}}}, "'dwell' is not a task"),
    ({"click": {"NDGC": {"min": 0.5}}}, "unknown metric 'NDGC'"),
    ({"click": {"NDCG": {"minimum": 0.5}}}, "keys among min, max"),
    ({"click": {"NDCG": {"max_drop": 0.1, "max_rise": 0.1}}}, "not both"),
])
def test_a_bad_threshold_fails_before_the_run(thresholds, message):
    config = load_config()
    config["evaluator"]["thresholds"] = thresholds
    with pytest.raises(ValueError, match=message) as raised:
        check_model_sections(config)
    assert "`evaluator:` section" in str(raised.value)


def _examples(path: str, seed: int = 0) -> List[dict]:
    """REQUESTS requests of ITEMS items. Request q's items are clicked by `quality`: its top
    k_q items, k_q growing with the request's base rate. `candidate_logit` follows the base rate
    across requests but reverses the order within each request; `baseline_logit` orders each
    request's items right but adds a large random offset per request. Returns the rows written."""
    rng = np.random.default_rng(seed)
    rows = []
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for q in range(REQUESTS):
            rate = rng.uniform(0.05, 0.9)
            clicked = max(1, int(round(rate * ITEMS)))
            offset = rng.uniform(-6.0, 6.0)
            for rank, quality in enumerate(sorted(rng.uniform(size=ITEMS), reverse=True)):
                rows.append({"user": f"u{q % 7}", "click": int(rank < clicked),
                             "candidate_logit": 4.0 * (rate - 0.5) + 0.05 * rank})
                feature = {
                    F.USER_ID: tf.train.Feature(bytes_list=tf.train.BytesList(value=[rows[-1]["user"].encode()])),
                    F.REQUEST_ID: tf.train.Feature(bytes_list=tf.train.BytesList(value=[f"r{q}".encode()])),
                    F.SCENARIO: tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"home" if q % 2 else b"search"])),
                    F.PAGE: tf.train.Feature(int64_list=tf.train.Int64List(value=[1 + rank // 5])),
                    F.CLICK: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(rank < clicked)])),
                    "candidate_logit": tf.train.Feature(float_list=tf.train.FloatList(
                        value=[rows[-1]["candidate_logit"]])),
                    "baseline_logit": tf.train.Feature(float_list=tf.train.FloatList(value=[offset + quality])),
                }
                writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return rows


class _Ranker(tf.Module):
    """A SavedModel with a `serving_default` over serialized tf.Examples whose click probability is
    the sigmoid of one of the examples' features."""

    def __init__(self, logit_feature: str):
        super().__init__()
        self._feature = logit_feature

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(self, examples):
        parsed = tf.io.parse_example(examples, {self._feature: tf.io.FixedLenFeature([1], tf.float32)})
        probability = tf.sigmoid(parsed[self._feature])
        # two outputs, as funnel's models have: TFMA unwraps a single output's dict
        return {F.CLICK: probability, "score": probability}


def _model(root, name: str, logit_feature: str):
    artifact = standard_artifacts.Model()
    artifact.uri = str(root / name)
    module = _Ranker(logit_feature)
    tf.saved_model.save(module, path_utils.serving_model_path(artifact.uri),
                        signatures={"serving_default": module.serve})
    return artifact


@pytest.mark.parametrize("ndcg_bound", [False, True])
def test_the_evaluator_refuses_a_model_better_on_auc_but_under_the_ndcg_bound(tmp_path, ndcg_bound):
    """Without an NDCG bound the candidate is blessed (its AUC is better); with one, refused."""
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")
    examples.split_names = json.dumps([F.EVAL_SPLIT])
    rows = pd.DataFrame(_examples(os.path.join(examples.uri, f"Split-{F.EVAL_SPLIT}", "data.tfrecord")))
    evaluator = {"min_auc": 0.5, "max_auc_drop": 0.001, "ndcg_top_k": [4, 10],
                 "thresholds": {"click": {"NDCG": {"max_drop": 0.01}}} if ndcg_bound else {}}
    evaluation, blessing = standard_artifacts.ModelEvaluation(), standard_artifacts.ModelBlessing()
    evaluation.uri, blessing.uri = str(tmp_path / "evaluation"), str(tmp_path / "blessing")
    evaluator_executor.Executor().Do(
        {"examples": [examples], "model": [_model(tmp_path, "candidate", "candidate_logit")],
         "baseline_model": [_model(tmp_path, "baseline", "baseline_logit")]},
        {"evaluation": [evaluation], "blessing": [blessing]},
        {"eval_config": proto_utils.proto_to_json(eval_config([F.CLICK], evaluator)),
         "example_splits": json.dumps([F.EVAL_SPLIT]), "fairness_indicator_thresholds": "null"})

    figures = evaluator_metrics.read_metrics(evaluation.uri)
    candidate, baseline = figures[tfma.CANDIDATE_KEY]["all"][F.CLICK], figures[tfma.BASELINE_KEY]["all"][F.CLICK]
    # the premise: the candidate wins on AUC and loses on NDCG
    assert candidate["auc"] > baseline["auc"] + 0.05
    assert candidate["ndcg@10"] < baseline["ndcg@10"] - 0.1 and baseline["ndcg@4"] == pytest.approx(1.0)
    # the requests' sizes (evaluator_metrics.RequestStatistics), per scenario too
    assert (candidate["total_queries"], candidate["total_documents"]) == (REQUESTS, REQUESTS * ITEMS)
    assert candidate["min_documents"] == candidate["max_documents"] == ITEMS
    assert figures[tfma.CANDIDATE_KEY]["scenario=home"][F.CLICK]["total_queries"] == REQUESTS // 2
    # GAUC per user (evaluator_metrics.GroupAUC) as the report computes it
    expected = metrics.gauc(rows["click"], 1 / (1 + np.exp(-rows["candidate_logit"].to_numpy(np.float32))), rows["user"])
    assert candidate["gauc"] == pytest.approx(expected, abs=1e-6)

    assert os.path.exists(os.path.join(blessing.uri, "NOT_BLESSED" if ndcg_bound else "BLESSED"))
    assert not os.path.exists(os.path.join(blessing.uri, "BLESSED" if ndcg_bound else "NOT_BLESSED"))
    failures = evaluator_metrics.validation_failures(evaluation.uri)
    if ndcg_bound:  # the NDCG bound failed for both k, and only it
        assert sorted(f.split(" on ")[0] for f in failures) == [f"{F.CLICK} ndcg@10", f"{F.CLICK} ndcg@4"], failures
    else:
        assert failures == []


def test_an_evaluation_without_validation_or_metrics_reads_as_empty(tmp_path):
    # an Evaluator with no bounds writes no validation result: nothing failed
    assert evaluator_metrics.validation_failures(str(tmp_path)) == []
    assert evaluator_metrics.read_metrics(str(tmp_path)) == {}
