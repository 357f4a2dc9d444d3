"""The ingest report: every record read is accounted for, and the quarantine gate.

For each log: read = accepted + quarantined (by reason) + out_of_window (a daily run's
records outside its days). For impressions, accepted = train examples + eval examples +
history (a daily run's impressions before its train days, read for the features): no
impression is dropped silently. Event
logs' accepted records feed labels, sequences and features.
"""

import json
from typing import Dict

from components.ingest import reader
from components.ingest.contract import INGESTED_LOGS
from models import features


class IngestError(RuntimeError):
    """The run read its input but the result must not be used (too much quarantined,
    or the accounting does not balance)."""


def build_report(counts: Dict[str, int], max_quarantine_fraction: float) -> dict:
    logs = {}
    for log in INGESTED_LOGS:
        quarantined = {
            reason: counts.get(f"{log}.quarantined.{reason}", 0)
            for reason in reader.REASONS
            if counts.get(f"{log}.quarantined.{reason}", 0)
        }
        read = counts.get(f"{log}.read", 0)
        out_of_window = counts.get(f"{log}.out_of_window", 0)
        logs[log] = {"read": read, "quarantined": quarantined, "out_of_window": out_of_window,
                     "accepted": read - sum(quarantined.values()) - out_of_window}
    examples = {split: counts.get(f"examples.{split}", 0) for split in (features.TRAIN_SPLIT, features.EVAL_SPLIT)}
    impressions = logs["impressions"]
    impressions["examples"] = sum(examples.values())
    impressions["history"] = counts.get("impressions.history", 0)  # a daily run's: features only
    impressions["dropped"] = {}  # no impression is dropped: each is an example or quarantined
    read = sum(entry["read"] for entry in logs.values())
    quarantined = sum(sum(entry["quarantined"].values()) for entry in logs.values())
    by_reason: Dict[str, int] = {}
    for entry in logs.values():
        for reason, n in entry["quarantined"].items():
            by_reason[reason] = by_reason.get(reason, 0) + n
    return {
        "records_read": read,
        "records_quarantined": quarantined,
        "quarantined_by_reason": by_reason,
        "quarantine_fraction": quarantined / read if read else 0.0,
        "max_quarantine_fraction": max_quarantine_fraction,
        "examples": examples,
        "labels": {name: counts.get(f"labels.{name}", 0) for name in features.LABELS},
        "logs": logs,
        "balanced": impressions["accepted"]
        == impressions["examples"] + impressions["history"] + sum(impressions["dropped"].values()),
    }


def check_report(report: dict) -> None:
    if not report["balanced"]:
        imp = report["logs"]["impressions"]
        raise IngestError(
            f"impressions do not balance: accepted {imp['accepted']} != examples {imp['examples']}"
            f" + history {imp['history']}")
    if report["quarantine_fraction"] > report["max_quarantine_fraction"]:
        raise IngestError(
            f"{report['records_quarantined']} of {report['records_read']} records quarantined "
            f"({report['quarantine_fraction']:.2%} > {report['max_quarantine_fraction']:.2%}): "
            f"{json.dumps(report['quarantined_by_reason'], sort_keys=True)}")
