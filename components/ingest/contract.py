"""The raw-log contract (schemas/raw_logs.yaml) and the checks that fail a run early.

Record-level problems (a bad line, a missing field) are quarantined later, one record
at a time; what is checked here is whether a *file* belongs to the contract at all:
a wrong extension, a file that is not JSON Lines / gzip / Parquet, or a required log
with no records fails the whole run with an error naming the file.
"""

import dataclasses
import json
import posixpath
from typing import Dict, List, Optional, Tuple

import yaml

import schemas
from components.ingest import files
from components.ingest.window import PARTITION_PREFIX, partition_day

SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet")
# The logs the ingest reads. `users` and `truth` are part of the contract but no
# training example is built from them (truth is for evaluation only).
INGESTED_LOGS = ("items", "impressions", "clicks", "carts", "wishes", "orders")
_PEEK_BYTES = 1 << 16


class ContractError(ValueError):
    """A file or directory that does not follow the raw-log contract."""


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    name: str
    type: str  # "string" | "int" | "number"
    required: bool
    minimum: Optional[int] = None
    maximum: Optional[int] = None
    default: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class LogSpec:
    name: str
    required: bool
    fields: Tuple[FieldSpec, ...]

    @property
    def field_names(self) -> Tuple[str, ...]:
        return tuple(f.name for f in self.fields)


@dataclasses.dataclass(frozen=True)
class LogFile:
    """One file of one log; `index` is its position in the sorted listing of all files."""

    log: str
    path: str
    index: int
    size: int = -1  # bytes as listed (-1: unknown); small files are parsed in batches


def _load_yaml(path: Optional[str]) -> dict:
    with open(path or schemas.path("raw_logs.yaml")) as f:
        return yaml.safe_load(f)


def load_contract(path: Optional[str] = None) -> Dict[str, LogSpec]:
    raw = _load_yaml(path)
    specs = {}
    for name, log in raw["logs"].items():
        fields = tuple(
            FieldSpec(
                name=field,
                type=attrs["type"],
                required=bool(attrs.get("required", False)),
                minimum=attrs.get("min"),
                maximum=attrs.get("max"),
                default=attrs.get("default"),
            )
            for field, attrs in log["fields"].items()
        )
        specs[name] = LogSpec(name=name, required=bool(log["required"]), fields=fields)
    return specs


CONTRACT = load_contract()
# The cap on every string of a record (ids included), in bytes of UTF-8: a longer one is
# quarantined (out_of_range), so a runaway id cannot bloat the examples or the vocabularies.
MAX_STRING_BYTES = int(_load_yaml(None)["string_max_bytes"])


def _check_file_format(path: str) -> bool:
    """Returns whether the file holds at least one record; raises if it is not the format
    its name says (the first 64 KiB must hold a JSON object line, or the Parquet magic)."""
    if path.endswith(".parquet"):
        with files.open_bytes(path) as f:
            head = f.read(4)
        if head != b"PAR1":
            raise ContractError(f"{path}: not a Parquet file (no PAR1 magic)")
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(files.arrow_source(path)).metadata.num_rows > 0
        except Exception as e:  # a truncated footer, say
            raise ContractError(f"{path}: unreadable Parquet file: {e}") from e
    try:
        with files.open_bytes(path, decompress=True) as f:
            head = f.read(_PEEK_BYTES)
    except (OSError, EOFError) as e:
        raise ContractError(f"{path}: not a gzip file, or one cut short: {e}") from e
    lines = [line for line in head.split(b"\n") if line.strip()]
    if not lines:
        return False
    cut = len(head) == _PEEK_BYTES  # the last line of the peek may be cut
    # A file is JSON Lines if some whole line is an object (bytes that are not UTF-8 make a
    # record bad, not the file: the reader quarantines it) ...
    for line in lines[:-1] if cut else lines:
        try:
            if isinstance(json.loads(line.decode("utf-8-sig", errors="replace")), dict):
                return True
        except ValueError:
            continue
    # ... or if the peek ends inside a record longer than it that starts as an object (the
    # reader checks that record whole and quarantines it if it is not one).
    if cut and lines[-1].lstrip().startswith(b"{"):
        return True
    raise ContractError(f"{path}: not JSON Lines (no line in its first 64 KiB is a JSON object)")


def _partition_files(log_dir: str, window) -> Tuple[List[Tuple[str, int]], int]:
    """The files of the log's daily partitions `dt=YYYY-MM-DD/` (those of the window's days
    when there is one), sorted by day then name, and how many files other days hold; a `dt=`
    directory that is not a date fails."""
    by_day, skipped = [], 0
    for path, size in files.match_sized(posixpath.join(log_dir, PARTITION_PREFIX + "*", "*")):
        directory = posixpath.basename(posixpath.dirname(path))
        try:
            day = partition_day(directory)
        except ValueError:
            raise ContractError(f"{posixpath.dirname(path)}: partition directory is not {PARTITION_PREFIX}YYYY-MM-DD")
        if window is None or window.reads_day(posixpath.basename(log_dir), day):
            by_day.append((day, path, size))
        else:
            skipped += 1
    return [(path, size) for _, path, size in sorted(by_day)], skipped


def list_log_files(logs_dir: str, logs=INGESTED_LOGS, window=None) -> List[LogFile]:
    """Lists and checks the files of the ingested logs, in a stable order (any filesystem
    Beam reads: local, gs://, s3://, hdfs://): each log's own files, then its daily partitions
    `dt=YYYY-MM-DD/*` (with a `window.DateWindow`, only the partitions of its days; other
    subdirectories of a log are not read)."""
    listed, other_days = {}, {}
    for log in logs:
        log_dir = posixpath.join(logs_dir, log)
        # the catalog has no days
        partitioned, other_days[log] = ([], 0) if log == "items" else _partition_files(log_dir, window)
        listed[log] = files.list_files_sized(log_dir) + partitioned
    if not any(listed.values()):
        raise ContractError(f"{logs_dir}: logs directory does not exist or holds no log files")
    found: List[Tuple[str, str, int]] = []
    for log in logs:
        spec = CONTRACT[log]
        log_dir = posixpath.join(logs_dir, log)
        has_records = False
        for path, size in listed[log]:
            name = posixpath.basename(path)
            if name.startswith("."):
                continue  # hidden files (e.g. .crc, _SUCCESS markers) are not logs
            if not name.endswith(SUFFIXES):
                raise ContractError(
                    f"{path}: unsupported file in log '{log}' (expected {', '.join(SUFFIXES)})"
                )
            has_records = _check_file_format(path) or has_records
            found.append((log, path, size))
        # A daily run's window may hold no record of a log (no order that week) if its other days do.
        if spec.required and not has_records and not other_days[log]:
            raise ContractError(
                f"{log_dir}: required log '{log}' is missing or holds no records"
            )
    return [LogFile(log=log, path=path, index=i, size=size) for i, (log, path, size) in enumerate(found)]
