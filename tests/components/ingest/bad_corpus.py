"""A corpus of bad raw logs for the ingest, generated (never hand-edited): one case per directory.

    python -m tests.components.ingest.bad_corpus --out DIR

writes DIR/<case>/, each a whole logs directory (the small good `base_logs` plus the case's
files), which `funnel ingest` can read. Each case states its outcome, as the README's table
does: `quarantined` (each bad record with its reason), `accepted`, or `fails` (the run stops
with an error naming the file). The tests (test_bad_corpus.py) write every record-level case
into one logs directory (`write_batch`: file names start with the case's name, so the
quarantine's `file` tells the cases apart) and run the ingest once on it.
"""

import argparse
import dataclasses
import gzip
import io
import json
import os
import re
from typing import Callable, Dict, List, Optional, Tuple

import pyarrow as pa
import pyarrow.parquet as pq

from tests.components.ingest.logs import DAY, ITEMS, T0, event, impression

QUARANTINED, ACCEPTED, FAILS = "quarantined", "accepted", "fails"
DAY1, DAY2 = T0, T0 + DAY  # the base logs' two days: train, then eval
BASE_PER_DAY = 300  # so a handful of records is far below window.MIN_DAY_SHARE of a day
MAX_TS = 4_102_444_800  # schemas/raw_logs.yaml: a larger ts is milliseconds
MAX_STRING_BYTES = 256  # schemas/raw_logs.yaml: string_max_bytes


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    outcome: str  # QUARANTINED | ACCEPTED | FAILS
    what: str
    # (log, file name) -> the file's bytes, or a callable writing the file at a path (many files)
    files: Dict[Tuple[str, str], bytes]
    # log -> (records read, quarantined by reason), over this case's files
    expect: Dict[str, Tuple[int, Dict[str, int]]] = dataclasses.field(default_factory=dict)
    # impression ids of the case that must become examples
    accepted_ids: Tuple[str, ...] = ()
    error: str = ""  # FAILS: a regex of the error (the file's path is checked too)
    base: bool = True  # False: the case is the whole logs directory
    writer: Optional[Callable[[str], None]] = None  # writes files of its own into a logs dir


def _line(record) -> bytes:
    return record if isinstance(record, bytes) else json.dumps(record).encode() + b"\n"


def jsonl(records) -> bytes:
    return b"".join(map(_line, records))


def parquet(records: List[dict], schema: Optional[pa.Schema] = None) -> bytes:
    return parquet_table(pa.Table.from_pylist(records, schema=schema))


def parquet_table(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _imp(case: str, k: int, ts: int = DAY2 + 7200, **fields) -> dict:
    """A good impression of the case (id `case-k`), with `fields` overriding."""
    return {**impression(f"{case}-{k}", f"u{k % 7}", ITEMS[k % 5]["item_id"], ts, k % 9 + 1,
                         request=f"{case}-r{k // 9}"), **fields}


def base_logs() -> Dict[str, bytes]:
    """Two days of good logs: BASE_PER_DAY impressions a day (day 2 is eval), clicks, carts, orders."""
    imps, clicks = [], []
    for day_index, day in enumerate((DAY1, DAY2)):
        for k in range(BASE_PER_DAY):
            n = day_index * BASE_PER_DAY + k
            user, item = f"u{n % 10}", ITEMS[n % 5]["item_id"]
            imps.append(impression(f"base-{n}", user, item, day + 3600 + k * 60, k % 10 + 1,
                                   request=f"base-r{n // 10}"))
            if n % 7 == 0:
                clicks.append(event(user, item, day + 3600 + k * 60 + 5, request_id=f"base-r{n // 10}"))
    carts = [event(c["user_id"], c["item_id"], c["ts"] + 60) for c in clicks[::3]]
    orders = [event(c["user_id"], c["item_id"], c["ts"] + 120, order_id=f"o{n}", amount=12.5)
              for n, c in enumerate(clicks[::5])]
    return {"items": jsonl(ITEMS), "impressions": jsonl(imps), "clicks": jsonl(clicks),
            "carts": jsonl(carts), "orders": jsonl(orders)}


BASE_READ = {"items": len(ITEMS), "impressions": 2 * BASE_PER_DAY}


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def _record_cases() -> List[Case]:
    """Cases whose records are quarantined or accepted one by one (batched into one run)."""
    cases = []

    def add(name, outcome, what, files, expect, accepted_ids=()):
        cases.append(Case(name, outcome, what, files, expect, tuple(accepted_ids)))

    n = "truncated_json_line"
    add(n, QUARANTINED, "the last line cut mid-record (no newline)",
        {("impressions", f"{n}.jsonl"): jsonl([_imp(n, 0), _imp(n, 1)]) + json.dumps(_imp(n, 2)).encode()[:40]},
        {"impressions": (3, {"unparseable": 1})}, [f"{n}-0", f"{n}-1"])

    n = "wrong_types"
    add(n, QUARANTINED, "ts as a string / float / beyond 64 bits, position as a float or bool, ids as numbers or objects",
        {("impressions", f"{n}.jsonl"): jsonl([
            _imp(n, 0), _imp(n, 1, ts=str(DAY2)), _imp(n, 2, ts=float(DAY2)), _imp(n, 3, ts=10**20),
            _imp(n, 4, position=2.5), _imp(n, 5, page=True), _imp(n, 6, user_id=17), _imp(n, 7, item_id={"id": "i1"})]),
         ("clicks", f"{n}.jsonl"): jsonl([event("u1", "i1", DAY2, request_id=7)])},
        {"impressions": (8, {"wrong_type": 7}), "clicks": (1, {"wrong_type": 1})}, [f"{n}-0"])

    n = "missing_fields"
    add(n, QUARANTINED, "a required field absent or null (optional ones may be)",
        {("impressions", f"{n}.jsonl"): jsonl([
            {k: v for k, v in _imp(n, 0).items() if k != "ts"}, _imp(n, 1, user_id=None),
            {k: v for k, v in _imp(n, 2).items() if k != "impression_id"}, _imp(n, 3, scenario=None)]),
         ("orders", f"{n}.jsonl"): jsonl([{"user_id": "u1", "ts": DAY2}, event("u1", "i1", DAY2 + 9)])},
        {"impressions": (4, {"missing_field": 3}), "orders": (2, {"missing_field": 1})}, [f"{n}-3"])

    n = "unknown_fields"
    extra = {"experiment": "b", "debug": {"nested": [1, 2, None]}, "score": 0.5}
    add(n, ACCEPTED, "fields outside the contract (scalars, objects) are ignored, on both reading paths",
        {("impressions", f"{n}-clean.jsonl"): jsonl([_imp(n, 0, **extra), _imp(n, 1, **extra)]),
         # a bad neighbour sends this file to the line-by-line reader
         ("impressions", f"{n}-mixed.jsonl"): jsonl([_imp(n, 2, **extra), b"not json\n"])},
        {"impressions": (4, {"unparseable": 1})}, [f"{n}-0", f"{n}-1", f"{n}-2"])

    n = "huge_strings"
    at_cap = "\u00e9" * (MAX_STRING_BYTES // 2)  # 256 bytes of UTF-8 in 128 characters: the cap counts bytes
    add(n, QUARANTINED, f"a string over {MAX_STRING_BYTES} bytes of UTF-8 (ids, request ids, catalog fields); "
        "one of exactly the cap is accepted",
        {("impressions", f"{n}.jsonl"): jsonl([
            _imp(n, 0, request_id=at_cap), _imp(n, 1, user_id="u" * (MAX_STRING_BYTES + 1)),
            _imp(n, 2, request_id=at_cap + "\u00e9"), _imp(n, 3, impression_id="x" * 10_000_000),
            _imp(n, 4, scenario="s" * 1000)]),
         ("items", f"{n}.jsonl"): jsonl([{"item_id": "huge-cat", "category_id": "c" * 5000, "brand_id": "b",
                                          "shop_id": "s"}]),
         ("clicks", f"{n}.jsonl"): jsonl([event("u1", "i" * 300, DAY2)])},
        {"impressions": (5, {"out_of_range": 4}), "items": (1, {"out_of_range": 1}),
         "clicks": (1, {"out_of_range": 1})}, [f"{n}-0"])

    n = "non_utf8"
    add(n, QUARANTINED, "bytes that are not UTF-8 (in a value or a key), a lone surrogate escape",
        {("impressions", f"{n}.jsonl"): jsonl([
            _imp(n, 0), json.dumps(_imp(n, 1, user_id="caf\u00e9")).encode().replace(b"\\u00e9", b"\xe9") + b"\n",
            json.dumps(_imp(n, 2)).encode().replace(b'"page"', b'"p\xffge"') + b"\n",
            _imp(n, 3, user_id="u\ud800")]),  # json.dumps writes it as the escape \ud800
         ("clicks", f"{n}.jsonl.gz"): _gzip(b'{"user_id": "\xff\xfe", "item_id": "i1", "ts": %d}\n' % DAY2)},
        {"impressions": (4, {"non_utf8": 3}), "clicks": (1, {"non_utf8": 1})}, [f"{n}-0"])

    n = "nan_inf_negative"
    add(n, QUARANTINED, "NaN / Infinity / 1e400 / negative prices and amounts, negative ts / position",
        {("items", f"{n}.jsonl"): jsonl([
            b'{"item_id": "nan-price", "category_id": "c", "brand_id": "b", "shop_id": "s", "price": NaN}\n',
            b'{"item_id": "inf-price", "category_id": "c", "brand_id": "b", "shop_id": "s", "price": Infinity}\n',
            b'{"item_id": "big-price", "category_id": "c", "brand_id": "b", "shop_id": "s", "price": 1e400}\n',
            {"item_id": "neg-price", "category_id": "c", "brand_id": "b", "shop_id": "s", "price": -1.0},
            {"item_id": "free", "category_id": "c", "brand_id": "b", "shop_id": "s", "price": 0.0}]),
         ("orders", f"{n}.jsonl"): jsonl([
            event("u1", "i1", DAY2, amount=-5.0), b'{"user_id": "u1", "item_id": "i1", "ts": %d, "amount": NaN}\n' % DAY2,
            event("u1", "i1", DAY2, amount=0)]),
         ("impressions", f"{n}.jsonl"): jsonl([_imp(n, 0), _imp(n, 1, ts=-1), _imp(n, 2, position=-1)])},
        {"items": (5, {"out_of_range": 4}), "orders": (3, {"out_of_range": 2}),
         "impressions": (3, {"out_of_range": 2})}, [f"{n}-0"])

    n = "millisecond_timestamps"
    add(n, QUARANTINED, f"ts in milliseconds (over {MAX_TS}, 2100-01-01)",
        # ts = the cap passes it, but is after the last day (future_timestamps)
        {("impressions", f"{n}.jsonl"): jsonl([_imp(n, 0), _imp(n, 1, ts=DAY2 * 1000), _imp(n, 2, ts=MAX_TS)]),
         ("clicks", f"{n}.jsonl"): jsonl([event("u1", "i1", DAY2 * 1000 + 5)])},
        {"impressions": (3, {"out_of_range": 2}), "clicks": (1, {"out_of_range": 1})}, [f"{n}-0"])

    n = "future_timestamps"
    add(n, QUARANTINED, "a handful of impressions after the last day (a day, a year, 70 years later): "
        "quarantined, the eval split stays; events after it are accepted (they label nothing)",
        {("impressions", f"{n}.jsonl"): jsonl([_imp(n, 0), _imp(n, 1, ts=DAY2 + DAY + 60),
                                               _imp(n, 2, ts=DAY2 + 365 * DAY), _imp(n, 3, ts=MAX_TS - 1)]),
         ("clicks", f"{n}.jsonl"): jsonl([event("u1", "i1", DAY2 + 365 * DAY, request_id=f"{n}-r0")])},
        {"impressions": (4, {"out_of_range": 3}), "clicks": (1, {})}, [f"{n}-0"])

    n = "duplicate_ids"
    first = [_imp(n, k) for k in range(3)]
    add(n, QUARANTINED, "an impression_id repeated in a later file (re-logged, or given to another user): "
        "the first in file order wins",
        {("impressions", f"{n}-a.jsonl"): jsonl(first),
         ("impressions", f"{n}-b.jsonl.gz"): _gzip(jsonl([first[1], {**first[2], "user_id": "someone-else"},
                                                          _imp(n, 3)]))},
        {"impressions": (6, {"duplicate_impression_id": 2})}, [f"{n}-{k}" for k in range(4)])

    n = "clicks_without_impressions"
    add(n, ACCEPTED, "clicks of a request no impression has, or with no request_id, of unknown users: "
        "accepted (sequences, statistics), they label nothing",
        {("clicks", f"{n}.jsonl"): jsonl([event("nobody", "i2", DAY2, request_id="no-such-request"),
                                          event("u3", "i3", DAY2 + 9)])},
        {"clicks": (2, {})})

    n = "unknown_items"
    add(n, QUARANTINED, "orders, carts and impressions of items not in the catalog",
        {("orders", f"{n}.jsonl"): jsonl([event("u1", "no-such-item", DAY2), event("u1", "i2", DAY2 + 5)]),
         ("carts", f"{n}.jsonl"): jsonl([event("u1", "gone", DAY2)]),
         ("impressions", f"{n}.jsonl"): jsonl([_imp(n, 0, item_id="no-such-item"), _imp(n, 1)])},
        {"orders": (2, {"unknown_item": 1}), "carts": (1, {"unknown_item": 1}),
         "impressions": (2, {"unknown_item": 1})}, [f"{n}-1"])

    n = "long_first_record"
    add(n, ACCEPTED, "a valid file whose first record (an extra field of 100 KB) is longer than the "
        "64 KiB the format check peeks at",
        {("impressions", f"{n}.jsonl"): jsonl([_imp(n, 0, note="x" * 100_000), _imp(n, 1)]),
         ("clicks", f"{n}.jsonl.gz"): _gzip(jsonl([event("u1", "i1", DAY2 + 1, note="y" * 100_000)]))},
        {"impressions": (2, {}), "clicks": (1, {})}, [f"{n}-0", f"{n}-1"])

    n = "byte_order_mark"
    add(n, ACCEPTED, "a UTF-8 byte order mark opening a file (with a bad record, so read line by line)",
        {("impressions", f"{n}.jsonl"): b"\xef\xbb\xbf" + jsonl([_imp(n, 0), b"{oops}\n", _imp(n, 1)])},
        {"impressions": (3, {"unparseable": 1})}, [f"{n}-0", f"{n}-1"])

    n = "empty_files"
    add(n, ACCEPTED, "an empty file, a gzip file of blank lines: no records (blank lines are not records)",
        {("clicks", f"{n}.jsonl"): b"", ("carts", f"{n}.jsonl.gz"): _gzip(b"\n\n  \n")},
        {"clicks": (0, {}), "carts": (0, {})})

    n = "parquet_wrong_schema"
    wrong_ts = pa.schema([(k, pa.string()) for k in _imp(n, 0)])
    add(n, QUARANTINED, "Parquet with a column of the wrong type (every record: wrong_type), without a "
        "required column (missing_field), with NaN in a number column (out_of_range), with a string "
        "that is not UTF-8 (non_utf8), with an extra column (ignored)",
        {("impressions", f"{n}-a.parquet"): parquet([{k: str(v) for k, v in _imp(n, k).items()} for k in (0, 1)],
                                                     wrong_ts),
         ("impressions", f"{n}-b.parquet"): parquet([{k: v for k, v in _imp(n, k).items() if k != "page"}
                                                     for k in (2, 3)]),
         ("impressions", f"{n}-c.parquet"): parquet([{**_imp(n, 4), "extra": [1, 2]}]),
         ("items", f"{n}.parquet"): parquet([{"item_id": "pq-nan", "category_id": "c", "brand_id": "b",
                                              "shop_id": "s", "price": float("nan")},
                                             {"item_id": "pq-ok", "category_id": "c", "brand_id": "b",
                                              "shop_id": "s", "price": 3.0}]),
         # a string column written without a UTF-8 check (as some writers do)
         ("clicks", f"{n}.parquet"): parquet_table(pa.table({
             "user_id": pa.array([b"u\xff", b"u1"], pa.binary()).view(pa.string()), "item_id": ["i1", "i1"],
             "ts": [DAY2, DAY2 + 1]}))},
        {"impressions": (5, {"wrong_type": 2, "missing_field": 2}), "items": (2, {"out_of_range": 1}),
         "clicks": (2, {"non_utf8": 1})},
        [f"{n}-4"])
    return cases


def _many_tiny_files(directory: str, count: int = 10_000) -> None:
    os.makedirs(directory, exist_ok=True)
    for k in range(count):
        with open(os.path.join(directory, f"tiny-{k:05d}.jsonl"), "wb") as f:
            f.write(_line(event(f"u{k % 10}", ITEMS[k % 5]["item_id"], DAY2 + k)))


def _truncated_gzip(records: int) -> bytes:
    data = _gzip(jsonl([_imp("truncated_gzip", k) for k in range(records)]))
    return data[: len(data) // 2]


def _corrupt_footer() -> bytes:
    data = parquet([_imp("parquet_corrupt_footer", 0)])
    return data[:-12] + b"\x00" * 8 + data[-4:]  # the footer's end and its length garbled, PAR1 kept


def _run_cases() -> List[Case]:
    """Cases that fail (or stress) a whole run."""
    return [
        Case("truncated_gzip_small", FAILS, "a .jsonl.gz cut short (within the 64 KiB the listing peeks at)",
             {("impressions", "truncated_gzip_small.jsonl.gz"): _truncated_gzip(50)},
             error="not a gzip file, or one cut short"),
        Case("truncated_gzip", FAILS, "a .jsonl.gz cut short past the first 64 KiB: the reader fails the run",
             {("impressions", "truncated_gzip.jsonl.gz"): _truncated_gzip(2_000)},
             error="cannot read file of log 'impressions'"),
        Case("parquet_corrupt_footer", FAILS, "a Parquet file whose footer is garbled",
             {("impressions", "parquet_corrupt_footer.parquet"): _corrupt_footer()},
             error="unreadable Parquet file"),
        Case("empty_log_directory", FAILS, "a logs directory with no files", {}, base=False,
             error="holds no log files"),
        Case("empty_required_log", FAILS, "a required log (orders) whose only file holds no record",
             {("orders", "base.jsonl"): b""}, error="required log 'orders'"),
        Case("ten_thousand_tiny_files", ACCEPTED, "10,000 files of one click each",
             {}, expect={"clicks": (10_000, {})},
             writer=lambda logs_dir: _many_tiny_files(os.path.join(logs_dir, "clicks"))),
    ]


RECORD_CASES = _record_cases()
RUN_CASES = _run_cases()
CASES = {c.name: c for c in RECORD_CASES + RUN_CASES}


def _write_files(logs_dir: str, files: Dict[Tuple[str, str], bytes]) -> None:
    for (log, name), data in files.items():
        os.makedirs(os.path.join(logs_dir, log), exist_ok=True)
        with open(os.path.join(logs_dir, log, name), "wb") as f:
            f.write(data)


def write_base(logs_dir: str) -> None:
    _write_files(logs_dir, {(log, "base.jsonl"): data for log, data in base_logs().items()})


def write_case(logs_dir: str, case: Case) -> str:
    """One case as a whole logs directory."""
    os.makedirs(logs_dir, exist_ok=True)
    if case.base:
        write_base(logs_dir)
    _write_files(logs_dir, case.files)
    if case.writer:
        case.writer(logs_dir)
    return logs_dir


def write_batch(logs_dir: str, cases: List[Case] = RECORD_CASES) -> str:
    """The base logs and every case's files in one logs directory."""
    write_base(logs_dir)
    for case in cases:
        _write_files(logs_dir, case.files)
    return logs_dir


def case_of(path: str) -> str:
    """The case of a file of `write_batch` (its name up to the first '-' or '.')."""
    return re.split(r"[-.]", os.path.basename(path), maxsplit=1)[0]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="directory to write one logs directory per case into")
    args = parser.parse_args(argv)
    for case in CASES.values():
        write_case(os.path.join(args.out, case.name), case)
        print(f"{case.name}: {case.outcome}: {case.what}")


if __name__ == "__main__":
    main()
