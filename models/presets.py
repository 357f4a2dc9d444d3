"""Named architectures (presets.yaml): data, not code. `funnel presets` lists them."""

import copy
import os
from typing import Any, Dict, List, Tuple

import yaml

PRESETS_FILE = os.path.join(os.path.dirname(__file__), "presets.yaml")
DEFAULT_PRESET = "dmt"
_cache: Dict[str, Any] = {}


def presets() -> Dict[str, Dict[str, Any]]:
    if not _cache:
        with open(PRESETS_FILE) as f:
            _cache.update(yaml.safe_load(f))
    return _cache


def names() -> List[str]:
    return list(presets())


def preset_section(name: str) -> Dict[str, Any]:
    """The `model:` section of preset `name` (with `preset: name`)."""
    if name not in presets():
        raise ValueError(f"unknown model preset {name!r}; known: {', '.join(names())}")
    return {**copy.deepcopy(presets()[name].get("config") or {}), "preset": name}


def describe() -> List[Tuple[str, str, str]]:
    """(name, one line, paper and equations) per preset."""
    return [(name, p["summary"], p["paper"]) for name, p in presets().items()]
