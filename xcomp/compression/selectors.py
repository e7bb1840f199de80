"""Frame selectors: which of a video's sampled frames the answer is generated from, one class per method.

`XCompPipeline` encodes every sampled frame once and asks its selector for the ``k`` frames to answer from
(``k`` from the call's ``keep`` or the selector's own `keep` / `keep_frames`). QC-Comp (`xcomp.compression.qc_comp`)
scores frames with the LLM's attention to the question; the uniform baseline takes evenly spaced frames at the same
keep ratio; `AllFrames` keeps all. Adding a method = a subclass (it registers itself by `name`) plus a YAML under
conf/select/.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch

from xcomp.errors import ConfigError

if TYPE_CHECKING:
    from xcomp.compression.qc_comp import FrameScores

SELECTORS: dict[str, type[FrameSelector]] = {}
"""Registered selectors by name (filled by subclassing `FrameSelector`)."""


def all_selectors() -> dict[str, type[FrameSelector]]:
    """Every registered selector by name: the modules of `xcomp.compression` are imported first, so a selector
    defined in any of them (QC-Comp's in `qc_comp`) has registered itself."""
    import importlib
    import pkgutil

    import xcomp.compression

    for module in pkgutil.iter_modules(xcomp.compression.__path__):
        if not module.ispkg:
            importlib.import_module(f"xcomp.compression.{module.name}")
    return dict(SELECTORS)


@dataclass(frozen=True)
class FrameSelector:
    """Base class: keeps a fraction of the frames; subclasses choose which. Settings are frozen (hashable)."""

    name: ClassVar[str] = ""
    """Registry name."""
    keep: float = 1.0
    """Fraction of the sampled frames to keep, in (0, 1]."""
    keep_frames: int | None = None
    """Frames to keep; overrides `keep` when set (a model's pipeline_config.json keeps what it was trained on)."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name"):
            SELECTORS[cls.name] = cls

    def __post_init__(self) -> None:
        if not 0 < self.keep <= 1:
            raise ConfigError(f"keep must be a fraction in (0, 1], got {self.keep}")
        if self.keep_frames is not None and self.keep_frames < 1:
            raise ConfigError(f"keep_frames must be >= 1, got {self.keep_frames}")

    def num_kept(self, num_frames: int) -> int:
        """Frames kept out of ``num_frames`` by default."""
        k = self.keep_frames if self.keep_frames is not None else round(self.keep * num_frames)
        return min(max(k, 1), num_frames)

    def select(
        self,
        model,
        prefix_ids: torch.Tensor,
        question_ids: torch.Tensor,
        visual: torch.Tensor,
        num_frames: int,
        k: int,
        shared: dict | None = None,
    ) -> tuple[torch.Tensor, FrameScores | None]:
        """The ``k`` kept frame indices in temporal order, and the per-frame scores when the method has them.

        ``visual``: [num_frames * tokens_per_frame, D] projector outputs; ``prefix_ids`` / ``question_ids``: the
        prompt ids before and after the video placeholder; ``shared``: a dict kept per video, where a method may
        keep what does not depend on the question for the video's other questions (None: nothing is kept).
        """
        raise NotImplementedError


@dataclass(frozen=True)
class AllFrames(FrameSelector):
    """Keep every frame (the token compressor alone decides the cost)."""

    name: ClassVar[str] = "all"

    def __post_init__(self) -> None:
        if self.keep != 1.0 or self.keep_frames is not None:
            raise ConfigError(f"select=all keeps every frame; got keep={self.keep}, keep_frames={self.keep_frames}")

    def select(self, model, prefix_ids, question_ids, visual, num_frames, k, shared=None):
        return torch.arange(num_frames), None


@dataclass(frozen=True)
class UniformFrames(FrameSelector):
    """Evenly spaced frames: the frame-level baseline at the same keep ratio as QC-Comp."""

    name: ClassVar[str] = "uniform"

    def select(self, model, prefix_ids, question_ids, visual, num_frames, k, shared=None):
        step = num_frames / k
        return (torch.arange(k) * step + step / 2).long().clamp_max(num_frames - 1), None
