"""Typed training configuration: the `train` group of conf/ (run.py) composes it; OmegaConf checks keys and types
against the dataclasses, `validate` the ranges and combinations."""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass
from typing import Any

from xcomp.errors import ConfigError
from xcomp.structured import load_structured


@dataclass
class TrainConfig:
    """A supervised fine-tuning run: which model, which parts train, optimiser, checkpoints."""

    output_dir: str
    """Run folder: checkpoints/, train_config.json, final/ (a save_pretrained model)."""
    init: str = "tiny"
    """A model folder (ours or published layout), or 'tiny' for a fresh random tiny model."""
    tokenizer: str | None = None
    """Tokenizer folder; defaults to `init` when that is a folder."""
    objective: str = "answer"
    """'answer': next-token loss on the answers; 'frame_tags': per-frame colour/shape/digit classification of the
    visual tokens of synthetic videos, which pretrains a from-scratch vision tower and projector (LLM unused)."""
    compression: str | None = None
    """Override the model's compression while training (SCT: 'lp_comp' on a dense base)."""
    schedule: list[int] | None = None
    """Override the compression schedule (tokens per frame entering each layer)."""
    tiny_layers: int = 4
    """LLM layers of a fresh tiny model (init='tiny')."""
    tiny_hidden_size: int = 64
    """Width of the LLM and vision tower of a fresh tiny model (init='tiny')."""
    tiny_patch_size: int = 8
    """Vision patch size of a fresh tiny model (16 -> 16 patches per 64 px frame)."""
    data: Any = None
    """The training samples: a `xcomp.train.sources.source.TrainSource` (the train group's `data` node, built
    from its `_target_`); None: synthetic data with its defaults."""
    steps: int | None = 200
    """Optimiser steps (each consumes batch_size * grad_accum samples per process); null with `epochs`."""
    epochs: float | None = None
    """Train for this many passes over the data instead of `steps` (the steps that fit, whole global batches)."""
    batch_size: int = 4
    """Samples per micro-batch per process."""
    grad_accum: int = 1
    """Micro-batches accumulated per optimiser step."""
    global_batch: int | None = None
    """Samples per optimiser step over all processes (the published 32): sets grad_accum to
    global_batch / (batch_size x processes), which must be whole; null: grad_accum as given."""
    workers: int = 0
    """DataLoader processes decoding training videos ahead of the step (0: in the training process)."""
    lr: float = 1e-4
    """Peak learning rate (AdamW)."""
    warmup_ratio: float = 0.03
    """Fraction of steps of linear warm-up before the cosine decay."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm (0 disables)."""
    precision: str = "fp32"
    """Autocast precision of forward/backward: 'fp32' or 'bf16'."""
    gradient_checkpointing: bool = False
    """Recompute decoder-layer activations in the backward pass to save memory."""
    train_vision: bool = False
    """Train the vision encoder (frozen in SCT)."""
    train_projector: bool = True
    """Train the ToMe projector's MLP."""
    train_llm: bool = True
    """Train the LLM (embeddings, decoder layers, norm)."""
    save_every: int = 50
    """Write a resumable checkpoint every this many steps (and at the end)."""
    keep_checkpoints: int = 2
    """Resumable checkpoints to keep (oldest are deleted)."""
    log_every: int = 10
    """Log loss and learning rate every this many steps."""
    val_every: int = 0
    """Answer the validation suite every this many steps (0: no validation)."""
    seed: int = 0
    """Seed of model init, data order and dropout."""
    answer_frames: int | None = None
    """Save with the final model a pipeline_config.json in which QC-Comp keeps this many frames (the most it was
    trained on) out of up to twice as many sampled (`xcomp.pipeline_config.answer_defaults`); None: no such file, so
    the reference settings apply (1 fps up to 1,024 frames, keep 25 %)."""

    @classmethod
    def from_dict(cls, raw: dict, where: str = "config") -> TrainConfig:
        """The config of ``raw``, whose ``data`` is a built `TrainSource` (or absent)."""
        from xcomp.train.sources.source import TrainSource

        data = raw.get("data") if isinstance(raw, dict) else None
        if data is not None and not isinstance(data, TrainSource):
            raise ConfigError(f"{where}: data must be a training source (built from its _target_), got {data!r}")
        config = load_structured(cls, {k: v for k, v in raw.items() if k != "data"}, where)
        config.data = data
        config.validate()
        return config

    def validate(self) -> None:
        from xcomp.compression.compressors import COMPRESSORS
        from xcomp.train.sources.synth import SynthQAData

        if self.data is None:
            self.data = SynthQAData()
        for key, value, allowed in (
            ("objective", self.objective, ("answer", "frame_tags")),
            ("precision", self.precision, ("fp32", "bf16")),
        ):
            if value not in allowed:
                raise ConfigError(f"{key} = {value!r} is not one of {', '.join(repr(a) for a in allowed)}")
        if self.compression is not None and self.compression not in COMPRESSORS:
            names = ", ".join(repr(n) for n in COMPRESSORS)
            raise ConfigError(f"compression = {self.compression!r} is not one of {names}")
        if (self.steps is None) == (self.epochs is None):
            raise ConfigError("set one of steps and epochs (the other null)")
        if (self.steps is not None and self.steps < 1) or self.batch_size < 1 or self.grad_accum < 1:
            raise ConfigError("steps, batch_size and grad_accum must be >= 1")
        if (self.epochs is not None and self.epochs <= 0) or (self.global_batch is not None and self.global_batch < 1):
            raise ConfigError("epochs must be > 0 and global_batch >= 1")
        if self.global_batch is not None and self.grad_accum != 1:
            raise ConfigError("global_batch sets grad_accum: leave grad_accum at 1")
        if self.workers < 0:
            raise ConfigError(f"workers must be >= 0, got {self.workers}")
        if self.lr <= 0 or self.weight_decay < 0 or self.max_grad_norm < 0:
            raise ConfigError("lr must be > 0, weight_decay and max_grad_norm >= 0")
        if not 0 <= self.warmup_ratio <= 1:
            raise ConfigError(f"warmup_ratio must be in [0, 1], got {self.warmup_ratio}")
        if self.answer_frames is not None and self.answer_frames < 1:
            raise ConfigError(f"answer_frames must be >= 1, got {self.answer_frames}")
        if self.val_every < 0:
            raise ConfigError(f"val_every must be >= 0 (0: no validation), got {self.val_every}")
        if min(self.save_every, self.log_every, self.keep_checkpoints) < 1:
            raise ConfigError("save_every, log_every and keep_checkpoints must be >= 1")
        if not (self.train_vision or self.train_projector or self.train_llm):
            raise ConfigError("nothing to train: enable train_vision, train_projector or train_llm")
        if self.objective == "frame_tags":
            self.data.check_frame_tags()
            if not (self.train_vision or self.train_projector):
                raise ConfigError("objective = 'frame_tags' trains the vision tower and projector; enable one")

    def schedule_for(self, samples: int, world: int) -> tuple[int, int]:
        """(steps, grad_accum) of a run over ``samples`` on ``world`` processes (`epochs`, `global_batch`)."""
        accum = self.grad_accum
        if self.global_batch is not None:
            accum, rest = divmod(self.global_batch, self.batch_size * world)
            if rest or not accum:
                raise ConfigError(f"global_batch {self.global_batch} is not a multiple of batch_size "
                                  f"{self.batch_size} x {world} processes")  # fmt: skip
        if self.steps is not None:
            return self.steps, accum
        steps = int(self.epochs * samples) // (self.batch_size * accum * world)
        if steps < 1:
            raise ConfigError(f"{self.epochs} epochs of {samples} samples make no step of {self.batch_size * accum * world}")
        return steps, accum

    def to_dict(self) -> dict:
        """The settings as JSON-able data (the source as its `record`)."""
        return {**dataclasses.asdict(dataclasses.replace(self, data=None)), "data": self.data.record()}


@dataclass
class TrainerConfig:
    """How Lightning runs the loop: device, strategy, precision (the `trainer` group of conf/)."""

    accelerator: str = "auto"
    """'cpu', 'gpu', or 'auto' (a GPU where there is one)."""
    strategy: str = "auto"
    """'auto' (one process, DDP under torchrun), 'ddp', 'fsdp', 'deepspeed_stage_2', 'deepspeed_stage_3', ..."""
    precision: str | None = None
    """Lightning precision ('32-true', 'bf16-mixed', ...); None: the training config's `precision`."""

    def check(self) -> None:
        """Refuse, before any work, what this machine cannot run."""
        if self.strategy.startswith("deepspeed") and importlib.util.find_spec("deepspeed") is None:
            raise ConfigError(f"trainer.strategy = {self.strategy!r} needs DeepSpeed: pip install deepspeed")
        if self.accelerator not in ("auto", "cpu", "gpu"):
            raise ConfigError(f"trainer.accelerator must be 'auto', 'cpu' or 'gpu', got {self.accelerator!r}")
        import torch

        if self.accelerator == "gpu" and not torch.cuda.is_available():
            raise ConfigError("trainer.accelerator = 'gpu' but no CUDA GPU is visible; use trainer=cpu")
        from lightning.pytorch.strategies import StrategyRegistry

        if self.strategy not in ("auto", *StrategyRegistry):
            raise ConfigError(f"unknown trainer.strategy {self.strategy!r}; Lightning has {', '.join(StrategyRegistry)}")
