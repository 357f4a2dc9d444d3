"""Small files are parsed in batches (components/ingest/transforms.file_batches and
reader.read_log_files): a batch gives exactly the rows, quarantine and counts its files give
read one by one, and a directory of 10,000 one-record files goes through the whole ingest."""

import codecs
import gzip
import os
import time

import pandas as pd
import pytest

from components.ingest import reader
from components.ingest.config import IngestConfig
from components.ingest.contract import LogFile, list_log_files
from components.ingest.runner import run_ingest
from components.ingest.transforms import BATCH_BYTES, BATCH_FILES, SMALL_FILE_BYTES, file_batches
from tests.components.ingest import bad_corpus as corpus
from tests.components.ingest.logs import ITEMS, T0, event
from tests.components.ingest.test_bad_input import IN_PROCESS


def _files(*specs):
    return [LogFile(log, f"/logs/{log}/{k}.jsonl", k, size) for k, (log, size) in enumerate(specs)]


def test_consecutive_small_files_of_a_log_share_a_batch_and_large_ones_stay_alone():
    small, large = 100, SMALL_FILE_BYTES
    listed = _files(("clicks", small), ("clicks", small), ("clicks", large), ("clicks", small),
                    ("orders", small), ("orders", -1), ("orders", small))
    assert [[f.index for f in batch] for batch in file_batches(listed)] == [[0, 1], [2], [3], [4], [5], [6]]


def test_a_batch_stops_at_its_file_and_byte_caps():
    many = file_batches(_files(*[("clicks", 10)] * (BATCH_FILES + 1)))
    assert [len(b) for b in many] == [BATCH_FILES, 1]
    size = SMALL_FILE_BYTES - 1
    per_batch = BATCH_BYTES // size
    heavy = file_batches(_files(*[("clicks", size)] * (per_batch + 1)))
    assert [len(b) for b in heavy] == [per_batch, 1]
    assert [f.index for b in heavy for f in b] == list(range(per_batch + 1))  # nothing lost or reordered


def _write(directory, name, data: bytes) -> str:
    path = os.path.join(directory, name)
    with (gzip.open if name.endswith(".gz") else open)(path, "wb") as f:
        f.write(data)
    return path


def _line(record) -> bytes:
    return corpus._line(record)


def _listed(tmp_path, contents):
    paths = [_write(str(tmp_path), name, data) for name, data in contents]
    return [LogFile("clicks", p, 10 + k, os.path.getsize(p)) for k, p in enumerate(paths)]


def _one_by_one(log_files):
    parts = [reader.read_log_file(f) for f in log_files]
    return (pd.concat([p.rows for p in parts], ignore_index=True), [q for p in parts for q in p.quarantine],
            sum(p.records_read for p in parts))


CLEAN = [
    ("a.jsonl", _line(event("u1", ITEMS[0]["item_id"], T0)) + _line(event("u2", ITEMS[1]["item_id"], T0 + 1))),
    ("b.jsonl", codecs.BOM_UTF8 + _line(event("u3", ITEMS[2]["item_id"], T0 + 2))),  # a byte order mark
    ("c.jsonl", b"\n" + _line(event("u4", ITEMS[0]["item_id"], T0 + 3)) + b"\n\n"),  # blank lines
    ("d.jsonl.gz", _line(event("u5", ITEMS[1]["item_id"], T0 + 4)).rstrip(b"\n")),  # no last newline, gzip
    ("e.jsonl", b""),  # empty
]


def test_a_clean_batch_is_one_parse_with_each_row_s_file_and_line(tmp_path, monkeypatch):
    log_files = _listed(tmp_path, CLEAN)
    rows, quarantine, read = _one_by_one(log_files)
    monkeypatch.setattr(reader, "read_log_file", lambda f: pytest.fail(f"{f.path} read on its own"))
    batch = reader.read_log_files(log_files)
    pd.testing.assert_frame_equal(batch.rows, rows)
    assert batch.quarantine == quarantine == [] and batch.records_read == read == 5
    assert list(batch.rows[reader.FILE_COLUMN]) == [10, 10, 11, 12, 13]
    assert list(batch.rows[reader.ROW_COLUMN]) == [1, 2, 1, 1, 1]


@pytest.mark.parametrize("bad", [
    b"{not json\n",
    b'{"user_id": "u9", "item_id": "i1"}\n',  # ts missing
    b'{"user_id": "u9", "item_id": "i1", "ts": -5}\n',  # out of range
    b'{"user_id": "u\xff", "item_id": "i1", "ts": 1}\n',  # not UTF-8
])
def test_a_batch_with_a_bad_record_is_read_file_by_file(tmp_path, bad):
    log_files = _listed(tmp_path, CLEAN[:2] + [("bad.jsonl", _line(event("u8", ITEMS[0]["item_id"], T0)) + bad)])
    rows, quarantine, read = _one_by_one(log_files)
    batch = reader.read_log_files(log_files)
    pd.testing.assert_frame_equal(batch.rows, rows)
    assert batch.quarantine == quarantine and batch.records_read == read == 5
    (record,) = batch.quarantine
    assert record["file"] == log_files[2].path and record["row"] == 2


def test_unknown_items_of_a_batch_are_quarantined_naming_their_own_files(tmp_path):
    log_files = _listed(tmp_path, [("a.jsonl", _line(event("u1", "no-such-item", T0))),
                                   ("b.jsonl", _line(event("u2", ITEMS[0]["item_id"], T0)) +
                                    _line(event("u3", "no-such-item", T0)))])
    coded = reader.code_items(reader.read_log_files(log_files), pd.Index([i["item_id"] for i in ITEMS]))
    assert [(q["file"], q["row"], q["reason"]) for q in coded.quarantine] == [
        (log_files[0].path, 1, reader.UNKNOWN_ITEM), (log_files[1].path, 2, reader.UNKNOWN_ITEM)]
    assert len(coded.rows) == 1 and coded.records_read == 3


def test_ten_thousand_tiny_files_are_ingested_and_every_record_counted(memory_tmp_path):
    logs = corpus.write_case(str(memory_tmp_path / "logs"), corpus.CASES["ten_thousand_tiny_files"])
    base_clicks = sum(1 for line in corpus.base_logs()["clicks"].split(b"\n") if line.strip())
    started = time.monotonic()
    report = run_ingest(logs, str(memory_tmp_path / "out"), IngestConfig(num_shards=2), IN_PROCESS)
    seconds = time.monotonic() - started
    print(f"10,000 tiny files ingested in {seconds:.1f} s")  # the closing note's figure (pytest -s)
    clicks = report["logs"]["clicks"]
    assert clicks["read"] == base_clicks + 10_000
    assert clicks["quarantined"] == {} and clicks["out_of_window"] == 0
    assert clicks["accepted"] == clicks["read"]
    assert report["balanced"]
    assert len([f for f in list_log_files(logs) if f.log == "clicks"]) == 10_001
