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


def check_splits(report: dict, eval_days: int) -> None:
    """IngestError when the train or the eval split holds no example: nothing downstream can
    train or evaluate on it, and the statistics and Transform would fail on it with messages
    that do not say why (e.g. `eval_days` covering every day of the logs, or a daily run's
    `end_date` outside them)."""
    empty = [split for split, n in sorted(report["examples"].items()) if n == 0]
    if not empty:
        return
    impressions = report["logs"]["impressions"]
    window = report.get("window")
    if window is not None:
        why = (f"the daily window (eval {window['eval'][0]}..{window['eval'][1]}, train {window['train'][0]}.."
               f"{window['train'][1]}) leaves {impressions['out_of_window']} of {impressions['read']} impressions "
               "outside it")
    else:
        why = (f"the last eval_days={eval_days} days with impressions are eval, the days before them train; "
               "the logs need impressions on more days than eval_days")
    counts = ", ".join(f"{split} {n}" for split, n in sorted(report["examples"].items()))
    raise IngestError(f"the {' and '.join(empty)} split{'s' if len(empty) > 1 else ''} "
                      f"{'hold' if len(empty) > 1 else 'holds'} no examples ({counts}): {why}")
