"""Hourly item statistics: per (item, UTC hour) event counts, and windowed look-ups.

Item features are computed the way a feature store serves them: counts in the
complete hours before the impression's hour, so nothing at or after the impression
(nor anything in its own, unfinished hour) can leak in. The aggregate is small (one
row per item-hour with events) and is broadcast to every shard as a Beam side input.
"""

from typing import Dict, Iterable, Tuple

import apache_beam as beam
import numpy as np

from models import features

_HOUR_BITS = 24  # hours since 1970 fit in 24 bits until the year 3883
STATS_LOGS = tuple(sorted({log for log, _ in features.ITEM_COUNT_FEATURES.values()}))

Partial = Dict[str, Tuple[np.ndarray, np.ndarray]]  # log -> (keys, counts)


def _reduce(keys: np.ndarray, counts: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    unique, inverse = np.unique(keys, return_inverse=True)
    return unique, np.bincount(inverse, weights=counts, minlength=len(unique)).astype(np.int64)


def partial_counts(log: str, item_codes: np.ndarray, ts: np.ndarray) -> Partial:
    """Counts of one batch of events of `log` per (item, hour)."""
    if log not in STATS_LOGS:
        return {}
    keys = (np.asarray(item_codes, np.int64) << _HOUR_BITS) | (np.asarray(ts, np.int64) // features.HOUR_SECONDS)
    return {log: _reduce(keys, np.ones(len(keys), dtype=np.int64))}


class ItemStats:
    """Cumulative hourly counts per log; `count` answers windows for many items at once."""

    def __init__(self, partial: Partial):
        self._keys, self._cumulative = {}, {}
        for log in STATS_LOGS:
            keys, counts = partial.get(log, (np.zeros(0, np.int64), np.zeros(0, np.int64)))
            self._keys[log] = keys
            self._cumulative[log] = np.concatenate([[0], np.cumsum(counts)])

    def count(self, log: str, item_codes: np.ndarray, hour_start: np.ndarray, hour_end: np.ndarray) -> np.ndarray:
        """Events of `log` for each item in hours [hour_start, hour_end)."""
        base = np.asarray(item_codes, np.int64) << _HOUR_BITS
        lo = np.searchsorted(self._keys[log], base | np.maximum(hour_start, 0), side="left")
        hi = np.searchsorted(self._keys[log], base | np.maximum(hour_end, 0), side="left")
        return self._cumulative[log][hi] - self._cumulative[log][np.minimum(lo, hi)]


class CombineItemStats(beam.CombineFn):
    """Merges per-file partial counts into one `ItemStats` (a Beam side input)."""

    def create_accumulator(self):
        return {}

    def add_input(self, accumulator, partial: Partial):
        return self.merge_accumulators([accumulator, partial])

    def merge_accumulators(self, accumulators: Iterable[Partial]):
        merged: Dict[str, list] = {}
        for partial in accumulators:
            for log, pair in partial.items():
                merged.setdefault(log, []).append(pair)
        return {
            log: _reduce(np.concatenate([k for k, _ in pairs]), np.concatenate([c for _, c in pairs]))
            for log, pairs in merged.items()
        }

    def extract_output(self, accumulator):
        return ItemStats(accumulator)
