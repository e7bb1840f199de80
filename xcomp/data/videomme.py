"""Video-MME (Fu et al., 2024; 2,700 questions on 900 videos, 3 per video; short < 2 min, medium 4-15 min, long
30-60 min), from lmms-eval's copy: one parquet file (``videomme/test-*.parquet``) with ``video_id``, ``videoID``
(the YouTube id: the file is ``data/<videoID>.mp4``, sometimes ``.MP4`` or ``.mkv``), ``question_id``,
``duration``, ``domain``, ``sub_category``, ``task_type``, ``question``, ``options`` (strings that already start
with ``"A. "``) and ``answer`` (a letter). JSON rows of the same fields are read too."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from xcomp.data.benchmark import BenchmarkSource
from xcomp.data.files import read_rows
from xcomp.data.source import (
    DOT_LABEL,
    Question,
    checked_id,
    checked_letter,
    checked_options,
    checked_text,
    origin,
    row_error,
)
from xcomp.model.processing import MC_INSTRUCTION, QuestionFormat

VIDEOCHAT_FLASH_PRE = (
    "These are the frames of a video. Select the best answer to the following multiple-choice question based on the "
    "video. Respond with only the letter (A, B, C, or D) of the correct option."
)
LMMS_EVAL_PRE = (
    "Select the best answer to the following multiple-choice question based on the video. Respond with only the "
    "letter (A, B, C, or D) of the correct option."
)


@dataclass
class VideoMME(BenchmarkSource):
    """Video-MME without subtitles."""

    name = "videomme"
    breakdowns = ("duration", "domain", "task_type")
    extensions = (".mp4", ".MP4", ".mkv")

    def formats(self) -> dict[str, QuestionFormat]:
        """VideoChat-Flash's fork (tasks/videomme/utils.py, as in ZheyuAqaZhang/XComp 7346e79) and upstream
        lmms-eval's (tasks/videomme/utils.py, without subtitles)."""
        return {
            "videochat_flash": QuestionFormat(
                pre=VIDEOCHAT_FLASH_PRE + "\n", question_prefix="Question: ", options_prefix="Option:\n",
                option="{letter}. {text}", post=MC_INSTRUCTION,
            ),  # fmt: skip
            "lmms_eval": QuestionFormat(pre=LMMS_EVAL_PRE + "\n", option="{letter}. {text}", post="The best answer is:"),
        }

    def parse(self, path: Path) -> list[Question]:
        questions = []
        for number, row in enumerate(read_rows(path), 1):
            options = checked_options(row.get("options"), (path, number, "options"))
            for i, option in enumerate(options):
                label = DOT_LABEL.match(option)
                if label is None or label.group(1) != chr(ord("A") + i):
                    raise row_error(path, number, "options", f"option {i + 1} {option!r} does not start with its letter")
            letter = checked_letter(row.get("answer"), len(options), (path, number, "answer"))
            meta = {k: str(row.get(k, "")) for k in ("duration", "domain", "sub_category", "task_type")}
            questions.append(
                Question(
                    checked_id(row.get("question_id"), (path, number, "question_id")),
                    checked_text(row.get("videoID"), (path, number, "videoID")),
                    checked_text(row.get("question"), (path, number, "question")),
                    [DOT_LABEL.sub("", o) for o in options],
                    letter,
                    meta,
                    origin(path, number),
                )
            )
        return questions
