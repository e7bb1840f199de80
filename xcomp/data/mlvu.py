"""MLVU dev, multiple choice (Zhou et al., 2024; 2,175 questions, videos of 3 min to 2 h), from the benchmark's
``json/`` folder: seven JSON lists, one per task (``1_plotQA.json`` … ``7_topic_reasoning.json``), rows with
``video`` (the file name), ``duration``, ``question``, ``candidates`` (plain strings), ``answer`` (the correct
candidate's text) and ``question_type``. The folder's ``8_sub_scene.json`` and ``9_summary.json`` are open-ended
generation tasks, not multiple choice: they are skipped (`notes` says so). Videos sit in per-task folders named
``<n>_<task>/`` or ``<task>/`` depending on the copy, or in one flat folder. The headline, M-Avg, is the macro mean
over task types (`accuracy.macro`); `accuracy` stays the micro mean over questions."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from xcomp.data.benchmark import BenchmarkSource
from xcomp.data.files import read_rows
from xcomp.data.source import DataError, Question, answer_letter, checked_options, checked_text, origin
from xcomp.model.processing import MC_INSTRUCTION, QuestionFormat

TASKS = ("plotQA", "needle", "ego", "count", "order", "anomaly_reco", "topic_reasoning")
"""The seven multiple-choice task types, in the order of their files."""
OPEN_ENDED = ("sub_scene", "summary")
"""Tasks of the json/ folder that are not multiple choice."""


@dataclass
class MLVU(BenchmarkSource):
    """MLVU's multiple-choice dev set."""

    name = "mlvu"
    breakdowns = ("question_type",)
    macro = "question_type"
    folder = True

    def formats(self) -> dict[str, QuestionFormat]:
        """VideoChat-Flash's fork (tasks/mlvu_mc/utils.py: 'Question:' with no space, 'Option:', ``(A) ``
        options) and upstream lmms-eval's (tasks/mlvu, 'Only give the best option.' then 'Best option: (')."""
        return {
            "videochat_flash": QuestionFormat(
                question_prefix="Question:", options_prefix="Option:\n", option="({letter}) {text}", post=MC_INSTRUCTION
            ),
            "lmms_eval": QuestionFormat(option="({letter}) {text}", post="Only give the best option.\nBest option: ("),
        }

    notes: list[str] = field(default_factory=list, init=False, repr=False)

    def parse(self, path: Path) -> list[Question]:
        files = sorted(path.glob("*.json")) if path.is_dir() else [path]
        skipped = [f for f in files if f.stem.split("_", 1)[-1] in OPEN_ENDED]
        if skipped:
            self.notes.append(f"skipped {', '.join(f.name for f in skipped)} (open-ended, not multiple choice)")
        files = [f for f in files if f not in skipped]
        if not files:
            raise DataError(f"{path}: no MLVU task files (*.json)")
        questions = []
        for file in files:
            for number, row in enumerate(read_rows(file), 1):
                options = checked_options(row.get("candidates"), (file, number, "candidates"))
                letter = answer_letter(row.get("answer"), options, (file, number, "answer"))
                task = checked_text(row.get("question_type"), (file, number, "question_type"))
                meta = {"question_type": task, "duration": row.get("duration"), "file": file.stem}
                questions.append(
                    Question(
                        f"{file.stem}#{number}",
                        checked_text(row.get("video"), (file, number, "video")),
                        checked_text(row.get("question"), (file, number, "question")),
                        options,
                        letter,
                        meta,
                        origin(file, number),
                    )
                )
        return questions

    def candidates(self, question: Question) -> list[str]:
        """``<n>_<task>/<file>``, ``<task>/<file>``, then the file anywhere below."""
        file, task = question.meta["file"], question.meta["question_type"]
        return [f"{file}/{question.video}", f"{task}/{question.video}", question.video]
