"""The ingest on a non-local filesystem: `ram://` (TF's in-memory filesystem, registered for
Beam by tests/ramfs.py) stands in for gs:// / s3:// / hdfs://. Logs are read from it and
examples, quarantine and report written to it, exactly as from and to a local directory."""

import collections
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from components.ingest.config import IngestConfig
from components.ingest.contract import ContractError, list_log_files
from components.ingest.runner import REPORT_FILE, run_ingest
from tests import ramfs
from tests.components.ingest.logs import write_logs
from tests.components.ingest.test_bad_input import IN_PROCESS, bad_logs

CONFIG = IngestConfig(num_shards=2, max_quarantine_fraction=1.0)


def _write_local_logs(root: str) -> str:
    """Every reader path: gzip JSON Lines (fast and, with bad lines, slow path) and Parquet."""
    logs = bad_logs()
    items = logs.pop("items")
    write_logs(root, logs, gz=True)
    os.makedirs(os.path.join(root, "items"))
    pq.write_table(pa.Table.from_pylist(items), os.path.join(root, "items", "part-0.parquet"))
    return root


def _records(examples_dir: str) -> collections.Counter:
    """The serialized examples per split, as a multiset (via tf.io.gfile: any scheme)."""
    found = collections.Counter()
    for path in tf.io.gfile.glob(f"{examples_dir}/Split-*/*"):
        split = path.split("/")[-2]
        for record in tf.data.TFRecordDataset(path, compression_type="GZIP").as_numpy_iterator():
            found[(split, record)] += 1
    return found


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    local_logs = _write_local_logs(str(tmp_path_factory.mktemp("logs")))
    remote_logs = f"ram://ingest-test/logs"
    ramfs.copy_tree(local_logs, remote_logs)
    local_out = str(tmp_path_factory.mktemp("out"))
    remote_out = "ram://ingest-test/out"
    local = run_ingest(local_logs, local_out, CONFIG, IN_PROCESS)
    remote = run_ingest(remote_logs, remote_out, CONFIG, IN_PROCESS)
    yield (local, local_out), (remote, remote_out)
    ramfs.remove_tree("ram://ingest-test")


def test_ingest_reads_and_writes_a_non_local_scheme(runs):
    (local, local_out), (remote, remote_out) = runs
    assert remote == local
    assert remote["records_quarantined"] > 0 and sum(remote["examples"].values()) > 0
    remote_records = _records(f"{remote_out}/examples")
    assert remote_records and remote_records == _records(os.path.join(local_out, "examples"))
    assert tf.io.gfile.exists(f"{remote_out}/{REPORT_FILE}")
    quarantined = tf.io.gfile.glob(f"{remote_out}/quarantine/*.jsonl")
    lines = [line for path in quarantined for line in tf.io.gfile.GFile(path).read().splitlines()]
    assert len(lines) == remote["records_quarantined"]


def test_contract_checks_files_on_a_non_local_scheme(tmp_path):
    root = "ram://contract-test/logs"
    ramfs.copy_tree(_write_local_logs(str(tmp_path)), root)
    try:
        assert {f.log for f in list_log_files(root)} == {"items", "impressions", "clicks", "carts", "orders"}
        with tf.io.gfile.GFile(f"{root}/impressions/x.jsonl.gz", "wb") as f:
            f.write(b"not gzip at all")
        with pytest.raises(ContractError, match="x.jsonl.gz: not a gzip file"):
            list_log_files(root)
        with pytest.raises(ContractError, match="does not exist"):
            list_log_files("ram://contract-test/nothing-here")
    finally:
        ramfs.remove_tree("ram://contract-test")
