"""A compression system by name: a registered token compressor, optionally answering from the frames a registered
frame selector keeps (``lp_comp+qc``), each built from its class with ``NAME.FIELD=VALUE`` settings.

`xcomp bench` rows and `xcomp info` methods are systems, so a compressor or selector defined anywhere (a new
module, a test file) is one without edits here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from xcomp.compression.compressors import TokenCompressor, all_compressors
from xcomp.compression.selectors import FrameSelector, all_selectors
from xcomp.errors import ConfigError
from xcomp.structured import assignments

if TYPE_CHECKING:
    from xcomp.model.configuration import XCompConfig


@dataclass
class System:
    """A token compressor and the frame selector it answers from, if any."""

    name: str
    """``COMPRESSOR`` or ``COMPRESSOR+SELECTOR`` (registry names)."""
    compressor: TokenCompressor
    """Which visual tokens reach each LLM layer."""
    selector: FrameSelector | None
    """Which frames the LLM answers from (None: every frame, no selection step)."""

    def config(self, base: XCompConfig) -> XCompConfig:
        """``base`` switched to this system's compressor."""
        return base.with_compression(**self.compressor.config_fields())

    def num_kept(self, num_frames: int) -> int:
        """Frames the LLM answers from out of ``num_frames``."""
        return self.selector.num_kept(num_frames) if self.selector is not None else num_frames

    def __str__(self) -> str:
        return f"{self.compressor}" + (f" + {self.selector}" if self.selector is not None else "")


def systems(names: list[str], settings: list[str], where: str = "--set") -> dict[str, System]:
    """The systems ``names``, each compressor and selector built from its registered class with the
    ``NAME.FIELD=VALUE`` ``settings`` that name it (one-line errors for an unknown name or field)."""
    compressors, selectors = all_compressors(), all_selectors()
    fields = assignments(settings, where)
    unknown = [name for name in fields if name not in compressors and name not in selectors]
    if unknown:
        raise ConfigError(f"{where}: {', '.join(unknown)} is neither a compressor nor a frame selector")
    out = {}
    for name in names:
        compressor, _, selector = name.partition("+")
        if compressor not in compressors or (selector and selector not in selectors):
            raise ConfigError(
                f"{name!r} is not COMPRESSOR or COMPRESSOR+SELECTOR; compressors: {', '.join(sorted(compressors))}; "
                f"selectors: {', '.join(sorted(selectors))}"
            )
        built = component(compressors[compressor], fields.get(compressor, {}), f"{where} {compressor}")
        chosen = component(selectors[selector], fields.get(selector, {}), f"{where} {selector}") if selector else None
        out[name] = System(name, built, chosen)
    return out


def component(cls: type, fields: dict, where: str):
    """``cls(**fields)``, an unknown or missing field a `ConfigError` naming ``where`` (the class's own checks
    say what a value may be)."""
    try:
        return cls(**fields)
    except TypeError as error:
        raise ConfigError(f"{where}: {error}") from None
