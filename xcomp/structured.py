"""Reading a config dataclass from plain data (TOML, YAML, JSON) as an OmegaConf structured config.

OmegaConf checks the keys, types and required fields against the dataclass (as Hydra does for `conf/`); this
module only turns its multi-line errors into the one line, naming the file and the key, that xcomp reports bad
input with.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from xcomp.errors import ConfigError

T = TypeVar("T")


def load_structured(cls: type[T], raw: Any, where: str) -> T:
    """``cls`` filled from the mapping ``raw`` (nested dataclass fields from nested mappings): an unknown key, a
    value that does not convert to its field's type, or a missing required field is a `ConfigError` naming
    ``where`` and the key. The dataclass's own checks (``__post_init__``) run on the converted values."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a table of keys, got {type(raw).__name__}")
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), raw))
    except OmegaConfBaseException as error:
        key = f"{error.full_key}: " if getattr(error, "full_key", None) else ""
        raise ConfigError(f"{where}: {key}{str(error.msg).splitlines()[0]}") from None


def assignments(items: Sequence[str], where: str) -> dict[str, dict[str, Any]]:
    """``NAME.FIELD=VALUE`` strings (values in YAML syntax: ``qc.shifts=[0]``) as ``{NAME: {FIELD: VALUE}}``, later
    ones winning; a string of another shape is a `ConfigError` naming ``where``."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, _ = item.partition("=")
        name, dot, field = key.partition(".")
        if not (sep and dot and name and field) or "." in field:
            raise ConfigError(f"{where}: expected NAME.FIELD=VALUE, got {item!r}")
        try:
            value = OmegaConf.to_container(OmegaConf.from_dotlist([item]))[name][field]
        except OmegaConfBaseException as error:
            raise ConfigError(f"{where}: {item!r}: {str(error.msg).splitlines()[0]}") from None
        out.setdefault(name, {})[field] = value
    return out
