"""Mixture layers, registered by name in `models.registry.MIXTURES` when imported."""

from models.mixtures import dtn, hmoe, mmoe, ple, shared_bottom  # noqa: F401  (registration)
