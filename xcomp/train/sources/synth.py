"""Synthetic training samples generated on access: sample i is case i // F of family i % F (deterministic per seed),
drawn at each of `num_frames` in turn."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from xcomp.errors import ConfigError
from xcomp.train.data import QASample
from xcomp.train.sources.source import TrainSource

ANSWERS = ("letter", "text")
"""What a multiple-choice sample's target is."""


@dataclass
class SynthQAData(TrainSource):
    """Synthetic QA (needle, order, count, locate) drawn on the fly."""

    name = "synth"

    families: list[str] = field(default_factory=lambda: ["needle", "order", "count", "locate"])
    """Synthetic task families to mix."""
    num_samples: int = 2000
    """Size of the synthetic training set."""
    span: int = 2
    """Frames each synthetic event stays visible."""
    noise: float = 0.3
    """Synthetic distractor level 0-1."""
    open_ended: float = 0.0
    """Fraction of samples asked without options, answered with the option text: direct supervision of what is
    seen, which a model trained from scratch needs before it can pick letters."""
    answer: str = "letter"
    """Target of a multiple-choice sample: the option letter (as published models answer) or the option's text,
    which a small model trained from scratch learns far faster (reading what it sees, with no lookup of which
    letter goes with it); `parse_choice` maps a text answer back to its letter."""
    seed: int = 0
    """Seed of the generator (sample i uses seed + i)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        from xcomp.synth.generate import FAMILIES, SynthParams

        unknown = set(self.families) - set(FAMILIES)
        if unknown:
            raise ConfigError(f"unknown synthetic families {sorted(unknown)}; choose from {list(FAMILIES)}")
        if self.answer not in ANSWERS:
            raise ConfigError(f"data.answer = {self.answer!r} is not one of {', '.join(repr(a) for a in ANSWERS)}")
        if self.num_samples < 1:
            raise ConfigError("data.num_samples must be >= 1")
        if not (0 <= self.noise <= 1 and 0 <= self.open_ended <= 1):
            raise ConfigError("data.noise and data.open_ended must be in [0, 1]")
        self._params = [SynthParams(frames=n, size=self.image_size, span=self.span, noise=self.noise)
                        for n in self.num_frames]  # fmt: skip

    def __len__(self) -> int:
        return max(1, int(self.num_samples * self.fraction))

    def case(self, i: int, render_frames: bool = True):
        from xcomp.synth.generate import make_case

        j = i // len(self.families)
        params = self._params[j % len(self._params)]
        return make_case(self.families[i % len(self.families)], j, self.seed, params, render_frames=render_frames)

    def is_open_ended(self, i: int) -> bool:
        """Whether sample i is asked without options (an evenly spread `open_ended` share of each family)."""
        f, j = self.open_ended, i // len(self.families)
        return int((j + 1) * f) > int(j * f)

    def texts(self):
        """(question, options, answer) of every sample, without drawing frames."""
        for i in range(len(self)):
            r = self.case(i, render_frames=False).record
            yield r["question"], r["options"], r["answer"]
            if self.is_open_ended(i):
                yield r["question"], None, r["answer_text"]

    def vocabulary_texts(self):
        """Those of *every* family in both formats and at every count, so that a model trained on a few families
        can be tuned or asked on all of them (4,000 cases draw every word of the templates)."""
        from xcomp.synth.generate import FAMILIES

        every = replace(self, families=list(FAMILIES), open_ended=1.0, fraction=1.0, span=1, num_frames=[64],
                        num_samples=4000)  # fmt: skip
        return every.texts()

    def check_frame_tags(self) -> None:
        if self.noise != 0:
            raise ConfigError("objective = 'frame_tags' needs data.noise = 0 (decoy objects carry no tags)")

    def __getitem__(self, i: int) -> QASample:
        c = self.case(i)
        r = c.record
        duration = len(c.frames) / r["fps"]
        if self.is_open_ended(i):
            return QASample(c.frames, r["question"], r["answer_text"], None, duration)
        target = r["answer_text"] if self.answer == "text" else r["answer"]
        return QASample(c.frames, r["question"], target, r["options"], duration)
