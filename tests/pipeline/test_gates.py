"""The data gate's logic without Beam: statistics of hand-built examples, TFX's own validators
(ExampleValidator's and DistributionValidator's executors, as the pipeline runs them) and the
gate that stops a run on their anomalies (pipeline/data_gate.py)."""

import copy
import io
import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_data_validation.statistics import stats_impl
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx.components.distribution_validator import executor as distribution_executor
from tfx.components.example_validator import executor as example_executor
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import io_utils, json_utils
from tfx_bsl.coders import example_coder

import schemas
from models import features as F
from pipeline import data_gate, progress
from pipeline.config import load_config
from pipeline.pipeline import check_data_gate, create_pipeline

SCHEMA = io_utils.SchemaReader().read(schemas.path("schema.pbtxt"))
SECTION = load_config()[data_gate.SECTION]
SCENARIOS = ("NL", "DE", "FR", "PL")


def _example(values: dict) -> bytes:
    """A tf.Example with every feature of the schema (a plausible constant), `values` over them;
    a value None leaves the feature out."""
    example = tf.train.Example()
    for feature in SCHEMA.feature:
        value = values.get(feature.name, "default")
        if value is None:
            continue
        if value == "default":
            size = feature.shape.dim[0].size if feature.shape.dim else 1
            value = {schema_pb2.BYTES: [b"x"] * size, schema_pb2.INT: [1] * size, schema_pb2.FLOAT: [1.0] * size}[
                feature.type]
        kind = {schema_pb2.BYTES: "bytes_list", schema_pb2.INT: "int64_list", schema_pb2.FLOAT: "float_list"}[
            feature.type]
        getattr(example.features.feature[feature.name], kind).value.extend(value)
    return example.SerializeToString()


def _split(seed: int, n: int = 400, scenario_weights=(0.2, 0.35, 0.3, 0.15), price_scale: float = 1.0,
           missing=()) -> bytes:
    """A day of examples: scenarios drawn with `scenario_weights`, 20 categories, log-normal
    prices times `price_scale`; the features in `missing` absent from every example."""
    rng = np.random.default_rng(seed)
    records = [_example({
        F.SCENARIO: [SCENARIOS[rng.choice(4, p=scenario_weights)].encode()],
        F.CATEGORY_ID: [f"c{rng.integers(20)}".encode()],
        F.ITEM_PRICE: [float(rng.lognormal(3.0, 0.5) * price_scale)],
        "user_ctr_7d": [float(rng.beta(2, 40))],
        F.SECONDS_SINCE_LAST_CLICK: [float(rng.uniform(0, F.SECONDS_SINCE_LAST_CLICK_CAP))],
        **{name: None for name in missing}}) for _ in range(n)]
    batch = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(records)
    return stats_impl.generate_statistics_in_memory(batch).SerializeToString()


def _statistics(tmp_path, name: str, splits: dict) -> standard_artifacts.ExampleStatistics:
    """An ExampleStatistics artifact as StatisticsGen writes it: Split-NAME/FeatureStats.pb."""
    artifact = standard_artifacts.ExampleStatistics()
    artifact.uri = str(tmp_path / name)
    for split, serialized in splits.items():
        os.makedirs(os.path.join(artifact.uri, f"Split-{split}"))
        with open(os.path.join(artifact.uri, f"Split-{split}", "FeatureStats.pb"), "wb") as f:
            f.write(serialized)
    artifact.split_names = artifact_utils.encode_split_names(list(splits))
    return artifact


def _anomalies(tmp_path, name: str) -> standard_artifacts.ExampleAnomalies:
    artifact = standard_artifacts.ExampleAnomalies()
    artifact.uri = str(tmp_path / name)
    os.makedirs(artifact.uri)
    return artifact


def _distribution(tmp_path, name, statistics, baseline, comparators, pairs=None) -> str:
    """DistributionValidator's executor, as the pipeline runs it; the anomalies' URI."""
    out = _anomalies(tmp_path, name)
    distribution_executor.Executor().Do(
        {"statistics": [statistics], "baseline_statistics": [baseline] if baseline is not None else []},
        {"anomalies": [out]},
        {"distribution_validator_config": data_gate.validator_config(comparators),
         "include_split_pairs": json_utils.dumps(pairs)})
    return out.uri


def _schema_check(tmp_path, statistics) -> str:
    """ExampleValidator's executor against schemas/schema.pbtxt; the anomalies' URI."""
    schema = standard_artifacts.Schema()
    schema.uri = str(tmp_path / "schema")
    io_utils.write_pbtxt_file(os.path.join(schema.uri, "schema.pbtxt"), SCHEMA)
    out = _anomalies(tmp_path, "schema_anomalies")
    example_executor.Executor().Do({"statistics": [statistics], "schema": [schema]}, {"anomalies": [out]},
                                   {"exclude_splits": json_utils.dumps([])})
    return out.uri


@pytest.fixture(scope="module")
def days():
    """Statistics of clean days (the same world, other samples) and of a drifted one."""
    return {"previous": {"train": _split(1), "eval": _split(2)},
            "clean": {"train": _split(3), "eval": _split(4)},
            "one market": {"train": _split(5), "eval": _split(6, scenario_weights=(1.0, 0, 0, 0))},
            "cents": {"train": _split(7, price_scale=100.0), "eval": _split(8, price_scale=100.0)}}


def _run_gate(tmp_path, days, day: str, previous: str = "previous"):
    """The gate's three checks on `day` against `previous` (None: a first run); the accepted
    statistics' URI when it passed."""
    tmp_path = Path(tempfile.mkdtemp(dir=tmp_path))  # a run's own artifacts
    current = _statistics(tmp_path, day, days[day])
    baseline = _statistics(tmp_path, "baseline", days[previous]) if previous else None
    uris = {"schema": _schema_check(tmp_path, current),
            "drift": _distribution(tmp_path, "drift", current, baseline, SECTION["drift"]),
            "skew": _distribution(tmp_path, "skew", current, current, SECTION["skew"], [data_gate.SKEW_PAIR])}
    accepted = str(tmp_path / "accepted")
    data_gate.gate(current.uri, accepted, uris)
    return accepted


def test_a_clean_day_passes_and_becomes_the_accepted_statistics(tmp_path, days):
    accepted = _run_gate(tmp_path, days, "clean")
    with open(os.path.join(accepted, "Split-eval", "FeatureStats.pb"), "rb") as f:
        assert f.read() == days["clean"]["eval"]


def test_a_first_run_has_no_drift_to_check_and_passes(tmp_path, days):
    # DistributionValidator's rubber stamp without baseline statistics; skew is still checked
    _run_gate(tmp_path, days, "clean", previous=None)
    with pytest.raises(data_gate.DataGateError, match="skew eval_train: scenario"):
        _run_gate(tmp_path, days, "one market", previous=None)


def test_a_market_gone_from_the_newest_day_stops_the_run_naming_the_distance(tmp_path, days):
    with pytest.raises(data_gate.DataGateError) as stopped:
        _run_gate(tmp_path, days, "one market")
    message = str(stopped.value)
    assert message.startswith("data gate: the run stopped before Transform, 2 anomalies")
    lines = message.splitlines()[1:]
    assert [line.split(":")[0].strip() for line in lines] == ["drift eval_eval", "skew eval_train"]
    assert all("scenario: The Linfty distance between" in line and "above the threshold 0.3" in line
               for line in lines)


def test_prices_in_cents_drift_by_jensen_shannon(tmp_path, days):
    # the whole span moved: no skew between its splits, drift against the last accepted span
    with pytest.raises(data_gate.DataGateError) as stopped:
        _run_gate(tmp_path, days, "cents")
    lines = str(stopped.value).splitlines()[1:]
    assert {line.split(":")[0].strip() for line in lines} == {"drift train_train", "drift eval_eval"}
    assert all("item_price: The approximate Jensen-Shannon divergence" in line for line in lines)


def test_a_feature_suddenly_all_missing_is_caught_by_the_schema_presence(tmp_path, days):
    # every feature of the schema has presence min_fraction 1.0: ExampleValidator reports it
    days = dict(days, missing={"train": _split(9, missing=[F.ITEM_PRICE]), "eval": _split(10, missing=[F.ITEM_PRICE])})
    with pytest.raises(data_gate.DataGateError) as stopped:
        _run_gate(tmp_path, days, "missing")
    lines = str(stopped.value).splitlines()[1:]
    schema_lines = [line for line in lines if line.strip().startswith("schema")]
    assert [line.split(":")[0].strip() for line in schema_lines] == ["schema eval", "schema train"]
    assert all("item_price: Column is completely missing" in line for line in schema_lines)
    # the comparisons cannot be done either, and say so
    assert any(line.strip().startswith("drift eval_eval: item_price: Validation could not be done") for line in lines)
    assert not list(tmp_path.glob("*/accepted"))  # a stopped run's statistics never become the reference


def test_the_data_gate_section_is_checked_before_the_run():
    config = load_config()
    check_data_gate(config)  # the defaults
    for section, match in (({"drift": {"l_infinity": {"nope": 0.1}}}, "drift.l_infinity.nope: not a feature"),
                           ({"skew": {"l_infinity": {F.ITEM_PRICE: 0.1}}}, "compares categorical"),
                           ({"skew": {"jensen_shannon": {F.SCENARIO: 0.1}}}, "compares numeric"),
                           ({"drift": {"l_infinity": {F.SCENARIO: 2}}}, "between 0 and 1"),
                           ({"drift": {"wasserstein": {}}}, "l_infinity, jensen_shannon"),
                           ({"schema": "yes"}, "true or false"), ({"skw": None}, "unknown keys")):
        bad = copy.deepcopy(config)
        bad[data_gate.SECTION] = section
        with pytest.raises(ValueError, match=f"`data_gate:` section: .*{match}"):
            check_data_gate(bad)


def test_the_gate_sits_between_the_validators_and_transform(tmp_path):
    def build(section):
        config = load_config()
        config[data_gate.SECTION] = section
        pipeline = create_pipeline("p", str(tmp_path / "root"), str(tmp_path / "logs"), str(tmp_path / "serving"), config)
        return {c.id: c for c in pipeline.components}

    steps = build(SECTION)
    gate = steps[data_gate.GATE_ID]
    assert set(steps["Transform"].upstream_nodes) >= {gate}
    assert set(gate.inputs) == {"statistics", "schema", "drift", "skew"}
    assert gate.inputs["drift"].producer_component_id == data_gate.DRIFT_ID
    drift, skew = steps[data_gate.DRIFT_ID], steps[data_gate.SKEW_ID]
    assert drift.inputs["baseline_statistics"].producer_component_id == data_gate.PREVIOUS_RESOLVER_ID
    assert drift.inputs["baseline_statistics"].is_optional  # a first run compares with nothing
    assert skew.exec_properties["include_split_pairs"] == json_utils.dumps([list(data_gate.SKEW_PAIR)])
    thresholds = {f.path.step[0]: f.distribution_comparator for f in
                  drift.exec_properties["distribution_validator_config"].default_slice_config.feature}
    assert thresholds[F.SCENARIO].infinity_norm.threshold == SECTION["drift"]["l_infinity"][F.SCENARIO]
    assert thresholds[F.ITEM_PRICE].jensen_shannon_divergence.threshold == 0.25
    steps = build({"schema": False, "drift": None, "skew": None})  # every check off: the gate passes through
    assert data_gate.DRIFT_ID not in steps and data_gate.SKEW_ID not in steps
    assert set(steps[data_gate.GATE_ID].inputs) == {"statistics"}


def _run_compiled_gate(tmp_path, days, day: str, reference_uri: str):
    """DataGate's executor as a compiled (Kubeflow) pipeline runs it: no drift step before it,
    the drift checked inside against the statistics accepted at `reference_uri`."""
    tmp_path = Path(tempfile.mkdtemp(dir=tmp_path))
    current = _statistics(tmp_path, day, days[day])
    skew = _distribution(tmp_path, "skew", current, current, SECTION["skew"], [data_gate.SKEW_PAIR])
    skew_artifact = standard_artifacts.ExampleAnomalies()
    skew_artifact.uri = skew
    accepted = standard_artifacts.ExampleStatistics()
    accepted.uri = str(tmp_path / "accepted")
    data_gate.DataGate.EXECUTOR_SPEC.executor_class().Do(
        {"statistics": [current], "skew": [skew_artifact]}, {"accepted": [accepted]},
        {"drift_reference_uri": reference_uri, "drift_comparators": json.dumps(SECTION["drift"])})
    return accepted


def test_a_compiled_gate_checks_the_drift_against_the_statistics_it_accepted_at_a_known_uri(tmp_path, days):
    """pipeline/data_gate.py `drift_against`: Kubeflow cannot resolve the last accepted statistics."""
    reference = str(tmp_path / "accepted_statistics")
    _run_compiled_gate(tmp_path, days, "cents", reference)  # nothing accepted yet: no drift to check
    with open(os.path.join(reference, "Split-eval", "FeatureStats.pb"), "rb") as f:
        assert f.read() == days["cents"]["eval"]
    # the next day in euros again: every split drifted from the accepted cents
    with pytest.raises(data_gate.DataGateError) as stopped:
        _run_compiled_gate(tmp_path, days, "clean", reference)
    lines = str(stopped.value).splitlines()[1:]
    assert {line.split(":")[0].strip() for line in lines} == {"drift train_train", "drift eval_eval"}
    with open(os.path.join(reference, "Split-eval", "FeatureStats.pb"), "rb") as f:
        assert f.read() == days["cents"]["eval"]  # a stopped run's statistics never become the reference
    # statistics half-copied by a failed step (no split names file) are not compared with
    os.remove(os.path.join(reference, data_gate.REFERENCE_SPLITS_FILE))
    accepted = _run_compiled_gate(tmp_path, days, "clean", reference)
    assert accepted.split_names == artifact_utils.encode_split_names(list(days["clean"]))
    _run_compiled_gate(tmp_path, days, "previous", reference)  # a clean day after a clean day
    with pytest.raises(data_gate.DataGateError, match="drift eval_eval: scenario"):
        _run_compiled_gate(tmp_path, days, "one market", reference)


def test_a_failed_step_is_shown_as_failed():
    now = iter([0.0, 3.5])
    out = io.StringIO()
    handler = progress.ComponentProgress(out, clock=lambda: next(now))
    for msg, args in ((progress.RUNNING, ("DataGate",)), (progress.FAILED, (12,))):
        handler.emit(logging.LogRecord("absl", logging.ERROR, __file__, 1, msg, args, None))
    assert out.getvalue().split() == ["DataGate", "failed", "3.5", "s"]
