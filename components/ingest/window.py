"""The date window of a daily run (`--end-date D --train-days N`): which days are read, which
impressions become train or eval examples, and which only serve as history.

    eval:    [D - eval_days + 1, D]                    (UTC days)
    train:   the N days before the eval days
    history: before the train days, as far back as the point-in-time features of each log look
             (or `history_days`); read for labels, sequences and statistics, never examples.

Events after D are not read: a run for D sees what a scheduled run at the end of D would
(labels of the last hours of D miss the carts and orders of D + 1), so a re-run of D later
gives the same examples. Records of a file outside the window are counted (`out_of_window`),
never silently dropped.
"""

import dataclasses
import datetime
from typing import Dict, Optional, Sequence

import numpy as np

from components.ingest.config import IngestConfig
from models import features as F

PARTITION_PREFIX = "dt="
# A run without an end date ends on the last UTC day with impressions that holds at least this
# share of the busiest day's: a handful of records with a wrong clock (a year ahead, say) do not
# make a day, so they cannot move the eval split; impressions after that day are quarantined.
MIN_DAY_SHARE = 0.01
_EPOCH = datetime.date(1970, 1, 1)

# The behaviour sequence each event log feeds (features.SEQUENCES).
SEQUENCE_LOG = {F.SEQUENCE_CLICK: "clicks", F.SEQUENCE_CART: "carts", F.SEQUENCE_ORDER: "orders"}


def day_number(date: str) -> int:
    """Days since 1970-01-01 of a YYYY-MM-DD date (ValueError otherwise)."""
    return (datetime.date.fromisoformat(date) - _EPOCH).days


def date_of(day: int) -> str:
    return (_EPOCH + datetime.timedelta(days=day)).isoformat()


def feature_history_days() -> Dict[str, int]:
    """Per event log, the days before an impression that its point-in-time features read
    (features.py's windows), plus one day: item statistics count complete UTC hours, so their
    7-day window starts up to an hour before t - 7 days."""
    windows = {log: 0 for log in ("impressions", "clicks", "carts", "wishes", "orders")}

    def need(log: str, days: float) -> None:
        windows[log] = max(windows[log], int(np.ceil(days)))

    for table in (F.ITEM_COUNT_FEATURES, F.USER_COUNT_FEATURES, F.USER_CATEGORY_FEATURES, F.USER_ITEM_FEATURES):
        for log, days in table.values():
            need(log, days)
    for sequence, (_, seconds) in F.SEQUENCES.items():
        need(SEQUENCE_LOG[sequence], seconds / F.DAY_SECONDS)
    need("clicks", F.SECONDS_SINCE_LAST_CLICK_CAP / F.DAY_SECONDS)
    need("orders", 365)  # price_to_user_order_price: the user's orders of the past 365 days
    return {log: days + 1 for log, days in windows.items()}


@dataclasses.dataclass(frozen=True)
class DateWindow:
    end_day: int
    eval_days: int
    train_days: int
    history_days: Dict[str, int]  # per event log

    @property
    def eval_start_day(self) -> int:
        return self.end_day - self.eval_days + 1

    @property
    def first_train_day(self) -> int:
        return self.eval_start_day - self.train_days

    def first_day(self, log: str) -> int:
        """The first day of `log` read (items have no time: always read whole)."""
        return self.first_train_day - self.history_days[log]

    def reads_day(self, log: str, day: int) -> bool:
        return self.first_day(log) <= day <= self.end_day

    def keeps(self, log: str, ts: np.ndarray) -> np.ndarray:
        """Which events of `log` (Unix seconds) are inside the window."""
        day = np.asarray(ts, np.int64) // F.DAY_SECONDS
        return (day >= self.first_day(log)) & (day <= self.end_day)

    def describe(self) -> dict:
        """For the report: the dates, inclusive."""
        return {"end_date": date_of(self.end_day),
                "eval": [date_of(self.eval_start_day), date_of(self.end_day)],
                "train": [date_of(self.first_train_day), date_of(self.eval_start_day - 1)],
                "history_from": {log: date_of(self.first_day(log)) for log in sorted(self.history_days)}}


def date_window(config: IngestConfig) -> Optional[DateWindow]:
    """The run's window, or None when no `end_date` is set (every record is read; the last
    `eval_days` days with impressions are eval, the rest train)."""
    if config.end_date is None:
        return None
    if config.relative_end_date:  # a caller that forgot it would read a different day at midnight
        raise ValueError("a relative end_date must be resolved once per run (IngestConfig.resolve_end_date)")
    needed = feature_history_days()
    if config.history_days is not None:  # a cap (cheaper, the longest features see less)
        needed = {log: config.history_days for log in needed}
    return DateWindow(day_number(config.end_date), config.eval_days, config.train_days, needed)


def day_counts(ts: np.ndarray) -> Dict[int, int]:
    """Events per UTC day (days since 1970-01-01) of Unix-second timestamps."""
    days, counts = np.unique(np.asarray(ts, np.int64) // F.DAY_SECONDS, return_counts=True)
    return dict(zip(days.tolist(), counts.tolist()))


def last_full_day(per_file: Sequence[Dict[int, int]]) -> int:
    """The last day (MIN_DAY_SHARE) of the impressions counted per file by `day_counts`; -1
    when there are none."""
    total: Dict[int, int] = {}
    for counts in per_file:
        for day, n in counts.items():
            total[day] = total.get(day, 0) + n
    if not total:
        return -1
    busiest = max(total.values())
    return max(day for day, n in total.items() if n >= MIN_DAY_SHARE * busiest)


def partition_day(name: str) -> Optional[int]:
    """The day of a `dt=YYYY-MM-DD` partition directory name; None for any other name."""
    if not name.startswith(PARTITION_PREFIX):
        return None
    return day_number(name[len(PARTITION_PREFIX):])
