"""Benchmark results: one JSON file per benchmark (bench/results/*.json), also printed."""

import contextlib
import json
import os
from typing import Any, Mapping, Optional

from pipeline import progress


def write_result(result: Mapping[str, Any], path: str, markdown: Optional[str] = None) -> None:
    """Writes `result` as JSON to `path`, and `markdown` (the table for people) beside it as .md."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    if markdown is not None:
        with open(os.path.splitext(path)[0] + ".md", "w") as f:
            f.write(markdown)
    print(json.dumps(result, indent=2))


@contextlib.contextmanager
def quiet_bench(name: str, log_path: str):
    """As `funnel ablate`: within the block the console shows the bench's own prints and a line
    per pipeline step (`pipeline.progress.quiet_run`); library messages (Python logging,
    warnings, anything on file descriptor 2: Beam, TF Transform, TensorFlow, DeepCTR) go to
    `log_path`, after the warnings held at import (`progress.held_warnings`)."""
    print(f"{name}: library messages go to {log_path}", flush=True)
    with progress.quiet_run(log_path):
        yield
