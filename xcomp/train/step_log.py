"""A training curve that holds each step once, however often the run was killed and resumed.

Rows (mean loss and accuracies over the micro-batches since the previous row, learning rate, samples, seconds)
are kept in memory and written out, to ``log.csv`` and to the trainer's Lightning loggers (e.g. `MLFlowLogger`),
when a checkpoint is saved and when training ends. A kill therefore loses only rows after the last checkpoint,
which the resumed run, starting from that checkpoint, produces again.
"""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path

import lightning as L

LOG_FIELDS = ["step", "loss", "lr", "samples", "seconds"]
"""Columns of log.csv; a model output with an `accuracy` dict adds one `<name>_acc` column per entry."""


class StepLog(L.Callback):
    """Every ``log_every`` optimiser steps (and at the last), one row; written at checkpoints (see module)."""

    def __init__(self, path: Path | None, log_every: int, steps: int, batch_size: int, grad_accum: int):
        self.path, self.log_every, self.steps = path, log_every, steps
        self.batch_size, self.grad_accum = batch_size, grad_accum
        self.rows: list[dict] = []
        self._sums: dict[str, tuple[float, int]] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = time.time()
        if trainer.is_global_zero and self.path is not None and self.path.is_file():
            self._keep_rows_up_to(trainer.global_step)

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
        if self.path is None:
            return
        new = not self.path.is_file()
        with self.path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            if new:
                writer.writeheader()
            writer.writerows([_formatted(row) for row in rows])

    def _keep_rows_up_to(self, step: int) -> None:
        """Drop rows of steps after the checkpoint we resume from (written in the moment before a kill)."""
        with self.path.open() as f:
            reader = csv.DictReader(f)
            rows = [r for r in reader if int(r["step"]) <= step]
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=reader.fieldnames or LOG_FIELDS)
            writer.writeheader()
            writer.writerows(rows)


def _formatted(row: dict) -> dict:
    out = {"step": row["step"], "loss": f"{row['loss']:.6f}", "lr": f"{row['lr']:.3e}", "samples": row["samples"]}
    out["seconds"] = f"{row['seconds']:.1f}"
    return {**out, **{k: f"{v:.4f}" if not math.isnan(v) else "nan" for k, v in row.items() if k.endswith("_acc")}}
