"""Builds one training example per impression for the users of one shard.

All of a user's logs land in the same shard, so labels, behaviour sequences, user
features and neighbouring impressions (a request belongs to one user) are joined in
memory, vectorised over the shard with NumPy. Item statistics come from the hourly
side input. The columns are encoded to `tf.Example` by `example_encoder` (vectorised;
about 3x faster than tfx_bsl's encoder, which was a third of the ingest's time).

Definitions (see README "Training examples"):
- click: a click of (user, item) carrying the impression's request_id (or, with
  time-window attribution, any click of (user, item) in [t, t + window]);
- cart / wish / order: click is 1 and that event on (user, item) has
  click_ts <= ts <= click_ts + attribution window; daction = cart or wish;
- sequences: the user's events with t - window <= ts < t, newest first, at most N;
- neighbours: categories of the K nearest other impressions of the same
  (user, request) by position, nearer first, ties to the smaller position.
"""

from typing import Dict, List, Optional, Tuple

import numpy as np
import pandas as pd
import pyarrow as pa

from components.ingest import reader
from components.ingest.catalog import ItemCatalog
from components.ingest.checked_encoder import encode_examples
from components.ingest.example_encoder import SharedColumns
from components.ingest.config import CLICK_BY_TIME_WINDOW, IngestConfig
from components.ingest.event_index import EventIndex
from components.ingest.item_stats import ItemStats
from components.ingest.window import SEQUENCE_LOG
from models import features as F

EVENT_LOGS = ("impressions", "clicks", "carts", "wishes", "orders")
# Impressions of a daily run before its train days: read for the features, not examples.
HISTORY_COUNTER = "impressions.history"
_LABEL_LOG = {F.CART: "carts", F.WISH: "wishes", F.ORDER: "orders"}


def _inverse(permutation: np.ndarray) -> np.ndarray:
    inverse = np.empty_like(permutation)
    inverse[permutation] = np.arange(len(permutation))
    return inverse


class _Indexes(dict):
    """An EventIndex per log, built when first queried (not every key is queried for every
    log: impressions by (user, item), for one)."""

    def __init__(self, build):
        super().__init__()
        self._build = build

    def __missing__(self, log: str) -> EventIndex:
        self[log] = index = self._build(log)
        return index


class _Shard:
    """The shard's events, with point-in-time indexes by user, (user, item), (user, category)."""

    def __init__(self, frames: Dict[str, pd.DataFrame], catalog: ItemCatalog, targets: Optional[np.ndarray] = None):
        """`targets`: which impressions become examples (default all); the others (a daily
        run's history) are only events the point-in-time queries count."""
        self.catalog = catalog
        self._num_categories = int(catalog.category_code.max(initial=0)) + 1
        users = pd.Index(pd.unique(np.concatenate([frames[log]["user_id"].to_numpy(object) for log in EVENT_LOGS])))
        self.user_code = {log: users.get_indexer(frames[log]["user_id"]) for log in EVENT_LOGS}
        self.item_code = {log: frames[log][reader.ITEM_CODE_COLUMN].to_numpy(np.int64) for log in EVENT_LOGS}
        self.ts = {log: frames[log]["ts"].to_numpy(np.int64) for log in EVENT_LOGS}
        events = None
        if targets is not None:
            # The indexes hold every event; the impression arrays below become the targets'.
            events = (dict(self.user_code), dict(self.item_code), dict(self.ts))
            frames = dict(frames, impressions=frames["impressions"][targets].reset_index(drop=True))
            for codes in (self.user_code, self.item_code, self.ts):
                codes["impressions"] = codes["impressions"][targets]
        # Impressions are handled in (user, time) order, so that the point-in-time queries
        # of consecutive impressions hit neighbouring index keys: NumPy's searchsorted on
        # sorted queries is ~8x faster than on random ones (measured). Examples are written
        # in file order, whatever order the shard's parts arrived in: `written[k]` is the
        # k-th impression in file order.
        imp = frames["impressions"]
        file_order = np.lexsort((imp[reader.ROW_COLUMN].to_numpy(), imp[reader.FILE_COLUMN].to_numpy()))
        file_rank = _inverse(file_order)
        rows = np.lexsort((file_rank, self.ts["impressions"], self.user_code["impressions"]))
        self.written = _inverse(rows)[file_order]
        self.frames = dict(frames, impressions=imp.take(rows))
        for codes in (self.user_code, self.item_code, self.ts):
            codes["impressions"] = codes["impressions"][rows]
        self.impression_pairs = self.user_item(self.user_code["impressions"], self.item_code["impressions"])
        user, item, ts = events or (self.user_code, self.item_code, self.ts)
        self.by_user = _Indexes(lambda log: EventIndex(user[log], ts[log]))
        self.by_user_item = _Indexes(lambda log: EventIndex(self.user_item(user[log], item[log]), ts[log]))
        self.by_user_category = _Indexes(lambda log: EventIndex(self.user_category(user[log], item[log]), ts[log]))

    def user_item(self, user, item):
        return user.astype(np.int64) * len(self.catalog) + item

    def user_category(self, user, item):
        return user.astype(np.int64) * self._num_categories + self.catalog.category_code[item]


def _click_times(shard: _Shard, imp: pd.DataFrame, config: IngestConfig) -> np.ndarray:
    """Time of the click that labels each impression, or -1."""
    if config.click_attribution == CLICK_BY_TIME_WINDOW:
        t = shard.ts["impressions"]
        index = shard.by_user_item["clicks"]
        lo, hi = index.bounds(shard.impression_pairs, t, t + config.click_window_seconds + 1)
        return np.where(hi > lo, index.ts[np.minimum(lo, len(index) - 1)] if len(index) else -1, -1)
    # The earliest click of each (user, item, request) by integer keys: the (user, item)
    # pair's code and a request code shared by clicks and impressions.
    linked = shard.frames["clicks"][F.REQUEST_ID].notna().to_numpy()
    pairs = [shard.user_item(shard.user_code["clicks"][linked], shard.item_code["clicks"][linked]),
             shard.impression_pairs]
    requests = [shard.frames["clicks"][F.REQUEST_ID].to_numpy(object)[linked], imp[F.REQUEST_ID].to_numpy(object)]
    pair_code = pd.factorize(np.concatenate(pairs))[0]
    request_code, request_ids = pd.factorize(np.concatenate(requests))
    key = pair_code * len(request_ids) + request_code
    click_key, impression_key = key[:linked.sum()], key[linked.sum():]
    click_ts = shard.ts["clicks"][linked]
    order = np.lexsort((click_ts, click_key))
    earliest = np.flatnonzero(np.diff(click_key[order], prepend=-1))  # first of each key
    keys, first_ts = click_key[order][earliest], click_ts[order][earliest]
    if not len(keys):
        return np.full(len(impression_key), -1, np.int64)
    at = np.minimum(np.searchsorted(keys, impression_key), len(keys) - 1)
    return np.where(keys[at] == impression_key, first_ts[at], -1)


def _labels(shard: _Shard, imp: pd.DataFrame, config: IngestConfig) -> Dict[str, np.ndarray]:
    click_ts = _click_times(shard, imp, config)
    clicked = click_ts >= 0
    labels = {F.CLICK: clicked.astype(np.int64)}
    for label, log in _LABEL_LOG.items():
        after = shard.by_user_item[log].count(shard.impression_pairs, click_ts, click_ts + config.attribution_window_seconds + 1)
        labels[label] = (clicked & (after > 0)).astype(np.int64)
    labels[F.DACTION] = labels[F.CART] | labels[F.WISH]
    return labels


def _sequences(shard: _Shard, t: np.ndarray, users: np.ndarray) -> Dict[str, pa.Array]:
    columns = {}
    for sequence, (max_length, window) in F.SEQUENCES.items():
        log = SEQUENCE_LOG[sequence]
        splits, rows = shard.by_user[log].last_n(users, t - window, t, max_length)
        offsets = pa.array(splits.astype(np.int32))
        lengths = np.diff(splits)
        for field, ids in shard.catalog.id_arrays(shard.item_code[log][rows]).items():
            columns[F.sequence_feature(sequence, field)] = pa.ListArray.from_arrays(offsets, ids)
        ages = np.repeat(t, lengths) - shard.ts[log][rows]
        columns[F.sequence_feature(sequence, F.SEQUENCE_AGE)] = pa.ListArray.from_arrays(offsets, pa.array(ages))
    return columns


def neighbors(request: np.ndarray, position: np.ndarray, item: np.ndarray, k: int = F.NUM_NEIGHBORS) -> np.ndarray:
    """(n, k) items of the k nearest other impressions of the same request; -1 where absent.
    Nearest first; ties go to the smaller position, then to the nearer in file order."""
    n = len(request)
    order = np.lexsort((np.arange(n), position, request))  # by request, then position
    req, pos, sorted_item = request[order], position[order], item[order]
    # Merge the request's impressions before and after each one, nearest first: pointers
    # i - left and i + right into the sorted rows advance k times.
    here = np.arange(n)
    left, right = np.ones(n, np.int64), np.ones(n, np.int64)
    result_sorted = np.full((n, k), -1, np.int64)
    for step in range(k):
        before, after = here - left, here + right
        before_ok = before >= 0
        before_ok[before_ok] = req[before[before_ok]] == req[before_ok]
        after_ok = after < n
        after_ok[after_ok] = req[after[after_ok]] == req[after_ok]
        d_before = pos - pos[np.maximum(before, 0)]
        d_after = pos[np.minimum(after, n - 1)] - pos
        # At equal distances the one before has the smaller position, unless both share
        # this one's: then the nearer in file order (the column order of a stable sort).
        take_before = before_ok & (~after_ok | (d_before < d_after)
                                   | ((d_before == d_after) & ((d_before > 0) | (left <= right))))
        take_after = ~take_before & after_ok
        chosen = np.where(take_before, before, after)
        result_sorted[:, step] = np.where(take_before | take_after, sorted_item[np.clip(chosen, 0, max(n - 1, 0))], -1)
        left += take_before
        right += take_after
    result = np.empty_like(result_sorted)
    result[order] = result_sorted
    return result


def _rate(numerator, denominator, prior):
    return (numerator + prior * F.RATE_PRIOR_WEIGHT) / (denominator + F.RATE_PRIOR_WEIGHT)


def _dense(shard: _Shard, stats: ItemStats, t, users, items, moment: np.ndarray,
           first: np.ndarray) -> Dict[str, np.ndarray]:
    """Dense features per impression. Those of the user alone are computed once per moment
    (see `_moments`) and expanded."""
    day = F.DAY_SECONDS
    user_t, user = t[first], users[first]
    dense = stats.window_counts(F.ITEM_COUNT_FEATURES, items, t // F.HOUR_SECONDS)
    for name, (numerator, denominator, prior) in F.ITEM_RATE_FEATURES.items():
        dense[name] = _rate(dense[numerator], dense[denominator], prior)
    for name, (log, days) in F.USER_COUNT_FEATURES.items():
        dense[name] = shard.by_user[log].count(user, user_t - days * day, user_t)[moment]
    for name, (numerator, denominator, prior) in F.USER_RATE_FEATURES.items():
        dense[name] = _rate(dense[numerator], dense[denominator], prior)
    user_categories = shard.user_category(users, items)
    for name, (log, days) in F.USER_CATEGORY_FEATURES.items():
        dense[name] = shard.by_user_category[log].count(user_categories, t - days * day, t)
    for name, (log, days) in F.USER_ITEM_FEATURES.items():
        dense[name] = shard.by_user_item[log].count(shard.impression_pairs, t - days * day, t)

    price = shard.catalog.price[items]
    known = ~np.isnan(price)
    dense[F.ITEM_PRICE] = np.where(known, price, 0.0)
    dense[F.ITEM_PRICE_MISSING] = (~known).astype(np.float64)
    order_price = shard.catalog.price[shard.item_code["orders"]]
    order_priced = ~np.isnan(order_price)
    orders = shard.by_user["orders"]
    spent = orders.window_sum(np.where(order_priced, order_price, 0.0), user, user_t - 365 * day, user_t)
    priced_orders = orders.window_sum(order_priced, user, user_t - 365 * day, user_t)
    mean_order_price = np.divide(spent, priced_orders, out=np.zeros_like(spent), where=priced_orders > 0)[moment]
    usable = known & (mean_order_price > 0)
    dense[F.PRICE_TO_USER_ORDER_PRICE] = np.divide(
        np.where(known, price, 1.0), mean_order_price, out=np.ones_like(price), where=usable)

    clicks = shard.by_user["clicks"]
    lo, hi = clicks.bounds(user, 0, user_t)
    last = np.where(hi > lo, clicks.ts[np.maximum(hi - 1, 0)] if len(clicks) else 0, -1)
    dense[F.SECONDS_SINCE_LAST_CLICK] = np.where(
        last >= 0, np.minimum(user_t - last, F.SECONDS_SINCE_LAST_CLICK_CAP), F.SECONDS_SINCE_LAST_CLICK_CAP)[moment]
    return dense


def _moments(users: np.ndarray, t: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The moment (a distinct (user, time), numbered in order) of each impression, and the
    first impression of each moment; the impressions are in (user, time) order. The
    impressions of a moment (a page of a request) share their behaviour sequences and
    user features: ~8 on the default world."""
    first = np.ones(len(t), bool)
    first[1:] = (users[1:] != users[:-1]) | (t[1:] != t[:-1])
    return np.cumsum(first) - 1, np.flatnonzero(first)


def _scalar(values, type_=None) -> pa.Array:
    array = values if isinstance(values, pa.Array) else pa.array(values, type_)
    return pa.ListArray.from_arrays(pa.array(np.arange(len(array) + 1, dtype=np.int32)), array)


def build_examples(
    frames: Dict[str, pd.DataFrame],
    catalog: ItemCatalog,
    stats: ItemStats,
    eval_start_day: int,
    config: IngestConfig,
    first_example_day: Optional[int] = None,
) -> Tuple[List[bytes], List[bytes], Dict[str, int]]:
    """Returns (train examples, eval examples, counts) for the impressions in `frames`; with
    `first_example_day` (a daily run), only for those of that UTC day and later: the earlier
    ones are history (counted as `impressions.history`), seen only by the features."""
    counts = {}
    targets = None
    if first_example_day is not None:
        targets = frames["impressions"][F.TS].to_numpy(np.int64) // F.DAY_SECONDS >= first_example_day
        counts[HISTORY_COUNTER] = int((~targets).sum())
        if targets.all():
            targets = None
        elif not targets.any():
            return [], [], counts
    if frames["impressions"].empty:
        return [], [], counts
    shard = _Shard(frames, catalog, targets)
    imp, t = shard.frames["impressions"], shard.ts["impressions"]  # in (user, time) order
    users, items = shard.user_code["impressions"], shard.item_code["impressions"]
    columns: Dict[str, pa.Array] = {}
    for name in (F.IMPRESSION_ID, F.REQUEST_ID, F.USER_ID, F.SCENARIO):
        columns[name] = _scalar(imp[name].to_numpy(object), pa.string())  # from str: 2x faster than binary
    for name, ids in catalog.id_arrays(items).items():
        columns[name] = _scalar(ids)
    for name in (F.TS, F.POSITION, F.PAGE):
        columns[name] = _scalar(imp[name].to_numpy(np.int64))
    labels = _labels(shard, imp, config)
    for name, values in labels.items():
        columns[name] = _scalar(values)
    # Behaviour sequences are built and encoded once per moment, then copied into each example.
    moment, first = _moments(users, t)
    sequences = _sequences(shard, t[first], users[first])
    shared = SharedColumns(pa.RecordBatch.from_arrays(list(sequences.values()), list(sequences)), moment, len(columns))
    request_codes = pd.factorize(imp[F.REQUEST_ID])[0]  # a request belongs to one user, but ids may repeat across users
    requests = users.astype(np.int64) * (int(request_codes.max(initial=0)) + 1) + request_codes
    neighbor_items = neighbors(requests, imp[F.POSITION].to_numpy(np.int64), items)
    columns[F.NEIGHBOR_CATEGORIES] = pa.ListArray.from_arrays(
        pa.array(np.arange(0, neighbor_items.size + 1, F.NUM_NEIGHBORS, dtype=np.int32)),
        catalog.neighbor_categories(neighbor_items.ravel()))
    for name, values in _dense(shard, stats, t, users, items, moment, first).items():
        columns[name] = _scalar(np.asarray(values, np.float32))

    encoded = encode_examples(pa.RecordBatch.from_arrays(list(columns.values()), list(columns)), shared)
    # In file order (reordering the serialized examples costs far less than taking the
    # columns: those hold ~2 KB per row), split by day.
    is_eval = (t[shard.written] // F.DAY_SECONDS) >= eval_start_day
    train = [encoded[k] for k in shard.written[~is_eval].tolist()]
    evaluation = [encoded[k] for k in shard.written[is_eval].tolist()]
    counts.update({f"examples.{F.TRAIN_SPLIT}": len(train), f"examples.{F.EVAL_SPLIT}": len(evaluation)})
    for name, values in labels.items():
        counts[f"labels.{name}"] = int(values.sum())
    return train, evaluation, counts
