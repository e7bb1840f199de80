"""A training dataset and its collator as a LightningDataModule whose loader starts at the trainer's step, and the
validation suite beside it."""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
from torch.utils.data import DataLoader, Dataset

from xcomp.errors import ConfigError
from xcomp.evaluation.suite import EvalSuite
from xcomp.train.sampler import StepBatchSampler


class QADataModule(L.LightningDataModule):
    """``dataset`` in micro-batches of ``batch_size`` per process for ``steps`` optimiser steps of ``grad_accum``
    micro-batches each, in the deterministic order of `StepBatchSampler` (seeded by ``seed``); the ``val`` suite's
    questions shared out between the processes. ``workers`` processes load the samples (decode videos) ahead of the
    step."""

    def __init__(
        self,
        dataset: Dataset,
        collate_fn: Callable,
        batch_size: int,
        steps: int,
        grad_accum: int = 1,
        seed: int = 0,
        val: EvalSuite | None = None,
        workers: int = 0,
    ):
        super().__init__()
        self.dataset, self.collate_fn, self.workers = dataset, collate_fn, workers
        self.batch_size, self.steps, self.grad_accum, self.seed = batch_size, steps, grad_accum, seed
        self.val = val

    def check(self, world: int) -> None:
        """Refuse, before any work, a dataset smaller than one global batch."""
        if len(self.dataset) < self.batch_size * world:
            raise ConfigError(f"dataset has {len(self.dataset)} samples, fewer than one global batch")

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        sampler = StepBatchSampler(
            len(self.dataset),
            self.batch_size,
            self.seed,
            total=self.steps * self.grad_accum,
            start=trainer.global_step * self.grad_accum,  # restored from the checkpoint when resuming
            rank=trainer.global_rank,
            world=trainer.world_size,
        )
        return DataLoader(self.dataset, batch_sampler=sampler, collate_fn=self.collate_fn, num_workers=self.workers,
                          prefetch_factor=2 if self.workers else None, persistent_workers=False)  # fmt: skip

    def val_dataloader(self) -> DataLoader | list:
        return self.val.loader(self.trainer.global_rank, self.trainer.world_size) if self.val else []
