"""LongVideoBench validation (Wu et al., 2024; 1,337 questions on ~750 videos of 8 s to 1 h, duration groups
15 / 60 / 600 / 3600 s), from its parquet (``validation-*.parquet``) or the same rows as JSON: ``id``,
``video_id``, ``video_path`` (relative to the videos folder), ``duration``, ``duration_group``, ``question``,
``option0`` … ``option4`` (unused ones are the string ``"N/A"``), ``correct_choice`` (an integer 0-4),
``question_category`` and ``topic_category``. Without subtitles."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from xcomp.data.benchmark import BenchmarkSource
from xcomp.data.files import read_rows
from xcomp.data.source import Question, checked_id, checked_options, checked_text, letter_of, origin, row_error
from xcomp.model.processing import MC_INSTRUCTION, QuestionFormat

UNUSED = "N/A"
"""The value of an unused option."""
VIDEOCHAT_FLASH_PRE = (
    "Select the best answer to the following multiple-choice question based on the video. Respond with only the "
    "letter of the correct option."
)


@dataclass
class LongVideoBench(BenchmarkSource):
    """LongVideoBench's validation set."""

    name = "longvideobench"
    breakdowns = ("duration_group", "question_category")

    def formats(self) -> dict[str, QuestionFormat]:
        """VideoChat-Flash's fork (tasks/longvideobench/utils.py) without its subtitle sentence (xcomp evaluates
        without subtitles): instruction, 'Question: ', ``(A). `` options; upstream lmms-eval's: ``A. `` options
        and the letter instruction."""
        return {
            "videochat_flash": QuestionFormat(
                pre=VIDEOCHAT_FLASH_PRE + "\n", question_prefix="Question: ", option="({letter}). {text}",
                post=MC_INSTRUCTION,
            ),  # fmt: skip
            "lmms_eval": QuestionFormat(option="{letter}. {text}", post=MC_INSTRUCTION),
        }

    def parse(self, path: Path) -> list[Question]:
        questions = []
        for number, row in enumerate(read_rows(path), 1):
            slots = [row.get(f"option{i}") for i in range(5)]
            if any(s is None for s in slots):
                raise row_error(path, number, "option0-4", "expected five option fields (unused ones 'N/A')")
            used = [i for i, s in enumerate(slots) if s != UNUSED]
            options = checked_options([slots[i] for i in used], (path, number, "option0-4"))
            choice = row.get("correct_choice")
            if not isinstance(choice, int) or isinstance(choice, bool) or choice not in used:
                raise row_error(path, number, "correct_choice", f"{choice!r} is not the index of a used option")
            letter = letter_of(used.index(choice), len(options), (path, number, "correct_choice"))
            meta = {
                "duration_group": str(row.get("duration_group", "")),
                "question_category": str(row.get("question_category", "")),
                "topic_category": str(row.get("topic_category", "")),
                "duration": row.get("duration"),
                "video_path": row.get("video_path"),
            }
            questions.append(
                Question(
                    checked_id(row.get("id"), (path, number, "id")),
                    checked_text(row.get("video_id"), (path, number, "video_id")),
                    checked_text(row.get("question"), (path, number, "question")),
                    options,
                    letter,
                    meta,
                    origin(path, number),
                )
            )
        return questions

    def candidates(self, question: Question) -> list[str]:
        path = question.meta.get("video_path")
        return ([path] if isinstance(path, str) and path else []) + super().candidates(question)
