"""Reads one log file into a DataFrame of valid records plus a quarantine of bad ones.

A clean file is read by Arrow's C++ JSON / Parquet readers (the fast path). Arrow
rejects a whole block on the first bad line, so a file it rejects is re-read line by
line in Python (the slow path), which gives every bad record its own reason. Both
paths apply the same rules, so a record's fate never depends on its neighbours.
"""

import codecs
import collections
import dataclasses
import json
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from components.ingest import files
from components.ingest.contract import CONTRACT, MAX_STRING_BYTES, LogFile, LogSpec

# Quarantine reasons (the keys of the run's per-reason counts).
UNPARSEABLE = "unparseable"
NON_UTF8 = "non_utf8"
MISSING_FIELD = "missing_field"
WRONG_TYPE = "wrong_type"
OUT_OF_RANGE = "out_of_range"
UNKNOWN_ITEM = "unknown_item"
DUPLICATE_IMPRESSION_ID = "duplicate_impression_id"
DUPLICATE_ITEM_ID = "duplicate_item_id"
REASONS = (
    UNPARSEABLE, NON_UTF8, MISSING_FIELD, WRONG_TYPE, OUT_OF_RANGE, UNKNOWN_ITEM,
    DUPLICATE_IMPRESSION_ID, DUPLICATE_ITEM_ID,
)

# Columns added to every frame: the file index and 1-based record number, so any
# record can be traced back (quarantine) and ordered deterministically (duplicates).
FILE_COLUMN = "_file"
ROW_COLUMN = "_row"
# Added to event frames once the catalog is known: the item's code (row) in the catalog.
ITEM_CODE_COLUMN = "_item"
_ARROW_TYPES = {"string": pa.string(), "int": pa.int64(), "number": pa.float64()}
_MAX_RECORD_CHARS = 2_000


@dataclasses.dataclass
class ParsedFile:
    """The valid records of one or more files of one log (FILE_COLUMN and ROW_COLUMN say
    where each row came from), the quarantine records of the others, and the count read."""
    log_files: List[LogFile]
    rows: pd.DataFrame
    quarantine: List[dict]
    records_read: int

    @property
    def log(self) -> str:
        return self.log_files[0].log

    def file_of(self, index: int) -> LogFile:
        return next(f for f in self.log_files if f.index == index)


def quarantine_record(log_file: LogFile, row: int, reason: str, detail: str, record) -> dict:
    if not isinstance(record, str):
        record = json.dumps({k: _json_value(v) for k, v in record.items()}, default=str, ensure_ascii=False)
    return {
        "log": log_file.log,
        "file": log_file.path,
        "row": int(row),
        "reason": reason,
        "detail": detail,
        "record": record[:_MAX_RECORD_CHARS],
    }


def _arrow_schema(spec: LogSpec) -> pa.Schema:
    return pa.schema([(f.name, _ARROW_TYPES[f.type]) for f in spec.fields])


def _type_ok(value, type_name: str) -> bool:
    if type_name == "string":
        return isinstance(value, str)
    if isinstance(value, bool):
        return False
    if type_name == "int":
        return isinstance(value, int)
    return isinstance(value, (int, float))


def _value_error(name: str, value, type_name: str) -> Optional[str]:
    """Why a present value cannot be stored in its column (a wrong_type detail), or None."""
    if not _type_ok(value, type_name):
        return f"{name}: expected {type_name}, got {type(value).__name__}"
    if type_name == "int" and not -(2**63) <= value < 2**63:
        return f"{name}: integer outside 64 bits"
    return None


def _has_surrogates(value) -> bool:
    """JSON's \\u escapes can spell lone UTF-16 surrogates, which no UTF-8 string holds."""
    try:
        value.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def _parse_line(raw: bytes, spec: LogSpec):
    """Returns (record dict, None) or (None, (reason, detail)) for one JSON line."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, (NON_UTF8, str(e))
    try:
        obj = json.loads(text)
    except ValueError as e:
        return None, (UNPARSEABLE, str(e))
    if not isinstance(obj, dict):
        return None, (UNPARSEABLE, f"not a JSON object: {type(obj).__name__}")
    record = {}
    for field in spec.fields:
        value = obj.get(field.name)
        if value is None:
            if field.required:
                return None, (MISSING_FIELD, field.name)
        elif _value_error(field.name, value, field.type):
            return None, (WRONG_TYPE, _value_error(field.name, value, field.type))
        elif field.type == "string" and _has_surrogates(value):
            return None, (NON_UTF8, f"{field.name}: a lone surrogate escape")
        record[field.name] = value
    return record, None


def _read_jsonl_slow(log_file: LogFile, spec: LogSpec):
    records, rows, quarantine, n = [], [], [], 0
    with files.open_bytes(log_file.path, decompress=True) as f:
        for line in f:
            if not line.strip():
                continue  # blank lines are not records (Arrow skips them too)
            n += 1
            if n == 1:  # a byte order mark opens the file, not its first record (Arrow skips it too)
                line = line.removeprefix(codecs.BOM_UTF8)
            record, error = _parse_line(line.rstrip(b"\r\n"), spec)
            if error:
                text = line.decode("utf-8", errors="backslashreplace").rstrip("\r\n")
                quarantine.append(quarantine_record(log_file, n, *error, text))
            else:
                records.append(record)
                rows.append(n)
    table = pa.Table.from_pylist(records, schema=_arrow_schema(spec))
    return table, np.asarray(rows, dtype=np.int64), quarantine, n


def _read_jsonl_fast(log_file: LogFile, spec: LogSpec) -> Optional[pa.Table]:
    options = pa_json.ParseOptions(
        explicit_schema=_arrow_schema(spec), unexpected_field_behavior="ignore"
    )
    compression = "gzip" if log_file.path.endswith(".gz") else None
    try:
        with pa.input_stream(files.arrow_source(log_file.path), compression=compression) as stream:
            table = pa_json.read_json(
                stream,
                read_options=pa_json.ReadOptions(block_size=1 << 24),
                parse_options=options,
            )
        # Arrow's JSON reader copies a string's bytes without checking they are UTF-8.
        table.validate(full=True)
        return table
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return None  # some record is bad: re-read line by line for per-record reasons


def _read_parquet(log_file: LogFile, spec: LogSpec):
    """Parquet columns are typed, so a wrong type applies to a whole column: every
    record of such a file is quarantined as wrong_type (and counted)."""
    table = pq.read_table(files.arrow_source(log_file.path))
    n = table.num_rows
    columns, bad = {}, []
    for field in spec.fields:
        if field.name not in table.column_names:
            columns[field.name] = pa.nulls(n, _ARROW_TYPES[field.type])
            continue
        column = table.column(field.name)
        ok = (
            pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
            if field.type == "string"
            else pa.types.is_integer(column.type)
            if field.type == "int"
            else pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
        )
        if ok:
            columns[field.name] = column.cast(_ARROW_TYPES[field.type])
        else:
            bad.append(f"{field.name}: expected {field.type}, got {column.type}")
            columns[field.name] = pa.nulls(n, _ARROW_TYPES[field.type])
    return pa.table(columns), "; ".join(bad)


def quarantine_rows(log_file: LogFile, frame: pd.DataFrame, mask: np.ndarray, reason: str,
                    detail: str = "", detail_column: Optional[str] = None) -> List[dict]:
    """Quarantine records for the rows of `frame` selected by `mask`; the detail is fixed or,
    with `detail_column`, that column's value."""
    spec = CONTRACT[log_file.log]
    return [quarantine_record(log_file, frame[ROW_COLUMN].iat[i], reason,
                              detail if detail_column is None else str(frame[detail_column].iat[i]),
                              _row_dict(frame, i, spec))
            for i in np.flatnonzero(mask)]


def quarantine_by_file(frame: pd.DataFrame, log_file: Callable[[int], LogFile], reason: str,
                       detail_column: str) -> List[dict]:
    """Quarantine records for every row of `frame`, whose rows may come from several files
    (FILE_COLUMN); `log_file(index)` gives the file of an index."""
    return [q for index, part in frame.groupby(FILE_COLUMN)
            for q in quarantine_rows(log_file(int(index)), part, np.ones(len(part), bool), reason,
                                     detail_column=detail_column)]


def _value_masks(table: pa.Table, spec: LogSpec) -> Dict[str, tuple]:
    """Per field with values past the contract's caps, (mask, detail), computed on the Arrow
    table (where NaN and null still differ, and without a Python string per value): strings
    longer than MAX_STRING_BYTES, numbers that are not finite. A mask is only built for a
    column that has such a value (rare), so a clean file pays one reduction per column."""
    masks = {}
    for field in spec.fields:
        column = table.column(field.name)
        if field.type == "string":
            lengths = pc.binary_length(column)
            if (pc.max(lengths).as_py() or 0) <= MAX_STRING_BYTES:
                continue
            bad, detail = pc.greater(lengths, MAX_STRING_BYTES), f"{field.name}: over {MAX_STRING_BYTES} bytes"
        elif field.type == "number":
            finite = pc.is_finite(column)
            if pc.all(finite).as_py() is not False:  # nulls are not judged here
                continue
            bad, detail = pc.invert(finite), f"{field.name}: not a finite number"
        else:
            continue
        masks[field.name] = (np.asarray(bad.fill_null(False), dtype=bool), detail)
    return masks


def _check_rows(log_file: LogFile, spec: LogSpec, frame: pd.DataFrame, quarantine: List[dict],
                value_masks: Dict[str, tuple]):
    """Vectorised record checks shared by both paths: required fields, caps and bounds; a
    record is quarantined for the first field (in contract order) that fails."""
    bad = np.zeros(len(frame), dtype=bool)

    def reject(mask: np.ndarray, reason: str, detail: str) -> None:
        nonlocal bad
        mask = mask & ~bad
        quarantine.extend(quarantine_rows(log_file, frame, mask, reason, detail))
        bad |= mask

    for field in spec.fields:
        column = frame[field.name]
        if field.required:
            reject(column.isna().to_numpy(), MISSING_FIELD, field.name)
        elif field.default is not None:
            frame[field.name] = column.fillna(field.default)
        if field.name in value_masks:
            mask, detail = value_masks[field.name]
            reject(mask, OUT_OF_RANGE, detail)
        minimum = field.minimum if field.minimum is not None else (0 if field.type == "int" else None)
        if minimum is not None:
            reject(column.fillna(minimum).to_numpy() < minimum, OUT_OF_RANGE, f"{field.name} < {minimum}")
        if field.maximum is not None:
            reject(column.fillna(field.maximum).to_numpy() > field.maximum, OUT_OF_RANGE,
                   f"{field.name} > {field.maximum}")
    frame = frame[~bad]
    # a column with nulls came back as float; all are valid now (astype: a new frame, not a view)
    floats = {f.name: np.int64 for f in spec.fields if f.type == "int" and frame[f.name].dtype != np.int64}
    return frame.astype(floats) if floats else frame


def _row_dict(frame: pd.DataFrame, i: int, spec: LogSpec) -> dict:
    return {name: frame[name].iat[i] for name in spec.field_names}


def _json_value(value):
    value = value.item() if isinstance(value, np.generic) else value
    # Missing values come back from pandas as NaN; the quarantine is strict JSON: null, and an
    # infinity its name.
    if isinstance(value, float) and not np.isfinite(value):
        return None if value != value else str(value)
    return value


def _quarantine_non_utf8(log_file: LogFile, spec: LogSpec, table: pa.Table, rows: np.ndarray):
    """Quarantines the rows of a Parquet table whose strings are not UTF-8 (a Parquet writer need
    not check them, and Arrow's to_pandas fails on them); returns the rest. Arrow checks a whole
    column, not a value, so the values of a column that fails are checked here, by hand."""
    bad = np.zeros(table.num_rows, dtype=bool)
    raw = {}
    for field in spec.fields:
        column = table.column(field.name)
        if field.type != "string":
            continue
        try:
            column.validate(full=True)
        except pa.ArrowInvalid:
            raw[field.name] = column.cast(pa.binary()).to_pylist()  # no copy, no check
            bad |= np.array([v is not None and not _is_utf8(v) for v in raw[field.name]], dtype=bool)
    if not bad.any():
        return table, rows, []

    def text(i: int) -> str:
        return json.dumps({name: (raw[name][i].decode("utf-8", errors="backslashreplace")
                                  if name in raw and raw[name][i] is not None else table.column(name)[i].as_py())
                           for name in spec.field_names}, default=str, ensure_ascii=False)

    quarantine = [quarantine_record(log_file, rows[i], NON_UTF8, "a string that is not UTF-8", text(i))
                  for i in np.flatnonzero(bad)]
    return table.filter(pa.array(~bad)), rows[~bad], quarantine


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def read_log_file(log_file: LogFile) -> ParsedFile:
    """Parses one file of the contract. Raises only for a file that cannot be read at all
    (e.g. a gzip stream cut short), naming the file."""
    spec = CONTRACT[log_file.log]
    quarantine: List[dict] = []
    try:
        if log_file.path.endswith(".parquet"):
            table, type_error = _read_parquet(log_file, spec)
            n = table.num_rows
            rows = np.arange(1, n + 1, dtype=np.int64)
            if type_error:
                frame = table.to_pandas()
                quarantine = [
                    quarantine_record(log_file, r, WRONG_TYPE, type_error, _row_dict(frame, r - 1, spec))
                    for r in rows
                ]
                table, rows = table.slice(0, 0), rows[:0]
            else:
                table, rows, quarantine = _quarantine_non_utf8(log_file, spec, table, rows)
        else:
            table = _read_jsonl_fast(log_file, spec)
            if table is None:
                table, rows, quarantine, n = _read_jsonl_slow(log_file, spec)
            else:
                n = table.num_rows
                rows = np.arange(1, n + 1, dtype=np.int64)
    except (OSError, EOFError, pa.ArrowException) as e:
        raise IOError(f"{log_file.path}: cannot read file of log '{log_file.log}': {e}") from e
    value_masks = _value_masks(table, spec)
    frame = table.to_pandas()
    frame[FILE_COLUMN] = np.int32(log_file.index)
    frame[ROW_COLUMN] = rows
    frame = _check_rows(log_file, spec, frame, quarantine, value_masks)
    return ParsedFile([log_file], frame.reset_index(drop=True), quarantine, n)


def read_log_files(log_files: Sequence[LogFile]) -> ParsedFile:
    """Parses files of one log into one frame. Several JSON Lines files are first parsed as one
    (`_read_clean_jsonl`: one Arrow parse and one frame instead of one per file, which is what a
    log written as thousands of tiny files costs); when any of their records is not clean, each
    file is read on its own, so every quarantine record names its file, row and reason exactly
    as `read_log_file` does."""
    if len(log_files) > 1 and not any(f.path.endswith(".parquet") for f in log_files):
        parsed = _read_clean_jsonl(log_files)
        if parsed is not None:
            return parsed
    parts = [read_log_file(f) for f in log_files]
    if len(parts) == 1:
        return parts[0]
    return ParsedFile(list(log_files), pd.concat([p.rows for p in parts], ignore_index=True),
                      [q for p in parts for q in p.quarantine], sum(p.records_read for p in parts))


def _read_clean_jsonl(log_files: Sequence[LogFile]) -> Optional[ParsedFile]:
    """The JSON Lines files as one table when every record in them is valid, else None (also
    for a file that cannot be read: `read_log_file` then fails naming it). The files' bytes are
    joined line-aligned (each file's BOM dropped and last line ended, as Arrow reads one file);
    each file's records are its non-blank lines, as the line-by-line reader counts them, and
    a table whose row count differs is not trusted."""
    spec = CONTRACT[log_files[0].log]
    chunks, counts = [], []
    try:
        for log_file in log_files:
            with files.open_bytes(log_file.path, decompress=True) as f:
                data = f.read().removeprefix(codecs.BOM_UTF8)
            counts.append(sum(1 for line in data.split(b"\n") if line.strip()))
            chunks.append(data if data.endswith(b"\n") or not data else data + b"\n")
        table = pa_json.read_json(
            pa.BufferReader(b"".join(chunks)), read_options=pa_json.ReadOptions(block_size=1 << 24),
            parse_options=pa_json.ParseOptions(explicit_schema=_arrow_schema(spec),
                                               unexpected_field_behavior="ignore"))
        table.validate(full=True)  # Arrow's JSON reader does not check strings are UTF-8
    except (OSError, EOFError, pa.ArrowInvalid, UnicodeDecodeError):
        return None
    if table.num_rows != sum(counts) or _value_masks(table, spec):
        return None
    frame = table.to_pandas()
    frame[FILE_COLUMN] = np.repeat(np.array([f.index for f in log_files], dtype=np.int32), counts)
    frame[ROW_COLUMN] = np.concatenate([np.arange(1, n + 1, dtype=np.int64) for n in counts])
    rejected: List[dict] = []
    frame = _check_rows(log_files[0], spec, frame, rejected, {})
    if rejected:  # named after the first file: thrown away, the files are read one by one
        return None
    return ParsedFile(list(log_files), frame.reset_index(drop=True), [], len(frame))


def code_items(parsed: ParsedFile, known_items: pd.Index) -> ParsedFile:
    """Adds each record's item code (its position in `known_items`) as ITEM_CODE_COLUMN;
    quarantines the records whose item_id is not in the item catalog."""
    frame = parsed.rows
    frame[ITEM_CODE_COLUMN] = known_items.get_indexer(frame["item_id"])
    unknown = frame[ITEM_CODE_COLUMN].to_numpy() < 0
    if not unknown.any():
        return parsed
    quarantine = parsed.quarantine + quarantine_by_file(frame[unknown], parsed.file_of, UNKNOWN_ITEM, "item_id")
    return ParsedFile(parsed.log_files, frame[~unknown].reset_index(drop=True), quarantine,
                      parsed.records_read)


def file_counts(parsed: ParsedFile) -> Dict[str, int]:
    """Per-log counters: records read and quarantined by reason."""
    log = parsed.log
    counts = collections.Counter({f"{log}.read": parsed.records_read})
    for q in parsed.quarantine:
        counts[f"{log}.quarantined.{q['reason']}"] += 1
    return dict(counts)
