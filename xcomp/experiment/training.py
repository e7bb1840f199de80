"""The training stage of a run.py job (`train=sct|base`): train, then hand the job the trained model to test.

The job's fingerprint names the training folder (``paths.train/<fingerprint>``, unless ``train.output_dir`` names
one), so rerunning a killed job resumes its checkpoints; the loss curve goes into the job's own MLflow run (Lightning's `MLFlowLogger` on that run id),
each step once (`xcomp.train.step_log`); the trained model is logged to the run as the artifact folder ``model``.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from xcomp.train.config import TrainConfig, TrainerConfig


def train_config(cfg: DictConfig, job_key: str) -> TrainConfig:
    """The job's `TrainConfig` (checked), in ``train.output_dir`` when given (a recipe's stages name theirs, so the
    next stage can start from it), else in a folder named by the job's fingerprint."""
    settings = OmegaConf.to_container(cfg.train, resolve=True)
    if OmegaConf.is_missing(cfg.train, "output_dir"):
        settings["output_dir"] = str(Path(cfg.paths.train) / job_key)
    return TrainConfig.from_dict(settings, where="train")


def trainer_config(cfg: DictConfig) -> TrainerConfig:
    """The job's Lightning settings, checked now, before the model loads (`fit` checks again for direct callers)."""
    trainer = OmegaConf.to_object(cfg.trainer)
    trainer.check()
    return trainer


def train(
    cfg: DictConfig, config: TrainConfig, trainer: TrainerConfig, fields: dict, tracker=None, run_id: str | None = None
) -> str:
    """Train per ``config`` with the job's compression ``fields`` (not for a fresh tiny model: dense pre-training);
    returns the trained model's folder."""
    import logging

    from xcomp.train.recipe import run

    # Lightning sets its logger to INFO when first imported (after Hydra configured logging), then prints a device
    # summary and tips on every fit; a job keeps its warnings only.
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    loggers = None
    if tracker is not None:
        from lightning.pytorch.loggers import MLFlowLogger

        loggers = [MLFlowLogger(tracking_uri=cfg.logger.tracking_uri, run_id=run_id)]
    final = run(config, None if config.init == "tiny" else fields, loggers, trainer, cfg.progress)
    if tracker is not None:
        tracker.client.update_run(run_id, status="RUNNING")  # MLFlowLogger ends the run when training ends
        tracker.client.log_artifacts(run_id, str(final), "model")
    return str(final)
