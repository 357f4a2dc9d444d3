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


def load_contract(path: Optional[str] = None) -> Dict[str, LogSpec]:
    with open(path or schemas.path("raw_logs.yaml")) as f:
        raw = yaml.safe_load(f)
    specs = {}
    for name, log in raw["logs"].items():
        fields = tuple(
            FieldSpec(
                name=field,
                type=attrs["type"],
                required=bool(attrs.get("required", False)),
                minimum=attrs.get("min"),
                default=attrs.get("default"),
            )
            for field, attrs in log["fields"].items()
        )
        specs[name] = LogSpec(name=name, required=bool(log["required"]), fields=fields)
    return specs


CONTRACT = load_contract()


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
        raise ContractError(f"{path}: not a gzip file: {e}") from e
    lines = [line for line in head.split(b"\n") if line.strip()]
    if not lines:
        return False
    # The last line of the peek may be cut; a file is JSON Lines if some whole line is an object.
    for line in lines[:-1] if len(head) == _PEEK_BYTES else lines:
        try:
            if isinstance(json.loads(line), dict):
                return True
        except ValueError:
            continue
    raise ContractError(f"{path}: not JSON Lines (no line in its first 64 KiB is a JSON object)")


def list_log_files(logs_dir: str, logs=INGESTED_LOGS) -> List[LogFile]:
    """Lists and checks the files of the ingested logs, in a stable order (any filesystem
    Beam reads: local, gs://, s3://, hdfs://; subdirectories of a log are not listed)."""
    listed = {log: files.list_files(posixpath.join(logs_dir, log)) for log in logs}
    if not any(listed.values()):
        raise ContractError(f"{logs_dir}: logs directory does not exist or holds no log files")
    found: List[Tuple[str, str]] = []
    for log in logs:
        spec = CONTRACT[log]
        log_dir = posixpath.join(logs_dir, log)
        has_records = False
        for path in listed[log]:
            name = posixpath.basename(path)
            if name.startswith("."):
                continue  # hidden files (e.g. .crc, _SUCCESS markers) are not logs
            if not name.endswith(SUFFIXES):
                raise ContractError(
                    f"{path}: unsupported file in log '{log}' (expected {', '.join(SUFFIXES)})"
                )
            has_records = _check_file_format(path) or has_records
            found.append((log, path))
        if spec.required and not has_records:
            raise ContractError(
                f"{log_dir}: required log '{log}' is missing or holds no records"
            )
    return [LogFile(log=log, path=path, index=i) for i, (log, path) in enumerate(found)]
