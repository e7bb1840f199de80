"""EgoSchema, the 500-question subset with public answers (Mangalam et al., 2023; 3-minute egocentric clips),
from lmms-eval's copy (config ``Subset``, parquet or JSON rows): ``video_idx`` (the clip's id: ``<id>.mp4``),
``question_idx``, ``question``, ``option`` (five strings starting ``"A. "``) and ``answer`` (an integer 0-4, or
its digit as a string). Accuracy only."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from xcomp.data.benchmark import BenchmarkSource
from xcomp.data.files import read_rows
from xcomp.data.source import DOT_LABEL, Question, checked_id, checked_options, checked_text, letter_of, origin
from xcomp.model.processing import MC_INSTRUCTION, QuestionFormat


@dataclass
class EgoSchema(BenchmarkSource):
    """EgoSchema's subset."""

    name = "egoschema"

    def formats(self) -> dict[str, QuestionFormat]:
        """Upstream lmms-eval's (tasks/egoschema/utils.py: ``A. `` options, the letter instruction); VideoChat-Flash's
        fork has no EgoSchema task, so both names give it."""
        upstream = QuestionFormat(option="{letter}. {text}", post=MC_INSTRUCTION)
        return {"videochat_flash": upstream, "lmms_eval": upstream}

    def parse(self, path: Path) -> list[Question]:
        questions = []
        for number, row in enumerate(read_rows(path), 1):
            options = checked_options(row.get("option"), (path, number, "option"))
            answer = row.get("answer")
            if isinstance(answer, str) and answer.strip().isdigit():
                answer = int(answer)
            letter = letter_of(answer, len(options), (path, number, "answer"))
            video = checked_text(row.get("video_idx"), (path, number, "video_idx"))
            given = row.get("question_idx")
            qid = checked_id(given, (path, number, "question_idx")) if given is not None else video
            question = checked_text(row.get("question"), (path, number, "question"))
            texts = [DOT_LABEL.sub("", o) for o in options]
            questions.append(Question(qid, video, question, texts, letter, {}, origin(path, number)))
        return questions
