"""Frame selectors: which of a video's sampled frames the answer is generated from, one class per method.

`XCompPipeline` encodes every sampled frame once and asks its selector for the ``k`` frames to answer from
(``k`` from the call's ``keep`` or the selector's own `keep`). QC-Comp scores frames with the LLM's attention to
the question; the uniform baseline takes evenly spaced frames at the same keep ratio; `AllFrames` keeps all.
Adding a method = a subclass (it registers itself by `name`) plus a YAML under conf/select/.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from xcomp.compression.qc_comp import FrameScores, QCCompConfig, score_frames
from xcomp.errors import ConfigError

SELECTORS: dict[str, type[FrameSelector]] = {}
"""Registered selectors by name (filled by subclassing `FrameSelector`)."""


@dataclass
class FrameSelector:
    """Base class: keeps a fraction of the frames; subclasses choose which."""

    name: ClassVar[str] = ""
    """Registry name."""
    keep: float = 1.0
    """Fraction of the sampled frames to keep, in (0, 1]."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name"):
            SELECTORS[cls.name] = cls

    def __post_init__(self) -> None:
        if not 0 < self.keep <= 1:
            raise ConfigError(f"keep must be a fraction in (0, 1], got {self.keep}")

    def num_kept(self, num_frames: int) -> int:
        """Frames kept out of ``num_frames`` by default."""
        return min(max(round(self.keep * num_frames), 1), num_frames)

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


@dataclass
class AllFrames(FrameSelector):
    """Keep every frame (the token compressor alone decides the cost)."""

    name: ClassVar[str] = "all"

    def __post_init__(self) -> None:
        if self.keep != 1.0:
            raise ConfigError(f"select=all keeps every frame; keep must be 1.0, got {self.keep}")

    def select(self, model, prefix_ids, question_ids, visual, num_frames, k, shared=None):
        return torch.arange(num_frames), None


@dataclass
class UniformFrames(FrameSelector):
    """Evenly spaced frames: the frame-level baseline at the same keep ratio as QC-Comp."""

    name: ClassVar[str] = "uniform"

    def select(self, model, prefix_ids, question_ids, visual, num_frames, k, shared=None):
        step = num_frames / k
        return (torch.arange(k) * step + step / 2).long().clamp_max(num_frames - 1), None


@dataclass
class QCComp(FrameSelector):
    """QC-Comp: frames ranked by the attention the question pays them inside the LLM (see `qc_comp`)."""

    name: ClassVar[str] = "qc"
    keep: float = 0.25
    """Fraction of the sampled frames to keep (the reference keeps 25 %)."""
    scorer: str = "local"
    """'local': segment windows (QC-Comp); 'global': the whole video in one sequence (position-biased baseline)."""
    segment_frames: int = 8
    """Frames per local-attention window."""
    shifts: tuple[int, ...] | None = None
    """Window offsets of the scoring passes; None = (0, segment_frames // 2)."""
    layers: tuple[int, ...] | None = None
    """Decoder layers whose attention is summed; None = the middle band."""
    segment_batch: int = 16
    """Windows per forward pass (bounds memory)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.qc = QCCompConfig(
            segment_frames=self.segment_frames,
            shifts=tuple(self.shifts) if self.shifts is not None else None,
            layers=tuple(self.layers) if self.layers is not None else None,
            segment_batch=self.segment_batch,
            keep_ratio=self.keep,
            scorer=self.scorer,
        )

    @classmethod
    def from_qc(cls, qc: QCCompConfig) -> QCComp:
        """The selector of a `QCCompConfig` (a pipeline_config.json's settings)."""
        selector = cls(
            keep=qc.keep_ratio, scorer=qc.scorer, segment_frames=qc.segment_frames, shifts=qc.shifts,
            layers=qc.layers, segment_batch=qc.segment_batch,
        )
        selector.qc = qc  # keeps a frame count (`qc.keep`) as well
        return selector

    def num_kept(self, num_frames: int) -> int:
        return self.qc.num_kept(num_frames)

    def select(self, model, prefix_ids, question_ids, visual, num_frames, k, shared=None):
        scores = score_frames(model, prefix_ids, question_ids, visual, self.qc, shared)
        return scores.top_k(k), scores
