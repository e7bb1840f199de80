"""Every xcomp training stage as a LightningModule: a model, what of it trains, its optimiser, and how it is
validated and tested.

Any model whose forward returns an object with ``.loss`` (and optionally an ``.accuracy`` dict of scalars) and that
has ``save_pretrained`` trains through it: the VLM itself (answer-token loss, SCT and dense pre-training) or a
`FrameTagger` holding it (vision pretraining). Validation and test answer QA suites with the VLM
(`xcomp.evaluation.lightning.EvaluationModule`): the metrics of an evaluation run, ``val.``-prefixed in the training
curve.
"""

from __future__ import annotations

import math

import torch
from transformers import get_cosine_schedule_with_warmup

from xcomp.evaluation.features import FeatureCache, vision_settings
from xcomp.evaluation.lightning import EvaluationModule, SuiteEvaluation
from xcomp.model.modeling import XCompForCausalLM


def set_trainable(
    model: torch.nn.Module, train_vision: bool, train_projector: bool, train_llm: bool
) -> list[torch.nn.Parameter]:
    """Freeze/unfreeze the three parts; returns the trainable parameters (tied head counts as the embedding).

    `model` is the VLM or a training wrapper holding it as `.vlm` (`FrameTagger`), whose own head trains.
    """
    vlm: XCompForCausalLM = getattr(model, "vlm", model)
    inner = vlm.model
    for module, flag in (
        (inner.vision_tower, train_vision),
        (inner.mm_projector, train_projector),
        (inner.language_model, train_llm),
    ):
        module.requires_grad_(flag)
    if inner.image_newline is not None:
        inner.image_newline.requires_grad_(train_llm)
    vlm.lm_head.requires_grad_(train_llm)
    seen, params = set(), []
    for p in model.parameters():
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            params.append(p)
    return params


class XCompLitModule(EvaluationModule):
    """Trains ``model`` with AdamW, linear warm-up then cosine decay over ``steps`` optimiser steps; validates and
    tests it on the suites of ``evaluation``."""

    def __init__(
        self,
        model: torch.nn.Module,
        steps: int,
        lr: float,
        warmup_ratio: float = 0.03,
        weight_decay: float = 0.0,
        train_vision: bool = False,
        train_projector: bool = True,
        train_llm: bool = True,
        gradient_checkpointing: bool = False,
        evaluation: SuiteEvaluation | None = None,
        feature_cache: FeatureCache | None = None,
    ):
        super().__init__(model, evaluation)
        self.feature_cache = None if train_vision else feature_cache
        """Where the frozen tower's merged tokens of training videos are kept (`xcomp.evaluation.features`)."""
        self.skipped = 0
        """Records the training source could not read and replaced, on this process (kept in checkpoints)."""
        self.steps, self.lr, self.warmup_ratio, self.weight_decay = steps, lr, warmup_ratio, weight_decay
        if gradient_checkpointing:
            model.activation_checkpointing_enable()
        model.train()  # from_pretrained leaves it in eval mode, which Lightning keeps
        self.trainable = set_trainable(model, train_vision, train_projector, train_llm)
        self.last: dict[str, torch.Tensor] = {}
        """Loss and accuracies of the latest micro-batch (what `StepLog` averages)."""

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        self.skipped += batch.pop("skipped", 0)
        origins = batch.pop("origins", None)
        if self.feature_cache is not None and origins is not None:
            batch["visual_embeds"], batch["visual_saliency"] = self.visual_tokens(
                batch.pop("pixel_values"), batch.pop("num_frames"), origins
            )
        output = self.model(**batch)
        self.last = {"loss": output.loss.detach(), **{k: v.detach() for k, v in getattr(output, "accuracy", {}).items()}}
        return output.loss

    def visual_tokens(self, pixels: torch.Tensor, num_frames: list[int], origins: list) -> tuple[list, list | None]:
        """Each video's LLM tokens: the frozen tower's merged tokens from the feature cache (or computed and
        stored, keyed as evaluation keys them), then the projector, which trains; and their tower saliency for a
        compressor that reads it."""
        inner, cache = self.model.model, self.feature_cache
        kind = pixels.device.type
        tower = next(inner.vision_tower.parameters()).dtype
        dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else tower
        settings = vision_settings(self.model, pixels.shape[-1], dtype)
        digest = cache.digest(inner.vision_tower)
        features = []
        for frames, origin in zip(pixels.split(num_frames), origins):
            key = cache.key(digest, origin[0], origin[1], settings) if origin is not None else None
            found = cache.load(key) if key is not None else None
            if found is None:
                with torch.no_grad():
                    found = inner.vision_features(frames)
                if key is not None:
                    cache.store(key, found)
            features.append(found.to(frames.device))
        features = torch.cat(features)
        return inner.project(features, num_frames), inner.saliency(features, num_frames)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """The records skipped so far by all processes (every rank saves; rank 0's file is written)."""
        total = self.trainer.strategy.reduce(torch.tensor(float(self.skipped), device=self.device), reduce_op="sum")
        checkpoint["skipped"] = int(total.item())

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """The total goes to rank 0 (the others start from 0), so that the run's sum stays the total."""
        self.skipped = checkpoint.get("skipped", 0) if self.global_rank == 0 else 0

    def configure_optimizers(self):
        # The schedule's length is `steps`, not `trainer.estimated_stepping_batches`: reading that here builds the
        # training loader before a resume has restored the step it must start from (lightning #20550).
        optimizer = torch.optim.AdamW(self.trainable, lr=self.lr, weight_decay=self.weight_decay)
        scheduler = get_cosine_schedule_with_warmup(optimizer, math.ceil(self.warmup_ratio * self.steps), self.steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
