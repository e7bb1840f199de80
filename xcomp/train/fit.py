"""Running a `TrainConfig` with Lightning: one CPU process, torchrun DDP (gloo on CPU, NCCL on GPUs), bf16.

Resuming: every `save_every` steps (and at the last) `ModelCheckpoint` writes the full training state (model,
optimiser, scheduler, loop progress, RNG) to ``checkpoints/`` (atomically: a kill while saving leaves the previous
one intact). Rerunning the same config continues from the newest of them (``last.ckpt`` is written just after
each step file, so a kill in between leaves the step file newest), and `StepBatchSampler` gives the
exact next sample, so no step is lost or repeated. The config of the run is kept beside its checkpoints; resuming
under another one (learning rate, data, init, ...) is refused instead of mixing two runs.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger
from torch.utils.data import Dataset

from xcomp.errors import ConfigError
from xcomp.evaluation.features import FeatureCache
from xcomp.evaluation.lightning import SuiteEvaluation, processes, test
from xcomp.model.convert import load_model
from xcomp.model.processing import XCompProcessor
from xcomp.pipeline_config import answer_defaults, save_pipeline_config
from xcomp.train.config import TrainConfig, TrainerConfig
from xcomp.train.data import QACollator
from xcomp.train.lit_data import QADataModule
from xcomp.train.lit_module import XCompLitModule
from xcomp.train.step_log import StepLog

log = logging.getLogger(__name__)

CONFIG_FILE = "train_config.json"
"""The config of the run whose checkpoints/ lie beside it."""
RESUMABLE_CHANGES = {
    "output_dir", "steps", "epochs", "save_every", "log_every", "val_every", "keep_checkpoints", "answer_frames",
    "workers",
}  # fmt: skip
"""Config fields that may differ when a run is resumed: extend it, checkpoint, log and validate at another rate,
or save other answering defaults with the final model."""
PRECISION = {"fp32": "32-true", "bf16": "bf16-mixed"}
"""`TrainConfig.precision` -> Lightning's."""

# Lightning warns that a mid-epoch resume with a plain loader replays the epoch; `StepBatchSampler` starts at the
# restored step instead, so the resume is exact (tests/test_train.py).
warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")


def fit(
    config: TrainConfig,
    model: torch.nn.Module,
    dataset: Dataset,
    processor: XCompProcessor,
    collate_fn=None,
    loggers: list[Logger] | None = None,
    trainer: TrainerConfig | None = None,
    progress: bool = False,
    evaluation: SuiteEvaluation | None = None,
    feature_cache: FeatureCache | None = None,
) -> Path:
    """Train ``model`` on ``dataset`` per ``config`` (resuming its output_dir); returns the final model folder.

    The curve goes to ``loggers`` (none: the run keeps no curve); ``progress`` shows Lightning's progress bar.
    With ``evaluation``, its validation suite is answered every ``config.val_every`` steps and its test suite by
    the final model, loaded back with the evaluation's compression fields (the results are left in it; it answers
    with ``processor`` unless it has its own). With ``feature_cache`` and a frozen tower, the tower's tokens of
    training videos are kept there and read back (as evaluation's are). Records the dataset could not read
    (`TrainSource.skipped_before` and those replaced while training) are logged as ``train.skipped``."""
    loop = trainer or TrainerConfig()
    loop.check()
    if evaluation is not None and evaluation.processor is None:
        evaluation.processor = processor
    out = Path(config.output_dir)
    last = out / "checkpoints" / "last.ckpt"
    resume = _newest_checkpoint(out / "checkpoints")
    if resume is not None:
        _check_same_run(out, config)
    world, local = processes()
    steps, accum = config.schedule_for(len(dataset), world)
    val = evaluation.val if evaluation is not None and config.val_every else None
    data = QADataModule(
        dataset, collate_fn or QACollator(processor), config.batch_size, steps, accum, config.seed, val, config.workers
    )
    data.check(world)
    L.seed_everything(config.seed, verbose=False)
    module = XCompLitModule(
        model,
        steps,
        config.lr,
        config.warmup_ratio,
        config.weight_decay,
        config.train_vision,
        config.train_projector,
        config.train_llm,
        config.gradient_checkpointing,
        evaluation,
        _unsharded(feature_cache, loop.strategy),
    )
    checkpoints = ModelCheckpoint(
        dirpath=out / "checkpoints",
        filename="step_{step:07d}",
        auto_insert_metric_name=False,
        every_n_train_steps=config.save_every,
        save_top_k=config.keep_checkpoints,
        monitor="step",
        mode="max",
        save_last=True,
    )
    log = StepLog(config.log_every, steps, config.batch_size, accum)
    gpu = loop.accelerator == "gpu" or (loop.accelerator == "auto" and torch.cuda.is_available())
    trainer = L.Trainer(
        accelerator="gpu" if gpu else "cpu",
        devices=local,
        num_nodes=world // local,
        strategy="ddp" if loop.strategy == "auto" and world > 1 else loop.strategy,
        precision=loop.precision or PRECISION[config.precision],
        max_steps=steps,
        accumulate_grad_batches=accum,
        gradient_clip_val=config.max_grad_norm or None,
        callbacks=[log, checkpoints],
        logger=loggers or False,
        enable_progress_bar=progress,
        use_distributed_sampler=False,  # StepBatchSampler shards the batches itself
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=None if val else 0,
        val_check_interval=config.val_every if val else None,
        check_val_every_n_epoch=None,
        log_every_n_steps=config.log_every,
        default_root_dir=out,
    )
    if trainer.is_global_zero:
        out.mkdir(parents=True, exist_ok=True)
        (out / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    trainer.fit(module, datamodule=data, ckpt_path=resume, weights_only=False)  # our own full training state
    if trainer.global_step % config.save_every:
        trainer.save_checkpoint(last)  # the last step too, so that raising `steps` extends the run
    _log_skipped(trainer, module, getattr(dataset, "skipped_before", 0))
    final = _save_final(trainer, model, processor, config)
    if evaluation is not None and evaluation.test is not None:
        test(load_model(final, **evaluation.fields), evaluation, trainer)
    return final


def _unsharded(cache: FeatureCache | None, strategy: str) -> FeatureCache | None:
    """The feature cache, unless the strategy shards parameters (FSDP, ZeRO-3), where the tower cannot run alone."""
    if cache is not None and ("fsdp" in strategy or "stage_3" in strategy):
        log.warning("the feature cache is not used for training under %s (sharded parameters)", strategy)
        return None
    return cache


def _log_skipped(trainer: L.Trainer, module: XCompLitModule, before: int) -> None:
    """``train.skipped``: records left out when the data was read plus those replaced while training (all ranks)."""
    replaced = int(trainer.strategy.reduce(torch.tensor(float(module.skipped), device=module.device), reduce_op="sum").item())
    if not trainer.is_global_zero:
        return
    if before + replaced:
        log.warning("skipped %d training records: %d without their media when read, %d undecodable",
                    before + replaced, before, replaced)  # fmt: skip
    for logger in trainer.loggers:
        logger.log_metrics({"train.skipped": before + replaced}, step=trainer.global_step)
        logger.save()


def _newest_checkpoint(folder: Path) -> Path | None:
    """The checkpoint written last (each is complete: Lightning writes them atomically)."""
    found = list(folder.glob("*.ckpt")) if folder.is_dir() else []
    return max(found, key=lambda p: p.stat().st_mtime_ns) if found else None


def _check_same_run(out: Path, config: TrainConfig) -> None:
    """Resuming under another recipe (learning rate, data, init, ...) would silently mix two runs."""

    def flat(values: dict) -> dict:
        data = {f"data.{k}": v for k, v in values.get("data", {}).items()}
        return {**{k: v for k, v in values.items() if k != "data"}, **data}

    stored = out / CONFIG_FILE
    before = flat(json.loads(stored.read_text())) if stored.is_file() else {}
    now = flat(json.loads(json.dumps(config.to_dict())))
    changed = [  # a key the stored config lacks is a field added since: it had its default then
        f"{k}: {before[k]!r} -> {v!r}" for k, v in now.items() if k in before and k not in RESUMABLE_CHANGES and before[k] != v
    ]
    if changed:
        raise ConfigError(
            f"{out} holds a run with another config ({'; '.join(changed[:3])}); "
            "use a new output_dir, or delete that one to start over"
        )


def _save_final(trainer: L.Trainer, model: torch.nn.Module, processor: XCompProcessor, config: TrainConfig) -> Path:
    final = Path(config.output_dir) / "final"
    if trainer.is_global_zero:
        model.save_pretrained(str(final))
        processor.save_pretrained(final)
        if config.answer_frames:
            clip = getattr(model, "vlm", model).config.local_num_frames  # a frame tagger wraps its VLM
            save_pipeline_config(final, *answer_defaults(config.answer_frames, clip, processor.image_size))
    trainer.strategy.barrier()
    return final
