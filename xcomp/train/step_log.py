"""A training curve that holds each step once, however often the run was killed and resumed.

Rows (mean loss and accuracies over the micro-batches since the previous row, learning rate, samples, seconds)
are kept in memory and handed to the trainer's Lightning loggers (`MLFlowLogger`, `CSVLogger`, ...) when a
checkpoint is saved and when training ends. A kill therefore loses only rows after the last checkpoint, which the
resumed run, starting from that checkpoint, produces again.
"""

from __future__ import annotations

import math
import time

import lightning as L


class StepLog(L.Callback):
    """Every ``log_every`` optimiser steps (and at the last), one row of ``loss``, ``lr``, ``samples``, ``seconds``
    and a ``<name>_acc`` per entry of the model output's `accuracy` dict; written at checkpoints (see module)."""

    def __init__(self, log_every: int, steps: int, batch_size: int, grad_accum: int):
        self.log_every, self.steps = log_every, steps
        self.batch_size, self.grad_accum = batch_size, grad_accum
        self.rows: list[dict] = []
        self._sums: dict[str, tuple[float, int]] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = time.time()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        for name, value in pl_module.last.items():
            value = trainer.strategy.reduce(value.float(), reduce_op="mean").item()
            total, n = self._sums.get(name, (0.0, 0))
            self._sums[name] = (total, n) if math.isnan(value) else (total + value, n + 1)
        step = trainer.global_step
        if (batch_idx + 1) % self.grad_accum or not (step % self.log_every == 0 or step == self.steps):
            return
        means = {name: total / n if n else math.nan for name, (total, n) in self._sums.items()}
        self.rows.append(
            {
                "step": step,
                "loss": means.pop("loss"),
                "lr": trainer.lr_scheduler_configs[0].scheduler.get_last_lr()[0],
                "samples": step * self.grad_accum * self.batch_size * trainer.world_size,
                "seconds": time.time() - self.start,
                **{f"{name}_acc": value for name, value in means.items()},
            }
        )
        self._sums = {}

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        self.flush(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.flush(trainer)

    def flush(self, trainer: L.Trainer) -> None:
        rows, self.rows = self.rows, []
        if not (rows and trainer.is_global_zero):
            return
        for logger in trainer.loggers:
            for row in rows:
                logger.log_metrics({k: v for k, v in row.items() if k != "step"}, step=row["step"])
            logger.save()
