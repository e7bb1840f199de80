"""A suite on disk in the `xcomp synth` format (docs/synthetic_suite.md): questions.jsonl, videos relative to it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from xcomp.data.source import QASource, Question, checked_letter, checked_options, origin
from xcomp.errors import ConfigError
from xcomp.model.processing import QuestionFormat

QUESTION_KEYS = ("id", "video", "question", "options", "answer", "family")
"""Keys every question of an `xcomp synth` suite has."""
META_KEYS = ("family", "depth", "events", "fps")
"""Fields kept as metadata: the family breakdown and the frame-recall checks of single-event questions."""


@dataclass
class XCompSuite(QASource):
    """A suite in xcomp's own format, asked as xcomp's models were trained: their layout, letters read leniently,
    the options scored when a reply names none, exactly `frames` frames. Subclasses say where its JSONL is."""

    sampling: str = "fixed"
    """fixed (exactly `frames` per video) or fps (about 1 fps, a multiple of 8, at least 64, at most `frames`)."""
    prompt: str = "xcomp"
    """Question template: xcomp (the layout xcomp's models were trained with)."""
    answer_rule: str = "lenient"
    """How a reply's letter is read: lenient (also 'the answer is B' and an option's text) or first_letter."""
    score_options: bool = True
    """When a reply names no option, pick the option the model finds most likely."""

    def formats(self) -> dict[str, QuestionFormat]:
        return {"xcomp": QuestionFormat()}

    def jsonl(self) -> Path:
        """The suite's questions.jsonl (subclasses)."""
        raise NotImplementedError

    def read(self) -> list[Question]:
        path = self.jsonl()
        from xcomp.synth.generate import read_questions

        questions = []
        for number, row in enumerate(read_questions(path, QUESTION_KEYS), 1):
            options = checked_options(row["options"], (path, number, "options"))
            answer = checked_letter(row["answer"], len(options), (path, number, "answer"))
            meta = {k: row[k] for k in META_KEYS if k in row}
            questions.append(
                Question(str(row["id"]), str(row["video"]), row["question"], options, answer, meta, origin(path, number))
            )
        return questions

    def locate(self, questions: Sequence[Question]) -> dict[str, Path | None]:
        folder = self.jsonl().parent
        return {q.video: folder / q.video if (folder / q.video).exists() else None for q in questions}

    def video_folder(self) -> str:
        return str(self.jsonl().parent)


@dataclass
class JsonlSuite(XCompSuite):
    """Questions and videos written by `xcomp synth` (or any tool writing that format)."""

    name = "jsonl"

    questions: str = ""
    """questions.jsonl; videos are resolved relative to it."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.questions:
            raise ConfigError("data=jsonl needs data.questions (a questions.jsonl)")

    def jsonl(self) -> Path:
        return Path(self.questions)
