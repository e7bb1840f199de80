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
    ):
        super().__init__(model, evaluation)
        self.steps, self.lr, self.warmup_ratio, self.weight_decay = steps, lr, warmup_ratio, weight_decay
        if gradient_checkpointing:
            model.activation_checkpointing_enable()
        model.train()  # from_pretrained leaves it in eval mode, which Lightning keeps
        self.trainable = set_trainable(model, train_vision, train_projector, train_llm)
        self.last: dict[str, torch.Tensor] = {}
        """Loss and accuracies of the latest micro-batch (what `StepLog` averages)."""

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        output = self.model(**batch)
        self.last = {"loss": output.loss.detach(), **{k: v.detach() for k, v in getattr(output, "accuracy", {}).items()}}
        return output.loss

    def configure_optimizers(self):
        # The schedule's length is `steps`, not `trainer.estimated_stepping_batches`: reading that here builds the
        # training loader before a resume has restored the step it must start from (lightning #20550).
        optimizer = torch.optim.AdamW(self.trainable, lr=self.lr, weight_decay=self.weight_decay)
        scheduler = get_cosine_schedule_with_warmup(optimizer, math.ceil(self.warmup_ratio * self.steps), self.steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
