"""Ingest configuration: data, loaded from YAML or built from CLI flags."""

import dataclasses
import datetime
from typing import Optional

from models import features
from models.validation import is_integer, is_number

CLICK_BY_REQUEST_ID = "request_id"
CLICK_BY_TIME_WINDOW = "time_window"
# `end_date: yesterday`: the UTC day before the ingest runs. A compiled, scheduled pipeline fixes
# its settings at compile time, so a daily schedule cannot name each run's date; this one is
# resolved when the ingest executes (`resolve_end_date`), and the report records the date used.
YESTERDAY = "yesterday"


def utc_today() -> datetime.date:
    return datetime.datetime.now(datetime.timezone.utc).date()


@dataclasses.dataclass(frozen=True)
class IngestConfig:
    # The last `eval_days` UTC calendar days of impressions are the eval split.
    eval_days: int = 1
    # A cart / wish / order labels a clicked impression if it follows the click on the
    # same (user, item) within this many seconds.
    attribution_window_seconds: int = features.DAY_SECONDS
    # How a click labels an impression: by its request_id (the default), or, for logs
    # that never carry request ids, any click of (user, item) within
    # `click_window_seconds` after the impression.
    click_attribution: str = CLICK_BY_REQUEST_ID
    click_window_seconds: int = 30 * 60
    # Users are hashed into this many shards; one shard's events must fit in a worker.
    num_shards: int = 16
    # The run fails when more than this fraction of the records read is quarantined.
    max_quarantine_fraction: float = 0.01
    # gzip level of the TFRecords (ExampleGen writes gzip); 0 writes plain TFRecords.
    # Level 1 costs half of zlib's default 6 for ~10 % more bytes.
    compression_level: int = 1
    # A daily run (components/ingest/window.py): eval is the `eval_days` UTC days ending on
    # `end_date` (YYYY-MM-DD), train the `train_days` days before; earlier events are read as
    # history for the point-in-time features, as far back as they look (`history_days: null`)
    # or `history_days` for every log. None: every record is read, the last days are eval.
    # `yesterday` (YESTERDAY): the UTC day before the ingest runs, for scheduled pipelines.
    end_date: Optional[str] = None
    train_days: Optional[int] = None
    history_days: Optional[int] = None

    def __post_init__(self):
        if isinstance(self.end_date, datetime.date):  # YAML reads an unquoted 2024-01-05 as a date
            object.__setattr__(self, "end_date", self.end_date.isoformat())
        # YAML gives whatever the user typed ("2", 1.5, true): a type the checks below cannot
        # compare would end in a TypeError traceback, or slip through to the Beam job.
        for name in ("eval_days", "num_shards", "compression_level", "attribution_window_seconds",
                     "click_window_seconds"):
            if not is_integer(getattr(self, name)):
                raise ValueError(f"{name} must be an integer, got {getattr(self, name)!r}")
        if not is_number(self.max_quarantine_fraction):
            raise ValueError(f"max_quarantine_fraction must be a number in [0, 1], got {self.max_quarantine_fraction!r}")
        if self.click_attribution not in (CLICK_BY_REQUEST_ID, CLICK_BY_TIME_WINDOW):
            raise ValueError(f"click_attribution must be {CLICK_BY_REQUEST_ID!r} or {CLICK_BY_TIME_WINDOW!r}")
        if self.eval_days < 1 or self.num_shards < 1:
            raise ValueError("eval_days and num_shards must be >= 1")
        for name in ("attribution_window_seconds", "click_window_seconds"):
            if getattr(self, name) < 1:  # a zero window attributes nothing: every label would be 0
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.compression_level <= 9:
            raise ValueError("compression_level must be in 0..9")
        if not 0.0 <= self.max_quarantine_fraction <= 1.0:
            raise ValueError("max_quarantine_fraction must be in [0, 1]")
        if (self.end_date is None) != (self.train_days is None):
            raise ValueError("end_date and train_days go together (a daily run needs both)")
        if self.end_date is not None:
            try:
                if self.end_date != YESTERDAY:
                    datetime.date.fromisoformat(self.end_date)
            except (TypeError, ValueError):
                raise ValueError(f"end_date must be a date YYYY-MM-DD or {YESTERDAY!r}, "
                                 f"got {self.end_date!r}") from None
            if not is_integer(self.train_days) or self.train_days < 1:
                raise ValueError(f"train_days must be an integer >= 1, got {self.train_days!r}")
        if self.history_days is not None and (not is_integer(self.history_days) or self.history_days < 0):
            raise ValueError(f"history_days must be null or an integer >= 0, got {self.history_days!r}")

    @property
    def relative_end_date(self) -> bool:
        """Whether the end date depends on the day the ingest runs."""
        return self.end_date == YESTERDAY

    def resolve_end_date(self, today: Optional[datetime.date] = None) -> "IngestConfig":
        """This config with `end_date: yesterday` replaced by the date of the UTC day before
        `today` (default: now); any other config unchanged."""
        if not self.relative_end_date:
            return self
        today = today or utc_today()
        return dataclasses.replace(self, end_date=(today - datetime.timedelta(days=1)).isoformat())

    @classmethod
    def from_yaml(cls, path: Optional[str], **overrides) -> "IngestConfig":
        from pipeline.config import read_config_file  # a clear error for a file that cannot be read or parsed

        values = dict((read_config_file(path).get("ingest") or {}) if path else {})
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown ingest settings: {sorted(unknown)}")
        return cls(**values)
