"""Hourly item statistics: per (item, UTC hour) event counts, and windowed look-ups.

Item features are computed the way a feature store serves them: counts in the
complete hours before the impression's hour, so nothing at or after the impression
(nor anything in its own, unfinished hour) can leak in. The aggregate is small (one
row per item-hour with events) and is broadcast to every shard as a Beam side input.
"""

from typing import Dict, Iterable, List, Tuple

import apache_beam as beam
import numpy as np

from models import features

_HOUR_BITS = 24  # hours since 1970 fit in 24 bits until the year 3883
STATS_LOGS = tuple(sorted({log for log, _ in features.ITEM_COUNT_FEATURES.values()}))

Partial = Dict[str, Tuple[np.ndarray, np.ndarray]]  # log -> (keys, counts)


def _reduce(keys: np.ndarray, counts: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    unique, inverse = np.unique(keys, return_inverse=True)
    return unique, np.bincount(inverse, weights=counts, minlength=len(unique)).astype(np.int64)


def partial_counts(log: str, item_codes: np.ndarray, ts: np.ndarray, sign: int = 1) -> Partial:
    """Counts of one batch of events of `log` per (item, hour); with `sign` -1, counts to
    take away (events found to be duplicates after they were counted)."""
    if log not in STATS_LOGS:
        return {}
    keys = (np.asarray(item_codes, np.int64) << _HOUR_BITS) | (np.asarray(ts, np.int64) // features.HOUR_SECONDS)
    return {log: _reduce(keys, np.full(len(keys), sign, dtype=np.int64))}


class ItemStats:
    """Cumulative hourly counts per log; `count` answers windows for many items at once."""

    def __init__(self, partial: Partial):
        self._keys, self._cumulative = {}, {}
        for log in STATS_LOGS:
            keys, counts = partial.get(log, (np.zeros(0, np.int64), np.zeros(0, np.int64)))
            self._keys[log] = keys
            self._cumulative[log] = np.concatenate([[0], np.cumsum(counts)])

    def window_counts(self, windows: Dict[str, Tuple[str, int]], item_codes: np.ndarray,
                      hour: np.ndarray) -> Dict[str, np.ndarray]:
        """{name: events of `log` for each item in hours [hour - 24 * days, hour)} for
        `windows` {name: (log, days)}. The queries are sorted by (item, hour) once for all
        windows: searchsorted on sorted queries walks the keys forward, ~8x faster than
        in impression order on these ~10^6-key arrays (measured)."""
        query = (np.asarray(item_codes, np.int64) << _HOUR_BITS) | np.maximum(hour, 0)
        order = np.argsort(query)
        query = query[order]
        base = query & ~np.int64((1 << _HOUR_BITS) - 1)
        counts = {}
        for name, (log, days) in windows.items():
            keys, cumulative = self._keys[log], self._cumulative[log]
            hi = np.searchsorted(keys, query, side="left")
            lo = np.searchsorted(keys, base | np.maximum(query - base - 24 * days, 0), side="left")
            counts[name] = np.empty(len(query), np.int64)
            counts[name][order] = cumulative[hi] - cumulative[lo]
        return counts


def _merge(partials: Iterable[Partial]) -> Partial:
    merged: Dict[str, list] = {}
    for partial in partials:
        for log, pair in partial.items():
            merged.setdefault(log, []).append(pair)
    return {
        log: _reduce(np.concatenate([k for k, _ in pairs]), np.concatenate([c for _, c in pairs]))
        for log, pairs in merged.items()
    }


class CombineItemStats(beam.CombineFn):
    """Merges per-file partial counts into one `ItemStats` (a Beam side input). Partials
    are collected and reduced once per accumulator sent on (`compact`) and at the end:
    reducing at every input re-sorts the growing counts each time (O(files^2))."""

    def create_accumulator(self) -> List[Partial]:
        return []

    def add_input(self, accumulator: List[Partial], partial: Partial):
        accumulator.append(partial)
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[List[Partial]]):
        return [partial for accumulator in accumulators for partial in accumulator]

    def compact(self, accumulator: List[Partial]):
        return [_merge(accumulator)]

    def extract_output(self, accumulator: List[Partial]):
        return ItemStats(_merge(accumulator))
