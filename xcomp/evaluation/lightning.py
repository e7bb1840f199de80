"""Evaluation in Lightning's validation and test loops: one path for an evaluation job, a training job's test and
its validation, on one CPU, one GPU or many processes (DDP under torchrun).

A `SuiteEvaluation` holds what answering needs besides the model (processor, frame selector, answer length, the
feature cache) and the suites (`EvalSuite`: questions grouped by video, each video decoded by the loader's worker
processes ahead of the model). `EvaluationModule.test_step` answers one video's questions with `answer_video`; at
the end of the epoch every process's answers are gathered in suite order and `summarize` gives the metrics, so
every process holds the same records and metrics (rank 0 logs them).
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import dataclass, field

import lightning as L
import torch

from xcomp.compression.selectors import FrameSelector
from xcomp.data.source import Question
from xcomp.evaluation.features import FeatureCache
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
    """Suite answered by the model (once trained)."""
    reuse: bool = True
    """Do question-independent work once per video (`answer_video`)."""
    feature_cache: FeatureCache | None = None
    """Where the vision tower's merged tokens are kept across questions, arms and jobs (None: not kept)."""
    workers: int = 0
    """Processes decoding videos ahead of the model (0: in the main process)."""
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
            answer_rule=source.answer_rule, score_options=source.score_options, feature_cache=self.feature_cache,
        )  # fmt: skip
        indices, questions, video = batch
        records = answer_video(pipe, questions, video, self.system, self.max_new_tokens, self.reuse)
        return list(zip(indices, records, strict=True))

    def summary(self, records: list[Record], suite: EvalSuite) -> dict[str, float]:
        """The metrics of ``suite``'s records, with its source's breakdowns, and the questions its source left
        out (their videos missing)."""
        metrics = summarize(records, suite.source.breakdowns, suite.source.macro)
        return {**metrics, "questions_skipped": float(suite.suite.skipped)}


def gathered(records: list[tuple[int, Record]], world: int) -> list[Record]:
    """Every process's (index, record) pairs, in suite order (all processes get all of them)."""
    if world > 1:
        shares: list = [None] * world
        torch.distributed.all_gather_object(shares, records)
        records = [pair for share in shares for pair in share]
    return [record for _, record in sorted(records, key=lambda pair: pair[0])]


class EvaluationModule(L.LightningModule):
    """Answers ``evaluation``'s suites with ``model`` in Lightning's validation and test loops."""

    def __init__(self, model: torch.nn.Module, evaluation: SuiteEvaluation | None = None):
        super().__init__()
        self.model = model
        self.evaluation = evaluation
        self._answered: list = []
        self._started = 0.0

    def validation_step(self, batch: tuple, batch_idx: int) -> None:
        self._answered += self.evaluation.answer(self.model, batch, self.evaluation.val)

    def on_test_epoch_start(self) -> None:
        self._started = time.perf_counter()

    def test_step(self, batch: tuple, batch_idx: int) -> None:
        self._answered += self.evaluation.answer(self.model, batch, self.evaluation.test)
        rate = len(self._answered) / max(time.perf_counter() - self._started, 1e-9)
        self.log("questions_per_s", rate, prog_bar=True, on_step=True, on_epoch=False, logger=False)

    def on_validation_epoch_end(self) -> None:
        metrics = self.evaluation.summary(self._records(), self.evaluation.val)
        if self.trainer.is_global_zero:  # at the optimiser step validated (`self.log` would say the one before)
            for logger in self.loggers:
                logger.log_metrics({f"val.{k}": v for k, v in metrics.items() if not k.startswith("seconds.")},
                                   step=self.global_step)  # fmt: skip

    def on_test_epoch_end(self) -> None:
        self.evaluation.records = self._records()
        self.evaluation.metrics = self.evaluation.summary(self.evaluation.records, self.evaluation.test)

    def _records(self) -> list:
        """The epoch's records of every process, in suite order."""
        answered, self._answered = self._answered, []
        return gathered(answered, self.trainer.world_size)


def processes() -> tuple[int, int]:
    """Processes in all and on this node: those torchrun started (its LOCAL_WORLD_SIZE), else one."""
    from lightning.fabric.plugins.environments import TorchElasticEnvironment

    if not TorchElasticEnvironment.detect():
        return 1, 1
    return TorchElasticEnvironment().world_size(), int(os.environ["LOCAL_WORLD_SIZE"])


def test(
    model: torch.nn.Module,
    evaluation: SuiteEvaluation,
    trainer: L.Trainer | None = None,
    accelerator: str = "cpu",
    strategy: str = "auto",
    progress: bool = False,
) -> None:
    """Answer ``evaluation.test`` with ``model`` in ``trainer``'s test loop (a new one on ``accelerator`` with
    ``strategy`` when None: DDP when torchrun started several processes), each process its share of the videos;
    the records and metrics (with the feature cache's hits and misses) are left in ``evaluation``."""
    if trainer is None:
        # Lightning logs its device summary and tips at INFO on every Trainer; a job keeps its warnings only.
        logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
        warnings.filterwarnings("ignore", message=r".*LeafSpec.* is deprecated")  # inside Lightning's own pytree use

        world, local = processes()
        trainer = L.Trainer(
            accelerator=accelerator, devices=local, num_nodes=world // local,
            strategy="ddp" if strategy == "auto" and world > 1 else strategy, precision="32-true", logger=False,
            enable_progress_bar=progress, enable_model_summary=False, use_distributed_sampler=False,
            enable_checkpointing=False,
        )  # fmt: skip
    loader = evaluation.test.loader(trainer.global_rank, trainer.world_size, evaluation.workers)
    trainer.test(EvaluationModule(model, evaluation), dataloaders=loader, verbose=False)
    cache = evaluation.feature_cache
    if cache is not None:  # this process's count (rank 0's is the one logged under torchrun)
        counts = {"hits": cache.hits, "misses": cache.misses, "unreadable": cache.unreadable}
        evaluation.metrics.update({f"cache.{k}": float(v) for k, v in counts.items()})
