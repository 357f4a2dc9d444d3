"""The data gate: a run whose examples break the schema, drifted from the last accepted run or
are skewed between train and eval stops before Transform (README "Data and model gates").

The comparisons are TFX's DistributionValidator (TFDV's drift comparators: L-infinity distance
on categorical features, Jensen-Shannon divergence on numeric ones), configured by the
`data_gate:` section; ExampleValidator checks the schema. TFX's validators only record
anomalies, they never stop a run: `DataGate` (below) reads their anomalies and raises
DataGateError with a readable summary, and Transform waits for it. When it passes it publishes
the run's statistics as the accepted ones, which the next run's drift check compares against
(a stopped run's statistics never become the reference, so re-running a drifted date still
stops). A compiled (Kubeflow) pipeline keeps them at a known URI instead and DataGate checks the
drift itself (`drift_against`).
"""

import json
import os
import tempfile
from typing import Any, Dict, List, Optional

from tensorflow.io import gfile
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2
from tfx import v1 as tfx
# DistributionValidator is not in tfx.v1's public API (TFX 1.16) but is TFX's own component
from tfx.components.distribution_validator import executor as distribution_executor
from tfx.components.distribution_validator.component import DistributionValidator
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.proto import distribution_validator_pb2
from tfx.types import standard_artifacts
from tfx.utils import io_utils

from models import features as F

SECTION = "data_gate"
GATE_ID = "DataGate"
ACCEPTED = "accepted"  # DataGate's output: the accepted run's statistics
PREVIOUS_RESOLVER_ID = "previous_accepted_statistics_resolver"
DRIFT_ID, SKEW_ID = "DriftValidator", "SkewValidator"
# Comparator keys of a `drift:` / `skew:` section -> the TFDV comparator they set.
COMPARATORS = {"l_infinity": "infinity_norm", "jensen_shannon": "jensen_shannon_divergence"}
# Skew: the eval split (the newest days) against the train split (the days before it) of the
# same run: the days the Evaluator judges a model on must look like the days it learnt from.
SKEW_PAIR = (F.EVAL_SPLIT, F.TRAIN_SPLIT)
ANOMALIES_FILE = "SchemaDiff.pb"  # what ExampleValidator and DistributionValidator write per split


class DataGateError(RuntimeError):
    """The data gate stopped the run; the message is the readable anomalies summary."""


def _feature_types(schema: schema_pb2.Schema) -> Dict[str, int]:
    return {feature.name: feature.type for feature in schema.feature}


def check(section: Optional[Dict[str, Any]], schema: schema_pb2.Schema) -> None:
    """ValueError naming the key when the `data_gate:` section is not valid: `schema` a boolean,
    `drift` and `skew` null or {l_infinity | jensen_shannon: {FEATURE: threshold}}, L-infinity on
    a categorical (BYTES) feature and Jensen-Shannon on a numeric one of the schema."""
    section = section or {}
    unknown = set(section) - {"schema", "drift", "skew"}
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)} (schema, drift, skew)")
    if not isinstance(section.get("schema", True), bool):
        raise ValueError(f"schema: true or false, got {section['schema']!r}")
    types = _feature_types(schema)
    for kind in ("drift", "skew"):
        comparators = section.get(kind) or {}
        if not isinstance(comparators, dict) or set(comparators) - set(COMPARATORS):
            raise ValueError(f"{kind}: null or a mapping with keys among {', '.join(COMPARATORS)}, "
                             f"got {comparators!r}")
        for name, thresholds in comparators.items():
            for feature, threshold in (thresholds or {}).items():
                where = f"{kind}.{name}.{feature}"
                if feature not in types:
                    raise ValueError(f"{where}: not a feature of the schema")
                categorical = types[feature] == schema_pb2.BYTES
                if (name == "l_infinity") != categorical:
                    raise ValueError(f"{where}: {'L-infinity' if name == 'l_infinity' else 'Jensen-Shannon'} "
                                     f"compares {'categorical (string)' if name == 'l_infinity' else 'numeric'} "
                                     "features")
                if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not 0 <= threshold <= 1:
                    raise ValueError(f"{where}: a threshold between 0 and 1, got {threshold!r}")


def validator_config(comparators: Dict[str, Dict[str, float]]) -> distribution_validator_pb2.DistributionValidatorConfig:
    """DistributionValidator's config: one comparator per configured feature and threshold."""
    config = distribution_validator_pb2.DistributionValidatorConfig()
    by_feature: Dict[str, schema_pb2.FeatureComparator] = {}
    for name, thresholds in comparators.items():
        for feature, threshold in (thresholds or {}).items():
            comparator = by_feature.setdefault(feature, schema_pb2.FeatureComparator())
            getattr(comparator, COMPARATORS[name]).threshold = float(threshold)
    for feature, comparator in sorted(by_feature.items()):
        entry = config.default_slice_config.feature.add()
        entry.path.step.append(feature)
        entry.distribution_comparator.CopyFrom(comparator)
    return config


def read_anomalies(uri: str) -> Dict[str, anomalies_pb2.Anomalies]:
    """Split (ExampleValidator: `train`) or split pair (DistributionValidator: `eval_train`) ->
    the Anomalies proto its validator wrote under `uri`."""
    found = {}
    for path in sorted(gfile.glob(os.path.join(uri, "*", ANOMALIES_FILE))):
        message = anomalies_pb2.Anomalies()
        with gfile.GFile(path, "rb") as f:
            message.ParseFromString(f.read())
        split = os.path.basename(os.path.dirname(path)).split("-", 1)[-1]  # Split-train, SplitPair-eval_train
        found[split] = message
    return found


def describe(kind: str, split: str, anomalies: anomalies_pb2.Anomalies) -> List[str]:
    """One readable line per anomaly: `drift eval_eval: scenario: The Linfty distance ...`.
    DistributionValidator keeps only the reasons' descriptions (with the measured distance and
    the threshold); ExampleValidator has a summary per feature."""
    lines = []
    for feature, info in sorted(anomalies.anomaly_info.items()):
        reasons = [r.description or r.short_description for r in info.reason] or [info.description]
        lines.append(f"{kind} {split}: {feature}: " + " ".join(reasons))
    dataset = anomalies.dataset_anomaly_info
    lines += [f"{kind} {split}: dataset: {r.description or r.short_description}" for r in dataset.reason]
    return lines


def summary(findings: Dict[str, Dict[str, anomalies_pb2.Anomalies]]) -> List[str]:
    """The readable lines of every anomaly of `findings` (check -> split -> Anomalies)."""
    return [line for kind, by_split in findings.items() for split, anomalies in by_split.items()
            for line in describe(kind, split, anomalies)]


def stop_message(lines: List[str]) -> str:
    return (f"data gate: the run stopped before Transform, {len(lines)} anomal{'y' if len(lines) == 1 else 'ies'} "
            f"(thresholds: the `{SECTION}:` section)\n" + "\n".join(f"  {line}" for line in lines))


def gate(statistics_uri: str, accepted_uri: str, anomalies_uris: Dict[str, str],
         reference_uri: Optional[str] = None, split_names: str = "") -> None:
    """Raises DataGateError with the summary when any check's anomalies (check -> the URI of its
    validator's anomalies) hold one; else copies the statistics under `statistics_uri` to
    `accepted_uri` (the accepted run's, the next drift check's reference; a copy, as an artifact
    has one producer) and, given a `reference_uri` (compiled pipelines: `drift_against`), there
    too, with their `split_names`."""
    lines = summary({kind: read_anomalies(uri) for kind, uri in anomalies_uris.items()})
    if lines:
        raise DataGateError(stop_message(lines))
    io_utils.copy_dir(statistics_uri, accepted_uri)
    if reference_uri:
        publish_reference(statistics_uri, split_names, reference_uri)


# The accepted statistics at a known URI (compiled pipelines, `drift_against`): the file naming
# their splits is written last and removed first, so statistics half-copied by a failed step are
# never compared with (the next run's drift check then passes, as a first run's does).
REFERENCE_SPLITS_FILE = "split_names.json"


def publish_reference(statistics_uri: str, split_names: str, reference_uri: str) -> None:
    """Replaces the statistics at `reference_uri` by those under `statistics_uri`."""
    marker = os.path.join(reference_uri, REFERENCE_SPLITS_FILE)
    if gfile.exists(marker):
        gfile.remove(marker)
    if gfile.exists(reference_uri):
        gfile.rmtree(reference_uri)
    io_utils.copy_dir(statistics_uri, reference_uri)
    io_utils.write_string_file(marker, split_names)


def drift_against(statistics: standard_artifacts.ExampleStatistics, reference_uri: str,
                  comparators: Dict[str, Dict[str, float]], work_dir: str) -> str:
    """The drift check of a compiled pipeline: TFX's DistributionValidator executor (what the
    local pipeline runs as a step) comparing `statistics` with the accepted statistics at
    `reference_uri` (none there: its rubber stamp, as on a first run). Kubeflow Pipelines V2
    cannot resolve the last accepted statistics from ML Metadata (kubeflow_runner.drift_reference_uri).
    Returns the URI of the anomalies, under `work_dir`."""
    marker = os.path.join(reference_uri, REFERENCE_SPLITS_FILE)
    baseline = []
    if gfile.exists(marker):
        reference = standard_artifacts.ExampleStatistics()
        reference.uri = reference_uri
        reference.split_names = io_utils.read_string_file(marker)
        baseline = [reference]
    anomalies = standard_artifacts.ExampleAnomalies()
    anomalies.uri = os.path.join(work_dir, "drift_anomalies")
    gfile.makedirs(anomalies.uri)
    distribution_executor.Executor().Do(
        {"statistics": [statistics], "baseline_statistics": baseline}, {"anomalies": [anomalies]},
        {"distribution_validator_config": validator_config(comparators), "include_split_pairs": "null"})
    return anomalies.uri


# The checks' anomalies, each present only when checked: `schema` (ExampleValidator's, against
# schemas/schema.pbtxt), `drift` (this run's splits against the last accepted run's) and `skew`
# (eval against train).
@component
def DataGate(  # pylint: disable=invalid-name  (TFX names the component after the function)
        statistics: InputArtifact[standard_artifacts.ExampleStatistics],
        accepted: OutputArtifact[standard_artifacts.ExampleStatistics],
        schema: InputArtifact[standard_artifacts.ExampleAnomalies] = None,
        drift: InputArtifact[standard_artifacts.ExampleAnomalies] = None,
        skew: InputArtifact[standard_artifacts.ExampleAnomalies] = None,
        drift_reference_uri: Parameter[str] = "",
        drift_comparators: Parameter[str] = ""):
    """`gate` on the run's statistics and the checks' anomalies. A compiled pipeline's drift check
    runs here instead (`drift_against`: `drift_comparators`, the `drift:` section as JSON, against
    the statistics accepted at `drift_reference_uri`)."""
    uris = {kind: artifact.uri for kind, artifact in (("schema", schema), ("drift", drift), ("skew", skew))
            if artifact is not None}
    with tempfile.TemporaryDirectory() as work:
        if drift_reference_uri and drift_comparators:
            uris["drift"] = drift_against(statistics, drift_reference_uri, json.loads(drift_comparators), work)
        gate(statistics.uri, accepted.uri, uris, drift_reference_uri or None, statistics.split_names)
    accepted.split_names = statistics.split_names


def steps(section: Optional[Dict[str, Any]], statistics, validator, drift_reference_uri: Optional[str] = None) -> list:
    """The gate's nodes, DataGate last: the Resolver of the last accepted statistics and the
    DistributionValidators of the configured `drift` and `skew` comparisons. A first run (nothing
    accepted yet) has no drift to check; DistributionValidator then passes (TFX's rubber stamp).
    With `drift_reference_uri` (compiled pipelines) no Resolver: DataGate checks the drift against
    the statistics accepted there and replaces them when it passes."""
    section = section or {}
    nodes, checks, parameters = [], {}, {}
    if section.get("schema", True):
        checks["schema"] = validator.outputs["anomalies"]
    if section.get("drift") and drift_reference_uri:
        parameters = {"drift_reference_uri": drift_reference_uri,
                      "drift_comparators": json.dumps(section["drift"], sort_keys=True)}
    elif section.get("drift"):
        previous = tfx.dsl.Resolver(
            strategy_class=tfx.dsl.experimental.LatestArtifactStrategy,
            statistics=tfx.dsl.Channel(type=standard_artifacts.ExampleStatistics, producer_component_id=GATE_ID,
                                       output_key=ACCEPTED),
        ).with_id(PREVIOUS_RESOLVER_ID)
        drift = DistributionValidator(
            statistics=statistics.outputs["statistics"],
            baseline_statistics=previous.outputs["statistics"].as_optional(),
            config=validator_config(section["drift"])).with_id(DRIFT_ID)
        nodes += [previous, drift]
        checks["drift"] = drift.outputs["anomalies"]
    if section.get("skew"):
        skew = DistributionValidator(
            statistics=statistics.outputs["statistics"], baseline_statistics=statistics.outputs["statistics"],
            config=validator_config(section["skew"]), include_split_pairs=[SKEW_PAIR]).with_id(SKEW_ID)
        nodes.append(skew)
        checks["skew"] = skew.outputs["anomalies"]
    return nodes + [DataGate(statistics=statistics.outputs["statistics"], **checks, **parameters)]
