"""Expert layers, registered by name in `models.registry.EXPERTS` when imported: plain MLPs
and the feature-interaction modules DTN mixes (GDCN, MaskNet, MemoNet)."""

from models.experts import gdcn, masknet, memonet, mlp  # noqa: F401  (registration)
