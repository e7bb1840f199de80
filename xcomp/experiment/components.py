"""Building components from `_target_` nodes, and the structured schemas of the data sources."""

from __future__ import annotations

import dataclasses
import typing

from hydra.errors import InstantiationException
from hydra.utils import instantiate

from xcomp.errors import XCompError

NOT_CONFIGURED = ("progress",)
"""Source fields the job sets when it builds the source, not conf/data (they do not change results)."""


def build(node, **kwargs):
    """Hydra's `instantiate` (lists and mappings given to the component as plain Python ones), with a component's
    own rejection of a value (an `XCompError`) raised as itself, so that it reaches the user as one line rather than
    inside Hydra's wrapper."""
    try:
        return instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as error:
        if isinstance(error.__cause__, XCompError):
            raise error.__cause__ from None
        raise


def source_schema(cls: type) -> type:
    """A structured config for the source class ``cls``: its `_target_` and its configurable fields with their
    types and defaults, so that conf/data/<name>.yaml is type-checked at composition (an unknown key or a wrong
    type is an error before any work)."""
    hints = typing.get_type_hints(cls)
    fields: list = [("_target_", str, dataclasses.field(default=f"{cls.__module__}.{cls.__qualname__}"))]
    for f in dataclasses.fields(cls):
        if not f.init or f.name in NOT_CONFIGURED:
            continue
        default = (
            dataclasses.field(default_factory=f.default_factory)
            if f.default_factory is not dataclasses.MISSING
            else dataclasses.field(default=f.default)
        )
        fields.append((f.name, hints[f.name], default))
    return dataclasses.make_dataclass(f"{cls.__name__}Schema", fields)
