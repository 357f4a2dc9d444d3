"""Custom TFMA metrics of the Evaluator (pipeline/pipeline.py's eval_config)."""

from typing import List, Optional

import apache_beam as beam
import numpy as np
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.metrics import metric_util, query_statistics

from models import metrics


class RequestStatistics(tfma.metrics.Metric):
    """TFMA's QueryStatistics (requests, items, fewest and most items per request) for each model
    and output of its MetricsSpec. TFMA's own metric takes neither from its spec and counts
    `len(prediction)`, which is the number of models or outputs when there are several (TFMA
    0.47); this reuses its accumulator and counts the named output's predictions."""

    def __init__(self, name: str = "request_statistics"):
        super().__init__(_request_statistics, name=name)


class _RequestStatisticsCombiner(query_statistics._QueryStatisticsCombiner):  # pylint: disable=protected-access
    def add_input(self, accumulator, element):
        for _, prediction, example_weight in metric_util.to_label_prediction_example_weight(
                element, eval_config=self._eval_config, model_name=self._model_name, output_name=self._output_name,
                example_weighted=self._example_weighted, flatten=False, require_single_example_weight=True):
            weight = float(example_weight)
            items = np.size(prediction) * weight
            accumulator.total_queries += weight
            accumulator.total_documents += items
            accumulator.min_documents = min(accumulator.min_documents, items)
            accumulator.max_documents = max(accumulator.max_documents, items)
        return accumulator


def _request_statistics(name: str, eval_config=None, model_names: Optional[List[str]] = None,
                        output_names: Optional[List[str]] = None, query_key: str = "",
                        example_weighted: bool = False) -> tfma.metrics.MetricComputations:
    del name  # the four figures keep TFMA's names (total_queries, total_documents, ...)
    if not query_key:
        raise ValueError("RequestStatistics needs the MetricsSpec's query_key")
    computations = []
    for model_name in model_names or [""]:
        for output_name in output_names or [""]:
            keys = [tfma.metrics.MetricKey(name=figure, model_name=model_name, output_name=output_name,
                                           example_weighted=example_weighted) for figure in FIGURES]
            computations.append(tfma.metrics.MetricComputation(
                keys=keys, preprocessors=None,
                combiner=_RequestStatisticsCombiner(*keys, eval_config, model_name, output_name, example_weighted)))
    return computations


FIGURES = (query_statistics.TOTAL_QUERIES_NAME, query_statistics.TOTAL_DOCUMENTS_NAME,
           query_statistics.MIN_DOCUMENTS_NAME, query_statistics.MAX_DOCUMENTS_NAME)


class GroupAUC(tfma.metrics.Metric):
    """GAUC over the groups of its MetricsSpec's query_key (user_id): each group's AUC weighted by
    its number of impressions, groups whose labels are all equal left out, as the report's
    models/metrics.py gauc (DIN's GAUC). Hand-written: TFMA has no per-group AUC; each group's
    AUC is models/metrics.py's."""

    def __init__(self, name: str = "gauc"):
        super().__init__(_group_auc, name=name)


class _GroupAUCCombiner(beam.CombineFn):
    """Accumulates (sum of group AUC x impressions, impressions of the groups with an AUC)."""

    def __init__(self, key, eval_config, model_name: str, output_name: str, example_weighted: bool):
        self._key, self._eval_config = key, eval_config
        self._model_name, self._output_name, self._example_weighted = model_name, output_name, example_weighted

    def create_accumulator(self):
        return [0.0, 0.0]

    def add_input(self, accumulator, element):
        for label, prediction, _ in metric_util.to_label_prediction_example_weight(
                element, eval_config=self._eval_config, model_name=self._model_name, output_name=self._output_name,
                example_weighted=self._example_weighted, flatten=False, require_single_example_weight=True):
            labels = np.ravel(label)
            value = metrics.auc(labels, np.ravel(prediction))
            if not np.isnan(value):
                accumulator[0] += value * len(labels)
                accumulator[1] += len(labels)
        return accumulator

    def merge_accumulators(self, accumulators):
        sums = np.sum([list(a) for a in accumulators], axis=0)
        return [float(sums[0]), float(sums[1])]

    def extract_output(self, accumulator):
        return {self._key: accumulator[0] / accumulator[1] if accumulator[1] else float("nan")}


def _group_auc(name: str, eval_config=None, model_names: Optional[List[str]] = None,
               output_names: Optional[List[str]] = None, query_key: str = "",
               example_weighted: bool = False) -> tfma.metrics.MetricComputations:
    if not query_key:
        raise ValueError("GroupAUC needs the MetricsSpec's query_key (the group, e.g. user_id)")
    computations = []
    for model_name in model_names or [""]:
        for output_name in output_names or [""]:
            key = tfma.metrics.MetricKey(name=name, model_name=model_name, output_name=output_name,
                                         example_weighted=example_weighted)
            computations.append(tfma.metrics.MetricComputation(
                keys=[key], preprocessors=None,
                combiner=_GroupAUCCombiner(key, eval_config, model_name, output_name, example_weighted)))
    return computations


OVERALL = "all"


def _slice_name(slice_key) -> str:
    """`all`, or `feature=value` joined by `,` (a SliceKey proto)."""
    parts = []
    for single in slice_key.single_slice_keys:
        value = getattr(single, single.WhichOneof("kind"))
        parts.append(f"{single.column}={value.decode() if isinstance(value, bytes) else value}")
    return ",".join(parts) or OVERALL


def _metric_name(key) -> str:
    """TFMA's metric name, with `@k` for a top-k figure (NDCG@10)."""
    return f"{key.name}@{key.sub_key.top_k.value}" if key.sub_key.HasField("top_k") else key.name


def read_metrics(evaluation_uri: str) -> dict:
    """The Evaluator's figures, from its output (tfma.load_metrics): model ("" when the Evaluator
    had no baseline, else "candidate"/"baseline") -> slice -> output ("" for ExampleCount) -> metric
    -> value. Change figures against the baseline are left out; metrics without a double value
    (e.g. confusion matrices) too."""
    found: dict = {}
    for metrics in tfma.load_metrics(evaluation_uri):
        by_slice = found
        for entry in metrics.metric_keys_and_values:
            key = entry.key
            if key.is_diff or not entry.value.HasField("double_value"):
                continue
            outputs = by_slice.setdefault(key.model_name, {}).setdefault(_slice_name(metrics.slice_key), {})
            outputs.setdefault(key.output_name, {})[_metric_name(key)] = entry.value.double_value.value
    return found


def validation_failures(evaluation_uri: str) -> List[str]:
    """The blessing's failed bounds, readable (`click ndcg@10 on all: ...`); [] when blessed or
    when the Evaluator had no bounds to check (it then writes no validation result)."""
    try:
        result = tfma.load_validation_result(evaluation_uri)
    except AssertionError:  # TFMA 0.47 asserts that exactly one validation file exists
        return []
    failures = []
    for per_slice in result.metric_validations_per_slice:
        for failure in per_slice.failures:
            key = failure.metric_key
            failures.append(f"{key.output_name} {_metric_name(key)} on {_slice_name(per_slice.slice_key)}: "
                            f"{failure.message}")
    return failures
