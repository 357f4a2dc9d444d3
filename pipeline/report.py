"""Reads a finished pipeline's outputs and prints what a user needs to see."""

import glob
import json
import os
from typing import Dict, List

from tensorflow_metadata.proto.v0 import anomalies_pb2


def _latest(pattern: str) -> str:
    """The newest execution's output (TFX names output dirs by execution id)."""
    paths = glob.glob(pattern)
    if not paths:
        raise FileNotFoundError(f"no pipeline output matches {pattern}")
    return max(paths, key=lambda p: int(p.split(os.sep)[-2]) if p.split(os.sep)[-2].isdigit() else -1)


def anomalies(root: str) -> Dict[str, List[str]]:
    """Split -> anomaly descriptions found by ExampleValidator (empty lists when clean)."""
    found = {}
    for path in sorted(glob.glob(os.path.join(os.path.dirname(_latest(os.path.join(root, "ExampleValidator", "anomalies", "*", "Split-*"))), "Split-*", "SchemaDiff.pb"))):
        message = anomalies_pb2.Anomalies()
        with open(path, "rb") as f:
            message.ParseFromString(f.read())
        split = os.path.basename(os.path.dirname(path))[len("Split-"):]
        found[split] = [f"{name}: {info.short_description}" for name, info in message.anomaly_info.items()]
    return found


def summarize(root: str) -> str:
    report_path = _latest(os.path.join(root, "Ingest", "ingest_report", "*", "ingest_report.json"))
    with open(report_path) as f:
        ingest = json.load(f)
    lines = ["funnel pipeline", f"  ingest report: {report_path}",
             f"  records read {ingest['records_read']}, quarantined {ingest['records_quarantined']} "
             f"{json.dumps(ingest['quarantined_by_reason'], sort_keys=True)}",
             f"  examples: train {ingest['examples']['train']}, eval {ingest['examples']['eval']}",
             "  labels: " + ", ".join(f"{k} {v}" for k, v in ingest["labels"].items())]
    for split, found in anomalies(root).items():
        lines.append(f"  schema anomalies ({split}): " + ("none" if not found else "; ".join(found)))
    return "\n".join(lines)
