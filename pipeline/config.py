"""The pipeline configuration: `pipeline/config.yaml`, overridden key by key by a user file."""

import copy
from typing import Any, Dict, Optional

import yaml

_DEFAULTS = __file__.replace("config.py", "config.yaml")


def _merge(base: Dict[str, Any], override: Dict[str, Any]) -> Dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in (override or {}).items():
        merged[key] = _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged


def load_config(path: Optional[str] = None) -> Dict[str, Any]:
    with open(_DEFAULTS) as f:
        config = yaml.safe_load(f)
    if path:
        with open(path) as f:
            config = _merge(config, yaml.safe_load(f) or {})
    unknown = set(config) - {"ingest", "transform", "model", "baseline", "trainer", "evaluator"}
    if unknown:
        raise ValueError(f"unknown configuration sections: {sorted(unknown)}")
    return config
