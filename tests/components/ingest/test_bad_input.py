"""Bad records are quarantined with their reason and counted; good ones all arrive;
files outside the contract fail the run naming the file."""

import glob
import gzip
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.ingest.config import IngestConfig
from components.ingest.contract import ContractError, list_log_files
from components.ingest.report import IngestError
from components.ingest.runner import REPORT_FILE, run_ingest
from tests.components.ingest.logs import DAY, ITEMS, T0, event, impression, write_logs

T = T0 + DAY + 3600
IN_PROCESS = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]


def good_impressions():
    return [impression(f"ok{k}", f"u{k % 3}", ITEMS[k % 5]["item_id"], T + k, k % 4 + 1) for k in range(20)]


def bad_logs():
    imp = good_impressions()
    bad_impressions = [
        b'{"impression_id": "x1", "request_id": \n',                                    # unparseable
        b'[1, 2, 3]\n',                                                                  # unparseable: not an object
        json.dumps({**impression("x2", "u1", "i1", T, 1), "user_id": None}).encode() + b"\n",  # missing_field
        json.dumps({k: v for k, v in impression("x3", "u1", "i1", T, 1).items() if k != "ts"}).encode() + b"\n",
        json.dumps({**impression("x4", "u1", "i1", T, 1), "ts": "yesterday"}).encode() + b"\n",  # wrong_type
        json.dumps({**impression("x5", "u1", "i1", T, 1), "position": 2.5}).encode() + b"\n",  # wrong_type
        json.dumps({**impression("x6", "u1", "i1", T, 1), "user_id": 17}).encode() + b"\n",    # wrong_type
        json.dumps(impression("x7", "u1", "i1", T, 0)).encode() + b"\n",                  # out_of_range
        json.dumps(impression("x8", "u1", "i1", T, -3)).encode() + b"\n",                 # out_of_range
        json.dumps({**impression("x9", "u1", "i1", T, 1), "page": 0}).encode() + b"\n",   # out_of_range
        json.dumps(impression("x10", "u1", "no-such-item", T, 1)).encode() + b"\n",       # unknown_item
        json.dumps(impression("ok3", "u2", "i1", T, 1)).encode() + b"\n",                 # duplicate (other user)
        json.dumps(imp[5]).encode() + b"\n",                                              # duplicate (re-logged)
        b'{"impression_id": "x11", "request_id": "r", "user_id": "u\xff\xfe", "item_id": "i1", "ts": 1, "position": 1, "page": 1}\n',  # non_utf8
        b"\n",                                                                            # blank: not a record
    ]
    clicks = [event("u1", "i1", T + 5, request_id="r1"), event("u2", "nope", T + 5),  # unknown_item
              b'{"user_id": "u1"\n']                                                 # unparseable
    items = ITEMS + [{"item_id": "i1", "category_id": "c9", "brand_id": "b9", "shop_id": "s9"}]  # duplicate_item_id
    return {"items": items, "impressions": imp + bad_impressions, "clicks": clicks,
            "carts": [event("u1", "i1", T + 60)], "orders": [event("u1", "i1", T + 90)]}


EXPECTED_IMPRESSIONS = {
    "unparseable": 2, "missing_field": 2, "wrong_type": 3, "out_of_range": 3,
    "unknown_item": 1, "duplicate_impression_id": 2, "non_utf8": 1,
}


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("bad"))
    write_logs(os.path.join(root, "logs"), bad_logs())
    report = run_ingest(os.path.join(root, "logs"), os.path.join(root, "out"),
                        IngestConfig(num_shards=2, max_quarantine_fraction=1.0), IN_PROCESS)
    return root, report


def test_every_bad_kind_is_counted_by_reason(bad_run):
    _, report = bad_run
    logs = report["logs"]
    assert logs["impressions"]["quarantined"] == EXPECTED_IMPRESSIONS
    assert logs["clicks"]["quarantined"] == {"unknown_item": 1, "unparseable": 1}
    assert logs["items"]["quarantined"] == {"duplicate_item_id": 1}
    assert logs["impressions"]["read"] == 20 + 14  # the blank line is not a record


def test_records_read_equal_examples_plus_quarantined(bad_run):
    _, report = bad_run
    imp = report["logs"]["impressions"]
    assert imp["read"] == imp["examples"] + sum(imp["quarantined"].values()) + sum(imp["dropped"].values())
    assert report["records_read"] == sum(log["read"] for log in report["logs"].values())
    assert report["records_read"] == sum(log["accepted"] + sum(log["quarantined"].values())
                                         for log in report["logs"].values())
    assert report["balanced"]


def test_every_good_record_arrives(bad_run):
    from tests.components.ingest.logs import read_examples

    root, report = bad_run
    examples = read_examples(os.path.join(root, "out", "examples"))
    assert sorted(examples) == sorted(f"ok{k}" for k in range(20))
    assert examples["ok3"]["user_id"] == ["u0"]  # the first ok3 (file order) won
    assert sum(e["click"][0] for e in examples.values()) == report["labels"]["click"]


def test_quarantine_holds_each_record_with_reason(bad_run):
    root, report = bad_run
    records = []
    for path in glob.glob(os.path.join(root, "out", "quarantine", "*.jsonl")):
        with open(path) as f:
            records += [json.loads(line) for line in f]
    assert len(records) == report["records_quarantined"]
    by_id = {r["detail"]: r for r in records if r["reason"] == "duplicate_impression_id"}
    assert set(by_id) == {"ok3", "ok5"}
    # The quarantined duplicates are the records as read (item_id, which the shuffle leaves
    # behind, restored; the optional scenario filled in with its default).
    assert json.loads(by_id["ok3"]["record"]) == {**impression("ok3", "u2", "i1", T, 1), "scenario": "default"}
    assert json.loads(by_id["ok5"]["record"])["item_id"] == good_impressions()[5]["item_id"]
    non_utf8 = [r for r in records if r["reason"] == "non_utf8"]
    assert non_utf8[0]["file"].endswith("impressions/part-0.jsonl") and non_utf8[0]["row"] == 34
    assert "\\xff" in non_utf8[0]["record"]

    def strict(constant):
        raise ValueError(f"not strict JSON: {constant}")

    missing = [r for r in records if r["reason"] == "missing_field"]
    assert {json.loads(r["record"], parse_constant=strict)["impression_id"] for r in missing} == {"x2", "x3"}


def test_quarantine_threshold_fails_the_run_and_keeps_the_report(tmp_path):
    write_logs(str(tmp_path / "logs"), bad_logs())
    with pytest.raises(IngestError, match="quarantined"):
        run_ingest(str(tmp_path / "logs"), str(tmp_path / "out"), IngestConfig(num_shards=2), IN_PROCESS)
    with open(tmp_path / "out" / REPORT_FILE) as f:
        assert json.load(f)["records_quarantined"] == 17


def test_parquet_logs_and_parquet_type_errors(tmp_path):
    logs = bad_logs()
    write_logs(str(tmp_path / "logs"), {k: v for k, v in logs.items() if k != "impressions"})
    os.makedirs(tmp_path / "logs" / "impressions")
    pq.write_table(pa.Table.from_pylist(good_impressions()), tmp_path / "logs" / "impressions" / "a.parquet")
    wrong = [{**i, "impression_id": f"w{n}", "ts": str(i["ts"])} for n, i in enumerate(good_impressions()[:2])]
    pq.write_table(pa.Table.from_pylist(wrong), tmp_path / "logs" / "impressions" / "b.parquet")
    report = run_ingest(str(tmp_path / "logs"), str(tmp_path / "out"),
                        IngestConfig(num_shards=2, max_quarantine_fraction=1.0), IN_PROCESS)
    assert report["examples"]["train"] + report["examples"]["eval"] == 20
    assert report["logs"]["impressions"]["quarantined"] == {"wrong_type": 2}


@pytest.mark.parametrize("name,content,message", [
    ("impressions/x.csv", b"a,b\n", "unsupported file"),
    ("impressions/x.jsonl", b"\x00\x01PAR1 binary", "not JSON Lines"),
    ("impressions/x.jsonl.gz", b"not gzip at all", "not a gzip file"),
    ("impressions/x.parquet", b"{}", "not a Parquet file"),
])
def test_files_outside_the_contract_fail_naming_the_file(tmp_path, name, content, message):
    write_logs(str(tmp_path), bad_logs())
    with open(tmp_path / name, "wb") as f:
        f.write(content)
    with pytest.raises(ContractError, match=message) as error:
        list_log_files(str(tmp_path))
    assert name in str(error.value)


def test_empty_or_missing_required_log_fails(tmp_path):
    logs = bad_logs()
    logs["orders"] = []
    write_logs(str(tmp_path), logs)
    with pytest.raises(ContractError, match="required log 'orders'"):
        list_log_files(str(tmp_path))
    os.remove(tmp_path / "orders" / "part-0.jsonl")
    os.rmdir(tmp_path / "orders")
    with pytest.raises(ContractError, match="required log 'orders'"):
        list_log_files(str(tmp_path))


def test_optional_logs_may_be_absent_and_gzip_is_read(tmp_path):
    logs = bad_logs()
    write_logs(str(tmp_path), {k: v for k, v in logs.items() if k != "wishes"}, gz=True)
    files = list_log_files(str(tmp_path))
    assert {f.log for f in files} == {"items", "impressions", "clicks", "carts", "orders"}
    with gzip.open(files[1].path) as f:
        assert f.readline()
