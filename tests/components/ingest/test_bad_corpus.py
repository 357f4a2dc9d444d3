"""The generated corpus of bad inputs (bad_corpus.py): each case's documented outcome, with the
exact accounting of its records. Every record-level case runs in one ingest; the cases that
fail a whole run fail before Beam starts, except a gzip file cut short past the peek."""

import collections
import glob
import json
import os
import time

import pytest

from components.ingest.config import IngestConfig
from components.ingest.contract import INGESTED_LOGS, ContractError, list_log_files
from components.ingest.runner import run_ingest
from components.ingest.window import date_of, last_full_day
from models import features
from tests.components.ingest import bad_corpus as corpus
from tests.components.ingest.logs import read_examples
from tests.components.ingest.test_bad_input import IN_PROCESS


def _lines(data: bytes) -> int:
    return sum(1 for line in data.split(b"\n") if line.strip())


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("corpus"))
    logs = corpus.write_batch(os.path.join(root, "logs"))
    out = os.path.join(root, "out")
    report = run_ingest(logs, out, IngestConfig(num_shards=2, max_quarantine_fraction=1.0), IN_PROCESS)
    quarantine = []
    for path in glob.glob(os.path.join(out, "quarantine", "*.jsonl")):
        with open(path) as f:
            quarantine += [json.loads(line) for line in f]
    return report, quarantine, read_examples(os.path.join(out, "examples"))


def _quarantined_by_case(quarantine):
    """case -> log -> reason -> count, from each quarantined record's file."""
    counts = collections.defaultdict(lambda: collections.defaultdict(collections.Counter))
    for q in quarantine:
        counts[corpus.case_of(q["file"])][q["log"]][q["reason"]] += 1
    return counts


def test_every_log_balances_over_base_and_cases(corpus_run):
    report, quarantine, _ = corpus_run
    base = {log: _lines(data) for log, data in corpus.base_logs().items()}
    assert len(quarantine) == report["records_quarantined"] > 0
    for log in INGESTED_LOGS:
        entry = report["logs"][log]
        read = base.get(log, 0) + sum(c.expect.get(log, (0, {}))[0] for c in corpus.RECORD_CASES)
        quarantined = collections.Counter()
        for case in corpus.RECORD_CASES:
            quarantined.update(case.expect.get(log, (0, {}))[1])
        assert entry["read"] == read, log
        assert entry["quarantined"] == {k: v for k, v in quarantined.items() if v}, log
        assert entry["read"] == entry["accepted"] + sum(entry["quarantined"].values()) + entry["out_of_window"], log
    assert report["balanced"]


@pytest.mark.parametrize("case", corpus.RECORD_CASES, ids=lambda c: c.name)
def test_each_case_has_its_outcome(corpus_run, case):
    """Per case and log: its quarantined records by reason, and for impressions read =
    accepted (the case's examples) + quarantined."""
    _, quarantine, examples = corpus_run
    by_case = _quarantined_by_case(quarantine)
    assert {log: dict(reasons) for log, reasons in by_case[case.name].items()} == {
        log: reasons for log, (_, reasons) in case.expect.items() if reasons}
    written = {i for i in examples if i.startswith(f"{case.name}-")}
    assert written == set(case.accepted_ids)
    read, reasons = case.expect.get("impressions", (0, {}))
    assert read == len(written) + sum(reasons.values())
    reasons = {reason for _, r in case.expect.values() for reason in r}
    # an accepted case quarantines at most the bad neighbour that sends a file to the line-by-line reader
    assert reasons <= {"unparseable"} if case.outcome == corpus.ACCEPTED else reasons


def test_good_records_are_untouched(corpus_run):
    report, quarantine, examples = corpus_run
    assert not _quarantined_by_case(quarantine)["base"]
    assert {i for i in examples if i.startswith("base-")} == {f"base-{n}" for n in range(2 * corpus.BASE_PER_DAY)}
    # clicks without impressions, future or unmatched clicks label nothing: only the base's clicks do
    assert report["labels"]["click"] == _lines(corpus.base_logs()["clicks"])


def test_implausible_timestamps_do_not_move_the_eval_split(corpus_run):
    _, quarantine, examples = corpus_run
    days = {split: {int(e["ts"][0]) // corpus.DAY for e in examples.values() if e["_split"] == split}
            for split in (features.TRAIN_SPLIT, features.EVAL_SPLIT)}
    assert days == {features.TRAIN_SPLIT: {corpus.DAY1 // corpus.DAY}, features.EVAL_SPLIT: {corpus.DAY2 // corpus.DAY}}
    late = [q for q in quarantine if q["detail"].startswith("ts after")]
    assert {json.loads(q["record"])["impression_id"] for q in late} == {
        "future_timestamps-1", "future_timestamps-2", "future_timestamps-3", "millisecond_timestamps-2"}
    assert late[0]["detail"] == f"ts after {date_of(corpus.DAY2 // corpus.DAY)}, the last day of impressions"


def test_quarantine_records_name_file_row_and_cap(corpus_run):
    _, quarantine, _ = corpus_run
    cut = [q for q in quarantine if corpus.case_of(q["file"]) == "truncated_json_line"]
    assert [(q["row"], q["reason"]) for q in cut] == [(3, "unparseable")]
    huge = {q["detail"] for q in quarantine if corpus.case_of(q["file"]) == "huge_strings"}
    assert huge == {f"{f}: over {corpus.MAX_STRING_BYTES} bytes"
                    for f in ("user_id", "request_id", "impression_id", "scenario", "category_id", "item_id")}
    assert max(len(q["record"]) for q in quarantine) <= 2_000  # a 10 MB id is not copied whole

    def strict(constant):
        raise ValueError(f"not strict JSON: {constant}")

    # Records checked after parsing are written back as strict JSON (NaN as null, Infinity named);
    # unparseable lines are kept as they were, and any record is cut at 2,000 characters.
    parsed = [q for q in quarantine if q["reason"] in ("out_of_range", "unknown_item", "duplicate_impression_id")]
    assert {q["reason"] for q in parsed} == {"out_of_range", "unknown_item", "duplicate_impression_id"}
    for q in parsed:
        if len(q["record"]) < 2_000:
            json.loads(q["record"], parse_constant=strict)


def _case_dir(tmp_path, name) -> str:
    return corpus.write_case(str(tmp_path / name), corpus.CASES[name])


@pytest.mark.parametrize("name", ["truncated_gzip_small", "parquet_corrupt_footer", "empty_log_directory",
                                  "empty_required_log"])
def test_whole_run_failures_stop_before_beam_naming_the_file(tmp_path, name):
    case = corpus.CASES[name]
    logs = _case_dir(tmp_path, name)
    start = time.monotonic()
    with pytest.raises(ContractError, match=case.error) as error:
        run_ingest(logs, str(tmp_path / "out"), IngestConfig(num_shards=2), IN_PROCESS)
    assert time.monotonic() - start < 5  # the listing refused it; no pipeline ran
    named = [os.path.join(logs, log, file) if data else os.path.join(logs, log)
             for (log, file), data in case.files.items()] or [logs]
    assert any(path in str(error.value) for path in named)
    assert not os.path.exists(tmp_path / "out" / "examples")


def test_gzip_cut_short_past_the_peek_fails_the_run_naming_the_file(tmp_path):
    case = corpus.CASES["truncated_gzip"]
    logs = _case_dir(tmp_path, case.name)
    list_log_files(logs)  # its first 64 KiB are fine: only reading it all finds the cut
    with pytest.raises(Exception, match=case.error) as error:
        run_ingest(logs, str(tmp_path / "out"), IngestConfig(num_shards=2), IN_PROCESS)
    assert os.path.join(logs, "impressions", "truncated_gzip.jsonl.gz") in str(error.value)


def test_ten_thousand_tiny_files_are_listed_and_checked_cheaply(memory_tmp_path):
    """Listing and checking every file is the per-file cost paid before the pipeline; reading
    them is the pipeline's, in batches (test_file_batches.py ingests this case whole)."""
    logs = _case_dir(memory_tmp_path, "ten_thousand_tiny_files")
    start = time.monotonic()
    listed = list_log_files(logs)
    seconds = time.monotonic() - start
    tiny = [f for f in listed if os.path.basename(f.path).startswith("tiny-")]
    assert len(tiny) == corpus.CASES["ten_thousand_tiny_files"].expect["clicks"][0] == 10_000
    assert [f.index for f in listed] == list(range(len(listed)))
    assert seconds < 15, seconds


def test_the_last_day_needs_a_share_of_the_busiest_day():
    busy, late = {100: 150, 101: 200}, {101: 100, 102: 1, 500: 1}
    assert last_full_day([busy, late]) == 101  # 1 impression is under 1 % of 300
    assert last_full_day([busy, {102: 3}]) == 102  # 3 of 300 are not
    assert last_full_day([{}, {}]) == last_full_day([]) == -1
