"""The ingest report's gates (components/ingest/report.py): a split without examples."""

import pytest

from components.ingest.report import IngestError, check_splits


def _report(train, eval_, window=None, read=100, out_of_window=0):
    report = {"examples": {"train": train, "eval": eval_},
              "logs": {"impressions": {"read": read, "out_of_window": out_of_window}}}
    return {**report, "window": window} if window else report


def test_two_filled_splits_pass():
    check_splits(_report(90, 10), eval_days=1)


def test_an_empty_train_split_says_eval_days_covers_the_logs():
    with pytest.raises(IngestError, match=r"^the train split holds no examples \(eval 100, train 0\): "
                                          r"the last eval_days=3 days .* more days than eval_days$"):
        check_splits(_report(0, 100), eval_days=3)


def test_a_daily_window_outside_the_logs_names_its_dates():
    window = {"eval": ["2030-01-01", "2030-01-01"], "train": ["2029-12-30", "2029-12-31"]}
    with pytest.raises(IngestError, match=r"^the eval and train splits hold no examples \(eval 0, train 0\): "
                                          r"the daily window \(eval 2030-01-01..2030-01-01, train "
                                          r"2029-12-30..2029-12-31\) leaves 100 of 100 impressions outside it$"):
        check_splits(_report(0, 0, window, out_of_window=100), eval_days=1)
