"""The training stage of a run.py job (`train=sct|base|frame_tags`): train, validate, and test the trained model.

The job's fingerprint names the training folder (``paths.train/<fingerprint>``, unless ``train.output_dir`` names
one), so rerunning a killed job resumes its checkpoints. The loss curve (and ``val.*`` metrics) go into the job's
own MLflow run (Lightning's `MLFlowLogger` on that run id), each step once (`xcomp.train.step_log`); the trained
model is logged to the run as the artifact folder ``model`` and tested in Lightning's test loop.
"""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.loggers import MLFlowLogger
from omegaconf import DictConfig, OmegaConf

from xcomp.train.config import TrainConfig, TrainerConfig


class JobRunLogger(MLFlowLogger):
    """`MLFlowLogger` on a run the job owns: Lightning's end of fit / test does not end the run (MLFlowLogger marks
    it FINISHED there, and a job killed during the test loop would then read as finished, without its metrics, and
    be skipped on rerun); the job ends it once its results are logged."""

    def finalize(self, status: str = "success") -> None:
        """Leave the run open."""


def train_config(cfg: DictConfig, job_key: str) -> TrainConfig:
    """The job's `TrainConfig` (checked), in ``train.output_dir`` when given (a recipe's stages name theirs, so the
    next stage can start from it), else in a folder named by the job's fingerprint."""
    from xcomp.experiment.components import build

    settings = OmegaConf.to_container(cfg.train, resolve=True)
    if OmegaConf.is_missing(cfg.train, "output_dir"):
        settings["output_dir"] = str(Path(cfg.paths.train) / job_key)
    settings["data"] = build(cfg.train.data)
    return TrainConfig.from_dict(settings, where="train")


def trainer_config(cfg: DictConfig) -> TrainerConfig:
    """The job's Lightning settings, checked now, before the model loads (`fit` checks again for direct callers)."""
    trainer = OmegaConf.to_object(cfg.trainer)
    trainer.check()
    return trainer


def train(
    cfg: DictConfig, config: TrainConfig, trainer: TrainerConfig, compressor, fields: dict, tracker=None, run_id=None
) -> tuple[dict[str, float], list[dict], dict[str, str]]:
    """Train per ``config`` with the job's compression ``fields`` (not for a fresh tiny model: dense pre-training),
    validating on the `val` suite every ``config.val_every`` steps, then test the trained model with ``compressor``
    in Lightning's test loop (on the validation suite when `test=false`); returns the metrics, prediction rows and
    what the model ran with, as `job.evaluate`."""
    import logging

    from xcomp.evaluation.lightning import SuiteEvaluation
    from xcomp.evaluation.runner import prediction_rows
    from xcomp.experiment import suites
    from xcomp.experiment.components import build
    from xcomp.experiment.outcome import feature_cache, scored, used
    from xcomp.model.convert import load_config
    from xcomp.train.recipe import run

    # Lightning sets its logger to INFO when first imported (after Hydra configured logging), then prints a device
    # summary and tips on every fit; a job keeps its warnings only.
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    size = config.data.image_size
    clip = load_config(cfg.model.path).local_num_frames
    evaluation = SuiteEvaluation(
        processor=None,
        fields=fields,
        selector=build(cfg.select),
        system=compressor.name,
        max_new_tokens=cfg.max_new_tokens,
        reuse=cfg.reuse,
        feature_cache=feature_cache(cfg),
        workers=cfg.eval.workers,
        val=suites.load(cfg, suites.val_data(cfg), size, clip) if config.val_every else None,
        test=suites.load(cfg, suites.scored_data(cfg), size, clip),
    )
    loggers = None if tracker is None else [JobRunLogger(tracking_uri=cfg.logger.tracking_uri, run_id=run_id)]
    fields_now = None if config.init == "tiny" else fields
    training_cache = feature_cache(cfg, backend="auto")  # training sources decode with the default backend
    final = run(config, fields_now, loggers, trainer, cfg.progress, evaluation, training_cache)
    if tracker is not None:
        tracker.client.log_artifacts(run_id, str(final), "model")
    ran_with = {**used(load_config(final).with_compression(**fields)), "model.trained": str(final)}
    return scored(cfg, evaluation.metrics), prediction_rows(evaluation.records), ran_with
