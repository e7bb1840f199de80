"""A suite as evaluation answers it: a source's questions grouped by video, each video decoded when its questions
come up (so one video's frames are in memory at a time, whatever the suite's size), shared out between processes
by whole videos, and the prompt, frame sampling and answer reading its source asks for."""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch.utils.data import DataLoader, Dataset

from xcomp.data.source import QASource, Question, Suite
from xcomp.errors import ConfigError
from xcomp.model.processing import PromptConfig
from xcomp.video.decode import Video, load_video
from xcomp.video.sampling import FrameSamplingConfig

FPS_MULTIPLE = 8
"""`sampling=fps` frame counts are multiples of this (VideoChat-Flash samples in groups of 8)."""
FPS_MIN_FRAMES = 64
"""`sampling=fps` samples at least this many frames (fewer when the video has fewer, or `frames` is smaller)."""


def frame_sampling(source: QASource, frames: int, image_size: int, clip: int) -> tuple[FrameSamplingConfig, int | None]:
    """How ``source``'s videos are sampled for a job of ``frames`` frames: the sampling config and the exact frame
    count (`fixed`), or None for a count chosen per video (`fps`: 1 fps, a multiple of 8 and of the model's
    ``clip`` (of the clip alone when ``frames`` is below that), at least 64, at most ``frames``)."""
    if source.sampling == "fixed":
        return FrameSamplingConfig(size=image_size, min_frames=4, max_frames=max(frames, 4), allow_repeat=True), frames
    multiple = math.lcm(FPS_MULTIPLE, clip)
    if frames < multiple:  # too few for a multiple of 8: whole clips, at most `frames`
        multiple = clip
    most = max(frames // multiple * multiple, multiple)
    config = FrameSamplingConfig(
        fps=1.0, min_frames=min(FPS_MIN_FRAMES, most), max_frames=most, multiple_of=multiple, size=image_size
    )
    return config, None


@dataclass
class EvalSuite:
    """The questions of a source, and how to decode their videos."""

    source: QASource
    """Where the questions came from: its prompt template, answer rule and breakdowns."""
    suite: Suite
    """The questions grouped by video, and the videos' paths."""
    sampling: FrameSamplingConfig
    """Frame sampling of every video."""
    num_frames: int | None
    """Exact frames per video, or None for the sampling's per-video count."""
    backend: str = "auto"
    """Video decoding library."""

    @property
    def questions(self) -> list[Question]:
        return self.suite.questions

    def prompt(self) -> PromptConfig:
        """The prompt settings the source's questions are asked with."""
        return PromptConfig(question_format=self.source.question_format)

    def decode(self, video: str) -> Video:
        return load_video(self.suite.paths[video], self.sampling, num_frames=self.num_frames, backend=self.backend)

    def loader(self, rank: int = 0, world: int = 1, workers: int = 0) -> DataLoader:
        """This process's share of the videos (every ``world``-th from ``rank``), one item per video:
        (indices of its questions in the suite, the questions, the decoded video), decoded by ``workers`` processes
        ahead of the model (two videos each; 0: in this process, when asked for)."""
        groups = self.suite.by_video()
        if len(groups) < world:  # a process with no video would skip the loop and never join the gather
            raise ConfigError(f"{len(groups)} videos for {world} processes: run fewer processes than videos")
        videos = _Videos(self, groups[rank::world])
        ahead = {"prefetch_factor": 2, "multiprocessing_context": _start_method()} if workers else {}
        return DataLoader(videos, batch_size=None, collate_fn=_as_is, num_workers=workers, **ahead)


class _Videos(Dataset):
    def __init__(self, suite: EvalSuite, groups: list[tuple[str, list[int]]]):
        self.suite, self.groups = suite, groups

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, i: int) -> tuple[list[int], list[Question], Video]:
        video, indices = self.groups[i]
        return indices, [self.suite.questions[j] for j in indices], self.suite.decode(video)


def _as_is(item):
    return item


def _start_method() -> str:
    """How decoding workers start: named, since a job run by a launcher's worker (joblib's loky) inherits a default
    context that cannot start them; fork where the platform has it (the workers need no fresh interpreter)."""
    import multiprocessing

    return "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
