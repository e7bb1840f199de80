"""Supervised fine-tuning loop (dense pre-training and SCT) on top of `accelerate`.

`accelerate` gives one code path for a single CPU process, `torchrun` / `accelerate launch` DDP (gloo on CPU,
NCCL on GPUs), bf16 autocast, and DeepSpeed when a DeepSpeed config is passed to `accelerate launch`.

Resuming: every `save_every` steps the full training state (model, optimiser, scheduler, RNG states) is written
with `accelerator.save_state` into `checkpoints/step_XXXXXXX` (first to a temporary folder, then renamed, so a
kill during saving leaves the previous checkpoint intact). On restart the newest checkpoint is loaded and the data
loader skips exactly the micro-batches already consumed in the current epoch, so no step is lost or repeated.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, set_seed
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from xcomp.errors import ConfigError
from xcomp.model.modeling import XCompForCausalLM
from xcomp.model.processing import XCompProcessor
from xcomp.pipeline_config import answer_defaults, save_pipeline_config
from xcomp.train.config import TrainConfig
from xcomp.train.data import QACollator

STATE_FILE = "trainer_state.json"
RESUMABLE_CHANGES = {"output_dir", "steps", "save_every", "log_every", "keep_checkpoints", "answer_frames"}
"""Config fields that may differ when a run is resumed: extend it, checkpoint and log at another rate, or save
other answering defaults with the final model."""
LOG_FIELDS = ["step", "loss", "lr", "samples", "seconds"]
"""Columns of log.csv; a model output with an `accuracy` dict adds one `<name>_acc` column per entry."""


def set_trainable(model: XCompForCausalLM, config: TrainConfig) -> list[torch.nn.Parameter]:
    """Freeze/unfreeze the three parts; returns the trainable parameters (tied head counts as the embedding).

    `model` is the VLM or a training wrapper holding it as `.vlm` (`FrameTagger`), whose own head trains.
    """
    vlm = getattr(model, "vlm", model)
    inner = vlm.model
    parts = {
        inner.vision_tower: config.train_vision,
        inner.mm_projector: config.train_projector,
        inner.language_model: config.train_llm,
    }
    for module, flag in parts.items():
        module.requires_grad_(flag)
    if inner.image_newline is not None:
        inner.image_newline.requires_grad_(config.train_llm)
    vlm.lm_head.requires_grad_(config.train_llm)
    seen, params = set(), []
    for p in model.parameters():
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            params.append(p)
    return params


def checkpoints(output_dir: Path) -> list[Path]:
    """Completed resumable checkpoints, oldest first."""
    root = output_dir / "checkpoints"
    found = [p for p in root.glob("step_*") if (p / STATE_FILE).is_file()] if root.is_dir() else []
    return sorted(found, key=lambda p: int(p.name.split("_")[1]))


class Trainer:
    """Runs `TrainConfig` on a model, a dataset of `QASample`s and a processor.

    Any model whose forward returns an object with `.loss` and that has `save_pretrained` trains the same way,
    given the matching `collate_fn` (e.g. `FrameTagger` with `FrameTagCollator`).
    """

    def __init__(
        self,
        config: TrainConfig,
        model: XCompForCausalLM,
        dataset: Dataset,
        processor: XCompProcessor,
        accelerator: Accelerator | None = None,
        collate_fn=None,
    ):
        self.config = config
        self.output_dir = Path(config.output_dir)
        self.accelerator = accelerator or Accelerator(
            cpu=not torch.cuda.is_available(),  # lets torchrun on a CPU-only host form a gloo process group
            mixed_precision="bf16" if config.precision == "bf16" else "no",
            gradient_accumulation_steps=config.grad_accum,
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
            step_scheduler_with_optimizer=False,  # `steps` counts optimiser steps, whatever the process count
        )
        set_seed(config.seed)
        self.processor = processor
        if len(dataset) < config.batch_size * self.accelerator.num_processes:
            raise ConfigError(f"dataset has {len(dataset)} samples, fewer than one global batch")
        if config.gradient_checkpointing:
            model.activation_checkpointing_enable()
        model.train()
        params = set_trainable(model, config)
        generator = torch.Generator().manual_seed(config.seed)
        loader = DataLoader(
            dataset,
            batch_size=config.batch_size,
            shuffle=True,
            drop_last=True,
            collate_fn=collate_fn or QACollator(processor),
            generator=generator,
        )
        optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        scheduler = get_cosine_schedule_with_warmup(
            optimizer, math.ceil(config.warmup_ratio * config.steps), config.steps
        )
        self.model, self.optimizer, self.loader, self.scheduler = self.accelerator.prepare(
            model, optimizer, loader, scheduler
        )
        self.step = 0

    # ------------------------------------------------------------------ state
    def resume(self) -> None:
        """Load the newest complete checkpoint, if any."""
        found = checkpoints(self.output_dir)
        if not found:
            return
        state = json.loads((found[-1] / STATE_FILE).read_text())
        self._check_same_run(state.get("config", {}))
        self.accelerator.load_state(str(found[-1]))
        self.step = state["step"]
        self._truncate_log(self.step)

    def _check_same_run(self, stored: dict) -> None:
        """Resuming under another recipe (learning rate, data, init, ...) would silently mix two runs."""

        def flat(config: dict) -> dict:
            data = {f"data.{k}": v for k, v in config.get("data", {}).items()}
            return {**{k: v for k, v in config.items() if k != "data"}, **data}

        before, now = flat(stored), flat(json.loads(json.dumps(self.config.to_dict())))
        changed = [  # a key the stored config lacks is a field added since: it had its default then
            f"{k}: {before[k]!r} -> {v!r}"
            for k, v in now.items()
            if k in before and k not in RESUMABLE_CHANGES and before[k] != v
        ]
        if changed:
            raise ConfigError(
                f"{self.output_dir} holds a run with another config ({'; '.join(changed[:3])}); "
                "use a new output_dir, or delete that one to start over"
            )

    def save(self) -> None:
        root = self.output_dir / "checkpoints"
        final = root / f"step_{self.step:07d}"
        tmp = root / f".tmp_step_{self.step:07d}"
        # Every rank writes its own RNG file into `tmp`: clear it before any rank starts writing, and
        # rename it only after all have finished.
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process and tmp.exists():
            shutil.rmtree(tmp)
        self.accelerator.wait_for_everyone()
        self.accelerator.save_state(str(tmp))
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            (tmp / STATE_FILE).write_text(json.dumps({"step": self.step, "config": self.config.to_dict()}))
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
            for old in checkpoints(self.output_dir)[: -self.config.keep_checkpoints]:
                shutil.rmtree(old)
        self.accelerator.wait_for_everyone()

    def _truncate_log(self, step: int) -> None:
        """Drop log rows written after the checkpoint we resume from (they will be produced again)."""
        log = self.output_dir / "log.csv"
        if not (self.accelerator.is_main_process and log.is_file()):
            return
        with log.open() as f:
            reader = csv.DictReader(f)
            rows = [r for r in reader if int(r["step"]) <= step]
        with log.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=reader.fieldnames or LOG_FIELDS)
            writer.writeheader()
            writer.writerows(rows)

    def _log(self, row: dict) -> None:
        if not self.accelerator.is_main_process:
            return
        log = self.output_dir / "log.csv"
        new = not log.is_file()
        with log.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)

    # ------------------------------------------------------------------ loop
    def _batches(self):
        """Micro-batches from the current position on, across epochs, in a deterministic order."""
        per_epoch = len(self.loader)
        consumed = self.step * self.config.grad_accum
        epoch, skip = divmod(consumed, per_epoch)
        while True:
            self.loader.set_epoch(epoch)
            loader = self.accelerator.skip_first_batches(self.loader, skip) if skip else self.loader
            yield from loader
            epoch, skip = epoch + 1, 0

    def train(self) -> Path:
        """Run until `config.steps`; returns the folder of the final `save_pretrained` model."""
        cfg = self.config
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.resume()
        bar = tqdm(
            total=cfg.steps, initial=self.step, desc="train", disable=not self.accelerator.is_main_process
        )
        batches = self._batches()
        start, running, count, metrics = time.time(), 0.0, 0, {}
        while self.step < cfg.steps:
            for _ in range(cfg.grad_accum):
                batch = next(batches)
                with self.accelerator.accumulate(self.model):
                    output = self.model(**batch)
                    loss = output.loss
                    self.accelerator.backward(loss)
                    if self.accelerator.sync_gradients and cfg.max_grad_norm > 0:
                        self.accelerator.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                    self.optimizer.step()
                    self.optimizer.zero_grad()
                running += self.accelerator.reduce(loss.detach().float(), "mean").item()
                for name, value in getattr(output, "accuracy", {}).items():
                    value = self.accelerator.reduce(value.detach().float(), "mean").item()
                    total, n = metrics.get(name, (0.0, 0))
                    metrics[name] = (total, n) if math.isnan(value) else (total + value, n + 1)
                count += 1
            self.scheduler.step()
            self.step += 1
            bar.update(1)
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                mean = running / count
                bar.set_postfix(loss=f"{mean:.4f}")
                self._log(
                    {
                        "step": self.step,
                        "loss": f"{mean:.6f}",
                        "lr": f"{self.scheduler.get_last_lr()[0]:.3e}",
                        "samples": self.step * cfg.grad_accum * cfg.batch_size * self.accelerator.num_processes,
                        "seconds": f"{time.time() - start:.1f}",
                        **{f"{name}_acc": f"{total / n:.4f}" if n else "nan" for name, (total, n) in metrics.items()},
                    }
                )
                running, count, metrics = 0.0, 0, {}
            if self.step % cfg.save_every == 0 or self.step == cfg.steps:
                self.save()
        bar.close()
        return self.save_final()

    def save_final(self) -> Path:
        final = self.output_dir / "final"
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            model = self.accelerator.unwrap_model(self.model)
            model.save_pretrained(str(final))
            self.processor.save_pretrained(final)
            if self.config.answer_frames:
                clip = getattr(model, "vlm", model).config.local_num_frames  # a frame tagger wraps its VLM
                defaults = answer_defaults(self.config.answer_frames, clip, self.processor.image_size)
                save_pipeline_config(final, *defaults)
        self.accelerator.wait_for_everyone()
        return final
