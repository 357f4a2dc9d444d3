"""Benchmark results: one JSON file per benchmark (bench/results/*.json), also printed."""

import json
import os
from typing import Any, Mapping, Optional


def write_result(result: Mapping[str, Any], path: str, markdown: Optional[str] = None) -> None:
    """Writes `result` as JSON to `path`, and `markdown` (the table for people) beside it as .md."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    if markdown is not None:
        with open(os.path.splitext(path)[0] + ".md", "w") as f:
            f.write(markdown)
    print(json.dumps(result, indent=2))
