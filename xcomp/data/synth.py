"""The synthetic suite (`xcomp synth`): generated once per distinct setting under `cache_dir`, then read as a
JSONL suite."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from xcomp.data.jsonl import XCompSuite


@dataclass
class SynthSuite(XCompSuite):
    """Synthetic QA (needle, order, count, locate) on generated videos."""

    name = "synth"

    families: list[str] = field(default_factory=lambda: ["needle", "order", "count", "locate"])
    """Question families to generate."""
    n: int = 25
    """Videos per family (each with `questions_per_video` questions)."""
    questions_per_video: int = 1
    """Questions asked about each video: its case's own, then `xcomp.synth.follow_up` questions (LVBench asks ~15)."""
    video_frames: int = 64
    """Frames per generated video."""
    size: int = 64
    """Frame side in pixels."""
    noise: float = 0.0
    """Distractor level 0-1."""
    span: int = 2
    """Frames each event stays visible."""
    seed: int = 17
    """Generation seed (the shipped models were trained on other seeds)."""
    cache_dir: str = ""
    """Folder of cached suites."""

    def jsonl(self) -> Path:
        return self._generated

    @cached_property
    def _generated(self) -> Path:
        from xcomp.synth.cache import cached_suite
        from xcomp.synth.generate import SynthParams

        params = SynthParams(frames=self.video_frames, size=self.size, noise=self.noise, span=self.span)
        return cached_suite(
            self.cache_dir, list(self.families), self.n, self.seed, params, self.progress, self.questions_per_video
        )
