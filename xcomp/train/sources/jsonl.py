"""Training samples from a suite in the `xcomp synth` format (questions.jsonl, videos relative to it), decoded on
access."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from xcomp.errors import ConfigError
from xcomp.train.data import QASample
from xcomp.train.sources.source import TrainSource


@dataclass
class JsonlQAData(TrainSource):
    """Samples of an `xcomp synth` JSONL (videos decoded on access, `num_frames` uniformly sampled)."""

    name = "jsonl"

    jsonl: str = ""
    """Path of the JSONL file; video paths inside are relative to it."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.jsonl:
            raise ConfigError("train data=jsonl needs data.jsonl")
        if len(self.num_frames) != 1:
            raise ConfigError("data.num_frames must be one number for jsonl training data")

    @cached_property
    def rows(self) -> list[dict]:
        from xcomp.synth.generate import read_questions

        rows = read_questions(self.jsonl, ("video", "question", "answer"))
        return rows[: max(1, int(len(rows) * self.fraction))]

    def __len__(self) -> int:
        return len(self.rows)

    def texts(self):
        return ((r["question"], r.get("options"), r["answer"]) for r in self.rows)

    def __getitem__(self, i: int) -> QASample:
        from xcomp.video.decode import load_video
        from xcomp.video.sampling import FrameSamplingConfig

        row = self.rows[i]
        sampling = FrameSamplingConfig(size=self.image_size, min_frames=4, max_frames=4096, allow_repeat=True)
        video = load_video(Path(self.jsonl).parent / row["video"], sampling, num_frames=self.num_frames[0])
        return QASample(video.frames, row["question"], row["answer"], row.get("options"), video.duration,
                        origin=(video.source, video.indices))  # fmt: skip
