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

import collections.abc
import inspect
import typing
from typing import Any, Dict, Mapping

from models.validation import is_integer, is_number

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
        cls = self.get(section["type"])
        zero_allowed = set(getattr(cls, "ZERO_ALLOWED_ARGS", ()))
        parameters = inspect.signature(cls.__init__).parameters
        for key, value in section.items():
            if key != "type":
                problem = _argument_problem(key, value, allowed[key], parameters[key].annotation, key in zero_allowed)
                if problem:
                    raise ValueError(f"{self.kind} {section['type']!r}: {key} must be {problem}, got {value!r}")
        # sections of another kind inside this one (DTN's `interactions`, MMoE's `expert`): checked
        # now too, not when the part is built in the Trainer
        for key, registry in getattr(cls, "NESTED_SECTIONS", {}).items():
            nested = section.get(key)
            for inner in ([] if nested is None else nested if isinstance(nested, (list, tuple)) else [nested]):
                try:
                    if not isinstance(inner, Mapping):
                        raise ValueError(f"each must be a section {{type: NAME, ...}}, NAME one of "
                                         f"{', '.join(registry.names())}; got {inner!r}")
                    registry.validate(inner)
                except ValueError as e:
                    raise ValueError(f"{self.kind} {section['type']!r}: {key}: {e}") from e

    def build(self, section: Mapping[str, Any], **context):
        self.validate(section)
        params = {k: v for k, v in section.items() if k != "type"}
        return self.get(section["type"])(**context, **params)


def _optional_problem(value, annotation, zero_allowed: bool) -> str:
    """What a value given for an argument that defaults to None must be, from its annotation
    (`Optional[int]`, `Optional[Sequence[str]]`, `Optional[Mapping[str, float]]`, `Optional[dict]`);
    "" when it is fine or the annotation says nothing checkable."""
    inner = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is not typing.Union or len(inner) != 1:
        return ""
    kind, origin = inner[0], typing.get_origin(inner[0]) or inner[0]
    if kind is int:
        return _count_problem(value, zero_allowed)
    if origin in (dict, collections.abc.Mapping):
        if not isinstance(value, Mapping):
            return "a mapping"
        value_type = (typing.get_args(kind) or (None, None))[1]
        if value_type is float and not all(is_number(v) for v in value.values()):
            return "a mapping of names to numbers"
        return ""
    if origin is collections.abc.Sequence and typing.get_args(kind) == (str,):
        return "a list of names" if not (isinstance(value, (list, tuple))
                                         and all(isinstance(v, str) for v in value)) else ""
    return ""


def _count_problem(value, zero_allowed: bool) -> str:
    least = 0 if zero_allowed else 1
    return f"an integer >= {least}" if not (is_integer(value) and value >= least) else ""


def _argument_problem(key: str, value, default, annotation, zero_allowed: bool) -> str:
    """What `value` must be, judged by the type of the argument's default ("" when it is fine):
    YAML gives whatever was typed ("4", 128 for [128], true), and a part's constructor would
    fail on it only when the Trainer builds the network, after the ingest and Transform. Counts
    and widths are at least 1 (0 where the part's ZERO_ALLOWED_ARGS say it means "none")."""
    if default is None:  # optional: judged by its annotation
        return "" if value is None else _optional_problem(value, annotation, zero_allowed)
    if isinstance(default, bool):
        return "true or false" if not isinstance(value, bool) else ""
    if is_integer(default):
        return _count_problem(value, zero_allowed)
    if isinstance(default, float):  # or one per layer, as the dmt-paper preset's dropouts
        numbers = value if isinstance(value, (list, tuple)) else [value]
        return "a number or a list of them" if not all(is_number(v) for v in numbers) else ""
    if isinstance(default, str):
        return "a string" if not isinstance(value, str) else ""
    if isinstance(default, list):
        if not isinstance(value, (list, tuple)):  # a tuple from Python callers
            return "a list"
        widths = key.endswith("units") or (default and all(is_integer(d) for d in default))
        if widths and not all(is_integer(v) and v >= 1 for v in value):
            return "a list of integers >= 1"  # layer widths ([]: no hidden layer)
    return ""


SEQUENCE_ENCODERS = Registry("sequence_encoder")
MIXTURES = Registry("mixture")
HEADS = Registry("heads")
FUSIONS = Registry("fusion")
EXPERTS = Registry("expert")
