"""Answering a QA suite inside Lightning's validation and test loops, with the spine's own evaluation code.

A `SuiteEvaluation` holds what answering needs besides the model (processor, frame selector, answer length) and
the suites (questions and their decoded videos, `xcomp.evaluation.runner.load_suite`). `XCompLitModule` calls it
from `validation_step` / `test_step`: each process answers its share of the questions with
`answer_questions`, the shares are gathered in suite order, and `summarize` gives the metrics an evaluation run
reports, so a job's test numbers are the spine's on the same questions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader

from xcomp.compression.selectors import FrameSelector
from xcomp.evaluation.report import Record
from xcomp.evaluation.runner import answer_questions
from xcomp.model.processing import XCompProcessor
from xcomp.pipeline import XCompPipeline

QUESTIONS_PER_BATCH = 8
"""Questions per validation/test step (each is answered on its own; this only sets how often Lightning steps)."""


@dataclass
class Suite:
    """Questions (rows of `load_suite`) and their decoded videos by id."""

    rows: list[dict]
    """The questions, in suite order."""
    videos: dict
    """Decoded video of each question id."""

    def loader(self, rank: int = 0, world: int = 1) -> DataLoader:
        """This process's share (every ``world``-th question from ``rank``) in batches of (index, row, video)."""
        share = [(i, row, self.videos[row["id"]]) for i, row in enumerate(self.rows)][rank::world]
        return DataLoader(share, batch_size=QUESTIONS_PER_BATCH, collate_fn=list)


@dataclass
class SuiteEvaluation:
    """How a model answers the validation and test suites, and what the test loop found."""

    processor: XCompProcessor | None
    """Tokenizer and frame processor of the model (None: `fit` sets the training run's)."""
    fields: dict = field(default_factory=dict)
    """`XCompConfig` compression fields the trained model is tested with (the job's compressor and schedule)."""
    selector: FrameSelector | None = None
    """Frame selector (None: the pipeline's default, QC-Comp)."""
    system: str = "system"
    """Label of the records (the token compressor's name)."""
    max_new_tokens: int = 8
    """Answer length limit."""
    val: Suite | None = None
    """Suite answered every `TrainConfig.val_every` steps (its metrics logged with a ``val.`` prefix)."""
    test: Suite | None = None
    """Suite answered by the model once trained."""
    metrics: dict[str, float] = field(default_factory=dict)
    """The test suite's metrics (`summarize`), set by the test loop."""
    records: list[Record] = field(default_factory=list)
    """The test suite's records in suite order, set by the test loop."""

    def answer(self, model, batch: Sequence[tuple[int, dict, object]]) -> list[tuple[int, Record]]:
        """Answer a batch of (index, row, video) with ``model`` (a VLM, or a wrapper holding it as ``.vlm``)."""
        pipe = XCompPipeline(getattr(model, "vlm", model), self.processor, selector=self.selector)
        rows = [row for _, row, _ in batch]
        videos = {row["id"]: video for _, row, video in batch}
        records = answer_questions(pipe, rows, videos, system=self.system, max_new_tokens=self.max_new_tokens)
        return [(i, record) for (i, _, _), record in zip(batch, records, strict=True)]


def gathered(records: list[tuple[int, Record]], world: int) -> list[Record]:
    """Every process's (index, record) pairs, in suite order (all processes get all of them)."""
    if world > 1:
        shares: list = [None] * world
        torch.distributed.all_gather_object(shares, records)
        records = [pair for share in shares for pair in share]
    return [record for _, record in sorted(records, key=lambda pair: pair[0])]

