"""A QA source: where a job's questions come from, one class per benchmark or suite format.

A source reads its annotation files into `Question`s (id, video reference, question, option texts, the answer as
a letter, and the benchmark's own fields as metadata for breakdowns), checks every row against its schema (a row
that does not fit is a `DataError` naming the file, the row and the field, never dropped), groups the questions
by video, resolves each video under its folder, and says how the benchmark is prompted, sampled and scored.

Adding a benchmark = a subclass with a `name` (it registers itself) + conf/data/<name>.yaml with its `_target_`
+ its test. `SOURCES` maps names to classes; `source_class` imports every module of this package first, so that
a name resolves without anything else naming the module.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from xcomp.errors import ConfigError, XCompError
from xcomp.model.processing import OPTION_LETTERS, QuestionFormat

DOT_LABEL = re.compile(r"^([A-J])\.\s*")
"""An option's ``A. `` prefix, as Video-MME's and EgoSchema's files write their options."""
SOURCES: dict[str, type[QASource]] = {}
"""Registered sources by name (filled by subclassing `QASource`)."""
SAMPLING = ("fixed", "fps")
"""fixed: exactly `frames` frames per video; fps: about 1 fps, a multiple of 8, at least 64, at most `frames`."""
MISSING_POLICIES = ("error", "skip")
"""What a job does when some videos are not found: fail before any work, or answer the rest."""
ANSWER_RULES = ("first_letter", "lenient")
"""first_letter: the field's rule (the first standalone option letter, else no answer); lenient: also 'the answer
is B' and a reply that repeats an option's text (what the synthetic suites' models were scored with)."""


class DataError(XCompError):
    """An annotation row that does not fit its benchmark's schema, or a suite that cannot be read."""


def row_error(path: str | Path, row: int | str, field_name: str, problem: str) -> DataError:
    """The one-line error for a bad row: file, row (1-based position or id), field, what is wrong."""
    return DataError(f"{Path(path).name}: row {row}: {field_name}: {problem}")


@dataclass
class Question:
    """One multiple-choice question about a video."""

    id: str
    """Unique within the source."""
    video: str
    """The video's id as the benchmark names it (questions are grouped by it)."""
    question: str
    """The question text, without its options."""
    options: list[str]
    """Option texts without their letters, in letter order."""
    answer: str
    """The correct option's letter."""
    meta: dict[str, Any] = field(default_factory=dict)
    """The benchmark's own fields (breakdown values, durations, …), carried into predictions.jsonl."""
    origin: str = ""
    """Where it was read: ``file: row N`` (for messages about it)."""


@dataclass
class Suite:
    """A source's questions grouped by video (in order of first appearance), with each video's path."""

    questions: list[Question]
    """In video-grouped order."""
    paths: dict[str, Path]
    """Video id -> file or frame folder, for every question's video."""
    skipped: int = 0
    """Questions left out because their video is missing (`missing=skip`)."""
    missing: list[str] = field(default_factory=list)
    """Video ids that were not found."""

    def by_video(self) -> list[tuple[str, list[int]]]:
        """(video id, indices of its questions) in suite order."""
        groups: dict[str, list[int]] = {}
        for i, q in enumerate(self.questions):
            groups.setdefault(q.video, []).append(i)
        return list(groups.items())


@dataclass
class QASource:
    """Base class of every source: the settings that say how its questions are prompted, sampled and scored."""

    name: ClassVar[str] = ""
    """Registry name (the conf/data option)."""
    breakdowns: ClassVar[tuple[str, ...]] = ()
    """Metadata fields whose values get their own accuracy (`accuracy.<field>.<value>`)."""
    macro: ClassVar[str | None] = None
    """Field whose per-value accuracies' mean is the benchmark's headline (`accuracy.macro`), or None."""

    limit: int | None = None
    """Answer only the first N questions, in video-grouped order (None: all)."""
    sampling: str = "fps"
    """fixed (exactly `frames` per video) or fps (about 1 fps, a multiple of 8, at least 64, at most `frames`)."""
    prompt: str = "videochat_flash"
    """Question template: videochat_flash (VideoChat-Flash's evaluation fork) or lmms_eval (upstream)."""
    answer_rule: str = "first_letter"
    """How a reply's letter is read: first_letter (the field's rule) or lenient (see `ANSWER_RULES`)."""
    score_options: bool = False
    """When a reply names no option, pick the option the model finds most likely (off: scored wrong)."""
    progress: bool = False
    """Show progress bars while preparing the suite (set by the job from its `progress`, not in conf/data)."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name"):
            SOURCES[cls.name] = cls

    def __post_init__(self) -> None:
        for key, value, allowed in (
            ("sampling", self.sampling, SAMPLING),
            ("answer_rule", self.answer_rule, ANSWER_RULES),
            ("prompt", self.prompt, tuple(self.formats())),
        ):
            if value not in allowed:
                raise ConfigError(f"data.{key} = {value!r} is not one of {', '.join(allowed)}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"data.limit must be >= 1 question, got {self.limit}")

    def formats(self) -> dict[str, QuestionFormat]:
        """The question templates this benchmark is asked with, by `prompt` name."""
        return {"videochat_flash": QuestionFormat(), "lmms_eval": QuestionFormat()}

    @property
    def question_format(self) -> QuestionFormat:
        return self.formats()[self.prompt]

    def read(self) -> list[Question]:
        """Every question of the annotations, checked (subclasses)."""
        raise NotImplementedError

    def locate(self, questions: Sequence[Question]) -> dict[str, Path | None]:
        """Each video id's file or frame folder, None where it is missing (subclasses)."""
        raise NotImplementedError

    def suite(self) -> Suite:
        """The questions (checked, grouped by video, up to `limit`) and their videos; missing videos are an
        error before any work, or skipped (`missing=skip` where the source has it)."""
        questions, found = self.located()
        missing = [v for v, path in found.items() if path is None]
        if missing and getattr(self, "missing", "error") == "error":
            raise DataError(missing_message(missing, len(found), self.video_folder()))
        kept = [q for q in questions if found[q.video] is not None]
        if not kept:
            raise DataError(f"no question left: all {len(found)} videos are missing under {self.video_folder()}")
        paths = {v: p for v, p in found.items() if p is not None}
        return Suite(kept, paths, skipped=len(questions) - len(kept), missing=missing)

    def located(self) -> tuple[list[Question], dict[str, Path | None]]:
        """The questions (checked, grouped by video, up to `limit`) and each video's path, None where missing."""
        questions = grouped(self.read())
        if self.limit is not None:
            questions = questions[: self.limit]
        return questions, self.locate(questions)

    def video_folder(self) -> str:
        """Where videos are looked for (for messages)."""
        return str(getattr(self, "videos", ""))


def grouped(questions: Sequence[Question]) -> list[Question]:
    """Questions grouped by video in order of each video's first question, ids checked unique."""
    seen: dict[str, Question] = {}
    groups: dict[str, list[Question]] = {}
    for q in questions:
        if q.id in seen:
            first = f" (first at {seen[q.id].origin})" if seen[q.id].origin else ""
            raise DataError(f"{q.origin or 'question'}: id: {q.id!r} appears twice{first}")
        seen[q.id] = q
        groups.setdefault(q.video, []).append(q)
    return [q for group in groups.values() for q in group]


SHOWN = 5
"""Ids a message names before it says '…'."""


def first_few(ids: Sequence[str]) -> str:
    """The first `SHOWN` of ``ids``, comma-separated, with '…' when there are more."""
    return ", ".join(ids[:SHOWN]) + (", …" if len(ids) > SHOWN else "")


def missing_message(missing: Sequence[str], videos: int, folder: str) -> str:
    return (
        f"{len(missing)} of {videos} videos missing under {folder} ({first_few(missing)}); "
        "data.missing=skip answers the questions of the others"
    )


def letter_of(index: int, count: int, where: tuple[str | Path, int | str, str]) -> str:
    """The letter of option ``index`` of ``count`` options, or a row error at ``where`` (file, row, field)."""
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < count:
        raise row_error(*where, f"{index!r} is not an option index 0-{count - 1}")
    return OPTION_LETTERS[index]


def checked_options(options: Any, where: tuple[str | Path, int | str, str]) -> list[str]:
    """A list of 2-10 non-empty option strings, or a row error at ``where``."""
    if not isinstance(options, list | tuple) or not 2 <= len(options) <= len(OPTION_LETTERS):
        raise row_error(*where, f"expected a list of 2-{len(OPTION_LETTERS)} options, got {_short(options)}")
    if not all(isinstance(o, str) and o.strip() for o in options):
        raise row_error(*where, f"options must be non-empty strings, got {_short(options)}")
    return [o.strip() for o in options]


def checked_letter(letter: Any, count: int, where: tuple[str | Path, int | str, str]) -> str:
    """An answer letter among the first ``count`` letters, or a row error at ``where``."""
    if not isinstance(letter, str) or letter.strip().upper() not in OPTION_LETTERS[:count]:
        raise row_error(*where, f"{letter!r} is not one of the letters {OPTION_LETTERS[:count]}")
    return letter.strip().upper()


def checked_id(value: Any, where: tuple[str | Path, int | str, str]) -> str:
    """An id (a non-empty string or an integer) as a string, or a row error at ``where``."""
    if isinstance(value, bool) or not isinstance(value, str | int) or not str(value).strip():
        raise row_error(*where, f"expected an id (text or a number), got {_short(value)}")
    return str(value).strip()


def answer_letter(answer: Any, options: list[str], where: tuple[str | Path, int | str, str]) -> str:
    """The letter of the one option whose text is ``answer``, or a row error at ``where`` (none, or several)."""
    matches = [i for i, o in enumerate(options) if isinstance(answer, str) and o == answer.strip()]
    if len(matches) != 1:
        problem = "is not among the options" if not matches else f"matches {len(matches)} options"
        raise row_error(*where, f"{_short(answer)} {problem}")
    return OPTION_LETTERS[matches[0]]


def origin(path: str | Path, row: int | str) -> str:
    """``file: row N``, as `Question.origin`."""
    return f"{Path(path).name}: row {row}"


def checked_text(value: Any, where: tuple[str | Path, int | str, str]) -> str:
    """A non-empty string, or a row error at ``where``."""
    if not isinstance(value, str) or not value.strip():
        raise row_error(*where, f"expected a non-empty string, got {_short(value)}")
    return value.strip()


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def all_sources() -> dict[str, type[QASource]]:
    """Every registered source by name (every module of `xcomp.data` is imported first, so a new module
    registers itself without anything else naming it)."""
    import xcomp.data

    for module in pkgutil.iter_modules(xcomp.data.__path__):
        importlib.import_module(f"xcomp.data.{module.name}")
    return dict(sorted(SOURCES.items()))


def source_class(name: str) -> type[QASource]:
    """The registered source called ``name``."""
    sources = all_sources()
    if name not in sources:
        raise ConfigError(f"unknown benchmark {name!r}; known: {', '.join(sources)}")
    return sources[name]
