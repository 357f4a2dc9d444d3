"""DTN-trim (Bi et al., "Deep Multiple Task-specific Feature Interactions Network for
Multi-Task Recommendation", section "Feature interaction selection"): the feature-interaction
modules (FIMs) a trained DTN's gates hardly use are cut out, and the trimmed DTN is retrained
(models/trainer.py; when no module is cut, the trained DTN is kept: retraining the same
architecture would only cost a second training).

A FIM is read by several gates (its task's own gate and the other tasks' `others` gates; a
shared FIM by every task's `others` gate). It is cut when its mean weight on the train split is
under the threshold in every gate that reads it: no task relies on it. A gate's most-weighted
FIM is never cut, so every task keeps an input.
"""

from typing import Dict, List, Mapping, Sequence


def trims(mixture: Mapping) -> bool:
    """Whether a mixture section asks for DTN-trim's train, cut and retrain."""
    return mixture.get("type") == "dtn" and float(mixture.get("trim_threshold", 0.0)) > 0.0


def modules_to_trim(mean_weights: Mapping[str, Sequence[float]], gate_members: Mapping[str, Sequence[str]],
                    threshold: float) -> List[str]:
    """The FIM names to cut, sorted. `mean_weights`: gate -> mean weight per member (in the
    order of `gate_members[gate]`)."""
    largest: Dict[str, float] = {}
    keep = set()
    for gate, members in gate_members.items():
        weights = list(mean_weights[gate])
        if len(weights) != len(members):
            raise ValueError(f"gate {gate}: {len(weights)} weights for {len(members)} modules")
        keep.add(members[max(range(len(weights)), key=weights.__getitem__)])
        for name, w in zip(members, weights):
            largest[name] = max(largest.get(name, 0.0), float(w))
    return sorted(n for n, w in largest.items() if w < threshold and n not in keep)


def trimmed_mixture(mixture: Mapping, names: Sequence[str]) -> dict:
    """The DTN section with `names` added to its `trimmed` list and no further trimming."""
    section = dict(mixture)
    section["trimmed"] = sorted(set(section.get("trimmed", [])) | set(names))
    section["trim_threshold"] = 0.0
    return section
