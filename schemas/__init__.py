"""Schemas shipped with funnel: the raw-log contract and the curated example schema."""

import os

_HERE = os.path.dirname(os.path.abspath(__file__))


def path(name: str) -> str:
    """Absolute path of a file in this package (e.g. `raw_logs.yaml`, `schema.pbtxt`)."""
    return os.path.join(_HERE, name)
