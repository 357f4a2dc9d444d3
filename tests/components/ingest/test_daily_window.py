"""Daily partitions (`LOG/dt=YYYY-MM-DD/`) and a daily run's date window (`end_date`,
`train_days`): which files are read, which impressions are train / eval / history, every
record accounted for, and the point-in-time features still see the history before the window."""

import datetime
import json
import os

import pytest

from components.ingest.config import IngestConfig
from components.ingest.contract import ContractError, list_log_files
from components.ingest.runner import input_fingerprint, run_ingest
from components.ingest.window import date_window, feature_history_days
from tests.components.ingest.logs import DAY, ITEMS, T0, event, impression, read_examples

BEAM = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
D = [T0 + k * DAY for k in range(5)]  # day 0 .. day 4


def _date(ts: int) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).date().isoformat()


END_DATE = _date(D[3])  # day 3: eval; train_days=1: day 2 trains; earlier days are history


def _write(root, log, name, records):
    path = os.path.join(root, log, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)


def _partitioned_logs(root: str) -> str:
    """One user's days as daily partitions, plus flat files beside them (today's layout)."""
    logs = os.path.join(root, "logs")
    _write(logs, "items", "items.jsonl", ITEMS)
    for imp_id, item, ts in (("h1", "i1", D[1] + 100), ("t1", "i2", D[2] + 100), ("e1", "i3", D[3] + 100),
                             ("f1", "i1", D[4] + 100)):
        _write(logs, "impressions", f"dt={_date(ts)}/part-0.jsonl", [impression(imp_id, "u1", item, ts, 1, f"r{imp_id}")])
    _write(logs, "impressions", "flat.jsonl", [impression("x1", "u1", "i2", D[4] + 200, 1, "rx1"),   # after D
                                               impression("t2", "u1", "i5", D[2] + 300, 2, "rt1")])  # a train day
    _write(logs, "clicks", f"dt={_date(D[0])}/part-0.jsonl", [event("u1", "i1", D[0] + 50)])  # history
    _write(logs, "clicks", f"dt={_date(D[4])}/part-0.jsonl", [event("u1", "i3", D[4] + 50)])  # after D: not read
    _write(logs, "clicks", "flat.jsonl", [event("u1", "i5", D[0] - 30 * DAY),   # before the clicks' history
                                          event("u1", "i2", D[2] + 150, request_id="rt1")])  # labels t1
    _write(logs, "carts", f"dt={_date(D[1])}/part-0.jsonl", [event("u1", "i1", D[1] + 60)])
    _write(logs, "orders", "flat.jsonl", [event("u1", "i4", D[0] - 100 * DAY)])  # within a year: history
    return logs


@pytest.fixture(scope="module")
def daily(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("daily"))
    logs = _partitioned_logs(root)
    config = IngestConfig(num_shards=2, end_date=END_DATE, train_days=1)
    report = run_ingest(logs, os.path.join(root, "out"), config, BEAM)
    return logs, report, read_examples(os.path.join(root, "out", "examples"))


def test_window_splits_train_eval_and_history(daily):
    _, report, examples = daily
    assert {k: v["_split"] for k, v in examples.items()} == {"t1": "train", "t2": "train", "e1": "eval"}
    assert report["window"]["eval"] == [END_DATE, END_DATE]
    assert report["window"]["train"] == [_date(D[2]), _date(D[2])]


def test_every_record_read_is_accounted_for(daily):
    _, report, _ = daily
    impressions = report["logs"]["impressions"]
    # day 4's partition is not read; the flat file's day-4 impression is read and out of the window
    assert impressions["read"] == 5 and impressions["out_of_window"] == 1 and impressions["history"] == 1
    assert impressions["accepted"] == impressions["examples"] + impressions["history"] == 3 + 1
    assert report["balanced"]
    clicks = report["logs"]["clicks"]
    assert (clicks["read"], clicks["out_of_window"], clicks["accepted"]) == (3, 1, 2)


def test_features_see_history_before_the_window(daily):
    _, _, examples = daily
    t1 = examples["t1"]
    assert t1["click_sequence_item_id"] == ["i1"]  # day 0's click partition
    assert t1["cart_sequence_item_id"] == ["i1"]
    assert t1["order_sequence_item_id"] == ["i4"]  # 100 days earlier, in a flat file
    assert t1["user_impressions_7d"] == [1.0]      # h1, a history impression (not an example)
    assert t1["click"] == [1]
    assert examples["e1"]["click_sequence_item_id"] == ["i2", "i1"]


def test_without_a_window_partitions_and_flat_files_are_all_read(daily, tmp_path):
    logs, _, _ = daily
    report = run_ingest(logs, str(tmp_path / "out"), IngestConfig(num_shards=2), BEAM)
    examples = read_examples(str(tmp_path / "out" / "examples"))
    assert sorted(examples) == ["e1", "f1", "h1", "t1", "t2", "x1"]
    assert {k for k, v in examples.items() if v["_split"] == "eval"} == {"f1", "x1"}
    assert report["logs"]["clicks"]["read"] == 4 and report["logs"]["impressions"]["out_of_window"] == 0


def test_partitions_outside_the_window_are_not_listed(daily):
    logs, _, _ = daily
    listed = [f.path for f in list_log_files(logs, window=date_window(
        IngestConfig(end_date=END_DATE, train_days=1, history_days=0)))]
    assert not [p for p in listed if f"dt={_date(D[4])}" in p or f"dt={_date(D[0])}" in p]
    assert any(f"impressions/dt={_date(D[2])}" in p for p in listed) and any("flat.jsonl" in p for p in listed)


def test_a_partition_directory_that_is_not_a_date_fails_naming_it(tmp_path):
    logs = _partitioned_logs(str(tmp_path))
    _write(logs, "clicks", "dt=2026-13-01/part-0.jsonl", [event("u1", "i1", D[0])])
    with pytest.raises(ContractError, match="dt=2026-13-01"):
        list_log_files(logs)


@pytest.mark.parametrize("settings,message", [
    ({"end_date": "2026-09-25"}, "go together"),
    ({"train_days": 3}, "go together"),
    ({"end_date": "25.09.2026", "train_days": 3}, "YYYY-MM-DD or 'yesterday'"),
    ({"end_date": "today", "train_days": 3}, "YYYY-MM-DD"),
    ({"end_date": "2026-09-25", "train_days": 0}, "train_days"),
    ({"history_days": -1}, "history_days"),
])
def test_bad_window_settings_fail_clearly(settings, message):
    with pytest.raises(ValueError, match=message):
        IngestConfig(**settings)


def test_feature_history_covers_each_logs_longest_window():
    history = feature_history_days()
    assert history["orders"] == history["carts"] == 366  # order / cart sequences: a year
    assert history["wishes"] == 31 and history["clicks"] == history["impressions"] == 8


def test_input_fingerprint_follows_the_windows_files_only(tmp_path):
    """The Ingest's cache key (`funnel run --cache`): a changed file of the window's days
    changes it, a changed partition of a later day does not."""
    logs = _partitioned_logs(str(tmp_path))
    config = IngestConfig(end_date=END_DATE, train_days=1)
    before = input_fingerprint(logs, config)
    _write(logs, "clicks", f"dt={_date(D[4])}/part-0.jsonl", [event("u1", "i3", D[4] + 50), event("u1", "i2", D[4] + 60)])
    assert input_fingerprint(logs, config) == before
    assert input_fingerprint(logs, IngestConfig()) != input_fingerprint(logs, config)  # no window: day 4 too
    _write(logs, "clicks", f"dt={_date(D[0])}/part-0.jsonl", [event("u1", "i1", D[0] + 50), event("u1", "i2", D[0] + 70)])
    assert input_fingerprint(logs, config) != before


def test_end_date_yesterday_is_the_day_before_the_run(daily, tmp_path, monkeypatch):
    """A scheduled pipeline's `end_date: yesterday`: resolved when the ingest runs (here on
    day 4), the window of the explicit day 3, recorded in the report."""
    import components.ingest.config as ingest_config

    logs, report, examples = daily
    run_day = datetime.date.fromisoformat(_date(D[4]))
    monkeypatch.setattr(ingest_config, "utc_today", lambda: run_day)
    relative = IngestConfig(num_shards=2, end_date="yesterday", train_days=1)
    assert relative.resolve_end_date().end_date == END_DATE
    assert relative.resolve_end_date(datetime.date(2026, 3, 1)).end_date == "2026-02-28"
    with pytest.raises(ValueError, match="resolved"):
        date_window(relative)  # one resolution per run: never on each use
    again = run_ingest(logs, str(tmp_path / "out"), relative, BEAM)
    assert again["window"] == report["window"] and again["window"]["end_date"] == END_DATE
    assert read_examples(str(tmp_path / "out" / "examples")) == examples
