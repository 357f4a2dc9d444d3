"""Exact labels, sequences, neighbours and dense features on small hand-written logs,
through the real Beam ingest (in-process DirectRunner)."""

import copy

import numpy as np
import pytest

from components.ingest.examples import neighbors
from models import features as F
from tests.components.ingest.logs import DAY, ITEMS, T0, event, impression, run

T = T0 + 2 * DAY + 10 * 3600  # the eval day (the last day), 10:00 UTC
HOUR = 3600


def base_logs():
    u1_request = [("a", "i1", 1), ("b", "i2", 2), ("c", "i3", 3), ("e", "i4", 5), ("f", "i5", 9)]
    impressions = [impression(i, "u1", item, T, pos, request="r1", scenario="NL") for i, item, pos in u1_request]
    impressions += [impression("z", "u1", "i2", T - DAY, 1, request="r0"),
                    impression("y", "u1", "i1", T - DAY, 2, request="r0"),
                    impression("g", "u3", "i1", T, 1, request="r3"),
                    impression("h", "u2", "i5", T, 4, request="r2", page=2)]  # u2 has no history
    clicks = [
        event("u1", "i5", T - 1),                            # organic: in sequences, labels nothing
        event("u1", "i2", T - HOUR, request_id="r0"),        # labels z (an earlier request)
        event("u1", "i3", T - 7 * DAY),                      # exactly 7 days: inside the window
        event("u1", "i1", T - 7 * DAY - 1),                  # one second too old
        event("u1", "i3", T),                                # at t: never a feature of t
        event("u1", "i1", T + 5, request_id="r1"),           # labels a
        event("u1", "i2", T + 10),                           # no request_id: does not label b
        event("u1", "i3", T + 20, request_id="r1"),          # labels c
        event("u1", "i4", T + 40, request_id="r1"),          # labels e
    ]
    clicks += [event("u3", ITEMS[k % 5]["item_id"], T - 1 - k) for k in range(60)]
    carts = [event("u1", "i1", T + 60),                      # a: cart after the click
             event("u1", "i3", T + 20 + DAY + 1),            # c: one second past the window
             event("u1", "i4", T - 100)]                     # e: before the click
    wishes = [event("u1", "i3", T + 30)]                     # c: wish -> daction
    orders = [event("u1", "i1", T + 23 * HOUR, order_id="o1", amount=10.0),  # a: within 24 h
              event("u1", "i5", T - 10 * DAY),
              event("u1", "i2", T - 400 * DAY)]              # older than a year
    orders += [event("u3", "i2", T - DAY - k) for k in range(12)]
    return {"items": ITEMS, "impressions": impressions, "clicks": clicks, "carts": carts,
            "wishes": wishes, "orders": orders}


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    return run(str(tmp_path_factory.mktemp("base")), base_logs())


@pytest.fixture(scope="module")
def examples(ingested):
    return ingested[1]


def test_every_impression_becomes_one_example_in_its_day_split(ingested, examples):
    report, _ = ingested
    assert sorted(examples) == ["a", "b", "c", "e", "f", "g", "h", "y", "z"]
    assert {i for i, e in examples.items() if e["_split"] == "train"} == {"y", "z"}
    assert report["examples"] == {"train": 2, "eval": 7}
    assert report["records_quarantined"] == 0 and report["balanced"]


def test_labels(examples):
    label = {i: {name: examples[i][name][0] for name in F.LABELS} for i in examples}
    assert label["a"] == {"click": 1, "cart": 1, "wish": 0, "order": 1, "daction": 1}
    assert label["b"] == {"click": 0, "cart": 0, "wish": 0, "order": 0, "daction": 0}
    assert label["c"] == {"click": 1, "cart": 0, "wish": 1, "order": 0, "daction": 1}
    assert label["e"] == {"click": 1, "cart": 0, "wish": 0, "order": 0, "daction": 0}
    assert label["z"]["click"] == 1 and label["y"]["click"] == 0


def test_click_sequence_newest_first_within_seven_days(examples):
    a = examples["a"]
    assert a[F.sequence_feature("click", "item_id")] == ["i5", "i2", "i3"]
    assert a[F.sequence_feature("click", "age")] == [1, HOUR, 7 * DAY]
    assert a[F.sequence_feature("click", "category_id")] == ["c3", "c1", "c2"]
    assert a[F.sequence_feature("click", "brand_id")] == ["b4", "b2", "b3"]
    assert a[F.sequence_feature("click", "shop_id")] == ["s3", "s1", "s2"]


def test_cart_and_order_sequences(examples):
    a = examples["a"]
    assert a[F.sequence_feature("cart", "item_id")] == ["i4"]
    assert a[F.sequence_feature("cart", "age")] == [100]
    assert a[F.sequence_feature("order", "item_id")] == ["i5"]  # the 400-day-old order is out
    assert a[F.sequence_feature("order", "age")] == [10 * DAY]
    z = examples["z"]  # a day earlier: the click at T - 1 hour is in its future
    assert z[F.sequence_feature("click", "item_id")] == ["i3", "i1"]
    assert z[F.sequence_feature("click", "age")] == [6 * DAY, 6 * DAY + 1]


def test_sequences_are_capped_at_their_length(examples):
    g = examples["g"]
    assert g[F.sequence_feature("click", "age")] == list(range(1, 51))
    assert g[F.sequence_feature("click", "item_id")][:3] == ["i1", "i2", "i3"]
    assert g[F.sequence_feature("order", "age")] == [DAY + k for k in range(10)]


def test_neighbor_categories(examples):
    assert examples["a"][F.NEIGHBOR_CATEGORIES] == ["c1", "c2", "c3", "c3", "", ""]
    # position 5: 3 (d=2), 2 (d=3), then 1 and 9 tie at d=4 and the smaller position wins.
    assert examples["e"][F.NEIGHBOR_CATEGORIES] == ["c2", "c1", "c1", "c3", "", ""]
    assert examples["g"][F.NEIGHBOR_CATEGORIES] == [""] * F.NUM_NEIGHBORS
    assert examples["e"][F.POSITION] == [5] and examples["e"][F.PAGE] == [1]
    assert examples["h"][F.POSITION] == [4] and examples["h"][F.PAGE] == [2]


def _nearest_by_sorting(request, position, item, k):
    """The definition, row by row: other impressions of the request by (distance, position),
    then by distance in (request, position, file) order, the one before first."""
    rank = np.empty(len(request), np.int64)
    rank[np.lexsort((np.arange(len(request)), position, request))] = np.arange(len(request))
    result = np.full((len(request), k), -1)
    for i in range(len(request)):
        others = [j for j in range(len(request)) if j != i and request[j] == request[i]]
        others.sort(key=lambda j: (abs(position[j] - position[i]), position[j],
                                   abs(rank[j] - rank[i]), rank[j] > rank[i]))
        result[i, :len(others[:k])] = item[others[:k]]
    return result


@pytest.mark.parametrize("seed", range(5))
def test_neighbors_match_their_definition(seed):
    # Small requests with repeated positions, gaps and rows out of order.
    rng = np.random.default_rng(seed)
    n = 300
    request = rng.integers(0, 40, n)
    position = rng.integers(1, 12, n)
    item = rng.permutation(n)
    assert (neighbors(request, position, item, 6) == _nearest_by_sorting(request, position, item, 6)).all()


def test_ids_and_scenario(examples):
    a = examples["a"]
    assert (a["user_id"], a["request_id"], a["item_id"], a["category_id"]) == (["u1"], ["r1"], ["i1"], ["c1"])
    assert a["scenario"] == ["NL"] and examples["g"]["scenario"] == [F.DEFAULT_SCENARIO]


def dense(example):
    return {name: example[name][0] for name in F.DENSE_FEATURES}


def test_user_dense_features(examples):
    a = dense(examples["a"])
    assert a["user_clicks_1d"] == 2  # T-1 and T-1h; the click at T is not before T
    assert a["user_clicks_7d"] == 3
    assert a["user_impressions_1d"] == 2 and a["user_impressions_7d"] == 2
    assert a["user_ctr_7d"] == pytest.approx((3 + 0.04 * 20) / (2 + 20))
    assert (a["user_carts_30d"], a["user_wishes_30d"]) == (1, 0)
    assert (a["user_orders_30d"], a["user_orders_365d"]) == (1, 1)
    assert a["user_category_clicks_7d"] == 1  # i2 (c1); the i1 click is 7d + 1s old
    assert a["user_category_orders_365d"] == 0
    assert a["user_item_clicks_7d"] == 0
    assert dense(examples["b"])["user_item_clicks_7d"] == 1
    assert dense(examples["e"])["user_item_carts_30d"] == 1
    assert a["seconds_since_last_click"] == 1
    assert dense(examples["y"])["seconds_since_last_click"] == 6 * DAY
    assert dense(examples["h"])["seconds_since_last_click"] == F.SECONDS_SINCE_LAST_CLICK_CAP
    assert dense(examples["h"])["user_clicks_7d"] == 0


def test_item_dense_features(examples):
    a, b = dense(examples["a"]), dense(examples["b"])
    assert a["item_impressions_1d"] == 1 and a["item_impressions_7d"] == 1  # y, exactly 24 h earlier
    # u3 clicked i1 12 times in the hour before T; u1's i1 click 7d + 1s ago is one hour too old.
    assert a["item_clicks_1d"] == 12 and a["item_clicks_7d"] == 12
    assert a["item_ctr_1d"] == pytest.approx((12 + 0.04 * 20) / (1 + 20))
    assert b["item_clicks_1d"] == 13 and b["item_impressions_1d"] == 1  # u3's 12 and u1's at T - 1h
    assert b["item_ctr_1d"] == pytest.approx((13 + 0.04 * 20) / (1 + 20))
    assert a["item_orders_1d"] == 0 and b["item_orders_7d"] == 12  # u3's i2 orders a day ago


def test_price_features(examples):
    a, e = dense(examples["a"]), dense(examples["e"])
    assert (a["item_price"], a["item_price_missing"]) == (10.0, 0.0)
    assert a["price_to_user_order_price"] == pytest.approx(10.0 / 5.0)  # the one order in a year: i5 at 5.0
    assert (e["item_price"], e["item_price_missing"], e["price_to_user_order_price"]) == (0.0, 1.0, 1.0)


def test_no_leakage_from_events_at_or_after_the_impression(tmp_path, examples):
    """Events at or after t, of every kind, change no feature of an impression at t."""
    logs = copy.deepcopy(base_logs())
    for offset in (0, 1, HOUR, DAY):
        for user in ("u1", "u2", "u3"):
            for item in ("i1", "i2", "i3", "i4", "i5"):
                ts = T + offset
                logs["clicks"].append(event(user, item, ts))
                logs["carts"].append(event(user, item, ts))
                logs["wishes"].append(event(user, item, ts))
                logs["orders"].append(event(user, item, ts))
        logs["impressions"].append(impression(f"late{offset}", "u2", "i1", T + offset, 1, request=f"late{offset}"))
    _, leaked = run(str(tmp_path), logs)
    for imp_id in ("a", "b", "c", "e", "f", "g", "h", "y", "z"):
        before = {k: v for k, v in examples[imp_id].items() if k not in F.LABELS + ("_split",)}
        after = {k: v for k, v in leaked[imp_id].items() if k not in F.LABELS + ("_split",)}
        assert after == before, imp_id


def test_time_window_click_attribution(tmp_path):
    logs = {
        "items": ITEMS,
        "impressions": [impression("a", "u1", "i1", T, 1), impression("b", "u1", "i2", T, 2),
                        impression("c", "u1", "i3", T, 3)],
        "clicks": [event("u1", "i1", T + 1800), event("u1", "i2", T + 1801), event("u1", "i3", T - 1)],
        "carts": [event("u1", "i1", T + 1900)],
        "orders": [event("u1", "i5", T - DAY)],
    }
    report, examples = run(str(tmp_path), logs, click_attribution="time_window")
    assert [examples[i]["click"][0] for i in "abc"] == [1, 0, 0]
    assert examples["a"]["cart"] == [1]
    assert report["logs"]["orders"]["read"] == 1
