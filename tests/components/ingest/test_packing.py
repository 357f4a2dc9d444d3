"""Packed frame parts come back with their values, whatever integer widths they travel in."""

import numpy as np
import pandas as pd

from components.ingest import packing


def test_parts_round_trip_with_values_of_every_width():
    parts = [
        pd.DataFrame({"id": ["a", "b"], "small": [1, 2], "wide": [2**40, -(2**40)], "ts": [1_790_000_000, 5],
                      "request_id": ["r1", None], "amount": [1.5, np.nan], "item_id": ["i1", "i2"]}),
        pd.DataFrame({"id": ["c"], "small": [-300], "wide": [2**63 - 1], "ts": [2**31],
                      "request_id": [None], "amount": [2.0], "item_id": ["i3"]}),
    ]
    packed = [packing.pack(part, drop=["item_id"]) for part in parts]
    frame = packing.unpack(packed, empty=None)
    expected = pd.concat(parts, ignore_index=True).drop(columns=["item_id"])
    pd.testing.assert_frame_equal(frame, expected)
    assert all(frame[c].dtype == np.int64 for c in ("small", "wide", "ts"))


def test_no_parts_give_the_empty_frame():
    empty = pd.DataFrame(columns=["id"])
    assert packing.unpack([], empty) is empty


def test_integers_take_the_smallest_type_that_holds_them():
    assert packing._narrow(np.array([0, 127], np.int64)).dtype == np.int8
    assert packing._narrow(np.array([-129, 5], np.int64)).dtype == np.int16
    assert packing._narrow(np.array([1_790_000_000], np.int64)).dtype == np.int32
    assert packing._narrow(np.array([2**31], np.int64)).dtype == np.int64
    assert packing._narrow(np.array([], np.int64)).dtype == np.int64
