"""The pipeline configuration: `pipeline/config.yaml`, overridden key by key by a user file."""

import copy
from typing import Any, Dict, Optional

import yaml

_DEFAULTS = __file__.replace("config.py", "config.yaml")


# Sections that describe a network: one naming a `preset` replaces the default section whole
# (the preset is the architecture; the keys beside it override the preset, models/config.py).
MODEL_SECTIONS = ("model", "baseline")


def _merge(base: Dict[str, Any], override: Dict[str, Any], top: bool = False) -> Dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if top and key in MODEL_SECTIONS and isinstance(value, dict) and "preset" in value:
            merged[key] = copy.deepcopy(value)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(path: Optional[str] = None) -> Dict[str, Any]:
    with open(_DEFAULTS) as f:
        config = yaml.safe_load(f)
    if path:
        with open(path) as f:
            config = _merge(config, yaml.safe_load(f) or {}, top=True)
    unknown = set(config) - {"ingest", "transform", "model", "baseline", "trainer", "evaluator", "orchestration",
                             "metadata", "data_gate"}
    if unknown:
        raise ValueError(f"unknown configuration sections: {sorted(unknown)}")
    return config
