"""A training source: a dataset of `QASample`s chosen by the train group's `data` node (its `_target_`).

A source is a dataclass (its fields are the settings of conf/train/data/<name>.yaml) and a torch `Dataset` at once.
Adding one = a subclass with a `name` (it registers itself) in its own module of this package + its YAML + a test.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from xcomp.errors import ConfigError

TRAIN_SOURCES: dict[str, type[TrainSource]] = {}
"""Registered training sources by name (filled by subclassing `TrainSource`)."""


@dataclass
class TrainSource(torch.utils.data.Dataset):
    """Base class: how many of the source's samples are used, and at what frame count and size."""

    name: ClassVar[str] = ""
    """Registry name (the conf/train/data option)."""

    fraction: float = 1.0
    """Use only this leading fraction of the samples (SCT trains on a small slice of the base data)."""
    num_frames: list[int] = field(default_factory=lambda: [32])
    """Frames per video (multiples of the model's clip length)."""
    image_size: int = 64
    """Frame side after resizing (must equal the vision tower's image_size)."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name"):
            TRAIN_SOURCES[cls.name] = cls

    def __post_init__(self) -> None:
        if not 0 < self.fraction <= 1:
            raise ConfigError("data.fraction must be in (0, 1]")
        if not self.num_frames or min(self.num_frames) < 1:
            raise ConfigError(f"data.num_frames must be one or more numbers >= 1, got {self.num_frames}")

    def texts(self) -> Iterable[tuple[str, Sequence[str] | None, str]]:
        """(question, options, answer) of every sample, without decoding or drawing videos (subclasses)."""
        raise NotImplementedError

    def vocabulary_texts(self) -> Iterable[tuple[str, Sequence[str] | None, str]]:
        """Texts a fresh model's compact vocabulary must cover (by default the source's own)."""
        return self.texts()

    def check_frame_tags(self) -> None:
        """Refuse `objective=frame_tags` unless the samples carry per-frame labels (sources that do override)."""
        raise ConfigError(f"objective = 'frame_tags' needs synthetic data (labels come from the events), not {self.name}")

    @property
    def skipped_before(self) -> int:
        """Records left out when the source was read (media missing, none to show): part of ``train.skipped``."""
        return 0

    @classmethod
    def from_files(cls, annotations: str, videos: str | None) -> TrainSource:
        """The source read from a user's files, for `xcomp data check` (sources that read none refuse)."""
        raise ConfigError(f"training data {cls.name!r} is not read from files; data check cannot check it")

    def facts(self) -> tuple[list[tuple[str, str]], int]:
        """(name, value) lines about the source's files and how many media files are missing (`xcomp data check`)."""
        raise NotImplementedError

    def record(self) -> dict:
        """The source as settings: its `_target_` and fields (saved with a training run, compared on resume)."""
        return {"_target_": f"{type(self).__module__}.{type(self).__qualname__}", **dataclasses.asdict(self)}


def all_train_sources() -> dict[str, type[TrainSource]]:
    """Every registered training source (every module of this package is imported first)."""
    import xcomp.train.sources

    for module in pkgutil.iter_modules(xcomp.train.sources.__path__):
        importlib.import_module(f"xcomp.train.sources.{module.name}")
    return dict(sorted(TRAIN_SOURCES.items()))
