"""The part every benchmark source shares: annotation files and a video folder as the user downloaded them, and
what to do when some videos are not there."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from xcomp.data.files import VideoIndex
from xcomp.data.source import MISSING_POLICIES, QASource, Question
from xcomp.errors import ConfigError


@dataclass
class BenchmarkSource(QASource):
    """A benchmark read from its published files: subclasses parse the rows (`parse`) and name the files a video
    may be stored as (`candidates`)."""

    extensions: ClassVar[tuple[str, ...]] = (".mp4",)
    """File extensions a video id is tried with, in order (then the id itself: a file or a frame folder)."""
    folder: ClassVar[bool] = False
    """Whether its annotations are a folder of files."""

    annotations: str = ""
    """The annotation file as the benchmark distributes it (MLVU: the folder of its task files)."""
    videos: str = ""
    """The folder the benchmark's videos (or frame folders) were downloaded to."""
    missing: str = "error"
    """error: a missing video stops the job before any work; skip: answer the rest (logs `questions_skipped`)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.missing not in MISSING_POLICIES:
            raise ConfigError(f"data.missing = {self.missing!r} is not one of {', '.join(MISSING_POLICIES)}")
        for key in ("annotations", "videos"):
            if not getattr(self, key):
                raise ConfigError(f"data={self.name} needs data.{key}")

    def read(self) -> list[Question]:
        path = Path(self.annotations)
        if not path.exists():
            raise ConfigError(f"annotations not found: {path}")
        if path.is_dir() and not self.folder:
            raise ConfigError(f"data.annotations of {self.name} is a file (its annotation file), not the folder {path}")
        return self.parse(path)

    def parse(self, path: Path) -> list[Question]:
        """The questions of the annotation file or folder ``path`` (subclasses)."""
        raise NotImplementedError

    def candidates(self, question: Question) -> list[str]:
        """Paths relative to `videos` the question's video may have, most likely first."""
        return [question.video + ext for ext in self.extensions] + [question.video]

    def locate(self, questions: Sequence[Question]) -> dict[str, Path | None]:
        index = VideoIndex(self.videos)
        found: dict[str, Path | None] = {}
        for q in questions:
            if q.video not in found:
                found[q.video] = index.find(self.candidates(q))
        return found
