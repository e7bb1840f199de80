"""Checking a config dataclass read from TOML or YAML against its own annotations.

A string where a number belongs, or a value outside a `Literal`, is then a one-line error that names the key,
instead of a failure deep inside a run (or, worse, a run that silently does something else).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Union

from xcomp.errors import ConfigError


def build(cls: type, raw: Any, where: str, **values: Any) -> Any:
    """``cls(**raw, **values)`` for a config dataclass, with unknown keys (typos must not pass silently), missing
    required keys and values that do not match their annotation reported as one line naming ``where``. Values
    are checked before the dataclass's own validation runs, so that sees the types it expects; ints given for
    float fields become floats."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a table of keys, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if unknown := sorted(set(raw) - set(fields)):
        raise ConfigError(f"{where}: unknown keys {unknown}; known: {sorted(fields)}")
    given = {**raw, **values}
    required = [n for n, f in fields.items() if f.default is f.default_factory is dataclasses.MISSING]
    if missing := [n for n in required if n not in given]:
        raise ConfigError(f"{where}: missing required keys {missing}")
    hints = typing.get_type_hints(cls)
    for name, value in given.items():
        if not _matches(value, hints[name]):
            raise ConfigError(f"{where}: {name} = {value!r} is not {_describe(hints[name])}")
        if hints[name] is float and isinstance(value, int):
            given[name] = float(value)
    return cls(**given)


def _matches(value: Any, annotation: Any) -> bool:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any:
        return True
    if annotation is type(None):
        return value is None
    if origin in (Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if origin is Literal:
        return value in args
    if origin is list:
        return isinstance(value, list) and all(_matches(v, args[0]) for v in value)
    if origin is tuple:  # tuple[X, ...]: JSON and TOML give lists
        return isinstance(value, list | tuple) and all(_matches(v, args[0]) for v in value)
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def _describe(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None):
        return "unset"
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (list, tuple):
        return "a list of " + _NAMES.get(args[0], ("", str(args[0])))[1]
    return _NAMES.get(annotation, (getattr(annotation, "__name__", str(annotation)), ""))[0]


_NAMES = {
    bool: ("true/false", "true/false values"),
    int: ("an integer", "integers"),
    float: ("a number", "numbers"),
    str: ("a string", "strings"),
}
"""How an error message names a type, alone and in a list."""
