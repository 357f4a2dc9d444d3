"""Heads, registered by name in `models.registry.HEADS` when imported."""

from models.heads import esm2, esmm, independent  # noqa: F401  (registration)
