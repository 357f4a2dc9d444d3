"""Registries of the model family's parts, chosen by name from nested YAML.

A ranking network is composed of parts of four kinds (see `models/model.py`): a sequence
encoder per behaviour sequence, a mixture (shared bottom / MMoE / PLE / HMoE / IMMoE / DTN),
heads (independent / ESMM / ESM²) and a score fusion; mixtures may be made of registered
experts (MLP, and the feature-interaction modules GDCN / MaskNet / MemoNet). Each part is a Keras layer in its own module,
registered here by name; a config section such as `mixture: {type: ple, levels: 2}` names the
part (`type`) and its constructor arguments. Arguments the builder supplies itself (the
tower names, the number of scenarios, ...) are the part's `CONTEXT_ARGS` and cannot be set
from YAML. Keras' own `register_keras_serializable` registers classes for deserialisation,
not by a short config name with validated arguments, so this small registry is written here.
"""

import inspect
from typing import Any, Dict, Mapping

_FRAMEWORK_ARGS = {"self", "kwargs", "args", "name", "trainable", "dtype", "dynamic"}


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._classes: Dict[str, type] = {}

    def register(self, name: str):
        def decorate(cls):
            if name in self._classes:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            cls.registered_name = name
            self._classes[name] = cls
            return cls
        return decorate

    def names(self):
        return tuple(sorted(self._classes))

    def get(self, name: str) -> type:
        if name not in self._classes:
            raise ValueError(f"unknown {self.kind} type {name!r}; known: {', '.join(self.names())}")
        return self._classes[name]

    def defaults(self, name: str) -> Dict[str, Any]:
        """The arguments a config section may set, with their defaults."""
        cls = self.get(name)
        context = set(getattr(cls, "CONTEXT_ARGS", ()))
        # tuples as lists: the same value a YAML section would give
        return {p.name: list(p.default) if isinstance(p.default, tuple) else p.default
                for p in inspect.signature(cls.__init__).parameters.values()
                if p.name not in _FRAMEWORK_ARGS | context
                and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}

    def validate(self, section: Mapping[str, Any]) -> None:
        if "type" not in section:
            raise ValueError(f"{self.kind} section needs a `type` (one of {', '.join(self.names())})")
        allowed = self.defaults(section["type"])
        unknown = set(section) - {"type"} - set(allowed)
        if unknown:
            raise ValueError(f"{self.kind} {section['type']!r}: unknown keys {sorted(unknown)}; "
                             f"known: {sorted(allowed)}")

    def build(self, section: Mapping[str, Any], **context):
        self.validate(section)
        params = {k: v for k, v in section.items() if k != "type"}
        return self.get(section["type"])(**context, **params)


SEQUENCE_ENCODERS = Registry("sequence_encoder")
MIXTURES = Registry("mixture")
HEADS = Registry("heads")
FUSIONS = Registry("fusion")
EXPERTS = Registry("expert")
