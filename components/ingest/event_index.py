"""Vectorised point-in-time look-ups over grouped, timestamped events.

Neither pandas (`merge_asof` gives one row, not window counts or the last-N rows) nor
Beam has a batched "events of group g in [start, end)" query, so it is written here
over NumPy's sorted search: events are sorted by one int64 key (group rank << 33 | ts)
and every window query is two `searchsorted` calls for a whole batch of queries.
"""

import numpy as np

_TS_BITS = 33  # Unix seconds fit in 33 bits until the year 2242
_TS_MAX = (1 << _TS_BITS) - 1


class EventIndex:
    """Events (group, ts, optional values) sorted for window queries.

    `groups` are int64 codes of anything hashable into one integer (a user, a
    (user, item) pair, ...); queries for a group with no events return empty windows.
    """

    def __init__(self, groups: np.ndarray, ts: np.ndarray):
        groups = np.asarray(groups, dtype=np.int64)
        ts = np.asarray(ts, dtype=np.int64)
        self.group_values, rank = np.unique(groups, return_inverse=True)
        keys = (rank.astype(np.int64) << _TS_BITS) | ts
        # order[k] is the original row of the k-th event in (group, ts) order; ties keep
        # input order so results are deterministic.
        self.order = np.argsort(keys, kind="stable")
        self.keys = keys[self.order]
        self.ts = ts[self.order]

    def __len__(self):
        return len(self.keys)

    def _rank(self, groups):
        groups = np.asarray(groups, dtype=np.int64)
        rank = np.searchsorted(self.group_values, groups)
        found = rank < len(self.group_values)
        found[found] = self.group_values[rank[found]] == groups[found]
        return rank.astype(np.int64), found

    def bounds(self, groups, start, end):
        """Index range [lo, hi) in sorted order of each group's events with start <= ts < end."""
        rank, found = self._rank(groups)
        start = np.clip(np.asarray(start, dtype=np.int64), 0, _TS_MAX)
        end = np.clip(np.asarray(end, dtype=np.int64), 0, _TS_MAX)
        lo = np.searchsorted(self.keys, (rank << _TS_BITS) | start, side="left")
        hi = np.searchsorted(self.keys, (rank << _TS_BITS) | end, side="left")
        hi = np.maximum(hi, lo)
        lo[~found] = 0
        hi[~found] = 0
        return lo, hi

    def count(self, groups, start, end) -> np.ndarray:
        lo, hi = self.bounds(groups, start, end)
        return hi - lo

    def window_sum(self, values: np.ndarray, groups, start, end) -> np.ndarray:
        """Sum of `values` (aligned with the constructor's rows) over each window."""
        cumulative = np.concatenate([[0.0], np.cumsum(np.asarray(values, dtype=np.float64)[self.order])])
        lo, hi = self.bounds(groups, start, end)
        return cumulative[hi] - cumulative[lo]

    def last_n(self, groups, start, end, n: int):
        """The newest `n` events per window, newest first, as a ragged array.

        Returns (row_splits, rows): the events of query q are original rows
        `rows[row_splits[q]:row_splits[q + 1]]`.
        """
        lo, hi = self.bounds(groups, start, end)
        lo = np.maximum(lo, hi - n)
        lengths = hi - lo
        row_splits = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        # For query q the k-th element (k from 0) is sorted index hi[q] - 1 - k.
        within = np.arange(row_splits[-1], dtype=np.int64) - np.repeat(row_splits[:-1], lengths)
        sorted_index = np.repeat(hi - 1, lengths) - within
        return row_splits, self.order[sorted_index]
