"""The pipeline configuration: `pipeline/config.yaml`, overridden key by key by a user file."""

import copy
from typing import Any, Dict, Optional

import yaml

_DEFAULTS = __file__.replace("config.py", "config.yaml")


# Sections that describe a network: one naming a `preset` replaces the default section whole
# (the preset is the architecture; the keys beside it override the preset, models/config.py).
MODEL_SECTIONS = ("model", "baseline")
# Sections of settings over defaults, where an empty section means none overridden (unlike
# `baseline: null`, no baseline, or `data_gate: null`, no drift or skew comparison).
SETTINGS_SECTIONS = ("ingest", "transform", "trainer", "evaluator", "metadata", "orchestration")


def _merge(base: Dict[str, Any], override: Dict[str, Any], top: bool = False) -> Dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if top and value is None and key in SETTINGS_SECTIONS:
            continue  # `trainer:` with nothing under it (all commented out): no overrides
        if top and key in MODEL_SECTIONS and isinstance(value, dict) and "preset" in value:
            merged[key] = copy.deepcopy(value)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def check_keys(section: Dict[str, Any], known, where: str) -> None:
    """ValueError when `section` (the settings at `where`, e.g. `orchestration.airflow`) has a key
    outside `known`: a misspelt key would otherwise silently keep its default."""
    unknown = sorted(set(section) - set(known))
    if unknown:
        raise ValueError(f"`{where}:` section: unknown keys {unknown}; keys: {', '.join(known)}")


def read_yaml(path: str) -> Any:
    """A user's YAML file, parsed; a file that cannot be read or parsed is a ValueError naming it
    (and where the parser stopped), for the commands to print instead of a traceback."""
    try:
        with open(path) as f:
            return yaml.safe_load(f)
    except OSError as e:
        raise ValueError(f"{path}: cannot be read: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ValueError(f"{path}: not YAML{where}: {getattr(e, 'problem', None) or e}") from None


def read_config_file(path: str) -> Dict[str, Any]:
    """A user's configuration file as it is (no defaults): a YAML mapping of sections, each a
    mapping; ValueError naming the file otherwise."""
    document = read_yaml(path) or {}
    if not isinstance(document, dict):
        raise ValueError(f"{path}: a mapping of configuration sections (ingest, model, trainer, ...)")
    sections = sorted(k for k, v in document.items() if not isinstance(v, (dict, type(None))))
    if sections:
        raise ValueError(f"{path}: each section is a mapping of settings: {sections}")
    return document


def load_config(path: Optional[str] = None) -> Dict[str, Any]:
    """pipeline/config.yaml, with the file at `path` over it; ValueError for a file that is not a
    YAML mapping of known sections."""
    with open(_DEFAULTS) as f:
        config = yaml.safe_load(f)
    if path:
        config = _merge(config, read_config_file(path), top=True)
    unknown = set(config) - {"ingest", "transform", "model", "baseline", "trainer", "evaluator", "orchestration",
                             "metadata", "data_gate"}
    if unknown:
        raise ValueError(f"unknown configuration sections: {sorted(unknown)}")
    return config
