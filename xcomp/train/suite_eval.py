"""Answering a QA suite inside Lightning's validation and test loops, with the spine's own evaluation code.

A `SuiteEvaluation` holds what answering needs besides the model (processor, frame selector, answer length) and
the suites (`xcomp.evaluation.suite.EvalSuite`: questions grouped by video, each video decoded when its questions
come up). `XCompLitModule` calls it from `validation_step` / `test_step`: each process answers the questions of
its share of the videos with `answer_video`, the shares are gathered in suite order, and `summarize` gives the
metrics an evaluation run reports, so a job's test numbers are the spine's on the same questions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from xcomp.compression.selectors import FrameSelector
from xcomp.data.source import Question
from xcomp.evaluation.report import Record
from xcomp.evaluation.runner import answer_video, summarize
from xcomp.evaluation.suite import EvalSuite
from xcomp.model.processing import XCompProcessor
from xcomp.pipeline import XCompPipeline
from xcomp.video.decode import Video


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
    val: EvalSuite | None = None
    """Suite answered every `TrainConfig.val_every` steps (its metrics logged with a ``val.`` prefix)."""
    test: EvalSuite | None = None
    """Suite answered by the model once trained."""
    metrics: dict[str, float] = field(default_factory=dict)
    """The test suite's metrics (`summarize`), set by the test loop."""
    records: list[Record] = field(default_factory=list)
    """The test suite's records in suite order, set by the test loop."""

    def answer(
        self, model, batch: tuple[list[int], list[Question], Video], suite: EvalSuite
    ) -> list[tuple[int, Record]]:
        """Answer one video's questions (a loader item of ``suite``) with ``model`` (a VLM, or a wrapper holding it
        as ``.vlm``); returns (suite index, record) pairs."""
        source = suite.source
        pipe = XCompPipeline(
            getattr(model, "vlm", model), self.processor, selector=self.selector, prompt=suite.prompt(),
            answer_rule=source.answer_rule, score_options=source.score_options,
        )  # fmt: skip
        indices, questions, video = batch
        records = answer_video(pipe, questions, video, system=self.system, max_new_tokens=self.max_new_tokens)
        return list(zip(indices, records, strict=True))

    def summary(self, records: list[Record], suite: EvalSuite) -> dict[str, float]:
        """The metrics of ``suite``'s records, with its source's breakdowns."""
        return summarize(records, suite.source.breakdowns, suite.source.macro)


def gathered(records: list[tuple[int, Record]], world: int) -> list[Record]:
    """Every process's (index, record) pairs, in suite order (all processes get all of them)."""
    if world > 1:
        shares: list = [None] * world
        torch.distributed.all_gather_object(shares, records)
        records = [pair for share in shares for pair in share]
    return [record for _, record in sorted(records, key=lambda pair: pair[0])]
