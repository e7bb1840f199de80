"""LVBench (Wang et al., 2024; ~1.5 k questions on ~100 hour-long videos, about 15 per video).

Two annotation files are read, each as distributed:
- VideoChat-Flash's / XComp's JSON list: one row per question with ``video`` (the id), ``type`` (the video's
  category), ``question``, ``candidates`` (each with its ``(A) `` prefix), ``answer`` (the full candidate string,
  e.g. ``"(D) 1633"``), ``question_type`` (a list) and ``time_reference``;
- the benchmark's own ``video_info.meta.jsonl``: one line per video with ``key`` (the id), ``type`` and ``qa``, a
  list of questions with ``uid``, ``question`` (its options embedded as ``\\n(A) …`` lines), ``answer`` (a letter),
  ``question_type`` and ``time_reference``.
Videos are ``<id>.mp4`` anywhere under `videos` (downloaders nest them in sub-folders) or a frame folder ``<id>``.
A question of several types counts in each type's accuracy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from xcomp.data.benchmark import BenchmarkSource
from xcomp.data.files import read_rows
from xcomp.data.source import (
    Question,
    answer_letter,
    checked_id,
    checked_letter,
    checked_options,
    checked_text,
    origin,
    row_error,
)
from xcomp.model.processing import MC_INSTRUCTION, QuestionFormat

LABEL = re.compile(r"^\(([A-J])\)\s*")
"""An option's ``(A) `` prefix."""


def _types(value, where) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise row_error(*where, f"expected a non-empty list of type names, got {value!r}")
    return [v.strip() for v in value]


@dataclass
class LVBench(BenchmarkSource):
    """LVBench from VideoChat-Flash's JSON list or the benchmark's video_info.meta.jsonl."""

    name = "lvbench"
    breakdowns = ("question_type", "type")
    extensions = (".mp4", ".mkv", ".webm")

    def formats(self) -> dict[str, QuestionFormat]:
        """VideoChat-Flash's fork (tasks/lvbench: ``A. `` options, then the letter instruction) and upstream
        lmms-eval's (tasks/lvbench/utils.py: ``(A) `` options, 'Answer the question with the option letter.')."""
        return {
            "videochat_flash": QuestionFormat(option="{letter}. {text}", post=MC_INSTRUCTION),
            "lmms_eval": QuestionFormat(option="({letter}) {text}", post="Answer the question with the option letter."),
        }

    def parse(self, path: Path) -> list[Question]:
        questions: list[Question] = []
        for number, row in enumerate(read_rows(path), 1):
            if "qa" in row:
                questions += self._video_line(path, number, row)
            else:
                questions.append(self._question_row(path, number, row))
        return questions

    def _question_row(self, path: Path, number: int, row: dict) -> Question:
        video = checked_text(row.get("video"), (path, number, "video"))
        options = checked_options(row.get("candidates"), (path, number, "candidates"))
        texts = [LABEL.sub("", o) for o in options]
        answer = row.get("answer")
        full = isinstance(answer, str) and answer.strip() in options  # "(D) 1633", as the fork writes it
        letter = answer_letter(answer, options if full else texts, (path, number, "answer"))
        meta = {
            "question_type": _types(row.get("question_type"), (path, number, "question_type")),
            "type": str(row.get("type", "")),
            "time_reference": row.get("time_reference"),
        }
        given = row.get("uid", row.get("id"))
        qid = checked_id(given, (path, number, "uid")) if given is not None else f"{video}#{number}"
        question = checked_text(row.get("question"), (path, number, "question"))
        return Question(qid, video, question, texts, letter, meta, origin(path, number))

    def _video_line(self, path: Path, number: int, row: dict) -> list[Question]:
        video = checked_text(row.get("key"), (path, number, "key"))
        if not isinstance(row["qa"], list) or not row["qa"]:
            raise row_error(path, number, "qa", "expected a non-empty list of questions")
        questions = []
        for k, qa in enumerate(row["qa"], 1):
            where = f"{number} (qa {k})"
            text = checked_text(qa.get("question") if isinstance(qa, dict) else None, (path, where, "question"))
            stem, *lines = re.split(r"\n(?=\([A-J]\))", text)
            options = checked_options([LABEL.sub("", line) for line in lines], (path, where, "question options"))
            letter = checked_letter(qa.get("answer"), len(options), (path, where, "answer"))
            meta = {
                "question_type": _types(qa.get("question_type"), (path, where, "question_type")),
                "type": str(row.get("type", "")),
                "time_reference": qa.get("time_reference"),
            }
            qid = checked_id(qa["uid"], (path, where, "uid")) if "uid" in qa else f"{video}#{k}"
            questions.append(Question(qid, video, stem.strip(), options, letter, meta, origin(path, where)))
        return questions
