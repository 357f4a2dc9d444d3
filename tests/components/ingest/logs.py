"""Small hand-written logs for the ingest tests."""

import gzip
import json
import os
from typing import Dict, List

DAY = 86_400
T0 = 1_790_000_000 - 1_790_000_000 % DAY  # a UTC midnight (2026-09-21)

ITEMS = [
    {"item_id": "i1", "category_id": "c1", "brand_id": "b1", "shop_id": "s1", "price": 10.0},
    {"item_id": "i2", "category_id": "c1", "brand_id": "b2", "shop_id": "s1", "price": 20.0},
    {"item_id": "i3", "category_id": "c2", "brand_id": "b3", "shop_id": "s2", "price": 30.0},
    {"item_id": "i4", "category_id": "c3", "brand_id": "b4", "shop_id": "s2"},
    {"item_id": "i5", "category_id": "c3", "brand_id": "b4", "shop_id": "s3", "price": 5.0},
]


def write_logs(root: str, logs: Dict[str, List[dict]], gz: bool = False) -> str:
    """Writes each log as one JSON Lines file; raw `bytes` entries are written as-is."""
    for log, records in logs.items():
        os.makedirs(os.path.join(root, log), exist_ok=True)
        path = os.path.join(root, log, "part-0.jsonl" + (".gz" if gz else ""))
        opener = gzip.open if gz else open
        with opener(path, "wb") as f:
            for record in records:
                f.write(record if isinstance(record, bytes) else json.dumps(record).encode() + b"\n")
    return root


def impression(imp_id, user, item, ts, position, request="r1", page=1, scenario=None):
    record = {"impression_id": imp_id, "request_id": request, "user_id": user, "item_id": item,
              "ts": ts, "position": position, "page": page}
    if scenario:
        record["scenario"] = scenario
    return record


def event(user, item, ts, **extra):
    return {"user_id": user, "item_id": item, "ts": ts, **extra}


def run(root: str, logs: Dict[str, List[dict]], **config) -> dict:
    """Runs the real Beam ingest in-process on `logs`; returns (report, examples by id)."""
    from components.ingest.config import IngestConfig
    from components.ingest.runner import run_ingest

    write_logs(os.path.join(root, "logs"), logs)
    out = os.path.join(root, "out")
    report = run_ingest(os.path.join(root, "logs"), out, IngestConfig(num_shards=3, **config),
                        ["--direct_running_mode=in_memory", "--direct_num_workers=1"])
    return report, read_examples(os.path.join(out, "examples"))


def read_examples(examples_dir: str) -> Dict[str, dict]:
    """impression_id -> {feature: list of values, "_split": split} for every written example."""
    import glob

    import tensorflow as tf

    examples = {}
    for path in sorted(glob.glob(os.path.join(examples_dir, "Split-*", "*"))):
        split = os.path.basename(os.path.dirname(path))[len("Split-"):]
        compression = "GZIP" if path.endswith(".gz") else ""
        for record in tf.data.TFRecordDataset(path, compression_type=compression).as_numpy_iterator():
            example = tf.train.Example.FromString(record)
            values = {}
            for name, feature in example.features.feature.items():
                kind = feature.WhichOneof("kind")
                values[name] = list(getattr(feature, kind).value) if kind else []
                if kind == "bytes_list":
                    values[name] = [v.decode() for v in values[name]]
            values["_split"] = split
            assert values["impression_id"][0] not in examples, "an impression was written twice"
            examples[values["impression_id"][0]] = values
    return examples
